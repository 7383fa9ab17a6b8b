"""The orchestrator: run one expanded experiment as real processes, then write summary.json.

``execute_run`` is the whole of ``testbed run`` after the topology was validated and expanded:
it creates the run directory (docs/run-directory.md), makes the content and the .torrent,
starts the tracker, starts each peer at its arrival time and stops or kills it at its
departure, follows every peer's event log, samples resources, ends on the end condition, the
time limit, a signal or a tracker crash, stops every process (SIGTERM, then SIGKILL after a
grace period, the tracker last) and writes summary.json last, atomically.

Time: t = 0 is the instant the tracker is launched (``run_start`` on the system-wide monotonic
clock, handed to every process). A peer arriving at t = 0 starts as soon as the tracker listens.
"""

from __future__ import annotations

import math
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
from testbed.experiment import Experiment
from testbed.external import ExternalPeerPlan, missing_programs
from testbed.launch import ForkServerLauncher, Launcher, LaunchError, LocalLauncher, ProcessHandle
from testbed.peer_watch import LogTail, PeerState
from testbed.progress import Mode, Progress, ProgressState, choose_mode
from testbed.provenance import record_policy_sources
from testbed.resources import ResourceSampler, summarize_cpu
from testbed.rundir import RunDir, collect_meta, create_run_dir, utc_now_iso, write_json_atomic
from testbed.summary import rounded_or_none, time_stats, topology_bounds

Status = Literal["completed", "timed_out", "interrupted", "failed"]
LauncherKind = Literal["fork", "local"]
SUMMARY_SCHEMA = 1
PLACEHOLDER_ANNOUNCE = "http://127.0.0.1:9/announce"
"""The .torrent is made before the tracker has a port; it is rewritten once it has one (the
info dictionary, hence the info_hash, does not change)."""


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
    stop_grace: float = 3.0
    poll_period: float = 0.5
    sample_period: float = 1.0


class RunFailed(Exception):
    """The run cannot go on (the tracker did not start, a process could not be launched)."""


class Orchestrator:
    def __init__(self, experiment: Experiment, run: RunDir, options: RunOptions,
                 commands: Commands, meta: dict[str, Any]) -> None:
        self.experiment = experiment
        self.run = run
        self.options = options
        self.commands = commands
        self.meta = meta
        self.peers = [PeerState(plan, LogTail(run.peer_log(plan.name)))
                      for plan in experiment.peers]
        self.launcher: Launcher
        if options.launcher == "fork":
            self.launcher = ForkServerLauncher(output_path=run.launcher_out)
        else:
            self.launcher = LocalLauncher()
        self.run_start: float | None = None
        self.tracker: ProcessHandle | None = None
        self.tracker_exit: int | None = None
        self.tracker_signalled = False
        self.num_pieces: int | None = None
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
            self.end_t = self.now() if self.run_start is not None else 0.0
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
                        if isinstance(self.launcher, ForkServerLauncher):
                            await outer.start(self.launcher.run)
                        await self._body()
                except (RunFailed, LaunchError, TestbedError, OSError) as exc:
                    self.end("failed", str(exc))
                except BaseException as exc:
                    self.end("failed", f"internal error: {exc!r}")
                    raise
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
        from peer.metainfo import build_metainfo, make_synthetic_torrent, write_torrent

        spec = self.experiment.content
        announce = self.experiment.tracker_url or PLACEHOLDER_ANNOUNCE

        def make_content() -> tuple[Path, Path, Any]:
            content, torrent, metainfo = make_synthetic_torrent(
                self.run.content_dir, size=spec.size, seed=spec.seed,
                piece_length=spec.piece_length, announce=announce, name=spec.name)
            target = self.run.torrent(spec.name)
            os.replace(torrent, target)
            return content, target, metainfo

        content, torrent, metainfo = await trio.to_thread.run_sync(make_content)
        self.num_pieces = metainfo.num_pieces
        if isinstance(self.launcher, ForkServerLauncher):
            await self.launcher.wait_ready()

        self.run_start = time.monotonic()
        self.meta["run_start_monotonic"] = self.run_start
        write_json_atomic(self.run.meta, self.meta)
        if self.experiment.tracker_url is None:
            port = await self._start_tracker(torrent)
            tracker_url = f"http://{self.experiment.tracker_host}:{port}/announce"
            rewritten = build_metainfo(announce=tracker_url, name=metainfo.name,
                                       length=metainfo.length,
                                       piece_length=metainfo.piece_length,
                                       piece_hashes=metainfo.piece_hashes)
            assert rewritten.info_hash == metainfo.info_hash
            tmp = torrent.with_name(f".{torrent.name}.tmp")
            write_torrent(tmp, rewritten)
            os.replace(tmp, torrent)
        else:
            tracker_url = self.experiment.tracker_url

        self._write_peer_configs(torrent, content, tracker_url, self.run_start)
        time_limit = (self.options.time_limit if self.options.time_limit is not None
                      else self.experiment.end.time_limit)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._schedule, nursery)
            nursery.start_soon(self._poll_logs)
            nursery.start_soon(self._sample_resources)
            if self.tracker is not None:
                nursery.start_soon(self._wait_tracker)
            if time_limit is not None:
                nursery.start_soon(self._time_limit, time_limit)
            self.check_end()
            await trio.sleep_forever()

    def _write_peer_configs(self, torrent: Path, content: Path, tracker_url: str,
                            run_start: float) -> None:
        """One JSON config per peer (testbed peers and real clients) in the run directory."""
        for state in self.peers:
            plan = state.plan
            seed_content = f"content/{content.name}" if plan.role == "seed" else None
            if isinstance(plan, ExternalPeerPlan):
                external = plan.external_config(
                    torrent=torrent.name, log=f"peers/{plan.name}.jsonl", tracker=tracker_url,
                    run_start=run_start, directory=f"external/{plan.name}",
                    content=seed_content)
                write_json_atomic(self.run.peer_config(plan.name), external.to_json())
                continue
            config = plan.peer_config(
                torrent=torrent.name, log=f"peers/{plan.name}.jsonl", tracker=tracker_url,
                run_start=run_start, content=seed_content)
            write_json_atomic(self.run.peer_config(plan.name), config.to_json())

    async def _start_tracker(self, torrent: Path) -> int:
        exp = self.experiment
        assert self.run_start is not None
        args = ["--host", exp.tracker_host, "--port", "0",
                "--port-file", self.run.tracker_port.name, "--log", self.run.tracker_log.name,
                "--torrent", torrent.name, "--interval", str(max(1, round(exp.announce_interval))),
                "--run-start", repr(self.run_start), "--seed", str(exp.seed)]
        self.tracker = await self.launcher.start(
            "tracker", self.commands.tracker_argv(args), cwd=self.run.root,
            output_path=self.run.tracker_out)
        with trio.move_on_after(self.options.tracker_timeout):
            while True:
                try:
                    text = self.run.tracker_port.read_text().strip()
                except FileNotFoundError:
                    text = ""
                if text.isdigit():
                    return int(text)
                if self.tracker.returncode is not None:
                    raise RunFailed(f"the tracker exited with code {self.tracker.returncode} "
                                    f"before listening{self._output_tail(self.run.tracker_out)}")
                await trio.sleep(0.02)
        raise RunFailed(f"the tracker did not report its port within "
                        f"{self.options.tracker_timeout:g} s"
                        f"{self._output_tail(self.run.tracker_out)}")

    @staticmethod
    def _output_tail(path: Path, lines: int = 8) -> str:
        try:
            text = path.read_text(errors="replace").strip()
        except OSError:
            return ""
        if not text:
            return f" ({path.name} is empty)"
        tail = "\n  ".join(text.splitlines()[-lines:])
        return f"; {path.name} ends with:\n  {tail}"

    async def _wait_tracker(self) -> None:
        assert self.tracker is not None
        code = await self.tracker.wait()
        self.tracker_exit = code
        if not self.tracker_signalled:
            self.crashes["tracker"] = code
            self.end("failed", f"the tracker exited with code {code}; see tracker.out")

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
            events.append((plan.arrival, 0, i, "start"))
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
        if code != 0 and state.signalled is None:
            self.crashes[state.plan.name] = code
            self.progress.message(f"{state.plan.name} exited with code {code} "
                                  f"(see peers/{state.plan.name}.out)")
        self._read_logs([state])
        self.check_end()

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
            self._show_progress()
            await trio.sleep(self.options.poll_period)

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
        if self.tracker is not None and self.tracker.returncode is None:
            pids["tracker"] = self.tracker.pid
        for p in self.peers:
            if p.handle is not None and p.handle.returncode is None:
                pids[p.plan.name] = p.handle.pid
        return pids

    async def _sample_resources(self) -> None:
        while True:
            self.sampler.sample(self.now(), self.pids())
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

        with trio.move_on_after(self.options.stop_grace) as scope:
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
        if self.tracker is not None:
            self.tracker_signalled = self.tracker_signalled or self.tracker.returncode is None
            await self._stop([self.tracker])
            self.tracker_exit = self.tracker.returncode

    # -- the summary --------------------------------------------------------------------------

    def _final_status(self) -> tuple[Status, str]:
        """The run's status and reason; a peer that crashed fails an otherwise completed run
        unless the topology tolerates crashes (a crash is not a departure)."""
        status, reason = self.status or "failed", self.reason
        peers_crashed = {k: v for k, v in self.crashes.items() if k != "tracker"}
        if status == "completed" and peers_crashed and not self.experiment.end.tolerate_crashes:
            crashed = ", ".join(f"{name} (exit {code})" for name, code in peers_crashed.items())
            return "failed", (f"crashed: {crashed}; {reason} (end: {{tolerate_crashes: true}} "
                              "accepts crashes)")
        return status, reason

    def summary(self) -> dict[str, Any]:
        exp = self.experiment
        leechers = self.leechers
        completion = {p.plan.name: round(p.complete_t - p.plan.arrival, 4)
                      for p in leechers if p.complete_t is not None}
        completed = len(completion)
        makespan = None
        if leechers and completed == len(leechers):
            makespan = round(max(p.complete_t for p in leechers if p.complete_t is not None), 4)
        d_p2p, d_cs = topology_bounds(exp)
        groups: dict[str, dict[str, Any]] = {}
        for p in leechers:
            g = groups.setdefault(p.plan.group, {"leechers": 0, "times": []})
            g["leechers"] += 1
            if p.plan.name in completion:
                g["times"].append(completion[p.plan.name])
        group_stats = {name: {"leechers": g["leechers"], "completed": len(g["times"]),
                              **time_stats(g["times"])} for name, g in groups.items()}
        verified = sum(1 for p in leechers if p.complete_t is not None
                       and self.num_pieces is not None and len(p.ok_pieces) == self.num_pieces)
        duration = self.end_t if self.end_t is not None else (
            self.now() if self.run_start is not None else 0.0)
        cpu = summarize_cpu(self.sampler.times, self.sampler.host_cpu, duration)
        exit_codes: dict[str, int | None] = {}
        if self.tracker is not None:
            exit_codes["tracker"] = self.tracker.returncode
        for p in self.peers:
            if p.handle is not None:
                exit_codes[p.plan.name] = p.handle.returncode
        status, reason = self._final_status()
        return {
            "schema": SUMMARY_SCHEMA,
            "status": status,
            "reason": reason,
            "started_at": self.meta.get("started_at"),
            "duration": round(duration, 3),
            "peers": len(self.peers),
            "started": sum(p.handle is not None for p in self.peers),
            "leechers": len(leechers),
            "completed": completed,
            "verified": verified,
            "hash_failures": sum(p.failed_pieces for p in self.peers),
            "completion_times": completion,
            "completion_stats": time_stats(list(completion.values())),
            "groups": group_stats,
            "makespan": makespan,
            "bounds": {"d_p2p": rounded_or_none(d_p2p), "d_cs": rounded_or_none(d_cs)},
            "makespan_over_d_p2p": (round(makespan / d_p2p, 3)
                                    if makespan is not None and d_p2p and math.isfinite(d_p2p)
                                    else None),
            "cpu": cpu.to_json(),
            "exit_codes": exit_codes,
            "crashes": dict(self.crashes),
            "crashes_tolerated": self.experiment.end.tolerate_crashes,
            "signal": (signal.Signals(self.signal_received).name
                       if self.signal_received is not None else None),
        }


@dataclass(frozen=True, slots=True)
class RunResult:
    run_dir: Path
    summary: dict[str, Any]


def execute_run(experiment: Experiment, topology_text: str, options: RunOptions,
                commands: Commands | None = None) -> RunResult:
    """Run ``experiment`` (already validated and expanded) and write its run directory.

    Raises TestbedError only before anything starts (the run directory cannot be created);
    everything after ends in a summary.json with a status.
    """
    missing = missing_programs([p.command for p in experiment.peers
                                if isinstance(p, ExternalPeerPlan)])
    if missing:
        raise TestbedError(f"external client program not found on PATH: {', '.join(missing)} "
                           "(install it, or remove its group from the topology)")
    run = create_run_dir(experiment.name, out=options.out, runs_root=options.runs_root)
    run.topology.write_text(topology_text)
    write_json_atomic(run.experiment, experiment.to_json())
    started_at = utc_now_iso()
    meta = collect_meta(command=list(options.command), seed=experiment.seed,
                        started_at=started_at, run_start_monotonic=None)
    meta["policies"] = record_policy_sources(run.root, experiment)  # before any peer loads one
    write_json_atomic(run.meta, meta)
    orchestrator = Orchestrator(experiment, run, options, commands or Commands(), meta)
    try:
        trio.run(orchestrator.main)
    except KeyboardInterrupt:
        # Only possible outside the signal receiver, before any process starts or after all
        # have stopped.
        orchestrator.end("interrupted", "received SIGINT")
        orchestrator.signal_received = orchestrator.signal_received or signal.SIGINT
    finally:
        summary = orchestrator.summary()
        write_json_atomic(run.summary, summary)
    return RunResult(run.root, summary)
