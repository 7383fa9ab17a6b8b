"""Runs under faults: a swarm that can no longer finish (stalled), a tracker that dies or is taken
down on purpose, a full disk. Unit tests are sans-I/O; whole runs use the orchestrator's fake
tracker and peers (tests/test_orchestrator.py) and take a second or two each.
"""

from __future__ import annotations

import errno
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed import diskspace
from testbed.experiment import ContentSpec, Departure, EndCondition, Experiment
from testbed.peer_watch import LogTail, PeerState
from testbed.run import Commands
from testbed.stall import StallWatch, format_ranges, missing_pieces
from testbed.summary import exit_status, format_summary
from tests.test_orchestrator import FAKE_PEER, FAKE_TRACKER, assert_all_gone, experiment, plan, run


@pytest.fixture
def fakes(tmp_path: Path) -> Commands:
    """The fake tracker and peer of test_orchestrator.py."""
    import sys

    (tmp_path / "fake_tracker.py").write_text(FAKE_TRACKER)
    (tmp_path / "fake_peer.py").write_text(FAKE_PEER)
    return Commands(python=sys.executable, peer=(str(tmp_path / "fake_peer.py"),),
                    tracker=(str(tmp_path / "fake_tracker.py"),))


# -- stalls: the pieces left in the swarm -------------------------------------------------------


@dataclass
class FakeHandle:
    returncode: int | None = None
    pid: int = 1


def state(index: int, role: str, *, handle: FakeHandle | None, pieces: set[int] = frozenset(),  # type: ignore[assignment]
          complete: float | None = None) -> PeerState:
    s = PeerState(plan(index, role if role == "seed" else "leecher", role),
                  LogTail(Path("/nonexistent")))
    s.handle = handle  # type: ignore[assignment]
    s.ok_pieces = set(pieces)
    s.complete_t = complete
    return s


def test_missing_pieces_are_those_no_live_peer_holds():
    gone, live = FakeHandle(returncode=-9), FakeHandle()
    peers = [state(0, "seed", handle=gone),
             state(1, "leecher", handle=live, pieces={0, 1}),
             state(2, "leecher", handle=live, pieces={1, 4}),
             state(3, "leecher", handle=gone, pieces={2, 3})]  # left: its pieces went with it
    assert missing_pieces(peers, 6) == (2, 3, 5)


def test_no_stall_while_a_seed_lives_or_is_to_come_or_a_live_peer_completed():
    gone, live = FakeHandle(returncode=0), FakeHandle()
    leecher = state(1, "leecher", handle=live, pieces={0})
    assert missing_pieces([state(0, "seed", handle=live), leecher], 4) is None
    assert missing_pieces([state(0, "seed", handle=None), leecher], 4) is None  # arrives later
    done = state(2, "leecher", handle=live, complete=5.0)
    assert missing_pieces([state(0, "seed", handle=gone), leecher, done], 4) is None
    # Nobody is waiting (every leecher completed or left): nothing to call stalled.
    left = state(3, "leecher", handle=gone, pieces={0})
    assert missing_pieces([state(0, "seed", handle=gone), left], 4) is None
    # A leecher still to arrive waits too, and brings no pieces.
    late = state(4, "leecher", handle=None)
    assert missing_pieces([state(0, "seed", handle=gone), late, leecher], 3) == (1, 2)


def test_stall_watch_needs_the_shortfall_to_last_the_grace_period():
    watch = StallWatch(num_pieces=8, grace=10.0)
    assert watch.update(1.0, (3,)) is None
    assert watch.update(5.0, None) is None  # a seed came: the clock restarts
    assert watch.update(6.0, (3, 4)) is None
    assert watch.update(15.9, (3, 4)) is None
    stall = watch.update(16.0, (3, 4))
    assert stall is not None and stall.since == 6.0 and stall.missing == (3, 4)
    assert stall.reason() == ("stalled: 2 of 8 pieces held by no live peer since t = 6.0 s "
                              "(pieces 3-4), and no seed is left or still to arrive")
    assert stall.to_json() == {"since": 6.0, "missing": [3, 4]}


def test_piece_ranges_are_short():
    assert format_ranges([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8"
    assert format_ranges(list(range(0, 40, 2)), limit=3) == "0, 2, 4, … (+17 more ranges)"


def seed_killed_at(t: float, *groups: tuple[str, int]) -> Experiment:
    peers = [plan(0, "seed", "seed", departure=Departure(kind="killed", time=t))]
    for group, count in groups:
        for _ in range(count):
            peers.append(plan(len(peers), group))
    return Experiment(name="fake", seed=7,
                      content=ContentSpec(size=100 * 1024, piece_length=16 * 1024),
                      peers=tuple(peers), end=EndCondition(time_limit=20.0))


def test_a_swarm_without_its_seed_ends_stalled_naming_the_missing_pieces(tmp_path, fakes):
    exp = seed_killed_at(0.5, ("stuck", 2))
    out, summary = run(exp, tmp_path, fakes, stall_grace=1.0)
    assert summary["status"] == "stalled", summary
    assert summary["stall"]["missing"] == [3, 4, 5, 6]
    assert 0.5 <= summary["stall"]["since"] < 1.5
    assert summary["reason"].startswith("stalled: 4 of 7 pieces held by no live peer since")
    assert summary["duration"] < 5  # not the 20 s time limit
    assert exit_status(summary) == 1
    assert "stalled" in format_summary(summary, out)
    assert_all_gone(out)


def test_a_swarm_whose_pieces_are_all_still_held_is_not_stalled(tmp_path, fakes):
    # One leecher completes (and stays): every piece is still in the swarm.
    exp = seed_killed_at(0.8, ("leecher", 1), ("stuck", 1))
    _, summary = run(exp, tmp_path, fakes, stall_grace=0.5, time_limit=2.5)
    assert summary["status"] == "timed_out", summary
    assert summary["stall"] is None


# -- a full disk ---------------------------------------------------------------------------------


def test_a_peer_that_cannot_write_its_log_fails_the_run_in_order(tmp_path, fakes):
    exp = experiment(("hang", 1, {}), ("diskfull", 1, {}))
    out, summary = run(exp, tmp_path, fakes)
    assert summary["status"] == "failed", summary
    assert summary["reason"].startswith("diskfull-2 could not write its event log (exit 74): ")
    assert summary["duration"] < 5
    assert summary["exit_codes"]["hang-1"] == 0  # the others were stopped cleanly
    assert exit_status(summary) == 1
    assert not (out / diskspace.SummaryReserve.NAME).exists()
    assert_all_gone(out)


def test_an_orchestrator_write_error_fails_the_run_with_one_line(tmp_path, fakes, monkeypatch):
    from testbed.resources import ResourceSampler

    real = ResourceSampler.sample
    calls = []

    def sample(self, t, pids):
        calls.append(t)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, t, pids)

    monkeypatch.setattr(ResourceSampler, "sample", sample)
    exp = experiment(("hang", 1, {}))
    out, summary = run(exp, tmp_path, fakes, sample_period=0.2)
    assert summary["status"] == "failed", summary
    assert summary["reason"] == ("disk full: cannot write resources.jsonl (No space left on "
                                 "device)")
    assert "hang-1" not in summary["crashes"]  # stopped by us (-15 if before its handler)
    assert_all_gone(out)


def test_a_filesystem_about_to_fill_ends_the_run_before_a_log_breaks(tmp_path, fakes,
                                                                      monkeypatch):
    monkeypatch.setattr("testbed.run.free_bytes", lambda path: 1000)
    exp = experiment(("hang", 1, {}))
    _, summary = run(exp, tmp_path, fakes)
    assert summary["status"] == "failed", summary
    assert summary["reason"].startswith("disk full: 1000 B free on the run directory's")


def test_the_summary_goes_into_its_reserved_room_when_the_disk_is_full(tmp_path, monkeypatch):
    reserve = diskspace.SummaryReserve.create(tmp_path, 4096)
    target = tmp_path / "summary.json"

    def full(path, data):
        (path.parent / f".{path.name}.tmp").write_text('{"half')
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("testbed.rundir.write_json_atomic", full)
    reserve.write_summary(target, {"status": "failed", "reason": "disk full"})
    assert json.loads(target.read_text()) == {"status": "failed", "reason": "disk full"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_the_summary_reserve_fits_a_large_run(tmp_path):
    exp = experiment(("leecher", 300, {}))
    size = diskspace.summary_reserve_size(exp)
    worst = {"completion_times": {f"leecher-{i:04d}": 12345.6789 for i in range(301)},
             "exit_codes": {f"leecher-{i:04d}": -9 for i in range(301)},
             "reason": "x" * 600}
    assert len(json.dumps(worst, indent=2)) + 4096 < size


def test_free_space_check_refuses_a_run_that_cannot_fit(tmp_path, monkeypatch):
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(diskspace.shutil, "disk_usage", lambda p: usage(10**6, 0, 120 * 1024))
    exp = experiment(("leecher", 3, {}))  # 100 KiB of content fits; with logs and summary not
    assert diskspace.estimated_log_bytes(exp, 20.0) > 10 * 1024
    with pytest.raises(diskspace.DiskSpaceError, match=r"^not enough free disk space for the "
                       r"run in .*: 120.0 KiB free, the run needs at least"):
        diskspace.check_free_space(exp, tmp_path / "run", 20.0)
    monkeypatch.setattr(diskspace.shutil, "disk_usage", lambda p: usage(10**9, 0, 10**8))
    diskspace.check_free_space(exp, tmp_path / "run", 20.0)


def test_testbed_run_on_a_too_small_disk_exits_2_with_one_line_and_writes_nothing(
        tmp_path, monkeypatch, capsys):
    from collections import namedtuple

    from testbed.cli import main

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(diskspace.shutil, "disk_usage", lambda p: usage(10**9, 0, 10**6))
    topology = tmp_path / "big.yaml"
    topology.write_text("content: {size: 100GiB, piece_size: 4MiB, storage: file}\ngroups:\n"
                        "  - {name: seed, role: seed}\n  - {name: leecher, count: 2}\n")
    out = tmp_path / "run"
    assert main(["run", str(topology), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not enough free disk space" in err[0]
    assert "content 100.0 GiB" in err[0]
    assert not out.exists()


# -- tracker outages in a topology ----------------------------------------------------------------

_BASE = "content: {size: 1MiB}\ngroups:\n  - {name: seed, role: seed}\n  - {name: l, count: 2}\n"


def test_tracker_outages_are_parsed_and_carried_into_the_experiment():
    from testbed.topology import TrackerOutage, expand, parse_topology

    topology = parse_topology(_BASE + "tracker: {outages: [{at: 5, for: 3}, {at: 10, for: 2s}]}\n")
    expected = (TrackerOutage(at=5.0, duration=3.0), TrackerOutage(at=10.0, duration=2.0))
    assert topology.tracker_outages == expected
    experiment = expand(topology)
    assert experiment.tracker_outages == expected
    recorded = json.loads(json.dumps(experiment.to_json()))["tracker_outages"]
    assert recorded == [{"at": 5.0, "duration": 3.0}, {"at": 10.0, "duration": 2.0}]


@pytest.mark.parametrize(("tracker", "message"), [
    ("{outages: [{at: 5, for: 0}]}", "tracker.outages[0].for: must be more than 0 seconds"),
    ("{outages: [{at: 5, for: 3}, {at: 6, for: 1}]}",
     "tracker.outages[1].at: starts at 6 s, before the previous outage ends"),
    ("{outages: {at: 5}}", "tracker.outages: must be a list of {at: s, for: s}"),
    ("{outages: [{at: 5}]}", "tracker.outages[0].for: missing"),
    ("{url: 'http://x/announce', outages: [{at: 5, for: 1}]}",
     "tracker.outages: outages stop and restart the testbed's own tracker"),
])
def test_bad_tracker_outages_are_refused_with_their_line(tracker, message):
    from testbed.topology import TopologyError, parse_topology

    with pytest.raises(TopologyError) as caught:
        parse_topology(_BASE + f"tracker: {tracker}\n", file="t.yaml")
    assert str(caught.value).startswith(f"t.yaml:5: {message}")


def test_a_tracker_outage_stops_the_tracker_and_restarts_it_on_the_same_port(tmp_path, fakes):
    from dataclasses import replace

    from testbed.topology import TrackerOutage

    # Seconds apart, so that a loaded host's slow process starts cannot reorder them.
    exp = replace(experiment(("hang", 1, {}), time_limit=4.0, all_complete=False),
                  tracker_outages=(TrackerOutage(at=1.0, duration=1.0),))
    out, summary = run(exp, tmp_path, fakes)
    assert summary["status"] == "completed", summary
    stopped, restarted = summary["tracker"]["events"]
    assert stopped["event"] == "stopped" and stopped["code"] == 0
    assert 1.0 <= stopped["t"] < 2.0
    assert restarted["event"] == "restarted" and 2.0 <= restarted["t"] < 4.0
    assert summary["tracker"]["outages"] == [{"at": 1.0, "for": 1.0}]
    assert summary["crashes"] == {} and exit_status(summary) == 0
    assert summary["exit_codes"]["tracker"] == 0  # the second tracker, stopped at the end
    events = [json.loads(line)["ev"] for line in (out / "tracker.jsonl").read_text().splitlines()]
    assert events == ["start", "stop", "start", "stop"]
    assert (out / "tracker.port").read_text().strip() == "6881"
    assert_all_gone(out)


def test_the_stop_grace_grows_with_the_processes_per_core():
    from testbed.launch import STOP_GRACE, stop_grace_for

    assert stop_grace_for(1, 2) == pytest.approx(STOP_GRACE + 0.025)
    # 300 peers stopping at once on 2 cores queue for them: 10.5 s, not 3.
    assert stop_grace_for(300, 2) == pytest.approx(10.5)
    assert stop_grace_for(300, 0) == stop_grace_for(300, 1)
