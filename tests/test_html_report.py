"""HTML reports of a real run, a results set, a sweep and a comparison, opened in a real
browser (Debian's chromium, headless, over the DevTools protocol: tests/browser.py).

One tiny swarm (1 seed + 4 leechers, 1 MiB, a few seconds) is run once through ``testbed run``
(which writes its report.html at the end); the results set, the sweep and the saturated run are
copies of it, so the pages are the real thing at a fraction of the time. Each page's screenshot
is kept beside it as report.png.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import CHROMIUM, SKIP_REASON, Browser, Page

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent

TINY = """\
name: report_tiny
seed: 1
content: {size: 1MiB, piece_size: 32KiB}
protocol: {unchoke_when_free: true}
groups:
  - name: seed
    role: seed
    upload: 1MiB/s
  - name: leecher
    count: 4
    upload: 512KiB/s
end: {all_complete: true, time_limit: 60}
"""

RUN_SECTIONS = ["status", "completion", "bounds", "fairness", "clustering", "availability",
                "utilisation", "cpu", "topology", "warnings", "meta"]
RUN_FIGURES = {"fig-completion_cdf", "fig-makespan_bounds", "fig-progress",
               "fig-unchoke_matrix", "fig-availability", "fig-utilisation_over_time",
               "fig-injection", "fig-host_cpu"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run through ``testbed run``: its report.html is written by the run's hook."""
    base = tmp_path_factory.mktemp("report")
    topology = base / "tiny.yaml"
    topology.write_text(TINY)
    out = base / "run"
    done = subprocess.run([sys.executable, "-m", "testbed.cli", "run", str(topology), "--quiet",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"report: {out / 'report.html'}" in done.stdout
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if CHROMIUM is None:
        pytest.skip(SKIP_REASON)
    b = Browser()
    yield b
    b.close()


def copy_run(run_dir: Path, to: Path, *, saturated: bool | None = None) -> Path:
    shutil.copytree(run_dir, to, ignore=shutil.ignore_patterns("content", "figures"))
    if saturated is not None:
        summary = json.loads((to / "summary.json").read_text())
        summary["cpu"].update(saturated=saturated, saturated_seconds=4.0 if saturated else 0.0,
                              warning="host CPU was above 90% (a test's edit)" if saturated
                              else None)
        (to / "summary.json").write_text(json.dumps(summary))
    return to


def open_page(browser: Browser, html: Path) -> Page:
    """Open a report; every check that holds for every page: figures laid out with a size, no
    figure that failed to draw, no script, no console error, nothing fetched but the page and
    its own data: URIs. The screenshot goes beside it."""
    page = browser.open(html, html.with_name("report.png"))
    assert html.with_name("report.png").stat().st_size > 10_000
    assert page.figures, "no figure"
    for f in page.figures:
        assert f["width"] > 100 and f["height"] > 100, f
        assert not f["error"], f
    assert page.scripts == 0
    assert page.errors == []
    assert [u for u in page.requests if not u.startswith("data:")] == [html.resolve().as_uri()]
    return page


def test_run_page_in_the_browser(run_dir: Path, browser: Browser) -> None:
    page = open_page(browser, run_dir / "report.html")
    assert page.sections == RUN_SECTIONS
    assert {f["id"] for f in page.figures} == RUN_FIGURES
    assert page.banners["status-banner"]["text"].startswith("completed")
    saturated = json.loads((run_dir / "summary.json").read_text())["cpu"]["saturated"]
    assert ("saturation-banner" in page.banners) == saturated


def test_saturation_banner_shows_only_when_the_guard_fired(run_dir: Path, browser: Browser,
                                                           tmp_path: Path) -> None:
    """The run above showed the banner as its summary said; a copy with the flag flipped shows
    the opposite (a loaded CI host may flag the real run either way)."""
    from analysis.html import write_report

    flag = not json.loads((run_dir / "summary.json").read_text())["cpu"]["saturated"]
    page = open_page(browser, write_report(copy_run(run_dir, tmp_path / "flipped",
                                                    saturated=flag)))
    if flag:
        banner = page.banners["saturation-banner"]
        assert "HOST CPU SATURATED" in banner["text"] and banner["height"] > 20
        assert banner["width"] > 0.9 * max(f["width"] for f in page.figures)
    else:
        assert "saturation-banner" not in page.banners
        assert "cpu-ok" in page.banners


def make_set(run_dir: Path, root: Path, reps: int = 2) -> Path:
    from testbed.regress import run_metrics

    entries = []
    for i in range(reps):
        rep = copy_run(run_dir, root / f"rep-{i}", saturated=(i == 1))
        entries.append({"index": i, "seed": 1 + i, "run_dir": f"rep-{i}", "exit_status": 0,
                        **run_metrics(rep)})
    (root / "results.json").write_text(json.dumps({
        "schema": 1, "kind": "results_set", "name": "report_tiny", "seeds": [1, 2],
        "repeat": reps, "repetitions": entries}))
    return root


@pytest.fixture(scope="module")
def results_set(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_set(run_dir, tmp_path_factory.mktemp("set") / "set")


def test_results_set_page_with_check_verdicts(results_set: Path, browser: Browser,
                                              tmp_path: Path) -> None:
    from analysis.html.set_page import write_set_report

    results = results_set
    expect = tmp_path / "tiny.expect.yml"
    expect.write_text("all_complete: true\nshare_ratio: {min: 0.01}\nmakespan: {max: 0.5}\n")
    page = open_page(browser, write_set_report(results, expect, run_reports=False))
    assert page.sections == ["repetitions", "metrics", "verdicts"]
    assert {f["id"] for f in page.figures} == {"fig-metrics", "fig-completion_cdfs"}
    assert "saturation-banner" in page.banners  # rep-1 was flagged
    assert page.banners["verdict"]["text"] == "REGRESSION: makespan"
    text = (results / "report.html").read_text()
    assert text.count('href="rep-') == 2  # each repetition's own page


def test_sweep_page(run_dir: Path, browser: Browser, tmp_path: Path) -> None:
    from analysis.html import write_report

    sweep = tmp_path / "sweep"
    runs = []
    for i, (count, rep) in enumerate([(2, 0), (2, 1), (4, 0), (4, 1)]):
        name = f"{i:03d}-count={count}-s{1 + rep}"
        copy_run(run_dir, sweep / name)
        runs.append({"dir": name, "params": {"groups[leecher].count": count},
                     "repetition": rep, "seed": 1 + rep})
    (sweep / "sweep.json").write_text(json.dumps({
        "schema": 1, "topology": "tiny.yaml", "name": "report_tiny",
        "params": {"groups[leecher].count": [2, 4]}, "repeat": 2, "seeds": [1, 2],
        "runs": runs, "rows": []}))
    page = open_page(browser, write_report(sweep))
    assert page.sections == ["parameters", "table", "metrics"]
    assert {"fig-sweep-makespan", "fig-sweep-makespan_over_d_p2p"} <= {
        f["id"] for f in page.figures}
    assert "saturation-banner" not in page.banners or any(
        json.loads((sweep / r["dir"] / "summary.json").read_text())["cpu"]["saturated"]
        for r in runs)


def test_compare_writes_junit_and_html(results_set: Path, browser: Browser, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from testbed.cli import main

    results = results_set
    junit, html = tmp_path / "verdicts.xml", tmp_path / "compare" / "report.html"
    html.parent.mkdir()
    assert main(["compare", str(results), str(results), "--junit", str(junit),
                 "--html", str(html)]) == 0
    capsys.readouterr()
    suite = ET.parse(junit).getroot()
    cases = suite.findall("testcase")
    assert suite.tag == "testsuite" and int(suite.get("tests", "-1")) == len(cases) > 5
    assert {c.get("name") for c in cases} >= {"median_completion", "makespan", "all_complete"}
    assert suite.get("failures") == "0" and not suite.findall(".//failure")
    page = open_page(browser, html)
    assert page.sections == ["verdicts", "distributions"]
    assert page.banners["verdict"]["text"] == "pass: no regression"
