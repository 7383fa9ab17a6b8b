"""Telling that a run cannot finish: the pieces left in the swarm no longer cover the content.

Once the last seed is gone and no seed is still to arrive, the pieces that exist are those the
live peers hold. When some piece is held by none of them, no leecher that lacks it can
complete, and waiting out the time limit only wastes the machine. The orchestrator ends such a
run as ``stalled`` after a grace period (the logs it reads lag the peers by up to a second, and
a state must last before it counts).

``missing_pieces`` reads the orchestrator's view of the peers; ``StallWatch`` decides, sans-I/O,
from a time and that answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from testbed.peer_watch import PeerState

DEFAULT_GRACE = 10.0
"""Seconds a shortfall must last before the run is called stalled."""
MAX_LISTED = 12
"""Piece ranges named in the reason; the summary lists every missing piece."""


def missing_pieces(peers: Iterable[PeerState], num_pieces: int) -> tuple[int, ...] | None:
    """The pieces no live peer holds, or None when the run cannot be judged stalled: a seed is
    live or still to start, or no leecher is still waiting for pieces."""
    held: set[int] = set()
    waiting = False
    for p in peers:
        live = p.handle is not None and p.handle.returncode is None
        if p.plan.role == "seed":
            if p.handle is None or live:
                return None  # a seed to come or still here: every piece exists
            continue
        if p.complete_t is None and (p.handle is None or live):
            waiting = True
        if live:
            if p.complete_t is not None:
                return None  # a live leecher that completed holds every piece
            held |= p.ok_pieces
    if not waiting:
        return None
    return tuple(i for i in range(num_pieces) if i not in held)


@dataclass(frozen=True, slots=True)
class Stall:
    since: float
    missing: tuple[int, ...]
    num_pieces: int

    def reason(self) -> str:
        count = len(self.missing)
        return (f"stalled: {count} of {self.num_pieces} pieces held by no live peer since "
                f"t = {self.since:.1f} s (pieces {format_ranges(self.missing)}), and no seed is "
                "left or still to arrive")

    def to_json(self) -> dict[str, object]:
        return {"since": round(self.since, 3), "missing": list(self.missing)}


class StallWatch:
    """Calls the run stalled once pieces have been missing for ``grace`` seconds in a row."""

    def __init__(self, num_pieces: int, grace: float = DEFAULT_GRACE) -> None:
        self.num_pieces = num_pieces
        self.grace = grace
        self._since: float | None = None

    def update(self, t: float, missing: Sequence[int] | None) -> Stall | None:
        """``missing`` as ``missing_pieces`` answers it at run time ``t``."""
        if not missing:
            self._since = None
            return None
        if self._since is None:
            self._since = t
        if t - self._since >= self.grace:
            return Stall(self._since, tuple(missing), self.num_pieces)
        return None


def format_ranges(indices: Sequence[int], limit: int = MAX_LISTED) -> str:
    """``0-3, 7, 9-10``; past ``limit`` ranges, ``… (+N more)``."""
    ranges: list[tuple[int, int]] = []
    for i in sorted(indices):
        if ranges and i == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], i)
        else:
            ranges.append((i, i))
    text = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in ranges[:limit])
    if len(ranges) > limit:
        text += f", … (+{len(ranges) - limit} more ranges)"
    return text
