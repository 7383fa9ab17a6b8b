"""testbed.cluster: the pieces without Dask (identity checks, packing, the worker's inputs and
command, the CLI's refusals), that a plan without --cluster never imports Dask, and then real
processes: a ``dask scheduler`` on 127.0.0.1 and two ``dask worker`` processes bound to
127.0.0.2 and 127.0.0.3, running a sweep across both and surviving a worker killed mid-run."""

from __future__ import annotations

import contextlib
import json
import os
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
    assert main(["run", "topologies/ci_small.yaml", "--cluster", "127.0.0.1:1"]) == 2
    assert "give --repeat K too" in capsys.readouterr().err
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
    (PYTHONPATH), each in its own session; all stopped at the end, whatever happened."""
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

    try:
        start("scheduler", [*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                            "--no-dashboard", "--idle-timeout", "300"])
        for i, host in enumerate(WORKER_HOSTS):
            start(f"worker{i}", [*dask, "worker", address, "--host", host, "--nthreads", "1",
                                 "--no-nanny", "--no-dashboard", "--name", f"w{i}",
                                 "--local-directory", str(base / f"w{i}"),
                                 "--death-timeout", "30"])
        client = Client(address, timeout=60, set_as_default=False)
        try:
            client.wait_for_workers(len(WORKER_HOSTS), timeout=60)
        finally:
            client.close()
        yield address, processes, base
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
    address, _, _ = dask_cluster
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


@pytest.mark.integration
def test_a_run_lost_with_its_worker_is_run_again_on_the_other(dask_cluster, tmp_path, capsys):
    from testbed import regress

    address, processes, base = dask_cluster
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
