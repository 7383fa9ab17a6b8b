"""What the orchestrator learns of each peer from the tail of its event log: when it started,
completed and stopped, and which pieces it verified (for progress and the run's summary).

Only the few events that matter here are parsed; the rest (rechokes, counters) are skipped by
a regular expression on the raw line, since a 40-peer run writes thousands of lines a second.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from testbed.experiment import PeerPlan
from testbed.launch import ProcessHandle


@dataclass(slots=True)
class LogTail:
    """Reads the complete lines appended to a file since the last call.

    A writer flushes whole lines, but a read can land mid-line: the partial last line is kept
    until its newline arrives. A SIGKILLed writer may leave it truncated for good.
    """

    path: Path
    offset: int = 0
    partial: bytes = b""

    def read_lines(self) -> list[bytes]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        if not data:
            return []
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        return [line for line in lines if line.strip()]


_EV = re.compile(rb'"ev"\s*:\s*"([a-z_]+)"')
_WATCHED = {b"start", b"complete", b"stop", b"piece"}


@dataclass(slots=True)
class PeerState:
    plan: PeerPlan
    tail: LogTail
    handle: ProcessHandle | None = None
    launched_at: float | None = None
    start_t: float | None = None
    complete_t: float | None = None
    stop_reason: str | None = None
    exit_code: int | None = None
    signalled: str | None = None
    """``term`` or ``kill`` once we have signalled it (a departure or the end of the run)."""
    ok_pieces: set[int] = field(default_factory=set)
    failed_pieces: int = 0
    downloaded: int = 0
    bad_lines: int = 0

    @property
    def gone(self) -> bool:
        return self.handle is not None and self.handle.returncode is not None

    def feed(self, line: bytes) -> None:
        match = _EV.search(line, 0, 120) or _EV.search(line)
        if match is None or match.group(1) not in _WATCHED:
            return  # rechoke, counters…: not needed here, and costly to parse
        try:
            record = json.loads(line)
        except ValueError:
            self.bad_lines += 1
            return
        ev = record.get("ev")
        if ev == "start":
            self.start_t = record.get("t")
        elif ev == "complete":
            self.complete_t = record.get("t")
        elif ev == "stop":
            self.stop_reason = record.get("reason")
        elif ev == "piece":
            if record.get("ok"):
                index = record.get("index")
                if index not in self.ok_pieces:
                    self.ok_pieces.add(index)
                    self.downloaded += int(record.get("size") or 0)
            else:
                self.failed_pieces += 1
