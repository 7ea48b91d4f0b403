"""Tracing setup: one TracerProvider per process, named after the service.

Spans go to a JSON-lines file when BANKMESH_TRACE_FILE is set (what
`bankmesh up` does, one file per service under the data directory), so a
trace can be followed without running a collector; tests install an
in-memory exporter instead. Spans are exported in batches off the request path.

Sampling: a call that continues a caller's trace follows the caller's decision
(so a payment is traced in every service or in none), and a process starts at
most `BANKMESH_TRACE_ROOTS_PER_SECOND` new traces a second (default 20). A
person trying the mesh sees every one of their calls traced; under load,
recording and exporting every span would cost a busy service a sixth of its
CPU (docs/performance.md). The standard `OTEL_TRACES_SAMPLER` variables,
when set, take precedence.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import Attributes

DEFAULT_ROOTS_PER_SECOND = 20.0


class JsonLinesExporter(SpanExporter):
    """Appends one JSON object per span: ids, name, service, times and attributes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            ctx = span.get_span_context()
            if ctx is None:
                continue
            lines.append(
                json.dumps(
                    {
                        "trace_id": format(ctx.trace_id, "032x"),
                        "span_id": format(ctx.span_id, "016x"),
                        "parent_id": format(span.parent.span_id, "016x") if span.parent else "",
                        "name": span.name,
                        "service": span.resource.attributes.get("service.name", ""),
                        "start_ns": span.start_time,
                        "end_ns": span.end_time,
                        "status": span.status.status_code.name,
                        "attributes": dict(span.attributes or {}),
                    },
                    default=str,
                )
            )
        with self._lock, self._path.open("a") as out:
            out.write("".join(line + "\n" for line in lines))
        return SpanExportResult.SUCCESS


class RateLimitedSampler(Sampler):
    """Samples at most `per_second` traces a second (a token bucket), all of them below that.

    What Jaeger's clients do by default: complete traces at low traffic, a
    bounded cost at high traffic. Time comes from `clock` so tests can step it.
    """

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        if per_second < 0:
            raise ValueError("traces per second cannot be negative")
        self._rate = per_second
        self._capacity = max(per_second, 1.0)
        self._tokens = self._capacity
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        with self._lock:
            now = self._clock()
            self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
            self._last = now
            sampled = self._tokens >= 1.0
            if sampled:
                self._tokens -= 1.0
        if not sampled:
            return SamplingResult(Decision.DROP, trace_state=trace_state)
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, trace_state)

    def get_description(self) -> str:
        return f"RateLimitedSampler{{{self._rate}/s}}"


def default_sampler() -> Sampler | None:
    """None (the SDK reads OTEL_TRACES_SAMPLER) when that is set, else ours."""
    if os.environ.get("OTEL_TRACES_SAMPLER"):
        return None
    per_second = float(os.environ.get("BANKMESH_TRACE_ROOTS_PER_SECOND", DEFAULT_ROOTS_PER_SECOND))
    return ParentBased(RateLimitedSampler(per_second))


def configure_tracing(service: str, exporter: SpanExporter | None = None) -> TracerProvider:
    provider = TracerProvider(
        resource=Resource.create({"service.name": service}), sampler=default_sampler()
    )
    if exporter is None and os.environ.get("BANKMESH_TRACE_FILE"):
        exporter = JsonLinesExporter(Path(os.environ["BANKMESH_TRACE_FILE"]))
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider
