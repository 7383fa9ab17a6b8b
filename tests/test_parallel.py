"""testbed.parallel: several runs at once, with fake runs (forked children that sleep and write
what they saw), then one real sweep of a tiny swarm run one at a time and two at a time."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import time
from pathlib import Path

import psutil
import pytest

import testbed.parallel
from peer.errors import TestbedError
from testbed.cli import main
from testbed.parallel import Finished, Outcome, Task, run_plan

# ---------------------------------------------------------------------------------------------
# fake runs: each appends "<event> <name> <monotonic time>" to a shared log file


def note(log: Path, event: str, name: str) -> None:
    with open(log, "a") as f:  # O_APPEND: lines from several processes do not mix
        f.write(f"{event} {name} {time.monotonic():.4f}\n")


def events(log: Path) -> list[tuple[str, str, float]]:
    text = log.read_text() if log.exists() else ""
    return [(e, n, float(t)) for e, n, t in (line.split() for line in text.split("\n") if line)]


def wait_until(condition, seconds: float = 20.0) -> None:
    """For fake runs: wait for what another process does, but never hang a failing test."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


def sleeper(log: Path, name: str, seconds: float, status: str = "completed") -> Task:
    def work() -> Outcome:
        note(log, "start", name)
        time.sleep(seconds)
        note(log, "end", name)
        return Outcome(status, {"name": name, "pid": os.getpid()})

    return Task(name, work)


def most_at_once(log: Path) -> int:
    running = peak = 0
    for event, _, _ in sorted(events(log), key=lambda e: e[2]):
        running += 1 if event == "start" else -1
        peak = max(peak, running)
    return peak


def test_results_come_back_in_plan_order_with_at_most_j_at_once(tmp_path):
    log = tmp_path / "log"

    handled = tmp_path / "handled"
    handled.write_text("")

    def last() -> Outcome:  # the first run of the plan ends once every other one was handled
        note(log, "start", "r0")
        wait_until(lambda: len(handled.read_text().split()) >= 4)
        note(log, "end", "r0")
        return Outcome("completed", {"name": "r0", "pid": os.getpid()})

    def second() -> Outcome:  # ends only once r0 is up: two at once for sure
        wait_until(lambda: any(n == "r0" for _, n, _ in events(log)))
        return sleeper(log, "r1", 0.1).work()

    tasks = [Task("r0", last), Task("r1", second),
             *(sleeper(log, f"r{i}", 0.1) for i in range(2, 5))]
    order: list[str] = []

    def on_done(finished: Finished) -> None:
        order.append(finished.name)
        with open(handled, "a") as f:
            f.write(f"{finished.name}\n")

    lines: list[str] = []
    result = run_plan(tasks, jobs=2, on_done=on_done, echo=lines.append,
                      cpu_probe=lambda: 0.0)
    assert order == ["r1", "r2", "r3", "r4", "r0"]  # on_done: in finishing order
    assert [f.name for f in result.finished] == ["r0", "r1", "r2", "r3", "r4"]
    assert [f.index for f in result.finished] == [0, 1, 2, 3, 4]
    assert [f.outcome.value["name"] for f in result.finished] == ["r0", "r1", "r2", "r3", "r4"]
    pids = {f.outcome.value["pid"] for f in result.finished}
    assert len(pids) == 5 and os.getpid() not in pids  # each run in its own process
    assert most_at_once(log) == 2
    assert not result.interrupted and result.signal is None
    assert lines[:2] == ["[1/5] r0: started (1 running)", "[2/5] r1: started (2 running)"]
    assert re.fullmatch(r"\[1/5\] r0: completed after \d+\.\d s", lines[-1]), lines
    for f in result.finished:
        with pytest.raises(ChildProcessError):
            os.waitpid(f.outcome.value["pid"], os.WNOHANG)  # every child reaped


def test_one_job_runs_in_this_process_and_stops_at_an_interrupted_run(tmp_path):
    log = tmp_path / "log"
    tasks = [sleeper(log, "a", 0), sleeper(log, "b", 0, "interrupted"), sleeper(log, "c", 0)]
    lines: list[str] = []
    result = run_plan(tasks, jobs=1, echo=lines.append, cpu_probe=lambda: 100.0)
    assert [f.outcome.value["pid"] for f in result.finished] == [os.getpid()] * 2
    assert result.interrupted and [n for _, n, _ in events(log)] == ["a", "a", "b", "b"]
    assert lines == []  # one at a time: the callers print what they always printed


def test_no_run_starts_beside_others_while_the_host_cpu_is_saturated(tmp_path):
    log = tmp_path / "log"
    readings = iter([99.0, 95.0, 20.0])
    probes: list[float] = []

    def probe() -> float:
        probes.append(time.monotonic())
        return next(readings, 20.0)

    lines: list[str] = []
    result = run_plan([sleeper(log, "a", 1.5), sleeper(log, "b", 0.1)], jobs=2,
                      echo=lines.append, cpu_probe=probe, cpu_recheck=0.2)
    starts = {n: t for e, n, t in events(log) if e == "start"}
    ends = {n: t for e, n, t in events(log) if e == "end"}
    assert len(probes) == 3  # the first run starts unguarded; the second after two refusals
    assert starts["b"] > probes[2] > probes[1] + 0.19
    assert starts["b"] < ends["a"]  # it did start beside the first once the CPU was free
    waiting = [line for line in lines if "above 90%" in line]
    assert len(waiting) == 1 and "not starting [2/2] b" in waiting[0], lines
    assert any("starting again" in line for line in lines)
    assert [f.outcome.status for f in result.finished] == ["completed", "completed"]


def test_with_none_of_its_runs_going_the_next_starts_whatever_the_cpu(tmp_path):
    log = tmp_path / "log"
    result = run_plan([sleeper(log, "a", 0.3), sleeper(log, "b", 0)], jobs=2,
                      echo=lambda _: None, cpu_probe=lambda: 100.0, cpu_recheck=0.05)
    starts = {n: t for e, n, t in events(log) if e == "start"}
    ends = {n: t for e, n, t in events(log) if e == "end"}
    assert starts["b"] >= ends["a"] and len(result.finished) == 2


def stoppable(log: Path, name: str) -> Task:
    """A fake run that, like the orchestrator, handles SIGINT/SIGTERM itself: it notes every
    signal it gets and ends ``interrupted`` shortly after the first."""
    def work() -> Outcome:
        got: list[int] = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda s, _f: got.append(s))
        note(log, "start", name)
        wait_until(lambda: bool(got))
        time.sleep(0.3)  # a second signal would arrive here
        note(log, "end", name)
        return Outcome("interrupted" if got else "completed", [int(s) for s in got])

    return Task(name, work)


def test_a_signal_stops_every_running_run_once_and_starts_no_other(tmp_path):
    log = tmp_path / "log"

    def stop_the_scheduler() -> Outcome:
        note(log, "start", "killer")
        wait_until(lambda: len(events(log)) >= 3)  # both other runs are up
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # were it still running when forwarded
        os.kill(os.getppid(), signal.SIGTERM)
        note(log, "end", "killer")
        return Outcome("completed")

    tasks = [Task("killer", stop_the_scheduler), stoppable(log, "a"), stoppable(log, "b"),
             stoppable(log, "never")]
    lines: list[str] = []
    handler = signal.getsignal(signal.SIGTERM)
    result = run_plan(tasks, jobs=3, echo=lines.append, cpu_probe=lambda: 0.0)
    assert result.interrupted and result.signal == signal.SIGTERM
    assert [f.name for f in result.finished] == ["killer", "a", "b"]
    assert [f.outcome.status for f in result.finished] == ["completed", "interrupted",
                                                          "interrupted"]
    assert [f.outcome.value for f in result.finished[1:]] == [[signal.SIGTERM]] * 2
    assert "never" not in {n for _, n, _ in events(log)}
    assert any(line.startswith("SIGTERM: stopping") for line in lines), lines
    assert signal.getsignal(signal.SIGTERM) is handler  # the scheduler's own is gone


def test_a_child_that_dies_or_raises(tmp_path):
    def dies() -> Outcome:
        os._exit(3)

    def bad_input() -> Outcome:
        raise TestbedError("external client program not found on PATH: aria2c")

    result = run_plan([Task("dies", dies)], jobs=2, echo=lambda _: None)
    outcome = result.finished[0].outcome
    assert outcome.status == "failed" and "exited with code 3" in outcome.value["error"]

    log = tmp_path / "log"
    done: list[Finished] = []
    with pytest.raises(TestbedError, match=r"^bad: external client program not found"):
        run_plan([sleeper(log, "ok", 0.3), Task("bad", bad_input), sleeper(log, "later", 0)],
                 jobs=2, on_done=done.append, echo=lambda _: None, cpu_probe=lambda: 0.0)
    assert [f.name for f in done] == ["ok"]  # the running one finished; nothing else started


def test_jobs_must_be_positive(capsys):
    with pytest.raises(ValueError, match="at least 1"):
        run_plan([], jobs=0)
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "topologies/ci_small.yaml", "--param", "seed=1", "--jobs", "0"])
    assert exit_.value.code == 2 and "'0' is not a number of runs >= 1" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# testbed run --repeat K --jobs J, with the orchestrator and the analysis faked (the forked
# children inherit the fakes)


def fake_execute(slow_seed: int, interrupted_seed: int | None = None, *, wait_for: int = 0):
    """The run of ``slow_seed`` ends only once results.json has ``wait_for`` repetitions (so
    after runs that come later in the plan), or after 1 s if that never happens."""
    import testbed.run

    def execute_run(experiment, text, options):
        results = options.out.parent / "results.json"
        if experiment.seed == slow_seed:
            wait_until(lambda: results.exists() and len(
                json.loads(results.read_text())["repetitions"]) >= wait_for, 1.0)
        options.out.mkdir()
        (options.out / "pid").write_text(f"{os.getpid()} quiet={options.quiet}")
        status = "interrupted" if experiment.seed == interrupted_seed else "completed"
        summary = {"status": status, "crashes": {}, "signal": None,
                   "cpu": {"saturated": False, "host_mean": 10.0}}
        return testbed.run.RunResult(options.out, summary)

    return execute_run


def fake_metrics(run_dir: Path) -> dict:
    seed = 7 + int(run_dir.name[4:])
    if seed == 9:
        raise KeyError("a bug in the analysis")
    return {"status": "completed", "saturated": False, "host_cpu_mean": 10.0,
            "metrics": {"all_complete": True, "makespan": float(seed)}}


def test_repetitions_at_once_keep_seed_order(tmp_path, monkeypatch, capsys):
    import testbed.run
    from testbed import regress

    monkeypatch.setattr(testbed.parallel, "host_cpu_percent", lambda: 0.0)
    monkeypatch.setattr(testbed.run, "execute_run", fake_execute(slow_seed=7, wait_for=3))
    monkeypatch.setattr(regress.results, "run_metrics", fake_metrics)
    root, status = regress.run_repeated(Path("topologies/ci_small.yaml"), repeat=4, seed=7,
                                        out=tmp_path / "set", runs_root=tmp_path, jobs=2)
    assert status == 1  # the analysis of seed 9 failed, as one at a time would say
    data = json.loads((root / "results.json").read_text())
    assert [r["seed"] for r in data["repetitions"]] == [7, 8, 9, 10]
    assert [r["run_dir"] for r in data["repetitions"]] == ["rep-0", "rep-1", "rep-2", "rep-3"]
    assert [r["metrics"].get("makespan") for r in data["repetitions"]] == [7.0, 8.0, None, 10.0]
    written = [(root / f"rep-{i}" / "pid").read_text().split() for i in range(4)]
    assert {pid for pid, _ in written}.isdisjoint({str(os.getpid())})
    assert {quiet for _, quiet in written} == {"quiet=True"}  # no live progress beside others
    out = capsys.readouterr().out
    finished = [line for line in out.splitlines() if "completed after" in line]
    assert finished[-1].startswith("[1/4] rep-0 (seed 7)"), out  # the slow one ended last
    assert "results set" in out and "repetition 1/4" not in out


def test_an_interrupted_repetition_stops_the_set(tmp_path, monkeypatch, capsys):
    import testbed.run
    from testbed import regress

    monkeypatch.setattr(testbed.parallel, "host_cpu_percent", lambda: 0.0)
    monkeypatch.setattr(testbed.run, "execute_run", fake_execute(slow_seed=1,
                                                                 interrupted_seed=2))
    monkeypatch.setattr(regress.results, "run_metrics", fake_metrics)
    root, status = regress.run_repeated(Path("topologies/ci_small.yaml"), repeat=4, seed=1,
                                        out=tmp_path / "set", runs_root=tmp_path, jobs=2)
    assert status == 130
    data = json.loads((root / "results.json").read_text())
    assert [r["seed"] for r in data["repetitions"]] == [1]  # rep-0 finished after rep-1 ended
    assert sorted(p.name for p in root.iterdir()) == ["rep-0", "rep-1", "results.json"]


# ---------------------------------------------------------------------------------------------
# a real sweep, one run at a time and two at a time

TINY = """\
name: parallel_tiny
seed: 3
content: {size: 1MiB, piece_size: 32KiB}
protocol: {unchoke_when_free: true}
groups:
  - name: seed
    role: seed
    upload: 1MiB/s
  - name: leecher
    count: 2
    upload: 512KiB/s
end: {all_complete: true, time_limit: 60}
"""


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.mark.integration
def test_a_sweep_two_at_a_time_gives_what_one_at_a_time_gives(tmp_path, capsys, monkeypatch):
    # Two really at once, however busy the shared machine is (the guard is tested above).
    monkeypatch.setattr(testbed.parallel, "host_cpu_percent", lambda: 0.0)
    topology = tmp_path / "tiny.yaml"
    topology.write_text(TINY)
    sweeps = {}
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        code = main(["sweep", str(topology), "--param", "groups[leecher].count=2,3",
                     "--quiet", "--out", str(out), "--jobs", str(jobs)])
        assert code == 0, capsys.readouterr()
        sweeps[jobs] = out
    printed = capsys.readouterr().out
    assert "[2/2] groups[leecher].count=3, seed 3: started (2 running)" in printed

    one, two = (json.loads((sweeps[j] / "sweep.json").read_text()) for j in (1, 2))
    assert one["runs"] == two["runs"]
    assert [r["status"] for r in two["rows"]] == ["completed", "completed"]
    assert [(r["leechers"], r["seed"]) for r in two["rows"]] == [(2, 3), (3, 3)]
    assert list(one["rows"][0]) == list(two["rows"][0])
    heads = [next(csv.reader((sweeps[j] / "sweep.csv").open())) for j in (1, 2)]
    assert heads[0] == heads[1]
    assert files_under(sweeps[1]) == files_under(sweeps[2])
    for run in one["runs"]:
        experiments = [(sweeps[j] / run["dir"] / "experiment.json").read_text() for j in (1, 2)]
        assert experiments[0] == experiments[1]
    stray = [p for p in psutil.Process().children(recursive=True) if p.is_running()]
    assert stray == []
