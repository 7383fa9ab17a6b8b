"""Shared by the real-client tests (tests/test_real_clients.py, tests/test_real_clients_more.py):
run a topology in-process and read what its peers logged."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from peer.metainfo import read_torrent, verify_file
from testbed.run import RunOptions, execute_run
from testbed.topology import expand, parse_topology

REPO = Path(__file__).resolve().parent.parent
TOPOLOGIES = REPO / "topologies"


def run_topology(text: str, out: Path, name: str = "t") -> dict:
    experiment = expand(parse_topology(text, default_name=name))
    result = execute_run(experiment, text, RunOptions(out=out, quiet=True, launcher="local"))
    return result.summary


def outputs(run: Path) -> str:
    """The tail of every external client's console output, for assertion messages."""
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}"
                     for p in sorted((run / "peers").glob("*.out")))


def assert_all_complete(summary: dict, run: Path) -> None:
    assert summary["status"] == "completed", (summary["reason"], outputs(run))
    assert summary["completed"] == summary["leechers"], (summary, outputs(run))
    assert summary["verified"] == summary["leechers"]
    assert not summary["crashes"], (summary["crashes"], outputs(run))


def events(run: Path, peer: str, ev: str) -> list[dict]:
    lines = (run / "peers" / f"{peer}.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["ev"] == ev]


def assert_external_file_verifies(run: Path, peer: str) -> None:
    """Every piece's SHA-1 matches the torrent, and the whole file's SHA-256 matches the
    content the run made."""
    torrent = next(run.glob("*.torrent"))
    metainfo = read_torrent(torrent)
    path = run / "external" / peer / metainfo.name
    assert verify_file(path, metainfo) == []
    original = run / "content" / metainfo.name
    assert sha256(path) == sha256(original), f"{peer}: {path} differs from {original}"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def shipped(name: str) -> str:
    return (TOPOLOGIES / f"{name}.yaml").read_text()


def first_senders(run: Path, leechers: list[str]) -> dict[int, tuple[str, ...]]:
    """Piece index -> the senders of its first verified copy among these leechers."""
    arrivals = sorted((r["t"], r["index"], tuple(r["from"]))
                      for peer in leechers for r in events(run, peer, "piece") if r["ok"])
    first: dict[int, tuple[str, ...]] = {}
    for _, index, senders in arrivals:
        first.setdefault(index, senders)
    return first


def assert_every_piece_came_from_the_seed(run: Path, leechers: list[str], *, pieces: int,
                                          seed_id: str = "-TB0100-000000000000") -> None:
    """The only seed is the real client: the first copy of every piece in the swarm came from
    it (a leecher can pass on only what it has). A given leecher need not get blocks from it:
    its neighbours may supply everything it lacks, and a seed is asked only for pieces started
    from a seed or new ones (docs/policies.md). ``seed_id`` may be a prefix (Transmission and
    ctorrent choose their own peer ids)."""
    first = first_senders(run, leechers)
    assert len(first) == pieces
    assert all(len(s) == 1 and s[0].startswith(seed_id) for s in first.values()), first


def receive_rate(run: Path, leecher: str, sender_prefix: str) -> tuple[int, float]:
    """Bytes of the pieces ``leecher`` got from the sender whose id starts with
    ``sender_prefix`` alone, and their rate in bytes/s, from the first block requested to the
    last piece's arrival."""
    mine = [r for r in events(run, leecher, "piece")
            if r["ok"] and len(r["from"]) == 1 and r["from"][0].startswith(sender_prefix)]
    assert mine, f"{leecher} got no piece from {sender_prefix}"
    size = sum(r["size"] for r in mine)
    span = max(r["t"] for r in mine) - min(r["start"] for r in mine)
    return size, size / span


def bytes_sent_to(run: Path, peer: str, neighbour_prefix: str) -> dict[str, int]:
    """What ``peer`` uploaded to each neighbour whose id starts with ``neighbour_prefix``, from
    its counters (each line lists only the neighbours whose counts changed)."""
    latest: dict[str, int] = {}
    for record in events(run, peer, "counters"):
        for neighbour, (up, _down) in record["n"].items():
            if neighbour.startswith(neighbour_prefix):
                latest[neighbour] = up
    return {k: v for k, v in latest.items() if v > 0}
