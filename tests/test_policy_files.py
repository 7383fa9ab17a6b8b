"""A researcher's policy beside the topology (``./mine.py:Class``, issue 18 item 3) and the
provenance of every non-built-in policy a run used (issue 18 item 4)."""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

import pytest

from peer.config import PolicySpec
from peer.errors import ConfigError
from peer.policy import build_choker, load_policy_file
from testbed.cli import main
from testbed.provenance import (
    different_policy_sources,
    policy_sources_of_run,
    record_policy_sources,
)
from testbed.topology import TopologyError, expand, load_topology

ROOT = Path(__file__).resolve().parent.parent

CHOKER = '''
from peer.policy import Decision


class Everyone:
    def __init__(self, seed: int = 0, label: str = "everyone") -> None:
        self.label = label

    def rechoke(self, view):
        return {n.peer: Decision("regular", self.label) for n in view.neighbours}
'''


def topology(folder: Path, choker: str, name: str = "t.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(f"""\
        content: {{size: 1MiB}}
        groups:
          - {{name: seed, role: seed}}
          - name: mine
            count: 2
            choker: {choker}
        """))
    return path


def policy_file(path: Path, text: str = CHOKER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- the file form in a topology --------------------------------------------------------------


def test_a_policy_file_is_found_relative_to_the_topology(tmp_path: Path) -> None:
    policy_file(tmp_path / "study" / "mine.py")
    path = topology(tmp_path / "study", "{name: ./mine.py:Everyone, params: {label: hi}}")
    group = load_topology(path).groups[1]
    assert group.choker.name == f"{tmp_path / 'study' / 'mine.py'}:Everyone"
    assert group.choker.params == {"label": "hi"}
    experiment = expand(load_topology(path))
    # The peers run the run directory's copy, which testbed.provenance makes.
    assert {p.choker.name for p in experiment.peers if p.group == "mine"} == \
        {"policies/mine.py:Everyone"}
    assert experiment.policy_files == (("policies/mine.py", str(tmp_path / "study/mine.py")),)


def test_policy_files_of_the_same_name_get_distinct_copies(tmp_path: Path) -> None:
    policy_file(tmp_path / "a" / "mine.py")
    policy_file(tmp_path / "b" / "mine.py", CHOKER.replace("Everyone", "Other"))
    path = topology(tmp_path / "a", "./mine.py:Everyone")
    path.write_text(path.read_text() + "    picker: rarest_first\n"
                    "  - {name: other, choker: ../b/mine.py:Other}\n")
    experiment = expand(load_topology(path))
    assert dict(experiment.policy_files) == {"policies/mine.py": str(tmp_path / "a/mine.py"),
                                            "policies/mine-2.py": str(tmp_path / "b/mine.py")}
    assert experiment.peers[-1].choker.name == "policies/mine-2.py:Other"


@pytest.mark.parametrize(("file_text", "choker", "key", "fragment"), [
    (None, "./nope.py:Everyone", "groups[1].choker", "./nope.py: no such file (relative to"),
    (CHOKER, "{name: ./mine.py:Nope}", "groups[1].choker.name", "has no class 'Nope'"),
    ("def broken(:\n", "./mine.py:Everyone", "groups[1].choker",
     "mine.py: cannot load: SyntaxError"),
    ("raise RuntimeError('boom')\n", "./mine.py:Everyone", "groups[1].choker",
     "cannot load: RuntimeError: boom"),
    (CHOKER, "{name: ./mine.py:Everyone, params: {labell: x}}", "groups[1].choker.params",
     "unexpected keyword argument 'labell'"),
])
def test_a_bad_policy_file_is_one_line_naming_the_group(
        tmp_path: Path, file_text: str | None, choker: str, key: str, fragment: str) -> None:
    if file_text is not None:
        policy_file(tmp_path / "mine.py", file_text)
    path = topology(tmp_path, choker)
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    assert info.value.key == key and fragment in str(info.value), str(info.value)
    assert info.value.line == 6 and "\n" not in str(info.value)


def test_the_peer_loads_a_relative_policy_file_from_its_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policy_file(tmp_path / "policies" / "mine.py")
    monkeypatch.chdir(tmp_path)
    choker = build_choker(PolicySpec(name="policies/mine.py:Everyone",
                                     params={"label": "x"}), seed=1)
    assert type(choker).__name__ == "Everyone"
    with pytest.raises(ConfigError, match="no such file"):
        build_choker(PolicySpec(name="policies/gone.py:Everyone"), seed=1)


def test_an_edited_policy_file_is_loaded_anew(tmp_path: Path) -> None:
    path = policy_file(tmp_path / "mine.py")
    first = load_policy_file(str(path))
    assert load_policy_file(str(path)) is first  # same bytes: one module
    path.write_text(CHOKER.replace('"everyone"', '"edited"'))
    second = load_policy_file(str(path))
    assert second is not first and second.Everyone().label == "edited"


# --- provenance -------------------------------------------------------------------------------


def test_the_run_directory_keeps_every_custom_policy_source(tmp_path: Path) -> None:
    policy_file(tmp_path / "study" / "mine.py")
    path = topology(tmp_path / "study", "./mine.py:Everyone")
    path.write_text(path.read_text()
                    + "  - {name: long, choker: peer.policies.examples:LongMemory}\n"
                    + "  - {name: tft, choker: bittyrant}\n")
    experiment = expand(load_topology(path))
    run = tmp_path / "run"
    run.mkdir()
    entries = record_policy_sources(run, experiment)
    by_name = {e["name"]: e for e in entries}
    assert set(by_name) == {"policies/mine.py:Everyone", "peer.policies.examples:LongMemory"}
    mine = by_name["policies/mine.py:Everyone"]
    assert mine["groups"] == ["mine"] and mine["kind"] == "choker"
    assert mine["source"] == str(tmp_path / "study" / "mine.py")
    assert (run / mine["copy"]).read_text() == CHOKER
    assert mine["sha256"] == hashlib.sha256(CHOKER.encode()).hexdigest()
    examples = by_name["peer.policies.examples:LongMemory"]
    assert examples["copy"] == "policies/peer.policies.examples.py"
    source = (ROOT / "peer" / "policies" / "examples.py").read_bytes()
    assert (run / examples["copy"]).read_bytes() == source
    assert examples["sha256"] == hashlib.sha256(source).hexdigest()


def test_built_in_policies_need_no_copy(tmp_path: Path) -> None:
    experiment = expand(load_topology(ROOT / "topologies" / "ci_small.yaml"))
    assert record_policy_sources(tmp_path, experiment) == []
    assert not (tmp_path / "policies").exists()


def fake_run(path: Path, policies: list[dict[str, object]] | None) -> Path:
    path.mkdir(parents=True)
    meta: dict[str, object] = {"schema": 1}
    if policies is not None:
        meta["policies"] = policies
    (path / "meta.json").write_text(json.dumps(meta))
    return path


def mine(sha: str) -> dict[str, object]:
    return {"kind": "choker", "name": "policies/mine.py:Everyone", "groups": ["mine"],
            "copy": "policies/mine.py", "sha256": sha}


def test_different_policy_sources_are_noted(tmp_path: Path) -> None:
    a = fake_run(tmp_path / "a", [mine("a" * 64)])
    b = fake_run(tmp_path / "b", [mine("b" * 64)])
    same = fake_run(tmp_path / "same", [mine("a" * 64)])
    assert policy_sources_of_run(a) == {"choker mine.py:Everyone": "a" * 64}
    assert different_policy_sources([a], [same]) == []
    (note,) = different_policy_sources([a], [b])
    assert "choker mine.py:Everyone has different sources" in note and "aaaaaaaaaaaa" in note
    (mixed,) = different_policy_sources([a, b], [a])
    assert "the baseline's runs used 2 different sources" in mixed
    builtin = fake_run(tmp_path / "builtin", [])
    assert "used only by the baseline" in different_policy_sources([a], [builtin])[0]
    old = fake_run(tmp_path / "old", None)
    assert "do not record their policy sources" in different_policy_sources([old], [a])[0]
    assert different_policy_sources([old], [builtin]) == []


def test_compare_warns_when_the_sets_ran_different_policy_sources(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def results_set(name: str, sha: str) -> Path:
        root = tmp_path / name
        reps = []
        for i in range(3):
            fake_run(root / f"rep-{i}", [mine(sha)])
            reps.append({"index": i, "seed": i, "run_dir": f"rep-{i}", "status": "completed",
                         "saturated": False, "metrics": {"median_completion": 10.0 + i}})
        (root / "results.json").write_text(json.dumps(
            {"schema": 1, "kind": "results_set", "name": name, "repetitions": reps}))
        return root

    base, cand = results_set("base", "a" * 64), results_set("cand", "b" * 64)
    assert main(["compare", str(base), str(cand)]) == 0
    out = capsys.readouterr().out
    assert "WARNING: choker mine.py:Everyone has different sources" in out


# --- end to end: the shipped example ----------------------------------------------------------


@pytest.mark.integration
def test_the_shipped_own_policy_example_validates_and_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example = ROOT / "topologies" / "own_policy.yaml"
    assert main(["validate", str(example)]) == 0
    run = tmp_path / "run"
    status = main(["run", str(example), "--out", str(run), "--quiet", "--no-analyze",
                   "--time-limit", "40"])
    assert status == 0, capsys.readouterr()
    meta = json.loads((run / "meta.json").read_text())
    (entry,) = meta["policies"]
    source = (ROOT / "topologies" / "last_round.py").read_bytes()
    assert entry["sha256"] == hashlib.sha256(source).hexdigest()
    assert (run / "policies" / "last_round.py").read_bytes() == source
    config = json.loads((run / "peers" / "mine-0.json").read_text())
    assert config["choker"]["name"] == "policies/last_round.py:LastRound"
    log = (run / "peers" / "mine-0.jsonl").read_text()
    assert "most sent last round" in log  # the peers really ran the researcher's choker


def test_the_guide_shows_the_shipped_example_as_it_is() -> None:
    source = (ROOT / "topologies" / "last_round.py").read_text()
    guide = (ROOT / "docs" / "policies.md").read_text()
    assert source[source.index("from __future__"):] in guide
