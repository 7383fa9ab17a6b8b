"""What passes between a peer and its neighbours: interest, haves and bitfields, requests and
blocks, pieces completed. No I/O.

The session (peer/session.py) admits connections and makes them neighbours (dials, accepts,
handshakes, crossed duplicates, bans, closing); every message of a neighbour it hands here, and
it tells the exchange when a neighbour joins or leaves. Both queue what the node must do in the
session's ``Outbox`` (peer/actions.py), so actions keep the order in which they were decided.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from peer import wire
from peer.actions import CloseConnection, Completed, Outbox, RechokeSoon, Send, UploadQueued
from peer.config import MAX_QUEUED_REQUESTS, REQUEST_TIMEOUT, ProtocolSettings
from peer.counters import Counters
from peer.neighbour import Neighbour
from peer.pieces import BlockResult, PieceDone, PieceState
from peer.policy_types import PiecePicker
from peer.requests import RequestPipeline
from peer.trust import Ban, Trust


class Exchange:
    """The neighbours' messages and our answers. ``neighbours`` is the session's own table
    (registered neighbours by peer id); ``close`` and ``ban`` are the session's, since ending
    connections is admission's business."""

    def __init__(self, *, pieces: PieceState, picker: PiecePicker, settings: ProtocolSettings,
                 neighbours: dict[bytes, Neighbour], counters: Counters, trust: Trust,
                 out: Outbox, triggered_rechokes: bool,
                 close: Callable[[Neighbour, str, float], None],
                 ban: Callable[[Ban, float], None]) -> None:
        self.pieces = pieces
        self.settings = settings
        self.requests = RequestPipeline(pieces, picker, settings.pipeline_depth,
                                        queue_time=settings.request_queue_time,
                                        max_depth=settings.max_pipeline_depth,
                                        end_game=settings.end_game)
        self.neighbours = neighbours
        self.counters = counters
        self.trust = trust
        self.out = out
        self.triggered_rechokes = triggered_rechokes
        self._close = close
        self._ban = ban
        self.start_time = 0.0
        """When the node started: the ``complete`` event's ``elapsed`` counts from it."""

    # --- a neighbour joins and leaves -------------------------------------------------------

    def joined(self, nbr: Neighbour, have_then: bytes | None, now: float) -> None:
        """A new neighbour (``have_then`` None) gets our bitfield; a spare taking its pair's
        place (peer/duplicates.py) gets a have for each piece verified since ``have_then``,
        what we held when it was set aside, and its own pieces count again."""
        have = self.pieces.have
        if have_then is not None:
            for index in range(self.pieces.num_pieces):
                if have[index] and not have_then[index]:
                    self.out.send(nbr.cid, wire.encode(wire.Have(index=index)))
            self.pieces.add_availability(nbr.remote_has, +1)
            nbr.interesting = sum(1 for i, f in enumerate(nbr.remote_has) if f and not have[i])
            self.update_interest(nbr, now)
            return
        if self.pieces.have_count:
            self.out.send(nbr.cid, wire.encode(wire.Bitfield(bits=wire.bits_from_flags(have))))

    def left(self, nbr: Neighbour) -> None:
        """A neighbour stopped being one: its pieces no longer count, the blocks it was
        fetching for us are free (``refill_all`` then gives them to others)."""
        self.pieces.add_availability(nbr.remote_has, -1)
        self.pieces.release(nbr, list(nbr.outstanding))
        nbr.outstanding.clear()

    def refill_all(self, now: float) -> None:
        for other in self.neighbours.values():
            self.fill_requests(other, now)

    # --- messages ---------------------------------------------------------------------------

    def on_message(self, nbr: Neighbour, message: wire.Message, now: float) -> None:
        """Any message of a registered neighbour but blocks (``on_block``) and extension
        messages (the session's). CloseConnection for a protocol error."""
        if isinstance(message, wire.Have):
            self._set_has(nbr, message.index)
            self.update_interest(nbr, now)
        elif isinstance(message, wire.Request):
            self._on_request(nbr, message)
        elif isinstance(message, wire.Unchoke):
            nbr.peer_choking = False
            nbr.unchoked_us_at = now
            self.fill_requests(nbr, now)
        elif isinstance(message, wire.Choke):
            nbr.peer_choking = True
            # BEP 3: a choke discards every pending request; those blocks go back to the pool.
            self.requests.withdraw(nbr)
        elif isinstance(message, wire.Interested):
            nbr.peer_interested = True
            if (self.settings.unchoke_when_free and nbr.am_choking) or \
                    (self.triggered_rechokes and not nbr.am_choking):
                self.out.actions.append(RechokeSoon("interest"))
        elif isinstance(message, wire.NotInterested):
            nbr.peer_interested = False
            if (self.settings.unchoke_when_free or self.triggered_rechokes) and \
                    not nbr.am_choking:
                self.out.actions.append(RechokeSoon("interest"))
        elif isinstance(message, wire.Bitfield):
            self._on_bitfield(nbr, message.bits, now)
        elif isinstance(message, wire.Cancel):
            with contextlib.suppress(ValueError):
                nbr.uploads.remove((message.index, message.begin, message.length))
        # KeepAlive, Port and other extension messages need nothing from us.

    def _on_request(self, nbr: Neighbour, request: wire.Request) -> None:
        if not self.pieces.valid_block(request.index, request.begin, request.length):
            raise CloseConnection(f"protocol error: request outside the file ({request.index}, "
                                  f"{request.begin}, {request.length})")
        if not self.pieces.have[request.index]:
            raise CloseConnection(f"protocol error: request for piece {request.index}, "
                                  f"which we do not have")
        if nbr.am_choking or len(nbr.uploads) >= MAX_QUEUED_REQUESTS:
            return  # BEP 3: requests from a choked peer are dropped
        nbr.uploads.append((request.index, request.begin, request.length))
        self.out.actions.append(UploadQueued(nbr.cid))

    def _on_bitfield(self, nbr: Neighbour, bits: bytes, now: float) -> None:
        # aria2 sends fresh bitfields instead of have messages: treat each as the full set.
        flags = wire.flags_from_bits(bits, self.pieces.num_pieces)
        self.pieces.add_availability(nbr.remote_has, -1)
        nbr.remote_has = flags
        nbr.remote_count = sum(flags)
        self.pieces.add_availability(flags, +1)
        have = self.pieces.have
        nbr.interesting = sum(1 for i, f in enumerate(flags) if f and not have[i])
        self.update_interest(nbr, now)

    def _set_has(self, nbr: Neighbour, index: int) -> None:
        if index >= self.pieces.num_pieces:
            raise CloseConnection(f"protocol error: have for piece {index} outside the torrent")
        if nbr.remote_has[index]:
            return
        nbr.remote_has[index] = 1
        nbr.remote_count += 1
        self.pieces.availability[index] += 1
        if not self.pieces.have[index]:
            nbr.interesting += 1

    def update_interest(self, nbr: Neighbour, now: float) -> None:
        if self.pieces.complete and nbr.remote_count == self.pieces.num_pieces:
            self._close(nbr, "both seeds", now)
            return
        want = nbr.interesting > 0
        if want != nbr.am_interested:
            nbr.am_interested = want
            self.out.send(nbr.cid, wire.INTERESTED_BYTES if want else wire.NOT_INTERESTED_BYTES)
            if want:
                self.fill_requests(nbr, now)

    # --- blocks and pieces ------------------------------------------------------------------

    def on_block(self, nbr: Neighbour, piece_msg: wire.Piece, now: float) -> None:
        key, block = (piece_msg.index, piece_msg.begin), piece_msg.block
        if not self.requests.answered(nbr, key, len(block)):
            return  # answer to a request we cancelled (or voided by a choke): harmless
        size = len(block)
        nbr.down += size
        nbr.down_meter.add(size, now)
        nbr.last_block_at = now
        self.counters.received(nbr.peer, size)
        if self.pieces.end_game:
            for other, cancel in self.requests.cancel_duplicates(nbr, key):
                self.out.send(other.cid, cancel)
                self.fill_requests(other, now)
        result, done = self.pieces.on_block(nbr, nbr.peer, piece_msg.index, piece_msg.begin,
                                            block)
        if result == BlockResult.ACCEPTED and done is not None:
            self._on_piece_done(done, now)

    def _on_piece_done(self, done: PieceDone, now: float) -> None:
        # Ban on evidence only (peer/trust.py): a failed piece blames a peer that sent all of
        # it; otherwise its blocks are kept until the piece verifies and they can be compared.
        bans = self.trust.judge(done.index, done.ok, done.block_senders, self.pieces.piece_data)
        self.out.log("piece", index=done.index, size=done.size,
                     start=round(done.started_at, 4), ok=done.ok,
                     blame=[] if done.ok else [b.peer for b in bans],
                     **{"from": list(done.senders)})
        for ban in bans:
            self._ban(ban, now)
        if not done.ok:
            return
        have_message = wire.encode(wire.Have(index=done.index))
        for nbr in list(self.neighbours.values()):
            if nbr.remote_has[done.index]:
                # Have suppression: a neighbour that holds the piece learns nothing it acts on
                # (it never asks us for it, and its interest in us does not change), while in a
                # 40-peer mesh have messages outnumber blocks by far and each costs a send and a
                # receive.
                nbr.interesting -= 1
            else:
                self.out.actions.append(Send(nbr.cid, have_message, lazy=True))
            self.update_interest(nbr, now)
        if self.pieces.complete:
            self.out.log("complete", downloaded=self.counters.downloaded,
                         elapsed=round(now - self.start_time, 4))
            self.out.actions.append(Completed())

    # --- requests ---------------------------------------------------------------------------

    def fill_requests(self, nbr: Neighbour, now: float) -> None:
        if requests := self.requests.top_up(nbr, now):
            self.out.send(nbr.cid, requests)

    def take_back_if_stuck(self, nbr: Neighbour, now: float) -> None:
        """Requests a neighbour sat on for ``REQUEST_TIMEOUT`` while unchoking us go back to
        the pool, for the other neighbours."""
        if nbr.outstanding and \
                now - max(nbr.last_block_at, nbr.unchoked_us_at) > REQUEST_TIMEOUT:
            self.requests.withdraw(nbr)
            for other in self.neighbours.values():
                if other is not nbr:
                    self.fill_requests(other, now)
