"""JUnit XML of check and compare verdicts (parsed back), and the report's failure rules:
``testbed report`` on a wrong path is one line and exit 2; a report that fails at the end of a
run is one warning line, never an exception."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from testbed.regress import Repetition, ResultsSet, check, compare, parse_expectations
from testbed.regress.report import junit_xml


def results(path: str, makespans: list[float], share: list[float]) -> ResultsSet:
    reps = tuple(Repetition(i, 1 + i, f"rep-{i}", "completed", False,
                            {"all_complete": True, "makespan": m, "share_ratio": s})
                 for i, (m, s) in enumerate(zip(makespans, share, strict=True)))
    return ResultsSet(Path(path), "x", reps)


def cases(xml: str) -> dict[str, ET.Element]:
    suite = ET.fromstring(xml)
    assert suite.tag == "testsuite"
    found = {c.get("name", ""): c for c in suite.findall("testcase")}
    assert suite.get("tests") == str(len(found))
    assert suite.get("failures") == str(sum(c.find("failure") is not None
                                            for c in found.values()))
    return found


def test_compare_junit_one_case_per_metric_with_the_numbers_in_the_failure() -> None:
    base = results("base", [7.0, 7.1, 7.2], [0.6, 0.61, 0.62])
    cand = results("cand", [9.0, 9.1, 9.2], [0.6, 0.61, 0.62])
    found = cases(junit_xml(compare(base, cand)))
    assert set(found) == {"all_complete", "makespan", "share_ratio"}
    failure = found["makespan"].find("failure")
    assert failure is not None and failure.get("type") == "worse"
    message = failure.get("message", "")
    for number in ("7.1 [7–7.2]", "9.1 [9–9.2]", "+28.2%", "p=0.05", "tolerance 15%"):
        assert number in message, message
    assert found["share_ratio"].find("failure") is None
    assert ET.fromstring(junit_xml(compare(base, cand))).find(
        "properties/property[@name='baseline']").get("value") == "base"  # type: ignore


def test_check_junit_bound_violated_and_skipped() -> None:
    cand = results("cand", [9.0, 9.1, 9.2], [0.6, 0.61, 0.62])
    expect = parse_expectations("all_complete: true\nmakespan: {max: 8}\n"
                                "share_ratio: {min: 0.5}\n", file="t.expect.yml")
    found = cases(junit_xml(check(cand, expect)))
    failure = found["makespan"].find("failure")
    assert failure is not None and failure.get("type") == "violated"
    assert "bound ≤ 8" in failure.get("message", "") and "9.1" in failure.get("message", "")
    assert found["all_complete"].find("failure") is None
    empty = results("none", [1.0], [0.5])
    nothing = compare(ResultsSet(Path("b"), "x", (Repetition(0, 1, "r", "completed", False,
                                                             {"makespan": None}),)), empty)
    assert cases(junit_xml(nothing))["makespan"].find("skipped") is not None


def test_report_on_a_wrong_path_is_one_line_and_exit_2(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from testbed.cli import main

    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no such directory" in err[0] and "not a run directory" in err[1]


def test_a_failing_report_at_the_end_of_a_run_is_one_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from testbed.cli import report_at_end

    (tmp_path / "experiment.json").write_text("{not json")
    report_at_end(tmp_path)  # must not raise
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("testbed: warning: no report.html for ")
    assert not (tmp_path / "report.html").exists()
    assert (tmp_path / "experiment.json").read_text() == "{not json"


def test_inline_svg_ids_are_prefixed_so_figures_can_share_a_page() -> None:
    from analysis.plots import inline_svg

    text = ('<?xml version="1.0"?>\n<!DOCTYPE svg>\n<svg><defs><clipPath id="p1"/>'
            '<path id="p10"/></defs><g clip-path="url(#p1)"><use xlink:href="#p10" '
            'style="fill: #1f77b4"/></g></svg>')
    out = inline_svg(text, "cdf")
    assert out.startswith("<svg")
    assert 'id="cdf-p1"' in out and 'id="cdf-p10"' in out
    assert "url(#cdf-p1)" in out and 'href="#cdf-p10"' in out and "#1f77b4" in out
