"""testbed.cluster: the pieces without Dask (identity checks, packing, the worker's inputs and
command, the CLI's refusals), that a plan without --cluster never imports Dask, and then real
processes: a ``dask scheduler`` on 127.0.0.1 and two ``dask worker`` processes bound to
127.0.0.2 and 127.0.0.3, running a sweep across both and surviving a worker killed mid-run."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from peer.errors import TestbedError
from testbed.cli import main
from testbed.cluster_worker import pack, run_command, unpack, write_inputs
from testbed.parallel import Cluster, cluster_of, remote_run

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------------------------
# without Dask


def test_identity_mismatch_names_what_differs():
    from testbed.cluster import mismatch

    local = {"testbed_version": "0.1.0", "git_commit": "a" * 40, "source_sha256": "1" * 64,
             "root": "/src", "hostname": "here"}
    assert mismatch(local, dict(local)) is None
    other = {**local, "source_sha256": "2" * 64, "git_dirty": True, "hostname": "there"}
    message = mismatch(local, other)
    assert message is not None
    assert "on there" in message and "sources 222222222222" in message
    assert "with uncommitted changes" in message and "restart it" in message


def test_a_run_directory_packs_and_unpacks_whole(tmp_path):
    run = tmp_path / "run"
    (run / "peers").mkdir(parents=True)
    (run / "summary.json").write_text('{"status": "completed"}')
    (run / "peers" / "seed-0.jsonl").write_bytes(b"x" * 100_000)
    archive = pack(run)
    assert len(archive) < 2_000  # compressed
    unpack(archive, tmp_path / "back")
    assert (tmp_path / "back" / "peers" / "seed-0.jsonl").read_bytes() == b"x" * 100_000
    assert json.loads((tmp_path / "back" / "summary.json").read_text())["status"] == "completed"
    with pytest.raises(FileExistsError):  # a run directory is never overwritten
        unpack(archive, tmp_path / "back")


def test_the_worker_writes_the_topology_and_its_policy_files_and_nothing_outside(tmp_path):
    spec = {"topology_name": "mine.yaml", "topology_text": "name: x\n",
            "policy_files": [("policies/choker.py", b"class C: pass\n")], "seed": 5,
            "time_limit": 12.5, "launcher": "fork"}
    topology = write_inputs(spec, tmp_path / "topology")
    assert topology == tmp_path / "topology" / "mine.yaml"
    assert (tmp_path / "topology" / "policies" / "choker.py").read_bytes() == b"class C: pass\n"
    argv = run_command(spec, topology, tmp_path / "run")
    assert argv[:5] == [sys.executable, "-m", "testbed.cli", "run", str(topology)]
    assert argv[5:] == ["--seed", "5", "--out", str(tmp_path / "run"), "--quiet",
                        "--no-analyze", "--launcher", "fork", "--time-limit", "12.5"]
    with pytest.raises(ValueError, match="outside"):
        write_inputs({**spec, "policy_files": [("../evil.py", b"")]}, tmp_path / "t2")
    assert not (tmp_path / "evil.py").exists()


def test_policy_files_go_with_a_remote_run_only_from_beside_the_topology(tmp_path):
    from testbed.topology import expand, load_topology

    (tmp_path / "topo").mkdir()
    (tmp_path / "topo" / "mine.py").write_text((ROOT / "topologies/last_round.py").read_text())
    text = (ROOT / "topologies/own_policy.yaml").read_text()
    (tmp_path / "topo" / "own.yaml").write_text(text.replace("./last_round.py", "./mine.py"))
    topology = load_topology(tmp_path / "topo" / "own.yaml")
    experiment = expand(topology)
    remote = remote_run(experiment, topology.file, topology.text, tmp_path / "out",
                        time_limit=None, launcher="fork", finish=lambda r: None)  # type: ignore
    assert [name for name, _ in remote.policy_files] == ["mine.py"]
    assert remote.topology_name == "own.yaml" and remote.seed == experiment.seed
    with pytest.raises(TestbedError, match="outside the topology's folder"):
        remote_run(experiment, tmp_path / "elsewhere" / "own.yaml", topology.text,
                   tmp_path / "out", time_limit=None, launcher="fork",
                   finish=lambda r: None)  # type: ignore


def test_placement_is_a_pure_even_function_of_workers_groups_and_seed():
    from testbed.placement import PlacementError, WorkerInfo, place

    workers = [WorkerInfo(f"tcp://10.0.0.{i}:9000", f"w{i}", f"10.0.0.{i}") for i in (1, 2, 3)]
    peers = [("seed-0", "seed")] + [(f"l-{i}", "l") for i in range(7)]
    placed = place(workers, peers, {}, seed=0)
    assert place(list(reversed(workers)), peers, {}, seed=0) == placed  # order-free
    counts = sorted(sum(w == v for v in placed.values()) for w in workers)
    assert counts == [2, 3, 3]  # spread evenly
    assert place(workers, peers, {}, seed=1) != placed  # the seed rotates the start
    named = place(workers, peers, {"seed": ["w3"], "l": ["10.0.0.1", "tcp://10.0.0.2:9000"]}, 0)
    assert named["seed-0"].name == "w3"
    assert sorted(named[f"l-{i}"].name for i in range(7)) == ["w1"] * 4 + ["w2"] * 3
    with pytest.raises(PlacementError, match="group 'l': placement names worker 'w9'"):
        place(workers, peers, {"l": ["w9"]}, 0)
    with pytest.raises(PlacementError, match="no workers"):
        place([], peers, {}, 0)


@pytest.mark.parametrize(("address", "expected"), [
    ("tcp://10.0.0.5:8786", ("10.0.0.5", 8786)), ("10.0.0.5:9000", ("10.0.0.5", 9000)),
    ("tcp://10.0.0.5", ("10.0.0.5", 8786)), ("tcp://[::1]:9000", ("::1", 9000)),
    ("tcp://[::1]", ("::1", 8786)), ("scheduler.lan", ("scheduler.lan", 8786))])
def test_a_dask_address_gives_its_host_and_port(address, expected):
    from testbed.placement import host_port

    assert host_port(address) == expected


def test_the_placement_key_is_checked_like_the_others(tmp_path):
    from testbed.topology import TopologyError, load_topology

    base = "content: {size: 1MiB}\ngroups:\n  - {name: s, role: seed}\n  - name: l\n"
    path = tmp_path / "t.yaml"
    path.write_text(base + "    placement: [w0, w1]\n")
    assert load_topology(path).groups[1].placement == ("w0", "w1")
    for value, message in (("[]", "got an empty list"), ("[w0, w0]", "named twice"),
                           ("[w0, 3]", "placement[1]: must be a worker's name")):
        path.write_text(base + f"    placement: {value}\n")
        with pytest.raises(TopologyError, match=re.escape(message)):
            load_topology(path)


def test_a_split_swarm_refuses_what_it_cannot_ship(tmp_path):
    from testbed.cluster_swarm import check_splittable
    from testbed.topology import load_experiment

    check_splittable(load_experiment(ROOT / "topologies/ci_small.yaml"))
    path = tmp_path / "file.yaml"
    path.write_text((ROOT / "topologies/ci_small.yaml").read_text().replace(
        "piece_size: 64KiB}", "piece_size: 64KiB, storage: file}"))
    with pytest.raises(TestbedError, match="storage: synthetic"):
        check_splittable(load_experiment(path))


def test_cluster_options_that_mean_nothing_are_refused(capsys):
    class Args:
        cluster: str | None = "10.0.0.5:8786"
        runs_per_worker: int | None = None
        jobs = 1

    assert cluster_of(Args()) == Cluster("tcp://10.0.0.5:8786", 1)
    Args.jobs = 2
    with pytest.raises(TestbedError, match="give one of them"):
        cluster_of(Args())
    Args.cluster, Args.jobs, Args.runs_per_worker = None, 1, 2
    with pytest.raises(TestbedError, match="give --cluster too"):
        cluster_of(Args())
    assert main(["run", "topologies/ci_small.yaml", "--cluster", "x:1", "--runs-per-worker",
                 "2"]) == 2
    assert "one swarm is split across the workers" in capsys.readouterr().err
    assert main(["run", "topologies/ci_small.yaml", "--tracker-host", "10.0.0.1"]) == 2
    assert "give --cluster without --repeat" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sweep", "topologies/ci_small.yaml", "--param", "seed=1", "--cluster", "x",
              "--runs-per-worker", "0"])
    assert "'0' is not a number of runs >= 1" in capsys.readouterr().err


def test_an_unreachable_scheduler_is_one_line(tmp_path, capsys, monkeypatch):
    pytest.importorskip("distributed")
    import testbed.cluster

    monkeypatch.setattr(testbed.cluster, "CONNECT_TIMEOUT", 1.0)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(["run", "topologies/ci_small.yaml", "--repeat", "2", "--out",
                 str(tmp_path / "set"), "--cluster", f"127.0.0.1:{port}"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"--cluster tcp://127.0.0.1:{port}: cannot reach the Dask scheduler" in err


def test_a_plan_without_cluster_never_imports_dask(tmp_path):
    # A separate interpreter: this one may have imported Dask for the tests below.
    script = """
import sys
from pathlib import Path
from testbed.cli import build_parser
from testbed import sweep
from testbed.parallel import Outcome, Task, run_plan
build_parser().parse_args(["sweep", "x.yaml", "--param", "seed=1"])
for jobs in (1, 2):
    plan = run_plan([Task("a", lambda: Outcome("completed")),
                     Task("b", lambda: Outcome("completed"))], jobs=jobs,
                    echo=lambda _: None, cpu_probe=lambda: 0.0)
    assert [f.outcome.status for f in plan.finished] == ["completed"] * 2
from testbed.topology import load_topology
sweep.plan_sweep(load_topology("topologies/ci_small.yaml"),
                 [sweep.parse_param("groups[leecher].count=2,3")])
print(sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed")))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# a real scheduler and two real workers on this machine

TINY = """\
name: cluster_tiny
seed: 3
content: {size: 512KiB, piece_size: 32KiB}
protocol: {unchoke_when_free: true}
groups:
  - name: seed
    role: seed
    upload: 2MiB/s
  - name: leecher
    count: 2
    upload: 512KiB/s
end: {all_complete: true, time_limit: 60}
"""
WORKER_HOSTS = ("127.0.0.2", "127.0.0.3")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    for signum, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace)
            return


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """A scheduler on 127.0.0.1 and workers on 127.0.0.2 and 127.0.0.3, running this checkout
    (PYTHONPATH), each in its own session; all stopped at the end, whatever happened. Yields
    (address, processes, base folder, restart_worker(i))."""
    pytest.importorskip("distributed")
    from distributed import Client

    base = tmp_path_factory.mktemp("dask")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    dask = [sys.executable, "-m", "dask"]
    processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(name: str, argv: list[str]) -> None:
        with open(base / f"{name}.log", "wb") as log:
            processes[name] = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log,
                                               stderr=subprocess.STDOUT,
                                               start_new_session=True)

    def start_worker(i: int) -> None:
        start(f"worker{i}", [*dask, "worker", address, "--host", WORKER_HOSTS[i], "--nthreads",
                             "1", "--no-nanny", "--no-dashboard", "--name", f"w{i}",
                             "--local-directory", str(base / f"w{i}"), "--death-timeout", "30"])

    def wait_for_workers() -> None:
        client = Client(address, timeout=60, set_as_default=False)
        try:
            client.wait_for_workers(len(WORKER_HOSTS), timeout=60)
        finally:
            client.close()

    def restart_worker(i: int) -> None:
        """A killed worker back, for the tests after the one that killed it."""
        _stop(processes[f"worker{i}"])
        start_worker(i)
        wait_for_workers()

    try:
        start("scheduler", [*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                            "--no-dashboard", "--idle-timeout", "300"])
        for i in range(len(WORKER_HOSTS)):
            start_worker(i)
        wait_for_workers()
        yield address, processes, base, restart_worker
    finally:
        for process in processes.values():
            _stop(process)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _gone(path_part: str) -> bool:
    """No process on this machine has ``path_part`` in its command line."""
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(path_part in arg for arg in process.info["cmdline"] or ()):
                return False
    return True


@pytest.mark.integration
def test_a_sweep_across_two_workers_gives_the_table_of_a_local_sweep(dask_cluster, tmp_path,
                                                                   capsys):
    address, _, _, _ = dask_cluster
    topology = tmp_path / "tiny.yaml"
    topology.write_text(TINY)
    out = tmp_path / "sweep"
    code = main(["sweep", str(topology), "--param", "groups[leecher].count=2,3", "--repeat", "2",
                 "--quiet", "--out", str(out), "--cluster", address])
    printed = capsys.readouterr().out
    assert code == 0, printed
    for host in WORKER_HOSTS:  # both workers ran some
        assert f"started on tcp://{host}:" in printed
    sweep = json.loads((out / "sweep.json").read_text())
    assert [r["status"] for r in sweep["rows"]] == ["completed"] * 4
    assert [(r["leechers"], r["seed"]) for r in sweep["rows"]] == [(2, 3), (2, 4), (3, 3),
                                                                   (3, 4)]
    # The same point run here, one at a time: same table columns, same files, same experiment.
    local = tmp_path / "local"
    assert main(["sweep", str(topology), "--param", "groups[leecher].count=2", "--quiet",
                 "--out", str(local)]) == 0
    local_sweep = json.loads((local / "sweep.json").read_text())
    assert list(local_sweep["rows"][0]) == list(sweep["rows"][0])
    assert (out / "sweep.csv").read_text().split("\n")[0] == \
        (local / "sweep.csv").read_text().split("\n")[0]
    first, here = out / sweep["runs"][0]["dir"], local / local_sweep["runs"][0]["dir"]
    assert _files(first) == _files(here)
    assert (first / "experiment.json").read_text() == (here / "experiment.json").read_text()


def _start_lines(run_dir: Path) -> dict[str, dict]:
    starts = {}
    for log in (run_dir / "peers").glob("*.jsonl"):
        for line in log.read_text().splitlines():
            record = json.loads(line)
            if record["ev"] == "start":
                starts[record["name"]] = record
    return starts


@pytest.mark.integration
def test_one_swarm_split_across_two_workers_is_a_local_run_s_directory(dask_cluster, tmp_path,
                                                                      capsys):
    from analysis import load_run

    address, _, _, _ = dask_cluster
    topology = tmp_path / "tiny.yaml"
    topology.write_text(TINY.replace("count: 2", "count: 3"))
    split = tmp_path / "split"
    code = main(["run", str(topology), "--cluster", address, "--out", str(split), "--quiet",
                 "--no-analyze"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "lost" not in printed  # agents that end when closed are not lost workers
    summary = json.loads((split / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["completed"] == 3
    assert summary["cluster"]["losses"] == [] and summary["crashes"] == {}
    record = json.loads((split / "cluster.json").read_text())
    hosts = {w["address"]: w["host"] for w in record["workers"]}
    assert sorted(hosts.values()) == list(WORKER_HOSTS)
    assert sorted(len(peers) for peers in record["placement"].values()) == [2, 2]
    # Each peer listened on its worker's address, and every connection came from one.
    starts = _start_lines(split)
    for worker, peers in record["placement"].items():
        for name in peers:
            assert starts[name]["listen"].rsplit(":", 1)[0] == hosts[worker]
    addrs = {line.split('"addr":"')[1].split(":")[0]
             for log in (split / "peers").glob("*.jsonl") for line in log.read_text().splitlines()
             if '"addr":"' in line}
    assert addrs and addrs <= set(WORKER_HOSTS)
    for offset in record["clock_offsets"].values():  # one machine: one clock
        assert abs(offset["offset"]) <= offset["error"] + 0.005
    assert set(summary["cluster"]["cpu"]) == set(record["placement"])
    # The same topology run here: the same files, plus the cluster's own record.
    local = tmp_path / "local"
    assert main(["run", str(topology), "--out", str(local), "--quiet", "--no-analyze"]) == 0
    extra = {"cluster.json"} | {f"cluster/resources-w{i}.jsonl" for i in range(2)}
    assert _files(split) == _files(local) | extra
    run, here = load_run(split), load_run(local)
    assert run.warnings == [] and len(run.peers) == 4
    assert list(run.peers.columns) == list(here.peers.columns)
    assert len(run.pieces) == len(here.pieces)  # every leecher got every piece, both times


@pytest.mark.integration
def test_a_worker_lost_mid_swarm_takes_its_peers_and_the_run_goes_on(dask_cluster, tmp_path,
                                                                     capsys):
    address, processes, base, restart_worker = dask_cluster
    topology = tmp_path / "doomed.yaml"
    topology.write_text(TINY.replace("upload: 2MiB/s", "upload: 256KiB/s\n    placement: w1")
                        .replace("  - name: leecher\n    count: 2\n",
                                 "  - name: stay\n    placement: w1\n"
                                 "  - name: doomed\n    count: 2\n    placement: w0\n"))
    out = tmp_path / "run"
    killed: list[float] = []

    def kill_w0_once_its_peers_log() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            log = out / "peers" / "doomed-0.jsonl"
            if log.is_file() and log.stat().st_size:
                os.kill(processes["worker0"].pid, signal.SIGKILL)
                killed.append(time.monotonic())
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_w0_once_its_peers_log, daemon=True)
    killer.start()
    try:
        code = main(["run", str(topology), "--cluster", address, "--out", str(out), "--quiet",
                     "--no-analyze"])
        killer.join(5)
        printed = capsys.readouterr()
        assert killed, printed
        assert code == 0, printed
        assert "worker tcp://127.0.0.2:" in printed.out and "2 peer(s) on it departed" in \
            printed.out
        summary = json.loads((out / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["crashes"] == {}
        assert summary["completion_times"].keys() == {"stay-0"}
        assert summary["exit_codes"]["doomed-0"] == summary["exit_codes"]["doomed-1"] == -9
        [loss] = summary["cluster"]["losses"]
        assert loss["worker"].startswith("tcp://127.0.0.2:")
        assert loss["peers"] == ["doomed-0", "doomed-1"]
        start = json.loads((out / "meta.json").read_text())["run_start_monotonic"]
        assert killed[0] - start <= loss["t"] <= killed[0] - start + 3  # seen within seconds
        assert json.loads((out / "cluster.json").read_text())["losses"] == [loss]
        # Nothing of the swarm is left on either worker (the lost one's peers died with it).
        deadline = time.monotonic() + 10
        while not _gone(str(base / "w0")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _gone("testbed-swarm-")
    finally:
        restart_worker(0)


@pytest.mark.integration
def test_a_run_lost_with_its_worker_is_run_again_on_the_other(dask_cluster, tmp_path, capsys):
    from testbed import regress

    address, processes, base, _ = dask_cluster
    topology = tmp_path / "slow.yaml"  # a few seconds, time to kill its worker mid-run
    topology.write_text(TINY.replace("upload: 2MiB/s", "upload: 128KiB/s"))
    killed: list[str] = []

    def kill_the_worker_running_it() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for i in range(len(WORKER_HOSTS)):
                logs = list((base / f"w{i}").glob("**/testbed-run-*/run/peers/*.jsonl"))
                if logs:
                    scratch = str(logs[0].parent.parent.parent)
                    os.kill(processes[f"worker{i}"].pid, signal.SIGKILL)  # not its runs
                    killed.append(scratch)
                    return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_the_worker_running_it, daemon=True)
    killer.start()
    root, status = regress.run_repeated(topology, repeat=1, seed=3, out=tmp_path / "set",
                                        runs_root=tmp_path, quiet=True,
                                        cluster=Cluster(address))
    killer.join(5)
    printed = capsys.readouterr().out
    assert killed, printed
    assert "lost with its worker" in printed and "re-queued" in printed
    assert "started on" in printed and "(second attempt)" in printed
    assert status == 0, printed
    results = json.loads((root / "results.json").read_text())
    assert [r["status"] for r in results["repetitions"]] == ["completed"]
    # The killed worker's run and its peers died with it (PR_SET_PDEATHSIG), leaving nothing.
    deadline = time.monotonic() + 10
    while not _gone(killed[0]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _gone(killed[0])


# ---------------------------------------------------------------------------------------------
# the plan's bookkeeping with a fake client: workers that vanish under their runs


class _FakeFuture:
    def __init__(self) -> None:
        self.status = "pending"

    def done(self) -> bool:
        return self.status != "pending"


class _VanishingWorkers:
    """A scheduler whose workers each vanish once a run is placed on them, and never return."""

    def __init__(self, count: int) -> None:
        from testbed.cluster_worker import identity

        self.me = identity()
        self.workers = {f"tcp://10.0.0.{i}:9000": {"name": f"w{i}", "local_directory": f"/d{i}"}
                        for i in range(count)}
        self.submitted: list[str] = []
        self.scheduler = type("Rpc", (), {"identity": None})()

    def sync(self, _method, **_kw):
        return {"workers": dict(self.workers)}

    def run(self, _function, workers, **_kw):
        return {address: self.me for address in workers}

    def submit(self, _function, *_args, key, workers, **_kw):
        self.submitted.append(workers[0])
        del self.workers[workers[0]]
        return _FakeFuture()

    def cancel(self, future):
        future.status = "cancelled"


def test_a_run_lost_twice_is_recorded_failed_and_the_plan_goes_on(tmp_path, monkeypatch):
    import testbed.cluster as cluster
    from testbed.parallel import Outcome, RemoteRun, Task

    monkeypatch.setattr(cluster, "POLL_SECONDS", 0.0)
    monkeypatch.setattr(cluster, "WORKER_WAIT_SECONDS", 0.0)
    remote = RemoteRun(topology_name="t.yaml", topology_text="", policy_files=(), seed=1,
                       time_limit=None, launcher="fork", out=tmp_path / "rep-0",
                       finish=lambda r: Outcome("completed"))
    client = _VanishingWorkers(2)
    lines: list[str] = []
    done = []
    plan = cluster._ClusterPlan([Task("rep-0", lambda: Outcome("completed"), lambda: remote)],
                                [remote], Cluster("tcp://x:1"), client, done.append,
                                lines.append).run()
    assert len(client.submitted) == 2 and len(set(client.submitted)) == 2  # once per worker
    assert [f.outcome.status for f in plan.finished] == ["failed"] and done == plan.finished
    assert "re-queued" in lines[1] and "(second attempt)" in lines[2]
    summary = json.loads((tmp_path / "rep-0" / "summary.json").read_text())
    assert summary["status"] == "failed" and "attempt 2 of 2" in summary["reason"]
