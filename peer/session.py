"""The protocol core of one peer: every decision about its neighbours, with no I/O.

Shaped like h11's ``Connection`` and the tracker's ``Swarm``: the node (peer/node.py) tells the
session what happened (a connection opened, a handshake or a message arrived, a block went out,
a timer fired, a connection closed), passing the time in, and gets back what to do, as a list
of actions: bytes to send to a connection, a connection to close, an event to log, a rechoke
to run soon, the download completed. The node owns sockets, tasks, token buckets, timers and
the event log.

The session itself admits connections and makes them neighbours: dials (peer/addresses.py),
the neighbour cap, handshakes, crossed duplicate connections (peer/duplicates.py), bans on
evidence (peer/trust.py), closing; and runs the rechoke (the choker's decisions are applied by
peer/choking.py). What passes between neighbours, interest, haves, requests and blocks, end
game cancels, have suppression, is its exchange's (peer/exchange.py).

Connections are named by the node's connection id (``cid``), from TCP connect or accept on; a
connection is a *neighbour* once its handshake is accepted.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from peer import wire
from peer.actions import (
    NOTHING,
    Action,
    Close,
    CloseConnection,
    Log,
    Outbox,
    RechokeSoon,
    Refused,
)
from peer.addresses import AddressBook
from peer.choking import Choking
from peer.config import MAX_REDIAL_WAIT, ProtocolSettings
from peer.counters import Counters
from peer.duplicates import MAX_HELD_MESSAGES, Spare, Spares, crossed, new_one_wins
from peer.eventlog import peer_id_text
from peer.exchange import Exchange
from peer.extension import RESERVED, extended_handshake, listening_port, supports_extensions
from peer.neighbour import Neighbour, idle_longest_first
from peer.pieces import PieceState
from peer.policy_types import Choker, PiecePicker, RechokeTrigger
from peer.trust import Address, Ban, Trust


class Session:
    """Every neighbour of one peer and what to do about each. See the module docstring."""

    def __init__(self, *, peer_id: bytes, info_hash: bytes, pieces: PieceState,
                 settings: ProtocolSettings, upload_capacity: float | None, choker: Choker,
                 picker: PiecePicker, rng: random.Random) -> None:
        self.peer_id = peer_id
        self.info_hash = info_hash
        self.pieces = pieces
        self.settings = settings
        self.upload_capacity = upload_capacity
        """Our upload cap in bytes/s (None: unlimited), for the choker's view."""
        self.choking = Choking(choker, settings)
        self.triggered_rechokes = self.choking.triggered_rechokes
        self.our_handshake = wire.encode(wire.Handshake(info_hash=info_hash, peer_id=peer_id,
                                                    reserved=RESERVED))
        """The handshake we send on every connection."""
        self.neighbours: dict[bytes, Neighbour] = {}
        """Connections whose handshake was accepted, by peer id."""
        self._connections: dict[int, Neighbour] = {}
        """Every open connection, handshake done or not, by connection id."""
        self.trust = Trust()
        """Banned peers and the evidence of failed pieces (peer/trust.py)."""
        self.addresses = AddressBook(rng, self.trust, redial_backoff=settings.redial_backoff,
                                     max_redial_wait=MAX_REDIAL_WAIT)
        """Whose listening address is which, dials under way (peer/addresses.py); ``rng``,
        seeded by the peer's seed, orders the dials."""
        self.spares = Spares()
        """Losing connections of crossed duplicate pairs, while they wait (peer/duplicates.py)."""
        self._idle_after = settings.idle_drop_after
        self._over_cap: set[int] = set()
        """Accepted over the cap because an idle neighbour may make room at its handshake."""
        self.counters = Counters()
        """Bytes per neighbour and in total, refused connections: the ``counters`` events."""
        self.listen_port = 0
        self.out = Outbox()
        self.exchange = Exchange(pieces=pieces, picker=picker, settings=settings,
                                 neighbours=self.neighbours, counters=self.counters,
                                 trust=self.trust, out=self.out,
                                 triggered_rechokes=self.triggered_rechokes,
                                 close=self._close, ban=self._ban)
        """What passes between us and the neighbours (peer/exchange.py)."""

    # --- queries ----------------------------------------------------------------------------

    @property
    def complete(self) -> bool:
        return self.pieces.complete

    @property
    def uploaded(self) -> int:
        return self.counters.uploaded

    @property
    def downloaded(self) -> int:
        return self.counters.downloaded

    @property
    def connection_count(self) -> int:
        """Open connections, handshake done or not: what ``max_neighbours`` caps."""
        return len(self._connections)

    def is_open(self, cid: int) -> bool:
        return cid in self._connections

    def is_registered(self, cid: int) -> bool:
        nbr = self._connections.get(cid)
        return nbr is not None and nbr.registered

    def neighbour(self, cid: int) -> Neighbour | None:
        """The state of an open connection (for inspection; the session changes it)."""
        return self._connections.get(cid)

    @property
    def bytes_left(self) -> int:
        """What an announce reports as ``left``: bytes of content we have not verified."""
        pieces = self.pieces
        return 0 if pieces.complete else pieces.length - pieces.bytes_verified

    # --- the node's life --------------------------------------------------------------------

    def started(self, listen_port: int, now: float) -> None:
        """The node listens on ``listen_port`` (we tell neighbours in the BEP 10 handshake);
        the ``complete`` event's ``elapsed`` counts from ``now``."""
        self.listen_port = listen_port
        self.exchange.start_time = now

    def peers_to_dial(self, peers: list[Address], own: Address, now: float, *,
                      at_most: int | None = None) -> list[Address]:
        """The tracker's peers to dial now (peer/addresses.py), up to ``max_initiate`` connections
        and ``at_most`` new dials; then ``dial_ended`` (and ``dial_failed``) for each."""
        settings = self.settings
        room = min(settings.max_initiate, settings.max_neighbours) - len(self._connections)
        if at_most is not None:
            room = min(room, len(self.addresses.dialing) + at_most)
        return self.addresses.to_dial(
            peers, own, open_addrs=(nbr.addr for nbr in self._connections.values()),
            neighbours=self.neighbours, room=room, now=now)

    def dial_ended(self, address: Address) -> None:
        self.addresses.dial_ended(address)

    def dial_failed(self, address: Address, now: float) -> None:
        self.addresses.dial_failed(address, now)

    def refuses_incoming(self, now: float) -> bool:
        """Whether a connection accepted now is refused at once: at the neighbour cap with no
        idle neighbour left to make room for it. Counted when so."""
        refused = len(self._connections) >= self.settings.max_neighbours and len(
            idle_longest_first(self.neighbours.values(), now, self._idle_after)) <= \
            len(self._over_cap)
        if refused:
            self.counters.refuse("neighbour cap")
        return refused

    def connection_opened(self, cid: int, addr: str, direction: str,
                          now: float) -> Sequence[Action]:
        """A TCP connection was dialled (``out``) or accepted (``in``). At the neighbour cap an
        accepted one waits for its handshake if an idle neighbour could make room for it (as
        real clients do, so that idle connections cannot lock honest peers out); otherwise it
        is refused at once, and counted."""
        if direction == "in" and len(self._connections) >= self.settings.max_neighbours:
            if self.refuses_incoming(now):
                self.out.actions.append(Close(cid, "neighbour cap"))
                return self.out.flush()
            self._over_cap.add(cid)
        self._connections[cid] = Neighbour(cid, addr, direction,
                                           num_pieces=self.pieces.num_pieces,
                                           rate_window=self.settings.rate_window, now=now)
        return NOTHING

    def connection_closed(self, cid: int, reason: str, now: float) -> Sequence[Action]:
        """The node ended a connection (remote closed, protocol error, shutdown). Harmless for
        one the session closed itself."""
        nbr = self._connections.get(cid)
        if nbr is not None:
            self._unregister(nbr, reason, now)
        return self.out.flush()

    def close_all(self, reason: str, now: float) -> Sequence[Action]:
        """Forget every connection (the node is shutting down)."""
        for nbr in list(self._connections.values()):
            self._unregister(nbr, reason, now)
        return self.out.flush()

    # --- handshakes -------------------------------------------------------------------------

    def handshake_received(self, cid: int, handshake: wire.Handshake,
                           now: float) -> Sequence[Action]:
        """Accept the connection as a neighbour, or close it (wrong torrent, ourselves, or the
        losing side of a duplicate)."""
        nbr = self._connections.get(cid)
        if nbr is None:
            return self.out.flush()
        try:
            self._accept_handshake(nbr, handshake, now)
        except CloseConnection as exc:
            self._close(nbr, exc.reason, now)
        except Refused as exc:
            self._refuse(nbr, exc.reason)
        return self.out.flush()

    def _accept_handshake(self, nbr: Neighbour, handshake: wire.Handshake, now: float) -> None:
        if handshake.info_hash != self.info_hash:
            raise CloseConnection("wrong info_hash")
        if handshake.peer_id == self.peer_id:
            raise CloseConnection("self")
        peer_id = handshake.peer_id
        nbr.peer_id = peer_id
        nbr.peer = peer_id_text(peer_id)
        if nbr.direction == "out":
            if self.trust.is_banned_address(nbr.address):
                raise Refused("banned")  # dialled before the ban
            self.addresses.learn(nbr.address, peer_id)
            self.addresses.dial_succeeded(nbr.address)
        if self.trust.is_banned(nbr.peer):
            self.addresses.ban(nbr.peer)  # a new address of a banned peer, maybe
            raise Refused("banned")
        existing = self.neighbours.get(peer_id)
        if existing is not None:
            # Both sides may dial each other at once (peer/duplicates.py): the loser waits.
            if peer_id in self.spares or not crossed(existing, nbr, now):
                raise CloseConnection("duplicate")
            if not new_one_wins(nbr, self.peer_id, peer_id):
                self.spares.add(Spare(nbr, now, handshake.reserved, None))
                return
            self._set_aside(existing, now)
        if nbr.cid in self._over_cap:
            self._over_cap.discard(nbr.cid)
            idle = idle_longest_first(self.neighbours.values(), now, self._idle_after)
            if not idle:
                raise Refused("neighbour cap")
            self._close(idle[0], "idle at the neighbour cap", now)
        self._register(nbr, handshake.reserved, None, now)

    def _register(self, nbr: Neighbour, reserved: bytes, have_then: bytes | None,
                  now: float) -> None:
        """Make a connection the neighbour: a new one (``have_then`` None), or a spare that
        was the neighbour before and told then what we held."""
        assert nbr.peer_id is not None
        nbr.registered = True
        self.neighbours[nbr.peer_id] = nbr
        self._log("conn_open", peer=nbr.peer, addr=nbr.addr, dir=nbr.direction)
        self.counters.add_peer(nbr.peer)
        self.exchange.joined(nbr, have_then, now)
        if have_then is None and supports_extensions(reserved):
            self.out.send(nbr.cid, extended_handshake(self.listen_port))  # peer/extension.py

    # --- incoming messages ------------------------------------------------------------------

    def bytes_received(self, cid: int, now: float) -> None:
        """Anything at all arrived: the connection is not stalled."""
        if (nbr := self._connections.get(cid)) is not None:
            nbr.last_received = now

    def message_received(self, cid: int, message: wire.Message,
                         now: float) -> Sequence[Action]:
        """One decoded message from a neighbour. Call ``end_of_batch`` after the last message
        of what one receive brought: pipelines are refilled once per batch, not per block."""
        nbr = self._connections.get(cid)
        if nbr is None or not nbr.registered:
            spare = self.spares.of_connection(cid)
            if spare is not None:
                spare.held.append(message)
                if len(spare.held) > MAX_HELD_MESSAGES:
                    self._close(spare.nbr, "duplicate", now)
            return self.out.flush()  # closed earlier in this batch: the rest means nothing now
        try:
            self._handle(nbr, message, now)
            if isinstance(message, wire.Piece):
                nbr.got_block = True
        except CloseConnection as exc:
            self._close(nbr, exc.reason, now)
        return self.out.flush()

    def end_of_batch(self, cid: int, now: float) -> Sequence[Action]:
        nbr = self._connections.get(cid)
        if nbr is not None and nbr.got_block:
            nbr.got_block = False
            self.exchange.fill_requests(nbr, now)
        return self.out.flush()

    def _handle(self, nbr: Neighbour, message: wire.Message, now: float) -> None:
        if isinstance(message, wire.Piece):
            self.exchange.on_block(nbr, message, now)
        elif isinstance(message, wire.Unknown):
            self._on_unknown(nbr, message)
        else:
            self.exchange.on_message(nbr, message, now)

    def _on_unknown(self, nbr: Neighbour, message: wire.Unknown) -> None:
        """Learn a neighbour's listening port from its BEP 10 handshake; ignore the rest."""
        port = listening_port(message)
        if port is not None and nbr.peer_id is not None:
            address = (nbr.address[0], port)
            if self.trust.is_banned_address(address):
                raise CloseConnection("banned")  # another peer id at a banned address
            self.addresses.learn(address, nbr.peer_id)

    # --- uploads ----------------------------------------------------------------------------

    def next_upload(self, cid: int) -> tuple[int, int, int] | None:
        """The next block a neighbour asked for, (piece, begin, length), while we unchoke it."""
        nbr = self._connections.get(cid)
        if nbr is None or not nbr.uploads or nbr.am_choking:
            return None
        return nbr.uploads.popleft()

    def is_choking(self, cid: int) -> bool:
        """We choke it (or it is gone): a block taken from its queue must not be sent."""
        nbr = self._connections.get(cid)
        return nbr is None or nbr.am_choking

    def block_sent(self, cid: int, length: int, now: float) -> None:
        nbr = self._connections.get(cid)
        if nbr is None:
            return
        nbr.up += length
        nbr.up_meter.add(length, now)
        nbr.last_block_sent_at = now
        self.counters.sent(nbr.peer, length)

    # --- timers -----------------------------------------------------------------------------

    def housekeeping(self, now: float) -> Sequence[Action]:
        """The periodic tick: log the byte counters, close stalled connections, and take back
        requests a neighbour sits on."""
        self._emit_counters()
        for spare in self.spares.expired(now):
            self._close(spare.nbr, "duplicate", now)  # the other connection still stands
        for nbr in list(self.neighbours.values()):
            if now - nbr.last_received > self.settings.stall_timeout:
                self._close(nbr, "stalled", now)
            else:
                self.exchange.take_back_if_stuck(nbr, now)
        return self.out.flush()

    def emit_counters(self, *, force: bool = False) -> Sequence[Action]:
        self._emit_counters(force=force)
        return self.out.flush()

    def _emit_counters(self, force: bool = False) -> None:
        fields = self.counters.event(force)
        if fields is not None:
            self.out.actions.append(Log("counters", fields))

    # --- choking ----------------------------------------------------------------------------

    def rechoke(self, trigger: RechokeTrigger, now: float) -> Sequence[Action]:
        """Let the choker decide (peer/choking.py) and act on its decisions."""
        self.out.actions += self.choking.rechoke(
            trigger, list(self.neighbours.values()), now, we_are_seed=self.pieces.complete,
            num_pieces=self.pieces.num_pieces, upload_capacity=self.upload_capacity)
        return self.out.flush()

    # --- closing ----------------------------------------------------------------------------

    def _close(self, nbr: Neighbour, reason: str, now: float) -> None:
        self._unregister(nbr, reason, now)
        self.out.actions.append(Close(nbr.cid, reason))

    def _refuse(self, nbr: Neighbour, reason: str) -> None:
        """Close a connection that never became a neighbour, counted rather than logged."""
        self._connections.pop(nbr.cid, None)
        self._over_cap.discard(nbr.cid)
        self.counters.refuse(reason)
        self.out.actions.append(Close(nbr.cid, reason))

    def _ban(self, ban: Ban, now: float) -> None:
        """Log a ban and close every connection of the banned peer."""
        addresses = self.addresses.ban(ban.peer)
        self._log("ban", peer=ban.peer, addrs=[f"{host}:{port}" for host, port in addresses],
                  reason=ban.reason, piece=ban.piece, blocks=list(ban.blocks))
        for nbr in list(self._connections.values()):
            if nbr.peer == ban.peer:
                self._close(nbr, "banned", now)

    def _set_aside(self, nbr: Neighbour, now: float) -> None:
        """The neighbour's connection lost a crossed duplicate pair: it stops being the
        neighbour (logged as closed) but stays open as the spare (peer/duplicates.py)."""
        self.exchange.requests.withdraw(nbr)  # its late answers are harmless
        self._forget(nbr, "duplicate", now)
        nbr.uploads.clear()
        self.spares.add(Spare(nbr, now, bytes(8), bytes(self.pieces.have)))

    def _promote(self, spare: Spare, now: float) -> None:
        """The neighbour's other connection closed: its spare takes its place."""
        nbr = spare.nbr
        self._register(nbr, spare.reserved, spare.have_then, now)
        try:
            for message in spare.held:
                if not nbr.registered:
                    return  # closed on the way (both seeds)
                self._handle(nbr, message, now)
        except CloseConnection as exc:
            self._close(nbr, exc.reason, now)
            return
        self.exchange.fill_requests(nbr, now)

    def _unregister(self, nbr: Neighbour, reason: str, now: float) -> None:
        if self._connections.pop(nbr.cid, None) is None:
            return
        self._over_cap.discard(nbr.cid)
        spare = self.spares.of_connection(nbr.cid)
        if spare is not None:
            assert nbr.peer_id is not None
            self.spares.pop(nbr.peer_id)
            if spare.have_then is not None:
                return  # its close was logged when it was set aside
            reason = "duplicate"  # whoever closed it first: it was never needed
        if not nbr.registered:
            if nbr.direction == "out" and nbr.peer_id is None:
                # No handshake came back: a peer full at its cap refuses this way.
                self.addresses.dial_failed(nbr.address, now)
            self._log("conn_close", peer=nbr.peer or None, addr=nbr.addr, reason=reason,
                      up=0, down=0)
            return
        self._forget(nbr, reason, now)
        spare = self.spares.of_peer(nbr.peer_id) if nbr.peer_id is not None else None
        if spare is not None:
            # Never close the last connection to a neighbour as a duplicate: if the remote
            # closed this one, it kept the spare.
            if reason == "remote closed":
                self.spares.pop(spare.nbr.peer_id or b"")
                self._promote(spare, now)
            else:
                self._close(spare.nbr, reason, now)

    def _forget(self, nbr: Neighbour, reason: str, now: float) -> None:
        """A neighbour's connection stops being the neighbour."""
        nbr.registered = False
        if nbr.peer_id is not None and self.neighbours.get(nbr.peer_id) is nbr:
            del self.neighbours[nbr.peer_id]
        self.exchange.left(nbr)
        self._log("conn_close", peer=nbr.peer, addr=nbr.addr, reason=reason, up=nbr.up,
                  down=nbr.down)
        if not nbr.am_choking and (self.settings.unchoke_when_free or self.triggered_rechokes):
            self.out.actions.append(RechokeSoon("disconnect"))
        # Blocks it was fetching are free again: let others pick them up.
        self.exchange.refill_all(now)

    # --- output -----------------------------------------------------------------------------

    def _log(self, ev: str, **fields: Any) -> None:
        self.out.log(ev, **fields)
