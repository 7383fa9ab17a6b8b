"""The connection's I/O loops (peer/connection.py) over a real socket pair under MockClock:
blocks batched per bucket take, the direct socket path, keep-alives."""

from __future__ import annotations

from collections import deque

import pytest
import trio
from peer_helpers import RawPeer, make_node, make_torrent, peer_config

from peer import wire
from peer.actions import CloseConnection
from peer.bucket import TokenBucket
from peer.config import BLOCK_SIZE
from peer.connection import KEEPALIVE_PERIOD, MAX_UPLOAD_BATCH, Connection, upload_batch


class FakePieces:
    def read_block(self, index: int, begin: int, length: int) -> bytes:
        return bytes([index % 256]) * length


class FakeSession:
    """What the writer and the reader ask of the session."""

    def __init__(self, uploads: list[tuple[int, int, int]]) -> None:
        self.uploads = deque(uploads)
        self.pieces = FakePieces()
        self.choking = False
        self.sent: list[tuple[float, int]] = []
        self.received: list[wire.Message] = []
        self.batches = 0

    def next_upload(self, cid: int) -> tuple[int, int, int] | None:
        return self.uploads.popleft() if self.uploads and not self.choking else None

    def is_choking(self, cid: int) -> bool:
        return self.choking

    def block_sent(self, cid: int, length: int, now: float) -> None:
        self.sent.append((now, length))

    def bytes_received(self, cid: int, now: float) -> None:
        pass

    def message_received(self, cid: int, message: wire.Message, now: float) -> tuple[()]:
        self.received.append(message)
        return ()

    def end_of_batch(self, cid: int, now: float) -> tuple[()]:
        self.batches += 1
        return ()


def socket_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    a, b = trio.socket.socketpair()
    return trio.SocketStream(a), trio.SocketStream(b)


def handshake_done(conn: Connection) -> Connection:
    conn.reader = wire.WireReader(256, expect_handshake=False)
    return conn


async def receive_messages(stream: trio.SocketStream, count: int) -> list[wire.Message]:
    reader = wire.WireReader(256, expect_handshake=False)
    out: list[wire.Message] = []
    while len(out) < count:
        reader.receive_data(await stream.receive_some(1 << 20))
        while (event := reader.next_event()) is not wire.NEED_DATA:
            assert not isinstance(event, wire.Sentinel)
            out.append(event)
    return out


@pytest.mark.parametrize(("rate", "expected"), [
    (None, MAX_UPLOAD_BATCH), (64 * 1024, 1), (160 * 1024, 1), (512 * 1024, 3),
    (1024 * 1024, MAX_UPLOAD_BATCH), (100 * 1024 * 1024, MAX_UPLOAD_BATCH)])
def test_a_batch_is_a_tenth_of_a_second_of_the_rate(rate, expected):
    assert upload_batch(rate) == expected


async def test_queued_blocks_go_in_batches_one_bucket_wait_each(autojump_clock):
    ours, theirs = socket_pair()
    conn = Connection(0, ours, "x:1", "out", 256)
    assert conn.fd is not None  # a plain socket: the direct path
    session = FakeSession([(i, 0, BLOCK_SIZE) for i in range(8)])
    conn.send(wire.INTERESTED_BYTES)  # rides along with the first batch
    rate = 512 * 1024
    bucket = TokenBucket(rate, 2 * BLOCK_SIZE)
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.write, session, bucket, lambda: trio.current_time() - start)
        messages = await receive_messages(theirs, 9)
        nursery.cancel_scope.cancel()
    assert isinstance(messages[0], wire.Interested)
    assert [(m.index, len(m.block)) for m in messages[1:]] == [(i, BLOCK_SIZE) for i in range(8)]
    # Three blocks per take at 512 KiB/s; each batch waits for its own debt, FIFO.
    times = [t for t, _ in session.sent]
    block = BLOCK_SIZE / rate
    assert times == pytest.approx([block] * 3 + [4 * block] * 3 + [6 * block] * 2)
    assert bucket.taken == 8 * BLOCK_SIZE


async def test_blocks_taken_for_a_neighbour_choked_meanwhile_are_given_back(autojump_clock):
    ours, _theirs = socket_pair()
    conn = Connection(0, ours, "x:1", "out", 256)
    session = FakeSession([(i, 0, BLOCK_SIZE) for i in range(3)])
    bucket = TokenBucket(512 * 1024, BLOCK_SIZE)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.write, session, bucket, trio.current_time)
        await trio.sleep(0.001)  # the writer took 3 blocks and waits for 2 of debt
        session.choking = True
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert session.sent == []
    assert bucket.taken == 0
    assert bucket.tokens() == pytest.approx(BLOCK_SIZE)


async def test_the_reader_delivers_each_receive_as_one_batch_and_sees_the_close(autojump_clock):
    ours, theirs = socket_pair()
    conn = handshake_done(Connection(0, ours, "x:1", "out", 256))
    session = FakeSession([])
    payload = b"".join(wire.encode(wire.Have(index=i)) for i in range(5))
    await theirs.send_all(payload + wire.encode_piece_header(3, 0, 4) + b"abcd")
    await theirs.aclose()
    with pytest.raises(CloseConnection, match="remote closed"):
        await conn.read(session, TokenBucket(None, float("inf")), lambda actions: None,
                        trio.current_time)
    assert [type(m).__name__ for m in session.received] == ["Have"] * 5 + ["Piece"]
    assert session.batches == 1


async def test_keep_alive_only_after_a_silence(autojump_clock):
    ours, _theirs = socket_pair()
    conn = Connection(0, ours, "x:1", "out", 256)
    conn.keep_alive(trio.current_time() + KEEPALIVE_PERIOD - 1)
    assert conn.control == []
    conn.keep_alive(trio.current_time() + KEEPALIVE_PERIOD)
    assert conn.control == [wire.KEEPALIVE_BYTES]
    conn.keep_alive(trio.current_time() + 2 * KEEPALIVE_PERIOD)
    assert conn.control == [wire.KEEPALIVE_BYTES]  # one is enough while it waits


async def test_a_node_sends_a_keep_alive_60_to_70_s_into_a_silence(autojump_clock, tmp_path):
    _, torrent, metainfo = make_torrent(tmp_path, size=256 * 1024, piece_length=64 * 1024)
    node = make_node(peer_config(name="p1", index=1, torrent=torrent, role="leecher",
                                 log=tmp_path / "p1.jsonl"))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(node.run)
        peer = await RawPeer.connect(port, 4)
        await peer.handshake(metainfo.info_hash, "-XX0000-quiet0000000")
        silent_since = trio.current_time()
        assert isinstance(await peer.receive(), wire.KeepAlive)
        assert KEEPALIVE_PERIOD <= trio.current_time() - silent_since <= KEEPALIVE_PERIOD + 10
        nursery.cancel_scope.cancel()


async def test_an_idle_writer_is_not_woken_for_messages_the_caller_can_write(autojump_clock):
    ours, theirs = socket_pair()
    conn = Connection(0, ours, "x:1", "out", 256)
    session = FakeSession([])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.write, session, TokenBucket(None, float("inf")),
                           trio.current_time)
        await trio.sleep(1)  # the writer waits for work
        conn.control.append(wire.encode(wire.Request(index=1, begin=0, length=BLOCK_SIZE)))
        conn.flush_control()
        # Written from this task: the writer was not woken, nothing is left queued.
        assert not conn.wakeup.is_set() and conn.control == []
        (request,) = await receive_messages(theirs, 1)
        assert request == wire.Request(index=1, begin=0, length=BLOCK_SIZE)
        # A writer about to run (woken for an upload) sends them itself, with the block.
        session.uploads.append((2, 0, BLOCK_SIZE))
        conn.wakeup.set()
        conn.control.append(wire.INTERESTED_BYTES)
        conn.flush_control()
        assert conn.control == [wire.INTERESTED_BYTES]
        interested, block = await receive_messages(theirs, 2)
        assert isinstance(interested, wire.Interested) and block.index == 2
        nursery.cancel_scope.cancel()
