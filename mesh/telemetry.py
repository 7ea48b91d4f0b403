"""Tracing setup: one TracerProvider per process, named after the service.

Spans go to a JSON-lines file when BANKMESH_TRACE_FILE is set (what
`bankmesh up` does, one file per service under the data directory), so a
trace can be followed without running a collector; tests install an
in-memory exporter instead. Spans are exported in batches off the request path.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)


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


def configure_tracing(service: str, exporter: SpanExporter | None = None) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if exporter is None and os.environ.get("BANKMESH_TRACE_FILE"):
        exporter = JsonLinesExporter(Path(os.environ["BANKMESH_TRACE_FILE"]))
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider
