"""Plain-text reports: a results set's metrics, and a verdict table with its outcome; the same
verdicts as JUnit XML for CI systems' test views (``junit_xml``)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

from testbed.regress.metrics import metric_of
from testbed.regress.stats import summarize

if TYPE_CHECKING:
    from testbed.regress.results import ResultsSet
    from testbed.regress.verdicts import Comparison

__all__ = ["format_report", "format_set", "junit_xml"]


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _side(d: dict[str, Any]) -> str:
    if "bound" in d:
        return str(d["bound"])
    if "true" in d:
        return f"{d['true']}/{d['n']} true"
    if not d.get("n"):
        return "–"
    if d["n"] == 1:
        return _fmt(d["median"])
    return f"{_fmt(d['median'])} [{_fmt(d['min'])}–{_fmt(d['max'])}]"


def _grid(title: str, rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [title] if title else []
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    lines.extend("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                 for r in rows)
    return "\n".join(lines)


def format_set(rs: ResultsSet) -> str:
    """A results set's metrics: median [min – max] over the repetitions."""
    rows = []
    for name in rs.metric_names:
        metric = metric_of(name)
        if metric is not None and metric.direction == "bool":
            flags = rs.flags(name)
            rows.append([name, f"{sum(flags)}/{len(flags)} true", "", ""])
            continue
        d = summarize(rs.values(name))
        rows.append([name, _fmt(d["median"]), f"[{_fmt(d['min'])} – {_fmt(d['max'])}]",
                     f"n={d['n']}"])
    head = f"results set {rs.path}: {len(rs.repetitions)} repetition(s)"
    if rs.saturated:
        head += f"; WARNING: host CPU saturated in {rs.saturated} of them"
    return _grid(head, rows, ["metric", "median", "range", ""])


def format_report(result: Comparison) -> str:
    """The table metric | baseline | candidate | change | verdict, warnings, and the outcome."""
    rows = []
    for r in result.rows:
        change = "" if r.change is None else f"{r.change * 100:+.1f}%"
        verdict = r.verdict.upper() if r.regression else r.verdict
        detail = []
        if r.p_value is not None:
            detail.append(f"p={r.p_value:.3g}")
        if r.tolerance is not None and r.kind == "baseline":
            detail.append(f"tol {r.tolerance}")
        if r.note:
            detail.append(r.note)
        rows.append([r.metric, _side(r.baseline), _side(r.candidate), change, verdict,
                     ", ".join(detail)])
    title = (f"{result.command}: candidate {result.candidate}"
             + (f" against baseline {result.baseline}" if result.baseline else "")
             + f" (one-sided Mann-Whitney U, alpha {result.alpha:g})")
    out = [_grid(title, rows, ["metric", "baseline/bound", "candidate", "change", "verdict", ""])]
    out.extend(f"WARNING: {w}" for w in result.warnings)
    bad = [r.metric for r in result.rows if r.regression]
    out.append(f"REGRESSION: {', '.join(bad)}" if bad else "pass: no regression")
    return "\n".join(out)


def _verdict_message(r: Any) -> str:
    """One line with the verdict's numbers: what the failure message of a test case says."""
    parts = [f"{r.metric}: {r.verdict}",
             f"{'bound' if r.kind == 'bound' else 'baseline'} {_side(r.baseline)}",
             f"candidate {_side(r.candidate)}"]
    if r.change is not None:
        parts.append(f"change {r.change * 100:+.1f}%")
    if r.p_value is not None:
        parts.append(f"p={r.p_value:.3g}")
    if r.tolerance is not None and r.kind == "baseline":
        parts.append(f"tolerance {r.tolerance}")
    if r.note:
        parts.append(r.note)
    return "; ".join(parts)


def junit_xml(result: Comparison) -> str:
    """The verdicts as JUnit XML: one ``testsuite`` (the command), one ``testcase`` per metric;
    a regression is a ``failure`` whose message has the verdict's numbers, a metric with no
    baseline value (``n/a``) is ``skipped``; the warnings go to ``system-out``."""
    failures = sum(r.regression for r in result.rows)
    skipped = sum(r.verdict == "n/a" for r in result.rows)
    suite = ET.Element("testsuite", name=f"testbed {result.command}",
                       tests=str(len(result.rows)), failures=str(failures), errors="0",
                       skipped=str(skipped))
    props = ET.SubElement(suite, "properties")
    for name, value in (("candidate", result.candidate), ("baseline", result.baseline),
                        ("alpha", f"{result.alpha:g}")):
        if value is not None:
            ET.SubElement(props, "property", name=name, value=str(value))
    for r in result.rows:
        case = ET.SubElement(suite, "testcase", name=r.metric,
                             classname=f"testbed.{result.command}", time="0")
        message = _verdict_message(r)
        if r.regression:
            failure = ET.SubElement(case, "failure", message=message, type=r.verdict)
            failure.text = message
        elif r.verdict == "n/a":
            ET.SubElement(case, "skipped", message=message)
        else:
            ET.SubElement(case, "system-out").text = message
    if result.warnings:
        ET.SubElement(suite, "system-out").text = "\n".join(f"WARNING: {w}"
                                                             for w in result.warnings)
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, "unicode") + "\n"
