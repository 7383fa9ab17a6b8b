"""Connections' I/O on trio: a connection's socket, wire reader and writer task, and the peer's
read loop.

The protocol state of the connection is the session's (peer/session.py), named by ``cid``; this
module moves bytes between the socket and the session, paced by the node's token buckets.

A peer's CPU goes on wake-ups and task switches, not bytes (docs/capacity.md), so the hot loops
count them. Plain sockets (no link delay) are read by one task per peer, ``ReadLoop``, which
keeps them in its own epoll set and reads every ready one per wake-up, once each (trio's
``receive_some`` reads first, failing half the time with EAGAIN, and a task per connection
switches tasks and re-registers its socket for every read). The writer writes straight to the
socket and waits only when the socket is full. It takes several queued blocks of a neighbour
from the bucket at once (up to ``UPLOAD_BATCH_TIME`` of the rate) and sends them in one call:
one bucket sleep and one send here, one wake-up at the receiver, instead of one each per block.
"""

from __future__ import annotations

import contextlib
import os
import select
from collections.abc import Callable, Sequence

import trio

from peer import wire
from peer.actions import Action, CloseConnection
from peer.bucket import TokenBucket
from peer.config import BLOCK_SIZE
from peer.errors import RemoteProtocolError
from peer.session import Session

RECEIVE_SIZE = 256 * 1024
KEEPALIVE_PERIOD = 60.0
"""A connection we sent nothing on for this long gets a keep-alive (the node's sweep)."""
KEEPALIVE_SWEEP = 10.0
"""Seconds between the node's keep-alive sweeps: a keep-alive goes 60-70 s into a silence."""
UPLOAD_BATCH_TIME = 0.1
"""Seconds of the upload rate the writer may take from the bucket in one go, as several blocks
queued for one neighbour: long beside a block's own time, short beside the one second of rate
the neighbour keeps requested (``request_queue_time``), so its pipeline never runs dry."""
MAX_UPLOAD_BATCH = 4
"""Blocks per batch at most (unlimited uploads: until the socket is full)."""

_RECEIVE_BUFFER = bytearray(RECEIVE_SIZE)
_RECEIVE_VIEW = memoryview(_RECEIVE_BUFFER)
"""Every plain-socket reader of the process reads into this one buffer and copies what it got
into its wire reader before it awaits anything (a buffer per connection would be 256 KiB x 55
neighbours of memory)."""

Act = Callable[[Sequence[Action]], None]
"""Does what the session answered (the node's ``_act``)."""
Clock = Callable[[], float]


def _write_now(fd: int, data: bytes | memoryview) -> int:
    """Write what the socket takes without waiting: the bytes written (0 when it is full)."""
    try:
        return os.write(fd, data)
    except BlockingIOError:
        return 0


def upload_batch(rate: float | None) -> int:
    """How many queued blocks the writer takes from a bucket of ``rate`` bytes/s at once."""
    if rate is None:
        return MAX_UPLOAD_BATCH
    return max(1, min(MAX_UPLOAD_BATCH, int(rate * UPLOAD_BATCH_TIME) // BLOCK_SIZE))


class Connection:
    """The socket side of one connection to a neighbour."""

    def __init__(self, cid: int, stream: trio.abc.Stream, addr: str, direction: str,
                 num_pieces: int) -> None:
        self.cid = cid
        self.stream = stream
        self.fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else None
        """The socket's descriptor for the direct path; None for any other stream (a delay
        line's), which goes through trio's stream interface."""
        self.addr = addr
        self.direction = direction
        self.reader = wire.WireReader(num_pieces, expect_handshake=True)
        self.control: list[bytes] = []
        """Bytes waiting for the writer; they ride along with the next block."""
        self.wakeup = trio.Event()
        self.limit: TokenBucket | None = None
        """This neighbour's own upload cap, when the choker sets one (Decision.rate)."""
        self.cancel_scope = trio.CancelScope()
        self._idle = False
        """The writer waits for something to send (``flush_control`` may write for it)."""
        self.last_sent = trio.current_time()
        """When the writer last sent anything (trio's clock): the keep-alive sweep reads it."""
        self.read_ended = trio.Event()
        self.read_error: BaseException | None = None
        """Why the peer's read loop stopped reading this connection (``read_ended`` is set)."""

    def send(self, data: bytes) -> None:
        self.control.append(data)
        self.wakeup.set()

    def flush_control(self) -> None:
        """Messages that must not wait were queued: while the writer is idle, write them now
        from the caller's task (a request or an unchoke then costs no wake-up of the writer);
        otherwise wake the writer, which sends them, with its next blocks if it has any."""
        fd = self.fd
        if fd is None or not self._idle or self.wakeup.is_set():
            self.wakeup.set()
            return
        data = b"".join(self.control)
        try:
            sent = _write_now(fd, data)
        except OSError:  # broken: the writer meets the error and closes
            self.wakeup.set()
            return
        self.control.clear()
        if sent < len(data):
            self.control.append(data[sent:])
            self.wakeup.set()
        self.last_sent = trio.current_time()

    def keep_alive(self, now: float) -> None:
        """Queue a keep-alive if nothing was sent for ``KEEPALIVE_PERIOD`` (trio's clock)."""
        if now - self.last_sent >= KEEPALIVE_PERIOD and not self.control:
            self.send(wire.KEEPALIVE_BYTES)

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
        next_event, received, cid = self.reader.next_event, session.message_received, self.cid
        while True:
            event = next_event()
            if isinstance(event, wire.Sentinel):
                break
            actions = received(cid, event, now)
            if actions:
                act(actions)
        actions = session.end_of_batch(cid, now)
        if actions:
            act(actions)

    async def read(self, session: Session, bucket: TokenBucket, act: Act, clock: Clock,
                   loop: ReadLoop | None = None) -> None:
        """The reader task: receive, pay the download bucket, deliver; until the remote closes.
        A plain socket is read by the peer's ``loop`` while this task waits for the end."""
        if self.fd is not None and loop is not None:
            loop.add(self)
            try:
                await self.read_ended.wait()
            finally:
                loop.remove(self)
            assert self.read_error is not None
            raise self.read_error
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

    async def _send(self, data: bytes) -> bool:
        """Send all of ``data``; True if that waited (a checkpoint), False if the socket took
        it at once (no checkpoint)."""
        fd = self.fd
        if fd is None:
            await self.stream.send_all(data)
            return True
        sent = _write_now(fd, data)
        if sent == len(data):
            return False
        rest = memoryview(data)[sent:]
        while rest:
            await trio.lowlevel.wait_writable(fd)
            rest = rest[_write_now(fd, rest):]
        return True

    def _next_uploads(self, session: Session, bucket: TokenBucket) -> list[tuple[int, int, int]]:
        """The blocks to send next (none while it is choked or asked for nothing): up to one
        batch of its queue, sized by the slower of the peer's and the neighbour's caps."""
        rate = bucket.rate
        if self.limit is not None and self.limit.rate is not None:
            rate = self.limit.rate if rate is None else min(rate, self.limit.rate)
        uploads = []
        for _ in range(upload_batch(rate)):
            upload = session.next_upload(self.cid)
            if upload is None:
                break
            uploads.append(upload)
        return uploads

    async def write(self, session: Session, bucket: TokenBucket, clock: Clock) -> None:
        """The writer task: blocks the neighbour asked for, paced by its own cap and the
        peer's upload bucket, with queued messages riding along."""
        cid = self.cid
        while True:
            uploads = self._next_uploads(session, bucket)
            if uploads:
                amount = sum(length for _, _, length in uploads)
                limit = self.limit
                waited = limit is not None and await limit.take(amount)
                waited = await bucket.take(amount) or waited
                if session.is_choking(cid):
                    bucket.give_back(amount)
                    if limit is not None:
                        limit.give_back(amount)
                    continue
                # Queued control messages ride along with the blocks: one system call.
                parts = self.control
                self.control = []
                read_block = session.pieces.read_block
                for index, begin, length in uploads:
                    parts.append(wire.encode_piece_header(index, begin, length))
                    parts.append(read_block(index, begin, length))
                waited = await self._send(b"".join(parts)) or waited
                now = clock()
                self.last_sent = trio.current_time()
                for _, _, length in uploads:
                    session.block_sent(cid, length, now)
                if not waited:
                    await trio.lowlevel.checkpoint()  # let other tasks run between batches
                continue
            if self.control:
                data = b"".join(self.control)
                self.control.clear()
                await self._send(data)
                self.last_sent = trio.current_time()
                continue
            self.wakeup = trio.Event()
            self._idle = True
            try:
                await self.wakeup.wait()
            finally:
                self._idle = False


class ReadLoop:
    """Reads every plain-socket connection of a peer, in one task, from a private epoll set.

    A reader task per connection costs, per read, a trio task switch and a re-registration of
    its socket (trio's epoll registrations are one-shot); here the sockets stay registered
    (level-triggered) and one wake-up of the task reads every connection that has data, in
    the order epoll reports them. Each connection's task waits only for its end
    (``Connection.read``): an error reading or delivering ends that connection alone.

    The download bucket is the peer's, shared by all its connections, so while a read waits
    for it the others wait too, as its bytes would have in the kernel's buffers anyway.
    """

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._connections: dict[int, Connection] = {}

    def add(self, conn: Connection) -> None:
        assert conn.fd is not None
        self._epoll.register(conn.fd, select.EPOLLIN)
        self._connections[conn.fd] = conn

    def remove(self, conn: Connection) -> None:
        fd = conn.fd
        if fd is None or self._connections.get(fd) is not conn:
            return
        del self._connections[fd]
        if not self._epoll.closed:
            with contextlib.suppress(OSError):
                self._epoll.unregister(fd)

    def _end(self, conn: Connection, exc: BaseException) -> None:
        self.remove(conn)
        conn.read_error = exc
        conn.read_ended.set()

    async def run(self, session: Session, bucket: TokenBucket, act: Act, clock: Clock) -> None:
        """Read until cancelled: one read (up to ``RECEIVE_SIZE``) per ready connection per
        wake-up, then its complete messages go to the session as one batch."""
        connections, limited = self._connections, not bucket.unlimited
        wait_readable, poll, readv = trio.lowlevel.wait_readable, self._epoll.poll, os.readv
        buffer, view = _RECEIVE_BUFFER, _RECEIVE_VIEW
        try:
            while True:
                await wait_readable(self._epoll.fileno())
                for fd, _ in poll(0):
                    conn = connections.get(fd)
                    if conn is None:
                        continue
                    if conn.cancel_scope.cancel_called:  # closed: its task is about to end
                        self.remove(conn)
                        continue
                    try:
                        size = readv(fd, (buffer,))
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        self._end(conn, exc)
                        continue
                    if not size:
                        self._end(conn, CloseConnection("remote closed"))
                        continue
                    # Into the reader before any await: the buffer is the process's, shared.
                    conn.reader.receive_data(view[:size])
                    now = clock()
                    session.bytes_received(conn.cid, now)
                    if limited and await bucket.take(size):
                        now = clock()
                        if connections.get(fd) is not conn:
                            continue  # it closed while this read waited for the bucket
                    try:
                        conn.deliver_buffered(session, act, now)
                    except Exception as exc:  # its connection's task raises it
                        self._end(conn, exc)
        finally:
            self._epoll.close()


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
