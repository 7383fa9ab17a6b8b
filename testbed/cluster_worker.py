"""What a Dask worker does for ``--cluster`` (testbed.cluster, docs/cluster.md): run one run
exactly as ``testbed run`` runs it on that machine, and send its run directory back.

``run_on_worker`` is the task. It writes the topology text (and the policy files beside it) to a
scratch folder in the worker's local directory, runs ``python -m testbed.cli run TOPOLOGY --seed
S --out SCRATCH/run --quiet --no-analyze`` as a subprocess from the worker's own checkout (the
same project, checked by ``identity``), waits for it, and returns the run directory as tar.gz
bytes with the command's exit status and the end of its output. The scratch folder is removed
whatever happens.

Stopping. Every second the task looks at the plan's stop event (set by the client on Ctrl-C /
SIGTERM: the run gets SIGINT, ends ``interrupted`` and is shipped back like any other) and at
its own task (cancelled by the client when the run is given up: the run gets SIGTERM). The run
asks the kernel to kill it if the worker dies (``PR_SET_PDEATHSIG``), and its peers die with it,
so a lost worker leaves nothing running.

The analysis is not run here: the client runs it on the shipped directory, as after a local run.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The checkout the worker's testbed is installed from: the run's working directory."""
STOP_POLL_SECONDS = 1.0
OUTPUT_TAIL_BYTES = 4000


SOURCE_PACKAGES = ("peer", "tracker", "testbed", "analysis")


def identity() -> dict[str, Any]:
    """This installation's testbed version, git commit, a digest of its Python sources and
    Python: the client refuses workers whose testbed differs from its own (a run must be the
    same code wherever it runs; the digest also catches uncommitted changes, or a copy without
    git)."""
    from testbed.rundir import collect_meta

    meta = collect_meta(command=[], seed=0, started_at="", run_start_monotonic=None)
    return {"testbed_version": meta["testbed_version"], "git_commit": meta["git_commit"],
            "git_dirty": meta["git_dirty"], "source_sha256": source_digest(PROJECT_ROOT),
            "python": meta["python"], "hostname": meta["host"]["hostname"],
            "root": str(PROJECT_ROOT)}


def source_digest(root: Path) -> str:
    """SHA-256 over the path and bytes of every .py file of the testbed's packages."""
    import hashlib

    digest = hashlib.sha256()
    for package in SOURCE_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def run_command(spec: Mapping[str, Any], topology: Path, out: Path) -> list[str]:
    """The ``testbed run`` command line of one run (what a local sweep or --repeat runs)."""
    argv = [sys.executable, "-m", "testbed.cli", "run", str(topology), "--seed",
            str(spec["seed"]), "--out", str(out), "--quiet", "--no-analyze",
            "--launcher", str(spec["launcher"])]
    if spec["time_limit"] is not None:
        argv += ["--time-limit", repr(float(spec["time_limit"]))]
    return argv


def write_inputs(spec: Mapping[str, Any], folder: Path) -> Path:
    """The topology file and its policy files under ``folder``; returns the topology's path."""
    topology = folder / str(spec["topology_name"])
    folder.mkdir(parents=True, exist_ok=True)
    topology.write_text(str(spec["topology_text"]), encoding="utf-8")
    for relative, data in spec["policy_files"]:
        path = (folder / relative).resolve()
        if not path.is_relative_to(folder.resolve()):
            raise ValueError(f"policy file {relative!r} is outside the topology's folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return topology


def pack(run_dir: Path) -> bytes:
    """The run directory as tar.gz bytes (paths relative to it)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        tar.add(run_dir, arcname=".")
    return buffer.getvalue()


def unpack(archive: bytes, out: Path) -> None:
    """Recreate a packed run directory at ``out`` (which must not exist yet)."""
    out.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        tar.extractall(out, filter="data")


def run_on_worker(spec: Mapping[str, Any], stop_event: str, key: str) -> dict[str, Any]:
    """The Dask task ``key``: run ``spec`` (a ``RemoteRun`` as plain data) here; return the
    worker's
    address, the run's exit status, the tail of its output and its packed run directory (None
    if the run made none: it was refused before starting)."""
    from distributed import get_worker

    worker = get_worker()
    scratch = Path(tempfile.mkdtemp(prefix="testbed-run-", dir=worker.local_directory))
    try:
        topology = write_inputs(spec, scratch / "topology")
        out = scratch / "run"
        output_path = scratch / "output"
        with open(output_path, "wb") as output:
            code = _supervise(run_command(spec, topology, out), output, worker, stop_event,
                              key)
        tail = output_path.read_bytes()[-OUTPUT_TAIL_BYTES:].decode("utf-8", "replace")
        archive = pack(out) if out.is_dir() else None
        return {"worker": worker.address, "exit_status": code, "output": tail,
                "archive": archive}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _supervise(argv: Sequence[str], output: Any, worker: Any, stop_event: str,
              key: str) -> int:
    """Run ``argv`` to its end, passing on a stop (SIGINT) or a cancellation (SIGTERM)."""
    from distributed import Event

    from testbed.launch import set_parent_death_signal

    parent = os.getpid()
    process = subprocess.Popen(argv, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=output,
                               stderr=subprocess.STDOUT,
                               preexec_fn=lambda: set_parent_death_signal(parent))
    stop = Event(stop_event)  # type: ignore[no-untyped-call]
    sent: set[int] = set()
    try:
        while True:
            try:
                return process.wait(timeout=STOP_POLL_SECONDS)
            except subprocess.TimeoutExpired:
                pass
            for signum in _wanted_signals(worker, key, stop):
                if signum not in sent:
                    sent.add(signum)
                    process.send_signal(signum)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _wanted_signals(worker: Any, key: str, stop: Any) -> list[int]:
    """SIGTERM if this task was cancelled (or forgotten), SIGINT if the plan is stopping."""
    wanted: list[int] = []
    task = worker.state.tasks.get(key)
    if task is None or task.state in ("cancelled", "released"):
        wanted.append(signal.SIGTERM)
    try:
        if stop.is_set():
            wanted.append(signal.SIGINT)
    except Exception:  # the scheduler is unreachable for now: the run goes on
        pass
    return wanted
