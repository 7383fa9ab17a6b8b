"""Disk space for a run: the check before it starts, the room kept for its summary, and the
words for a write that failed (docs/run-directory.md, "A full disk").

A run writes its content once, then logs: every peer's events, the tracker's, a resource sample
a second. A run directory on a filesystem the logs fill must still end in order with a
summary.json, so the summary's room is taken when the run starts (``SummaryReserve``) and given
back to it at the end.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

from peer.errors import TestbedError
from peer.units import format_size
from testbed.experiment import Experiment
from testbed.summary import topology_bounds

PEER_LOG_FIXED = 2048
"""Bytes every peer log takes whatever happens: start (with its settings), announces, stop."""
PIECE_EVENT = 120
"""Bytes of one ``piece`` line (measured: 115-125)."""
PEER_LOG_RATE = 100
"""Bytes per second of a peer's counters and rechokes (measured 200-250 with 9 neighbours; the
check wants a floor: it refuses only runs that clearly cannot fit)."""
FILE_BLOCK = 4096
"""A small file takes a whole block (a page on tmpfs): each peer has a config, a log and an
output file."""
RESOURCE_LINE = 80
RESOURCE_PER_PROCESS = 70
SUMMARY_FIXED = 16 * 1024
SUMMARY_PER_PEER = 256
SUMMARY_PER_GROUP = 200
SUMMARY_PER_TRACKER_EVENT = 120
LOW_SPACE = 64 * 1024
"""Below this many free bytes on the run directory's filesystem the run ends (``failed``) before
a log breaks: the peers flush up to half a second of events at a time."""


class DiskSpaceError(TestbedError):
    """Not enough free disk space to start the run (exit status 2, nothing written)."""


def expected_duration(experiment: Experiment, time_limit: float | None) -> float:
    """A low estimate of the run's length: the last arrival or the textbook's P2P bound,
    whichever is later, never past the time limit."""
    d_p2p, _ = topology_bounds(experiment)
    last_arrival = max((p.arrival for p in experiment.peers), default=0.0)
    duration = max(last_arrival, d_p2p if math.isfinite(d_p2p) else 0.0)
    if time_limit is not None:
        duration = min(duration, time_limit)
    return duration


def estimated_log_bytes(experiment: Experiment, time_limit: float | None) -> int:
    """A floor on what the run's logs will take (peer and tracker logs, resource samples)."""
    spec = experiment.content
    pieces = max(1, -(-spec.size // spec.piece_length))
    duration = expected_duration(experiment, time_limit)
    peers = len(experiment.peers)
    leechers = len(experiment.leechers)
    peer_logs = (peers + 1) * (PEER_LOG_FIXED + 3 * FILE_BLOCK) + leechers * pieces * PIECE_EVENT
    peer_logs += int(peers * PEER_LOG_RATE * duration)
    resources = int(duration * (RESOURCE_LINE + RESOURCE_PER_PROCESS * (peers + 3)))
    return peer_logs + resources


def summary_reserve_size(experiment: Experiment) -> int:
    """Bytes that summary.json can take at most: per peer its completion time and exit code,
    per group its statistics, the tracker's outages and one death."""
    groups = {p.group for p in experiment.peers}
    outages = len(experiment.tracker_outages)
    return (SUMMARY_FIXED + SUMMARY_PER_PEER * len(experiment.peers)
            + SUMMARY_PER_GROUP * len(groups) + SUMMARY_PER_TRACKER_EVENT * (2 * outages + 2))


def existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest existing parent (where a directory to be made will live)."""
    path = path.absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def check_free_space(experiment: Experiment, target: Path, time_limit: float | None) -> None:
    """Raise ``DiskSpaceError`` (one line) if the filesystem that will hold the run directory
    ``target`` clearly lacks room for the content, its .torrent, the logs and the summary,
    with the margin below which a running run is stopped (``LOW_SPACE``)."""
    where = existing_ancestor(target)
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        return  # cannot tell: the run's own write errors will say it
    spec = experiment.content
    pieces = -(-spec.size // spec.piece_length)
    file = spec.size if spec.storage == "file" else 0  # synthetic storage writes no content
    content = file + 20 * pieces + 4096
    logs = estimated_log_bytes(experiment, time_limit)
    needed = content + logs + summary_reserve_size(experiment) + LOW_SPACE
    if free < needed:
        raise DiskSpaceError(
            f"not enough free disk space for the run in {where}: {format_size(free)} free, "
            f"the run needs at least {format_size(needed)} (content {format_size(file)}, "
            f"logs ~{format_size(logs)}); free some space or give --out on another filesystem")


def free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def describe_write_error(exc: OSError, what: str | None = None) -> str:
    """One line for a failed write: ``disk full: cannot write resources.jsonl (...)``."""
    name = what or (os.path.basename(str(exc.filename)) if exc.filename else "a run file")
    detail = exc.strerror or str(exc)
    prefix = "disk full: " if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "write error: "
    return f"{prefix}cannot write {name} ({detail})"


class SummaryReserve:
    """A hidden file of the summary's size, written when the run starts.

    At the end, summary.json is written as usual (a temporary file renamed over it); if the disk
    is full, the summary is written into the reserved file instead, which already owns its
    blocks, and that file is renamed to summary.json. Either way the reserve is gone after.
    """

    NAME = ".summary.reserve"

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, root: Path, size: int) -> SummaryReserve:
        reserve = cls(root / cls.NAME)
        with open(reserve.path, "wb") as f:
            f.write(b" " * size)
            f.flush()
            os.fsync(f.fileno())
        return reserve

    def write_summary(self, target: Path, summary: dict[str, Any]) -> None:
        """Write ``summary`` to ``target`` (summary.json), through the reserve if it must."""
        from testbed.rundir import write_json_atomic

        try:
            write_json_atomic(target, summary)
        except OSError:
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.unlink(missing_ok=True)  # the half-written attempt: give its blocks back
            data = (json.dumps(summary, indent=2, sort_keys=False) + "\n").encode()
            with open(self.path, "r+b") as f:
                f.write(data)
                f.truncate(len(data))
                f.flush()
                os.fsync(f.fileno())
            os.replace(self.path, target)
        self.discard()

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
