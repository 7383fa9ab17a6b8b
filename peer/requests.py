"""Which blocks to ask each neighbour for, and how many at once: BEP 3 request pipelining.

No I/O: the session (peer/session.py) asks for a neighbour's next requests and sends them.
Piece order is ``peer.pieces``' (strict priority, the picker policy for new pieces, end game);
this module sizes each neighbour's pipeline and keeps its outstanding requests.
"""

from __future__ import annotations

import math

from peer import wire
from peer.actions import CloseConnection
from peer.config import BLOCK_SIZE, ProtocolSettings
from peer.neighbour import Neighbour
from peer.pieces import PieceState
from peer.policy_types import PickView, PiecePicker

PIPELINE_RATE_WINDOW = 3.0
"""Seconds of download rate the pipeline depth follows: recent, so it reacts within a rechoke."""
_DEFAULTS = ProtocolSettings()


def pipeline_depth(rate: float, *, queue_time: float, min_depth: int, max_depth: int) -> int:
    """Requests to keep out to a neighbour sending ``rate`` bytes/s: ``queue_time`` of it, in
    blocks, between ``min_depth`` and ``max_depth`` (libtorrent's ``request_queue_time``).

    Sized from the rate alone, not from a measured round trip: the round trip a receiver sees
    includes the sender's queue of its own requests, so a depth grown from it feeds on itself.
    When the sender's capacity limits, the depth settles at ``queue_time`` of that capacity;
    when its latency limits (Transmission answers in batches every half second), each round
    trip multiplies the depth by ``queue_time`` / round trip, so it grows while ``queue_time``
    is the longer."""
    return max(min_depth, min(max_depth, math.ceil(rate * queue_time / BLOCK_SIZE)))


class RequestPipeline:
    """Our requests to every neighbour. ``min_depth`` is the protocol's ``pipeline_depth``,
    ``queue_time`` its ``request_queue_time``, ``max_depth`` its ``max_pipeline_depth`` and
    ``end_game`` its ``end_game``."""

    def __init__(self, pieces: PieceState, picker: PiecePicker, min_depth: int, *,
                 queue_time: float = _DEFAULTS.request_queue_time,
                 max_depth: int = _DEFAULTS.max_pipeline_depth,
                 end_game: str = _DEFAULTS.end_game) -> None:
        self.pieces = pieces
        self.picker = picker
        self.min_depth = min_depth
        self.queue_time = queue_time
        self.max_depth = max_depth
        self.end_game = end_game

    def top_up(self, nbr: Neighbour, now: float) -> bytes:
        """The requests to send ``nbr`` now, encoded (b"": none), recorded as outstanding.

        At least ``min_depth`` requests out, raised to ``queue_time`` of its recent rate: deep
        fixed pipelines hoard whole pieces on slow neighbours, shallow ones idle fast links.
        """
        if nbr.peer_choking or not nbr.am_interested or not nbr.registered:
            return b""
        depth = pipeline_depth(nbr.down_meter.rate(now, window=PIPELINE_RATE_WINDOW),
                               queue_time=self.queue_time, min_depth=self.min_depth,
                               max_depth=self.max_depth)
        wanted = depth - len(nbr.outstanding)
        # Top up in batches (half the pipeline at a time), not one request per block received:
        # each request sent alone costs a send here and a wake-up there, as much as the block.
        # A peer with nothing out always asks.
        if wanted <= 0 or (nbr.outstanding and wanted < max(2, depth // 2)):
            return b""
        pieces = self.pieces

        def pick(candidates: list[int]) -> int | None:
            return self.picker.pick(PickView(now=now, candidates=candidates,
                                             availability=pieces.availability,
                                             have_count=pieces.have_count,
                                             num_pieces=pieces.num_pieces))

        requests = pieces.next_requests(nbr, nbr.remote_has, wanted, nbr.outstanding, pick, now,
                                        from_seed=nbr.remote_count == pieces.num_pieces,
                                        end_game=self.end_game)
        out = []
        for index, begin, length in requests:
            # A withdrawn request stays in ``cancelled`` when asked again: its late answer can
            # still come, before or after the new one's, and only one of them counts.
            nbr.outstanding[(index, begin)] = length
            out.append(wire.encode(wire.Request(index=index, begin=begin, length=length)))
        return b"".join(out)

    def answered(self, nbr: Neighbour, key: tuple[int, int], size: int) -> bool:
        """Match a block from ``nbr`` (``key``: piece, begin) to our request for it: True when
        it answers one, False for a request we withdrew (a late answer, harmless).
        CloseConnection for a block nobody asked for, or of another size than asked."""
        length = nbr.outstanding.pop(key, None)
        if length is None:
            cancelled = nbr.cancelled
            if cancelled[key] > 0:
                cancelled[key] -= 1
                if not cancelled[key]:
                    del cancelled[key]
                return False
            raise CloseConnection(f"protocol error: piece {key} that nobody asked for")
        if size != length:
            raise CloseConnection(f"protocol error: block {key} of {size} bytes, asked for "
                                  f"{length}")
        return True

    def withdraw(self, nbr: Neighbour) -> None:
        """Forget our requests to it: its answers are harmless, the blocks free for others."""
        self.pieces.release(nbr, list(nbr.outstanding))
        nbr.cancelled.update(nbr.outstanding.keys())
        nbr.outstanding.clear()

    def cancel_duplicates(self, nbr: Neighbour,
                          key: tuple[int, int]) -> list[tuple[Neighbour, bytes]]:
        """End game: block ``key`` came from ``nbr``; withdraw the same request from everyone
        else. Returns each neighbour that had it out, with the cancel message to send it."""
        piece = self.pieces.active.get(key[0])
        if piece is None:
            return []
        cancels = []
        for other in list(piece.requesters[key[1] // BLOCK_SIZE]):
            if other is nbr or not isinstance(other, Neighbour):
                continue
            length = other.outstanding.pop(key, None)
            if length is not None:
                other.cancelled[key] += 1
                cancels.append((other, wire.encode(wire.Cancel(index=key[0], begin=key[1],
                                                               length=length))))
        return cancels
