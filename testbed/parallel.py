"""Several runs at once on one machine: ``--jobs J`` of ``testbed sweep`` and ``testbed run
--repeat``.

A plan is a list of tasks, each one run: a function that runs it (``testbed.run.execute_run``,
then its analysis) and returns an ``Outcome``. ``run_plan`` runs them and hands every finished
one to ``on_done`` (in finishing order, so a results table can be rewritten as runs end), then
returns them in plan order.

- One job: the tasks run one after the other in this process, exactly as before ``--jobs``.
- J > 1: each task runs in its own forked child process, at most J at once, so runs never share
  a trio loop or a fork server. A run directory does not depend on who ran it: same layout, same
  seed, same files as a sequential run. The children run without live progress; this process
  prints one line when a run starts and one when it ends (name, status, wall time).

The host CPU guard. These swarms use little CPU (a 41-peer swarm at 20-200 kB/s about 0.2 core),
but their times only mean something while the host has CPU to spare (testbed.resources). So
before starting another run while some are running, the host CPU is measured over one second;
above ``resources.SATURATED_CPU`` the scheduler says so, waits, and measures again. With none of
its runs running it starts the next one regardless, as a sequential run would: waiting cannot
free CPU that others use.

On a cluster. ``run_plan(..., cluster=Cluster(address))`` hands the same plan to
``testbed.cluster``, which runs each task's ``remote`` form (the run as ``testbed run`` on a
Dask worker) and then its ``finish`` here, on the run directory shipped back: the same
``on_done`` calls, the same ``PlanResult`` (docs/cluster.md). Dask is imported only then.

Stopping. Each child runs in its own session, so a Ctrl-C in the terminal reaches only this
process, which forwards SIGINT / SIGTERM once to every running run: each stops its processes
and writes summary.json with status ``interrupted``, exactly as ``testbed run`` does. No further
run starts. A second signal is forwarded again (the runs then kill their processes at once). A
SIGKILLed scheduler takes its runs with it (``PR_SET_PDEATHSIG``), and they take their peers.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peer.errors import TestbedError
from testbed.launch import exit_forked_child

if TYPE_CHECKING:
    from testbed.experiment import Experiment
    from testbed.run import RunResult

CPU_RECHECK_SECONDS = 5.0
"""How long to wait before measuring the host CPU again when it was saturated."""
POLL_SECONDS = 0.2
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a task reports: its run's status (summary.json's ``status``) and anything picklable
    the caller wants back in this process."""

    status: str
    value: Any = None


@dataclass(frozen=True, slots=True)
class RemoteRun:
    """One run as a cluster worker runs it (testbed.cluster): ``testbed run`` of this topology
    text (with the policy files beside it) and seed, into a directory on the worker that is
    shipped back to ``out``; then ``finish`` here, exactly as after the run in this process."""

    topology_name: str
    """The topology file's name: the worker writes the text under it (the run's default name
    is the file's stem)."""
    topology_text: str
    policy_files: tuple[tuple[str, bytes], ...]
    """(path relative to the topology's folder, content) of every policy file it names."""
    seed: int
    time_limit: float | None
    launcher: str
    out: Path
    finish: Callable[[RunResult], Outcome]


@dataclass(frozen=True, slots=True)
class Task:
    """One run of a plan: a name for the progress lines and the function that runs it (and,
    to run it on a cluster, the same run described for a worker)."""

    name: str
    work: Callable[[], Outcome]
    remote: Callable[[], RemoteRun] | None = None
    """Made only for a cluster, before anything starts (it reads the policy files)."""


@dataclass(frozen=True, slots=True)
class Cluster:
    """``--cluster ADDRESS`` and ``--runs-per-worker N``: where to send the runs of a plan."""

    address: str
    runs_per_worker: int = 1


def remote_run(experiment: Experiment, topology_file: str | Path, topology_text: str,
               out: Path, *, time_limit: float | None, launcher: str,
               finish: Callable[[RunResult], Outcome]) -> RemoteRun:
    """The ``RemoteRun`` of one run of ``experiment``. Policy files go with it; one outside the
    topology's folder cannot (the worker recreates that folder, not the whole file system)."""
    base = Path(topology_file).parent.resolve()
    files = []
    for _copy, source in experiment.policy_files:
        path = Path(source).resolve()
        if not path.is_relative_to(base):
            raise TestbedError(f"{source}: a policy file outside the topology's folder {base}/ "
                               "cannot be sent to a cluster worker: move it beside the topology")
        try:
            files.append((path.relative_to(base).as_posix(), path.read_bytes()))
        except OSError as exc:
            raise TestbedError(f"{source}: cannot read: {exc.strerror}") from None
    return RemoteRun(topology_name=Path(topology_file).name, topology_text=topology_text,
                     policy_files=tuple(files), seed=experiment.seed, time_limit=time_limit,
                     launcher=launcher, out=out.absolute(), finish=finish)


@dataclass(frozen=True, slots=True)
class Finished:
    index: int
    """The task's place in the plan."""
    name: str
    outcome: Outcome
    seconds: float
    """Wall time from start to end (the run, its analysis and, with J > 1, the fork)."""


@dataclass(frozen=True, slots=True)
class PlanResult:
    finished: list[Finished]
    """In plan order; tasks that never started (or were lost) are absent."""
    interrupted: bool
    """A stop signal reached the scheduler, or a run ended ``interrupted``."""
    signal: int | None
    """The signal that stopped the plan (with J > 1; one job leaves it to the run itself)."""


def run_handling_stop_signals(loop: Callable[[], None], on_signal: Callable[[int, Any], None],
                              abandon: Callable[[], None]) -> None:
    """Run a scheduler's ``loop`` with SIGINT/SIGTERM sent to ``on_signal``; the previous
    handlers come back either way. On any exception ``abandon`` first: whatever went wrong, no
    run may outlive the scheduler's interest in it."""
    previous = {s: signal.signal(s, on_signal) for s in _STOP_SIGNALS}
    try:
        loop()
    except BaseException:
        abandon()
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def plan_result(finished: list[Finished], interrupted: bool, signals: list[int]) -> PlanResult:
    """The runs in plan order; interrupted if asked to stop or a signal came."""
    finished.sort(key=lambda f: f.index)
    first = signals[0] if signals else None
    return PlanResult(finished, interrupted or bool(signals), first)


def add_jobs_argument(parser: Any, what: str) -> None:
    """``--jobs J`` (default 1), the same for every command that runs a plan."""
    parser.add_argument("--jobs", type=count_argument("runs"), default=1, metavar="J",
                        help=f"run up to J {what} at once, each in its own process, never "
                        "starting one while the host CPU is saturated (default 1: one after "
                        "the other, with live progress)")


def add_cluster_arguments(parser: Any, what: str) -> None:
    """``--cluster ADDRESS`` and ``--runs-per-worker N`` (testbed.cluster, docs/cluster.md)."""
    parser.add_argument("--cluster", metavar="ADDRESS",
                        help=f"send the {what} to the workers of the Dask scheduler at ADDRESS "
                        "(tcp://HOST:8786), each run whole on one worker (docs/cluster.md)")
    parser.add_argument("--runs-per-worker", type=count_argument("runs"), metavar="N",
                        help="with --cluster: up to N runs at once on each worker, never "
                        "starting one while that worker's CPU is saturated (default 1)")


def cluster_of(args: Any) -> Cluster | None:
    """The ``Cluster`` that ``--cluster`` / ``--runs-per-worker`` name, or None; a
    ``TestbedError`` (exit 2) for a combination that means nothing."""
    if args.cluster is None:
        if args.runs_per_worker is not None:
            raise TestbedError("--runs-per-worker is for --cluster runs: give --cluster too")
        return None
    if args.jobs != 1:
        raise TestbedError("--jobs runs several at once here, --cluster on the cluster's "
                           "workers: give one of them")
    address = args.cluster if "://" in args.cluster else f"tcp://{args.cluster}"
    return Cluster(address, args.runs_per_worker or 1)


def count_argument(what: str) -> Callable[[str], int]:
    """An argparse ``type`` for a whole number >= 1; the error names ``what`` it counts."""

    def parse(text: str) -> int:
        import argparse

        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of {what} >= 1")
        return value

    return parse


def host_cpu_percent() -> float:
    """Host CPU that competes with a run, in percent of all cores, over the next second (blocks
    for that second): lower-priority work is left out, as the runs' own guard does."""
    from testbed.resources import HostCpu

    host = HostCpu()
    time.sleep(1.0)
    return host.read()[2]


def run_plan(tasks: Sequence[Task], *, jobs: int = 1,
             on_done: Callable[[Finished], None] | None = None,
             echo: Callable[[str], None] = print,
             cpu_probe: Callable[[], float] | None = None,
             cpu_recheck: float = CPU_RECHECK_SECONDS,
             cluster: Cluster | None = None) -> PlanResult:
    """Run every task, at most ``jobs`` at once (or on ``cluster``'s workers, every task then
    needing its ``remote`` form); stop starting new ones once a run is interrupted.
    ``cpu_probe`` measures the host CPU (percent of all cores) for the guard (default
    ``host_cpu_percent``)."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if cluster is not None:
        from testbed.cluster import run_on_cluster

        return run_on_cluster(tasks, cluster, on_done or _ignore, echo)
    if jobs == 1:
        return _run_in_process(tasks, on_done or _ignore)
    return _Scheduler(tasks, jobs, on_done or _ignore, echo, cpu_probe or host_cpu_percent,
                      cpu_recheck).run()


def _ignore(_: Finished) -> None:
    pass


def _run_in_process(tasks: Sequence[Task], on_done: Callable[[Finished], None]) -> PlanResult:
    finished = []
    for index, task in enumerate(tasks):
        start = time.monotonic()
        outcome = task.work()
        done = Finished(index, task.name, outcome, time.monotonic() - start)
        finished.append(done)
        on_done(done)
        if outcome.status == "interrupted":
            return PlanResult(finished, True, None)
    return PlanResult(finished, False, None)


# ---------------------------------------------------------------------------------------------
# J > 1: forked children


@dataclass(slots=True)
class _Child:
    index: int
    pid: int
    fd: int
    """The read end of the pipe the child sends its pickled report through."""
    started: float
    data: list[bytes] = field(default_factory=list)


class _Scheduler:
    def __init__(self, tasks: Sequence[Task], jobs: int, on_done: Callable[[Finished], None],
                 echo: Callable[[str], None], cpu_probe: Callable[[], float],
                 cpu_recheck: float) -> None:
        from testbed.resources import SATURATED_CPU

        self.tasks = tasks
        self.jobs = jobs
        self.on_done = on_done
        self.echo = echo
        self.cpu_probe = cpu_probe
        self.cpu_recheck = cpu_recheck
        self.threshold = SATURATED_CPU
        self.pending = deque(range(len(tasks)))
        self.running: dict[int, _Child] = {}
        self.finished: list[Finished] = []
        self.signals: list[int] = []
        self.forwarded = 0
        self.stopping = False
        self.interrupted = False
        self.errors: list[tuple[str, bool, str]] = []
        self.next_cpu_check = 0.0
        self.waiting_since: float | None = None

    def run(self) -> PlanResult:
        run_handling_stop_signals(self._loop, self._on_signal, self._abandon)
        self._raise_child_errors()
        return plan_result(self.finished, self.interrupted, self.signals)

    def _say(self, line: str) -> None:
        self.echo(line)
        sys.stdout.flush()  # a CI log shows each start and end when it happens

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.signals.append(signum)  # acted on by the loop: never fork or kill in a handler

    def _loop(self) -> None:
        while True:
            self._forward_signals()
            if self.pending and not self.stopping and len(self.running) < self.jobs \
                    and self._cpu_allows_start():
                self._start(self.pending.popleft())
                continue
            if not self.running:
                return
            self._collect(self._poll_timeout())

    def _poll_timeout(self) -> float:
        if self.pending and not self.stopping and len(self.running) < self.jobs:
            return max(0.0, min(POLL_SECONDS, self.next_cpu_check - time.monotonic()))
        return POLL_SECONDS

    # -- the CPU guard ------------------------------------------------------------------------

    def _cpu_allows_start(self) -> bool:
        if not self.running:
            self.waiting_since = None
            return True
        now = time.monotonic()
        if now < self.next_cpu_check:
            return False
        cpu = self.cpu_probe()
        if cpu <= self.threshold:
            if self.waiting_since is not None:
                self._say(f"host CPU {cpu:.0f}%: starting again after waiting "
                          f"{time.monotonic() - self.waiting_since:.0f} s")
                self.waiting_since = None
            return True
        if self.waiting_since is None:
            self.waiting_since = now
            index = self.pending[0]
            self._say(f"host CPU {cpu:.0f}% is above {self.threshold:.0f}% (saturated): not "
                      f"starting {self._label(index)} while {len(self.running)} run(s) go on; "
                      f"checking again every {self.cpu_recheck:g} s")
        self.next_cpu_check = time.monotonic() + self.cpu_recheck
        return False

    # -- starting and collecting --------------------------------------------------------------

    def _label(self, index: int) -> str:
        return f"[{index + 1}/{len(self.tasks)}] {self.tasks[index].name}"

    def _start(self, index: int) -> None:
        read_fd, write_fd = os.pipe()
        parent = os.getpid()
        others = [child.fd for child in self.running.values()]
        # What is still buffered here would otherwise be written a second time by the child.
        sys.stdout.flush()
        sys.stderr.flush()
        # Blocked across the fork, so that a signal cannot reach the child while it still has
        # this process's handlers; the child installs its own, then unblocks.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                for fd in (read_fd, *others):
                    os.close(fd)
                _child_main(self.tasks[index], write_fd, parent)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        os.close(write_fd)
        self.running[index] = _Child(index, pid, read_fd, time.monotonic())
        self._say(f"{self._label(index)}: started ({len(self.running)} running)")

    def _collect(self, timeout: float) -> None:
        by_fd = {child.fd: child for child in self.running.values()}
        readable, _, _ = select.select(list(by_fd), [], [], timeout)
        for fd in readable:
            child = by_fd[fd]
            chunk = os.read(fd, 1 << 16)
            if chunk:
                child.data.append(chunk)
            else:
                self._end(child)

    def _end(self, child: _Child) -> None:
        os.close(child.fd)
        _, wait_status = os.waitpid(child.pid, 0)
        del self.running[child.index]
        seconds = time.monotonic() - child.started
        name = self.tasks[child.index].name
        report = _decode(b"".join(child.data), wait_status)
        if report[0] == "error":
            _, is_testbed, message = report
            self.errors.append((name, is_testbed, message))
            self.stopping = True
            self._say(f"{self._label(child.index)}: error after {seconds:.1f} s")
            return
        outcome: Outcome = report[1]
        done = Finished(child.index, name, outcome, seconds)
        self.finished.append(done)
        self._say(f"{self._label(child.index)}: {outcome.status} after {seconds:.1f} s")
        if outcome.status == "interrupted":
            self.interrupted = self.stopping = True
        self.on_done(done)

    # -- stopping -----------------------------------------------------------------------------

    def _forward_signals(self) -> None:
        while self.forwarded < len(self.signals):
            signum = self.signals[self.forwarded]
            self.forwarded += 1
            self.stopping = True
            again = " again: killing at once" if self.forwarded > 1 else \
                ": no further run starts (again to kill at once)"
            self._say(f"{signal.Signals(signum).name}: stopping {len(self.running)} running "
                      f"run(s){again}")
            for child in self.running.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signum)

    def _abandon(self) -> None:
        for child in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)
        for child in self.running.values():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child.pid, 0)
            os.close(child.fd)
        self.running.clear()

    def _raise_child_errors(self) -> None:
        if not self.errors:
            return
        name, is_testbed, message = self.errors[0]
        if is_testbed:
            raise TestbedError(f"{name}: {message}")
        raise RuntimeError(f"run {name!r} failed in its child process:\n{message}")


def _decode(data: bytes, wait_status: int) -> tuple[Any, ...]:
    """The child's report, or a ``failed`` outcome for a child that died without one."""
    if data:
        try:
            report: tuple[Any, ...] = pickle.loads(data)
            return report
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError):
            pass
    if os.WIFSIGNALED(wait_status):
        how = f"killed by {signal.Signals(os.WTERMSIG(wait_status)).name}"
    else:
        how = f"exited with code {os.waitstatus_to_exitcode(wait_status)}"
    return ("ok", Outcome("failed", {"error": f"the run's process {how} without a report"}))


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _child_main(task: Task, write_fd: int, parent: int) -> None:
    """In the forked child: run the task, send the pickled report, exit. Never returns."""
    code = 1
    try:
        from testbed.launch import set_parent_death_signal

        os.setsid()  # a Ctrl-C in the terminal reaches the scheduler only, which forwards it
        set_parent_death_signal(parent)
        # Until the run's own signal receiver takes over (and after it lets go), a stop
        # signal ends the task as Ctrl-C would.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _interrupt)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        report = _run_task(task)
        for signum in _STOP_SIGNALS:  # the report must get out whole
            signal.signal(signum, signal.SIG_IGN)
        try:
            payload = pickle.dumps(report)
        except Exception as exc:
            payload = pickle.dumps(("error", False, f"the run's report cannot be sent: {exc!r}"))
        with open(write_fd, "wb", closefd=True) as pipe:
            pipe.write(payload)
        code = 0
    finally:
        exit_forked_child(code)


def _run_task(task: Task) -> tuple[Any, ...]:
    try:
        return ("ok", task.work())
    except KeyboardInterrupt:
        return ("ok", Outcome("interrupted", None))
    except BaseException as exc:
        is_testbed = isinstance(exc, TestbedError)
        return ("error", is_testbed, str(exc) if is_testbed else traceback.format_exc())
