"""Trace sampling: every trace at a person's pace, a bounded number under load."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, ParentBased

from mesh.telemetry import RateLimitedSampler, default_sampler


class SteppedClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def decisions(sampler: RateLimitedSampler, count: int) -> list[bool]:
    return [
        sampler.should_sample(None, trace_id, "call").decision is Decision.RECORD_AND_SAMPLE
        for trace_id in range(1, count + 1)
    ]


def test_a_burst_is_sampled_up_to_the_rate_then_dropped() -> None:
    sampler = RateLimitedSampler(5, clock=SteppedClock())
    assert decisions(sampler, 8) == [True] * 5 + [False] * 3


def test_the_budget_refills_with_time_and_never_beyond_one_second_of_it() -> None:
    clock = SteppedClock()
    sampler = RateLimitedSampler(5, clock=clock)
    decisions(sampler, 5)
    clock.now += 0.4  # two traces' worth
    assert decisions(sampler, 3) == [True, True, False]
    clock.now += 60  # a long quiet spell saves up one second's worth, not sixty
    assert decisions(sampler, 7) == [True] * 5 + [False] * 2


def test_a_rate_below_one_still_samples_the_first_trace() -> None:
    clock = SteppedClock()
    sampler = RateLimitedSampler(0.5, clock=clock)
    assert decisions(sampler, 2) == [True, False]
    clock.now += 2
    assert decisions(sampler, 1) == [True]


def test_a_negative_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        RateLimitedSampler(-1)


def test_children_follow_the_callers_decision_whatever_the_budget() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(RateLimitedSampler(1, clock=SteppedClock())))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("sampled root"):
        for _ in range(3):  # the budget is spent, but these continue a sampled trace
            with tracer.start_as_current_span("child"):
                pass
    with (
        tracer.start_as_current_span("second root"),  # no budget left: dropped
        tracer.start_as_current_span("child of a dropped root"),
    ):
        pass
    assert [span.name for span in exporter.get_finished_spans()] == [
        "child",
        "child",
        "child",
        "sampled root",
    ]


def test_the_standard_otel_variable_takes_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    assert default_sampler() is None  # the SDK reads the variable itself


def test_the_rate_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    monkeypatch.setenv("BANKMESH_TRACE_ROOTS_PER_SECOND", "3")
    sampler = default_sampler()
    assert sampler is not None
    assert "3.0/s" in sampler.get_description()
