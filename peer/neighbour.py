"""What the session knows about one connection: its protocol state, and the rate meters.

No I/O and no clock: times are passed in. The session (peer/session.py) changes this state as
messages arrive and decisions are made; the node's connection object holds only the socket side.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable

from peer.policy_types import DecisionKind, NeighbourView


class RateMeter:
    """Bytes per second over a rolling window, in one-second bins (cheap per block), with the
    bins' running total, so the rate over the whole window (each rechoke asks it of every
    neighbour) subtracts the one or two bins that left it instead of summing twenty."""

    __slots__ = ("bins", "start", "total", "window")

    def __init__(self, window: float, now: float) -> None:
        self.window = window
        self.start = now
        self.bins: deque[list[int]] = deque()
        self.total = 0
        """The sum of every bin kept."""

    def add(self, amount: int, now: float) -> None:
        second = int(now)
        bins = self.bins
        self.total += amount
        if bins and bins[-1][0] == second:
            bins[-1][1] += amount
        else:
            bins.append([second, amount])
            horizon = second - self.window - 1
            while bins and bins[0][0] < horizon:
                self.total -= bins.popleft()[1]

    def rate(self, now: float, window: float | None = None) -> float:
        """Bytes per second over the bins that end within ``window`` seconds of ``now``."""
        window = self.window if window is None else window
        horizon = now - window
        if window >= self.window:
            # The bins are in time order: those out of the window are a prefix.
            total = self.total
            for second, amount in self.bins:
                if second + 1 > horizon:
                    break
                total -= amount
        else:
            total = 0
            for second, amount in reversed(self.bins):
                if second + 1 <= horizon:
                    break
                total += amount
        return total / max(1.0, min(window, now - self.start))


class Neighbour:
    """One connection as the protocol sees it, from TCP connect (or accept) to close.

    ``cid`` is the node's id for the connection; the session names connections by it in what it
    asks the node to do. ``peer_id`` and ``peer`` are known once the handshake is accepted.
    """

    __slots__ = (
        "addr", "am_choking", "am_interested", "cancelled", "cid", "connected_at", "decision",
        "direction", "down", "down_meter", "got_block", "interesting", "last_block_at",
        "last_block_sent_at", "last_received", "last_unchoked", "outstanding", "peer",
        "peer_choking", "peer_id", "peer_interested", "registered", "remote_count", "remote_has",
        "unchoked_us_at", "up", "up_meter", "upload_cap", "uploads",
    )

    def __init__(self, cid: int, addr: str, direction: str, *, num_pieces: int,
                 rate_window: float, now: float) -> None:
        self.cid = cid
        self.addr = addr
        self.direction = direction
        """``in`` (accepted) or ``out`` (dialled)."""
        self.peer_id: bytes | None = None
        self.peer = ""
        self.registered = False
        """Its handshake was accepted: it counts as a neighbour until it closes."""
        self.remote_has = bytearray(num_pieces)
        self.remote_count = 0
        self.interesting = 0
        """Pieces it has that we lack: we are interested while this is above zero."""
        self.am_choking = True
        self.am_interested = False
        self.peer_choking = True
        self.peer_interested = False
        self.decision: DecisionKind = "choke"
        self.last_unchoked: float | None = None
        self.upload_cap: float | None = None
        """This neighbour's own upload cap, when the choker sets one (Decision.rate)."""
        self.outstanding: dict[tuple[int, int], int] = {}
        """Our requests to it: (piece, begin) -> length."""
        self.cancelled: Counter[tuple[int, int]] = Counter()
        """Requests we withdrew (cancelled, or voided by its choke), each as many times as it was
        withdrawn: as many late answers are harmless (a block asked and voided twice can be
        answered twice)."""
        self.uploads: deque[tuple[int, int, int]] = deque()
        """Its requests to us, in order: (piece, begin, length)."""
        self.got_block = False
        """A block arrived in the batch of messages being handled: refill its pipeline after."""
        self.down_meter = RateMeter(rate_window, now)
        self.up_meter = RateMeter(rate_window, now)
        self.up = 0
        self.down = 0
        self.connected_at = now
        self.last_received = now
        self.last_block_at = now
        self.last_block_sent_at = now
        self.unchoked_us_at = now

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) of the remote end: for a connection we dialled, its listening address."""
        host, _, port = self.addr.rpartition(":")
        return host, int(port)

    def idle_since(self) -> float | None:
        """Since when it has been idle: no interest either way, and no block either way since
        then (None: it is not idle). At the neighbour cap, the longest idle one makes room."""
        if self.am_interested or self.peer_interested:
            return None
        return max(self.last_block_at, self.last_block_sent_at)

    def snubbed(self, now: float, snub_time: float) -> bool:
        """It unchoked us and we want its pieces, yet it sent nothing for ``snub_time``."""
        waiting_since = max(self.last_block_at, self.unchoked_us_at)
        return self.am_interested and not self.peer_choking and now - waiting_since > snub_time

    def view(self, now: float, snub_time: float, num_pieces: int) -> NeighbourView:
        """This neighbour as a choker sees it at a rechoke."""
        # Positional, in NeighbourView's field order: every rechoke builds one view per
        # neighbour, and keywords cost twice the time.
        return NeighbourView(
            self.peer, self.peer_interested, self.am_interested, self.peer_choking,
            self.am_choking, self.down_meter.rate(now), self.up_meter.rate(now), self.down,
            self.up, self.snubbed(now, snub_time), self.remote_count == num_pieces,
            self.connected_at, self.last_unchoked, self.decision)


def idle_longest_first(neighbours: Iterable[Neighbour], now: float,
                       idle_after: float) -> list[Neighbour]:
    """The neighbours idle for at least ``idle_after`` seconds, longest idle first."""
    idle = [(since, nbr.connected_at, nbr) for nbr in neighbours
            if (since := nbr.idle_since()) is not None and since <= now - idle_after]
    idle.sort(key=lambda entry: entry[:2])
    return [nbr for _, _, nbr in idle]
