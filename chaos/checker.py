"""After the faults: is every payment accounted for, once, and the ledger right to the cent?

The readers held every balance read to the bank's totals while the run went
on (chaos.workload). Once the faults have stopped and the clients have
retried what was never acknowledged, ``wait_final`` gives the payment
service a bounded time to bring every payment to a final status (its
recovery loop finishes what crashes interrupted), and ``check`` compares
three records that must agree, straight from the two databases:

* the clients' history: every intent, its key, and what was acknowledged;
* the payment service's payments (``payment.payments``);
* the ledger's transfers and account counters (``ledger.transfers``,
  ``ledger.accounts``).

Violations, by kind (each must be 0):

| kind                              | what was wrong                                                |
|-----------------------------------|---------------------------------------------------------------|
| `payment_never_requested`         | a payment whose idempotency key no client sent                |
| `duplicate_payment_for_key`       | two payments for one key                                      |
| `acknowledged_payment_missing`    | a client got an answer naming a payment that does not exist   |
| `payment_differs_from_request`    | accounts, amount or key of a payment are not the client's     |
| `status_contradicts_acknowledgement` | the final status cannot follow from what the client was told (COMPLETED acknowledged, DECLINED in the end, say) |
| `payment_not_final`               | still PENDING after the bounded wait: recovery did not finish |
| `ledger_disagrees_with_payment`   | a payment's transfers are not exactly those its status needs (one posting transfer for COMPLETED, one open hold for IN_REVIEW, nothing posted otherwise) |
| `transfer_without_payment`        | a ledger transfer that no payment (or the setup's funding) explains |
| `balance_mismatch`                | an account's counters differ from funding plus the payments   |
| `retry_made_second_payment`, `key_reuse_refused`, `total_not_conserved`, `pending_not_balanced`, `balance_below_limit`, `read_missing_accounts` | found by the clients and readers during the run |
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import psycopg

from chaos.history import History, Intent
from services.payment.domain import ids

_EXPIRE = "expire"  # the ledger's own EXPIRE_PENDING of a review hold
FINAL = frozenset({"COMPLETED", "IN_REVIEW", "DECLINED", "FAILED", "REJECTED", "EXPIRED"})
# What the final status may be, given the first acknowledged status.
_MAY_BECOME = {
    "PENDING": FINAL,
    "COMPLETED": frozenset({"COMPLETED"}),
    "IN_REVIEW": frozenset({"IN_REVIEW", "COMPLETED", "REJECTED", "EXPIRED", "FAILED"}),
    "DECLINED": frozenset({"DECLINED"}),
    "FAILED": frozenset({"FAILED"}),
}


@dataclass(frozen=True)
class _Payment:
    id: str
    key: str
    source: str
    destination: str
    amount: int
    status: str


@dataclass(frozen=True)
class _Transfer:
    id: str
    kind: str
    debit: str
    credit: str
    amount: int
    pending_id: str | None
    payment_id: str | None


@dataclass
class Verdict:
    violations: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    final_statuses: Counter[str] = field(default_factory=Counter)
    payments: int = 0
    transfers: int = 0

    def add(self, kind: str, detail: str) -> None:
        self.violations[kind] += 1
        if len(self.examples) < 30:
            self.examples.append(f"{kind}: {detail}")


def wait_final(payment_url: str, within: float) -> tuple[float, int]:
    """Wait until no payment is PENDING, at most ``within`` seconds: (seconds taken, still pending)."""
    began = time.monotonic()
    while True:
        try:
            with psycopg.connect(payment_url, connect_timeout=5) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM payment.payments WHERE status = 'PENDING'"
                ).fetchone()
            pending = int(row[0]) if row else 0
        except psycopg.OperationalError:
            pending = -1  # the database is not back yet: keep waiting
        taken = time.monotonic() - began
        if pending == 0 or taken > within:
            return taken, pending
        time.sleep(0.5)


def check(
    history: History,
    payment_url: str,
    account_url: str,
    *,
    account_ids: list[str],
    funding_ids: list[str],
    settlement_id: str,
    funding: int,
) -> Verdict:
    verdict = Verdict()
    for kind, count in history.violations_by_kind().items():
        verdict.violations[kind] += count
    verdict.examples.extend(f"{v.kind}: {v.detail}" for v in history.violations[:10])

    payments = _payments(payment_url)
    transfers, balances = _ledger(account_url)
    verdict.payments, verdict.transfers = len(payments), len(transfers)
    intents = {intent.key: intent for intent in history.intents}

    by_key: dict[str, list[_Payment]] = defaultdict(list)
    for payment in payments.values():
        by_key[payment.key].append(payment)
        verdict.final_statuses[payment.status] += 1
        if payment.key not in intents:
            verdict.add("payment_never_requested", f"{payment.id} key {payment.key!r}")
        if payment.status not in FINAL:
            verdict.add("payment_not_final", f"{payment.id} is {payment.status}")
    for key, listed in by_key.items():
        if len(listed) > 1:
            verdict.add("duplicate_payment_for_key", f"{key}: {[p.id for p in listed]}")

    for intent in history.intents:
        _check_intent(intent, payments, by_key.get(intent.key, []), verdict)

    per_payment: dict[str, list[_Transfer]] = defaultdict(list)
    funding_set = set(funding_ids)
    for transfer in transfers.values():
        if transfer.id in funding_set:
            continue
        owner = transfer.payment_id
        if owner is None and transfer.kind == "EXPIRE_PENDING" and transfer.pending_id:
            # Written by the ledger itself when a review hold times out.
            hold = transfers.get(transfer.pending_id)
            owner = hold.payment_id if hold is not None else None
        if owner is None or owner not in payments:
            verdict.add("transfer_without_payment", f"{transfer.id} ({transfer.kind})")
            continue
        per_payment[owner].append(transfer)
    missing_funding = funding_set - set(transfers)
    if missing_funding:
        verdict.add("balance_mismatch", f"{len(missing_funding)} funding transfers missing")

    expected: dict[str, list[int]] = {a: [0, funding, 0, 0] for a in account_ids}
    expected[settlement_id] = [funding * len(account_ids), 0, 0, 0]
    for payment in payments.values():
        _check_transfers(payment, per_payment.get(payment.id, []), expected, verdict)
    for account_id, want in expected.items():
        have = balances.get(account_id)
        if have is None or list(have) != want:
            verdict.add(
                "balance_mismatch",
                f"{account_id}: ledger {have}, payments say {tuple(want)}",
            )
    return verdict


def _check_intent(
    intent: Intent, payments: dict[str, _Payment], listed: list[_Payment], verdict: Verdict
) -> None:
    if intent.payment_id is None:
        return  # never acknowledged: whatever exists for its key is checked above
    payment = payments.get(intent.payment_id)
    if payment is None:
        verdict.add("acknowledged_payment_missing", f"key {intent.key} -> {intent.payment_id}")
        return
    if (payment.key, payment.source, payment.destination, payment.amount) != (
        intent.key,
        intent.source,
        intent.destination,
        intent.amount,
    ):
        verdict.add("payment_differs_from_request", f"{payment.id} for key {intent.key}")
    acknowledged = intent.status or "PENDING"
    if payment.status not in _MAY_BECOME.get(acknowledged, FINAL):
        verdict.add(
            "status_contradicts_acknowledgement",
            f"{payment.id}: acknowledged {acknowledged}, now {payment.status}",
        )
    for replay_id, replay_status in intent.replays:
        if replay_id != intent.payment_id or (
            acknowledged != "PENDING" and replay_status != acknowledged
        ):
            verdict.add(
                "retry_made_second_payment",
                f"key {intent.key}: {intent.payment_id} {acknowledged}, "
                f"resend {replay_id} {replay_status}",
            )


def _check_transfers(
    payment: _Payment,
    transfers: list[_Transfer],
    expected: dict[str, list[int]],
    verdict: Verdict,
) -> None:
    pid = uuid.UUID(payment.id)
    derived = {
        str(ids.transfer_id(pid, step)): step
        for step in (ids.TRANSFER, ids.HOLD, ids.POST, ids.VOID)
    }
    labels = {t.id: _step(t, derived) for t in transfers}
    steps = Counter(labels.values())
    by_step = {labels[t.id]: t for t in transfers}
    status = payment.status
    want: Counter[str]
    if status == "COMPLETED":
        # Either posted at once, or held for review and the hold posted.
        want = (
            Counter({ids.TRANSFER: 1})
            if ids.TRANSFER in steps
            else Counter({ids.HOLD: 1, ids.POST: 1})
        )
    elif status == "IN_REVIEW":
        want = Counter({ids.HOLD: 1})
    elif status in ("REJECTED", "FAILED") and ids.HOLD in steps:
        want = Counter({ids.HOLD: 1, ids.VOID: 1}) if ids.VOID in steps else Counter({ids.HOLD: 1})
    elif status == "EXPIRED":
        want = Counter({ids.HOLD: 1, _EXPIRE: 1})
    else:
        want = Counter()
    if steps != want:
        verdict.add(
            "ledger_disagrees_with_payment",
            f"{payment.id} {status}: transfers {dict(steps)}, expected {dict(want)}",
        )
        return
    for step, transfer in by_step.items():
        if step in (ids.TRANSFER, ids.HOLD) and (
            transfer.debit,
            transfer.credit,
            transfer.amount,
        ) != (payment.source, payment.destination, payment.amount):
            verdict.add("ledger_disagrees_with_payment", f"{payment.id}: {step} {transfer}")
    source, destination = expected.get(payment.source), expected.get(payment.destination)
    if source is None or destination is None:
        verdict.add("payment_differs_from_request", f"{payment.id}: accounts outside the bank")
        return
    amount = payment.amount
    if status == "COMPLETED":
        source[0] += amount
        destination[1] += amount
    elif status == "IN_REVIEW":
        source[2] += amount
        destination[3] += amount
    elif status == "FAILED" and ids.HOLD in steps and ids.VOID not in steps:
        # A hold that could not be voided is still open in the ledger.
        source[2] += amount
        destination[3] += amount


def _step(transfer: _Transfer, derived: dict[str, str]) -> str:
    if transfer.id in derived:
        return derived[transfer.id]
    return _EXPIRE if transfer.kind == "EXPIRE_PENDING" else "other"


def _payments(url: str) -> dict[str, _Payment]:
    with psycopg.connect(url, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT id, idempotency_key, source_account_id, destination_account_id, amount, status "
            "FROM payment.payments"
        ).fetchall()
    return {
        str(r[0]): _Payment(str(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4]), str(r[5]))
        for r in rows
    }


def _ledger(url: str) -> tuple[dict[str, _Transfer], dict[str, tuple[int, int, int, int]]]:
    with psycopg.connect(url, connect_timeout=10) as conn, conn.transaction():
        # One snapshot for both: the counters must be the sum of these transfers.
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        rows = conn.execute(
            "SELECT id, kind, debit_account_id, credit_account_id, amount, pending_id, "
            "metadata->>'payment_id' FROM ledger.transfers"
        ).fetchall()
        accounts = conn.execute(
            "SELECT id, debits_posted, credits_posted, debits_pending, credits_pending "
            "FROM ledger.accounts"
        ).fetchall()
    transfers = {
        str(r[0]): _Transfer(
            str(r[0]),
            str(r[1]),
            str(r[2]),
            str(r[3]),
            int(r[4]),
            str(r[5]) if r[5] else None,
            str(r[6]) if r[6] else None,
        )
        for r in rows
    }
    balances = {str(r[0]): (int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in accounts}
    return transfers, balances
