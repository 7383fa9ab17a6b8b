"""The orchestrator: run one expanded experiment as real processes, then write summary.json.

``execute_run`` is the whole of ``testbed run`` after the topology was validated and expanded:
it creates the run directory (docs/run-directory.md), makes the content and the .torrent,
starts the tracker, starts each peer at its arrival time and stops or kills it at its
departure, follows every peer's event log, samples resources, ends on the end condition, the
time limit, a signal, a stall (testbed.stall) or a write error (testbed.diskspace), stops every
process (SIGTERM, then SIGKILL after a grace period, the tracker last) and writes summary.json
last, atomically, into room reserved for it when the run started. The tracker's own life (its
death, planned outages) is testbed.tracker_control's; the summary's contents testbed.summary's.

Time: t = 0 (``run_start`` on the system-wide monotonic clock, handed to every process) is
the instant the peers arriving at t = 0 arrive. The tracker and those testbed peers are started
ahead of it, by ``start_lead`` seconds estimated from how many there are, and the peers wait
for t = 0 before they announce or dial: a flash crowd arrives together instead of one peer
after another over the seconds that starting hundreds of processes takes, and that start-up's
CPU is not in the experiment's (the saturation guard judges t > 0). Real clients, which cannot
wait, and later arrivals are started at their arrival time.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import trio

from peer.errors import TestbedError
from peer.eventlog import EXIT_WRITE_FAILED
from peer.units import format_size
from testbed.diskspace import (
    LOW_SPACE,
    SummaryReserve,
    check_free_space,
    describe_write_error,
    free_bytes,
    summary_reserve_size,
)
from testbed.experiment import Experiment
from testbed.external import ExternalPeerPlan, missing_programs
from testbed.launch import (
    ForkServerLauncher,
    Launcher,
    LaunchError,
    LocalLauncher,
    ProcessHandle,
    ServedLauncher,
    is_remote,
    start_lead,
    stop_grace_for,
    was_lost,
)
from testbed.peer_watch import LogTail, PeerState
from testbed.progress import Mode, Progress, ProgressState, choose_mode
from testbed.provenance import record_policy_sources
from testbed.resources import ResourceSampler
from testbed.run_inputs import make_content, set_announce, write_peer_configs
from testbed.rundir import RunDir, collect_meta, create_run_dir, utc_now_iso, write_json_atomic
from testbed.stall import DEFAULT_GRACE, Stall, StallWatch, missing_pieces
from testbed.summary import build_summary
from testbed.tracker_control import Outage, RunFailed, TrackerControl

Status = Literal["completed", "timed_out", "stalled", "interrupted", "failed"]
LauncherKind = Literal["fork", "local"]


@dataclass(frozen=True, slots=True)
class Commands:
    """How to start the tracker and a peer. Tests substitute small fake scripts."""

    python: str = sys.executable
    peer: tuple[str, ...] = ("-m", "peer")
    tracker: tuple[str, ...] = ("-m", "tracker")
    external: tuple[str, ...] = ("-m", "testbed.external")
    """The supervisor of one real client (docs/real-clients.md)."""

    def peer_argv(self, config: str) -> list[str]:
        return [self.python, *self.peer, "--config", config]

    def external_argv(self, config: str) -> list[str]:
        return [self.python, *self.external, "--config", config]

    def tracker_argv(self, args: Sequence[str]) -> list[str]:
        return [self.python, *self.tracker, *args]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    out: Path | None = None
    runs_root: Path = Path("runs")
    time_limit: float | None = None
    """Overrides the topology's time limit."""
    progress: Mode | None = None
    """None: a live line on a terminal, plain lines otherwise."""
    quiet: bool = False
    launcher: LauncherKind = "fork"
    command: tuple[str, ...] = ()
    tracker_timeout: float = 15.0
    stop_grace: float | None = None
    """Seconds stopping processes get before SIGKILL (None: ``stop_grace_for`` them)."""
    poll_period: float = 0.5
    sample_period: float = 1.0
    stall_grace: float = DEFAULT_GRACE
    """Seconds pieces must be missing from every live peer before the run is ``stalled``."""


def failure_message(exc: BaseException) -> str | None:
    """The one line for a run that failed with ``exc`` (possibly a group from a nursery), or
    None if it is a bug (an internal error, with its traceback)."""
    leaves: list[BaseException] = []
    stack = [exc]
    while stack:
        e = stack.pop()
        if isinstance(e, BaseExceptionGroup):
            stack.extend(reversed(e.exceptions))
        else:
            leaves.append(e)
    if not leaves or not all(isinstance(e, RunFailed | LaunchError | TestbedError | OSError)
                             for e in leaves):
        return None
    first = leaves[0]
    return describe_write_error(first) if isinstance(first, OSError) else str(first)


class Orchestrator:
    def __init__(self, experiment: Experiment, run: RunDir, options: RunOptions,
                 commands: Commands, meta: dict[str, Any],
                 launcher: Launcher | None = None) -> None:
        self.experiment = experiment
        self.run = run
        self.options = options
        self.commands = commands
        self.meta = meta
        self.peers = [PeerState(plan, LogTail(run.peer_log(plan.name)))
                      for plan in experiment.peers]
        self.launcher: Launcher
        if launcher is not None:  # another machine's processes (testbed.cluster_swarm)
            self.launcher = launcher
        elif options.launcher == "fork":
            self.launcher = ForkServerLauncher(output_path=run.launcher_out)
        else:
            self.launcher = LocalLauncher()
        self.run_start: float | None = None
        self.start_lead = 0.0
        """Seconds the tracker and the testbed peers arriving at t = 0 are started ahead of it."""
        self.tracker_outages: tuple[Outage, ...] = experiment.tracker_outages
        self.num_pieces: int | None = None
        self.stall_watch: StallWatch | None = None
        self.stall: Stall | None = None
        self.status: Status | None = None
        self.reason = ""
        self.signal_received: int | None = None
        self.end_t: float | None = None
        self._body_scope = trio.CancelScope()
        self._hurry = trio.Event()
        self.sampler = ResourceSampler(run.resources)
        mode = options.progress or choose_mode(options.quiet)
        self.progress = Progress("quiet" if options.quiet else mode)
        self._rate_window: deque[tuple[float, int]] = deque()
        self.crashes: dict[str, int] = {}
        self.tracker = TrackerControl(
            launcher=self.launcher, run=run, experiment=experiment,
            argv=commands.tracker_argv, now=self.now, say=self.progress.message,
            timeout=options.tracker_timeout)

    # -- the clock ----------------------------------------------------------------------------

    def now(self) -> float:
        assert self.run_start is not None
        return time.monotonic() - self.run_start

    async def sleep_until(self, t: float) -> None:
        assert self.run_start is not None
        # trio's clock has a per-process offset; convert from the shared monotonic clock.
        await trio.sleep_until(trio.current_time() + (self.run_start + t - time.monotonic()))

    # -- ending -------------------------------------------------------------------------------

    def end(self, status: Status, reason: str) -> None:
        """Decide how the run ends (the first decision wins) and stop the run's body."""
        if self.status is None:
            self.status = status
            self.reason = reason
            self.end_t = max(0.0, self.now()) if self.run_start is not None else 0.0
        self._body_scope.cancel()

    @property
    def leechers(self) -> list[PeerState]:
        return [p for p in self.peers if p.plan.role == "leecher"]

    def check_end(self) -> None:
        if not self.experiment.end.all_complete:
            return
        if all(p.complete_t is not None or p.gone for p in self.leechers):
            done = sum(p.complete_t is not None for p in self.leechers)
            total = len(self.leechers)
            if done == total:
                self.end("completed", "every leecher completed")
            else:
                self.end("completed", f"every leecher completed or left ({done}/{total} "
                         "completed)")

    # -- the run ------------------------------------------------------------------------------

    async def main(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as outer:
                outer.start_soon(self._watch_signals, signals)
                try:
                    with self._body_scope:
                        if isinstance(self.launcher, ServedLauncher):
                            await outer.start(self.launcher.run)
                        await self._body()
                except BaseException as exc:
                    message = failure_message(exc)
                    if message is None:
                        self.end("failed", f"internal error: {exc!r}")
                        raise
                    self.end("failed", message)
                finally:
                    with trio.CancelScope(shield=True):
                        await self._shutdown()
                        await self.launcher.aclose()
                        self._read_logs()
                        self.sampler.close()
                        self.progress.close()
                    outer.cancel_scope.cancel()

    async def _watch_signals(self, signals: Any) -> None:
        async for signum in signals:
            if self.signal_received is None:
                self.signal_received = signum
                name = signal.Signals(signum).name
                self.progress.message(f"{name}: stopping every process (again to kill at once)")
                self.end("interrupted", f"received {name}")
            else:
                self._hurry.set()

    async def _body(self) -> None:
        content, torrent, metainfo = await trio.to_thread.run_sync(
            make_content, self.experiment, self.run)
        self.num_pieces = metainfo.num_pieces
        self.stall_watch = StallWatch(metainfo.num_pieces, self.options.stall_grace)
        if isinstance(self.launcher, ServedLauncher):
            await self.launcher.wait_ready()

        ahead = sum(self._starts_ahead(state) for state in self.peers)
        self.start_lead = start_lead(ahead, os.cpu_count() or 1,
                                     forked=not isinstance(self.launcher, LocalLauncher))
        self.run_start = time.monotonic() + self.start_lead
        self.meta["run_start_monotonic"] = self.run_start
        self.meta["start_lead"] = round(self.start_lead, 3)
        write_json_atomic(self.run.meta, self.meta)
        if self.experiment.tracker_url is None:
            port = await self.tracker.start(torrent, self.run_start)
            tracker_url = f"http://{self.experiment.tracker_host}:{port}/announce"
            set_announce(torrent, metainfo, tracker_url)
        else:
            tracker_url = self.experiment.tracker_url

        write_peer_configs(self.experiment, self.run, (state.plan for state in self.peers),
                           torrent, content, tracker_url, self.run_start)
        time_limit = (self.options.time_limit if self.options.time_limit is not None
                      else self.experiment.end.time_limit)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._schedule, nursery)
            nursery.start_soon(self._poll_logs)
            nursery.start_soon(self._sample_resources)
            if self.tracker.handle is not None:
                nursery.start_soon(self.tracker.watch)
                if self.tracker_outages:
                    nursery.start_soon(self.tracker.run_outages, self.tracker_outages,
                                       self.sleep_until, self._stop, nursery)
            if time_limit is not None:
                nursery.start_soon(self._time_limit, time_limit)
            self.check_end()
            await trio.sleep_forever()

    @staticmethod
    def _starts_ahead(state: PeerState) -> bool:
        """A testbed peer arriving at t = 0 is started ahead of it and waits for it."""
        return state.plan.arrival == 0 and not isinstance(state.plan, ExternalPeerPlan)

    async def _time_limit(self, limit: float) -> None:
        await self.sleep_until(limit)
        self._read_logs()
        self.check_end()
        if self.experiment.end.all_complete:
            self.end("timed_out", f"time limit of {limit:g} s reached before every leecher "
                     "completed")
        else:
            self.end("completed", f"time limit of {limit:g} s reached")

    async def _schedule(self, nursery: trio.Nursery) -> None:
        """Start each peer at its arrival, signal it at its departure, in time order."""
        events: list[tuple[float, int, int, str]] = []
        for i, state in enumerate(self.peers):
            plan = state.plan
            events.append((-self.start_lead if self._starts_ahead(state) else plan.arrival,
                           0, i, "start"))
            if plan.departure.kind in ("at", "killed") and plan.departure.time is not None:
                action = "term" if plan.departure.kind == "at" else "kill"
                events.append((plan.departure.time, 1, i, action))
        events.sort()
        k = 0
        while k < len(events):
            t = events[k][0]
            await self.sleep_until(t)
            # Peers arriving together are launched together: a flash crowd's requests go to
            # the fork server back to back instead of one round trip at a time.
            async with trio.open_nursery() as batch:
                while k < len(events) and events[k][0] == t and events[k][3] == "start":
                    batch.start_soon(self._launch_peer, self.peers[events[k][2]], nursery)
                    k += 1
            while k < len(events) and events[k][0] == t and events[k][3] != "start":
                state = self.peers[events[k][2]]
                if state.handle is not None and state.handle.returncode is None:
                    state.signalled = events[k][3]
                    if events[k][3] == "term":
                        state.handle.terminate()
                    else:
                        state.handle.kill()
                k += 1

    async def _launch_peer(self, state: PeerState, nursery: trio.Nursery) -> None:
        name = state.plan.name
        argv = (self.commands.external_argv if isinstance(state.plan, ExternalPeerPlan)
                else self.commands.peer_argv)(f"peers/{name}.json")
        state.handle = await self.launcher.start(
            name, argv, cwd=self.run.root,
            output_path=self.run.peer_out(name))
        state.launched_at = self.now()
        nursery.start_soon(self._wait_peer, state)

    async def _wait_peer(self, state: PeerState) -> None:
        assert state.handle is not None
        code = await state.handle.wait()
        state.exit_code = code
        if was_lost(state.handle) and state.signalled is None:
            state.signalled = "lost"  # departed with its machine: not a crash
        name = state.plan.name
        if code == EXIT_WRITE_FAILED and self.status is None:
            self._read_logs([state])
            self.end("failed", f"{name} could not write its event log (exit {code}): "
                     f"{self._disk_state()}; peers/{name}.jsonl ends at its last complete line")
            return
        if code != 0 and state.signalled is None:
            self.crashes[name] = code
            self.progress.message(f"{name} exited with code {code} (see peers/{name}.out)")
        self._read_logs([state])
        self.check_end()

    def _disk_state(self) -> str:
        free = free_bytes(self.run.root)
        if free is None:
            return "a write error"
        if free < LOW_SPACE:
            return f"disk full ({format_size(free)} free)"
        return f"a write error ({format_size(free)} free now)"

    def _read_logs(self, peers: Sequence[PeerState] | None = None) -> None:
        for state in peers if peers is not None else self.peers:
            if state.handle is None:
                continue
            for line in state.tail.read_lines():
                state.feed(line)

    async def _poll_logs(self) -> None:
        while True:
            self._read_logs()
            self.check_end()
            if self.now() >= 0:  # before t = 0 the peers that started ahead wait
                self._check_stall()
                self._show_progress()
            await trio.sleep(self.options.poll_period)

    def _check_stall(self) -> None:
        """End the run as ``stalled`` once no live peer has held some piece for the grace
        period, with no seed left or to come (testbed.stall)."""
        if (self.stall_watch is None or self.num_pieces is None or self.status is not None
                or not self.experiment.end.all_complete):
            return
        stall = self.stall_watch.update(self.now(), missing_pieces(self.peers, self.num_pieces))
        if stall is not None:
            self.stall = stall
            self.end("stalled", stall.reason())

    def _show_progress(self) -> None:
        t = self.now()
        total = sum(p.downloaded for p in self.peers)
        self._rate_window.append((t, total))
        while len(self._rate_window) > 2 and t - self._rate_window[0][0] > 5.0:
            self._rate_window.popleft()
        t0, total0 = self._rate_window[0]
        rate = (total - total0) / (t - t0) if t > t0 else 0.0
        self.progress.update(ProgressState(
            elapsed=t, complete=sum(p.complete_t is not None for p in self.leechers),
            leechers=len(self.leechers),
            running=sum(p.handle is not None and p.handle.returncode is None
                        for p in self.peers),
            rate=rate, host_cpu=self.sampler.host_cpu[-1] if self.sampler.host_cpu else None))

    def pids(self) -> dict[str, int]:
        pids = {"orchestrator": os.getpid()}
        if isinstance(self.launcher, ForkServerLauncher) and self.launcher.zygote_pid:
            pids["forkserver"] = self.launcher.zygote_pid
        if self.tracker.handle is not None and self.tracker.handle.returncode is None:
            pids["tracker"] = self.tracker.handle.pid
        for p in self.peers:
            if p.handle is not None and p.handle.returncode is None and not is_remote(p.handle):
                pids[p.plan.name] = p.handle.pid
        return pids

    async def _sample_resources(self) -> None:
        """A resource sample a second; the run ends (``failed``) when its filesystem is about
        to be full, before a log breaks, or when resources.jsonl cannot be written."""
        while True:
            try:
                self.sampler.sample(self.now(), self.pids())
            except OSError as exc:
                self.end("failed", describe_write_error(exc, self.run.resources.name))
                return
            free = free_bytes(self.run.root)
            if free is not None and free < LOW_SPACE:
                self.end("failed", f"disk full: {format_size(free)} free on the run "
                         "directory's filesystem; stopped before the logs break")
                return
            await trio.sleep(self.options.sample_period)

    # -- stopping -----------------------------------------------------------------------------

    async def _stop(self, handles: list[ProcessHandle],
                    exiting: Sequence[ProcessHandle] = ()) -> None:
        """SIGTERM, wait up to the grace period (cut short by a second Ctrl-C), then SIGKILL.

        ``exiting`` processes already logged their ``stop`` and are on their way out: they are
        only waited for, since a SIGTERM during interpreter shutdown (handlers reset) would
        kill them and record a spurious crash.
        """
        for h in handles:
            if h.returncode is None and h not in exiting:
                h.terminate()
        live = [h for h in handles if h.returncode is None]

        async def wait_all() -> None:
            async with trio.open_nursery() as n:
                for h in live:
                    n.start_soon(h.wait)

        grace = self.options.stop_grace
        if grace is None:
            grace = stop_grace_for(len(live), os.cpu_count() or 1)
        with trio.move_on_after(grace) as scope:
            async with trio.open_nursery() as n:
                async def hurry() -> None:
                    await self._hurry.wait()
                    scope.cancel()

                n.start_soon(hurry)
                await wait_all()
                n.cancel_scope.cancel()
        for h in live:
            if h.returncode is None:
                h.kill()
        await wait_all()

    async def _shutdown(self) -> None:
        peers = [p for p in self.peers if p.handle is not None]
        for p in peers:
            if p.handle is not None and p.handle.returncode is None and p.signalled is None:
                p.signalled = "term"
        await self._stop([p.handle for p in peers if p.handle is not None],
                         exiting=[p.handle for p in peers
                                  if p.handle is not None and p.stop_reason is not None])
        for p in peers:
            assert p.handle is not None
            p.exit_code = p.handle.returncode
            if p.exit_code not in (0, None) and p.signalled is None:
                self.crashes.setdefault(p.plan.name, p.exit_code)
        await self.tracker.stop(self._stop)
        if self.tracker.crash is not None:
            self.crashes["tracker"] = self.tracker.crash

    # -- the summary --------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        summary = build_summary(self)
        amend = getattr(self.launcher, "amend_summary", None)  # a cluster's workers' share
        if amend is not None:
            amend(summary)
        return summary


@dataclass(frozen=True, slots=True)
class RunResult:
    run_dir: Path
    summary: dict[str, Any]


def execute_run(experiment: Experiment, topology_text: str, options: RunOptions,
                commands: Commands | None = None,
                launcher: Launcher | None = None) -> RunResult:
    """Run ``experiment`` (already validated and expanded) and write its run directory.

    Raises TestbedError only before anything starts (an external program is missing, the disk
    is clearly too small, the run directory cannot be created); everything after ends in a
    summary.json with a status.
    """
    missing = missing_programs([p.command for p in experiment.peers
                                if isinstance(p, ExternalPeerPlan)])
    if missing:
        raise TestbedError(f"external client program not found on PATH: {', '.join(missing)} "
                           "(install it, or remove its group from the topology)")
    if experiment.tracker_outages and experiment.tracker_url is not None:
        raise TestbedError("tracker outages need the testbed's own tracker: remove tracker.url "
                           "or tracker.outages")
    time_limit = options.time_limit if options.time_limit is not None \
        else experiment.end.time_limit
    check_free_space(experiment, options.out or options.runs_root, time_limit)
    run = create_run_dir(experiment.name, out=options.out, runs_root=options.runs_root)
    try:
        # First, before the content and the logs can fill the disk.
        reserve = SummaryReserve.create(run.root, summary_reserve_size(experiment))
        run.topology.write_text(topology_text)
        write_json_atomic(run.experiment, experiment.to_json())
        started_at = utc_now_iso()
        meta = collect_meta(command=list(options.command), seed=experiment.seed,
                            started_at=started_at, run_start_monotonic=None)
        meta["policies"] = record_policy_sources(run.root, experiment)  # before a peer loads one
        write_json_atomic(run.meta, meta)
    except OSError as exc:
        raise TestbedError(f"{run.root}: {describe_write_error(exc)}") from None
    orchestrator = Orchestrator(experiment, run, options, commands or Commands(), meta,
                                launcher)
    try:
        trio.run(orchestrator.main)
    except KeyboardInterrupt:
        # Only possible outside the signal receiver, before any process starts or after all
        # have stopped.
        orchestrator.end("interrupted", "received SIGINT")
        orchestrator.signal_received = orchestrator.signal_received or signal.SIGINT
    finally:
        summary = orchestrator.summary()
        try:
            reserve.write_summary(run.summary, summary)
        except OSError as exc:
            raise TestbedError(f"{run.root}: {describe_write_error(exc, 'summary.json')}") \
                from None
    return RunResult(run.root, summary)
