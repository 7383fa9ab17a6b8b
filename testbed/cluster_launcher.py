"""The orchestrator's side of a swarm split across Dask workers: a ``Launcher`` whose peers run
on the workers' node agents (testbed.cluster_agent), so that the Orchestrator runs a split
swarm exactly as a local one (docs/cluster.md).

- ``start`` of a placed peer sends its config and command to its worker's agent and returns a
  ``RemoteProcess`` once the agent reports its pid; anything else (the tracker) starts here.
- Log and output bytes the agents send are appended to the same files of the run directory
  as a local peer writes, so the orchestrator's log polling, the summary and the analyses read
  them unchanged.
- A worker that leaves the scheduler (or whose agent ends unasked) is lost: its peers are
  recorded as departed at that moment (exit -9, as the kernel's parent-death signal kills
  them), the run goes on, and ``cluster.json`` says when and which peers.
- ``aclose`` closes every agent (they stop what still runs), gathers their last bytes and CPU
  summaries, and writes ``cluster.json``; ``amend_summary`` adds the workers to summary.json
  and flags the run's CPU as saturated when any worker's was.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from testbed.launch import (
    Launcher,
    LaunchError,
    ProcessHandle,
    ReportedProcess,
    parse_python_argv,
)
from testbed.placement import WorkerInfo
from testbed.rundir import write_json_atomic

READY_TIMEOUT = 60.0
START_TIMEOUT = 30.0
WATCH_SECONDS = 1.0
EVENT_WAIT_SECONDS = 0.2
CLOSE_TIMEOUT = 30.0
LOST_EXIT = -9
"""A lost worker's peers are SIGKILLed by their parent-death signal."""


class RemoteProcess(ReportedProcess):
    """A peer on a worker: signalled through its agent, its exit reported by it."""

    def __init__(self, launcher: ClusterLauncher, worker: str, name: str) -> None:
        super().__init__()
        self.launcher = launcher
        self.worker = worker
        self.name = name
        self.pid = -1
        self.lost = False

    def terminate(self) -> None:
        self._signal("term")

    def kill(self) -> None:
        self._signal("kill")

    def _signal(self, how: str) -> None:
        if self._returncode is None and not self.lost:
            self.launcher.send(self.worker, {"op": "signal", "name": self.name, "how": how})

    def set_exit(self, code: int, *, lost: bool = False) -> None:
        if self._set_exit(code):
            self.lost = lost


@dataclass(slots=True)
class AgentSlot:
    worker: WorkerInfo
    label: str
    commands: Any
    future: Any
    identity: str
    """The worker process's identity at the start (a new one at its address: a new worker)."""
    clock_offset: dict[str, float]
    ready: trio.Event = field(default_factory=trio.Event)
    files_sent: bool = False
    lost_at: float | None = None
    lost_why: str = ""
    closed: bool = False
    result: dict[str, Any] | None = None


class ClusterLauncher:
    def __init__(self, client: Any, agents: Mapping[str, AgentSlot], events: Any,
                 placed: Mapping[str, WorkerInfo], local: Launcher,
                 record: dict[str, Any], say: Callable[[str], None],
                 end_offset: Callable[[str], dict[str, float]] | None = None,
                 fork: bool = True) -> None:
        self.client = client
        self.agents = dict(agents)
        self.events = events
        self.placed = placed
        self.local = local
        self.record = record
        """What cluster.json holds (workers, placement, clock offsets); losses are added."""
        self.say = say
        self.end_offset = end_offset
        self.fork = fork
        """Measures a worker's clock offset again at the end (the drift over the run)."""
        self.handles: dict[str, RemoteProcess] = {}
        self.pending: dict[str, trio.MemorySendChannel[str | None]] = {}
        self.outbox: list[tuple[AgentSlot, dict[str, Any]]] = []
        self.outbox_ready = trio.Event()
        self.root: Path | None = None
        self.pump_done = trio.Event()
        self.stopping = False

    # -- ServedLauncher -----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._pump)
            nursery.start_soon(self._sender)
            nursery.start_soon(self._watch)
            task_status.started()

    async def wait_ready(self) -> None:
        with trio.move_on_after(READY_TIMEOUT):
            for agent in self.agents.values():
                while not agent.ready.is_set():
                    if agent.future.done():
                        raise LaunchError(f"the node agent on {agent.worker.address} ended "
                                          f"before it was ready: {_future_error(agent.future)}")
                    with trio.move_on_after(0.5):
                        await agent.ready.wait()
            return
        late = [a.worker.address for a in self.agents.values() if not a.ready.is_set()]
        raise LaunchError(f"the node agents on {', '.join(late)} were not ready within "
                          f"{READY_TIMEOUT:g} s (is the worker busy with another task?)")

    # -- Launcher -----------------------------------------------------------------------------

    async def start(self, name: str, argv: Sequence[str], *, cwd: Path, output_path: Path,
                    env: Mapping[str, str] | None = None) -> ProcessHandle:
        worker = self.placed.get(name)
        if worker is None:  # the tracker
            return await self.local.start(name, argv, cwd=cwd, output_path=output_path, env=env)
        self.root = cwd
        agent = self.agents[worker.address]
        handle = RemoteProcess(self, worker.address, name)
        self.handles[name] = handle
        if agent.lost_at is not None:
            handle.set_exit(LOST_EXIT, lost=True)  # its machine is gone: it never starts
            return handle
        target = parse_python_argv(argv)
        if target is None or env is not None:
            raise LaunchError(f"{name}: only testbed peers run on cluster workers")
        kind, what, args = target
        config = args[args.index("--config") + 1]
        output_path.touch()  # as a local launcher opens it: every started peer has its .out
        if not agent.files_sent:
            agent.files_sent = True
            self._send(agent, {"op": "files", "files": _run_files(cwd)})
            if self.fork:
                (cwd / "launcher.out").touch()  # the agents' fork servers' stderr goes there
        send, receive = trio.open_memory_channel[str | None](1)
        self.pending[name] = send
        self._send(agent, {"op": "start", "name": name,
                           "argv": (["-m", what] if kind == "module" else [what]) + args,
                           "config": [config, (cwd / config).read_text()],
                           "output": str(output_path.relative_to(cwd))})
        with trio.move_on_after(START_TIMEOUT):
            error = await receive.receive()
            if error is not None:
                raise LaunchError(f"{name}: {error}")
            return handle
        raise LaunchError(f"{name}: the node agent on {worker.address} did not start it "
                          f"within {START_TIMEOUT:g} s")

    def send(self, address: str, command: dict[str, Any]) -> None:
        self._send(self.agents[address], command)

    def _send(self, agent: AgentSlot, command: dict[str, Any]) -> None:
        self.outbox.append((agent, command))
        self.outbox_ready.set()

    async def aclose(self) -> None:
        for agent in self.agents.values():
            agent.closed = True  # its agent ends now: not a loss
            if agent.lost_at is None:
                self._send(agent, {"op": "close"})
        while self.outbox:
            await trio.sleep(0.05)
        await trio.to_thread.run_sync(self._measure_end_offsets)
        await trio.to_thread.run_sync(self._gather)
        self.stopping = True
        await self.pump_done.wait()
        for message in await trio.to_thread.run_sync(self._drain):
            self._apply(message)
        for agent in self.agents.values():
            if agent.result is not None:
                self._apply(agent.result)
        if self.root is not None:
            write_json_atomic(self.root / "cluster.json", self.cluster_record())
        await self.local.aclose()

    # -- the loops ----------------------------------------------------------------------------

    async def _sender(self) -> None:
        while True:
            await self.outbox_ready.wait()
            self.outbox_ready = trio.Event()
            batch, self.outbox = self.outbox, []
            for agent, command in batch:
                if agent.lost_at is None:
                    with contextlib.suppress(Exception):  # a worker lost meanwhile
                        await trio.to_thread.run_sync(agent.commands.put, command)

    def _get_events(self) -> list[dict[str, Any]]:
        try:
            first = self.events.get(timeout=EVENT_WAIT_SECONDS)
        except TimeoutError:
            return []
        return [first, *self._drain()]

    def _drain(self) -> list[dict[str, Any]]:
        rest: list[dict[str, Any]] = self.events.get(batch=True)
        return rest

    async def _pump(self) -> None:
        try:
            while not self.stopping:
                for message in await trio.to_thread.run_sync(self._get_events):
                    self._apply(message)
        finally:
            self.pump_done.set()

    def _apply(self, message: dict[str, Any]) -> None:
        agent = self.agents.get(str(message.get("agent")))
        if agent is None:
            return
        if "ready" in message:
            agent.ready.set()
        for relative, data in message.get("data") or ():
            self._append(relative, data)
        for name, pid in message.get("started") or ():
            self.handles[name].pid = int(pid)
            self._resolve(name, None)
        for name, error in message.get("errors") or ():
            self._resolve(name, str(error))
        for name, code in message.get("exits") or ():
            self.handles[name].set_exit(int(code))

    def _resolve(self, name: str, error: str | None) -> None:
        channel = self.pending.pop(name, None)
        if channel is not None:
            channel.send_nowait(error)

    def _append(self, relative: str, data: bytes) -> None:
        if self.root is None:
            return
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root.resolve()):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            f.write(data)

    # -- losing a worker ----------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            await trio.sleep(WATCH_SECONDS)
            current = await trio.to_thread.run_sync(self._worker_identities)
            if current is None:
                continue
            for agent in self.agents.values():
                if agent.lost_at is not None or agent.closed:
                    continue
                if current.get(agent.worker.address) != agent.identity:
                    self._lose(agent, "it left the scheduler")
                elif agent.future.done():
                    self._lose(agent, f"its agent ended: {_future_error(agent.future)}")

    def _worker_identities(self) -> dict[str, str] | None:
        try:
            return worker_identities(self.client)
        except Exception:  # the scheduler is unreachable for now: look again
            return None

    def _lose(self, agent: AgentSlot, why: str) -> None:
        agent.lost_at = time.monotonic()
        agent.lost_why = why
        peers = [h for h in self.handles.values()
                 if h.worker == agent.worker.address and h.returncode is None]
        for handle in peers:
            self._resolve(handle.name, None)
            handle.set_exit(LOST_EXIT, lost=True)
        with contextlib.suppress(Exception):
            self.client.cancel(agent.future)
        self.say(f"worker {agent.worker.address} lost ({why}): {len(peers)} peer(s) on it "
                 "departed; the run goes on")

    def _measure_end_offsets(self) -> None:
        if self.end_offset is None:
            return
        ends = {}
        for agent in self.agents.values():
            if agent.lost_at is None:
                with contextlib.suppress(Exception):
                    ends[agent.worker.address] = self.end_offset(agent.worker.address)
        self.record["clock_offsets_end"] = ends

    def _gather(self) -> None:
        deadline = time.monotonic() + CLOSE_TIMEOUT
        for agent in self.agents.values():
            if agent.lost_at is not None:
                continue
            try:
                agent.result = agent.future.result(timeout=max(0.1, deadline - time.monotonic()))
            except Exception as exc:
                agent.lost_at = agent.lost_at or time.monotonic()
                agent.lost_why = f"its agent did not close: {exc!r}"

    # -- the record ---------------------------------------------------------------------------

    def _run_time(self, monotonic: float) -> float | None:
        if self.root is None:
            return None
        with contextlib.suppress(OSError, ValueError, TypeError):
            start = json.loads((self.root / "meta.json").read_text())["run_start_monotonic"]
            return round(monotonic - float(start), 3)
        return None

    def losses(self) -> list[dict[str, Any]]:
        return [{"worker": a.worker.address, "t": self._run_time(a.lost_at), "why": a.lost_why,
                 "peers": sorted(n for n, h in self.handles.items()
                                 if h.worker == a.worker.address and h.lost)}
                for a in self.agents.values() if a.lost_at is not None]

    def worker_cpu(self) -> dict[str, Any]:
        return {a.worker.address: (a.result or {}).get("cpu") for a in self.agents.values()}

    def cluster_record(self) -> dict[str, Any]:
        return {**self.record, "cpu": self.worker_cpu(), "losses": self.losses()}

    def amend_summary(self, summary: dict[str, Any]) -> None:
        """The workers' CPU and losses in summary.json; the run is CPU-saturated when any
        worker was."""
        cpu = self.worker_cpu()
        summary["cluster"] = {"workers": len(self.agents), "losses": self.losses(),
                              "cpu": cpu}
        for address, worker in sorted(cpu.items()):
            if worker and worker.get("saturated"):
                own = summary.setdefault("cpu", {})
                own["saturated"] = True
                own["warning"] = "; ".join(w for w in (own.get("warning"),
                                                       f"worker {address}: {worker['warning']}")
                                           if w)


def worker_identities(client: Any) -> dict[str, str]:
    """Worker address -> its process's identity (name and scratch folder), from the
    scheduler itself (a restarted worker at the same address has a new one)."""
    info = client.sync(client.scheduler.identity, n_workers=-1)["workers"]
    return {address: f"{w.get('name')} {w.get('local_directory')}"
            for address, w in info.items()}


def _run_files(root: Path) -> list[tuple[str, bytes]]:
    """What every peer of a run reads besides its config: the .torrent and policy copies."""
    files = [p for p in root.glob("*.torrent")]
    files += [p for p in (root / "policies").rglob("*") if p.is_file()]
    return [(str(p.relative_to(root)), p.read_bytes()) for p in files]


def _future_error(future: Any) -> str:
    with contextlib.suppress(Exception):
        error = future.exception(timeout=0)
        if error is not None:
            return repr(error)
    return f"status {getattr(future, 'status', '?')}"
