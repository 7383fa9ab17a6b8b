"""One connection's I/O on trio: its socket, its wire reader, and its reader and writer tasks.

The protocol state of the connection is the session's (peer/session.py), named by ``cid``; this
module moves bytes between the socket and the session, paced by the node's token buckets.

A peer's CPU goes on wake-ups and task switches, not bytes (docs/capacity.md), so the hot loops
count them. On a plain socket (no link delay) the reader waits for readability and then reads
once, instead of trio's ``receive_some``, which reads first (failing half the time with EAGAIN)
and switches tasks after each success; the writer writes straight to the socket and waits only
when the socket is full. The writer takes several queued blocks of a neighbour from the bucket
at once (up to ``UPLOAD_BATCH_TIME`` of the rate) and sends them in one call: one bucket sleep
and one send here, one wake-up at the receiver, instead of one each per block.
"""

from __future__ import annotations

import os
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
        """Read until the remote's handshake is decoded; later bytes stay in the reader. On a
        plain socket as the reader task reads (``_read_socket``): a connection's set-up is what
        a swarm of hundreds spends its start on (docs/capacity.md)."""
        fd, reader = self.fd, self.reader
        while True:
            if fd is None:
                data = await self.stream.receive_some(RECEIVE_SIZE)
                if not data:
                    raise CloseConnection("handshake failed: closed")
                reader.receive_data(data)
            else:
                await trio.lowlevel.wait_readable(fd)
                size = self._read_ready(fd)
                if size is None:
                    continue
                if not size:
                    raise CloseConnection("handshake failed: closed")
            event = reader.next_event()
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

    async def read(self, session: Session, bucket: TokenBucket, act: Act, clock: Clock) -> None:
        """The reader task: receive, pay the download bucket, deliver; until the remote closes."""
        if self.fd is not None:
            await self._read_socket(self.fd, session, bucket, act, clock)
            return
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

    async def _read_socket(self, fd: int, session: Session, bucket: TokenBucket, act: Act,
                           clock: Clock) -> None:
        """``read`` on a plain socket: wait until readable, then one read (one wake-up and one
        system call per batch of messages)."""
        cid, limited, read_ready = self.cid, not bucket.unlimited, self._read_ready
        wait_readable = trio.lowlevel.wait_readable
        while True:
            await wait_readable(fd)
            size = read_ready(fd)
            if size is None:
                continue
            if not size:
                raise CloseConnection("remote closed")
            now = clock()
            session.bytes_received(cid, now)
            if limited and await bucket.take(size):
                now = clock()
            self.deliver_buffered(session, act, now)

    def _read_ready(self, fd: int) -> int | None:
        """Read what a readable socket holds into the wire reader, with one system call: the
        bytes read (0: the remote closed, as the reader is told), None if nothing was there
        after all. A plain function, so that task CPU stays charged to the task's own
        coroutine (peer/taskcpu.py)."""
        try:
            size = os.readv(fd, (_RECEIVE_BUFFER,))
        except BlockingIOError:
            return None
        # Into the reader before any await: the buffer is the process's, shared.
        self.reader.receive_data(_RECEIVE_VIEW[:size])
        return size

    async def send_now(self, data: bytes) -> bool:
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
                waited = await self.send_now(b"".join(parts)) or waited
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
                await self.send_now(data)
                self.last_sent = trio.current_time()
                continue
            self.wakeup = trio.Event()
            self._idle = True
            try:
                await self.wakeup.wait()
            finally:
                self._idle = False


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
