"""testbed sweep: key paths, overrides on a parsed topology, the plan, the table, the command."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

import testbed.run
from testbed import sweep
from testbed.cli import main
from testbed.sweep import (
    SweepError,
    format_table,
    gather,
    override,
    parse_param,
    parse_path,
    plan_sweep,
    run_sweep,
    set_path,
    table_row,
    to_csv,
)
from testbed.topology import parse_topology

TOPOLOGY = """\
name: tiny
seed: 7
content: {size: 1MiB, piece_size: 64KiB}
groups:
  - name: seed
    role: seed
    upload: 1MiB/s
  - name: leecher
    count: 3
    upload: {rate: 256KiB/s, burst: 64KiB}
end: {all_complete: true, time_limit: 30}
"""


@pytest.fixture
def topo():
    return parse_topology(TOPOLOGY, file="tiny.yaml")


# ---------------------------------------------------------------------------------------------
# key paths and values


@pytest.mark.parametrize(("path", "steps"), [
    ("seed", ["seed"]),
    ("groups[1].count", ["groups", 1, "count"]),
    ("groups[leecher].upload.rate", ["groups", "[leecher]", "upload", "rate"]),
    ("protocol.regular_slots", ["protocol", "regular_slots"]),
])
def test_parse_path(path, steps):
    assert parse_path(path) == steps


@pytest.mark.parametrize("path", [".seed", "groups[1]..count", "groups[1]count", "groups.[1]",
                                  "a b", "groups[]", "1abc"])
def test_parse_path_refuses_bad_paths(path):
    with pytest.raises(SweepError, match="bad key path"):
        parse_path(path)


def test_parse_param_reads_values_as_yaml():
    p = parse_param("groups[1].count=5, 10,20")
    assert p.path == "groups[1].count" and p.values == (5, 10, 20)
    assert parse_param("groups[1].upload=1MiB/s,unlimited").values == ("1MiB/s", "unlimited")
    assert parse_param("x=null,true,2.5").values == (None, True, 2.5)
    # commas inside brackets belong to one value
    assert parse_param("a=[1, 2],{b: 3}").values == ([1, 2], {"b": 3})


@pytest.mark.parametrize(("text", "message"), [
    ("groups[1].count", "write PATH=V1,V2"),
    ("=5", "write PATH=V1,V2"),
    ("groups[1].count=5,,6", "empty value"),
    ("groups[1].count=5,5", "repeated"),
    ("groups[1].count=[1,", "cannot read value"),
])
def test_parse_param_errors(text, message):
    with pytest.raises(SweepError, match=message):
        parse_param(text)


# ---------------------------------------------------------------------------------------------
# overrides


def test_set_path_in_a_plain_tree():
    tree = {"groups": [{"name": "s"}, {"name": "l", "count": 1}]}
    set_path(tree, "groups[1].count", 4)
    set_path(tree, "groups[s].upload", "1MiB/s")
    set_path(tree, "protocol.regular_slots", 2)  # a section the file leaves out
    assert tree == {"groups": [{"name": "s", "upload": "1MiB/s"}, {"name": "l", "count": 4}],
                    "protocol": {"regular_slots": 2}}


@pytest.mark.parametrize(("path", "message"), [
    ("groups[5].count", r"groups has 2 items \(groups\[0\] to groups\[1\]\)"),
    ("groups[nope].count", r"no item named 'nope' \(names: seed, leecher\)"),
    ("groups[1].upload.rate.x", r"groups\[1\]\.upload\.rate is the value '256KiB/s', not a "
                                r"mapping with key 'x'"),
    ("content[0]", "content is a mapping, not a list"),
])
def test_override_path_errors_name_the_path(topo, path, message):
    with pytest.raises(SweepError, match=message) as info:
        override(topo, {path: 1})
    assert f"--param {path}" in str(info.value)


def test_override_changes_the_topology_and_keeps_the_rest(topo):
    swept = override(topo, {"groups[leecher].count": 10, "groups[1].upload.rate": "512KiB/s",
                            "protocol.regular_slots": 2, "groups[1].choker": "free_rider"})
    leecher = swept.groups[1]
    assert leecher.count == 10 and leecher.upload.rate == 512 * 1024
    assert leecher.upload.burst == 64 * 1024  # untouched sibling key
    assert leecher.choker.name == "free_rider" and leecher.protocol.regular_slots == 2
    assert swept.seed == 7 and swept.content_size == 1024 * 1024 and swept.name == "tiny"
    # the text records what was run: it parses to the same topology, and says how it was made
    assert swept.text.startswith("# tiny.yaml with groups[leecher].count=10")
    again = parse_topology(swept.text)
    assert again.groups == swept.groups and again.protocol == swept.protocol
    assert topo.groups[1].count == 3  # the original is not changed


@pytest.mark.parametrize(("overrides", "message"), [
    ({"protocol.regular_slot": 2}, r"protocol\.regular_slot: unknown key 'regular_slot' "
                                   r"\(did you mean 'regular_slots'\?\)"),
    ({"groups[1].count": 0}, r"groups\[1\]\.count: must be at least 1"),
    ({"groups[1].upload": 0}, r"groups\[1\]\.upload: rate must be"),
    ({"groups[1].choker": "nope"}, r"unknown choker 'nope'"),
])
def test_override_values_are_checked_like_a_file(topo, overrides, message):
    with pytest.raises(SweepError, match=message) as info:
        override(topo, overrides)
    text = str(info.value)
    assert text.startswith("tiny.yaml with ")
    assert "tiny.yaml:" not in text  # no line: it would point into the regenerated text


# ---------------------------------------------------------------------------------------------
# the plan


def test_plan_is_every_combination_times_every_repetition(topo):
    params = [parse_param("groups[leecher].count=1,2"),
              parse_param("groups[leecher].choker=tit_for_tat,free_rider")]
    points = plan_sweep(topo, params, repeat=3)
    assert len(points) == 12
    assert [(p.values[0][1], p.values[1][1], p.seed) for p in points[:4]] == [
        (1, "tit_for_tat", 7), (1, "tit_for_tat", 8), (1, "tit_for_tat", 9),
        (1, "free_rider", 7)]
    assert [p.repetition for p in points[:3]] == [0, 1, 2]
    assert len({p.dirname for p in points}) == 12
    assert points[0].dirname == "000-count=1-choker=tit_for_tat-s7"
    last = points[-1]
    assert len(last.experiment.leechers) == 2 and last.experiment.seed == 9
    assert {p.choker.name for p in last.experiment.leechers} == {"free_rider"}
    assert plan_sweep(topo, params, seed=100)[0].seed == 100


def test_plan_checks_every_combination_before_anything(topo):
    # 3 is fine, 0 is not: the error comes from planning, before any run
    with pytest.raises(SweepError, match="count: must be at least 1"):
        plan_sweep(topo, [parse_param("groups[1].count=3,0")])
    with pytest.raises(SweepError, match="at least 1"):
        plan_sweep(topo, [parse_param("groups[1].count=3")], repeat=0)
    with pytest.raises(SweepError, match="swept twice"):
        plan_sweep(topo, [parse_param("seed=1"), parse_param("seed=2")])


# ---------------------------------------------------------------------------------------------
# the table, from fake run directories


def fake_summary(status="completed", makespan=10.0, saturated=False, crashes=None):
    return {"schema": 1, "status": status, "reason": "test", "duration": 11.0, "leechers": 3,
            "completed": 3 if makespan else 1, "hash_failures": 0, "makespan": makespan,
            "completion_stats": {"min": 4.0, "median": 6.0, "max": makespan},
            "bounds": {"d_p2p": 5.0, "d_cs": 20.0}, "crashes": crashes or {},
            "cpu": {"host_mean": 50.0, "host_p95": 95.0, "saturated": saturated}}


def write_run(root: Path, summary=None, analysis=None) -> Path:
    root.mkdir(parents=True)
    if summary is not None:
        (root / "summary.json").write_text(json.dumps(summary))
    if analysis is not None:
        (root / "analysis.json").write_text(json.dumps(analysis))
    return root


def test_table_rows_from_run_directories(tmp_path):
    entry = {"params": {"groups[1].count": 5}, "repetition": 1, "seed": 8}
    row = table_row(entry, write_run(tmp_path / "a", fake_summary(saturated=True)))
    assert row["groups[1].count"] == 5 and row["repetition"] == 1 and row["seed"] == 8
    assert row["status"] == "completed" and row["makespan"] == 10.0
    assert row["makespan_over_d_p2p"] == 2.0 and row["makespan_over_d_cs"] == 0.5
    assert row["cpu_saturated"] is True and row["host_cpu_mean"] == 50.0
    assert row["completion_median"] == 6.0 and row["crashes"] == 0
    assert "efficiency" not in row  # no analysis.json

    analysis = {"completion": {"all": {"mean": 6.5, "p90": 9.0}},
                "efficiency": {"efficiency": 0.5},
                "fairness": {"jain_share_ratio": 0.9, "jain_rate_per_capacity": 0.8}}
    row = table_row(entry, write_run(tmp_path / "b", fake_summary(makespan=None,
                                                                  crashes={"x": 1}), analysis))
    assert row["makespan"] is None and row["makespan_over_d_p2p"] is None
    assert row["crashes"] == 1 and row["efficiency"] == 0.5 and row["completion_p90"] == 9.0

    assert table_row(entry, write_run(tmp_path / "c"))["status"] == "missing"
    assert table_row(entry, tmp_path / "never")["status"] == "not run"


def test_gather_csv_and_text(tmp_path):
    runs = [{"dir": f"00{i}", "params": {"groups[1].count": n, "groups[1].choker": c},
             "repetition": 0, "seed": 1} for i, (n, c) in
            enumerate([(5, "tit_for_tat"), (5, "free_rider"), (10, "tit_for_tat")])]
    (tmp_path / "sweep.json").write_text(json.dumps({"runs": runs, "rows": []}))
    write_run(tmp_path / "000", fake_summary(makespan=4.0))
    write_run(tmp_path / "001", fake_summary(makespan=30.0, saturated=True))
    rows = gather(tmp_path)
    assert [r["status"] for r in rows] == ["completed", "completed", "not run"]
    assert [r["makespan"] for r in rows] == [4.0, 30.0, None]

    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert parsed[1]["groups[1].choker"] == "free_rider" and parsed[1]["makespan"] == "30.0"
    assert parsed[1]["cpu_saturated"] == "True" and parsed[2]["makespan"] == ""

    text = format_table(rows, ["groups[1].count", "groups[1].choker"])
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["count", "choker", "seed"]
    assert lines[2].split()[:4] == ["5", "free_rider", "1", "completed"]
    assert "yes" in lines[2] and "not run" in lines[3]

    with pytest.raises(SweepError, match="not a sweep directory"):
        gather(tmp_path / "000")


# ---------------------------------------------------------------------------------------------
# running, with a fake orchestrator (no processes)


class FakeExecute:
    """Stands in for testbed.run.execute_run: writes a run directory with a summary."""

    def __init__(self, interrupt_at: int | None = None) -> None:
        self.calls: list[tuple[object, str, object]] = []
        self.interrupt_at = interrupt_at

    def __call__(self, experiment, text, options):
        self.calls.append((experiment, text, options))
        n = len(experiment.leechers)
        status = "interrupted" if len(self.calls) == self.interrupt_at else "completed"
        options.out.mkdir()
        (options.out / "summary.json").write_text(json.dumps(fake_summary(status, 2.0 * n)))
        return testbed.run.RunResult(options.out, fake_summary(status, 2.0 * n))


def test_run_sweep_runs_each_point_and_writes_the_table(topo, tmp_path, monkeypatch):
    fake = FakeExecute()
    monkeypatch.setattr(testbed.run, "execute_run", fake)
    lines: list[str] = []
    result = run_sweep(topo, [parse_param("groups[1].count=1,2")], repeat=2,
                       out=tmp_path / "sw", echo=lines.append, time_limit=9.0)
    assert not result.interrupted and len(result.rows) == 4
    assert [len(e.leechers) for e, _, _ in fake.calls] == [1, 1, 2, 2]
    assert [e.seed for e, _, _ in fake.calls] == [7, 8, 7, 8]
    _, text, options = fake.calls[2]
    assert options.out == (tmp_path / "sw" / "002-count=2-s7").absolute()
    assert options.time_limit == 9.0 and "count: 2" in text
    saved = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert saved["params"] == {"groups[1].count": [1, 2]} and saved["seeds"] == [7, 8]
    assert [r["makespan"] for r in saved["rows"]] == [2.0, 2.0, 4.0, 4.0]
    assert (tmp_path / "sw" / "sweep.csv").read_text().count("\n") == 5
    assert (tmp_path / "sw" / "topology.yaml").read_text() == TOPOLOGY
    assert gather(tmp_path / "sw") == saved["rows"] == result.rows
    assert lines[0] == "[1/4] groups[1].count=1, seed 7"


def test_run_sweep_stops_when_a_run_is_interrupted(topo, tmp_path, monkeypatch):
    fake = FakeExecute(interrupt_at=2)
    monkeypatch.setattr(testbed.run, "execute_run", fake)
    result = run_sweep(topo, [parse_param("groups[1].count=1,2,3")], out=tmp_path / "sw",
                       echo=lambda _: None)
    assert result.interrupted and len(fake.calls) == 2
    assert [r["status"] for r in result.rows] == ["completed", "interrupted"]
    assert [r["status"] for r in gather(tmp_path / "sw")] == ["completed", "interrupted",
                                                              "not run"]


def test_sweep_dir_is_never_overwritten(topo, tmp_path, monkeypatch):
    monkeypatch.setattr(testbed.run, "execute_run", FakeExecute())
    (tmp_path / "sw").mkdir()
    with pytest.raises(sweep.TestbedError, match="already exists"):
        run_sweep(topo, [parse_param("groups[1].count=1")], out=tmp_path / "sw")


# ---------------------------------------------------------------------------------------------
# the command


def test_cli_bad_input_exits_2_with_one_line_and_starts_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(testbed.run, "execute_run", FakeExecute())
    topology = tmp_path / "tiny.yaml"
    topology.write_text(TOPOLOGY)
    out = tmp_path / "sw"
    for args in (["--param", "groups[9].count=1"], ["--param", "groups[1].count=1,x"], [],
                 ["--param", "groups[1].count=2", "--repeat", "0"]):
        assert main(["sweep", str(topology), *args, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("testbed: "), err
        assert not out.exists()


def test_cli_prints_the_table(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(testbed.run, "execute_run", FakeExecute())
    topology = tmp_path / "tiny.yaml"
    topology.write_text(TOPOLOGY)
    code = main(["sweep", str(topology), "--param", "groups[leecher].count=1,2",
                 "--out", str(tmp_path / "sw"), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "sweep " in out and "2 runs" in out and "sweep.csv" in out
    table = out[out.index("\nsweep "):].splitlines()[2:]
    assert table[1].split()[:3] == ["1", "7", "completed"]


@pytest.mark.integration
def test_real_sweep_of_a_tiny_swarm(tmp_path, capsys):
    """One real run through the orchestrator: the sweep adds nothing the run lacks."""
    root = Path(__file__).resolve().parent.parent
    code = main(["sweep", str(root / "topologies" / "ci_small.yaml"),
                 "--param", "groups[leecher].count=2", "--out", str(tmp_path / "sw"),
                 "--quiet"])
    rows = json.loads((tmp_path / "sw" / "sweep.json").read_text())["rows"]
    assert len(rows) == 1 and rows[0]["leechers"] == 2
    assert code == (0 if rows[0]["status"] == "completed" and not rows[0]["crashes"] else 1)
    assert rows[0]["status"] == "completed", rows
    assert (Path(rows[0]["run_dir"]) / "peers" / "leecher-1.jsonl").is_file()
