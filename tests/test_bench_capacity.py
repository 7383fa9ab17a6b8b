"""The pure helpers of bench/capacity.py and bench/idle_cost.py (no swarm is started)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psutil
import pytest

from bench.capacity import (
    d_p2p,
    descendants_cpu,
    first_reading_after,
    max_window_rate,
    parse_lt_peer_output,
    proc_cpu_times,
    run_start_of,
)
from bench.idle_cost import connections, cpu_in_window, idle_topology


def test_max_window_rate_takes_the_fastest_span_of_at_least_the_window() -> None:
    samples = [(float(t), total) for t, total in
               [(0, 0), (1, 100), (2, 200), (3, 1200), (4, 1300), (5, 1400), (6, 1500), (7, 1600)]]
    # spans of >= 5 s: 0-5 (1400/5 = 280), 1-6 (1400/5 = 280), 2-7 (1400/5 = 280)
    assert max_window_rate(samples, 5.0) == pytest.approx(280.0)
    # spans of >= 1 s: the burst between 2 and 3
    assert max_window_rate(samples, 1.0) == pytest.approx(1000.0)


def test_max_window_rate_needs_a_span_as_long_as_the_window() -> None:
    assert max_window_rate([(0.0, 0), (2.0, 100)], 5.0) == 0.0
    assert max_window_rate([], 5.0) == 0.0


def test_lt_peer_output_is_parsed_and_partial_lines_ignored() -> None:
    log = parse_lt_peer_output("ready\ngo 0.2500 100.0000\ns 101.0 10 20\ns 102.0 30 40\n"
                               "complete 102.5000\ncomplete 103.0\ns 103")
    assert (log.go_cpu, log.go_t, log.complete_t) == (0.25, 100.0, 102.5)
    assert log.down == [(101.0, 10), (102.0, 30)]
    assert log.up == [(101.0, 20), (102.0, 40)]


def test_d_p2p_of_the_flash_crowd_is_the_textbook_figure() -> None:
    assert d_p2p(16 << 20, 40) == pytest.approx(40 * 16 / 21)


def test_cpu_in_window_counts_only_samples_ending_inside_it() -> None:
    def sample(t: float, peer_cpu: float | None) -> dict:
        return {"t": t, "procs": {"tracker": {"cpu": 10.0}, "a": {"cpu": peer_cpu},
                                  "b": {"cpu": peer_cpu}}}
    samples = [sample(0.0, None), sample(1.0, 50.0), sample(2.0, 5.0), sample(3.0, 5.0)]
    cpu = cpu_in_window(samples, 1.0, 3.0)
    assert cpu["peers"] == pytest.approx(10.0)
    assert cpu["tracker"] == pytest.approx(10.0)


def test_connections_held_at_the_window_start_and_events_inside_it() -> None:
    log = [{"ev": "conn_open", "t": 1.0}, {"ev": "conn_open", "t": 2.0},
           {"ev": "conn_close", "t": 3.0, "peer": "x"},
           {"ev": "conn_close", "t": 3.5, "peer": None},  # a handshake that never completed
           {"ev": "conn_open", "t": 12.0},
           {"ev": "conn_close", "t": 30.0, "peer": "y", "reason": "shutdown"}]
    assert connections([log, []], 10.0, 40.0) == ([1, 0], {"open": 1})


def test_idle_topology_is_valid_and_starts_its_seed_only_at_the_end(tmp_path) -> None:
    from testbed.topology import load_topology

    path = tmp_path / "idle.yaml"
    path.write_text(idle_topology(200, 90))
    topology = load_topology(path)  # what testbed run accepts
    seed, leechers = topology.groups
    assert seed.role == "seed"
    assert leechers.count == 200 and topology.end.time_limit == 90
    assert "arrival: 89.5" in path.read_text()


def test_proc_cpu_times_of_a_live_and_a_gone_process() -> None:
    times = proc_cpu_times(os.getpid())
    assert times is not None and times[0] >= 0.0 and times[1] >= 0.0
    assert proc_cpu_times(2**22 + 1) is None  # above the kernel's pid_max: never a process


def test_tree_clients_name_each_checkout_and_refuse_other_directories(tmp_path) -> None:
    from bench.capacity import ROOT, tree_clients

    assert tree_clients([]) == {"testbed": ROOT}
    other = tmp_path / "old-tree"
    (other / "testbed").mkdir(parents=True)
    (other / "testbed" / "cli.py").write_text("")
    assert tree_clients([other]) == {"testbed@old-tree": other.resolve()}
    with pytest.raises(SystemExit, match="not a bt-testbed checkout"):
        tree_clients([tmp_path / "nothing"])


def test_the_count_ends_at_the_first_reading_after_the_last_completion() -> None:
    readings = [(10.0, {1: (1.0, 0.1)}), (10.25, {1: (1.2, 0.1)}), (10.5, {1: (1.5, 0.2)})]
    assert first_reading_after(readings, 10.1) == {1: (1.2, 0.1)}
    assert first_reading_after(readings, 10.25) == {1: (1.2, 0.1)}
    # Past every reading, or unknown (a leecher did not complete): the last reading counts.
    assert first_reading_after(readings, 11.0) == {}
    assert first_reading_after(readings, None) == {}


def test_start_up_is_read_from_every_process_under_the_run(tmp_path) -> None:
    assert run_start_of(tmp_path) is None
    (tmp_path / "meta.json").write_text(json.dumps({"run_start_monotonic": 123.5}))
    assert run_start_of(tmp_path) == 123.5
    sleeper = "import time; time.sleep(30)"
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; "
                               f"subprocess.run([sys.executable, '-c', {sleeper!r}])"])
    try:
        deadline = time.monotonic() + 10
        while len(cpu := descendants_cpu(os.getpid())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert parent.pid in cpu and len(cpu) >= 2  # the child and the grandchild
        assert all(user >= 0 and system >= 0 for user, system in cpu.values())
    finally:
        for child in psutil.Process(parent.pid).children(recursive=True):
            child.kill()
        parent.kill()
        parent.wait()
