"""Real BitTorrent clients in testbed swarms (docs/real-clients.md).

Unit tests (milliseconds): command templates, the topology's external groups, the file checker,
the info_hash computed ahead for an external tracker's whitelist.

Integration tests (real processes, a few seconds each, ``integration`` marker), each a whole
``testbed run`` of a small topology:
1. aria2c / libtorrent leechers download from testbed seeds through the testbed's tracker;
2. testbed leechers download from an aria2c / libtorrent seed;
3. testbed peers swarm through Debian's opentracker (``tracker.url``);
4. an external group's mechanics (placeholders, completion from the file, leaving after
   completion, a missing program) with a stand-in client written in Python, so they are tested
   on every machine.
A test needing a client that is not installed is skipped, naming what to install.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from real_client_helpers import (
    TOPOLOGIES,
    assert_all_complete,
    assert_every_piece_came_from_the_seed,
    assert_external_file_verifies,
    events,
    run_topology,
    shipped,
)

from peer.errors import TestbedError
from peer.metainfo import make_synthetic_torrent, verify_file
from testbed.external import (
    ExternalPeerPlan,
    FileChecker,
    check_template,
    experiment_info_hash,
    kib,
    missing_programs,
    opentracker_argv,
    render_command,
)
from testbed.run import RunOptions, execute_run
from testbed.topology import TopologyError, expand, load_topology, parse_topology

needs_aria2 = pytest.mark.skipif(shutil.which("aria2c") is None,
                                 reason="aria2c not installed (apt-get install aria2)")
needs_opentracker = pytest.mark.skipif(
    shutil.which("opentracker") is None,
    reason="opentracker not installed (apt-get install opentracker)")
try:
    import libtorrent  # noqa: F401

    HAVE_LIBTORRENT = True
except ImportError:
    HAVE_LIBTORRENT = False
needs_libtorrent = pytest.mark.skipif(
    not HAVE_LIBTORRENT,
    reason="libtorrent's Python bindings not installed (pip install libtorrent)")

BASE = """
content: {size: 2MiB, piece_size: 64KiB}
protocol: {rechoke_period: 2s, optimistic_period: 6s, unchoke_when_free: true,
           announce_interval: 2s}
tracker: {announce_interval: 2}
groups:
  - {name: seed, role: seed, upload: 2MiB/s}
"""


# --- unit: templates -------------------------------------------------------------------------


def test_template_placeholders_are_checked():
    assert check_template(["aria2c", "--dir={dir}", "{torrent}", "--x={{literal}}"]) is None
    assert "unknown placeholder {dri}" in check_template(["aria2c", "--dir={dri}"])
    assert "unknown placeholder" in check_template(["aria2c", "{port:05d}"])
    assert "cannot read" in check_template(["aria2c", "--dir={dir"])
    assert "empty" in check_template([])


def test_render_fills_every_placeholder_and_keeps_literal_braces():
    argv = render_command(["c", "--p={port}", "{dir}/x", "{{a}}"], {"port": 6881, "dir": "/d"})
    assert argv == ["c", "--p=6881", "/d/x", "{a}"]


def test_rates_become_whole_kib_rounded_up_and_zero_is_unlimited():
    assert kib(None) == 0
    assert kib(1024 * 1024) == 1024
    assert kib(1500) == 2
    assert kib(1) == 1


def test_missing_programs_ignores_placeholders():
    assert missing_programs([["{python}", "x.py"], ["no-such-client-xyz", "a"],
                             ["no-such-client-xyz"]]) == ["no-such-client-xyz"]


# --- unit: topology --------------------------------------------------------------------------


def test_external_group_expands_to_external_plans():
    topology = parse_topology(BASE + """
  - name: aria
    count: 2
    upload: 1MiB/s
    command: aria2c --dir={dir} --listen-port={port} '{torrent}'
""")
    experiment = expand(topology)
    aria = [p for p in experiment.peers if p.group == "aria"]
    assert len(aria) == 2 and all(isinstance(p, ExternalPeerPlan) for p in aria)
    assert aria[0].command == ("aria2c", "--dir={dir}", "--listen-port={port}", "{torrent}")
    assert aria[0].choker.name == "external:aria2c"
    assert aria[0].role == "leecher" and aria[0].upload.rate == 1024 * 1024
    assert not isinstance(experiment.peers[0], ExternalPeerPlan)
    record = experiment.to_json()["peers"][1]
    assert record["command"][0] == "aria2c"  # experiment.json says how the client was run


def test_external_group_as_list_and_as_the_only_seed():
    topology = parse_topology("""
content: {size: 1MiB}
groups:
  - {name: real_seed, role: seed, command: [aria2c, -V, "{torrent}"]}
  - {name: leecher}
""")
    plan = expand(topology).peers[0]
    assert isinstance(plan, ExternalPeerPlan) and plan.role == "seed"
    assert plan.command == ("aria2c", "-V", "{torrent}")


@pytest.mark.parametrize("group, key, message", [
    ("{name: a, command: 'aria2c --dir={dri}'}", "groups[1].command", "unknown placeholder"),
    ("{name: a, command: ''}", "groups[1].command", "empty"),
    ("{name: a, command: 42}", "groups[1].command", "must be the client's command line"),
    ("{name: a, command: aria2c, choker: bep3}", "groups[1].choker", "client's own choker"),
    ("{name: a, command: aria2c, protocol: {regular_slots: 2}}", "groups[1].protocol",
     "client's own protocol"),
])
def test_bad_external_groups_are_refused_with_the_key(group, key, message):
    with pytest.raises(TopologyError) as info:
        parse_topology(BASE + f"  - {group}\n", file="x.yaml")
    assert info.value.key == key
    assert message in info.value.message
    assert info.value.line == 8


def test_shipped_real_client_topologies_validate():
    for name in ("real_aria2", "real_aria2_seed", "real_libtorrent", "real_opentracker"):
        experiment = expand(load_topology(TOPOLOGIES / f"{name}.yaml"))
        assert experiment.peers


# --- unit: the file checker and the info_hash ahead of the run -------------------------------


def test_file_checker_finds_pieces_as_they_are_written(tmp_path):
    content, _, metainfo = make_synthetic_torrent(tmp_path / "src", size=5 * 16384 + 100,
                                                  seed=3, piece_length=16384,
                                                  announce="http://127.0.0.1:9/announce")
    data = content.read_bytes()
    target = tmp_path / "out.bin"
    checker = FileChecker(target, metainfo)
    assert checker.check() == []  # no file yet
    target.write_bytes(bytes(len(data)))  # preallocated with zeros, as clients do
    assert checker.check() == []
    with open(target, "r+b") as f:
        f.seek(2 * 16384)
        f.write(data[2 * 16384:3 * 16384])
        f.seek(5 * 16384)
        f.write(data[5 * 16384:])  # the short last piece
    assert checker.check() == [2, 5]
    assert checker.check() == []  # matched pieces are not hashed again
    target.write_bytes(data)
    assert checker.check() == [0, 1, 3, 4]
    assert checker.complete


def test_info_hash_ahead_of_the_run_matches_the_run_torrent(tmp_path):
    experiment = expand(load_topology(TOPOLOGIES / "real_opentracker.yaml"))
    spec = experiment.content
    _, _, metainfo = make_synthetic_torrent(tmp_path, size=spec.size, seed=spec.seed,
                                            piece_length=spec.piece_length,
                                            announce="http://127.0.0.1:1/x", name=spec.name)
    assert experiment_info_hash(experiment) == metainfo.info_hash


# --- 1. real clients download from testbed seeds ---------------------------------------------


@pytest.mark.integration
@needs_aria2
def test_aria2_leechers_download_from_a_testbed_swarm(tmp_path):
    run = tmp_path / "run"
    summary = run_topology(shipped("real_aria2"), run)
    assert_all_complete(summary, run)
    for peer in ("aria-0", "aria-1"):
        assert_external_file_verifies(run, peer)
        (start,) = events(run, peer, "start")
        assert start["external"] and start["command"][0] == "aria2c"
        assert len(events(run, peer, "piece")) == start["pieces"]
    # aria2c used the testbed peer id it was given (--peer-id-prefix={peer_id}), and served
    # testbed leechers while downloading: they name it in their logs.
    aria_ids = {"-TB0100-000000000004", "-TB0100-000000000005"}
    opened = {r["peer"] for p in ("leecher-0", "leecher-1", "leecher-2", "seed-0")
              for r in events(run, p, "conn_open")}
    assert aria_ids <= opened


@pytest.mark.integration
@needs_libtorrent
def test_libtorrent_leechers_download_from_a_testbed_swarm(tmp_path):
    run = tmp_path / "run"
    summary = run_topology(shipped("real_libtorrent"), run)
    assert_all_complete(summary, run)
    for peer in ("lt-0", "lt-1"):
        assert_external_file_verifies(run, peer)


# --- 2. testbed leechers download from a real seed -------------------------------------------


@pytest.mark.integration
@needs_aria2
def test_testbed_leechers_download_from_an_aria2_seed(tmp_path):
    run = tmp_path / "run"
    summary = run_topology(shipped("real_aria2_seed"), run)
    assert_all_complete(summary, run)
    assert_every_piece_came_from_the_seed(run, [f"leecher-{i}" for i in range(3)], pieces=64)


LT_SEED = """
content: {size: 3MiB, piece_size: 64KiB}
protocol: {rechoke_period: 2s, optimistic_period: 6s, unchoke_when_free: true,
           announce_interval: 2s}
tracker: {announce_interval: 2}
groups:
  - name: lt_seed
    role: seed
    upload: 2MiB/s
    command: >-
      {python} {repo}/bench/real_clients/lt_client.py --torrent {torrent} --dir {dir}
      --port {port} --peer-id={peer_id} --upload-kib {upload_rate_kib}
  - {name: leecher, count: 2, upload: 1MiB/s, arrival: 1s}
end: {time_limit: 60}
"""


@pytest.mark.integration
@needs_libtorrent
def test_testbed_leechers_download_from_a_libtorrent_seed(tmp_path):
    run = tmp_path / "run"
    summary = run_topology(LT_SEED, run)
    assert_all_complete(summary, run)
    assert_every_piece_came_from_the_seed(run, ["leecher-0", "leecher-1"], pieces=48)


# --- 3. testbed peers through Debian's opentracker -------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.integration
@needs_opentracker
def test_testbed_swarm_through_opentracker(tmp_path):
    port = free_port()
    text = shipped("real_opentracker").replace("127.0.0.1:6969", f"127.0.0.1:{port}")
    experiment = expand(parse_topology(text))
    # opentracker chroots into its directory and drops to nobody: a directory of its own,
    # readable by everyone, holding the whitelist with this run's info_hash.
    ot_dir = Path(tempfile.mkdtemp(prefix="opentracker-"))
    try:
        (ot_dir / "whitelist.txt").write_text(experiment_info_hash(experiment).hex() + "\n")
        os.chmod(ot_dir, 0o755)
        os.chmod(ot_dir / "whitelist.txt", 0o644)
        with open(tmp_path / "opentracker.out", "wb") as out:
            tracker = subprocess.Popen(opentracker_argv(port=port, directory=ot_dir),
                                       stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 5
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    assert tracker.poll() is None, (tmp_path / "opentracker.out").read_text()
                    assert time.monotonic() < deadline, "opentracker did not listen"
                    time.sleep(0.05)
            run = tmp_path / "run"
            summary = execute_run(experiment, text,
                                  RunOptions(out=run, quiet=True, launcher="local")).summary
        finally:
            tracker.terminate()
            tracker.wait(timeout=5)
    finally:
        shutil.rmtree(ot_dir, ignore_errors=True)
    assert_all_complete(summary, run)
    assert not (run / "tracker.jsonl").exists()  # the testbed's own tracker never started
    for peer in ("seed-0", *(f"leecher-{i}" for i in range(4))):
        announces = [r for r in events(run, peer, "announce") if r["event"] != "stopped"]
        assert announces and all(r["ok"] for r in announces), announces
        # opentracker's interval (about half an hour), not the testbed tracker's.
        assert all(r["interval"] > 600 for r in announces)
        # opentracker lists the asking peer too: a peer never connects to itself.
        (start,) = events(run, peer, "start")
        own = start["listen"]
        assert all(r["addr"] != own for r in events(run, peer, "conn_open"))
        assert all(r["reason"] != "self" for r in events(run, peer, "conn_close"))
    # opentracker includes the asker: the k-th started announce it handles lists k peers (the
    # earlier ones and itself), where the testbed's tracker would list k - 1.
    firsts = sorted(events(run, peer, "announce")[0]["peers"]
                    for peer in ("seed-0", *(f"leecher-{i}" for i in range(4))))
    assert firsts == [1, 2, 3, 4, 5], firsts


# --- 4. external groups with a stand-in client (no real client needed) -----------------------

# Copies the content to {file} piece by piece (a short pause between), like a client that
# downloads in random order, then stays "seeding" until told to stop.
STAND_IN = r"""
import os, random, signal, sys, time
# A real client exits cleanly when stopped at any moment, mid-download included (under load the
# run may stop it before the last piece is written).
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
src, dst, piece, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
print("stand-in: rate", rate, "KiB/s", flush=True)
data = open(src, "rb").read()
order = list(range((len(data) + piece - 1) // piece))
random.shuffle(order)
with open(dst, "wb") as f:
    f.truncate(len(data))
    for i in order:
        f.seek(i * piece)
        f.write(data[i * piece:(i + 1) * piece])
        f.flush()
        time.sleep(0.02)
while True:
    time.sleep(0.1)
"""


def stand_in_topology(tmp_path: Path, departure: str = "never") -> str:
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    return f"""
content: {{size: 1MiB, piece_size: 64KiB}}
protocol: {{announce_interval: 2s}}
groups:
  - {{name: seed, role: seed}}
  - name: fake
    count: 2
    upload: 100KiB/s
    departure: {departure}
    command: ["{{python}}", "{script}", "{{dir}}/../../content/content.bin", "{{file}}",
              "65536", "{{upload_rate_kib}}"]
end: {{time_limit: 30}}
"""


@pytest.mark.integration
def test_external_group_completion_comes_from_the_clients_file(tmp_path):
    run = tmp_path / "run"
    summary = run_topology(stand_in_topology(tmp_path), run)
    assert_all_complete(summary, run)
    for peer in ("fake-0", "fake-1"):
        assert_external_file_verifies(run, peer)
        pieces = events(run, peer, "piece")
        assert sorted(r["index"] for r in pieces) == list(range(16))
        (complete,) = events(run, peer, "complete")
        assert complete["t"] >= max(r["t"] for r in pieces)
        (stop,) = events(run, peer, "stop")
        assert stop["reason"] == "signal"  # stopped with the run, the client exiting cleanly
        out = (run / "peers" / f"{peer}.out").read_text()
        assert "stand-in: rate 100 KiB/s" in out  # {upload_rate_kib} reached the client
        config = json.loads((run / "peers" / f"{peer}.json").read_text())
        assert config["kind"] == "external"


@pytest.mark.integration
def test_external_peer_leaving_on_completion_stops_its_client(tmp_path):
    run = tmp_path / "run"
    summary = run_topology(stand_in_topology(tmp_path, departure="on_completion"), run)
    assert_all_complete(summary, run)
    for peer in ("fake-0", "fake-1"):
        (stop,) = events(run, peer, "stop")
        assert stop["reason"] == "left after completion"
        assert stop["client_exit"] == 0
        assert summary["exit_codes"][peer] == 0


def test_missing_client_program_stops_the_run_before_it_starts(tmp_path):
    text = BASE + "  - {name: x, command: 'no-such-bittorrent-client-xyz {torrent}'}\n"
    experiment = expand(parse_topology(text))
    with pytest.raises(TestbedError, match="no-such-bittorrent-client-xyz"):
        execute_run(experiment, text, RunOptions(out=tmp_path / "run", quiet=True))
    assert not (tmp_path / "run").exists()


def test_hash_of_a_real_torrent_file_is_what_verify_file_checks(tmp_path):
    # verify_file is the judge of every download above: make sure it can fail.
    content, _, metainfo = make_synthetic_torrent(tmp_path, size=100_000, seed=1,
                                                  piece_length=16384,
                                                  announce="http://127.0.0.1:9/announce")
    data = bytearray(content.read_bytes())
    data[20000] ^= 1
    content.write_bytes(bytes(data))
    assert verify_file(content, metainfo) == [1]
    assert hashlib.sha1(bytes(data[:16384])).digest() == metainfo.piece_hashes[0]
