"""Shared helpers for the peer tests: snapshot builders, tiny policies, swarm set-up, log queries.

The tiny policy classes are also what the ``module:Class`` loading tests import, as
``peer_helpers:FirstPicker`` and so on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import trio

from peer import wire
from peer.config import PeerConfig, PolicySpec, ProtocolSettings, RateLimit
from peer.content import num_pieces, synthetic_piece
from peer.eventlog import EventLog, RunClock
from peer.metainfo import Metainfo, make_synthetic_torrent
from peer.node import Node
from peer.policy import ChokeView, Decision, NeighbourView, PickView

# --- policy snapshots --------------------------------------------------------------------------


def nbr(peer: str, **fields: Any) -> NeighbourView:
    """A neighbour that is interested, old (connected long ago) and idle unless told otherwise."""
    defaults: dict[str, Any] = dict(
        interested=True, am_interested=False, choking_us=True, am_choking=True,
        down_rate=0.0, up_rate=0.0, down_total=0, up_total=0, snubbed=False, is_seed=False,
        connected_at=-1000.0)
    defaults.update(fields)
    return NeighbourView(peer=peer, **defaults)


def choke_view(neighbours: Iterable[NeighbourView], *, now: float = 0.0, round: int = 0,
               trigger: str = "timer", seed: bool = False,
               settings: ProtocolSettings | None = None, **setting_overrides: Any) -> ChokeView:
    settings = settings or ProtocolSettings()
    if setting_overrides:
        settings = dataclasses.replace(settings, **setting_overrides)
    return ChokeView(now=now, round=round, trigger=trigger,  # type: ignore[arg-type]
                     we_are_seed=seed, neighbours=tuple(neighbours), settings=settings,
                     upload_capacity=None)


def kinds(decisions: dict[str, Decision], kind: str) -> set[str]:
    return {peer for peer, d in decisions.items() if d.kind == kind}


def pick_view(candidates: Iterable[int], availability: Iterable[int], *, have_count: int = 5,
              now: float = 0.0) -> PickView:
    availability = list(availability)
    return PickView(now=now, candidates=list(candidates), availability=availability,
                    have_count=have_count, num_pieces=len(availability))


# --- tiny policies for module:Class loading ----------------------------------------------------


class FirstPicker:
    """Picks the lowest candidate; takes an extra parameter to show params reach the class."""

    def __init__(self, seed: int = 0, bias: int = 0) -> None:
        self.seed = seed
        self.bias = bias

    def pick(self, view: PickView) -> int | None:
        return min(view.candidates) if view.candidates else None


class UnchokeAll:
    """Unchokes every interested neighbour: the simplest possible choker."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def rechoke(self, view: ChokeView) -> dict[str, Decision]:
        return {n.peer: Decision("regular" if n.interested else "choke", "everyone")
                for n in view.neighbours}


class NotAPolicy:
    """Constructs fine but has neither rechoke() nor pick()."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed


NOT_A_CLASS = 42


# --- content -----------------------------------------------------------------------------------


def synthetic_content(size: int, piece_length: int, seed: int = 1) -> tuple[bytes, list[bytes]]:
    """The whole content and the SHA-1 of every piece, built the same way the seeds build it."""
    pieces = [synthetic_piece(seed, i, piece_length, size)
              for i in range(num_pieces(size, piece_length))]
    return b"".join(pieces), [hashlib.sha1(p).digest() for p in pieces]


# --- peer configs and logs ---------------------------------------------------------------------


def peer_id(n: int) -> str:
    return f"-TB0100-{n:012d}"


def peer_config(*, name: str, index: int, torrent: Path, role: str, log: Path | str,
                content: Path | None = None, tracker: str | None = None,
                upload: float | None = None, download: float | None = None,
                protocol: ProtocolSettings | None = None, **extra: Any) -> PeerConfig:
    config = PeerConfig(
        name=name, peer_id=peer_id(index), torrent=str(torrent), role=role, log=str(log),
        content=str(content) if content else None, tracker=tracker, seed=index,
        upload=RateLimit(rate=upload), download=RateLimit(rate=download),
        protocol=protocol or ProtocolSettings(),
        choker=extra.pop("choker", PolicySpec(name="tit_for_tat")),
        picker=extra.pop("picker", PolicySpec(name="rarest_first")), **extra)
    config.validate()
    return config


def write_config(path: Path, config: PeerConfig) -> Path:
    path.write_text(json.dumps(config.to_json()))
    return path


def read_log(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a JSON-lines log (a half-written last line is skipped)."""
    records = []
    if not path.exists():
        return records
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


def events(records: Iterable[dict[str, Any]], ev: str) -> list[dict[str, Any]]:
    return [r for r in records if r["ev"] == ev]


# --- in-process nodes --------------------------------------------------------------------------


class TrioRunClock(RunClock):
    """Run time on trio's clock, so event stamps are exact virtual times under MockClock.

    Build it inside trio: t = 0 is the trio time of construction.
    """

    def __init__(self) -> None:
        super().__init__(trio.current_time())

    def now(self) -> float:
        return trio.current_time() - self.run_start


def make_torrent(tmp_path: Path, *, size: int = 1024 * 1024, piece_length: int = 64 * 1024,
                 announce: str = "http://127.0.0.1:1/announce") -> tuple[Path, Path, Metainfo]:
    """Synthetic content and its .torrent in ``tmp_path``: (content, torrent, metainfo)."""
    return make_synthetic_torrent(tmp_path, size=size, seed=1, piece_length=piece_length,
                                  announce=announce)


def make_node(config: PeerConfig, clock: RunClock | None = None) -> Node:
    """A Node logging to memory (``node.log.records``)."""
    clock = clock or RunClock()
    return Node(config, clock=clock, log=EventLog(None, clock))


class RawPeer:
    """A hand-driven BitTorrent client over a real socket, for feeding a Node bad input."""

    def __init__(self, stream: trio.SocketStream, num_pieces: int) -> None:
        self.stream = stream
        self.reader = wire.WireReader(num_pieces, expect_handshake=True)

    @classmethod
    async def connect(cls, port: int, num_pieces: int) -> RawPeer:
        return cls(await trio.open_tcp_stream("127.0.0.1", port), num_pieces)

    async def send(self, *items: wire.Message | bytes) -> None:
        data = b"".join(item if isinstance(item, bytes) else wire.encode(item) for item in items)
        await self.stream.send_all(data)

    async def handshake(self, info_hash: bytes, pid: str) -> wire.Handshake:
        await self.send(wire.Handshake(info_hash=info_hash, peer_id=pid.encode()))
        answer = await self.receive()
        assert isinstance(answer, wire.Handshake)
        return answer

    async def receive(self) -> Any:
        """The next message, or wire.CLOSED once the node has closed the connection."""
        while True:
            event = self.reader.next_event()
            if event is not wire.NEED_DATA:
                return event
            try:
                data = await self.stream.receive_some(1 << 16)
            except trio.BrokenResourceError:
                data = b""
            self.reader.receive_data(data)

    async def expect(self, cls: type) -> Any:
        """Skip other messages (bitfield, have, keep-alive) until one of type ``cls``."""
        while True:
            event = await self.receive()
            if isinstance(event, cls):
                return event
            if event is wire.CLOSED:
                raise AssertionError(f"connection closed while waiting for {cls.__name__}")

    async def wait_closed(self) -> None:
        """Read (and ignore) everything until the node closes the connection."""
        while True:
            try:
                data = await self.stream.receive_some(1 << 16)
            except trio.BrokenResourceError:
                return
            if not data:
                return

    async def aclose(self) -> None:
        await self.stream.aclose()
