"""JSON-lines event logs and the run clock they are stamped with.

Every process of a run stamps its events with seconds since the run's start on the system-wide
monotonic clock, handed over by the orchestrator: trio's own clock has a random per-process
offset, so it cannot line up events of different processes. The clock is an object so tests can
drive it by hand.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO, Any

SCHEMA_VERSION = 1


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
    """

    def __init__(self, path: str | Path | None, clock: RunClock,
                 stream: IO[str] | None = None) -> None:
        self.clock = clock
        self._pending: list[str] = []
        self._file: IO[str] | None
        if stream is not None:
            self._file = stream
        elif path is not None:
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        else:
            self._file = None
        self.records: list[dict[str, Any]] | None = [] if self._file is None else None
        """When logging to nowhere (tests), events are kept here instead."""

    def emit(self, ev: str, **fields: Any) -> None:
        record = {"t": round(self.clock.now(), 4), "ev": ev, **fields}
        if self.records is not None:
            self.records.append(record)
            return
        self._pending.append(json.dumps(record, separators=(",", ":")))

    def flush(self) -> None:
        if self._file is None or not self._pending:
            return
        self._file.write("\n".join(self._pending) + "\n")
        self._pending.clear()
        self._file.flush()

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None


def peer_id_text(peer_id: bytes) -> str:
    """A peer id as log text: readable when printable ASCII, else ``hex:`` and its digits."""
    if all(0x20 < b < 0x7F for b in peer_id):
        return peer_id.decode("ascii")
    return "hex:" + peer_id.hex()
