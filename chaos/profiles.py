"""How big and how long a chaos run is.

``short`` runs in the test suite (tests/e2e/test_chaos.py): every fault kind
once, short windows, about a minute with the mesh's start. ``long`` is
``make chaos``: every kind twice, longer windows and a longer calm after
each, so each recovery can be measured on its own, a few minutes in all.

A run is bounded in count and in time: ``max_intents`` payments at most, a
fixed number of clients each with one request in flight, every try with a
deadline, and a fixed schedule; its load goes only to 127.0.0.1.
"""

from __future__ import annotations

from dataclasses import dataclass

from chaos.faults import KINDS, Fault


@dataclass(frozen=True)
class Profile:
    name: str
    accounts: int
    funding: int  # minor units each account starts with
    grpc_payers: int
    rest_payers: int
    grpc_readers: int
    rest_readers: int
    read_pause: float
    baseline: float  # seconds of load before the first fault
    faults: tuple[Fault, ...]
    gap: float  # seconds of calm after each fault
    calm: float  # seconds of load after the last fault
    intent_budget: float  # seconds a client keeps retrying one payment
    settle_budget: float  # seconds to acknowledge what was never acknowledged, after the faults
    final_within: float  # seconds every payment has to reach a final status after that
    duplicate_rate: float  # share of acknowledged payments sent again with their key
    max_intents: int


def _each(times: int, duration: float, rotate: float) -> tuple[Fault, ...]:
    rounds = [
        Fault(kind, rotate if kind == "cert-rotate" else duration)
        for _ in range(times)
        for kind in KINDS
    ]
    return tuple(rounds)


PROFILES = {
    "short": Profile(
        name="short",
        accounts=8,
        funding=1_000_000,
        grpc_payers=6,
        rest_payers=2,
        grpc_readers=1,
        rest_readers=1,
        read_pause=0.1,
        baseline=4.0,
        faults=_each(1, 1.5, 1.0),
        gap=1.0,
        calm=3.0,
        intent_budget=8.0,
        settle_budget=20.0,
        final_within=30.0,
        duplicate_rate=0.1,
        max_intents=20_000,
    ),
    "long": Profile(
        name="long",
        accounts=16,
        funding=1_000_000,
        grpc_payers=10,
        rest_payers=3,
        grpc_readers=2,
        rest_readers=1,
        read_pause=0.1,
        baseline=15.0,
        faults=_each(2, 5.0, 2.0),
        gap=7.0,
        calm=15.0,
        intent_budget=15.0,
        settle_budget=30.0,
        final_within=60.0,
        duplicate_rate=0.1,
        max_intents=200_000,
    ),
}
