"""A planted regression is caught and identical code passes, with real runs (seconds each).

Three results sets of a tiny swarm (1 seed + 4 leechers, 1 MiB, about 2 s a run), K = 3 each:
the default tit-for-tat / rarest-first twice, and the same swarm with a sequential picker (every
leecher wants the same next piece, so they have little to trade and the seed does the work).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.cli import main

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent

TINY = """\
name: regress_tiny
seed: 1
content: {{size: 1MiB, piece_size: 32KiB}}
protocol: {{unchoke_when_free: true}}
groups:
  - name: seed
    role: seed
    upload: 1MiB/s
  - name: leecher
    count: 4
    upload: 512KiB/s
    picker: {picker}
end: {{all_complete: true, time_limit: 60}}
"""


def results_set(tmp_path: Path, name: str, picker: str) -> Path:
    topology = tmp_path / f"{name}.yaml"
    topology.write_text(TINY.format(picker=picker))
    out = tmp_path / name
    done = subprocess.run([sys.executable, "-m", "testbed.cli", "run", str(topology),
                           "--repeat", "3", "--quiet", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_planted_regression_is_caught_and_identical_code_passes(tmp_path, capsys):
    base = results_set(tmp_path, "base", "rarest_first")
    again = results_set(tmp_path, "again", "rarest_first")
    planted = results_set(tmp_path, "planted", "sequential")

    data = json.loads((base / "results.json").read_text())
    assert data["kind"] == "results_set" and data["seeds"] == [1, 2, 3]
    assert [r["run_dir"] for r in data["repetitions"]] == ["rep-0", "rep-1", "rep-2"]
    for i in range(3):
        summary = json.loads((base / f"rep-{i}" / "summary.json").read_text())
        assert summary["status"] == "completed"
        assert json.loads((base / f"rep-{i}" / "meta.json").read_text())["seed"] == 1 + i

    assert main(["compare", str(base), str(planted), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    worse = {r["metric"] for r in report["rows"] if r["verdict"] == "worse"}
    assert "makespan" in worse, report

    assert main(["compare", str(base), str(again)]) == 0, capsys.readouterr().out
    capsys.readouterr()

    # check: leechers that trade serve each other about 60 % of what they get; sequential 0 %
    expect = tmp_path / "tiny.expect.yaml"
    expect.write_text("all_complete: true\nshare_ratio: {min: 0.3}\n")
    assert main(["check", str(base), "--expect", str(expect)]) == 0
    assert main(["check", str(planted), "--expect", str(expect)]) == 1
    capsys.readouterr()
