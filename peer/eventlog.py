"""JSON-lines event logs and the run clock they are stamped with.

Every process of a run stamps its events with seconds since the run's start on the system-wide
monotonic clock, handed over by the orchestrator: trio's own clock has a random per-process
offset, so it cannot line up events of different processes. The clock is an object so tests can
drive it by hand.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

SCHEMA_VERSION = 1
EXIT_WRITE_FAILED = 74
"""Exit status of a process that stopped because it could not write its log (sysexits'
EX_IOERR): the orchestrator reads it as "this process's files could not be written"."""


class LogWriteError(Exception):
    """A log could not be written (disk full, I/O error). Not an OSError on purpose: code that
    treats OSError as a network failure (a connection closing) must not swallow it."""

    def __init__(self, path: str, error: OSError) -> None:
        self.path = path
        self.errno = error.errno
        self.strerror = error.strerror or str(error)
        super().__init__(f"cannot write {path}: {self.strerror}; the log was cut back to its "
                         "last complete line")


def first_write_error(group: BaseExceptionGroup[LogWriteError]) -> LogWriteError:
    """The first LogWriteError in ``group`` (trio wraps a task's error in nested groups)."""
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    assert isinstance(leaf, LogWriteError)
    return leaf


class LineFile:
    """Appends whole lines to a file and never leaves a partial one.

    Each ``write`` goes straight to the file (no user-space buffer that could be flushed half
    later); when it fails (disk full, a short write before the error) the file is truncated back
    to the end of the last complete write, which needs no free space, and the error is raised.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                                       0o644)
        self._complete = os.fstat(self._fd).st_size
        """File size at the end of the last complete write."""

    def write(self, data: bytes) -> None:
        """Append ``data`` (whole lines); on OSError the file is as it was before the call."""
        if self._fd is None:
            raise ValueError(f"{self.path} is closed")
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._complete)
            raise
        self._complete += len(data)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


_encode = json.JSONEncoder(separators=(",", ":")).encode
"""``json.dumps(record, separators=...)`` without building an encoder for every line."""


def clock_offset(ours: Callable[[], float], theirs: Callable[[], float],
                 rounds: int) -> tuple[float, float]:
    """``theirs`` minus ``ours``, and the uncertainty's bound: each reading of ``theirs`` is
    bracketed by two of ``ours`` and the tightest bracket of ``rounds`` is kept (its midpoint
    against their reading; off by at most half its width, which is returned). A reading
    delayed by preemption or a slow round trip only widens its own bracket."""
    best_width, offset = math.inf, 0.0
    for _ in range(rounds):
        before = ours()
        reading = theirs()
        after = ours()
        if after - before < best_width:
            best_width, offset = after - before, reading - (before + after) / 2
    return offset, best_width / 2


class RunClock:
    """Seconds since the run's start on CLOCK_MONOTONIC (shared by every process on the host)."""

    def __init__(self, run_start: float | None = None) -> None:
        self.run_start = time.monotonic() if run_start is None else run_start

    def now(self) -> float:
        return time.monotonic() - self.run_start


class EventLog:
    """Append-only JSON-lines log, buffered and flushed by the owner at least every second.

    Buffering matters: a busy peer logs hundreds of events a second, and a write system call
    for each would cost more CPU than the events themselves. The owner calls ``flush()`` from a
    periodic task, which bounds what a SIGKILL can lose.

    A write that fails (a full disk) leaves the file ending at its last complete line and
    raises ``LogWriteError``; from then on the log is dead: every later ``flush`` raises it
    again (so a caller that swallowed the first one still stops) and ``close`` closes quietly.
    """

    def __init__(self, path: str | Path | None, clock: RunClock,
                 stream: IO[str] | None = None) -> None:
        self.clock = clock
        self._pending: list[str] = []
        self._file: LineFile | None = None
        self._stream: IO[str] | None = stream
        self._name = str(path) if path is not None else "<stream>"
        if stream is None and path is not None:
            self._file = LineFile(path)
        self.failed: LogWriteError | None = None
        self.on_pending: Callable[[], None] | None = None
        """Called when a line is queued into an empty buffer: the owner schedules a flush."""
        self.records: list[dict[str, Any]] | None = (
            [] if self._file is None and self._stream is None else None)
        """When logging to nowhere (tests), events are kept here instead."""

    def emit(self, ev: str, **fields: Any) -> None:
        record = {"t": round(self.clock.now(), 4), "ev": ev, **fields}
        if self.records is not None:
            self.records.append(record)
            return
        if not self._pending and self.on_pending is not None:
            self.on_pending()
        self._pending.append(_encode(record))

    def flush(self) -> None:
        """Write the pending lines; raises ``LogWriteError`` if they (or an earlier flush)
        could not be written."""
        if self.failed is not None:
            self._pending.clear()
            raise self.failed
        if not self._pending:
            return
        text = "\n".join(self._pending) + "\n"
        self._pending.clear()
        try:
            if self._file is not None:
                self._file.write(text.encode("utf-8"))
            elif self._stream is not None:
                self._stream.write(text)
                self._stream.flush()
        except OSError as exc:
            self.failed = LogWriteError(self._name, exc)
            raise self.failed from None

    def close(self) -> None:
        """Flush and close; raises ``LogWriteError`` only if this last flush is the first to
        fail."""
        try:
            if self.failed is None:
                self.flush()
        finally:
            if self._file is not None:
                self._file.close()
                self._file = None
            if self._stream is not None:
                self._stream.close()
                self._stream = None


def peer_id_text(peer_id: bytes) -> str:
    """A peer id as log text: readable when printable ASCII, else ``hex:`` and its digits."""
    if all(0x20 < b < 0x7F for b in peer_id):
        return peer_id.decode("ascii")
    return "hex:" + peer_id.hex()
