"""``testbed sweep``: run a topology over every combination of parameter values, then tabulate.

    testbed sweep topologies/p2p_vs_cs.yaml --param groups[leecher].count=5,10,20 \\
        --param groups[leecher].choker=tit_for_tat,free_rider --repeat 3

A parameter is a key path of the topology file (docs/topology.md) and a list of values, each
written as YAML (``5``, ``1MiB/s``, ``free_rider``, ``null``, ``[1, 2]``). Paths name mapping
keys with dots and list items with ``[i]``; ``groups[NAME]`` picks the group named NAME. The
override is made on the file's plain YAML tree and the result is checked again by
``testbed.topology`` exactly as a file would be, so every rule (and every error message) of a
topology applies to a swept value. Every combination is expanded before anything starts: a bad
path or value stops the sweep with exit status 2 and no run.

Each combination runs ``--repeat K`` times with seeds s, s+1, …, s+K−1 (s = ``--seed`` or the
topology's), each a normal run directory (``testbed.run.execute_run``) under the sweep
directory. The sweep directory holds ``sweep.json`` (the parameters and every row) and
``sweep.csv`` (the rows), rewritten after each run so that an interrupted sweep keeps what it
measured. ``gather`` rebuilds the table from the run directories alone. ``--jobs J`` runs up
to J of them at once, each in its own process, with the same directories and the same table
(testbed.parallel).

Nothing here imports pandas; ``--analyze`` runs the analysis on each run after it ends.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peer.errors import TestbedError

if TYPE_CHECKING:
    from testbed.experiment import Experiment
    from testbed.parallel import Cluster, Task
    from testbed.topology import Topology

SWEEP_SCHEMA = 1
SWEEP_JSON = "sweep.json"
SWEEP_CSV = "sweep.csv"


class SweepError(TestbedError, ValueError):
    """A sweep that cannot start: a bad ``--param``, a path the topology has not, a bad value."""


# ---------------------------------------------------------------------------------------------
# parameters and key paths


@dataclass(frozen=True, slots=True)
class Param:
    """One swept key path and the values it takes, in order."""

    path: str
    values: tuple[Any, ...]
    texts: tuple[str, ...]
    """The values as written on the command line (for labels and the table)."""


_STEP = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_]*)|\[([^\[\]]+)\]")


def parse_path(path: str) -> list[str | int]:
    """``groups[1].upload.rate`` -> ``["groups", 1, "upload", "rate"]``.

    ``[NAME]`` (not a whole number) stays a string in brackets: ``"[NAME]"``, resolved against
    the ``name`` keys of a list's items by ``set_path``.
    """
    steps: list[str | int] = []
    pos = 0
    while pos < len(path):
        match = _STEP.match(path, pos)
        if match is None:
            raise SweepError(f"bad key path {path!r} at character {pos + 1}: write keys with "
                             "dots and list items as [index] or [name], e.g. groups[1].count")
        key, index = match.groups()
        if key is not None:
            if match.group(0).startswith(".") == (pos == 0):
                raise SweepError(f"bad key path {path!r} at character {pos + 1}: "
                                 "a key follows a '.' (and the path starts with one)")
            steps.append(key)
        else:
            index = index.strip()
            steps.append(int(index) if index.isdigit() else f"[{index}]")
        pos = match.end()
    if not steps:
        raise SweepError("empty key path")
    return steps


def _split_values(text: str) -> list[str]:
    """Split on commas that are not inside [...] or {...} (a value may be a YAML list)."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts]


def parse_param(text: str) -> Param:
    """``PATH=V1,V2,...`` -> Param; each value is read as YAML (``5`` is a number)."""
    import yaml

    path, sep, values = text.partition("=")
    path = path.strip()
    if not sep or not path:
        raise SweepError(f"--param {text!r}: write PATH=V1,V2,..., e.g. groups[1].count=5,10")
    parse_path(path)
    texts = _split_values(values)
    if any(not t for t in texts):
        raise SweepError(f"--param {text!r}: empty value (values are separated by commas)")
    parsed = []
    for t in texts:
        try:
            parsed.append(yaml.safe_load(t))
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            raise SweepError(f"--param {path}: cannot read value {t!r}: {problem}") from None
    if len(set(texts)) != len(texts):
        raise SweepError(f"--param {path}: a value is repeated ({', '.join(texts)})")
    return Param(path=path, values=tuple(parsed), texts=tuple(texts))


def set_path(tree: Any, path: str, value: Any) -> None:
    """Set ``path`` in the plain YAML ``tree`` (in place); SweepError names what is missing.

    A missing last key is added (``protocol.regular_slots`` when the file leaves it at its
    default); so is a missing mapping on the way (``protocol`` itself). Whether the key is a
    topology key at all is for the topology checker to say, afterwards.
    """
    steps = parse_path(path)
    node = tree
    where = ""
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        if isinstance(step, int) or step.startswith("["):
            if not isinstance(node, list):
                raise SweepError(f"--param {path}: {where or 'the top level'} is "
                                 f"{_what(node)}, not a list")
            if isinstance(step, int):
                if step >= len(node):
                    raise SweepError(f"--param {path}: {where} has {len(node)} items "
                                     f"({where}[0] to {where}[{len(node) - 1}])")
                key: Any = step
            else:
                name = step[1:-1]
                found = [k for k, item in enumerate(node)
                         if isinstance(item, dict) and item.get("name") == name]
                if not found:
                    names = [str(item.get("name")) for item in node if isinstance(item, dict)]
                    raise SweepError(f"--param {path}: {where} has no item named {name!r} "
                                     f"(names: {', '.join(names) or 'none'})")
                key = found[0]
            where = f"{where}[{key}]"
        else:
            if not isinstance(node, dict):
                raise SweepError(f"--param {path}: {where or 'the top level'} is "
                                 f"{_what(node)}, not a mapping with key '{step}'")
            key = step
            where = f"{where}.{key}" if where else key
            if not last and node.get(key) is None:
                node[key] = {}  # a section the file leaves out (or writes empty)
        if last:
            node[key] = value
        else:
            node = node[key]


def _what(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"the value {value!r}"


def override(topology: Topology, overrides: Mapping[str, Any]) -> Topology:
    """``topology`` with ``overrides`` ({key path: value}) applied, checked like a file.

    The returned topology's ``text`` is the overridden YAML (with a comment naming the
    overrides): what the run directory records as its ``topology.yaml``, and what reproduces
    the run with ``testbed run``.
    """
    import yaml

    from testbed.topology import TopologyError, parse_topology

    tree = yaml.safe_load(topology.text)
    for path, value in overrides.items():
        set_path(tree, path, value)
    what = ", ".join(f"{p}={label_value(v)}" for p, v in overrides.items())
    header = (f"# {topology.file} with {what}\n" if overrides else "")
    text = header + yaml.safe_dump(tree, sort_keys=False, default_flow_style=None)
    try:
        return parse_topology(text, file=topology.file, default_name=topology.name)
    except TopologyError as exc:
        # The line would point into the regenerated text, not the user's file: leave it out.
        key = f"{exc.key}: " if exc.key else ""
        raise SweepError(f"{topology.file} with {what or 'no override'}: "
                         f"{key}{exc.message}") from None


def label_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------
# the plan


@dataclass(frozen=True, slots=True)
class Point:
    """One run of the sweep: a combination of values, a repetition and its seed."""

    index: int
    values: tuple[tuple[str, Any], ...]
    """(path, value) in the order of the ``--param`` options."""
    repetition: int
    seed: int
    dirname: str
    experiment: Experiment
    topology_text: str


def _dirname(index: int, values: Sequence[tuple[str, Any]], seed: int) -> str:
    parts = [f"{index:03d}"]
    for path, value in values:
        last = parse_path(path)[-1]
        key = last.strip("[]") if isinstance(last, str) else str(last)
        parts.append(f"{key}={label_value(value)}")
    parts.append(f"s{seed}")
    name = "-".join(parts)
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name)[:120]


def plan_sweep(topology: Topology, params: Sequence[Param], *, repeat: int = 1,
               seed: int | None = None) -> list[Point]:
    """Every run of the sweep, each expanded and checked: errors come before any run starts."""
    from testbed.topology import expand

    if repeat < 1:
        raise SweepError(f"--repeat must be at least 1, got {repeat}")
    paths = [p.path for p in params]
    if len(set(paths)) != len(paths):
        raise SweepError(f"a key path is swept twice: {', '.join(paths)}")
    base_seed = topology.seed if seed is None else seed
    points: list[Point] = []
    for combo in itertools.product(*(p.values for p in params)):
        values = tuple(zip(paths, combo, strict=True))
        swept = override(topology, dict(values))
        for rep in range(repeat):
            run_seed = base_seed + rep
            experiment = expand(swept, run_seed)
            index = len(points)
            points.append(Point(index=index, values=values, repetition=rep, seed=run_seed,
                                dirname=_dirname(index, values, run_seed),
                                experiment=experiment, topology_text=swept.text))
    return points


# ---------------------------------------------------------------------------------------------
# the table

SUMMARY_COLUMNS = ("status", "duration", "leechers", "completed", "makespan", "d_p2p", "d_cs",
                   "makespan_over_d_p2p", "makespan_over_d_cs", "completion_median",
                   "completion_max", "hash_failures", "crashes", "cpu_saturated",
                   "host_cpu_mean", "host_cpu_p95")
ANALYSIS_COLUMNS = ("completion_mean", "completion_p90", "efficiency", "jain_share_ratio",
                    "jain_rate_per_capacity")


def _ratio(a: Any, b: Any) -> float | None:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or not b:
        return None
    return round(a / b, 4)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise SweepError(f"{path}: cannot read: {exc}") from None


def run_row(run_dir: Path) -> dict[str, Any]:
    """The headline figures of one run directory, from summary.json (and analysis.json when
    ``testbed analyze`` wrote one). A run with no summary.json has status ``missing``."""
    summary = _read_json(run_dir / "summary.json")
    row: dict[str, Any] = dict.fromkeys(SUMMARY_COLUMNS)
    row["run_dir"] = str(run_dir)
    if summary is None:
        row["status"] = "missing"
        return row
    bounds = summary.get("bounds") or {}
    stats = summary.get("completion_stats") or {}
    cpu = summary.get("cpu") or {}
    makespan = summary.get("makespan")
    row.update(status=summary.get("status"), duration=summary.get("duration"),
               leechers=summary.get("leechers"), completed=summary.get("completed"),
               makespan=makespan, d_p2p=bounds.get("d_p2p"), d_cs=bounds.get("d_cs"),
               makespan_over_d_p2p=_ratio(makespan, bounds.get("d_p2p")),
               makespan_over_d_cs=_ratio(makespan, bounds.get("d_cs")),
               completion_median=stats.get("median"), completion_max=stats.get("max"),
               hash_failures=summary.get("hash_failures"),
               crashes=len(summary.get("crashes") or {}),
               cpu_saturated=bool(cpu.get("saturated")),
               host_cpu_mean=cpu.get("host_mean"), host_cpu_p95=cpu.get("host_p95"))
    analysis = _read_json(run_dir / "analysis.json")
    if isinstance(analysis, dict):
        everyone = (analysis.get("completion") or {}).get("all") or {}
        fairness = analysis.get("fairness") or {}
        row.update(completion_mean=everyone.get("mean"), completion_p90=everyone.get("p90"),
                   efficiency=(analysis.get("efficiency") or {}).get("efficiency"),
                   jain_share_ratio=fairness.get("jain_share_ratio"),
                   jain_rate_per_capacity=fairness.get("jain_rate_per_capacity"))
    return row


def gather(sweep_dir: Path) -> list[dict[str, Any]]:
    """The sweep's table, rebuilt from ``sweep.json``'s plan and each run directory."""
    meta = _read_json(sweep_dir / SWEEP_JSON)
    if not isinstance(meta, dict) or "runs" not in meta:
        raise SweepError(f"{sweep_dir}: not a sweep directory (no {SWEEP_JSON} with 'runs')")
    return [table_row(entry, sweep_dir / entry["dir"]) for entry in meta["runs"]]


def table_row(entry: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
    """One row: the run's parameter values, repetition and seed, then its figures."""
    row = {**entry["params"], "repetition": entry["repetition"], "seed": entry["seed"]}
    figures = run_row(run_dir) if run_dir.is_dir() else {**dict.fromkeys(SUMMARY_COLUMNS),
                                                          "status": "not run",
                                                          "run_dir": str(run_dir)}
    row.update(figures)
    return row


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    return columns


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    columns = _columns(rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else
                         json.dumps(row[c]) if isinstance(row[c], dict | list) else row[c]
                         for c in columns])
    return out.getvalue()


def format_table(rows: Sequence[Mapping[str, Any]], params: Sequence[str]) -> str:
    """A plain-text table of the key columns (the CSV has them all)."""
    keep = [*params, "seed", "status", "completed", "leechers", "makespan", "d_p2p", "d_cs",
            "makespan_over_d_p2p", "makespan_over_d_cs", "cpu_saturated"]
    heads = {"makespan_over_d_p2p": "ms/D_p2p", "makespan_over_d_cs": "ms/D_cs",
             "cpu_saturated": "cpu_sat"}
    heads.update({p: p.rsplit(".", 1)[-1] for p in params})
    cells = [[heads.get(c, c) for c in keep]]
    for row in rows:
        cells.append([_cell(row.get(c)) for c in keep])
    widths = [max(len(r[i]) for r in cells) for i in range(len(keep))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True))
                     for r in cells)


def write_table(sweep_dir: Path, header: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]
                ) -> None:
    from testbed.rundir import write_json_atomic

    write_json_atomic(sweep_dir / SWEEP_JSON, {**header, "rows": list(rows)})
    tmp = sweep_dir / f".{SWEEP_CSV}.tmp"
    tmp.write_text(to_csv(rows))
    tmp.replace(sweep_dir / SWEEP_CSV)


# ---------------------------------------------------------------------------------------------
# running


def create_sweep_dir(name: str, *, out: Path | None, runs_root: Path) -> Path:
    """``out`` (must not exist) or ``runs_root/<name>-sweep-<YYYYmmdd-HHMMSS>[-k]``, absolute."""
    from testbed.rundir import create_fresh_dir, timestamp

    return create_fresh_dir(f"{name}-sweep-{timestamp()}", out=out, runs_root=runs_root,
                            what="sweep")


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepResult:
    sweep_dir: Path
    rows: list[dict[str, Any]]
    interrupted: bool


def run_sweep(topology: Topology, params: Sequence[Param], *, repeat: int = 1,
              seed: int | None = None, out: Path | None = None,
              runs_root: Path = Path("runs"), time_limit: float | None = None,
              launcher: str = "fork", quiet: bool = False, analyze: bool = False,
              command: Sequence[str] = (), echo: Any = print, jobs: int = 1,
              cluster: Cluster | None = None) -> SweepResult:
    """Plan (checking everything), then run every point with ``testbed.run.execute_run``, up to
    ``jobs`` at once (testbed.parallel), or on ``cluster``'s workers (testbed.cluster).

    ``echo`` gets one line per run start and end (``print`` by default; a no-op to be silent).
    Stops starting runs, keeping what was measured, when a run is interrupted (Ctrl-C /
    SIGTERM). The table keeps plan order whatever order the runs finish in.
    """
    from testbed.parallel import Finished, run_plan

    points = plan_sweep(topology, params, repeat=repeat, seed=seed)
    sweep_dir = create_sweep_dir(topology.name, out=out, runs_root=runs_root)
    header: dict[str, Any] = {
        "schema": SWEEP_SCHEMA, "topology": topology.file, "name": topology.name,
        "params": {p.path: list(p.values) for p in params}, "repeat": repeat,
        "seeds": sorted({pt.seed for pt in points}), "command": list(command),
        "runs": [{"dir": pt.dirname, "params": dict(pt.values), "repetition": pt.repetition,
                  "seed": pt.seed} for pt in points],
    }
    (sweep_dir / "topology.yaml").write_text(topology.text)
    done: dict[int, dict[str, Any]] = {}
    write_table(sweep_dir, header, [])

    def on_done(finished: Finished) -> None:
        entry = header["runs"][finished.index]
        row = done[finished.index] = table_row(entry, sweep_dir / entry["dir"])
        write_table(sweep_dir, header, [done[i] for i in sorted(done)])
        if jobs == 1 and cluster is None:  # else the scheduler's one line per run says it
            echo(f"    {row['status']}: makespan {_cell(row['makespan']) or '-'} s, "
                 f"D_p2p {_cell(row['d_p2p'])} s, D_cs {_cell(row['d_cs'])} s"
                 + (", HOST CPU SATURATED" if row["cpu_saturated"] else ""))

    settings = {"time_limit": time_limit, "launcher": launcher, "quiet": quiet or jobs > 1,
                "command": tuple(command), "topology_file": topology.file}
    tasks = [_sweep_task(pt, len(points), sweep_dir, settings, analyze, echo,
                         announce=jobs == 1 and cluster is None) for pt in points]
    plan = run_plan(tasks, jobs=jobs, on_done=on_done, echo=echo, cluster=cluster)
    return SweepResult(sweep_dir=sweep_dir, rows=[done[i] for i in sorted(done)],
                       interrupted=plan.interrupted)


def _sweep_task(pt: Point, total: int, sweep_dir: Path, settings: Mapping[str, Any],
                analyze: bool, echo: Any, *, announce: bool) -> Task:
    """One point as a task of the plan: run it (and analyse it), report its status.
    ``announce``: print the start line (runs one at a time; else the scheduler prints it)."""
    from testbed.parallel import Outcome, RemoteRun, Task, remote_run
    from testbed.run import RunOptions, RunResult, execute_run

    what = ", ".join(f"{p}={label_value(v)}" for p, v in pt.values) or "as given"

    def finish(result: RunResult) -> Outcome:
        status = str(result.summary.get("status"))
        if analyze and status != "interrupted":
            _analyze(result.run_dir, echo)
        return Outcome(status)

    def work() -> Outcome:
        if announce:
            echo(f"[{pt.index + 1}/{total}] {what}, seed {pt.seed}")
        options = RunOptions(out=sweep_dir / pt.dirname, time_limit=settings["time_limit"],
                             quiet=settings["quiet"], launcher=settings["launcher"],
                             command=(*settings["command"], f"[sweep run {pt.index}]"))
        return finish(execute_run(pt.experiment, pt.topology_text, options))

    def remote() -> RemoteRun:
        return remote_run(pt.experiment, settings["topology_file"], pt.topology_text,
                          sweep_dir / pt.dirname, time_limit=settings["time_limit"],
                          launcher=settings["launcher"], finish=finish)

    return Task(f"{what}, seed {pt.seed}", work, remote)


def _analyze(run_dir: Path, echo: Any) -> None:
    try:
        from analysis.report import write_analysis
    except ImportError as exc:
        echo(f"    not analysing: the analysis is not available ({exc})")
        return
    try:
        write_analysis(run_dir, figures=False)
    except TestbedError as exc:
        echo(f"    analysis: {exc}")


# ---------------------------------------------------------------------------------------------
# the command


def add_sweep_parser(sub: Any, seconds: Any, seed_type: Any) -> argparse.ArgumentParser:
    """The ``sweep`` subcommand's arguments (the CLI's own number parsers are passed in)."""
    from testbed.parallel import add_cluster_arguments, add_jobs_argument

    p: argparse.ArgumentParser = sub.add_parser(
        "sweep", help="run a topology over parameter values and tabulate",
        description="Run a topology for every combination of parameter values "
        "(and repetitions) and gather one table (docs/analysis.md).")
    p.add_argument("topology", type=Path, help="a topology YAML file (docs/topology.md)")
    p.add_argument("--param", action="append", default=[], metavar="PATH=V1,V2,...",
                   help="a key path of the topology and its values, e.g. "
                   "groups[1].count=5,10,20 or groups[leecher].choker=tit_for_tat,free_rider "
                   "(repeatable: every combination runs)")
    p.add_argument("--repeat", type=int, default=1, metavar="K",
                   help="runs per combination, with seeds s..s+K-1 (default 1)")
    p.add_argument("--seed", type=seed_type, help="first seed (default: the topology's)")
    p.add_argument("--out", type=Path, help="the sweep directory to create (must not exist)")
    p.add_argument("--runs", type=Path, default=Path("runs"), metavar="DIR",
                   help="where the sweep directory goes without --out (default: runs)")
    p.add_argument("--time-limit", type=seconds, metavar="S",
                   help="end each run after S seconds (overrides the topology's)")
    p.add_argument("--launcher", choices=("fork", "local"), default="fork")
    p.add_argument("--quiet", action="store_true", help="no live progress during each run")
    p.add_argument("--analyze", action="store_true",
                   help="analyse each run (adds efficiency and fairness columns)")
    add_jobs_argument(p, "runs")
    add_cluster_arguments(p, "runs")
    return p


def cli_sweep(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``testbed sweep``: 0 every run completed cleanly; 1 otherwise; 130 interrupted; 2 bad
    input (SweepError / TopologyError raised before anything starts)."""
    from testbed.parallel import cluster_of
    from testbed.topology import load_topology

    cluster = cluster_of(args)
    if not args.param:
        raise SweepError("give at least one --param PATH=V1,V2,... (nothing to sweep)")
    params = [parse_param(text) for text in args.param]
    topology = load_topology(args.topology)
    result = run_sweep(topology, params, repeat=args.repeat, seed=args.seed, out=args.out,
                       runs_root=args.runs, time_limit=args.time_limit, launcher=args.launcher,
                       quiet=args.quiet, analyze=args.analyze, command=("testbed", *argv),
                       jobs=args.jobs, cluster=cluster)
    print(f"\nsweep {result.sweep_dir}: {len(result.rows)} runs"
          + (" (interrupted)" if result.interrupted else ""))
    print(format_table(result.rows, [p.path for p in params]))
    print(f"table: {result.sweep_dir / SWEEP_CSV}, {result.sweep_dir / SWEEP_JSON}")
    from testbed.cli import report_at_end  # report.html; a failure is one warning line

    report_at_end(result.sweep_dir)
    if any(r["cpu_saturated"] for r in result.rows):
        print("WARNING: the host CPU was saturated during some runs (cpu_sat): their times "
              "reflect the machine as much as the protocol", file=sys.stderr)
    if result.interrupted:
        return 130
    clean = all(r["status"] == "completed" and not r["crashes"] for r in result.rows)
    return 0 if clean else 1
