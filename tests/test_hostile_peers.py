"""Hostile peers against real nodes over loopback (one process, real time, a few seconds): a
seed that lies beside an honest one, and an idle-connection flood at the neighbour cap.

The liar is a test-only fault: an ordinary node whose storage reads come back with one byte
flipped in every block, so every block it sends is wrong and nothing else about it differs.
"""

from __future__ import annotations

import random
from functools import partial

import pytest
import trio
from peer_helpers import RawPeer, events, make_node, make_torrent, peer_config, peer_id

from peer import wire
from peer.config import BLOCK_SIZE, ProtocolSettings
from peer.eventlog import EventLog, RunClock
from peer.node import Node
from tracker.server import serve_tracker
from tracker.swarm import Swarm

pytestmark = pytest.mark.integration

SIZE = 1024 * 1024
PIECE = 64 * 1024
SEED_RATE = 512 * 1024
SETTINGS = ProtocolSettings(unchoke_when_free=True, rechoke_period=0.5, optimistic_period=1.5,
                            announce_interval=0.3)
HONEST, LIAR, LEECHER = 1, 2, 3


def make_liar(node: Node) -> Node:
    """Every block the node sends has its first byte flipped."""
    honest_read = node.pieces.read_block

    def lying_read(index: int, begin: int, length: int) -> bytes:
        block = bytearray(honest_read(index, begin, length))
        block[0] ^= 0xFF
        return bytes(block)

    node.pieces.read_block = lying_read  # type: ignore[method-assign]
    return node


async def leecher_beside(tmp_path, torrent, *, liar: bool) -> tuple[Node, float]:
    """Run an honest seed (and the liar) and a leecher to completion; the leecher and its
    download time."""
    content, path, _ = torrent

    def config(index, role, **kw):
        return peer_config(name=f"p{index}", index=index, torrent=path, role=role,
                           log=tmp_path / f"p{index}.jsonl", protocol=SETTINGS, **kw)

    async with trio.open_nursery() as outer:
        port = await outer.start(partial(serve_tracker, swarm=Swarm(None, rng=random.Random(0)),
                                         log=EventLog(None, RunClock()), flush_period=0.1))
        url = f"http://127.0.0.1:{port}/announce"
        seeds = [make_node(config(HONEST, "seed", content=content, tracker=url,
                                  upload=SEED_RATE))]
        if liar:
            seeds.append(make_liar(make_node(config(LIAR, "seed", content=content,
                                                    tracker=url, upload=SEED_RATE))))
        leecher = make_node(config(LEECHER, "leecher", tracker=url,
                                   content=tmp_path / f"got-{liar}"))
        with trio.fail_after(15):
            async with trio.open_nursery() as peers:
                for seed in seeds:
                    await peers.start(seed.run)
                await peers.start(leecher.run)
                await leecher.completed.wait()
                await trio.sleep(1.0)  # a few more announces: the liar must stay away
                peers.cancel_scope.cancel()
        outer.cancel_scope.cancel()
    (complete,) = events(leecher.log.records, "complete")
    assert (tmp_path / f"got-{liar}").read_bytes() == content.read_bytes()
    return leecher, complete["elapsed"]


async def test_a_lying_seed_is_banned_for_good_and_the_honest_one_is_never_blamed(tmp_path):
    torrent = make_torrent(tmp_path, size=SIZE, piece_length=PIECE)
    _, alone = await leecher_beside(tmp_path, torrent, liar=False)
    leecher, with_liar = await leecher_beside(tmp_path, torrent, liar=True)
    records = leecher.log.records
    honest, liar = peer_id(HONEST), peer_id(LIAR)

    (ban,) = events(records, "ban")
    assert ban["peer"] == liar and ban["addrs"], ban
    assert all(honest not in p["blame"] for p in events(records, "piece"))
    # The honest seed sent every verified byte and was closed only as a seed beside a seed
    # (or as the spare of a crossed dial), never for what the liar did.
    honest_closes = [c for c in events(records, "conn_close") if c["peer"] == honest]
    assert {c["reason"] for c in honest_closes} <= {"both seeds", "remote closed", "duplicate",
                                                    "shutdown"}, honest_closes
    assert sum(c["down"] for c in honest_closes) >= SIZE
    assert [c["reason"] for c in events(records, "conn_close") if c["peer"] == liar] == \
        ["banned"]
    assert not [o for o in events(records, "conn_open")
                if o["peer"] == liar and o["t"] > ban["t"]]
    # Every failed piece had a block from the liar; each was fetched again and verified.
    failed = [p for p in events(records, "piece") if not p["ok"]]
    assert failed and all(liar in p["from"] for p in failed)
    # The liar cost the time of the pieces it spoiled before its ban; measured over several
    # runs it is within 10 % (README); a loose bound here, as the host may be loaded.
    print(f"leecher download time: alone {alone:.2f} s, beside the liar {with_liar:.2f} s "
          f"({with_liar / alone:.2f})")
    assert with_liar < 1.5 * alone


async def test_an_idle_connection_flood_at_the_cap_does_not_lock_out_an_honest_peer(tmp_path):
    content, path, metainfo = make_torrent(tmp_path, size=SIZE, piece_length=PIECE)
    settings = ProtocolSettings(max_neighbours=5, idle_drop_after=0.3, rechoke_period=0.5,
                                unchoke_when_free=True)
    seed = make_node(peer_config(name="s", index=1, torrent=path, role="seed",
                                 content=content, log=tmp_path / "s.jsonl",
                                 protocol=settings))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(seed.run)
            flood = []
            for n in range(5):
                conn = await RawPeer.connect(port, metainfo.num_pieces)
                await conn.handshake(metainfo.info_hash, f"-XX0000-idle{n:08d}")
                flood.append(conn)
            refused = await RawPeer.connect(port, metainfo.num_pieces)  # nobody idle yet
            await refused.wait_closed()
            await trio.sleep(0.5)  # now they are
            honest = await RawPeer.connect(port, metainfo.num_pieces)
            await honest.handshake(metainfo.info_hash, "-XX0000-honest000000")
            await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
    records = seed.log.records
    opened = [o["peer"] for o in events(records, "conn_open")]
    assert opened[-1] == "-XX0000-honest000000"
    dropped = [c for c in events(records, "conn_close") if c["reason"] != "shutdown"]
    assert [c["reason"] for c in dropped] == ["idle at the neighbour cap"]
    assert dropped[0]["peer"] == "-XX0000-idle00000000"  # the longest idle
    assert events(records, "counters")[-1]["refused"] == {"neighbour cap": 1}


@pytest.mark.parametrize("remote_id", ["-XX0000-crossed00000", "-AA0000-crossed00000"],
                         ids=["we-are-smaller", "they-are-smaller"])
async def test_crossed_dials_with_a_remote_that_keeps_the_other_connection(tmp_path, remote_id):
    # The node dials the remote just as the remote dials the node; the remote follows the
    # opposite rule (as aria2 did) and closes the connection the node would keep. The node's
    # other connection takes over, so the two stay neighbours.
    content, path, metainfo = make_torrent(tmp_path, size=SIZE, piece_length=PIECE)
    num, info_hash = metainfo.num_pieces, metainfo.info_hash
    seed = make_node(peer_config(name="s", index=1, torrent=path, role="seed", content=content,
                                 log=tmp_path / "s.jsonl", protocol=SETTINGS))
    we_are_smaller = peer_id(1) < remote_id
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(seed.run)
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            seed._dial([("127.0.0.1", listeners[0].socket.getsockname()[1])])
            dialled = RawPeer(await listeners[0].accept(), num)  # the node's "out"
            await dialled.handshake(info_hash, remote_id)
            await dialled.expect(wire.Bitfield)  # the node took it as the neighbour
            ours = await RawPeer.connect(port, num)  # the node's "in", a moment later
            await ours.handshake(info_hash, remote_id)
            # The node keeps the connection dialled by the smaller id; the remote keeps the
            # other one and closes this one.
            kept_by_node, kept_by_remote = (dialled, ours) if we_are_smaller else (ours, dialled)
            await kept_by_node.aclose()
            if we_are_smaller:
                await kept_by_remote.expect(wire.Bitfield)  # the spare took over
            await kept_by_remote.send(wire.Interested())
            await kept_by_remote.expect(wire.Unchoke)
            await kept_by_remote.send(wire.Request(index=2, begin=0, length=BLOCK_SIZE))
            block = await kept_by_remote.expect(wire.Piece)
            assert block.block == content.read_bytes()[2 * PIECE:2 * PIECE + BLOCK_SIZE]
            nursery.cancel_scope.cancel()
    # Logged as neighbour (out), then the winner, then back to the one the remote kept.
    dirs = [o["dir"] for o in events(seed.log.records, "conn_open")]
    assert dirs == (["out", "in"] if we_are_smaller else ["out", "in", "out"])
