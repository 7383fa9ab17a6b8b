"""Resource samples: host CPU and every child's CPU and RSS, once a second (psutil).

A run emulates capacities with token buckets; that only holds while the host has CPU to spare.
When the host's CPU stays saturated, peers fall behind their buckets and the measured times say
more about the machine than about the protocol. The summary flags it (docs/run-directory.md).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

SATURATED_CPU = 90.0
"""Host CPU percent (of all cores) above which a sample counts as saturated."""
SATURATED_FRACTION = 0.10
SATURATED_RUN_SECONDS = 5.0


class ResourceSampler:
    """Appends one line per ``sample()`` to resources.jsonl and keeps the host CPU series.

    psutil's ``cpu_percent`` measures since the previous call on the same object, so process
    objects are cached by pid (a reused pid under another name gets a new object).
    """

    def __init__(self, path: Path | None) -> None:
        self._file: IO[str] | None = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115
        self._procs: dict[str, psutil.Process] = {}
        self.cpus = psutil.cpu_count() or os.cpu_count() or 1
        self.times: list[float] = []
        self.host_cpu: list[float] = []
        psutil.cpu_percent(interval=None)  # starts the host's interval

    def sample(self, t: float, pids: Mapping[str, int]) -> dict[str, Any]:
        host = psutil.cpu_percent(interval=None)
        procs: dict[str, dict[str, Any]] = {}
        for name, pid in pids.items():
            proc = self._procs.get(name)
            if proc is None or proc.pid != pid:
                try:
                    proc = psutil.Process(pid)
                    proc.cpu_percent(interval=None)  # first call only starts its interval
                except psutil.Error:
                    continue
                self._procs[name] = proc
                first = True
            else:
                first = False
            try:
                with proc.oneshot():
                    cpu = proc.cpu_percent(interval=None)
                    rss = proc.memory_info().rss
            except psutil.Error:  # exited since: nothing to report
                self._procs.pop(name, None)
                continue
            procs[name] = {"pid": pid, "cpu": None if first else round(cpu, 1), "rss": rss}
        for name in set(self._procs) - set(pids):
            del self._procs[name]
        record = {"t": round(t, 3), "host_cpu": round(host, 1), "cpus": self.cpus,
                  "procs": procs}
        self.times.append(t)
        self.host_cpu.append(host)
        if self._file is not None:
            self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._file.flush()
        return record

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass(frozen=True, slots=True)
class CpuSummary:
    host_mean: float | None
    host_p95: float | None
    saturated_seconds: float
    longest_saturated: float
    saturated: bool
    warning: str | None

    def to_json(self) -> dict[str, Any]:
        return {"host_mean": self.host_mean, "host_p95": self.host_p95,
                "saturated_seconds": self.saturated_seconds,
                "longest_saturated_seconds": self.longest_saturated,
                "saturated": self.saturated, "warning": self.warning}


def summarize_cpu(times: Sequence[float], host_cpu: Sequence[float],
                  duration: float) -> CpuSummary:
    """Mean, 95th percentile and saturation of the host CPU series.

    Each sample covers the interval since the previous one. Saturated: above 90 % for more
    than 10 % of the run, or for 5 s in a row.
    """
    if not host_cpu:
        return CpuSummary(None, None, 0.0, 0.0, False, None)
    ordered = sorted(host_cpu)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    saturated = 0.0
    run = longest = 0.0
    previous = 0.0
    for t, cpu in zip(times, host_cpu, strict=True):
        span = max(0.0, t - previous)
        previous = t
        if cpu > SATURATED_CPU:
            saturated += span
            run += span
            longest = max(longest, run)
        else:
            run = 0.0
    flag = (duration > 0 and saturated > SATURATED_FRACTION * duration) or (
        longest >= SATURATED_RUN_SECONDS)
    warning = None
    if flag:
        warning = (f"host CPU was above {SATURATED_CPU:.0f}% for {saturated:.0f} s of "
                   f"{duration:.0f} s (longest stretch {longest:.0f} s): peers could not keep "
                   "up with their token buckets, so times reflect the machine as much as the "
                   "protocol")
    return CpuSummary(round(sum(host_cpu) / len(host_cpu), 1), round(p95, 1),
                      round(saturated, 1), round(longest, 1), flag, warning)
