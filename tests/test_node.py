"""The peer node (peer/node.py), the trio shell around the session, driven from outside: its
timers under MockClock, and real loopback swarms and bad input against running nodes. The
protocol decisions themselves are tested without sockets in test_session.py.
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
    make_node,
    make_torrent,
    peer_config,
    peer_id,
)

from peer import wire
from peer.config import BLOCK_SIZE, ProtocolSettings
from peer.eventlog import EventLog, RunClock
from tracker.server import serve_tracker
from tracker.swarm import Swarm

SIZE = 1024 * 1024
PIECE = 64 * 1024
NUM = SIZE // PIECE


@pytest.fixture
def torrent(tmp_path):
    return make_torrent(tmp_path, size=SIZE, piece_length=PIECE)


def node_config(tmp_path, torrent, *, index=1, role="leecher", **kw):
    content, path, _ = torrent
    kw.setdefault("content", content if role == "seed" else None)
    return peer_config(name=f"p{index}", index=index, torrent=path, role=role,
                       log=tmp_path / f"p{index}.jsonl", **kw)


# --- the rechoke timer on MockClock ------------------------------------------------------------


async def run_for(node, seconds):
    """Run a node (with no tracker to reach and no neighbours) for ``seconds`` of trio time."""
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(("period", "expected"), [
    (10.0, [10.0 * k for k in range(10)]),
    (2.5, [2.5 * k for k in range(38)]),
])
async def test_rechoke_timer_fires_at_exact_virtual_times(autojump_clock, tmp_path, torrent,
                                                          period, expected):
    clock = TrioRunClock()
    node = make_node(node_config(tmp_path, torrent,
                                 protocol=ProtocolSettings(rechoke_period=period)), clock)
    await run_for(node, 94)
    rechokes = events(node.log.records, "rechoke")
    assert [(r["t"], r["trigger"]) for r in rechokes] == [(t, "timer") for t in expected]
    assert [r["round"] for r in rechokes] == list(range(len(expected)))


async def test_rechoke_timer_keeps_its_schedule_when_the_task_wakes_late(autojump_clock, tmp_path,
                                                                         torrent, monkeypatch):
    # A rechoke that runs late (a busy event loop) must not push the following ones back.
    clock = TrioRunClock()
    node = make_node(node_config(tmp_path, torrent), clock)
    real_sleep_until = trio.sleep_until

    async def late_sleep_until(deadline):
        await real_sleep_until(deadline + (3.0 if deadline - clock.run_start == 20 else 0.0))

    monkeypatch.setattr(trio, "sleep_until", late_sleep_until)
    await run_for(node, 45)
    assert [r["t"] for r in events(node.log.records, "rechoke")] == [0.0, 10.0, 23.0, 30.0, 40.0]


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
                                        counters_period=0.2, content=tmp_path / f"got{i}"))
                  for i in (1, 2)]
        with trio.fail_after(5):
            async with trio.open_nursery() as peers:
                for node in nodes:
                    await peers.start(node.run)
                for node in nodes[1:]:
                    await node.completed.wait()
                    # Written out (off the event loop) before the peer counts as complete.
                    assert (tmp_path / f"got{node.config.seed}").read_bytes() == data
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
        assert events(records, "counters")[-1]["down"] == node.session.downloaded
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


async def test_a_handshake_in_pieces_is_read_whole_and_one_cut_short_closes(tmp_path, torrent):
    # The handshake is read on the socket directly: a handshake arriving in two segments is
    # reassembled, and a remote that closes halfway through is a failed handshake.
    _, _, metainfo = torrent
    node = make_node(node_config(tmp_path, torrent, role="seed", protocol=FAST))
    ours = wire.encode(wire.Handshake(info_hash=metainfo.info_hash,
                                      peer_id=b"-XX0000-slow00000000"))
    with trio.fail_after(2):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(node.run)
            slow = await RawPeer.connect(port, NUM)
            await slow.send(ours[:30])
            await trio.sleep(0.05)
            await slow.send(ours[30:])
            assert isinstance(await slow.receive(), wire.Handshake)
            await slow.expect(wire.Bitfield)
            short = await RawPeer.connect(port, NUM)
            await short.send(ours[:30])
            assert isinstance(await short.receive(), wire.Handshake)  # nothing unread: a FIN
            await short.aclose()
            while len(events(node.log.records, "conn_close")) < 1:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert [c["reason"] for c in events(node.log.records, "conn_close")] == [
        "handshake failed: closed", "shutdown"]
    assert [o["peer"] for o in events(node.log.records, "conn_open")] == ["-XX0000-slow00000000"]


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


async def rechokes_when_told(tmp_path, torrent, *messages: wire.Message) -> list[dict]:
    """The rechokes a seed logs (``unchoke_when_free``; the timer's only every 1000 s, so any
    other is triggered) when a neighbour sends ``messages`` in one send, until it is
    unchoked."""
    _, _, metainfo = torrent
    node = make_node(node_config(tmp_path, torrent, role="seed", protocol=ProtocolSettings(
        unchoke_when_free=True, rechoke_period=1000.0)))
    with trio.fail_after(2):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(node.run)
            peer = await RawPeer.connect(port, NUM)
            await peer.handshake(metainfo.info_hash, "-XX0000-keen00000000")
            await peer.expect(wire.Bitfield)
            await peer.send(*messages)
            await peer.expect(wire.Unchoke)
            await trio.sleep(0.05)  # time for any further rechoke
            nursery.cancel_scope.cancel()
    return events(node.log.records, "rechoke")


async def test_the_triggers_of_one_batch_of_messages_make_one_rechoke(tmp_path, torrent):
    # The first and the last message each ask for a rechoke; the second request joins the
    # pending one.
    rechokes = await rechokes_when_told(tmp_path, torrent, wire.Interested(),
                                        wire.NotInterested(), wire.Interested())
    assert [r["trigger"] for r in rechokes] == ["timer", "interest"]


async def test_interest_unchokes_at_once_with_unchoke_when_free(tmp_path, torrent):
    # The unchoke must come from the interest, not from the timer.
    timer, interest = await rechokes_when_told(tmp_path, torrent, wire.Interested())
    assert (timer["trigger"], timer["nbrs"]) == ("timer", [])
    assert interest["trigger"] == "interest"
    assert [(n["peer"], n["decision"], n["reason"]) for n in interest["nbrs"]] == [
        ("-XX0000-keen00000000", "regular", "free slot")]
