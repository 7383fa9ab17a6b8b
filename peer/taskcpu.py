"""Where a peer's CPU goes, by what woke it: a trio instrument (a developer aid, off by default).

Sampling profilers mislead here: py-spy's ``--gil`` mode counts a process preempted while it
holds the GIL as busy where it stopped, and cProfile's per-call cost inflates call-heavy code
(trio's loop most of all). This instrument reads the thread's CPU clock around every task step
instead, and charges the step to the innermost coroutine of the peer's own code that the task
resumed in (``Connection.write``, ``TokenBucket.take``, ``Connection._read_socket``, ...); the
CPU between steps goes to trio's scheduler, and that of returning from the wait for I/O (the
kernel's ``epoll_wait`` and the process's wake-up) to ``(waking up)``. The cyclic garbage
collector's passes are timed too, by generation (``gc generation N (within the steps)``): they
run inside whichever step allocated, so they are also part of those. Enabled by ``python -m
peer`` when ``BT_TESTBED_TASK_CPU`` names a directory: one ``<peer>.json`` each, summed by
``python -m bench.task_cpu``.
"""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path
from types import CoroutineType
from typing import Any

import trio

SCHEDULER = "(trio scheduler)"
WAKING = "(waking up)"
BEFORE_RUN = "(process start, before trio.run)"
AFTER_RUN = "(after trio.run)"
OUR_CODE = ("/peer/", "/tracker/")


def gc_key(generation: int) -> str:
    return f"gc generation {generation} (within the steps)"


def resumed_in(task: trio.lowlevel.Task) -> str:
    """The qualified name of the innermost coroutine of our code in the task's await chain
    (the task's own name when none is ours)."""
    name = None
    coro: Any = task.coro
    while coro is not None:
        code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
        if code is not None and any(part in code.co_filename for part in OUR_CODE):
            name = code.co_qualname
        coro = coro.cr_await if isinstance(coro, CoroutineType) else \
            getattr(coro, "gi_yieldfrom", None)
    return name or task.name


class TaskCpu(trio.abc.Instrument):
    """Thread CPU seconds and steps, by where each task step resumed."""

    def __init__(self) -> None:
        self.totals: dict[str, list[float]] = {}
        self._clock = time.thread_time
        self._since = self._clock()
        self._step: str | None = None
        self._gc_since = 0.0
        self._after_run_since: float | None = None

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        now = self._clock()
        if phase == "start":
            self._gc_since = now
            return
        entry = self.totals.setdefault(gc_key(info["generation"]), [0.0, 0])
        entry[0] += now - self._gc_since
        entry[1] += 1

    def before_run(self) -> None:
        # A forked child's process clock starts at zero: this is its whole start-up.
        self.totals[BEFORE_RUN] = [time.process_time(), 1]
        gc.callbacks.append(self._on_gc)

    def after_run(self) -> None:
        gc.callbacks.remove(self._on_gc)
        self._after_run_since = time.process_time()

    def _charge(self, key: str, now: float) -> None:
        entry = self.totals.get(key)
        if entry is None:
            entry = self.totals[key] = [0.0, 0]
        entry[0] += now - self._since
        entry[1] += 1
        self._since = now

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._charge(SCHEDULER, self._clock())
        self._step = resumed_in(task)

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        assert self._step is not None
        self._charge(self._step, self._clock())

    def before_io_wait(self, timeout: float) -> None:
        self._charge(SCHEDULER, self._clock())

    def after_io_wait(self, timeout: float) -> None:
        self._charge(WAKING, self._clock())

    def dump(self, path: str | Path) -> None:
        """Write ``{"process_cpu": s, "by_step": {where: [seconds, steps]}}``."""
        path = Path(path)
        if self._after_run_since is not None:
            self.totals[AFTER_RUN] = [time.process_time() - self._after_run_since, 1]
        partial = path.with_name(path.name + ".part")  # a peer SIGKILLed mid-write leaves no file
        partial.write_text(json.dumps({"process_cpu": time.process_time(),
                                       "by_step": self.totals}), encoding="utf-8")
        partial.replace(path)
