"""Whole runs on a Dask cluster: ``--cluster tcp://HOST:8786`` of ``testbed sweep`` and ``testbed
run --repeat`` (docs/cluster.md). Imported only with ``--cluster``: without it, Dask is never
imported.

The same plan as ``--jobs`` (testbed.parallel), another executor: each task's ``remote`` form is
sent to a worker, which runs it exactly as ``testbed run`` would on that machine
(testbed.cluster_worker) and returns its run directory packed; the directory is unpacked where
the local run would have written it, the task's ``finish`` runs here on it (its analysis, as
after a local run), and ``on_done`` gets the same ``Finished`` as with ``--jobs``.

- Placement is done here, not by Dask: each run is pinned to one worker, at most
  ``runs_per_worker`` at once on each (a second one only while that worker's CPU is not
  saturated, measured there as ``--jobs`` measures it here). Workers that join during the plan
  are used once checked.
- Same code everywhere: every worker's testbed version and git commit must be this one's; a
  worker that differs is named and refused (at the start the plan does not start).
- A run lost with its worker (the worker left the scheduler, or was replaced by a new worker
  process at the same address) is re-queued once, on any worker; lost a second time it is
  recorded as failed: its run directory holds only a summary.json saying so.
- A run refused before it starts (exit 2 without a run directory, e.g. too little disk on the
  worker) stops the plan as it does locally: nothing more starts, the error is raised once the
  running ones have ended.
- Ctrl-C / SIGTERM: no further run starts and every running run is stopped as a local one would
  be (it ends ``interrupted`` and its directory still comes back); a second signal gives up on
  them (their tasks are cancelled and the workers kill them).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peer.errors import TestbedError
from testbed.cluster_worker import identity, run_on_worker, unpack
from testbed.parallel import (
    CPU_RECHECK_SECONDS,
    POLL_SECONDS,
    Cluster,
    Finished,
    Outcome,
    PlanResult,
    RemoteRun,
    Task,
    host_cpu_percent,
    plan_result,
    run_handling_stop_signals,
)
from testbed.rundir import write_json_atomic

CONNECT_TIMEOUT = 10.0
WORKER_WAIT_SECONDS = 60.0
"""How long a plan with runs left waits for a worker when none is there."""
ATTEMPTS = 2
"""A run lost with its worker is tried once more, then recorded as failed."""
_IDENTITY_KEYS = ("testbed_version", "git_commit", "source_sha256")


@dataclass(slots=True)
class _Running:
    index: int
    attempt: int
    worker: str
    worker_id: str
    future: Any
    started: float


def run_on_cluster(tasks: Sequence[Task], cluster: Cluster,
                   on_done: Callable[[Finished], None],
                   echo: Callable[[str], None] = print) -> PlanResult:
    """Run every task of the plan on ``cluster``'s workers (see the module's docstring)."""
    missing = [t.name for t in tasks if t.remote is None]
    if missing:
        raise ValueError(f"tasks without a remote form cannot run on a cluster: {missing}")
    remotes = [t.remote() for t in tasks if t.remote is not None]
    client = connect(cluster.address)
    try:
        return _ClusterPlan(tasks, remotes, cluster, client, on_done, echo).run()
    finally:
        with contextlib.suppress(Exception):
            client.close(timeout=5)


def connect(address: str) -> Any:
    """A Dask client of the scheduler at ``address``; a TestbedError naming it if unreachable."""
    from distributed import Client

    try:
        return Client(address, timeout=CONNECT_TIMEOUT,  # type: ignore[no-untyped-call]
                      set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise TestbedError(f"--cluster {address}: cannot reach the Dask scheduler ({exc}); "
                           "start one with 'dask scheduler' (docs/cluster.md)") from None


def describe(ident: dict[str, Any]) -> str:
    dirty = " with uncommitted changes" if ident.get("git_dirty") else ""
    return (f"testbed {ident.get('testbed_version')} at commit "
            f"{str(ident.get('git_commit'))[:12]}{dirty} (sources "
            f"{str(ident.get('source_sha256'))[:12]})")


def mismatch(local: dict[str, Any], remote: dict[str, Any]) -> str | None:
    """Why a worker with ``remote`` identity may not run this plan's runs, or None."""
    if all(local.get(k) == remote.get(k) for k in _IDENTITY_KEYS):
        return None
    return (f"has {describe(remote)} in {remote.get('root')} on {remote.get('hostname')}, "
            f"this checkout {describe(local)}: install the same code on every worker "
            "and restart it")


class _ClusterPlan:
    def __init__(self, tasks: Sequence[Task], remotes: Sequence[RemoteRun], cluster: Cluster,
                 client: Any, on_done: Callable[[Finished], None],
                 echo: Callable[[str], None]) -> None:
        self.tasks = tasks
        self.remotes = remotes
        self.per_worker = cluster.runs_per_worker
        self.client = client
        self.on_done = on_done
        self.echo = echo
        self.local = identity()
        self.stop_name = f"testbed-stop-{uuid.uuid4().hex}"
        self.pending: deque[tuple[int, int]] = deque((i, 1) for i in range(len(tasks)))
        self.running: dict[int, _Running] = {}
        self.finished: list[Finished] = []
        self.workers: dict[str, str] = {}
        """Usable workers: address -> the worker process's id (a new id: a new process)."""
        self.refused: set[str] = set()
        self.next_cpu_check: dict[str, float] = {}
        self.signals: list[int] = []
        self.forwarded = 0
        self.stopping = self.interrupted = False
        self.errors: list[str] = []
        self.no_worker_since: float | None = None

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> PlanResult:
        self._refresh_workers(first=True)
        run_handling_stop_signals(self._loop, self._on_signal, self._abandon)
        if self.errors:
            raise TestbedError(self.errors[0])
        return plan_result(self.finished, self.interrupted, self.signals)

    def _loop(self) -> None:
        while self.running or (self.pending and not self.stopping):
            self._forward_signals()
            self._refresh_workers()
            self._start_runs()
            self._collect()

    def _say(self, line: str) -> None:
        self.echo(line)
        sys.stdout.flush()

    def _label(self, index: int) -> str:
        return f"[{index + 1}/{len(self.tasks)}] {self.tasks[index].name}"

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.signals.append(signum)

    # -- workers ------------------------------------------------------------------------------

    def _refresh_workers(self, *, first: bool = False) -> None:
        """Check newcomers, forget workers that left, and re-queue the runs lost with them."""
        # Asked of the scheduler itself: the client's cached copy can lack the workers. A
        # worker's scratch folder is its process's own (a restarted worker gets a new one).
        info = self.client.sync(self.client.scheduler.identity, n_workers=-1)["workers"]
        current = {address: f"{w.get('name')} {w.get('local_directory')}"
                   for address, w in info.items()}
        for address in [a for a in self.workers if current.get(a) != self.workers[a]]:
            del self.workers[address]
            self.next_cpu_check.pop(address, None)
        newcomers = [a for a, wid in current.items()
                     if a not in self.workers and f"{a} {wid}" not in self.refused]
        if newcomers:
            self._admit(newcomers, current, first=first)
        for run in list(self.running.values()):
            if self.workers.get(run.worker) != run.worker_id:
                self._lost(run, f"worker {run.worker} left")
        self._wait_for_workers()

    def _admit(self, newcomers: list[str], current: dict[str, str], *, first: bool) -> None:
        try:
            identities = self.client.run(identity, workers=newcomers, on_error="return")
        except Exception as exc:  # a newcomer that is already gone: looked at again next time
            self._say(f"cannot ask new workers who they are: {exc!r}")
            return
        for address in sorted(newcomers):
            remote = identities.get(address)
            problem = (f"did not answer ({remote!r})" if not isinstance(remote, dict)
                       else mismatch(self.local, remote))
            if problem is None:
                self.workers[address] = current[address]
                if not first:
                    self._say(f"worker {address} joined")
                continue
            if first:
                raise TestbedError(f"--cluster: worker {address} {problem}")
            self.refused.add(f"{address} {current[address]}")
            self._say(f"worker {address} is not used: it {problem}")

    def _wait_for_workers(self) -> None:
        if self.workers or not self.pending or self.stopping:
            self.no_worker_since = None
            return
        now = time.monotonic()
        if self.no_worker_since is None:
            self.no_worker_since = now
            self._say(f"no worker: waiting up to {WORKER_WAIT_SECONDS:.0f} s for one to join")
        elif now - self.no_worker_since > WORKER_WAIT_SECONDS and not self.running:
            if not self.finished:
                raise TestbedError(f"--cluster: no usable worker joined the scheduler in "
                                   f"{WORKER_WAIT_SECONDS:.0f} s (start 'dask worker "
                                   "tcp://SCHEDULER:8786' on each machine, docs/cluster.md)")
            while self.pending:
                index, attempt = self.pending.popleft()
                self._record_failed(index, attempt, "no worker was left to run it", 0.0)

    def _worker_can_start(self, address: str) -> bool:
        busy = sum(1 for r in self.running.values() if r.worker == address)
        if busy >= self.per_worker:
            return False
        if busy == 0:
            return True
        if time.monotonic() < self.next_cpu_check.get(address, 0.0):
            return False
        try:
            cpu = self.client.run(host_cpu_percent, workers=[address])[address]
        except Exception:
            return False
        from testbed.resources import SATURATED_CPU

        if cpu <= SATURATED_CPU:
            return True
        self._say(f"worker {address}: host CPU {cpu:.0f}% is saturated: not starting another "
                  f"run there for now")
        self.next_cpu_check[address] = time.monotonic() + CPU_RECHECK_SECONDS
        return False

    # -- starting and collecting --------------------------------------------------------------

    def _start_runs(self) -> None:
        for address in sorted(self.workers):
            while self.pending and not self.stopping and self._worker_can_start(address):
                self._submit(*self.pending.popleft(), address)

    def _submit(self, index: int, attempt: int, address: str) -> None:
        remote = self.remotes[index]
        spec = {"topology_name": remote.topology_name, "topology_text": remote.topology_text,
                "policy_files": list(remote.policy_files), "seed": remote.seed,
                "time_limit": remote.time_limit, "launcher": remote.launcher}
        key = f"testbed-run-{self.stop_name[13:]}-{index}-{attempt}"
        future = self.client.submit(run_on_worker, spec, self.stop_name, key, key=key,
                                    workers=[address], allow_other_workers=False, pure=False)
        self.running[index] = _Running(index, attempt, address, self.workers[address], future,
                                       time.monotonic())
        again = " (second attempt)" if attempt > 1 else ""
        self._say(f"{self._label(index)}: started on {address}{again} "
                  f"({len(self.running)} running)")

    def _collect(self) -> None:
        time.sleep(POLL_SECONDS)
        for run in list(self.running.values()):
            if run.future.done():
                self._ended(run)

    def _ended(self, run: _Running) -> None:
        from distributed import KilledWorker

        seconds = time.monotonic() - run.started
        if run.future.status == "finished":
            del self.running[run.index]
            self._arrived(run, run.future.result(), seconds)
            return
        if run.future.status == "cancelled":
            self._lost(run, "its task was cancelled")
            return
        error = run.future.exception()
        if isinstance(error, KilledWorker | OSError):
            self._lost(run, f"{type(error).__name__}: {error}")
            return
        del self.running[run.index]
        self.errors.append(f"{self.tasks[run.index].name} on {run.worker}: {error!r}")
        self.stopping = True
        self._say(f"{self._label(run.index)}: error on {run.worker} after {seconds:.1f} s")

    def _arrived(self, run: _Running, result: dict[str, Any], seconds: float) -> None:
        from testbed.run import RunResult

        task = self.tasks[run.index]
        remote = self.remotes[run.index]
        if result["archive"] is None:
            lines = [line for line in result["output"].splitlines() if line.strip()]
            self.errors.append(f"{task.name} on {result['worker']} (exit "
                               f"{result['exit_status']}): "
                               f"{lines[-1] if lines else 'no run directory, no output'}")
            self.stopping = True
            self._say(f"{self._label(run.index)}: refused on {run.worker}")
            return
        unpack(result["archive"], remote.out)
        summary = _read_summary(remote.out)
        outcome = remote.finish(RunResult(remote.out, summary))
        self._done(Finished(run.index, task.name, outcome, seconds), f" on {run.worker}")

    def _done(self, done: Finished, where: str) -> None:
        self.finished.append(done)
        self._say(f"{self._label(done.index)}: {done.outcome.status}{where} after "
                  f"{done.seconds:.1f} s")
        if done.outcome.status == "interrupted":
            self.interrupted = self.stopping = True
        self.on_done(done)

    def _lost(self, run: _Running, why: str) -> None:
        self.running.pop(run.index, None)
        with contextlib.suppress(Exception):
            self.client.cancel(run.future)
        seconds = time.monotonic() - run.started
        if run.attempt < ATTEMPTS and not self.stopping:
            self.pending.appendleft((run.index, run.attempt + 1))
            self._say(f"{self._label(run.index)}: lost with its worker ({why}) after "
                      f"{seconds:.1f} s: re-queued")
            return
        self._record_failed(run.index, run.attempt, f"lost with its worker ({why}) on attempt "
                            f"{run.attempt} of {ATTEMPTS}", seconds)

    def _record_failed(self, index: int, attempts: int, why: str, seconds: float) -> None:
        """A run that never came back: its run directory holds only a summary.json saying why
        (so a sweep's table shows it failed, not missing)."""
        remote = self.remotes[index]
        with contextlib.suppress(FileExistsError):
            remote.out.mkdir(parents=True)
        write_json_atomic(remote.out / "summary.json",
                          {"status": "failed", "reason": f"cluster: {why}",
                           "cluster": {"attempts": attempts}})
        outcome = Outcome("failed", {"exit_status": 1, "error": why})
        self._done(Finished(index, self.tasks[index].name, outcome, seconds), f" ({why})")

    # -- stopping -----------------------------------------------------------------------------

    def _forward_signals(self) -> None:
        from distributed import Event

        while self.forwarded < len(self.signals):
            self.forwarded += 1
            name = signal.Signals(self.signals[self.forwarded - 1]).name
            self.stopping = True
            if self.forwarded == 1:
                self._say(f"{name}: stopping {len(self.running)} running run(s) on the "
                          "workers: no further run starts (again to give up on them)")
                stop = Event(self.stop_name, client=self.client)  # type: ignore[no-untyped-call]
                stop.set()  # type: ignore[no-untyped-call]
                continue
            self._say(f"{name} again: giving up on {len(self.running)} running run(s)")
            self._abandon()

    def _abandon(self) -> None:
        for run in self.running.values():
            with contextlib.suppress(Exception):
                self.client.cancel(run.future)
        self.running.clear()


def _read_summary(run_dir: Path) -> dict[str, Any]:
    import json

    try:
        summary: dict[str, Any] = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError) as exc:
        return {"status": "failed", "reason": f"cluster: no readable summary.json ({exc})",
                "cpu": {}}
    return summary
