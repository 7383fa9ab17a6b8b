"""A peer's dials and announces leave from the address it listens on (PeerConfig
.outgoing_address): the tracker hands out the address an announce came from, so on a host with
several addresses (a cluster worker, or 127.0.0.2 on loopback) anything else would hand out an
address nobody listens on."""

from __future__ import annotations

import random
from functools import partial

import pytest
import trio
from peer_helpers import TrioRunClock, make_node, make_torrent, peer_config

from peer.config import PeerConfig
from peer.eventlog import EventLog, RunClock
from tracker.server import serve_tracker
from tracker.swarm import Swarm

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("host", "expected"), [
    ("127.0.0.2", "127.0.0.2"), ("127.0.0.1", "127.0.0.1"), ("0.0.0.0", None), ("", None),
    ("::", None)])
def test_the_outgoing_address_is_the_listen_host_unless_a_wildcard(host, expected):
    config = PeerConfig(name="p", peer_id="-TB0100-000000000001", torrent="t", role="leecher",
                        log="l", listen_host=host)
    assert config.outgoing_address == expected


async def test_a_peer_on_127_0_0_2_announces_and_dials_from_it(tmp_path):
    _, torrent, _ = make_torrent(tmp_path, size=256 * 1024, piece_length=64 * 1024)
    swarm = Swarm(None, rng=random.Random(0))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(serve_tracker, swarm=swarm,
                                           log=EventLog(None, RunClock()), flush_period=0.1))
        url = f"http://127.0.0.1:{port}/announce"
        # A "remote" already in the swarm, listening on 127.0.0.3, records who dials it.
        listener = (await trio.open_tcp_listeners(0, host="127.0.0.3"))[0]
        dialled_from: list[str] = []

        async def accept_one() -> None:
            stream = await listener.accept()
            dialled_from.append(stream.socket.getpeername()[0])
            await stream.aclose()

        nursery.start_soon(accept_one)
        other = make_node(peer_config(name="o", index=2, torrent=torrent, role="leecher",
                                      log=tmp_path / "o.jsonl", tracker=url,
                                      listen_host="127.0.0.3"), TrioRunClock())
        other.listen_port = listener.socket.getsockname()[1]
        await other._announce("started")  # registers 127.0.0.3:<listener> with the tracker
        node = make_node(peer_config(name="p", index=1, torrent=torrent, role="leecher",
                                     log=tmp_path / "p.jsonl", tracker=url,
                                     listen_host="127.0.0.2"), TrioRunClock())
        await nursery.start(node.run)
        with trio.fail_after(10):
            while not dialled_from:
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    # The tracker handed out 127.0.0.3 (the other's announce left from it: from 127.0.0.1 it
    # would have been an address nobody listens on), and the dial left from 127.0.0.2.
    assert dialled_from == ["127.0.0.2"]
