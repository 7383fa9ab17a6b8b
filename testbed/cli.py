"""The ``testbed`` command: ``run``, ``validate``, ``analyze``, ``report``, ``check``, ``compare``
and ``sweep``.

Bad input (a topology, an existing --out directory, bad arguments) prints one line on stderr and
exits with status 2, and nothing starts. ``testbed run`` exits 0 when the run completed with no
crashed process, 1 when it timed out, failed or a process crashed, and 130 / 143 when it was
interrupted by SIGINT / SIGTERM. pandas is imported only by ``analyze`` (and after a run), so
``testbed run`` starts quickly.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from peer.errors import TestbedError

if TYPE_CHECKING:
    from testbed.regress import Comparison

PROG = "testbed"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, no usage block: the house rule for every CLI.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds > 0")
    return value


def _seed(text: str) -> int:
    from testbed.limits import seed_problem  # stdlib-only

    try:
        value = int(text)
    except ValueError:
        shown = repr(text) if len(text) <= 40 else f"'{text[:20]}...' ({len(text)} characters)"
        raise argparse.ArgumentTypeError(f"seed {shown} is not a whole number") from None
    problem = seed_problem(value)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"seed {problem}")
    return value


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a significance level in (0, 1)")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="A real BitTorrent swarm on one machine.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_run_parser(sub)

    validate = sub.add_parser("validate", help="check topology files without running anything")
    validate.add_argument("topologies", type=Path, nargs="+", metavar="TOPOLOGY")

    analyze = sub.add_parser("analyze", help="analyse a run directory")
    analyze.add_argument("run_dir", type=Path, metavar="RUN")
    analyze.add_argument("--json", action="store_true", help="machine-readable output")

    _add_regression_parsers(sub)

    report = sub.add_parser("report", help="write report.html for a run, results set or sweep",
                            description="One self-contained HTML page (docs/analysis.md): "
                            "PATH/report.html.")
    report.add_argument("path", type=Path, metavar="PATH",
                        help="a run directory, a results set (--repeat) or a sweep directory")
    report.add_argument("--expect", type=Path, metavar="FILE",
                        help="a results set: add the check verdicts against this file")

    from testbed.sweep import add_sweep_parser  # stdlib-only at import: start-up stays quick

    add_sweep_parser(sub, _seconds, _seed)
    return parser


def _add_run_parser(sub: Any) -> None:
    from testbed.parallel import (  # stdlib-only at import
        add_cluster_arguments,
        add_jobs_argument,
        count_argument,
    )

    run = sub.add_parser("run", help="run a topology and write a run directory",
                         description="Run a topology: tracker and peer processes over loopback; "
                         "writes runs/<name>-<timestamp>/ (docs/run-directory.md).")
    run.add_argument("topology", type=Path, help="a topology YAML file (docs/topology.md)")
    run.add_argument("--out", type=Path, help="the run directory to create (must not exist)")
    run.add_argument("--runs", type=Path, default=Path("runs"), metavar="DIR",
                     help="where run directories go without --out (default: runs)")
    run.add_argument("--seed", type=_seed, help="the run's random seed (default: the topology's)")
    run.add_argument("--time-limit", type=_seconds, metavar="S",
                     help="end the run after S seconds (overrides the topology's)")
    run.add_argument("--quiet", action="store_true", help="no progress display")
    run.add_argument("--no-analyze", action="store_true",
                     help="do not run the analysis after the run")
    run.add_argument("--launcher", choices=("fork", "local"), default="fork",
                     help="fork: peers are forked from one pre-imported process (fast start-up, "
                     "default); local: one fresh interpreter per process")
    run.add_argument("--repeat", type=count_argument("repetitions"), metavar="K",
                     help="run K times with seeds s, s+1, ... into one results set "
                     "(<name>-<stamp>-xK/rep-<i>/ and results.json; docs/regression.md)")
    add_jobs_argument(run, "repetitions (with --repeat)")
    add_cluster_arguments(run, "repetitions (with --repeat), or without --repeat the swarm's "
                          "peers, split across the workers")
    run.add_argument("--tracker-host", metavar="HOST",
                     help="with --cluster and no --repeat: the address the workers' peers reach "
                     "the tracker at (default: this machine's address towards the scheduler)")


def _add_regression_parsers(sub: Any) -> None:
    check = sub.add_parser("check", help="hold a results set to an expectations file",
                           description="Exit 0 pass, 1 regression, 2 usage error "
                           "(docs/regression.md).")
    check.add_argument("results", type=Path, metavar="RESULTS",
                       help="a results set (testbed run --repeat) or a run directory")
    check.add_argument("--expect", type=Path, required=True, metavar="FILE",
                       help="an expectations YAML file")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    _add_verdict_files(check)

    compare = sub.add_parser("compare", help="compare a candidate results set to a baseline",
                             description="Exit 0 pass, 1 regression, 2 usage error "
                             "(docs/regression.md).")
    compare.add_argument("baseline", type=Path, metavar="BASELINE")
    compare.add_argument("candidate", type=Path, metavar="CANDIDATE")
    compare.add_argument("--json", action="store_true", help="machine-readable output")
    compare.add_argument("--alpha", type=_alpha, default=0.05,
                         help="significance level of the one-sided rank test (default 0.05)")
    compare.add_argument("--tolerance", metavar="T",
                         help="practical tolerance for every metric: 10%% (of the baseline "
                         "median) or a number in the metric's unit (default: per metric)")
    _add_verdict_files(compare)


def _add_verdict_files(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--junit", type=Path, metavar="FILE",
                        help="also write the verdicts as JUnit XML (one test case per metric)")
    parser.add_argument("--html", type=Path, metavar="FILE",
                        help="also write the verdict table and both sides' distributions as "
                        "one HTML page")


def _write_verdict_files(args: argparse.Namespace, result: Comparison) -> int:
    """``--junit`` / ``--html``: 0, or 2 after one line when a file cannot be written."""
    from testbed.regress.report import junit_xml

    files: list[tuple[Path, Callable[[], str]]] = []
    if args.junit is not None:
        files.append((args.junit, lambda: junit_xml(result)))
    if args.html is not None:
        try:
            from analysis.html import comparison_html  # pandas, matplotlib: only when asked
        except ImportError as exc:
            return _error(f"--html: the analysis is not available ({exc})")
        files.append((args.html, lambda: comparison_html(result)))
    for path, make in files:
        try:
            path.write_text(make(), encoding="utf-8")
        except OSError as exc:
            return _error(f"cannot write {path}: {exc.strerror or exc}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    try:
        from analysis.html import cli_report
    except ImportError as exc:
        return _error(f"the analysis is not available ({exc})")
    return cli_report(args.path, args.expect)


def report_at_end(path: Path) -> None:
    """report.html at the end of a run, a results set or a sweep; never fails the run."""
    try:
        from analysis.html import report_quietly
    except ImportError as exc:
        print(f"{PROG}: warning: no report.html: {exc}", file=sys.stderr)
        return
    report_quietly(path, PROG)


def _error(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 2


def cmd_validate(paths: Sequence[Path]) -> int:
    from testbed.topology import load_experiment

    bad = 0
    for path in paths:
        try:
            load_experiment(path)
        except TestbedError as exc:
            print(str(exc), file=sys.stderr)
            bad += 1
        else:
            print(f"ok {path}")
    return 2 if bad else 0


def _analysis() -> Callable[[Path, bool], int]:
    """``analysis.cli_analyze``, imported on demand (pandas is slow to import)."""
    try:
        from analysis import cli_analyze
    except ImportError as exc:
        raise ImportError(f"the analysis is not available ({exc})") from None
    return cli_analyze


def cmd_analyze(run_dir: Path, as_json: bool) -> int:
    try:
        cli_analyze = _analysis()
    except ImportError as exc:
        return _error(str(exc))
    return int(cli_analyze(run_dir, as_json))


def cmd_regress(args: argparse.Namespace) -> int:
    """``check`` and ``compare``: the report on stdout, exit 0 / 1 (regression) / 2."""
    import json

    from testbed import regress

    if args.command == "check":
        expect = regress.load_expectations(args.expect)
        result = regress.check(regress.load_results(args.results), expect)
    else:
        tolerance = None
        if args.tolerance is not None:
            try:
                tolerance = regress.parse_tolerance(args.tolerance)
            except ValueError as exc:
                return _error(f"--tolerance: {exc}")
        result = regress.compare(regress.load_results(args.baseline),
                                 regress.load_results(args.candidate), alpha=args.alpha,
                                 tolerance=tolerance)
    print(json.dumps(result.to_json()) if args.json else regress.format_report(result))
    return _write_verdict_files(args, result) or result.exit_status


def cmd_run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from testbed.parallel import cluster_of

    cluster = cluster_of(args)
    if args.repeat is not None:
        from testbed.regress import run_repeated

        root, status = run_repeated(args.topology, repeat=args.repeat, seed=args.seed,
                                 out=args.out, runs_root=args.runs, time_limit=args.time_limit,
                                 quiet=args.quiet, launcher=args.launcher, command=(PROG, *argv),
                                 jobs=args.jobs, cluster=cluster)
        if status not in (130, 143):  # interrupted: nothing more is written, as before
            report_at_end(root)
        return status
    if cluster is not None and args.runs_per_worker is not None:
        return _error("--runs-per-worker is for whole runs (--repeat K): one swarm is split "
                      "across the workers")
    if args.tracker_host is not None and (cluster is None or args.repeat is not None):
        return _error("--tracker-host is for one swarm split across a cluster: give --cluster "
                      "without --repeat")
    if args.jobs != 1:
        return _error("--jobs runs repetitions at once: give --repeat K too")
    from testbed.run import RunOptions, execute_run
    from testbed.summary import exit_status, format_summary
    from testbed.topology import load_experiment

    options = RunOptions(out=args.out, runs_root=args.runs, time_limit=args.time_limit,
                         quiet=args.quiet, launcher=args.launcher,
                         command=(PROG, *argv))
    if cluster is not None:
        from testbed.cluster_swarm import run_split_swarm

        result = run_split_swarm(args.topology, args.seed, cluster.address, options,
                                 args.tracker_host)
    else:
        experiment = load_experiment(args.topology, seed=args.seed)
        try:
            text = args.topology.read_text()
        except OSError as exc:  # load_experiment read it a moment ago, but be clear if not
            raise TestbedError(f"{args.topology}: cannot read: {exc.strerror}") from None
        result = execute_run(experiment, text, options)
    print(format_summary(result.summary, result.run_dir), flush=True)
    status = exit_status(result.summary)
    if args.no_analyze or result.summary["status"] == "interrupted":
        return status
    try:
        cli_analyze = _analysis()
    except ImportError as exc:
        print(f"{PROG}: not analysing the run: {exc}", file=sys.stderr)
        return status
    try:
        analyzed = int(cli_analyze(result.run_dir, False))
    except TestbedError as exc:
        print(f"{PROG}: analysis: {exc}", file=sys.stderr)
        analyzed = 2
    report_at_end(result.run_dir)
    return status or (1 if analyzed else 0)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "validate":
            return cmd_validate(args.topologies)
        if args.command == "analyze":
            return cmd_analyze(args.run_dir, args.json)
        if args.command in ("check", "compare"):
            return cmd_regress(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "sweep":
            from testbed.sweep import cli_sweep

            return cli_sweep(args, argv)
        return cmd_run(args, argv)
    except TestbedError as exc:
        return _error(str(exc))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
