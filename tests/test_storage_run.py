"""Which storage a run's peers use (topology ``content.storage``), and a real run of each."""

from __future__ import annotations

import json

import pytest

from testbed.topology import TopologyError, expand, parse_topology

BASE = "groups:\n  - {name: seed, role: seed}\n  - {name: l, count: 2}\n"
REAL = "  - {name: aria, command: 'aria2c {torrent}'}\n"


@pytest.mark.parametrize(("content", "groups", "storage"), [
    ("{size: 1MiB}", BASE, "synthetic"),
    ("{size: 1MiB, storage: auto}", BASE + REAL, "file"),
    ("{size: 1MiB, storage: file}", BASE, "file"),
    ("{size: 1MiB, storage: synthetic}", BASE, "synthetic"),
])
def test_storage_is_synthetic_unless_a_real_client_or_the_topology_says_file(
        content, groups, storage):
    experiment = expand(parse_topology(f"content: {content}\n{groups}"))
    assert experiment.content.storage == storage
    spec = experiment.content.storage_spec
    assert spec.kind == storage
    assert spec.content_seed == (experiment.content.seed if storage == "synthetic" else None)


@pytest.mark.parametrize(("content", "groups", "message"), [
    ("{size: 1MiB, storage: disk}", BASE, "content.storage: must be one of auto, file, synthetic"),
    ("{size: 1MiB, storage: synthetic}", BASE + REAL, "the real clients need one"),
])
def test_bad_storage_is_one_line_naming_the_key(content, groups, message):
    with pytest.raises(TopologyError, match=message):
        expand(parse_topology(f"content: {content}\n{groups}", file="t.yaml"))


@pytest.mark.integration
@pytest.mark.parametrize("storage", ["synthetic", "file"])
def test_a_run_records_its_storage_and_writes_the_content_only_for_file(tmp_path, storage):
    from testbed.cli import main

    topology = tmp_path / "t.yaml"
    topology.write_text(
        f"content: {{size: 512KiB, piece_size: 32KiB, storage: {storage}}}\n"
        "protocol: {unchoke_when_free: true}\n"
        "groups:\n  - {name: seed, role: seed, upload: 1MiB/s}\n"
        "  - {name: leecher, count: 2, upload: 512KiB/s}\n"
        "end: {all_complete: true, time_limit: 30}\n")
    out = tmp_path / "run"
    assert main(["run", str(topology), "--out", str(out), "--quiet", "--no-analyze"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["completed"], summary["verified"], summary["hash_failures"]) == (2, 2, 0)
    content_files = sorted(p.name for p in (out / "content").iterdir())
    assert content_files == (["content.bin"] if storage == "file" else [])
    assert json.loads((out / "experiment.json").read_text())["content"]["storage"] == storage
    expected = {"seed-0": "file", "leecher-0": "memory", "leecher-1": "memory"} \
        if storage == "file" else dict.fromkeys(("seed-0", "leecher-0", "leecher-1"),
                                                "synthetic")
    for name, kind in expected.items():
        config = json.loads((out / "peers" / f"{name}.json").read_text())
        assert config["storage"]["kind"] == ("file" if storage == "file" else "synthetic")
        with open(out / "peers" / f"{name}.jsonl") as log:
            start = json.loads(log.readline())
        assert (start["ev"], start["storage"]) == ("start", kind)
