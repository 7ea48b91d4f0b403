"""Memory and CPU of processes, read from /proc while a load runs.

``Sampler`` is a thread that reads, every ``interval`` seconds, each watched
process's resident set (``VmRSS`` in ``/proc/<pid>/status``) and CPU time
(``utime + stime`` in ``/proc/<pid>/stat``), plus the machine's busy time from
``/proc/stat``. From the samples: the largest RSS of each process, and how
many cores each used (and the machine was busy) between two instants.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

_TICKS = os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int | None:
    """The process's resident set size now, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time the process has used so far, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after it.
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _TICKS


def machine_busy_seconds() -> float:
    """CPU time all cores have spent not idle since boot (``/proc/stat``), in seconds."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    # guest time is already counted in user/nice.
    total = sum(values[:8])
    return (total - idle) / _TICKS


@dataclass
class _Sample:
    at: float
    cpu: dict[str, float]
    machine_busy: float


@dataclass
class Sampler:
    """Samples ``pids`` (name -> pid) every ``interval`` seconds until stopped."""

    pids: Mapping[str, int]
    interval: float = 0.2
    max_rss: dict[str, int] = field(default_factory=dict)
    _samples: list[_Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        cpu: dict[str, float] = {}
        for name, pid in self.pids.items():
            rss = rss_bytes(pid)
            if rss is not None:
                self.max_rss[name] = max(rss, self.max_rss.get(name, 0))
            used = cpu_seconds(pid)
            if used is not None:
                cpu[name] = used
        self._samples.append(_Sample(time.monotonic(), cpu, machine_busy_seconds()))

    def cores_between(self, start: float, end: float) -> tuple[dict[str, float], float]:
        """Cores each process used, and cores the machine was busy, from ``start`` to ``end``.

        ``start`` and ``end`` are ``time.monotonic()`` instants; the samples
        nearest inside them are used, so the window is at most one interval short.
        """
        inside = [s for s in self._samples if start <= s.at <= end]
        if len(inside) < 2:
            inside = self._samples[-2:] if len(self._samples) >= 2 else []
        if len(inside) < 2:
            return {}, 0.0
        first, last = inside[0], inside[-1]
        wall = last.at - first.at
        if wall <= 0:
            return {}, 0.0
        per_process = {
            name: (last.cpu[name] - first.cpu[name]) / wall
            for name in last.cpu
            if name in first.cpu
        }
        return per_process, (last.machine_busy - first.machine_busy) / wall
