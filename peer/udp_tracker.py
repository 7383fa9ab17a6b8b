"""The UDP tracker protocol (BEP 15), sans-I/O: datagrams in, datagrams and answers out.

An announce over UDP is two exchanges: ``connect`` (the tracker hands out a 64-bit connection
id, which spares it a TCP handshake and guards against spoofed sources) then ``announce``
with that id. Every request carries a random 32-bit transaction id; a reply with another one is
not ours and is ignored. A request unanswered for 15 x 2^n seconds (n = 0, 1, ...) is sent
again; here the wait is capped (``timeout_cap``) and the attempts are counted, since a testbed
run lasts minutes, not the hours BEP 15's full schedule spans. A connection id is reused for
60 s after it was received (BEP 15: a client may use it for one minute).

``UdpAnnouncer`` keeps the connection id between announces; the caller (the I/O shell in
``peer/tracker_client.py``) sends what it returns, hands it each datagram that arrives, and
calls ``timed_out`` when ``deadline`` passes.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from peer.addresses import decode_compact_peers
from peer.errors import TestbedError

if TYPE_CHECKING:
    from peer.tracker_client import AnnounceRequest

PROTOCOL_ID = 0x41727101980
"""BEP 15's magic constant, the first 8 bytes of every connect request."""
CONNECT, ANNOUNCE, SCRAPE, ERROR = 0, 1, 2, 3
"""BEP 15 actions."""
EVENTS = {"": 0, "completed": 1, "started": 2, "stopped": 3}
CONNECTION_ID_LIFETIME = 60.0
"""Seconds a client may use a connection id after receiving it (BEP 15)."""
BEP15_BASE_TIMEOUT = 15.0
BEP15_MAX_EXPONENT = 8
"""BEP 15: wait 15 x 2^n seconds for an answer, n from 0 up to 8 (3840 s)."""

_CONNECT = struct.Struct(">QII")
_CONNECT_REPLY = struct.Struct(">IIQ")
_ANNOUNCE = struct.Struct(">QII20s20sQQQIIIiH")
_ANNOUNCE_REPLY = struct.Struct(">IIIII")
_HEADER = struct.Struct(">II")


class UdpTrackerError(TestbedError):
    """A datagram that is not a BEP 15 reply, or a tracker that never answered."""


@dataclass(frozen=True, slots=True)
class ConnectReply:
    transaction_id: int
    connection_id: int


@dataclass(frozen=True, slots=True)
class AnnounceReply:
    transaction_id: int
    interval: int
    leechers: int
    seeders: int
    peers: list[tuple[str, int]]


@dataclass(frozen=True, slots=True)
class ErrorReply:
    transaction_id: int
    message: str


Reply = ConnectReply | AnnounceReply | ErrorReply


def encode_connect(transaction_id: int) -> bytes:
    return _CONNECT.pack(PROTOCOL_ID, CONNECT, transaction_id)


def encode_announce(request: AnnounceRequest, *, connection_id: int, transaction_id: int,
                    key: int) -> bytes:
    """The 98-byte announce request. IP 0: the tracker takes the datagram's source address."""
    return _ANNOUNCE.pack(
        connection_id, ANNOUNCE, transaction_id, request.info_hash, request.peer_id,
        request.downloaded, max(0, request.left), request.uploaded, EVENTS[request.event], 0,
        key, request.numwant, request.port)


def decode_reply(data: bytes) -> Reply:
    """A tracker's datagram; UdpTrackerError when it is not a well-formed BEP 15 reply."""
    if len(data) < _HEADER.size:
        raise UdpTrackerError(f"reply of {len(data)} bytes, shorter than its header")
    action, transaction_id = _HEADER.unpack_from(data)
    if action == CONNECT:
        if len(data) < _CONNECT_REPLY.size:
            raise UdpTrackerError(f"connect reply of {len(data)} bytes, not 16")
        return ConnectReply(transaction_id, _CONNECT_REPLY.unpack_from(data)[2])
    if action == ANNOUNCE:
        if len(data) < _ANNOUNCE_REPLY.size or (len(data) - _ANNOUNCE_REPLY.size) % 6:
            raise UdpTrackerError(f"announce reply of {len(data)} bytes, not 20 + 6n")
        _, _, interval, leechers, seeders = _ANNOUNCE_REPLY.unpack_from(data)
        peers = decode_compact_peers(memoryview(data)[_ANNOUNCE_REPLY.size:])
        return AnnounceReply(transaction_id, interval, leechers, seeders, peers)
    if action == ERROR:
        return ErrorReply(transaction_id, data[_HEADER.size:].decode("utf-8", "replace"))
    raise UdpTrackerError(f"unknown action {action} in a tracker reply")


def retransmit_timeout(attempt: int, cap: float) -> float:
    """Seconds to wait for an answer to the ``attempt``-th send (0 first): 15 x 2^n, capped."""
    return float(min(BEP15_BASE_TIMEOUT * 2 ** min(attempt, BEP15_MAX_EXPONENT), cap))


class UdpAnnouncer:
    """Announces to one UDP tracker, one at a time; keeps its connection id between them."""

    def __init__(self, *, rng: random.Random, timeout_cap: float, max_attempts: int) -> None:
        self.rng = rng
        self.key = rng.getrandbits(32)
        """BEP 15's ``key``: the same for every announce of this peer."""
        self.timeout_cap = timeout_cap
        self.max_attempts = max_attempts
        self.connection_id: int | None = None
        self.connected_at = 0.0
        self.deadline = 0.0
        """When the request last sent counts as lost: call ``timed_out`` then."""
        self._request: AnnounceRequest | None = None
        self._transaction_id = 0
        self._attempt = 0

    def begin(self, request: AnnounceRequest, now: float) -> bytes:
        """Start an announce: the first datagram to send (connect, or announce when the
        connection id is still fresh)."""
        self._request = request
        self._attempt = 0
        return self._next_datagram(now)

    def datagram_received(self, data: bytes, now: float) -> bytes | AnnounceReply | None:
        """A datagram from the tracker: the next datagram to send, the announce's answer, or
        None when it is not an answer to our latest request. An ``error`` reply raises
        UdpTrackerError with the tracker's message."""
        try:
            reply = decode_reply(data)
        except UdpTrackerError:
            return None  # not ours to act on; keep waiting for the real answer
        if self._request is None or reply.transaction_id != self._transaction_id:
            return None
        if isinstance(reply, ErrorReply):
            self._request = None
            raise UdpTrackerError(f"tracker error: {reply.message}")
        if isinstance(reply, ConnectReply):
            self.connection_id, self.connected_at = reply.connection_id, now
            self._attempt = 0
            return self._next_datagram(now)
        self._request = None
        return reply

    def timed_out(self, now: float) -> bytes:
        """No answer by ``deadline``: the datagram to send again (a connect when the connection
        id has expired meanwhile). UdpTrackerError after ``max_attempts`` sends."""
        self._attempt += 1
        if self._attempt >= self.max_attempts:
            self._request = None
            raise UdpTrackerError(f"no answer from the tracker after {self.max_attempts} tries")
        return self._next_datagram(now)

    def _next_datagram(self, now: float) -> bytes:
        assert self._request is not None
        self._transaction_id = self.rng.getrandbits(32)
        self.deadline = now + retransmit_timeout(self._attempt, self.timeout_cap)
        if self.connection_id is None or now - self.connected_at >= CONNECTION_ID_LIFETIME:
            self.connection_id = None
            return encode_connect(self._transaction_id)
        return encode_announce(self._request, connection_id=self.connection_id,
                               transaction_id=self._transaction_id, key=self.key)
