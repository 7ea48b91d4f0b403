"""What the use cases need from other services: the ledger and risk, as Protocols.

The adapters (`adapters/ledger_client.py`, `adapters/risk_client.py`) speak
gRPC; the unit tests pass in-memory fakes. Both ports follow one rule about
failure:

* an answer the other service *decided* comes back as a value: a ledger
  refusal is a `TransferOutcome` with its reason, not an exception;
* no answer (down, timed out, overloaded) raises `DependencyUnavailable`.
  The request may or may not have reached the other side; every call we
  make is idempotent (derived transfer ids, transaction id = payment id),
  so the caller just sends the same request again later.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.payment.domain.model import ClientContext, RiskOutcome

# The bank's chart of transfer codes (NewTransfer.code) for payment movements.
TRANSFER_CODE_PAYMENT = 1
TRANSFER_CODE_REFUND = 3


class DependencyUnavailable(Exception):
    """Another service did not answer in time; nothing we know of was decided."""

    def __init__(self, service: str, detail: str = "") -> None:
        super().__init__(
            f"the {service} service is unavailable" + (f": {detail}" if detail else "")
        )
        self.service = service


class TransferKind(enum.StrEnum):
    SINGLE_PHASE = "SINGLE_PHASE"
    PENDING = "PENDING"
    POST_PENDING = "POST_PENDING"
    VOID_PENDING = "VOID_PENDING"


class HoldState(enum.StrEnum):
    PENDING = "PENDING"
    POSTED = "POSTED"
    VOIDED = "VOIDED"
    EXPIRED = "EXPIRED"


@dataclass(frozen=True, slots=True)
class TransferRequest:
    """One ledger transfer. Every field derives from the stored payment, so a
    re-send is byte-for-byte the first send and the ledger answers EXISTS."""

    id: uuid.UUID
    kind: TransferKind
    debit_account_id: uuid.UUID | None = None
    credit_account_id: uuid.UUID | None = None
    amount: int | None = None
    currency: str | None = None
    pending_id: uuid.UUID | None = None
    timeout_seconds: int = 0
    code: int = TRANSFER_CODE_PAYMENT
    metadata: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class LedgerTransfer:
    id: uuid.UUID
    kind: str
    amount: int
    currency: str
    pending_state: HoldState | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TransferOutcome:
    """The ledger's answer: the transfer (new or already there), or its refusal reason."""

    transfer: LedgerTransfer | None = None
    existed: bool = False
    reason: str = ""

    @property
    def accepted(self) -> bool:
        return self.transfer is not None


@dataclass(frozen=True, slots=True)
class LedgerAccount:
    id: uuid.UUID
    customer_id: str
    currency: str


class LedgerPort(Protocol):
    async def create_transfer(self, request: TransferRequest) -> TransferOutcome: ...

    async def get_transfer(self, transfer_id: uuid.UUID) -> LedgerTransfer | None: ...

    async def get_account(self, account_id: uuid.UUID) -> LedgerAccount | None: ...


@dataclass(frozen=True, slots=True)
class RiskRequest:
    transaction_id: uuid.UUID
    customer_id: str
    source_account_id: uuid.UUID
    destination_account_id: uuid.UUID
    amount: int
    currency: str
    client_context: ClientContext
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class RiskDecision:
    outcome: RiskOutcome
    reasons: tuple[str, ...] = ()
    decision_id: str = ""
    # Risk decided by its own documented fallback (its Redis was down).
    fallback: bool = False


class RiskPort(Protocol):
    async def score(self, request: RiskRequest) -> RiskDecision: ...
