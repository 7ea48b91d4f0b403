"""How long and how wide a run is.

``quick`` (``make bench``) takes a few minutes; ``full`` (``make bench-full``)
measures six times longer per level for steadier tails; ``smoke`` is the
tiny run the test suite uses to check the harness end to end in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Profile:
    name: str
    # In-flight requests of each gRPC measurement.
    levels: tuple[int, ...]
    # Seconds per level: not counted, then counted.
    warmup: float
    duration: float
    # Accounts opened and funded for the ledger and payment scenarios.
    accounts: int
    pgbench_scale: int
    pgbench_clients: tuple[int, ...]

    def with_overrides(
        self,
        *,
        duration: float | None = None,
        accounts: int | None = None,
        levels: tuple[int, ...] | None = None,
    ) -> Profile:
        return replace(
            self,
            duration=self.duration if duration is None else duration,
            accounts=self.accounts if accounts is None else accounts,
            levels=self.levels if levels is None else levels,
        )


PROFILES = {
    "smoke": Profile(
        name="smoke",
        levels=(8,),
        warmup=0.3,
        duration=1.0,
        accounts=40,
        pgbench_scale=1,
        pgbench_clients=(4,),
    ),
    "quick": Profile(
        name="quick",
        levels=(1, 16, 64),
        warmup=1.0,
        duration=5.0,
        accounts=10_000,
        pgbench_scale=10,
        pgbench_clients=(1, 16, 64),
    ),
    "full": Profile(
        name="full",
        levels=(1, 16, 64),
        warmup=3.0,
        duration=30.0,
        accounts=10_000,
        pgbench_scale=10,
        pgbench_clients=(1, 16, 64),
    ),
}
