"""One connection's I/O on trio: its socket, its wire reader, and its reader and writer tasks.

The protocol state of the connection is the session's (peer/session.py), named by ``cid``; this
module moves bytes between the socket and the session, paced by the node's token buckets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import trio

from peer import wire
from peer.actions import Action, CloseConnection
from peer.bucket import TokenBucket
from peer.errors import RemoteProtocolError
from peer.session import Session

RECEIVE_SIZE = 256 * 1024
KEEPALIVE_PERIOD = 60.0

Act = Callable[[Sequence[Action]], None]
"""Does what the session answered (the node's ``_act``)."""
Clock = Callable[[], float]


class Connection:
    """The socket side of one connection to a neighbour."""

    def __init__(self, cid: int, stream: trio.abc.Stream, addr: str, direction: str,
                 num_pieces: int) -> None:
        self.cid = cid
        self.stream = stream
        self.addr = addr
        self.direction = direction
        self.reader = wire.WireReader(num_pieces, expect_handshake=True)
        self.control: list[bytes] = []
        """Bytes waiting for the writer; they ride along with the next block."""
        self.wakeup = trio.Event()
        self.limit: TokenBucket | None = None
        """This neighbour's own upload cap, when the choker sets one (Decision.rate)."""
        self.cancel_scope = trio.CancelScope()

    def send(self, data: bytes) -> None:
        self.control.append(data)
        self.wakeup.set()

    async def receive_handshake(self) -> wire.Handshake:
        """Read until the remote's handshake is decoded; later bytes stay in the reader."""
        while True:
            data = await self.stream.receive_some(RECEIVE_SIZE)
            if not data:
                raise CloseConnection("handshake failed: closed")
            self.reader.receive_data(data)
            event = self.reader.next_event()
            if event is wire.NEED_DATA:
                continue
            assert isinstance(event, wire.Handshake)
            return event

    def deliver_buffered(self, session: Session, act: Act, now: float) -> None:
        """Hand every complete message buffered in the reader to the session, as one batch."""
        reader, cid = self.reader, self.cid
        while True:
            event = reader.next_event()
            if isinstance(event, wire.Sentinel):
                break
            act(session.message_received(cid, event, now))
        act(session.end_of_batch(cid, now))

    async def read(self, session: Session, bucket: TokenBucket, act: Act, clock: Clock) -> None:
        """The reader task: receive, pay the download bucket, deliver; until the remote closes."""
        stream, limited = self.stream, not bucket.unlimited
        while True:
            data = await stream.receive_some(RECEIVE_SIZE)
            if not data:
                raise CloseConnection("remote closed")
            session.bytes_received(self.cid, clock())
            if limited:
                await bucket.take(len(data))
            self.reader.receive_data(data)
            self.deliver_buffered(session, act, clock())

    async def write(self, session: Session, bucket: TokenBucket, clock: Clock) -> None:
        """The writer task: blocks the neighbour asked for, paced by its own cap and the
        peer's upload bucket, with queued messages riding along; a keep-alive when idle."""
        stream, cid = self.stream, self.cid
        while True:
            upload = session.next_upload(cid)
            if upload is not None:
                index, begin, length = upload
                if self.limit is not None:
                    await self.limit.take(length)
                await bucket.take(length)
                if session.is_choking(cid):
                    continue
                # Queued control messages ride along with the block: one system call.
                parts = self.control
                self.control = []
                parts.append(wire.encode_piece_header(index, begin, length))
                parts.append(session.pieces.read_block(index, begin, length))
                await stream.send_all(b"".join(parts))
                session.block_sent(cid, length, clock())
                continue
            if self.control:
                data = b"".join(self.control)
                self.control.clear()
                await stream.send_all(data)
                continue
            self.wakeup = trio.Event()
            with trio.move_on_after(KEEPALIVE_PERIOD) as idle:
                await self.wakeup.wait()
            if idle.cancelled_caught:
                self.send(wire.KEEPALIVE_BYTES)


def close_reason(exc: BaseException) -> str | None:
    """The conn_close reason for an exception that ends one connection (None: a real bug)."""
    if isinstance(exc, CloseConnection):
        return exc.reason
    if isinstance(exc, wire.NotBitTorrentError):
        return "handshake failed: not BitTorrent"
    if isinstance(exc, RemoteProtocolError):
        return f"protocol error: {exc}"
    if isinstance(exc, trio.TooSlowError):
        return "handshake failed: timeout"
    if isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError | OSError):
        return "remote closed"
    return None
