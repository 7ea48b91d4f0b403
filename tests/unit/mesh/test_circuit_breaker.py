"""The client circuit breaker: opens on repeated outages, not on business refusals."""

from __future__ import annotations

from typing import Any

import grpc
import grpc.aio
import pytest

from mesh.interceptors.outbound import CircuitBreaker, CircuitOpen


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Outcome:
    """A stand-in for a grpc.aio call: awaiting it raises or returns."""

    def __init__(self, code: grpc.StatusCode) -> None:
        self.code = code

    def __await__(self) -> Any:
        if self.code is not grpc.StatusCode.OK:
            raise grpc.aio.AioRpcError(
                self.code, grpc.aio.Metadata(), grpc.aio.Metadata(), "x", "x"
            )
        yield from []
        return "response"


async def call(breaker: CircuitBreaker, code: grpc.StatusCode) -> grpc.StatusCode:
    calls = []

    async def continuation(details: Any, request: Any) -> Outcome:
        calls.append(1)
        return Outcome(code)

    try:
        await breaker.intercept_unary_unary(continuation, None, None)  # type: ignore[arg-type]
    except CircuitOpen:
        return grpc.StatusCode.CANCELLED if not calls else code
    except grpc.aio.AioRpcError as e:
        return e.code()
    return grpc.StatusCode.OK


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def test_the_circuit_opens_after_repeated_outages_and_fails_fast(clock: FakeClock) -> None:
    """After `threshold` UNAVAILABLEs, calls fail at once without reaching the server."""
    breaker = CircuitBreaker("account", threshold=3, cooldown=2.0, clock=clock)
    for _ in range(3):
        assert await call(breaker, grpc.StatusCode.UNAVAILABLE) is grpc.StatusCode.UNAVAILABLE
    assert breaker.state == "open"
    # CANCELLED here means "refused by the breaker before any call was made".
    assert await call(breaker, grpc.StatusCode.OK) is grpc.StatusCode.CANCELLED


async def test_a_trial_call_after_the_cooldown_closes_the_circuit(clock: FakeClock) -> None:
    """Half-open lets one call through; its success closes the circuit."""
    breaker = CircuitBreaker("account", threshold=1, cooldown=2.0, clock=clock)
    await call(breaker, grpc.StatusCode.UNAVAILABLE)
    clock.now += 2.5
    assert breaker.state == "half-open"
    assert await call(breaker, grpc.StatusCode.OK) is grpc.StatusCode.OK
    assert breaker.state == "closed"


async def test_a_failed_trial_reopens_the_circuit(clock: FakeClock) -> None:
    """If the trial call fails too, the circuit opens for another cooldown."""
    breaker = CircuitBreaker("account", threshold=1, cooldown=2.0, clock=clock)
    await call(breaker, grpc.StatusCode.UNAVAILABLE)
    clock.now += 2.5
    await call(breaker, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert breaker.state == "open"


async def test_business_refusals_never_open_the_circuit(clock: FakeClock) -> None:
    """A stream of FAILED_PRECONDITION (e.g. insufficient funds) means the service is fine."""
    breaker = CircuitBreaker("account", threshold=2, clock=clock)
    for _ in range(10):
        await call(breaker, grpc.StatusCode.FAILED_PRECONDITION)
    assert breaker.state == "closed"
