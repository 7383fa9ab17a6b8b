"""The orchestrator with small fake tracker and peer scripts: fast, no BitTorrent involved.

The fakes follow the contracts the real processes keep (docs/log-schema.md, the tracker's
--port-file, SIGTERM -> ``stop`` and exit 0), so these tests pin the orchestrator's side.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from peer.config import RateLimit
from peer.errors import TestbedError
from testbed.experiment import (
    ContentSpec,
    Departure,
    EndCondition,
    Experiment,
    PeerPlan,
    peer_id_for,
)
from testbed.peer_watch import LogTail, PeerState
from testbed.resources import summarize_cpu
from testbed.run import Commands, RunOptions, execute_run
from testbed.rundir import create_run_dir
from testbed.summary import exit_status, format_summary, topology_bounds

FAKE_TRACKER = textwrap.dedent("""
    import argparse, json, os, signal, sys, time
    p = argparse.ArgumentParser()
    for a in ("--host", "--port", "--port-file", "--log", "--torrent", "--interval",
              "--run-start", "--seed"):
        p.add_argument(a)
    args = p.parse_args()
    if os.environ.get("FAKE_TRACKER_FAIL") or os.path.exists("FAIL_TRACKER"):
        print("fake tracker: cannot bind", flush=True)
        sys.exit(3)
    log = open(args.log, "a")
    def stop(*_):
        log.write(json.dumps({"t": 0, "ev": "stop"}) + "\\n"); log.close(); sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    log.write(json.dumps({"t": 0, "ev": "start"}) + "\\n"); log.flush()
    with open(args.port_file + ".tmp", "w") as f:
        f.write("6881\\n")
    os.replace(args.port_file + ".tmp", args.port_file)
    if os.path.exists("CRASH_TRACKER"):
        time.sleep(0.3); sys.exit(5)
    while True:
        time.sleep(1)
""")

# Behaviour by group: "crash" exits 3 after starting, "hang" never completes, "partial" writes
# a truncated last line, "stuck" verifies pieces 0-2 and then waits for ever, "diskfull" exits
# 74 as a peer that cannot write its log does; everyone else completes after a moment with
# every piece verified.
FAKE_PEER = textwrap.dedent("""
    import json, os, signal, sys, time
    # A SIGTERM before the log is open (a slow start on a loaded host) is honoured once it is.
    early_stop = []
    signal.signal(signal.SIGTERM, lambda *_: early_stop.append(True))
    config = json.load(open(sys.argv[sys.argv.index("--config") + 1]))
    run_start = config["run_start"]
    exp = json.load(open("experiment.json"))
    size, plen = exp["content"]["size"], exp["content"]["piece_length"]
    log = open(config["log"], "a")
    def emit(ev, **kw):
        rec = {"t": round(time.monotonic() - run_start, 4), "ev": ev, **kw}
        log.write(json.dumps(rec, separators=(",", ":")) + "\\n"); log.flush()
    def stop(reason):
        emit("stop", reason=reason, up=0, down=0); log.close(); sys.exit(0)
    signal.signal(signal.SIGTERM, lambda *_: stop("signal"))
    emit("start", name=config["name"], pid=os.getpid(), role=config["role"])
    if early_stop:
        stop("signal")
    group = config["group"]
    if group == "crash":
        sys.exit(3)
    if group == "diskfull":
        time.sleep(0.3); log.close(); sys.exit(74)
    if group == "stuck":
        for i in range(3):
            emit("piece", index=i, size=plen, ok=True, blame=[])
    if group == "partial":
        log.write('{"t":0.5,"ev":"rechoke","nbrs":[{"peer":"x"'); log.flush()
    if config["role"] == "leecher" and group not in ("hang", "partial", "stuck"):
        time.sleep(0.2)
        for i in range((size + plen - 1) // plen):
            emit("piece", index=i, size=min(plen, size - i * plen), ok=True, blame=[])
        emit("rechoke", round=1, nbrs=[{"peer": "x", "decision": "choke"}])
        emit("complete", downloaded=size, elapsed=0.2)
        if config["leave_after_complete"] is not None:
            time.sleep(config["leave_after_complete"])
            stop("left after completion")
    while True:
        time.sleep(1)
""")


@pytest.fixture
def fakes(tmp_path: Path) -> Commands:
    tracker = tmp_path / "fake_tracker.py"
    peer = tmp_path / "fake_peer.py"
    tracker.write_text(FAKE_TRACKER)
    peer.write_text(FAKE_PEER)
    return Commands(python=sys.executable, peer=(str(peer),), tracker=(str(tracker),))


def plan(index: int, group: str, role: str = "leecher", *, arrival: float = 0.0,
         departure: Departure | None = None, upload: float | None = 512 * 1024) -> PeerPlan:
    return PeerPlan(name=f"{group}-{index}", group=group, index=index, role=role,  # type: ignore[arg-type]
                    peer_id=peer_id_for(index), seed=index, arrival=arrival,
                    departure=departure or Departure(), upload=RateLimit(rate=upload))


def experiment(*groups: tuple[str, int, dict], time_limit: float | None = 20.0,
               all_complete: bool = True, tolerate_crashes: bool = False) -> Experiment:
    peers = [plan(0, "seed", "seed", upload=1024 * 1024)]
    for group, count, kw in groups:
        for _ in range(count):
            peers.append(plan(len(peers), group, **kw))
    return Experiment(name="fake", seed=7,
                      content=ContentSpec(size=100 * 1024, piece_length=16 * 1024),
                      peers=tuple(peers),
                      end=EndCondition(all_complete=all_complete, time_limit=time_limit,
                                       tolerate_crashes=tolerate_crashes))


def run(exp: Experiment, tmp_path: Path, fakes: Commands, launcher: str = "local",
        **kw: object) -> tuple[Path, dict]:
    out = tmp_path / "run"
    options = RunOptions(out=out, quiet=True, launcher=launcher, stop_grace=1.0,  # type: ignore[arg-type]
                         poll_period=0.05, command=("testbed", "run", "x"), **kw)  # type: ignore[arg-type]
    result = execute_run(exp, "name: fake\n", options, fakes)
    assert result.run_dir == out
    return out, json.loads((out / "summary.json").read_text())


def assert_all_gone(out: Path) -> None:
    """Every process the run recorded (resources.jsonl, peers' start lines) has exited."""
    pids = set()
    for line in (out / "resources.jsonl").read_text().splitlines():
        pids |= {p["pid"] for name, p in json.loads(line)["procs"].items()
                 if name != "orchestrator"}
    for log in (out / "peers").glob("*.jsonl"):
        for line in log.read_text().splitlines():
            if '"ev":"start"' in line:
                pids.add(json.loads(line)["pid"])
    alive = [pid for pid in pids if psutil.pid_exists(pid)
             and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"still running: {alive}"


# -- a whole run with fakes --------------------------------------------------------------------


@pytest.mark.parametrize("launcher", ["local", "fork"])
def test_fake_run_completes_and_writes_the_run_directory(tmp_path, fakes, launcher):
    exp = experiment(("leecher", 3, {}))
    out, summary = run(exp, tmp_path, fakes, launcher)
    assert summary["status"] == "completed", summary
    assert summary["reason"] == "every leecher completed"
    assert summary["leechers"] == 3 and summary["completed"] == 3 and summary["verified"] == 3
    assert set(summary["completion_times"]) == {"leecher-1", "leecher-2", "leecher-3"}
    assert summary["makespan"] is not None and summary["makespan"] < summary["duration"]
    # 100 KiB from a 1 MiB/s seed to 3 leechers uploading 512 KiB/s each.
    assert summary["bounds"]["d_p2p"] == pytest.approx(3 * 100 / (1024 + 3 * 512), abs=1e-3)
    assert summary["bounds"]["d_cs"] == pytest.approx(3 * 100 / 1024, abs=1e-3)
    assert summary["makespan_over_d_p2p"] == pytest.approx(
        summary["makespan"] / summary["bounds"]["d_p2p"], rel=1e-2)
    assert summary["exit_codes"] == {"tracker": 0, "seed-0": 0, "leecher-1": 0,
                                     "leecher-2": 0, "leecher-3": 0}
    assert summary["crashes"] == {} and exit_status(summary) == 0
    assert set(summary["cpu"]) >= {"host_mean", "host_p95", "saturated_seconds", "saturated",
                                   "warning"}
    for name in ("topology.yaml", "experiment.json", "meta.json", "content.bin.torrent",
                 "tracker.jsonl", "tracker.out", "resources.jsonl", "content/content.bin"):
        assert (out / name).exists(), name
    assert (out / "topology.yaml").read_text() == "name: fake\n"
    assert json.loads((out / "experiment.json").read_text())["peers"][1]["name"] == "leecher-1"
    meta = json.loads((out / "meta.json").read_text())
    assert meta["schema"] == 1 and meta["seed"] == 7 and meta["command"][:2] == ["testbed", "run"]
    assert isinstance(meta["run_start_monotonic"], float)
    assert meta["packages"]["trio"] and meta["host"]["cpus"] and meta["host"]["cpu_model"]
    config = json.loads((out / "peers/seed-0.json").read_text())
    assert config["content"] == "content/content.bin" and config["tracker"].endswith(
        ":6881/announce")
    assert json.loads((out / "peers/leecher-1.json").read_text())["content"] is None
    # The torrent now names the tracker's real port; its info_hash is unchanged.
    from peer.metainfo import read_torrent
    assert read_torrent(out / "content.bin.torrent").announce == config["tracker"]
    # The stop lines came in during shutdown and were read.
    last = json.loads((out / "peers/leecher-1.jsonl").read_text().splitlines()[-1])
    assert (last["ev"], last["reason"]) == ("stop", "signal")
    sample = json.loads((out / "resources.jsonl").read_text().splitlines()[0])
    assert {"t", "host_cpu", "cpus", "procs"} <= set(sample)
    assert_all_gone(out)


def test_time_limit_and_a_hanging_leecher_give_timed_out(tmp_path, fakes):
    exp = experiment(("leecher", 1, {}), ("hang", 1, {}), time_limit=1.0)
    out, summary = run(exp, tmp_path, fakes)
    assert summary["status"] == "timed_out"
    assert summary["completed"] == 1 and summary["makespan"] is None
    assert 1.0 <= summary["duration"] < 2.0
    assert exit_status(summary) == 1
    assert_all_gone(out)


def test_time_limit_alone_is_a_normal_end(tmp_path, fakes):
    exp = experiment(("hang", 1, {}), time_limit=0.5, all_complete=False)
    _, summary = run(exp, tmp_path, fakes)
    assert summary["status"] == "completed" and "time limit" in summary["reason"]


@pytest.mark.parametrize("launcher", ["local", "fork"])
def test_crashed_and_killed_leechers_do_not_block_the_end(tmp_path, fakes, launcher):
    exp = experiment(("leecher", 1, {}), ("crash", 1, {}),
                     ("hang", 1, {"departure": Departure(kind="killed", time=0.5)}),
                     ("partial", 1, {"departure": Departure(kind="at", time=0.5)}))
    out, summary = run(exp, tmp_path, fakes, launcher)
    # A crash is not a departure: the run ends, but failed, naming the crash.
    assert summary["status"] == "failed", summary
    assert summary["reason"].startswith("crashed: crash-2 (exit 3); ")
    assert summary["completed"] == 1 and summary["leechers"] == 4
    assert "1/4 completed" in summary["reason"]
    assert summary["crashes"] == {"crash-2": 3}
    assert summary["exit_codes"]["hang-3"] == -9  # SIGKILL at its departure: not a crash
    # SIGTERM at its departure: exit 0 from the fake's handler, or -15 when a loaded host had
    # not let the fresh interpreter install it yet; either way not a crash (checked above).
    assert summary["exit_codes"]["partial-4"] in (0, -15)
    assert summary["duration"] < 3
    assert exit_status(summary) == 1  # a crash is worth a nonzero exit
    assert "crashed: crash-2 (3)" in format_summary(summary, out)
    assert_all_gone(out)


def test_a_topology_may_tolerate_crashes(tmp_path, fakes):
    exp = experiment(("leecher", 1, {}), ("crash", 1, {}), tolerate_crashes=True)
    _, summary = run(exp, tmp_path, fakes)
    assert summary["status"] == "completed", summary
    assert summary["crashes"] == {"crash-2": 3} and summary["crashes_tolerated"]
    assert exit_status(summary) == 0


def test_leave_after_completion_and_late_arrivals(tmp_path, fakes):
    exp = experiment(("leecher", 1, {"departure": Departure(kind="on_completion")}),
                     ("late", 1, {"arrival": 0.6}))
    out, summary = run(exp, tmp_path, fakes)
    assert summary["status"] == "completed"
    assert summary["exit_codes"]["leecher-1"] == 0
    assert "left after completion" in (out / "peers/leecher-1.jsonl").read_text()
    # Completion times count from the peer's arrival; the makespan from t = 0.
    late = summary["completion_times"]["late-2"]
    assert 0.2 <= late < 1.5 and summary["makespan"] >= 0.8
    assert json.loads((out / "peers/late-2.jsonl").read_text().splitlines()[0])["t"] >= 0.6


def test_tracker_that_fails_to_start_fails_the_run_with_its_output(tmp_path, fakes,
                                                                   monkeypatch):
    monkeypatch.setenv("FAKE_TRACKER_FAIL", "1")
    exp = experiment(("leecher", 1, {}))
    _, summary = run(exp, tmp_path, fakes)
    assert summary["status"] == "failed"
    assert "exited with code 3 before listening" in summary["reason"]
    assert "fake tracker: cannot bind" in summary["reason"]
    assert summary["started"] == 0  # no peer was started
    assert exit_status(summary) == 1


def test_tracker_crash_mid_run_is_recorded_and_the_run_goes_on(tmp_path, fakes, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # The leechers arrive after the tracker died: they still run and complete (peers trade
    # with the neighbours they know; a tracker failure is a fault, not the end of the run).
    exp = experiment(("leecher", 2, {"arrival": 0.8}))
    # The fake tracker crashes when it finds this file in its working directory (the run dir).
    monkeypatch.setattr("testbed.run.create_run_dir", _creating_marker("CRASH_TRACKER"))
    out, summary = run(exp, tmp_path, fakes)
    assert summary["status"] == "completed", summary
    assert summary["crashes"] == {"tracker": 5}
    [death] = summary["tracker"]["events"]
    # It sleeps 0.3 s after writing its port; how much later the death is seen depends on load.
    # It was started start_lead seconds ahead of t = 0, with the seed (testbed/run.py).
    lead = json.loads((out / "meta.json").read_text())["start_lead"]
    assert death["event"] == "died" and death["code"] == 5
    assert 0.2 - lead < death["t"] < summary["duration"]
    assert summary["exit_codes"]["tracker"] == 5
    assert summary["exit_codes"]["leecher-1"] == 0  # the peers were still stopped cleanly
    assert exit_status(summary) == 1  # a process crashed
    assert "tracker: died at" in format_summary(summary, out)
    assert_all_gone(out)


def _creating_marker(name: str):
    real = create_run_dir

    def create(*args, **kwargs):
        run_dir = real(*args, **kwargs)
        (run_dir.root / name).write_text("")
        return run_dir

    return create


# -- the run directory -------------------------------------------------------------------------


def test_run_directory_is_never_overwritten(tmp_path):
    import datetime as dt

    now = dt.datetime(2025, 1, 2, 3, 4, 5)
    first = create_run_dir("x", runs_root=tmp_path, now=now)
    second = create_run_dir("x", runs_root=tmp_path, now=now)
    third = create_run_dir("x", runs_root=tmp_path, now=now)
    assert first.root.name == "x-20250102-030405"
    assert second.root.name == "x-20250102-030405-2"
    assert third.root.name == "x-20250102-030405-3"
    assert (first.root / "peers").is_dir() and (first.root / "content").is_dir()
    with pytest.raises(TestbedError, match="already exists"):
        create_run_dir("x", out=first.root)


def test_existing_out_dir_is_refused_before_anything_starts(tmp_path, fakes):
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious").write_text("keep")
    with pytest.raises(TestbedError, match="never overwritten"):
        execute_run(experiment(("leecher", 1, {})), "", RunOptions(out=out, quiet=True), fakes)
    assert [p.name for p in out.iterdir()] == ["precious"]


# -- pieces ------------------------------------------------------------------------------------


def test_log_tail_keeps_a_partial_line_until_its_end_arrives(tmp_path):
    path = tmp_path / "p.jsonl"
    tail = LogTail(path)
    assert tail.read_lines() == []  # no file yet
    path.write_bytes(b'{"t":1,"ev":"start"}\n{"t":2,"ev":"pie')
    assert tail.read_lines() == [b'{"t":1,"ev":"start"}']
    assert tail.read_lines() == []
    with open(path, "ab") as f:
        f.write(b'ce","index":0,"size":5,"ok":true}\n')
    assert tail.read_lines() == [b'{"t":2,"ev":"piece","index":0,"size":5,"ok":true}']


def test_peer_state_follows_start_pieces_complete_and_skips_the_rest():
    state = PeerState(plan(1, "l"), LogTail(Path("/nonexistent")))
    for line in [b'{"t":0.1,"ev":"start","name":"l-1"}',
                 b'{"t":0.2,"ev":"rechoke","nbrs":[{"peer":"p","decision":"choke"}]}',
                 b'{"t":0.3,"ev":"piece","index":0,"size":10,"ok":false,"blame":["x"]}',
                 b'{"t":0.4,"ev":"piece","index":0,"size":10,"ok":true}',
                 b'{"t":0.5,"ev":"piece","index":1,"size":6,"ok":true}',
                 b'{"t":0.6,"ev":"complete","downloaded":16,"elapsed":0.5}',
                 b'{"t":0.7,"ev":"stop","reason":"signal","up":0,"down":16}',
                 b'{"t":0.8,"ev":"piece","index":2,"size":']:
        state.feed(line)
    assert (state.start_t, state.complete_t, state.stop_reason) == (0.1, 0.6, "signal")
    assert state.ok_pieces == {0, 1} and state.downloaded == 16
    assert state.failed_pieces == 1 and state.bad_lines == 1


def test_bounds_use_the_initial_seeds_as_the_server():
    exp = experiment(("leecher", 4, {}))
    d_p2p, d_cs = topology_bounds(exp)
    size = 100 * 1024
    assert d_cs == pytest.approx(4 * size / (1024 * 1024))
    assert d_p2p == pytest.approx(4 * size / (1024 * 1024 + 4 * 512 * 1024))
    # The flash crowd: 1 seed at 1 MiB/s, 40 leechers at 512 KiB/s, 16 MiB -> 30.5 s.
    peers = [plan(0, "seed", "seed", upload=1024 * 1024)] + [plan(i, "l") for i in range(1, 41)]
    flash = Experiment(name="f", seed=1, content=ContentSpec(size=16 * 1024 * 1024),
                       peers=tuple(peers))
    assert topology_bounds(flash)[0] == pytest.approx(30.476, abs=1e-3)
    unlimited = Experiment(name="u", seed=1, content=ContentSpec(size=1024),
                           peers=(plan(0, "s", "seed", upload=None), plan(1, "l")))
    assert topology_bounds(unlimited) == (0.0, 0.0)


def test_cpu_saturation_by_share_of_the_run_and_by_stretch():
    calm = summarize_cpu([1, 2, 3, 4], [50, 95, 40, 30], duration=40)
    assert not calm.saturated and calm.warning is None and calm.saturated_seconds == 1
    assert calm.host_p95 == 95 and calm.host_mean == pytest.approx(53.8)
    share = summarize_cpu([1, 2, 3], [95, 95, 10], duration=10)  # 2 s of 10 s > 10 %
    assert share.saturated and "2 s of 10 s" in share.warning
    times = [float(t) for t in range(1, 101)]
    stretch = summarize_cpu(times, [99.0 if 10 < t <= 15 else 10.0 for t in times], 100)
    assert stretch.saturated and stretch.longest_saturated == 5  # 5 % of the run, in a row
    assert summarize_cpu([], [], 5).host_mean is None


def test_exit_status_by_outcome():
    base = {"crashes": {}, "signal": None}
    assert exit_status({**base, "status": "completed"}) == 0
    assert exit_status({**base, "status": "timed_out"}) == 1
    assert exit_status({**base, "status": "failed"}) == 1
    assert exit_status({**base, "status": "interrupted", "signal": "SIGINT"}) == 130
    assert exit_status({**base, "status": "interrupted", "signal": "SIGTERM"}) == 143
    assert exit_status({**base, "status": "completed", "crashes": {"x": 1}}) == 1


# -- progress ----------------------------------------------------------------------------------


def test_progress_plain_lines_every_five_seconds_and_quiet_says_nothing():
    import io

    from testbed.progress import Progress, ProgressState, choose_mode

    stream = io.StringIO()
    progress = Progress("plain", stream)
    for t in (0.0, 2.0, 5.0, 7.0, 10.5):
        progress.update(ProgressState(elapsed=t, complete=1, leechers=4, running=5,
                                      rate=2 * 1024 * 1024, host_cpu=55.0))
    progress.message("leecher-3 exited with code 1")
    lines = stream.getvalue().splitlines()
    assert [line.split("s", 1)[0].strip() for line in lines[:3]] == ["t=   0.0", "t=   5.0",
                                                                     "t=  10.5"]
    assert "complete 1/4" in lines[0] and "2.0 MiB/s" in lines[0] and "CPU 55%" in lines[0]
    assert lines[3] == "leecher-3 exited with code 1"
    quiet = io.StringIO()
    Progress("quiet", quiet).update(ProgressState(0, 0, 1, 0, 0.0, None))
    assert quiet.getvalue() == ""
    assert choose_mode(False, io.StringIO()) == "plain" and choose_mode(True) == "quiet"


def test_progress_live_line_on_a_terminal():
    import io

    from testbed.progress import Progress, ProgressState

    stream = io.StringIO()
    progress = Progress("tty", stream)
    progress.update(ProgressState(elapsed=3.0, complete=2, leechers=4, running=5, rate=0.0,
                                  host_cpu=None))
    progress.close()
    assert "complete 2/4" in stream.getvalue()
