"""When a peer announces (peer/tracker_client.py AnnounceSchedule, pure), and the node following
it on trio's MockClock with a stand-in tracker (issue 17, item 1: a peer short of neighbours
announces early, as clients short of peers do)."""

from __future__ import annotations

import pytest
import trio
from peer_helpers import TrioRunClock, events, make_node, make_torrent, peer_config

from peer.config import FALLBACK_ANNOUNCE_INTERVAL, ProtocolSettings
from peer.tracker_client import AnnounceResponse, AnnounceSchedule, TrackerClient


def answer(interval: object = 30, min_interval: object = None) -> AnnounceResponse:
    return AnnounceResponse(peers=[], interval=interval, min_interval=min_interval)  # type: ignore[arg-type]


def test_enough_neighbours_follow_the_trackers_interval():
    schedule = AnnounceSchedule(ProtocolSettings(wanted_neighbours=5))
    schedule.heard(answer(interval=40, min_interval=10))
    assert schedule.next_announce(100.0, neighbours=5) == 140.0


def test_short_of_neighbours_announces_at_the_trackers_min_interval():
    schedule = AnnounceSchedule(ProtocolSettings(wanted_neighbours=5))
    schedule.heard(answer(interval=40, min_interval=10))
    assert schedule.next_announce(100.0, neighbours=4) == 110.0


@pytest.mark.parametrize(("interval", "expected"), [(40, 20.0), (6, 5.0), (3, 3.0)])
def test_without_min_interval_twice_as_often_with_a_floor_never_later(interval, expected):
    schedule = AnnounceSchedule(ProtocolSettings())
    schedule.heard(answer(interval=interval))
    assert schedule.short_interval == expected


def test_settings_win_over_the_tracker():
    schedule = AnnounceSchedule(ProtocolSettings(announce_interval=8, short_announce_interval=2))
    schedule.heard(answer(interval=1800, min_interval=900))
    assert schedule.next_announce(0.0, neighbours=0) == 2.0
    assert schedule.next_announce(0.0, neighbours=50) == 8.0


def test_a_min_interval_above_the_interval_never_delays_the_periodic_announce():
    schedule = AnnounceSchedule(ProtocolSettings(announce_interval=2))
    schedule.heard(answer(interval=1800, min_interval=900))
    assert schedule.next_announce(0.0, neighbours=0) == 2.0


def test_before_any_answer_and_with_nonsense_intervals():
    schedule = AnnounceSchedule(ProtocolSettings(wanted_neighbours=0))
    assert schedule.next_announce(0.0, neighbours=0) == FALLBACK_ANNOUNCE_INTERVAL
    schedule.heard(answer(interval=-3, min_interval=b"x"))
    assert schedule.interval == FALLBACK_ANNOUNCE_INTERVAL and schedule.min_interval is None


# --- the node on MockClock --------------------------------------------------------------------


async def announce_times(tmp_path, monkeypatch, protocol, response, seconds=65,
                         neighbours=lambda t: 0, losses=()):
    """Run a lone leecher for ``seconds`` against a stand-in tracker; its announce times.
    ``neighbours(t)`` stands for its neighbour count at run time t; at each time in ``losses``
    a connection closes (the node is told, as its connection tasks tell it)."""
    async def fake_announce(client, request):
        return response, {"event": request.event, "ok": True}

    monkeypatch.setattr(TrackerClient, "announce", fake_announce)
    _, path, _ = make_torrent(tmp_path)
    node = make_node(peer_config(name="p1", index=1, torrent=path, role="leecher",
                                 log=tmp_path / "p1.jsonl", protocol=protocol,
                                 tracker="http://127.0.0.1:9/announce"), TrioRunClock())
    schedule = node.announce_schedule
    next_announce = schedule.next_announce
    monkeypatch.setattr(schedule, "next_announce", lambda last, _count: next_announce(
        last, neighbours(node.now())))
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        for t in losses:
            await trio.sleep_until(node.clock.run_start + t)
            node.neighbour_lost()
        await trio.sleep_until(node.clock.run_start + seconds)
        nursery.cancel_scope.cancel()
    return [(a["t"], a["event"]) for a in events(node.log.records, "announce")]


async def test_a_lone_peer_announces_at_the_min_interval(autojump_clock, tmp_path, monkeypatch):
    times = await announce_times(tmp_path, monkeypatch, ProtocolSettings(),
                                 answer(interval=30, min_interval=10))
    assert times == [(0.0, "started"), (10.0, ""), (20.0, ""), (30.0, ""), (40.0, ""),
                     (50.0, ""), (60.0, ""), (65.0, "stopped")]


async def test_a_peer_that_wants_no_more_follows_the_interval(autojump_clock, tmp_path,
                                                             monkeypatch):
    times = await announce_times(tmp_path, monkeypatch, ProtocolSettings(wanted_neighbours=0),
                                 answer(interval=30, min_interval=10))
    assert times == [(0.0, "started"), (30.0, ""), (60.0, ""), (65.0, "stopped")]


async def test_without_min_interval_a_short_peer_announces_twice_as_often(autojump_clock,
                                                                         tmp_path, monkeypatch):
    times = await announce_times(tmp_path, monkeypatch, ProtocolSettings(), answer(interval=30))
    assert [t for t, _ in times] == [0.0, 15.0, 30.0, 45.0, 60.0, 65.0]


async def test_a_peer_that_loses_neighbours_announces_early_from_then_on(autojump_clock,
                                                                        tmp_path, monkeypatch):
    times = await announce_times(tmp_path, monkeypatch, ProtocolSettings(),
                                 answer(interval=30, min_interval=10),
                                 neighbours=lambda t: 25 if t < 35 else 3, losses=(35.0,))
    assert [t for t, _ in times] == [0.0, 30.0, 40.0, 50.0, 60.0, 65.0]


async def test_an_idle_peer_with_enough_neighbours_does_not_wake_to_look(autojump_clock,
                                                                         tmp_path, monkeypatch):
    # The count is only looked at when a connection closes: a loss that leaves enough
    # neighbours changes nothing, and nothing polls in between.
    looked = []
    times = await announce_times(tmp_path, monkeypatch, ProtocolSettings(),
                                 answer(interval=30, min_interval=10),
                                 neighbours=lambda t: looked.append(t) or 25, losses=(35.0,))
    assert [t for t, _ in times] == [0.0, 30.0, 60.0, 65.0]
    assert len(looked) < 10  # a few looks per announce and loss, not one a second (65)


def test_announce_interval_on_the_command_line(tmp_path):
    from peer.__main__ import build_parser, config_from_args

    args = build_parser().parse_args(["--torrent", "t", "--log", "l", "--announce-interval", "2"])
    assert config_from_args(args).protocol.announce_interval == 2.0
    args = build_parser().parse_args(["--torrent", "t", "--log", "l"])
    assert config_from_args(args).protocol.announce_interval is None
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--torrent", "t", "--log", "l", "--announce-interval", "0"])
    assert exc.value.code == 2
