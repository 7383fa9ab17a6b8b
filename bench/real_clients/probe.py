"""What does a real client send to a testbed peer? A census of its wire messages.

    python bench/real_clients/probe.py --role seed -- aria2c --dir={dir} --listen-port={port} \
        --enable-dht=false --seed-time=0 {torrent}

Runs an in-process testbed tracker and one testbed peer (``--role seed``: the testbed peer
seeds and the client downloads; ``--role leecher``: the client seeds a copy of the file), starts
the client command (placeholders ``{dir}``, ``{port}``, ``{torrent}``, ``{tracker}``), and
prints, for each connection the client opened or accepted: the handshake's reserved bytes, the
order of the first messages and a count of every message id it sent (ids 13-17: BEP 6 fast
extension, 20: BEP 10 extended), and what first bytes arrived on connections that were not
BitTorrent at all (aria2's encrypted handshake attempt). docs/real-clients.md quotes it.
"""

from __future__ import annotations

import argparse
import collections
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from peer import wire
from peer.config import PeerConfig, ProtocolSettings
from peer.eventlog import EventLog, RunClock
from peer.metainfo import make_synthetic_torrent
from peer.node import Connection, Node
from testbed.external import free_port, render_command
from tracker import Swarm, serve_tracker

NAMES = {None: "keep-alive", 0: "choke", 1: "unchoke", 2: "interested", 3: "not interested",
         4: "have", 5: "bitfield", 6: "request", 7: "piece", 8: "cancel", 9: "port",
         13: "suggest", 14: "have all", 15: "have none", 16: "reject", 17: "allowed fast",
         20: "extended"}


class ProbeNode(Node):
    """A testbed peer that writes down everything its neighbours send."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.census: dict[str, dict] = {}

    def _entry(self, conn: Connection) -> dict:
        return self.census.setdefault(f"{conn.direction} {conn.addr}", {
            "reserved": None, "order": [], "counts": collections.Counter(), "peer": ""})

    def _wrap(self, conn: Connection) -> None:
        """Peek at each decoded message: wrap the connection's ``next_event`` once."""
        reader = conn.reader
        original = reader.next_event
        entry = self._entry(conn)

        def next_event():  # type: ignore[no-untyped-def]
            try:
                event = original()
            except wire.NotBitTorrentError:
                entry["not_bittorrent"] = bytes(reader._buf[:12]).hex()
                raise
            if isinstance(event, wire.Handshake):
                entry["reserved"] = event.reserved.hex()
                entry["peer"] = event.peer_id[:8].decode("latin-1")
            elif event is not wire.NEED_DATA:
                name = NAMES.get(event.msg_id, f"id {event.msg_id}") \
                    if isinstance(event, wire.Unknown) else type(event).__name__
                entry["counts"][name] += 1
                if len(entry["order"]) < 8:
                    entry["order"].append(name)
            return event

        conn.reader = _Peeking(reader, next_event)  # type: ignore[assignment]

    async def _receive_handshake(self, conn: Connection) -> None:
        self._wrap(conn)
        await super()._receive_handshake(conn)


class _Peeking:
    """A WireReader (slotted, so not patchable) with ``next_event`` replaced."""

    def __init__(self, reader: wire.WireReader, next_event) -> None:  # type: ignore[no-untyped-def]
        self._reader = reader
        self.next_event = next_event

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._reader, name)


async def probe(role: str, template: list[str], seconds: float, work: Path) -> dict:
    swarm = Swarm(None, rng=random.Random(1), interval=2)
    clock = RunClock()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: serve_tracker(
            host="127.0.0.1", port=0, swarm=swarm, log=EventLog(None, clock),
            task_status=task_status))
        url = f"http://127.0.0.1:{port}/announce"
        content, torrent, meta = make_synthetic_torrent(
            work / "src", size=2 * 1024 * 1024, seed=1, piece_length=64 * 1024, announce=url)
        client_dir = work / "client"
        client_dir.mkdir()
        if role == "leecher":
            shutil.copy(content, client_dir / meta.name)
        config = PeerConfig(name="probe", peer_id="-TB0100-000000000000", torrent=str(torrent),
                            role="seed" if role == "seed" else "leecher", log="",
                            content=str(content) if role == "seed" else None, tracker=url,
                            protocol=ProtocolSettings(unchoke_when_free=True,
                                                      rechoke_period=2.0,
                                                      announce_interval=2.0))
        node = ProbeNode(config, clock=clock, log=EventLog(None, clock))
        nursery.start_soon(node.run)
        argv = render_command(template, {"dir": client_dir, "port": free_port(),
                                         "torrent": torrent, "tracker": url})
        client = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            await trio.sleep(seconds)
        finally:
            client.terminate()
            client.wait()
        nursery.cancel_scope.cancel()
    return {"complete": node.pieces.complete, "connections": node.census}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=("seed", "leecher"), default="seed",
                        help="what the testbed peer is")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    template = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not template:
        parser.error("give the client command after --")
    with tempfile.TemporaryDirectory() as work:
        started = time.monotonic()
        result = trio.run(probe, args.role, template, args.seconds, Path(work))
    print(f"testbed peer ({args.role}) complete: {result['complete']} "
          f"after {time.monotonic() - started:.1f} s")
    for where, entry in result["connections"].items():
        print(f"{where}  client {entry['peer']!r}  reserved {entry['reserved']}")
        if "not_bittorrent" in entry:
            print(f"    not BitTorrent, first bytes {entry['not_bittorrent']}")
        print(f"    first messages: {', '.join(entry['order'])}")
        print(f"    counts: {dict(entry['counts'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
