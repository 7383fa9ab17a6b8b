"""Resource samples: host CPU and every child's CPU and RSS, once a second (psutil).

A run emulates capacities with token buckets; that only holds while the host has CPU to spare.
When the host's CPU stays saturated, peers fall behind their buckets and the measured times say
more about the machine than about the protocol. The summary flags it (docs/run-directory.md).

What competes with a run is the CPU used at its own priority or above. Processes niced below it
(a test suite under ``nice``, a build) yield the CPU whenever a peer wants it, so their share
(the kernel's "nice" time) is left out of the saturation guard when the run itself is not
niced; it is still logged (``host_cpu_niced``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from peer.eventlog import LineFile

SATURATED_CPU = 90.0
"""Host CPU percent (of all cores) above which a sample counts as saturated."""
SATURATED_FRACTION = 0.10
SATURATED_RUN_SECONDS = 5.0


class HostCpu:
    """Host CPU use between two readings, in percent of all cores: all of it, and the part
    spent in processes niced below this one (which yield to it)."""

    def __init__(self) -> None:
        self._last = psutil.cpu_times()
        # /proc/stat's "nice" time is that of processes with a positive nice value: lower
        # priority than ours only while we run at nice 0 or below.
        self._niced_yield = os.getpriority(os.PRIO_PROCESS, 0) <= 0

    def read(self) -> tuple[float, float, float]:
        """(busy, niced, competing) since the previous reading (or construction): competing
        is busy without the lower-priority work."""
        now = psutil.cpu_times()
        last, self._last = self._last, now
        fields = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
        delta = {f: max(0.0, getattr(now, f, 0.0) - getattr(last, f, 0.0)) for f in fields}
        total = sum(delta.values())
        if total <= 0:
            return 0.0, 0.0, 0.0
        busy = 100.0 * (total - delta["idle"] - delta["iowait"]) / total
        niced = 100.0 * delta["nice"] / total
        return busy, niced, max(0.0, busy - niced) if self._niced_yield else busy


class ResourceSampler:
    """Appends one line per ``sample()`` to resources.jsonl and keeps the host CPU series.

    A line that cannot be written (a full disk) is not left half-written: the OSError is
    raised with the file ending at its last complete line.

    psutil's ``cpu_percent`` measures since the previous call on the same object, so process
    objects are cached by pid (a reused pid under another name gets a new object).
    """

    def __init__(self, path: Path | None) -> None:
        self._file: LineFile | None = LineFile(path) if path else None
        self._procs: dict[str, psutil.Process] = {}
        self.cpus = psutil.cpu_count() or os.cpu_count() or 1
        self.times: list[float] = []
        self.host_cpu: list[float] = []
        """Per sample: the host CPU that competes with the run (``HostCpu.competing``)."""
        self._host = HostCpu()

    def sample(self, t: float, pids: Mapping[str, int]) -> dict[str, Any]:
        busy, niced, host = self._host.read()
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
        record = {"t": round(t, 3), "host_cpu": round(busy, 1),
                  "host_cpu_niced": round(niced, 1), "cpus": self.cpus, "procs": procs}
        self.times.append(t)
        self.host_cpu.append(host)
        if self._file is not None:
            self._file.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")
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
    than 10 % of the run, or for 5 s in a row. Samples before t = 0 (while the peers started
    ahead of the run start up) are logged but not judged: no peer exchanges anything then.
    """
    judged = [(t, cpu) for t, cpu in zip(times, host_cpu, strict=True) if t > 0]
    times = [t for t, _ in judged]
    host_cpu = [cpu for _, cpu in judged]
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
