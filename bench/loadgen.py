"""The load generator: client processes, each an asyncio loop with grpc.aio channels.

``ClientPool(n)`` starts ``n`` processes once (``spawn``: a forked child would
inherit gRPC's threads from the parent's setup calls, which gRPC does not
support) and reuses them for every measurement. ``run`` splits a
concurrency over them (1 runs in one process; 64 over two is 32 + 32),
and each process keeps that many requests in flight, one after another per
task (a closed loop), on ``connections`` channels of its own.

One measurement, in three steps so every process measures the same window:

1. each process opens its connections (TLS handshakes included) and says ready;
2. the parent sends one start instant (``time.monotonic`` is one clock for
   the whole machine on Linux); requests completing in the first ``warmup``
   seconds are not counted, then ``duration`` seconds are;
3. each process sends back its latencies (microseconds), outcome and error
   counts, and the CPU time it used inside the window
   (``resource.getrusage``), so the report can show whether the load
   generator itself was short of CPU.

Throughput is completions inside the window over its length; a request still
in flight when the window closes is not counted, and one still in flight
``DRAIN`` seconds later is cancelled and counted as an ``UNFINISHED`` error.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import multiprocessing.connection
import random
import resource
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

import grpc.aio

from bench.workloads import HttpError, Workload

# Errors kept verbatim per measurement, to say what went wrong without a log dive.
_KEPT_ERRORS = 5
# Seconds a request may run past the window before it counts as stuck.
DRAIN = 5.0
UNFINISHED = "UNFINISHED"


@dataclass
class Job:
    workload: Workload
    concurrency: int
    connections: int
    warmup: float
    duration: float
    seed: int


@dataclass
class WorkerResult:
    latencies_us: list[int]
    outcomes: Counter[str]
    tags: Counter[str]
    errors: Counter[str]
    error_samples: list[str]
    cpu_seconds: float
    window: float


@dataclass
class Measurement:
    """The merged result of one concurrency level over all client processes."""

    concurrency: int
    duration: float
    latencies_us: list[int]
    outcomes: Counter[str] = field(default_factory=Counter)
    tags: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    loadgen_cpu_seconds: float = 0.0
    processes: int = 1
    window: tuple[float, float] = (0.0, 0.0)

    @property
    def completed(self) -> int:
        return len(self.latencies_us)

    @property
    def rps(self) -> float:
        return self.completed / self.duration if self.duration > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        """Nearest-rank percentile ``q`` (0..1) of the successful requests' latencies."""
        if not self.latencies_us:
            return 0.0
        ordered = sorted(self.latencies_us)
        rank = max(1, min(len(ordered), math.ceil(q * len(ordered))))
        return ordered[rank - 1] / 1000.0

    @property
    def loadgen_cores(self) -> float:
        """CPU cores the client processes used together over the window."""
        return self.loadgen_cpu_seconds / self.duration if self.duration > 0 else 0.0


class WorkerFailed(Exception):
    """A client process could not run its part; the message carries its traceback."""


def split(concurrency: int, processes: int) -> list[int]:
    """``concurrency`` in-flight requests over at most ``processes`` processes, evenly."""
    used = max(1, min(processes, concurrency))
    base, extra = divmod(concurrency, used)
    return [base + (1 if i < extra else 0) for i in range(used)]


class ClientPool:
    """``size`` long-lived client processes; ``run`` measures one concurrency level with them."""

    def __init__(self, size: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.size = size
        self._pipes: list[multiprocessing.connection.Connection] = []
        self._processes: list[BaseProcess] = []
        for index in range(size):
            parent, child = context.Pipe()
            process = context.Process(
                target=_worker_main, args=(child,), name=f"bench-client-{index}", daemon=True
            )
            process.start()
            child.close()
            self._pipes.append(parent)
            self._processes.append(process)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p.pid is not None]

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        for pipe in self._pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)
        for process in self._processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
        self._pipes.clear()
        self._processes.clear()

    def run(
        self,
        workload: Workload,
        concurrency: int,
        *,
        warmup: float,
        duration: float,
        seed: int,
        connections_per_process: int = 4,
        on_start: Callable[[float], None] | None = None,
        tick: Callable[[], None] | None = None,
    ) -> Measurement:
        """Measure ``workload`` at ``concurrency``; ``on_start`` gets the start instant."""
        shares = split(concurrency, self.size)
        pipes = self._pipes[: len(shares)]
        for index, (pipe, share) in enumerate(zip(pipes, shares, strict=True)):
            connections = max(1, min(connections_per_process, share))
            pipe.send(Job(workload, share, connections, warmup, duration, seed * 1000 + index))
        for pipe in pipes:
            _expect(_receive(pipe, tick), "ready")
        start = time.monotonic() + 0.05
        for pipe in pipes:
            pipe.send(start)
        if on_start is not None:
            on_start(start)
        results = [_receive(pipe, tick) for pipe in pipes]
        merged = Measurement(
            concurrency=concurrency,
            duration=duration,
            latencies_us=[],
            processes=len(pipes),
            window=(start + warmup, start + warmup + duration),
        )
        for result in results:
            if not isinstance(result, WorkerResult):
                raise WorkerFailed(f"a client process answered {result!r}")
            merged.latencies_us.extend(result.latencies_us)
            merged.outcomes.update(result.outcomes)
            merged.tags.update(result.tags)
            merged.errors.update(result.errors)
            merged.error_samples.extend(result.error_samples)
            merged.loadgen_cpu_seconds += result.cpu_seconds
        merged.error_samples = merged.error_samples[:_KEPT_ERRORS]
        return merged


def _receive(pipe: multiprocessing.connection.Connection, tick: Callable[[], None] | None) -> Any:
    while not pipe.poll(0.1):
        if tick is not None:
            tick()
    message = pipe.recv()
    if isinstance(message, WorkerFailed):
        raise message
    return message


def _expect(message: object, expected: str) -> None:
    if message != expected:
        raise WorkerFailed(f"a client process answered {message!r}, expected {expected!r}")


# -- inside a client process ------------------------------------------------------


def _worker_main(pipe: multiprocessing.connection.Connection) -> None:
    while True:
        try:
            job = pipe.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            result = asyncio.run(_run_job(job, pipe))
        except Exception:
            pipe.send(WorkerFailed(traceback.format_exc()))
            continue
        pipe.send(result)


def _cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _run_job(job: Job, pipe: multiprocessing.connection.Connection) -> WorkerResult:
    workload = job.workload
    await workload.start(job.connections)
    try:
        pipe.send("ready")
        loop = asyncio.get_running_loop()
        start = await loop.run_in_executor(None, pipe.recv)
        return await _measure(job, float(start))
    finally:
        await workload.stop()


async def _measure(job: Job, start: float) -> WorkerResult:
    workload = job.workload
    measure_from = start + job.warmup
    end = measure_from + job.duration
    latencies: list[int] = []
    outcomes: Counter[str] = Counter()
    tags: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    samples: list[str] = []
    cpu: list[float] = []

    async def client(index: int) -> None:
        # Seeded for repeatable request streams; nothing here is a secret.
        rng = random.Random(job.seed * 10_000 + index)  # noqa: S311
        while True:
            began = time.monotonic()
            if began >= end:
                return
            try:
                labels = await workload.call(rng)
            except grpc.aio.AioRpcError as exc:
                counted = measure_from <= time.monotonic() <= end
                if counted:
                    errors[exc.code().name] += 1
                    if len(samples) < _KEPT_ERRORS:
                        samples.append(f"{exc.code().name}: {exc.details()}")
                continue
            except (HttpError, OSError, ValueError) as exc:
                if measure_from <= time.monotonic() <= end:
                    errors[type(exc).__name__] += 1
                    if len(samples) < _KEPT_ERRORS:
                        samples.append(f"{type(exc).__name__}: {exc}")
                continue
            finished = time.monotonic()
            if measure_from <= finished <= end:
                latencies.append(int((finished - began) * 1_000_000))
                outcomes[labels[0]] += 1
                tags.update(labels[1:])

    async def clock() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
        cpu.append(_cpu_now())
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        cpu.append(_cpu_now())

    await asyncio.sleep(max(0.0, start - time.monotonic()))
    timer = asyncio.create_task(clock())
    clients = [asyncio.create_task(client(i)) for i in range(job.concurrency)]
    await timer
    # A request still running DRAIN seconds after the window is stuck, not slow:
    # cancel it and count it, so a stalled service fails the level instead of
    # holding the run until its deadline.
    _, stuck = await asyncio.wait(clients, timeout=DRAIN)
    for task in stuck:
        task.cancel()
    await asyncio.gather(*clients, return_exceptions=True)
    if stuck:
        errors[UNFINISHED] += len(stuck)
        samples.append(
            f"{UNFINISHED}: {len(stuck)} requests still running {DRAIN:g}s after the window"
        )
    return WorkerResult(
        latencies_us=latencies,
        outcomes=outcomes,
        tags=tags,
        errors=errors,
        error_samples=samples,
        cpu_seconds=cpu[1] - cpu[0] if len(cpu) == 2 else 0.0,
        window=job.duration,
    )
