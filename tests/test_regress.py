"""Regression verdicts: the rank test, tolerances, expectations files and the CLI's exit codes.

Results sets are written by hand (results.json), so these run in milliseconds.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from analysis_fixtures import (
    make_run,
    small_swarm_leecher_logs,
    small_swarm_plans,
    start,
    stop,
)

from testbed import regress
from testbed.cli import main
from testbed.regress import (
    ExpectationsError,
    RegressError,
    Tolerance,
    compare_metric,
    load_results,
    mann_whitney_p,
    parse_expectations,
    parse_tolerance,
)

ROOT = Path(__file__).resolve().parent.parent


def write_set(path: Path, reps: list[dict], *, saturated: int = 0) -> Path:
    """A results set whose i-th repetition has the metrics ``reps[i]`` (all_complete true)."""
    path.mkdir(parents=True)
    data = {"schema": 1, "kind": "results_set", "name": "t", "repeat": len(reps),
            "repetitions": [{"index": i, "seed": i + 1, "run_dir": f"rep-{i}",
                             "status": "completed", "saturated": i < saturated,
                             "metrics": {"all_complete": True, **m}}
                            for i, m in enumerate(reps)]}
    (path / "results.json").write_text(json.dumps(data))
    return path


def sets(tmp_path: Path, name: str, **columns: list) -> Path:
    n = len(next(iter(columns.values())))
    return write_set(tmp_path / name, [{k: v[i] for k, v in columns.items()} for i in range(n)])


# ---------------------------------------------------------------------------------------------
# the rank test


def test_exact_p_values_of_small_samples():
    # 3 vs 3, every candidate above every baseline value: 1 split of C(6,3) = 20.
    assert mann_whitney_p([4, 5, 6], [1, 2, 3]) == pytest.approx(1 / 20)
    assert mann_whitney_p([1, 2, 3], [4, 5, 6]) == 1.0
    # identical values: every split ties, so nothing is larger.
    assert mann_whitney_p([2, 2, 2], [2, 2, 2]) == 1.0
    # interleaved: U = 6 of 9; P(U >= 6) = (3 + 2 + 1 + 1) / 20 under the null.
    assert mann_whitney_p([2, 4, 6], [1, 3, 5]) == pytest.approx(0.35)
    assert mann_whitney_p([], [1, 2]) == 1.0


def test_p_value_matches_the_textbook_null_distribution():
    # n = m = 4: P(U >= 15) = 2/70 (U = 15 or 16), P(U = 16) = 1/70.
    assert mann_whitney_p([5, 6, 7, 8], [1, 2, 3, 4]) == pytest.approx(1 / 70)
    assert mann_whitney_p([4, 6, 7, 8], [1, 2, 3, 5]) == pytest.approx(2 / 70)


def test_agrees_with_scipy_when_it_is_installed():
    stats = pytest.importorskip("scipy.stats")  # not a dependency: a cross-check only
    rng = random.Random(3)
    for n, m in [(3, 3), (3, 5), (5, 5), (4, 7)]:
        for _ in range(20):
            x = [rng.gauss(1, 1) for _ in range(n)]
            y = [rng.gauss(0, 1) for _ in range(m)]
            expected = stats.mannwhitneyu(x, y, alternative="greater", method="exact").pvalue
            assert mann_whitney_p(x, y) == pytest.approx(expected)


def test_large_samples_fall_back_to_a_seeded_monte_carlo():
    x = [float(i) for i in range(12, 24)]
    y = [float(i) for i in range(12)]
    p = mann_whitney_p(x, y)  # C(24, 12) = 2.7 M splits: sampled
    assert 0 < p < 0.001
    assert mann_whitney_p(x, y) == p  # fixed seed: the same answer every time


def test_clear_regression_is_worse():
    row = compare_metric("makespan", [8.0, 8.3, 8.8], [17.4, 17.5, 17.6], direction="lower",
                         tolerance=Tolerance(0.15), alpha=0.05)
    assert row.verdict == "worse" and row.regression
    assert row.p_value == pytest.approx(0.05)
    assert row.change == pytest.approx(17.5 / 8.3 - 1)


def test_higher_is_better_metrics_regress_downwards():
    row = compare_metric("reciprocation", [0.79, 0.89, 0.93], [0.24, 0.37, 0.47],
                         direction="higher", tolerance=Tolerance(0.2), alpha=0.05)
    assert row.verdict == "worse"
    up = compare_metric("reciprocation", [0.24, 0.37, 0.47], [0.79, 0.89, 0.93],
                        direction="higher", tolerance=Tolerance(0.2), alpha=0.05)
    assert up.verdict == "better" and not up.regression


def test_identical_distributions_pass():
    rng = random.Random(7)
    worse = 0
    for _ in range(200):
        a = [rng.gauss(8, 0.5) for _ in range(5)]
        b = [rng.gauss(8, 0.5) for _ in range(5)]
        row = compare_metric("makespan", a, b, direction="lower", tolerance=Tolerance(0.15),
                             alpha=0.05)
        worse += row.regression
    # sd 6 % of the mean: a 15 % gap of the medians of 5 almost never happens by chance.
    assert worse == 0


def test_small_consistent_change_is_within_tolerance():
    # every candidate slower (the test is sure) but by 3 %: practically nothing.
    row = compare_metric("makespan", [8.0, 8.1, 8.2], [8.25, 8.3, 8.4], direction="lower",
                         tolerance=Tolerance(0.10), alpha=0.05)
    assert row.verdict == "within tolerance" and not row.regression


def test_large_but_noisy_change_is_not_significant():
    # medians 20 % apart, but the samples overlap: no statistical basis.
    row = compare_metric("makespan", [6.0, 8.0, 12.0], [7.0, 9.6, 11.0], direction="lower",
                         tolerance=Tolerance(0.10), alpha=0.05)
    assert row.verdict == "pass" and row.p_value > 0.05


def test_absolute_tolerance():
    row = compare_metric("jain_share", [0.80, 0.81, 0.82], [0.70, 0.71, 0.72],
                         direction="higher", tolerance=Tolerance(0.2, relative=False),
                         alpha=0.05)
    assert row.verdict == "within tolerance"
    row = compare_metric("jain_share", [0.80, 0.81, 0.82], [0.50, 0.51, 0.52],
                         direction="higher", tolerance=Tolerance(0.2, relative=False),
                         alpha=0.05)
    assert row.verdict == "worse"


def test_missing_candidate_values_are_a_regression():
    row = compare_metric("makespan", [8.0, 8.1], [], direction="lower",
                         tolerance=Tolerance(0.1), alpha=0.05)
    assert row.verdict == "missing" and row.regression


@pytest.mark.parametrize(("text", "expected"), [
    ("10%", Tolerance(0.10)), (" 2.5 % ", Tolerance(0.025)), (3, Tolerance(3.0, False)),
    (0.5, Tolerance(0.5, False)), ("2", Tolerance(2.0, False)),
])
def test_parse_tolerance(text, expected):
    assert parse_tolerance(text) == expected


@pytest.mark.parametrize("bad", ["ten", "-1", -1, "10 %%", True, None, math.inf, "%"])
def test_parse_tolerance_rejects(bad):
    with pytest.raises(ValueError):
        parse_tolerance(bad)


# ---------------------------------------------------------------------------------------------
# expectations files

GOOD = """\
# ci expectations
alpha: 0.05
all_complete: true
median_completion: {max: 20}
efficiency: {min: 0.5}
jain_share: {min: 0.5, max: 1}
median_completion[fast]: {max: 30}
"""


def test_parse_good_expectations():
    e = parse_expectations(GOOD, file="x.yaml")
    assert e.all_complete is True and e.alpha == 0.05 and e.baseline is None
    assert [(b.metric, b.min, b.max) for b in e.bounds] == [
        ("median_completion", None, 20.0), ("efficiency", 0.5, None),
        ("jain_share", 0.5, 1.0), ("median_completion[fast]", None, 30.0)]


def test_baseline_is_relative_to_the_file(tmp_path):
    base = write_set(tmp_path / "base", [{"makespan": 8.0}])
    e = parse_expectations("baseline: base\ntolerance: 5%\nmakespan: {worse_by: 2}\n",
                           file="e.yaml", base_dir=tmp_path)
    assert e.baseline == base
    assert e.tolerance == Tolerance(0.05) and e.tolerances == {"makespan": Tolerance(2.0, False)}


BAD_FILES = [
    ("", 1, None, "empty file"),
    ("# only a comment\n", 1, None, "empty file"),
    ("[1, 2]\n", 1, None, "mapping"),
    ("median_completion: {max: 20}\nmedian_complection: {max: 3}\n", 2,
     "median_complection", "did you mean 'median_completion'"),
    ("speed: {min: 1}\n", 1, "speed", "unknown metric 'speed'; known keys"),
    ("makespan[fast]: {max: 1}\n", 1, "makespan[fast]", "unknown metric"),
    ("makespan: {maximum: 20}\n", 1, "makespan.maximum", "unknown key 'maximum'"),
    ("makespan: 20\n", 1, "makespan", "expected {min: X}"),
    ("makespan: {}\n", 1, "makespan", "expected {min: X}"),
    ("makespan: {max: fast}\n", 1, "makespan.max", "expected a number"),
    ("makespan: {max: true}\n", 1, "makespan.max", "expected a number"),
    ("efficiency: {min: 0.9, max: 0.5}\n", 1, "efficiency", "min 0.9 is above max 0.5"),
    ("all_complete: yes please\n", 1, "all_complete", "expected true or false"),
    ("alpha: 5\nall_complete: true\n", 1, "alpha", "significance level"),
    ("makespan: {worse_by: 10%}\n", 1, "makespan.worse_by", "needs a baseline"),
    ("tolerance: 10%\nall_complete: true\n", 1, "tolerance", "needs a baseline"),
    ("baseline: nowhere\n", 1, "baseline", "no such results set"),
    ("makespan: {max: 1}\nmakespan: {max: 2}\n", 2, "makespan", "duplicate key"),
    ("makespan: {max: 1\n", 2, None, "YAML syntax"),
    ("alpha: 0.05\n", 1, None, "no expectations"),
]


@pytest.mark.parametrize(("text", "line", "key", "message"), BAD_FILES)
def test_bad_expectations(tmp_path, text, line, key, message):
    with pytest.raises(ExpectationsError) as info:
        parse_expectations(text, file="bad.yaml", base_dir=tmp_path)
    err = info.value
    assert err.file == "bad.yaml"
    assert err.line == line
    assert err.key == key
    assert message in str(err)
    assert str(err).startswith(f"bad.yaml:{line}:")


def test_shipped_ci_expectations_are_valid():
    e = regress.load_expectations(ROOT / "topologies" / "ci_small.expect.yml")
    assert e.all_complete is True and e.bounds


# ---------------------------------------------------------------------------------------------
# results sets and check


def two_group_run(tmp_path: Path) -> Path:
    """Seed s; a, b (group fast) complete at T = 5, 7; c (slow, arrives at 2) at T = 10.
    Bytes up/down: a 300/400, b 200/400, c 100/400."""
    s, a, b, c = small_swarm_plans()
    logs = {"s": [start(s), stop(20, 600, 0)], **small_swarm_leecher_logs(a, b, c)}
    summary = {"schema": 1, "status": "completed",
               "cpu": {"host_mean": 97.0, "saturated": True, "warning": "saturated"}}
    return make_run(tmp_path / "run", [s, a, b, c], logs, summary=summary)


def test_a_run_directory_is_a_set_of_one_with_metrics_from_the_analysis(tmp_path):
    rs = load_results(two_group_run(tmp_path))
    assert len(rs.repetitions) == 1 and rs.saturated == 1 and rs.name == "test"
    m = rs.repetitions[0].metrics
    assert m["all_complete"] is True
    assert m["median_completion"] == 7 and m["mean_completion"] == pytest.approx(22 / 3)
    assert m["makespan"] == 12
    assert m["share_ratio"] == pytest.approx(600 / 1200)
    assert m["median_completion[fast]"] == 6 and m["median_completion[slow]"] == 10
    assert m["share_ratio[fast]"] == pytest.approx(500 / 800)
    assert m["share_ratio[slow]"] == pytest.approx(100 / 400)
    assert m["clustering"] is None and m["reciprocation"] is None  # no rechokes, no counters
    assert m["clustering[fast]"] is None and m["clustering[slow]"] is None
    # The slowest class (50 B/s) over the fastest (200 B/s): 10 s / 6 s.
    assert m["sharing_incentive"] == pytest.approx(10 / 6)
    # The seed s (100 B/s) holds a 400-byte file: F / u_s = 4 s; a got pieces 0-3 at 2-5 s, so
    # every piece was outside the seed at 5 s, counted from t = 0 when s and a were both there.
    assert m["injection_ratio"] == pytest.approx(5 / 4)
    for name in m:
        assert regress.metric_of(name) is not None, name
    e = parse_expectations("median_completion[slow]: {max: 9}\nall_complete: true\n")
    result = regress.check(rs, e)
    assert [(r.metric, r.verdict) for r in result.rows] == [
        ("all_complete", "pass"), ("median_completion[slow]", "violated")]
    assert "saturated in 1/1" in regress.format_report(result)


def test_load_results_rejects_what_is_not_a_results_set(tmp_path):
    with pytest.raises(RegressError, match="no such"):
        load_results(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RegressError, match="neither a results set"):
        load_results(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "results.json").write_text("{")
    with pytest.raises(RegressError, match="not JSON"):
        load_results(bad)
    (bad / "results.json").write_text('{"kind": "results_set", "schema": 9}')
    with pytest.raises(RegressError, match="schema 9"):
        load_results(bad)
    for reps, message in [([], "no repetitions"), ([{"metrics": 3}], r"repetitions\[0\] has no"),
                          ([{"index": "x", "metrics": {}}], r"repetitions\[0\]: invalid")]:
        (bad / "results.json").write_text(json.dumps(
            {"kind": "results_set", "schema": 1, "repetitions": reps}))
        with pytest.raises(RegressError, match=message):
            load_results(bad)


def test_check_bounds_use_the_median_and_all_complete_every_run(tmp_path):
    cand = write_set(tmp_path / "c", [{"median_completion": 9.0}, {"median_completion": 30.0},
                                      {"median_completion": 10.0}])
    e = parse_expectations("all_complete: true\nmedian_completion: {max: 12}\n")
    result = regress.check(load_results(cand), e)
    assert [r.verdict for r in result.rows] == ["pass", "pass"]  # one slow run: median 10
    data = json.loads((cand / "results.json").read_text())
    data["repetitions"][1]["metrics"]["all_complete"] = False
    (cand / "results.json").write_text(json.dumps(data))
    result = regress.check(load_results(cand), e)
    assert [r.verdict for r in result.rows] == ["violated", "pass"]
    assert result.exit_status == 1


def test_check_reports_an_unknown_group_as_a_usage_error(tmp_path):
    cand = write_set(tmp_path / "c", [{"median_completion": 9.0}])
    e = parse_expectations("median_completion[fast]: {max: 12}\n", file="e.yaml")
    with pytest.raises(RegressError, match=r"e.yaml: median_completion\[fast\]: not a metric"):
        regress.check(load_results(cand), e)


# ---------------------------------------------------------------------------------------------
# the command line


def test_compare_exit_codes_and_json(tmp_path, capsys):
    base = sets(tmp_path, "base", makespan=[8.0, 8.3, 8.8], reciprocation=[0.8, 0.9, 0.85])
    same = sets(tmp_path, "same", makespan=[8.5, 8.1, 8.2], reciprocation=[0.9, 0.82, 0.86])
    slow = sets(tmp_path, "slow", makespan=[17.0, 17.5, 18.0], reciprocation=[0.8, 0.9, 0.85])
    assert main(["compare", str(base), str(same)]) == 0
    out = capsys.readouterr().out
    assert "metric" in out and "verdict" in out and "pass: no regression" in out
    assert main(["compare", str(base), str(slow)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION: makespan" in out
    assert main(["compare", str(base), str(slow), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["regression"] is True and data["exit_status"] == 1
    rows = {r["metric"]: r for r in data["rows"]}
    assert rows["makespan"]["verdict"] == "worse"
    assert rows["makespan"]["p_value"] == pytest.approx(0.05)
    assert rows["reciprocation"]["verdict"] == "pass"
    # a generous tolerance turns the same evidence into "within tolerance"
    assert main(["compare", str(base), str(slow), "--tolerance", "200%"]) == 0
    capsys.readouterr()


def test_compare_warns_about_saturation_and_too_few_repetitions(tmp_path, capsys):
    base = write_set(tmp_path / "b", [{"makespan": 8.0}, {"makespan": 8.1}], saturated=1)
    cand = write_set(tmp_path / "c", [{"makespan": 20.0}, {"makespan": 21.0}])
    assert main(["compare", str(base), str(cand)]) == 0  # 2 vs 2: min p = 1/6
    out = capsys.readouterr().out
    assert "can never give p <= 0.05" in out
    assert "saturated in 1/2" in out


@pytest.mark.parametrize("argv", [
    ["compare", "{tmp}/nowhere", "{tmp}/base"],
    ["compare", "{tmp}/base", "{tmp}/base", "--alpha", "2"],
    ["compare", "{tmp}/base", "{tmp}/base", "--tolerance", "lots"],
    ["check", "{tmp}/base"],
    ["check", "{tmp}/base", "--expect", "{tmp}/nowhere.yaml"],
    ["check", "{tmp}/base", "--expect", "{tmp}/bad.yaml"],
    ["run", "topologies/ci_small.yaml", "--repeat", "0"],
    ["run", "{root}/topologies/ci_small.yaml", "--repeat", "2", "--out", "{tmp}/base"],
])
def test_usage_errors_exit_2_with_one_line(tmp_path, capsys, argv):
    sets(tmp_path, "base", makespan=[8.0, 8.3, 8.8])
    (tmp_path / "bad.yaml").write_text("makespan: {worse_by: 10%}\n")
    argv = [a.format(tmp=tmp_path, root=ROOT) for a in argv]
    with pytest.raises(SystemExit) as info:  # argparse's own errors exit through SystemExit
        raise SystemExit(main(argv))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_check_cli_pass_and_fail(tmp_path, capsys):
    cand = sets(tmp_path, "c", median_completion=[9.0, 9.5, 10.0], efficiency=[0.7, 0.6, 0.65])
    good = tmp_path / "good.yaml"
    good.write_text("all_complete: true\nmedian_completion: {max: 12}\nefficiency: {min: 0.5}\n")
    strict = tmp_path / "strict.yaml"
    strict.write_text("median_completion: {max: 9}\n")
    assert main(["check", str(cand), "--expect", str(good)]) == 0
    assert "pass: no regression" in capsys.readouterr().out
    assert main(["check", str(cand), "--expect", str(strict), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [r["verdict"] for r in data["rows"]] == ["violated"]
    assert data["rows"][0]["candidate"]["median"] == 9.5


def test_check_with_a_baseline_compares_with_the_files_tolerances(tmp_path, capsys):
    sets(tmp_path, "base", makespan=[8.0, 8.3, 8.8])
    cand = sets(tmp_path, "cand", makespan=[9.5, 9.6, 9.7])  # +16 %, every run slower
    loose = tmp_path / "loose.yaml"
    loose.write_text("baseline: base\nmakespan: {worse_by: 20%}\n")
    tight = tmp_path / "tight.yaml"
    tight.write_text("baseline: base\nmakespan: {worse_by: 1}\n")
    assert main(["check", str(cand), "--expect", str(loose)]) == 0
    assert "within tolerance" in capsys.readouterr().out
    assert main(["check", str(cand), "--expect", str(tight)]) == 1
    capsys.readouterr()


def test_run_does_not_import_pandas_for_repeat_parsing():
    # The CLI's start-up stays free of pandas: regress imports it only to compute metrics.
    import subprocess
    import sys

    code = ("import sys, testbed.cli, testbed.regress; "
            "testbed.cli.build_parser().parse_args(['run', 'x.yaml', '--repeat', '3']); "
            "print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.strip()
    assert out == "False"


# ---------------------------------------------------------------------------------------------
# testbed run --repeat, with the orchestrator and the analysis faked


def fake_summary(status: str = "completed") -> dict:
    return {"status": status, "reason": "test", "duration": 1.0, "peers": 2, "started": 2,
            "leechers": 1, "completed": 1, "verified": 1,
            "completion_stats": {"min": 1.0, "median": 1.0, "max": 1.0}, "groups": {},
            "makespan": 1.0, "bounds": {"d_p2p": 1.0, "d_cs": 1.0}, "makespan_over_d_p2p": 1.0,
            "cpu": {"saturated": status == "completed", "host_mean": 50.0, "warning": None},
            "crashes": {}, "signal": None}


def test_run_repeated_writes_a_results_set_and_survives_an_analysis_failure(
        tmp_path, monkeypatch, capsys):
    import testbed.run
    from testbed.run import RunResult

    seeds = []

    def execute_run(experiment, text, options):
        seeds.append(experiment.seed)
        options.out.mkdir()
        return RunResult(options.out, fake_summary())

    def run_metrics(run_dir):
        if run_dir.name == "rep-1":
            raise KeyError("a bug in the analysis")
        return {"status": "completed", "saturated": False, "host_cpu_mean": 10.0,
                "metrics": {"all_complete": True, "makespan": 8.0 + seeds[-1]}}

    monkeypatch.setattr(testbed.run, "execute_run", execute_run)
    monkeypatch.setattr(regress.results, "run_metrics", run_metrics)
    root, status = regress.run_repeated(ROOT / "topologies" / "ci_small.yaml", repeat=3,
                                        seed=7, out=None, runs_root=tmp_path)
    assert seeds == [7, 8, 9]
    assert status == 1  # the analysis failed for one repetition
    assert root.parent == tmp_path and root.name.startswith("ci_small-")
    assert root.name.endswith("-x3")
    data = json.loads((root / "results.json").read_text())
    assert data["seeds"] == [7, 8, 9] and data["repeat"] == 3
    reps = data["repetitions"]
    assert [r["seed"] for r in reps] == [7, 8, 9]
    assert reps[1]["metrics"] == {} and "a bug in the analysis" in reps[1]["analysis_error"]
    assert "analysis of" in capsys.readouterr().err
    rs = load_results(root)
    assert rs.values("makespan") == [15.0, 17.0]
    result = regress.check(rs, parse_expectations("all_complete: true\nmakespan: {max: 20}\n"))
    assert [r.verdict for r in result.rows] == ["violated", "pass"]


def test_run_repeated_stops_at_an_interrupt(tmp_path, monkeypatch):
    import testbed.run
    from testbed.run import RunResult

    def execute_run(experiment, text, options):
        # absolute: the fork launcher chdirs into the run directory before opening files
        assert options.out.is_absolute()
        options.out.mkdir()
        summary = fake_summary("interrupted" if experiment.seed == 2 else "completed")
        summary["signal"] = "SIGINT" if experiment.seed == 2 else None
        return RunResult(options.out, summary)

    monkeypatch.setattr(testbed.run, "execute_run", execute_run)
    monkeypatch.setattr(regress.results, "run_metrics", lambda run_dir: {
        "status": "completed", "saturated": False, "metrics": {"all_complete": True}})
    monkeypatch.chdir(tmp_path)
    root, status = regress.run_repeated(ROOT / "topologies" / "ci_small.yaml", repeat=3,
                                        seed=1, out=Path("set"), runs_root=Path("runs"))
    assert status == 130 and root == tmp_path / "set"
    assert sorted(p.name for p in root.iterdir()) == ["rep-0", "rep-1", "results.json"]
    assert len(load_results(root).repetitions) == 1
