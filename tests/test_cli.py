"""The ``testbed`` command line: exit codes, one-line errors, lazy imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from testbed.cli import main

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGIES = sorted((ROOT / "topologies").glob("*.yaml"))

BAD = """\
name: bad
content: {size: 1MiB}
groups:
  - name: seed
    role: seed
    upload: fast
"""


def test_validate_good_files(capsys):
    assert TOPOLOGIES, "no topologies shipped"
    assert main(["validate", *map(str, TOPOLOGIES)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"ok {path}" for path in TOPOLOGIES]


def test_validate_reports_each_bad_file_in_one_line_and_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    missing = tmp_path / "missing.yaml"
    assert main(["validate", str(TOPOLOGIES[0]), str(bad), str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [f"ok {TOPOLOGIES[0]}"]
    errors = captured.err.splitlines()
    assert len(errors) == 2
    assert errors[0].startswith(f"{bad}:6: groups[0].upload")
    assert errors[1].startswith(str(missing))
    assert "Traceback" not in captured.err


def test_run_with_a_bad_topology_starts_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "groups[0].upload" in err
    assert not (tmp_path / "runs").exists()


def test_run_into_an_existing_directory_is_refused(tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    assert main(["run", str(TOPOLOGIES[0]), "--out", str(out)]) == 2
    assert "never overwritten" in capsys.readouterr().err
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("argv", [
    ["run"],
    ["run", "x.yaml", "--time-limit", "-3"],
    ["run", "x.yaml", "--seed", "abc"],
    ["run", "x.yaml", "--launcher", "ssh"],
    ["frobnicate"],
])
def test_bad_arguments_exit_2_in_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("testbed")


def test_analyze_of_a_missing_run_is_an_error(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_run_path_does_not_import_pandas():
    code = ("import sys, testbed.cli, testbed.run, testbed.topology; "
            "print(sorted(m for m in ('pandas', 'matplotlib', 'numpy', 'rich') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=ROOT)
    assert result.stdout.strip() == "[]"
