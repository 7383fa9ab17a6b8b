"""The peer node (peer/node.py) in-process: rate meter, rechoke timer on MockClock, requests and
choking on socket-less neighbours, and real loopback swarms and bad input against running nodes.
"""

from __future__ import annotations

import hashlib
import random
import struct
from functools import partial

import pytest
import trio
from peer_helpers import (
    RawPeer,
    TrioRunClock,
    events,
    fake_conn,
    make_node,
    make_torrent,
    peer_config,
    peer_id,
    sent_messages,
)

from peer import wire
from peer.config import BLOCK_SIZE, ProtocolSettings
from peer.eventlog import EventLog, RunClock
from peer.node import CloseConnection, Connection, RateMeter
from tracker.server import serve_tracker
from tracker.swarm import Swarm

SIZE = 1024 * 1024
PIECE = 64 * 1024
NUM = SIZE // PIECE

# --- RateMeter ---------------------------------------------------------------------------------


def test_rate_meter_early_rate_divides_by_elapsed_time_at_least_one_second():
    meter = RateMeter(window=20, now=0.0)
    meter.add(1000, 0.2)
    assert meter.rate(0.5) == 1000  # not 2000: at least one second
    meter.add(1000, 1.5)
    assert meter.rate(2.0) == 1000
    assert meter.rate(4.0) == 500


def test_rate_meter_steady_rate_over_the_window():
    meter = RateMeter(window=20, now=0.0)
    for second in range(40):
        meter.add(1000, second + 0.5)
    assert meter.rate(40.0) == pytest.approx(1000)
    assert meter.rate(40.0, window=3.0) == pytest.approx(1000)
    # Old bins are dropped as new ones arrive: the window plus one second is kept.
    assert len(meter.bins) <= 22
    assert meter.bins[0][0] >= 40 - 22


def test_rate_meter_forgets_old_bytes_and_sees_new_ones_in_a_short_window():
    meter = RateMeter(window=20, now=0.0)
    meter.add(20_000, 0.5)
    assert meter.rate(10.0) == 2000
    assert meter.rate(30.0) == 0  # long gone
    meter.add(6000, 30.5)
    assert meter.rate(31.0, window=3.0) == 2000
    assert meter.rate(31.0) == 300


# --- node set-up for in-process tests ----------------------------------------------------------


@pytest.fixture
def torrent(tmp_path):
    return make_torrent(tmp_path, size=SIZE, piece_length=PIECE)


def node_config(tmp_path, torrent, *, index=1, role="leecher", **kw):
    content, path, _ = torrent
    return peer_config(name=f"p{index}", index=index, torrent=path, role=role,
                       log=tmp_path / f"p{index}.jsonl",
                       content=content if role == "seed" else None, **kw)


def virtual_node(tmp_path, torrent, **kw):
    """A node whose run time and log stamps are trio time since now (exact under MockClock)."""
    clock = TrioRunClock()
    node = make_node(node_config(tmp_path, torrent, **kw), clock)
    node._time_offset = trio.current_time()
    return node


class ConstantMeter:
    """Stands in for a RateMeter where a test needs a fixed measured rate."""

    def __init__(self, rate: float) -> None:
        self.value = rate

    def rate(self, now: float, window: float | None = None) -> float:
        return self.value

    def add(self, amount: int, now: float) -> None:
        pass


# --- the rechoke timer on MockClock ------------------------------------------------------------


@pytest.mark.parametrize(("period", "expected"), [
    (10.0, [10.0 * k for k in range(10)]),
    (2.5, [2.5 * k for k in range(38)]),
])
async def test_rechoke_timer_fires_at_exact_virtual_times(autojump_clock, tmp_path, torrent,
                                                          monkeypatch, period, expected):
    node = virtual_node(tmp_path, torrent, protocol=ProtocolSettings(rechoke_period=period))
    calls = []
    monkeypatch.setattr(node, "rechoke", lambda trigger: calls.append((node.now(), trigger)))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(node._rechoke_timer)
        await trio.sleep(94)
        nursery.cancel_scope.cancel()
    assert calls == [(t, "timer") for t in expected]


async def test_rechoke_timer_keeps_its_schedule_when_the_task_wakes_late(autojump_clock, tmp_path,
                                                                         torrent, monkeypatch):
    # A rechoke that runs late (a busy event loop) must not push the following ones back.
    node = virtual_node(tmp_path, torrent)
    calls = []
    monkeypatch.setattr(node, "rechoke", lambda trigger: calls.append(node.now()))
    real_sleep_until = trio.sleep_until

    async def late_sleep_until(deadline):
        await real_sleep_until(deadline + (3.0 if deadline - node._time_offset == 20 else 0.0))

    monkeypatch.setattr(trio, "sleep_until", late_sleep_until)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(node._rechoke_timer)
        await trio.sleep(45)
        nursery.cancel_scope.cancel()
    assert calls == [0.0, 10.0, 23.0, 30.0, 40.0]


async def test_timer_rechokes_rotate_the_optimistic_unchoke_every_30_s(autojump_clock, tmp_path,
                                                                      torrent):
    node = virtual_node(tmp_path, torrent)
    fast = [fake_conn(node, n, peer_interested=True) for n in range(1, 5)]
    slow = [fake_conn(node, n, peer_interested=True) for n in range(5, 9)]
    bored = fake_conn(node, 9)
    for rank, conn in enumerate(fast):
        conn.down_meter = ConstantMeter(10_000.0 * (rank + 1))  # type: ignore[assignment]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(node._rechoke_timer)
        await trio.sleep(95)
        nursery.cancel_scope.cancel()

    rechokes = events(node.log.records, "rechoke")
    assert [r["t"] for r in rechokes] == [10.0 * k for k in range(10)]
    assert [r["round"] for r in rechokes] == list(range(10))
    assert [r["t"] for r in rechokes if r["optimistic_rotated"]] == [0.0, 30.0, 60.0, 90.0]
    optimistic = []
    for r in rechokes:
        decisions = {n["peer"]: n for n in r["nbrs"]}
        assert {p for p, n in decisions.items() if n["decision"] == "regular"} == {
            c.peer for c in fast}
        assert decisions[fast[3].peer]["reason"] == "download rate rank 1"
        assert decisions[fast[3].peer]["down_rate"] == 40_000.0
        assert decisions[bored.peer]["decision"] == "choke"
        assert decisions[bored.peer]["reason"] == "not interested"
        (opt,) = [p for p, n in decisions.items() if n["decision"] == "optimistic"]
        assert opt in {c.peer for c in slow}
        optimistic.append(opt)
    for start in (0, 3, 6):
        assert len(set(optimistic[start:start + 3])) == 1
    # The node acted on the decisions: unchoked peers got one unchoke and nothing else.
    for conn in fast:
        assert sent_messages(conn) == [wire.Unchoke()]
        assert not conn.am_choking and conn.last_unchoked == 0.0
    assert sent_messages(bored) == []


async def test_snubbing_after_snub_time_without_a_block(autojump_clock, tmp_path, torrent):
    node = virtual_node(tmp_path, torrent,
                        protocol=ProtocolSettings(snub_time=60.0, optimistic_slots=0))
    conn = fake_conn(node, 1, peer_interested=True, am_interested=True, peer_choking=False,
                     unchoked_us_at=0.0)
    await trio.sleep(60)
    assert not conn.snubbed(node.now(), 60.0)  # exactly snub_time is not yet snubbing
    node.rechoke("timer")
    await trio.sleep(0.5)
    node.rechoke("timer")
    first, second = events(node.log.records, "rechoke")
    assert first["nbrs"][0]["snubbed"] is False
    assert first["nbrs"][0]["decision"] == "regular"
    assert second["nbrs"][0]["snubbed"] is True
    assert (second["nbrs"][0]["decision"], second["nbrs"][0]["reason"]) == ("choke", "snubbed")
    # A block resets the clock: no longer snubbing.
    conn.last_block_at = node.now()
    assert not conn.snubbed(node.now() + 59, 60.0)
    # Not snubbing while it chokes us, or while we are not interested.
    conn.peer_choking = True
    assert not conn.snubbed(node.now() + 100, 60.0)


async def test_interest_triggers_an_immediate_rechoke_with_unchoke_when_free(
        autojump_clock, tmp_path, torrent):
    node = virtual_node(tmp_path, torrent, role="seed",
                        protocol=ProtocolSettings(unchoke_when_free=True))
    conn = fake_conn(node, 1)
    async with trio.open_nursery() as nursery:
        node._nursery = nursery
        node._on_message(conn, wire.Interested())
        await trio.sleep(0.001)
        assert node.now() < 0.01
    (rechoke,) = events(node.log.records, "rechoke")
    assert rechoke["trigger"] == "interest"
    assert (rechoke["nbrs"][0]["decision"], rechoke["nbrs"][0]["reason"]) == ("regular",
                                                                              "free slot")
    assert sent_messages(conn) == [wire.Unchoke()]


# --- requests and blocks on a socket-less neighbour ---------------------------------------------


async def test_fill_requests_pipelines_and_deepens_with_the_measured_rate(tmp_path, torrent):
    node = make_node(node_config(tmp_path, torrent))
    conn = fake_conn(node, 1)
    node._on_bitfield(conn, wire.bits_from_flags(bytes([1] * NUM)))
    # Interested at once; no requests while it chokes us.
    assert sent_messages(conn) == [wire.Interested()]
    node._on_message(conn, wire.Unchoke())
    requests = sent_messages(conn)
    assert len(requests) == ProtocolSettings().pipeline_depth == len(conn.outstanding)
    assert all(isinstance(r, wire.Request) and r.length == BLOCK_SIZE for r in requests)
    # Strict priority: whole pieces, one after another.
    blocks_per_piece = PIECE // BLOCK_SIZE
    assert len({r.index for r in requests}) == -(-len(requests) // blocks_per_piece)
    # At a measured 8 MiB/s, a quarter second in flight is 128 blocks: all 64 of the file.
    conn.down_meter.add(8 * 1024 * 1024, node.now())
    node._fill_requests(conn)
    assert len(conn.outstanding) == SIZE // BLOCK_SIZE
    # A choke voids them all (BEP 3) and returns them to the pool.
    node._on_message(conn, wire.Choke())
    assert conn.outstanding == {} and len(conn.cancelled) == SIZE // BLOCK_SIZE
    assert node.pieces.free_in_active == SIZE // BLOCK_SIZE


async def test_block_arrivals_verify_a_piece_and_tell_everyone(tmp_path, torrent):
    content, _, _ = torrent
    data = content.read_bytes()
    node = make_node(node_config(tmp_path, torrent))
    sender = fake_conn(node, 1)
    other = fake_conn(node, 2)
    node._on_bitfield(sender, wire.bits_from_flags(bytes([1] * NUM)))
    node._on_bitfield(other, wire.bits_from_flags(bytes([1] + [0] * (NUM - 1))))
    node._on_message(sender, wire.Unchoke())
    sent_messages(sender), sent_messages(other)
    index = next(iter(sender.outstanding))[0]
    for block in range(PIECE // BLOCK_SIZE):
        begin = block * BLOCK_SIZE
        start = index * PIECE + begin
        node._on_block(sender, wire.Piece(index=index, begin=begin,
                                          block=data[start:start + BLOCK_SIZE]))
    (piece,) = events(node.log.records, "piece")
    assert (piece["index"], piece["ok"], piece["from"], piece["size"]) == (
        index, True, [sender.peer], PIECE)
    assert wire.Have(index=index) in sent_messages(other)
    assert node.counters[sender.peer] == [0, PIECE] and node.downloaded == PIECE


async def test_bad_blocks_close_the_connection_and_cancelled_ones_are_dropped(tmp_path, torrent):
    node = make_node(node_config(tmp_path, torrent))
    conn = fake_conn(node, 1, peer_choking=False)
    node._on_bitfield(conn, wire.bits_from_flags(bytes([1] * NUM)))
    (index, begin), length = next(iter(conn.outstanding.items()))
    with pytest.raises(CloseConnection, match="that nobody asked for"):
        node._on_block(conn, wire.Piece(index=NUM - 1, begin=0, block=b"x"))
    with pytest.raises(CloseConnection, match=f"of {length - 1} bytes, asked for {length}"):
        node._on_block(conn, wire.Piece(index=index, begin=begin, block=bytes(length - 1)))
    conn.cancelled.add((NUM - 1, BLOCK_SIZE))
    node._on_block(conn, wire.Piece(index=NUM - 1, begin=BLOCK_SIZE, block=b"late"))
    assert (NUM - 1, BLOCK_SIZE) not in conn.cancelled
    assert node.downloaded == 0


async def test_requests_are_checked_and_dropped_while_choked(tmp_path, torrent):
    seed = make_node(node_config(tmp_path, torrent, role="seed"))
    conn = fake_conn(seed, 1)
    seed._on_request(conn, wire.Request(index=0, begin=0, length=BLOCK_SIZE))
    assert list(conn.uploads) == []  # BEP 3: a choked peer's requests are dropped
    conn.am_choking = False
    seed._on_request(conn, wire.Request(index=0, begin=0, length=BLOCK_SIZE))
    assert list(conn.uploads) == [(0, 0, BLOCK_SIZE)]
    with pytest.raises(CloseConnection, match=r"request outside the file \(0, 65536, 16384\)"):
        seed._on_request(conn, wire.Request(index=0, begin=PIECE, length=BLOCK_SIZE))
    leecher = make_node(node_config(tmp_path, torrent, index=2))
    with pytest.raises(CloseConnection, match="which we do not have"):
        leecher._on_request(fake_conn(leecher, 1, am_choking=False),
                            wire.Request(index=0, begin=0, length=BLOCK_SIZE))


def unchoked_with_everything(node, n, **attrs):
    conn = fake_conn(node, n, **attrs)
    node._on_bitfield(conn, wire.bits_from_flags(bytes([1] * NUM)))
    node._on_message(conn, wire.Unchoke())
    return conn


async def test_end_game_cancels_the_duplicate_and_does_not_ask_for_it_again(tmp_path, torrent):
    content, _, _ = torrent
    data = content.read_bytes()
    node = make_node(node_config(tmp_path, torrent))
    a = fake_conn(node, 1)
    a.down_meter.add(8 * 1024 * 1024, node.now())  # deep pipeline: A gets every block
    node._on_bitfield(a, wire.bits_from_flags(bytes([1] * NUM)))
    node._on_message(a, wire.Unchoke())
    assert len(a.outstanding) == SIZE // BLOCK_SIZE and node.pieces.end_game
    b = unchoked_with_everything(node, 2)
    duplicates = [m for m in sent_messages(b) if isinstance(m, wire.Request)]
    assert len(duplicates) == ProtocolSettings().pipeline_depth
    first = duplicates[0]
    start = first.index * PIECE + first.begin
    node._on_block(a, wire.Piece(index=first.index, begin=first.begin,
                                 block=data[start:start + first.length]))
    after = sent_messages(b)
    assert wire.Cancel(index=first.index, begin=first.begin, length=first.length) in after
    assert (first.index, first.begin) not in b.outstanding
    # Whatever refills the pipeline, it is never the block just cancelled.
    refill = [(m.index, m.begin) for m in after if isinstance(m, wire.Request)]
    assert (first.index, first.begin) not in refill
    node._fill_requests(b)
    assert (first.index, first.begin) not in b.outstanding


async def test_hash_failures_are_blamed_and_a_repeat_offender_is_closed(tmp_path, torrent):
    node = make_node(node_config(tmp_path, torrent))
    liar = unchoked_with_everything(node, 1)
    for round_ in range(3):
        index = min(i for i, _ in liar.outstanding)
        for block in range(PIECE // BLOCK_SIZE):
            node._on_block(liar, wire.Piece(index=index, begin=block * BLOCK_SIZE,
                                            block=bytes(BLOCK_SIZE)))
        pieces = events(node.log.records, "piece")
        assert len(pieces) == round_ + 1
        assert (pieces[-1]["index"], pieces[-1]["ok"], pieces[-1]["blame"]) == (
            index, False, [liar.peer])
        assert node.pieces.have_count == 0
        node._fill_requests(liar)
    assert liar.failed_pieces == 3
    (close,) = events(node.log.records, "conn_close")
    assert (close["peer"], close["reason"]) == (liar.peer, "sent 3 pieces that failed the hash")
    assert liar.peer_id not in node.connections
    assert node.pieces.availability == [0] * NUM


# --- duplicate connections ---------------------------------------------------------------------

# Both sides keep the connection dialled by the smaller peer id, so whichever side decides
# first, exactly one connection survives. The node is peer 5.
DUPLICATES = [
    # (remote peer, existing direction, new direction, which survives)
    (9, "in", "out", "new"),  # we are smaller: keep ours (the new, outgoing one)
    (9, "out", "in", "existing"),
    (2, "out", "in", "new"),  # they are smaller: keep theirs (the new, incoming one)
    (2, "in", "out", "existing"),
    (9, "in", "in", "existing"),  # same direction twice: a second dial, never replace
    (2, "out", "out", "existing"),
]


@pytest.mark.parametrize(("remote", "old_dir", "new_dir", "survivor"), DUPLICATES)
async def test_duplicate_connection_tie_break(tmp_path, torrent, remote, old_dir, new_dir,
                                              survivor):
    node = make_node(node_config(tmp_path, torrent, index=5))
    existing = fake_conn(node, remote, direction=old_dir)
    ours, theirs = trio.testing.memory_stream_pair()
    new = Connection(node, ours, "127.0.0.1:9999", new_dir)  # type: ignore[arg-type]
    node.all_connections.add(new)
    await theirs.send_all(wire.encode(wire.Handshake(
        info_hash=node.metainfo.info_hash, peer_id=peer_id(remote).encode())))
    if survivor == "existing":
        with pytest.raises(CloseConnection, match="duplicate"):
            await node._receive_handshake(new)
        assert node.connections[existing.peer_id] is existing
    else:
        await node._receive_handshake(new)
        assert node.connections[existing.peer_id] is new
        (close,) = events(node.log.records, "conn_close")
        assert (close["peer"], close["reason"]) == (existing.peer, "duplicate")
        assert existing not in node.all_connections


# --- real sockets: a swarm in one process -------------------------------------------------------


async def start_tracker(nursery):
    log = EventLog(None, RunClock())
    port = await nursery.start(partial(serve_tracker, swarm=Swarm(None, rng=random.Random(0)),
                                       log=log, flush_period=0.1))
    return port, log


FAST = ProtocolSettings(unchoke_when_free=True, rechoke_period=0.5, optimistic_period=1.5)


async def test_in_process_swarm_every_leecher_completes_and_logs_everything(tmp_path, torrent):
    content, _, metainfo = torrent
    data = content.read_bytes()
    async with trio.open_nursery() as outer:
        port, tracker_log = await start_tracker(outer)
        url = f"http://127.0.0.1:{port}/announce"
        nodes = [make_node(node_config(tmp_path, torrent, index=0, role="seed", tracker=url,
                                       protocol=FAST, counters_period=0.2))]
        nodes += [make_node(node_config(tmp_path, torrent, index=i, tracker=url, protocol=FAST,
                                        counters_period=0.2)) for i in (1, 2)]
        with trio.fail_after(5):
            async with trio.open_nursery() as peers:
                for node in nodes:
                    await peers.start(node.run)
                for node in nodes[1:]:
                    await node.completed.wait()
                    # The `completed` announce follows completion; let it reach the tracker.
                    while not any(a["event"] == "completed"
                                  for a in events(node.log.records, "announce")):
                        await trio.sleep(0.01)
                peers.cancel_scope.cancel()
        outer.cancel_scope.cancel()

    for node in nodes:
        records = node.log.records
        names = [r["ev"] for r in records]
        assert names[0] == "start" and names[-1] == "stop"
        start = records[0]
        assert (start["schema"], start["pieces"], start["info_hash"]) == (
            1, NUM, metainfo.info_hash.hex())
        announces = events(records, "announce")
        assert announces[0]["event"] == "started" and announces[0]["ok"]
        assert announces[-1]["event"] == "stopped"
        assert events(records, "conn_open")
        assert all(o["dir"] in ("in", "out") for o in events(records, "conn_open"))
        assert events(records, "counters")
        rechokes = events(records, "rechoke")
        assert rechokes and all(isinstance(r["nbrs"], list) for r in rechokes)
        for r in rechokes:
            for n in r["nbrs"]:
                assert n["decision"] in ("regular", "optimistic", "choke") and n["reason"]
        # Never two open connections to the same neighbour.
        open_now: dict[str, int] = {}
        for r in records:
            if r["ev"] == "conn_open":
                open_now[r["peer"]] = open_now.get(r["peer"], 0) + 1
                assert open_now[r["peer"]] == 1
            elif r["ev"] == "conn_close" and r["peer"] in open_now:
                open_now[r["peer"]] -= 1
    seed_log = nodes[0].log.records
    assert any(n["decision"] == "regular" for r in events(seed_log, "rechoke") for n in r["nbrs"])
    assert not events(seed_log, "piece") and not events(seed_log, "complete")
    for node in nodes[1:]:
        records = node.log.records
        pieces = events(records, "piece")
        assert sorted(p["index"] for p in pieces) == list(range(NUM))
        assert all(p["ok"] and p["from"] and p["blame"] == [] for p in pieces)
        assert all(p["start"] <= p["t"] for p in pieces)
        (complete,) = events(records, "complete")
        assert complete["downloaded"] >= SIZE
        assert [a["event"] for a in events(records, "announce")].count("completed") == 1
        assert bytes(node.pieces.storage) == data
        assert node.pieces.bytes_verified == SIZE
        assert events(records, "counters")[-1]["down"] == node.downloaded
    tracked = [(a["peer"], a["event"]) for a in events(tracker_log.records, "announce")]
    for i in (0, 1, 2):
        assert (peer_id(i), "started") in tracked and (peer_id(i), "stopped") in tracked
    for i in (1, 2):
        assert (peer_id(i), "completed") in tracked


async def test_periodic_announces_do_not_replace_an_established_connection(tmp_path, torrent):
    # The seed (peer 1, the smaller id) is dialled by the leecher (peer 2). Each periodic
    # announce hands the seed the leecher's listening address; the seed must not dial it again
    # and tear down the working connection in the duplicate tie-break.
    settings = ProtocolSettings(unchoke_when_free=True, announce_interval=0.2)
    async with trio.open_nursery() as outer:
        port, _ = await start_tracker(outer)
        url = f"http://127.0.0.1:{port}/announce"
        seed = make_node(node_config(tmp_path, torrent, index=1, role="seed", tracker=url,
                                     protocol=settings))
        leecher = make_node(node_config(tmp_path, torrent, index=2, tracker=url,
                                        protocol=settings, download=256 * 1024))
        with trio.fail_after(3):
            async with trio.open_nursery() as peers:
                await peers.start(seed.run)
                while not events(seed.log.records, "announce"):
                    await trio.sleep(0.01)
                await peers.start(leecher.run)
                await trio.sleep(1.0)  # about five announces each; the download takes 4 s
                assert not leecher.pieces.complete
                peers.cancel_scope.cancel()
        outer.cancel_scope.cancel()
    for node, other in ((seed, peer_id(2)), (leecher, peer_id(1))):
        opened = [o for o in events(node.log.records, "conn_open") if o["peer"] == other]
        replaced = [c for c in events(node.log.records, "conn_close")
                    if c["reason"] == "duplicate" and c["up"] + c["down"] > 0]
        assert len(opened) == 1 and replaced == [], (opened, replaced)


# --- real sockets: bad input against a running node ---------------------------------------------


BAD_INPUT = [
    # (name, what to send after a good handshake (None: instead of one), close reason fragment)
    ("garbage handshake", b"GET /announce HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(40), None,
     "handshake failed: not BitTorrent"),
    ("wrong info_hash", wire.Handshake(info_hash=b"\x01" * 20, peer_id=b"-XX0000-badbadbadbad"),
     None, "wrong info_hash"),
    ("request outside the piece", None, wire.Request(index=0, begin=PIECE, length=BLOCK_SIZE),
     "protocol error: request outside the file (0, 65536, 16384)"),
    ("request for a piece past the end", None,
     struct.pack(">IBIII", 13, 6, NUM, 0, BLOCK_SIZE), "protocol error: Request.index 16"),
    ("request over 16 KiB", None, struct.pack(">IBIII", 13, 6, 0, 0, BLOCK_SIZE + 1),
     "protocol error: Request.length 16385 out of range"),
    ("over-long length prefix", None, struct.pack(">IB", 2**31, 7),
     "protocol error: Piece message with length 2147483648"),
    ("over-long length prefix, id unknown", None, b"\xff\xff\xff\xff",
     "exceeds the largest legal message"),
    ("piece nobody asked for", None, wire.Piece(index=1, begin=0, block=b"x" * 100),
     "protocol error: piece (1, 0) that nobody asked for"),
    ("bitfield of the wrong size", None, wire.Bitfield(bits=b"\xff"),
     "protocol error: Bitfield message with length 2"),
]


async def good_exchange(peer: RawPeer, info_hash: bytes, data: bytes, index: int) -> None:
    """Ask the node for one block and check its bytes."""
    await peer.send(wire.Interested())
    await peer.expect(wire.Unchoke)
    await peer.send(wire.Request(index=index, begin=BLOCK_SIZE, length=BLOCK_SIZE))
    block = await peer.expect(wire.Piece)
    start = index * PIECE + BLOCK_SIZE
    assert (block.index, block.begin) == (index, BLOCK_SIZE)
    assert hashlib.sha1(block.block).digest() == hashlib.sha1(data[start:start + BLOCK_SIZE]
                                                              ).digest()


@pytest.mark.parametrize(("name", "instead", "after", "reason"), BAD_INPUT,
                         ids=[b[0] for b in BAD_INPUT])
async def test_bad_input_closes_only_that_connection(tmp_path, torrent, name, instead, after,
                                                     reason):
    content, _, metainfo = torrent
    data = content.read_bytes()
    node = make_node(node_config(tmp_path, torrent, role="seed", protocol=FAST))
    with trio.fail_after(2):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(node.run)
            good = await RawPeer.connect(port, NUM)
            await good.handshake(metainfo.info_hash, "-XX0000-good00000000")
            await good.expect(wire.Bitfield)

            bad = await RawPeer.connect(port, NUM)
            if instead is not None:
                await bad.send(instead)
            else:
                await bad.handshake(metainfo.info_hash, "-XX0000-bad000000000")
                await bad.send(after)
            await bad.wait_closed()
            await bad.aclose()

            await good_exchange(good, metainfo.info_hash, data, index=3)
            nursery.cancel_scope.cancel()

    closes = events(node.log.records, "conn_close")
    bad_closes = [c for c in closes if c["reason"] != "shutdown"]
    assert len(bad_closes) == 1, closes
    assert reason in bad_closes[0]["reason"]
    assert bad_closes[0]["peer"] in (None, "-XX0000-bad000000000")
    # The good connection lived until shutdown.
    assert [c["reason"] for c in closes if c["peer"] == "-XX0000-good00000000"] == ["shutdown"]
    assert events(node.log.records, "stop")


async def test_a_stalled_connection_is_closed(tmp_path, torrent):
    _, _, metainfo = torrent
    node = make_node(node_config(tmp_path, torrent, role="seed", counters_period=0.1,
                                 protocol=ProtocolSettings(stall_timeout=0.3)))
    with trio.fail_after(2):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(node.run)
            quiet = await RawPeer.connect(port, NUM)
            await quiet.handshake(metainfo.info_hash, "-XX0000-quiet0000000")
            await quiet.wait_closed()
            nursery.cancel_scope.cancel()
    (close,) = events(node.log.records, "conn_close")
    assert (close["peer"], close["reason"]) == ("-XX0000-quiet0000000", "stalled")


async def test_a_second_connection_with_the_same_peer_id_is_refused(tmp_path, torrent):
    content, _, metainfo = torrent
    data = content.read_bytes()
    node = make_node(node_config(tmp_path, torrent, role="seed", protocol=FAST))
    with trio.fail_after(2):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(node.run)
            first = await RawPeer.connect(port, NUM)
            await first.handshake(metainfo.info_hash, "-XX0000-twin00000000")
            await first.expect(wire.Bitfield)
            second = await RawPeer.connect(port, NUM)
            await second.send(wire.Handshake(info_hash=metainfo.info_hash,
                                             peer_id=b"-XX0000-twin00000000"))
            await second.wait_closed()
            await good_exchange(first, metainfo.info_hash, data, index=0)
            nursery.cancel_scope.cancel()
    reasons = [c["reason"] for c in events(node.log.records, "conn_close")]
    assert reasons == ["duplicate", "shutdown"]
    assert len(events(node.log.records, "conn_open")) == 1
