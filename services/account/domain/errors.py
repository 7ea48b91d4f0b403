"""Why the ledger says no.

Every refusal is a `Reason`, named as in the `bankmesh.common.v1.ErrorReason`
enum (without its prefix), so the same word reaches gRPC and REST clients.

    LedgerError                      (carries a Reason and, optionally, a field)
     ├── AccountNotFound             ACCOUNT_NOT_FOUND
     ├── TransferNotFound            PENDING_TRANSFER_NOT_FOUND for lookups
     ├── InvalidRequest              request shape: INVALID_*, CONFLICTING_LIMIT_FLAGS, ...
     ├── PermissionDenied            a customer acting beyond their own accounts
     └── TransferRefused             a transfer result other than CREATED/EXISTS

Batch operations do not raise for individual transfers: they return one
`Reason` per transfer. The single-transfer use case raises `TransferRefused`.
"""

from __future__ import annotations

import enum

from services.common.errors import ServiceError


class Reason(enum.StrEnum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    INVALID_ID = "INVALID_ID"
    INVALID_AMOUNT = "INVALID_AMOUNT"
    INVALID_CURRENCY = "INVALID_CURRENCY"
    ACCOUNTS_MUST_BE_DIFFERENT = "ACCOUNTS_MUST_BE_DIFFERENT"
    INVALID_PAGE_TOKEN = "INVALID_PAGE_TOKEN"  # noqa: S105 - a reason name, not a secret
    TIMEOUT_RESERVED_FOR_PENDING_TRANSFER = "TIMEOUT_RESERVED_FOR_PENDING_TRANSFER"
    LINKED_EVENT_CHAIN_OPEN = "LINKED_EVENT_CHAIN_OPEN"
    CONFLICTING_LIMIT_FLAGS = "CONFLICTING_LIMIT_FLAGS"
    BATCH_TOO_LARGE = "BATCH_TOO_LARGE"

    EXISTS_WITH_DIFFERENT_FIELDS = "EXISTS_WITH_DIFFERENT_FIELDS"
    ID_ALREADY_FAILED = "ID_ALREADY_FAILED"
    LINKED_EVENT_FAILED = "LINKED_EVENT_FAILED"

    ACCOUNT_NOT_FOUND = "ACCOUNT_NOT_FOUND"
    DEBIT_ACCOUNT_NOT_FOUND = "DEBIT_ACCOUNT_NOT_FOUND"
    CREDIT_ACCOUNT_NOT_FOUND = "CREDIT_ACCOUNT_NOT_FOUND"
    ACCOUNT_FROZEN = "ACCOUNT_FROZEN"
    ACCOUNT_CLOSED = "ACCOUNT_CLOSED"
    ACCOUNT_BALANCE_NOT_ZERO = "ACCOUNT_BALANCE_NOT_ZERO"
    ACCOUNT_ALREADY_EXISTS = "ACCOUNT_ALREADY_EXISTS"
    PERMISSION_DENIED = "PERMISSION_DENIED"

    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    EXCEEDS_DEBITS = "EXCEEDS_DEBITS"
    BALANCE_OVERFLOW = "BALANCE_OVERFLOW"

    PENDING_TRANSFER_NOT_FOUND = "PENDING_TRANSFER_NOT_FOUND"
    PENDING_TRANSFER_NOT_PENDING = "PENDING_TRANSFER_NOT_PENDING"
    PENDING_TRANSFER_ALREADY_POSTED = "PENDING_TRANSFER_ALREADY_POSTED"
    PENDING_TRANSFER_ALREADY_VOIDED = "PENDING_TRANSFER_ALREADY_VOIDED"
    PENDING_TRANSFER_EXPIRED = "PENDING_TRANSFER_EXPIRED"
    EXCEEDS_PENDING_AMOUNT = "EXCEEDS_PENDING_AMOUNT"
    PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS = "PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS"
    PENDING_TRANSFER_HAS_DIFFERENT_CURRENCY = "PENDING_TRANSFER_HAS_DIFFERENT_CURRENCY"


# A transfer that failed for one of these reasons might have succeeded with the
# same fields at another moment (the account did not exist yet, had no funds,
# was frozen). Its id is burnt: retrying it yields ID_ALREADY_FAILED, so a
# client's retry can never turn an earlier failure into a success. Shape
# errors are deterministic and need no record: the same request fails the same way.
TRANSIENT_REASONS = frozenset(
    {
        Reason.DEBIT_ACCOUNT_NOT_FOUND,
        Reason.CREDIT_ACCOUNT_NOT_FOUND,
        Reason.ACCOUNT_FROZEN,
        Reason.ACCOUNT_CLOSED,
        Reason.CURRENCY_MISMATCH,
        Reason.INSUFFICIENT_FUNDS,
        Reason.EXCEEDS_DEBITS,
        Reason.BALANCE_OVERFLOW,
        Reason.PENDING_TRANSFER_NOT_FOUND,
        Reason.PENDING_TRANSFER_NOT_PENDING,
        Reason.PENDING_TRANSFER_ALREADY_POSTED,
        Reason.PENDING_TRANSFER_ALREADY_VOIDED,
        Reason.PENDING_TRANSFER_EXPIRED,
        Reason.EXCEEDS_PENDING_AMOUNT,
        Reason.PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS,
        Reason.PENDING_TRANSFER_HAS_DIFFERENT_CURRENCY,
    }
)


class LedgerError(ServiceError[Reason]):
    """A request the ledger refuses, with the reason a client can act on."""

    reason = Reason.INVALID_ARGUMENT


class InvalidRequest(LedgerError):
    reason = Reason.INVALID_ARGUMENT


class AccountNotFound(LedgerError):
    reason = Reason.ACCOUNT_NOT_FOUND


class TransferNotFound(LedgerError):
    reason = Reason.PENDING_TRANSFER_NOT_FOUND


class PermissionDenied(LedgerError):
    reason = Reason.PERMISSION_DENIED


class AccountStateError(LedgerError):
    """The account's status does not allow the operation (frozen, closed, not empty)."""


class TransferRefused(LedgerError):
    """A single transfer failed; `reason` is its result code."""


_DESCRIPTIONS: dict[Reason, str] = {
    Reason.INVALID_ID: "an id is missing or not a valid, non-nil UUID",
    Reason.INVALID_AMOUNT: "the amount must be a positive whole number of minor units",
    Reason.INVALID_CURRENCY: "the currency must be an ISO 4217 code such as 'EUR'",
    Reason.ACCOUNTS_MUST_BE_DIFFERENT: "the debit and credit accounts must differ",
    Reason.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER: "only PENDING transfers take a timeout",
    Reason.LINKED_EVENT_CHAIN_OPEN: "the last transfer of a batch must not be linked",
    Reason.EXISTS_WITH_DIFFERENT_FIELDS: "a transfer with this id exists with other fields",
    Reason.ID_ALREADY_FAILED: "this transfer id already failed; use a new id to try again",
    Reason.LINKED_EVENT_FAILED: "another transfer of the same linked chain failed",
    Reason.DEBIT_ACCOUNT_NOT_FOUND: "the debit account does not exist",
    Reason.CREDIT_ACCOUNT_NOT_FOUND: "the credit account does not exist",
    Reason.ACCOUNT_FROZEN: "an account of the transfer is frozen",
    Reason.ACCOUNT_CLOSED: "an account of the transfer is closed",
    Reason.CURRENCY_MISMATCH: "the transfer and both accounts must share one currency",
    Reason.INSUFFICIENT_FUNDS: "the debit account does not have enough available funds",
    Reason.EXCEEDS_DEBITS: "the credit would exceed the debits of the credit account",
    Reason.BALANCE_OVERFLOW: "the transfer would overflow an account's counters",
    Reason.PENDING_TRANSFER_NOT_FOUND: "the pending transfer does not exist",
    Reason.PENDING_TRANSFER_NOT_PENDING: "the referenced transfer is not a pending transfer",
    Reason.PENDING_TRANSFER_ALREADY_POSTED: "the pending transfer was already posted",
    Reason.PENDING_TRANSFER_ALREADY_VOIDED: "the pending transfer was already voided",
    Reason.PENDING_TRANSFER_EXPIRED: "the pending transfer expired and its funds were released",
    Reason.EXCEEDS_PENDING_AMOUNT: "the amount exceeds what the pending transfer holds",
    Reason.PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS: "the accounts differ from the hold's",
    Reason.PENDING_TRANSFER_HAS_DIFFERENT_CURRENCY: "the currency differs from the hold's",
}


def describe(reason: Reason) -> str:
    """One sentence for people; clients should branch on the reason, not on this."""
    return _DESCRIPTIONS.get(reason, reason.value.lower().replace("_", " "))
