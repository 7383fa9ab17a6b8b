"""Content storage (peer/storage.py): in memory or a file, or synthetic (regenerated, cached)."""

from __future__ import annotations

import random
from functools import partial

import pytest
import trio
from peer_helpers import events, make_node, make_torrent, peer_config, synthetic_content

from peer.config import BLOCK_SIZE, PeerConfig, ProtocolSettings, StorageSpec
from peer.errors import ConfigError, TestbedError
from peer.eventlog import EventLog, RunClock
from peer.metainfo import build_metainfo
from peer.pieces import BlockResult, PieceState
from peer.storage import MemoryStorage, SyntheticStorage, open_storage
from tracker.server import serve_tracker
from tracker.swarm import Swarm

PIECE = 2 * BLOCK_SIZE
LENGTH = 3 * PIECE + 20_000
NUM = 4
SEED = 3


def synthetic(cache: int = 2) -> SyntheticStorage:
    return SyntheticStorage(content_seed=SEED, piece_length=PIECE, length=LENGTH,
                            cache_pieces=cache)


def test_memory_storage_reads_what_was_written() -> None:
    storage = MemoryStorage(bytearray(10))
    storage.write(3, b"abc")
    assert bytes(storage.read(2, 5)) == b"\0abc\0" and bytes(storage)[3:6] == b"abc"


def test_synthetic_reads_are_the_content_and_the_cache_is_bounded() -> None:
    data, _ = synthetic_content(LENGTH, PIECE, seed=SEED)
    storage = synthetic(cache=2)
    for index in (0, 1, 0, 2, 3, 3):
        start = index * PIECE
        assert bytes(storage.read(start + 5, 100)) == data[start + 5:start + 105]
    # 0 and 1 generated; 0 a hit; 2 evicts 1, 3 evicts 0; 3 again a hit.
    assert storage.regenerated == 4 and list(storage.cache) == [2, 3]
    assert bytes(storage) == data


def test_received_bytes_are_hashed_not_regenerated() -> None:
    """A wrong block fails its piece's hash although the storage could regenerate the piece;
    once a piece verifies its received bytes leave the buffer (for the cache)."""
    data, hashes = synthetic_content(LENGTH, PIECE, seed=SEED)
    storage = synthetic()
    state = PieceState(piece_length=PIECE, length=LENGTH, piece_hashes=hashes, storage=storage,
                       have_all=False)
    assert state.next_requests("A", [1] * NUM, 2, set(), min, 0.0) == [
        (0, 0, BLOCK_SIZE), (0, BLOCK_SIZE, BLOCK_SIZE)]
    bad = bytearray(data[:BLOCK_SIZE])
    bad[7] ^= 1
    state.on_block("A", "liar", 0, 0, bytes(bad))
    _, done = state.on_block("A", "honest", 0, BLOCK_SIZE, data[BLOCK_SIZE:PIECE])
    assert done is not None and not done.ok and state.have[0] == 0
    # The failed copy's bytes stay for the smart ban's comparison.
    assert bytes(state.piece_data(0)) == bytes(bad) + data[BLOCK_SIZE:PIECE]
    requests = state.next_requests("A", [1] * NUM, 2, set(), min, 1.0)
    for index, begin, length in requests:
        result, done = state.on_block("A", "honest", index, begin,
                                      data[begin:begin + length])
        assert result == BlockResult.ACCEPTED
    assert done is not None and done.ok and state.have[0] == 1
    assert 0 not in storage.pending and 0 in storage.cache
    assert state.read_block(0, 0, BLOCK_SIZE) == data[:BLOCK_SIZE]


def test_open_storage_refuses_a_seed_that_does_not_generate_the_torrent(tmp_path) -> None:
    _, torrent, metainfo = make_torrent(tmp_path, size=LENGTH, piece_length=PIECE)
    config = peer_config(name="s", index=0, torrent=torrent, role="seed", log="-",
                         storage=StorageSpec(kind="synthetic", content_seed=2))
    with pytest.raises(TestbedError, match="content seed 2 does not generate"):
        open_storage(config, metainfo)
    good = peer_config(name="s", index=0, torrent=torrent, role="seed", log="-",
                       storage=StorageSpec(kind="synthetic", content_seed=1))
    assert open_storage(good, metainfo).kind == "synthetic"
    other = build_metainfo(announce="http://x/announce", name="c", length=LENGTH,
                           piece_length=PIECE, piece_hashes=[b"\0" * 20] * NUM)
    with pytest.raises(TestbedError, match=f"piece {NUM - 1} differs"):
        open_storage(good, other)


@pytest.mark.parametrize(("spec", "where"), [
    ({"kind": "synthetic"}, "storage.content_seed"),
    ({"kind": "synthetic", "content_seed": -1}, "storage.content_seed"),
    ({"kind": "disk"}, "storage.kind"),
    ({"kind": "synthetic", "content_seed": 1, "cache_pieces": 0}, "storage.cache_pieces"),
])
def test_bad_storage_settings_are_named(spec, where) -> None:
    data = {"name": "p", "peer_id": "-TB0100-000000000001", "torrent": "t", "role": "leecher",
            "log": "l", "storage": spec}
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        PeerConfig.from_json(data)


def test_a_synthetic_seed_needs_no_content_file() -> None:
    data = {"name": "p", "peer_id": "-TB0100-000000000001", "torrent": "t", "role": "seed",
            "log": "l"}
    with pytest.raises(ConfigError, match="content"):
        PeerConfig.from_json(data)
    data["storage"] = {"kind": "synthetic", "content_seed": 0}
    assert PeerConfig.from_json(data).storage.kind == "synthetic"


@pytest.mark.integration
async def test_swarm_of_synthetic_peers_completes_without_content_files(tmp_path) -> None:
    """A synthetic seed with no file and a synthetic leecher beside a file leecher: both
    complete, verify every piece, and log which storage they used."""
    size, piece = 512 * 1024, 64 * 1024
    content, torrent, _ = make_torrent(tmp_path, size=size, piece_length=piece)
    data = content.read_bytes()
    content.unlink()
    fast = ProtocolSettings(unchoke_when_free=True, rechoke_period=0.5, optimistic_period=1.5)
    synthetic_spec = StorageSpec(kind="synthetic", content_seed=1)
    async with trio.open_nursery() as outer:
        port = await outer.start(partial(serve_tracker, swarm=Swarm(None, rng=random.Random(0)),
                                         log=EventLog(None, RunClock()), flush_period=0.1))
        url = f"http://127.0.0.1:{port}/announce"
        nodes = [make_node(peer_config(name=f"p{i}", index=i, torrent=torrent, role=role,
                                       log="-", tracker=url, protocol=fast, storage=spec))
                 for i, role, spec in ((0, "seed", synthetic_spec),
                                       (1, "leecher", synthetic_spec),
                                       (2, "leecher", StorageSpec()))]
        with trio.fail_after(10):
            async with trio.open_nursery() as peers:
                for node in nodes:
                    await peers.start(node.run)
                for node in nodes[1:]:
                    await node.completed.wait()
                peers.cancel_scope.cancel()
        outer.cancel_scope.cancel()
    kinds = [events(n.log.records, "start")[0]["storage"] for n in nodes]
    assert kinds == ["synthetic", "synthetic", "memory"]
    for node in nodes[1:]:
        pieces = events(node.log.records, "piece")
        assert sorted(p["index"] for p in pieces) == list(range(size // piece))
        assert all(p["ok"] for p in pieces)
        assert bytes(node.pieces.storage) == data
    leecher = nodes[1].pieces.storage
    assert isinstance(leecher, SyntheticStorage)
    assert not leecher.pending and len(leecher.cache) <= leecher.cache_pieces
    # The stop line says how many pieces a synthetic peer generated (cache misses).
    stops = [events(n.log.records, "stop")[0] for n in nodes]
    assert stops[0]["regenerated"] >= 1 and stops[1]["regenerated"] == leecher.regenerated
    assert "regenerated" not in stops[2]
