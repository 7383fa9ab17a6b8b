"""One self-contained HTML page (Jinja2 templates, figures as inline SVG, no JavaScript, no
network) for a run directory, a results set, a sweep directory, or a comparison.

    from analysis.html import write_report
    write_report(Path("runs/ci_small-20261130-101500"))     # -> .../report.html

``testbed report PATH`` calls ``cli_report``; ``testbed run``, ``--repeat`` and ``sweep`` write
the page at the end (``report_quietly``: a report failure never fails a run).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from analysis.html.run_page import REPORT, write_run_report
from analysis.html.set_page import comparison_html, write_set_report
from analysis.html.sweep_page import write_sweep_report
from peer.errors import TestbedError

__all__ = ["REPORT", "cli_report", "comparison_html", "report_kind", "report_quietly",
           "write_report"]

Kind = Literal["run", "results_set", "sweep"]


class ReportError(TestbedError):
    """A path that is none of a run directory, a results set and a sweep directory."""


def report_kind(path: Path) -> Kind:
    """Which page a directory gets: sweep.json, results.json, else experiment.json (a run)."""
    if not path.is_dir():
        raise ReportError(f"{path}: no such directory")
    if (path / "sweep.json").exists():
        return "sweep"
    if (path / "results.json").exists():
        return "results_set"
    if (path / "experiment.json").exists():
        return "run"
    raise ReportError(f"{path}: not a run directory (experiment.json), a results set "
                      "(results.json) or a sweep directory (sweep.json)")


def write_report(path: Path, expect: Path | None = None) -> Path:
    """Write ``PATH/report.html`` for whichever kind of directory ``path`` is; returns it."""
    kind = report_kind(path)
    if expect is not None and kind != "results_set":
        raise ReportError(f"--expect applies to a results set; {path} is a {kind} directory")
    if kind == "sweep":
        return write_sweep_report(path)
    if kind == "results_set":
        return write_set_report(path, expect)
    return write_run_report(path)


def cli_report(path: Path, expect: Path | None = None) -> int:
    """``testbed report PATH [--expect FILE]``: 0 and the page's path, or 2 and one line."""
    try:
        out = write_report(path, expect)
    except TestbedError as exc:
        print(f"testbed report: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"testbed report: {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"report: {out}")
    return 0


def report_quietly(path: Path, what: str = "testbed") -> Path | None:
    """Write the page at the end of a run, a results set or a sweep: any failure is one
    warning line on stderr and None; the results are never touched."""
    try:
        out = write_report(path)
    except Exception as exc:  # a report bug must not fail or lose a run
        detail = str(exc) if isinstance(exc, TestbedError | OSError) else repr(exc)
        print(f"{what}: warning: no report.html for {path}: {detail}", file=sys.stderr)
        return None
    print(f"report: {out}", flush=True)
    return out
