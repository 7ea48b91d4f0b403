"""The risk service's use cases: score a transaction, replay a stored decision.

Scoring, step by step:

1. A decision already stored for the transaction id is the answer (same
   inputs) or a conflict (EXISTS_WITH_DIFFERENT_FIELDS): scoring is
   idempotent and a retry never touches the velocity state.
2. The state store records the transaction and returns what it knew before,
   within `state_timeout` seconds (less if the caller's deadline is nearer).
   Then every rule and the full model decide.
3. If the store fails or is too slow, the fallback decides instead, from what
   needs no state: the deny list, the stateless model, and REVIEW above
   `fallback.review_above`. The decision says `fallback=True`. After a
   failure the store is left alone for `breaker_seconds`, so an outage costs
   one timeout, not one per request.
4. The decision is stored with its inputs, features, scores and versions. If a
   concurrent request for the same transaction id stored first, its decision
   is returned instead, so every caller sees the one stored answer.

If PostgreSQL is down the request fails with UNAVAILABLE (DEPENDENCY_UNAVAILABLE):
a decision that cannot be recorded cannot be audited or replayed, and the
payment service retries or holds the payment.

`replay` recomputes a stored decision from its stored features and inputs
with the loaded ruleset and model, and says whether it matches.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from services.risk.domain.ensemble import ModelBundle
from services.risk.domain.errors import DecisionConflict, DecisionNotFound
from services.risk.domain.features import compute_features, stateless_features
from services.risk.domain.model import Assessment, StoredDecision, Transaction
from services.risk.domain.rules import assess, assess_fallback
from services.risk.domain.ruleset import Ruleset

from .ports import Clock, DecisionRepository, StateStore, StateUnavailable

log = logging.getLogger("bankmesh.risk")

DEFAULT_STATE_TIMEOUT = 0.025
DEFAULT_BREAKER_SECONDS = 1.0
# Kept back from the caller's deadline for storing the decision and answering.
DEADLINE_RESERVE = 0.050


@dataclass(frozen=True, slots=True)
class ReplayResult:
    original: StoredDecision
    recomputed: Assessment
    same_versions: bool  # the loaded ruleset and model are the ones that decided
    matches: bool  # same score, decision and reason codes
    differences: tuple[str, ...]


class RiskScorer:
    def __init__(
        self,
        ruleset: Ruleset,
        model: ModelBundle,
        state: StateStore,
        decisions: DecisionRepository,
        clock: Clock,
        *,
        state_timeout: float = DEFAULT_STATE_TIMEOUT,
        breaker_seconds: float = DEFAULT_BREAKER_SECONDS,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.ruleset = ruleset
        self.model = model
        self._state = state
        self._decisions = decisions
        self._clock = clock
        self.state_timeout = state_timeout
        self.breaker_seconds = breaker_seconds
        self._new_id = new_id
        self._state_down_until = 0.0

    async def score(self, txn: Transaction, deadline: float | None = None) -> StoredDecision:
        """Decide on `txn`; `deadline` is the seconds the caller still waits, if known."""
        inputs_hash = txn.inputs_hash()
        existing = await self._decisions.by_transaction(txn.transaction_id)
        if existing is not None:
            return _same_request(existing, inputs_hash)

        assessment, features, fallback = await self._assess(txn, deadline)
        decision = StoredDecision(
            decision_id=self._new_id(),
            transaction_id=txn.transaction_id,
            inputs_hash=inputs_hash,
            inputs=txn.canonical(),
            features=features,
            score=assessment.score,
            rules_score=assessment.rules_score,
            model_score=assessment.model_score,
            decision=assessment.decision,
            reason_codes=assessment.reason_codes,
            ruleset_version=self.ruleset.version,
            model_version=self.model.version,
            fallback=fallback,
            created_at=self._clock.now(),
        )
        stored = await self._decisions.insert(decision)
        return (
            stored
            if stored.decision_id == decision.decision_id
            else _same_request(stored, inputs_hash)
        )

    async def _assess(
        self, txn: Transaction, deadline: float | None
    ) -> tuple[Assessment, dict[str, float], bool]:
        budget = self.state_timeout
        if deadline is not None:
            budget = min(budget, max(deadline - DEADLINE_RESERVE, 0.0))
        if budget > 0 and time.monotonic() >= self._state_down_until:
            try:
                history = await asyncio.wait_for(self._state.observe(txn), budget)
            except (StateUnavailable, TimeoutError) as exc:
                self._state_down_until = time.monotonic() + self.breaker_seconds
                log.warning(
                    "velocity state unavailable (%s); fallback decisions for %.1fs",
                    type(exc).__name__ if isinstance(exc, TimeoutError) else exc,
                    self.breaker_seconds,
                )
            else:
                features = compute_features(txn, history, self.ruleset.state.windows_seconds)
                return assess(txn, features, self.ruleset, self.model.full), features, False
        features = stateless_features(txn)
        return assess_fallback(txn, features, self.ruleset, self.model.stateless), features, True

    @property
    def state_available(self) -> bool:
        """False while the breaker keeps the state store out of the request path."""
        return time.monotonic() >= self._state_down_until

    async def replay(self, decision_id: str) -> ReplayResult:
        original = await self._decisions.get(decision_id)
        if original is None:
            raise DecisionNotFound(f"no decision {decision_id}", field="decision_id")
        txn = Transaction.from_canonical(original.inputs)
        if original.fallback:
            recomputed = assess_fallback(txn, original.features, self.ruleset, self.model.stateless)
        else:
            recomputed = assess(txn, original.features, self.ruleset, self.model.full)
        same_versions = (original.ruleset_version, original.model_version) == (
            self.ruleset.version,
            self.model.version,
        )
        differences = []
        if not same_versions:
            differences.append(
                f"decided by ruleset {original.ruleset_version} / model "
                f"{original.model_version}, replayed with {self.ruleset.version} / "
                f"{self.model.version}"
            )
        for what, was, now in (
            ("score", original.score, recomputed.score),
            ("decision", original.decision, recomputed.decision),
            ("reason codes", original.reason_codes, recomputed.reason_codes),
        ):
            if was != now:
                differences.append(f"{what}: stored {was!r}, recomputed {now!r}")
        return ReplayResult(
            original=original,
            recomputed=recomputed,
            same_versions=same_versions,
            matches=not differences,
            differences=tuple(differences),
        )


def _same_request(stored: StoredDecision, inputs_hash: str) -> StoredDecision:
    if stored.inputs_hash != inputs_hash:
        raise DecisionConflict(
            f"transaction {stored.transaction_id} was scored before with other inputs",
            field="transaction_id",
        )
    return stored
