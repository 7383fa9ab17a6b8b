"""Results sets: one topology run K times with seeds s, s+1, … s+K−1 (``testbed run --repeat
K``), kept as a directory with ``rep-<i>/`` (each a normal run directory) and ``results.json``,
which gathers every repetition's headline metrics (docs/regression.md)."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peer.errors import TestbedError
from testbed.regress.metrics import RegressError, run_metrics
from testbed.regress.report import format_set

if TYPE_CHECKING:
    from testbed.experiment import Experiment
    from testbed.parallel import Cluster, Finished, PlanResult, Task
    from testbed.run import LauncherKind, RunResult

__all__ = [
    "RESULTS_FILE",
    "RESULTS_SCHEMA",
    "Repetition",
    "ResultsSet",
    "load_results",
    "run_repeated",
]

RESULTS_SCHEMA = 1
RESULTS_FILE = "results.json"


@dataclass(frozen=True, slots=True)
class Repetition:
    index: int
    seed: int | None
    run_dir: str
    """Relative to the results set for a set; the run directory itself for a lone run."""
    status: str | None
    saturated: bool
    metrics: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ResultsSet:
    path: Path
    name: str | None
    repetitions: tuple[Repetition, ...]

    def values(self, metric: str) -> list[float]:
        """The metric's defined values, one per repetition that has it."""
        out = []
        for rep in self.repetitions:
            v = rep.metrics.get(metric)
            if v is not None and not isinstance(v, bool):
                out.append(float(v))
        return out

    def flags(self, metric: str) -> list[bool]:
        return [bool(rep.metrics.get(metric)) for rep in self.repetitions]

    @property
    def metric_names(self) -> list[str]:
        names: dict[str, None] = {}
        for rep in self.repetitions:
            names.update(dict.fromkeys(rep.metrics))
        return list(names)

    @property
    def saturated(self) -> int:
        return sum(rep.saturated for rep in self.repetitions)

    @property
    def run_dirs(self) -> list[Path]:
        """Every repetition's run directory."""
        dirs = []
        for rep in self.repetitions:
            run_dir = Path(rep.run_dir)
            lone = run_dir == self.path or run_dir.is_absolute()
            dirs.append(run_dir if lone else self.path / run_dir)
        return dirs


def _rep_from_json(data: Any, where: str, i: int) -> Repetition:
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise RegressError(f"{where}: repetitions[{i}] has no 'metrics' object")
    try:
        return Repetition(index=int(data.get("index", i)), seed=data.get("seed"),
                          run_dir=str(data.get("run_dir", "")), status=data.get("status"),
                          saturated=bool(data.get("saturated")), metrics=dict(data["metrics"]))
    except (TypeError, ValueError) as exc:
        raise RegressError(f"{where}: repetitions[{i}]: {exc}") from None


def _lone_run(path: Path) -> ResultsSet:
    """A run directory as a set of one repetition, its metrics computed from the logs."""
    rep = run_metrics(path)
    name = None
    with contextlib.suppress(OSError, ValueError):
        name = json.loads((path / "experiment.json").read_text()).get("name")
    return ResultsSet(path, name, (Repetition(0, None, str(path), rep["status"],
                                              rep["saturated"], rep["metrics"]),))


def load_results(path: Path) -> ResultsSet:
    """A results set: a directory with results.json, a results.json file, or a single run
    directory (one repetition, its metrics computed from the logs)."""
    path = Path(path)
    file = path / RESULTS_FILE if path.is_dir() else path
    if path.is_dir() and not file.exists():
        if (path / "summary.json").exists():
            return _lone_run(path)
        raise RegressError(f"{path}: neither a results set ({RESULTS_FILE}) nor a run "
                           "directory (summary.json)")
    if not file.exists():
        raise RegressError(f"{path}: no such results set or run directory")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RegressError(f"{file}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise RegressError(f"{file}: not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("kind") != "results_set":
        raise RegressError(f"{file}: not a results set (no \"kind\": \"results_set\")")
    if data.get("schema") != RESULTS_SCHEMA:
        raise RegressError(f"{file}: results schema {data.get('schema')!r} is not known "
                           f"(known: {RESULTS_SCHEMA})")
    reps = data.get("repetitions")
    if not isinstance(reps, list) or not reps:
        raise RegressError(f"{file}: no repetitions")
    root = file.parent
    return ResultsSet(root, data.get("name"),
                      tuple(_rep_from_json(r, str(file), i) for i, r in enumerate(reps)))


# ---------------------------------------------------------------------------------------------
# testbed run --repeat


def _make_root(name: str, repeat: int, out: Path | None, runs_root: Path) -> Path:
    from testbed.rundir import create_fresh_dir, timestamp

    return create_fresh_dir(f"{name}-{timestamp()}-x{repeat}", out=out, runs_root=runs_root,
                            what="results set")


def _repetition_figures(result: RunResult) -> tuple[dict[str, Any], bool]:
    """The run's metrics for results.json, and whether computing them failed. A failure is
    reported and recorded, never raised: an analysis bug must not lose the runs."""
    try:
        return run_metrics(result.run_dir), False
    except Exception as exc:
        message = str(exc) if isinstance(exc, TestbedError) else f"{exc!r}"
        print(f"testbed run: analysis of {result.run_dir} failed: {message}", file=sys.stderr)
        cpu = result.summary["cpu"]
        # No metrics: check and compare then report every metric as missing.
        figures = {"status": result.summary["status"], "metrics": {}, "analysis_error": message,
                   "saturated": bool(cpu.get("saturated")), "host_cpu_mean": cpu.get("host_mean")}
        return figures, True


def run_repeated(topology: Path, *, repeat: int, seed: int | None, out: Path | None,
                 runs_root: Path, time_limit: float | None = None, quiet: bool = False,
                 launcher: LauncherKind = "fork", command: Sequence[str] = (),
                 jobs: int = 1, cluster: Cluster | None = None) -> tuple[Path, int]:
    """``testbed run TOPOLOGY --repeat K``: K runs with seeds s … s+K−1 into one results set,
    up to ``jobs`` at once (testbed.parallel), or on ``cluster``'s workers (testbed.cluster).

    Every topology/seed is validated before anything starts (a TopologyError then). results.json
    is rewritten after every repetition, in seed order, so an interrupted set keeps what it
    finished. Returns (results set directory, exit status: 0 when every run exited 0, else the
    first non-zero run status in seed order; an interrupted run stops the set).
    """
    from testbed.parallel import run_plan
    from testbed.rundir import utc_now_iso, write_json_atomic
    from testbed.topology import expand, load_topology

    if repeat < 1:
        raise RegressError(f"--repeat must be at least 1, got {repeat}")
    topo = load_topology(topology)
    first = topo.seed if seed is None else seed
    experiments = [expand(topo, first + i) for i in range(repeat)]
    # Absolute: the fork launcher opens a process's output file after chdir-ing into the run
    # directory, so a relative run directory (runs/…) would not be found.
    root = _make_root(topo.name, repeat, out.absolute() if out is not None else None,
                      runs_root.absolute())
    data: dict[str, Any] = {"schema": RESULTS_SCHEMA, "kind": "results_set", "name": topo.name,
                            "topology": str(topology), "seeds": [first + i for i in range(repeat)],
                            "repeat": repeat, "started_at": utc_now_iso(),
                            "command": list(command), "repetitions": []}
    entries: dict[int, dict[str, Any]] = {}

    def on_done(finished: Finished) -> None:
        value = finished.outcome.value
        if finished.outcome.status == "interrupted" or not value or "figures" not in value:
            return
        i = finished.index
        entries[i] = {"index": i, "seed": first + i, "run_dir": f"rep-{i}",
                      "exit_status": value["exit_status"], **value["figures"]}
        data["repetitions"] = [entries[k] for k in sorted(entries)]
        write_json_atomic(root / RESULTS_FILE, data)

    options = {"time_limit": time_limit, "quiet": quiet or jobs > 1, "launcher": launcher,
               "command": tuple(command)}
    tasks = [_repetition_task(experiment, topology, topo.text, root / f"rep-{i}", options,
                              f"{i + 1}/{repeat}", announce=jobs == 1 and cluster is None)
             for i, experiment in enumerate(experiments)]
    plan = run_plan(tasks, jobs=jobs, on_done=on_done, cluster=cluster)
    if plan.interrupted:
        return root, _interrupted_status(plan)
    if not entries:
        print(f"testbed run: no repetition of {root} finished", file=sys.stderr)
        return root, 1
    print(format_set(load_results(root)), flush=True)
    return root, _set_status(plan.finished)


def _repetition_task(experiment: Experiment, topology: Path, topology_text: str, out: Path,
                     settings: dict[str, Any], progress: str, *, announce: bool) -> Task:
    """One repetition as a task of the plan: run it, compute its metrics. ``announce``: print
    what ``testbed run`` prints (runs one at a time; else the scheduler's lines say it)."""
    from testbed.parallel import Outcome, RemoteRun, Task, remote_run
    from testbed.run import RunOptions, execute_run
    from testbed.summary import exit_status, format_summary

    def work() -> Outcome:
        if announce:
            print(f"repetition {progress} (seed {experiment.seed})", flush=True)
        result = execute_run(experiment, topology_text, RunOptions(out=out, **settings))
        if announce:
            print(format_summary(result.summary, result.run_dir), flush=True)
        return finish(result)

    def remote() -> RemoteRun:
        return remote_run(experiment, topology, topology_text, out,
                          time_limit=settings["time_limit"], launcher=settings["launcher"],
                          finish=finish)

    def finish(result: RunResult) -> Outcome:
        status = result.summary["status"]
        if status == "interrupted":
            return Outcome(status, {"exit_status": exit_status(result.summary)})
        figures, failed = _repetition_figures(result)
        return Outcome(status, {"exit_status": exit_status(result.summary),
                                "figures": figures, "analysis_failed": failed})

    return Task(f"{out.name} (seed {experiment.seed})", work, remote)


def _interrupted_status(plan: PlanResult) -> int:
    """128 + the signal that stopped the set (or that stopped the interrupted run)."""
    if plan.signal is not None:
        return 128 + plan.signal
    for finished in plan.finished:
        if finished.outcome.status == "interrupted":
            return int((finished.outcome.value or {}).get("exit_status", 130))
    return 130


def _set_status(finished: Sequence[Finished]) -> int:
    """The first repetition's non-zero status in seed order: its run's exit status, else 1 if
    its analysis failed or it ended without a report."""
    for f in finished:
        value = f.outcome.value or {}
        code = value.get("exit_status", 1) or (1 if value.get("analysis_failed") else 0)
        if code:
            return int(code)
    return 0
