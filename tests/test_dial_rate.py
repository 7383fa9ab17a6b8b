"""``dial_rate``: the node dials the tracker's addresses one at a time at that rate, stops when
its connections fill ``max_initiate``, and takes a newer list over the rest of an older one
(peer/node.py ``_dial_pacer``). MockClock: exact virtual times, no sockets."""

from __future__ import annotations

import pytest
import trio
from peer_helpers import TrioRunClock, make_torrent, peer_config

from peer.config import ProtocolSettings
from peer.errors import ConfigError
from peer.eventlog import EventLog
from peer.node import Node


def addresses(count: int, first_port: int = 7000) -> list[tuple[str, int]]:
    return [("127.0.0.9", first_port + i) for i in range(count)]


async def paced_node(tmp_path, nursery, **protocol):
    _, torrent, _ = make_torrent(tmp_path, size=256 * 1024, piece_length=64 * 1024)
    clock = TrioRunClock()
    config = peer_config(name="p1", index=1, torrent=torrent, role="leecher", log="-",
                         protocol=ProtocolSettings(**protocol))
    node = Node(config, clock=clock, log=EventLog(None, clock))
    dialled: list[tuple[float, tuple[str, int]]] = []

    async def dial_one(address):  # records the dial; the dial stays "under way"
        dialled.append((trio.current_time(), address))

    node._dial_one = dial_one
    node._nursery = nursery
    node.listen_port = 6881
    nursery.start_soon(node._dial_pacer)
    return node, dialled


async def test_dials_go_out_one_at_a_time_at_the_rate(autojump_clock, tmp_path):
    async with trio.open_nursery() as nursery:
        node, dialled = await paced_node(tmp_path, nursery, dial_rate=5.0)
        start = trio.current_time()
        node._dial(addresses(10))
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    times = [t - start for t, _ in dialled]
    assert len(times) == 10
    assert times == pytest.approx([0.2 * i for i in range(10)])
    assert sorted(a for _, a in dialled) == addresses(10)  # each address once


async def test_pacing_stops_at_max_initiate_and_drops_the_rest(autojump_clock, tmp_path):
    async with trio.open_nursery() as nursery:
        node, dialled = await paced_node(tmp_path, nursery, dial_rate=10.0, max_initiate=3)
        node._dial(addresses(8))
        await trio.sleep(5)
        assert len(dialled) == 3  # three dials under way fill max_initiate
        assert node._dial_queue == []
        nursery.cancel_scope.cancel()


async def test_a_newer_tracker_list_replaces_the_rest_of_the_older(autojump_clock, tmp_path):
    async with trio.open_nursery() as nursery:
        node, dialled = await paced_node(tmp_path, nursery, dial_rate=1.0)
        node._dial(addresses(5))
        await trio.sleep(1.5)  # two dials from the first list
        node._dial(addresses(2, first_port=8000))
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    ports = [port for _, (_, port) in dialled]
    assert len(ports) == 4
    assert all(p < 8000 for p in ports[:2]) and sorted(ports[2:]) == [8000, 8001]


async def test_without_a_rate_every_address_is_dialled_at_once(autojump_clock, tmp_path):
    async with trio.open_nursery() as nursery:
        node, dialled = await paced_node(tmp_path, nursery)
        node._dial(addresses(6))
        await trio.sleep(0.001)
        nursery.cancel_scope.cancel()
    assert len(dialled) == 6 and len({t for t, _ in dialled}) == 1


@pytest.mark.parametrize("rate", [0, -1.0, "fast", True])
def test_a_bad_dial_rate_is_refused_with_its_name(rate):
    with pytest.raises(ConfigError, match="dial_rate"):
        ProtocolSettings(dial_rate=rate).validate()
