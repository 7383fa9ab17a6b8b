"""The node agent of a swarm split across Dask workers (testbed.cluster_swarm, docs/cluster.md).

``agent_task`` is one long-running Dask task per worker. In the task's thread it runs a trio
loop that starts and supervises that worker's peers as OS processes through the same launchers
as a local run (the fork server by default), in a scratch folder laid out like the run
directory. It talks to the orchestrator through two Dask queues:

- commands (orchestrator -> this agent): ``files`` (the .torrent and policy copies, written
  into the scratch folder), ``start`` (a peer: its config, whose ``run_start`` is moved onto
  this machine's clock by the measured offset, and its command), ``signal`` (``term`` /
  ``kill``: a departure or the end of the run) and ``close``;
- events (every agent -> the orchestrator): ``ready``, the pids of started peers, start
  errors, exit codes, and the bytes appended to every log and output file since the last
  message, sent every second and at once when a peer exits (its last lines before its exit).

Every second it also samples this machine's CPU and its peers' (``cluster/resources-<worker>
.jsonl``, shipped like a log). When the orchestrator goes away (its task is cancelled or
released), or on ``close``, every peer gets SIGTERM, then SIGKILL after the stop grace (the
local run's: ``testbed.launch.stop_grace_for`` its peers and this machine's cores); the
peers also die with the worker (``PR_SET_PDEATHSIG``), so nothing is left running.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from testbed.launch import (
    ForkServerLauncher,
    Launcher,
    LaunchError,
    LocalLauncher,
    ProcessHandle,
    stop_grace_for,
)

SHIP_SECONDS = 1.0
COMMAND_WAIT_SECONDS = 0.2


def agent_info(dask_worker: Any) -> dict[str, Any]:
    """Run on each worker (``client.run``, which passes the worker) before placement: where its
    peers listen (the worker's TESTBED_PEER_HOST, else the host of its address) and what it
    is."""
    import socket

    worker = dask_worker
    host = worker.address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return {"address": worker.address, "name": str(worker.name),
            "host": os.environ.get("TESTBED_PEER_HOST") or host,
            "hostname": socket.gethostname(), "local_directory": worker.local_directory}


def monotonic_now() -> float:
    """This machine's CLOCK_MONOTONIC (run by the orchestrator on a worker to measure the
    clock offset)."""
    return time.monotonic()


def agent_task(spec: dict[str, Any]) -> dict[str, Any]:
    """The Dask task: supervise this worker's peers until ``close`` or until the orchestrator
    goes away; returns the last bytes of every file and the CPU summary."""
    from distributed import Queue, get_client, get_worker

    worker = get_worker()
    client = get_client()
    key = spec["key"]

    def cancelled() -> bool:
        task = worker.state.tasks.get(key)
        return task is None or task.state in ("cancelled", "released")

    scratch = Path(tempfile.mkdtemp(prefix="testbed-swarm-", dir=worker.local_directory))
    try:
        agent = Agent(spec, scratch,
                      Queue(spec["commands"], client=client),  # type: ignore[no-untyped-call]
                      Queue(spec["events"], client=client),  # type: ignore[no-untyped-call]
                      cancelled)
        result: dict[str, Any] = trio.run(agent.main)
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class Agent:
    def __init__(self, spec: dict[str, Any], scratch: Path, commands: Any, events: Any,
                 cancelled: Callable[[], bool]) -> None:
        self.spec = spec
        self.label = str(spec["label"])
        self.address = str(spec["address"])
        self.offset = float(spec["clock_offset"])
        self.scratch = scratch
        self.commands = commands
        self.events = events
        self.cancelled = cancelled
        self.launcher: Launcher = (ForkServerLauncher(output_path=scratch / "launcher.out")
                                   if spec["launcher"] == "fork" else LocalLauncher())
        self.procs: dict[str, ProcessHandle] = {}
        self.offsets: dict[str, int] = {"launcher.out": 0}
        """Shipped files (relative to the scratch folder) -> bytes already sent."""
        self.started: list[tuple[str, int]] = []
        self.errors: list[tuple[str, str]] = []
        self.exits: list[tuple[str, int]] = []
        self.run_start: float | None = None
        """The run's t = 0 on this machine's clock (the orchestrator's plus the offset)."""
        self.sampler: Any = None
        self.resources = f"cluster/resources-{self.label}.jsonl"
        self.wake = trio.Event()
        self.closing = False

    async def main(self) -> dict[str, Any]:
        async with trio.open_nursery() as nursery:
            if isinstance(self.launcher, ForkServerLauncher):
                await nursery.start(self.launcher.run)
                await self.launcher.wait_ready()
            await self._emit({"ready": os.getpid()})
            nursery.start_soon(self._ship_loop)
            try:
                await self._command_loop(nursery)
            finally:
                with trio.CancelScope(shield=True):
                    await self._stop_all()
                    await self.launcher.aclose()
                nursery.cancel_scope.cancel()
        if self.sampler is not None:
            self.sampler.close()
        return {"agent": self.address, "data": self._new_data(), "exits": self._take_exits(),
                "cpu": self._cpu()}

    # -- commands -----------------------------------------------------------------------------

    def _get_commands(self) -> list[dict[str, Any]]:
        try:
            first = self.commands.get(timeout=COMMAND_WAIT_SECONDS)
        except TimeoutError:
            return []
        rest: list[dict[str, Any]] = self.commands.get(batch=True)
        return [first, *rest]

    async def _command_loop(self, nursery: trio.Nursery) -> None:
        while not self.cancelled():
            for command in await trio.to_thread.run_sync(self._get_commands):
                op = command["op"]
                if op == "close":
                    return
                if op == "files":
                    self._write_files(command["files"])
                elif op == "start":
                    await self._start(command, nursery)
                elif op == "signal":
                    handle = self.procs.get(command["name"])
                    if handle is not None and handle.returncode is None:
                        (handle.terminate if command["how"] == "term" else handle.kill)()

    def _write_files(self, files: list[tuple[str, bytes]]) -> None:
        for relative, data in files:
            path = (self.scratch / relative).resolve()
            if not path.is_relative_to(self.scratch.resolve()):
                raise ValueError(f"{relative!r} is outside the run directory")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    async def _start(self, command: dict[str, Any], nursery: trio.Nursery) -> None:
        name = str(command["name"])
        config_path, text = command["config"]
        config = json.loads(text)
        if config.get("run_start") is not None:  # onto this machine's clock
            config["run_start"] = float(config["run_start"]) + self.offset
            if self.run_start is None:
                self.run_start = config["run_start"]
        self._write_files([(config_path, json.dumps(config, indent=2).encode())])
        for relative in (str(command["output"]), str(config.get("log") or "")):
            if relative:
                self.offsets.setdefault(relative, 0)
        (self.scratch / str(command["output"])).parent.mkdir(parents=True, exist_ok=True)
        try:
            handle = await self.launcher.start(
                name, [sys.executable, *command["argv"]], cwd=self.scratch,
                output_path=self.scratch / str(command["output"]))
        except (LaunchError, OSError) as exc:
            self.errors.append((name, f"on {self.address}: {exc}"))
            self.wake.set()
            return
        self.procs[name] = handle
        self.started.append((name, handle.pid))
        self.wake.set()
        nursery.start_soon(self._wait, name, handle)

    async def _wait(self, name: str, handle: ProcessHandle) -> None:
        code = await handle.wait()
        self.exits.append((name, code))
        self.wake.set()  # its last lines and its exit go out now

    async def _stop_all(self) -> None:
        live = [h for h in self.procs.values() if h.returncode is None]
        for handle in live:
            handle.terminate()
        with trio.move_on_after(stop_grace_for(len(live), os.cpu_count() or 1)):
            for handle in live:
                await handle.wait()
        for handle in live:
            if handle.returncode is None:
                handle.kill()
        for handle in live:
            await handle.wait()

    # -- what goes back -----------------------------------------------------------------------

    async def _ship_loop(self) -> None:
        while True:
            with trio.move_on_after(SHIP_SECONDS):
                await self.wake.wait()
            self.wake = trio.Event()
            self._sample()
            message: dict[str, Any] = {"started": self.started, "errors": self.errors,
                                       "exits": self._take_exits()}
            self.started, self.errors = [], []
            message["data"] = self._new_data()  # after the exits: a peer's last lines go too
            if any(message.values()):
                await self._emit(message)

    def _take_exits(self) -> list[tuple[str, int]]:
        exits, self.exits = self.exits, []
        return exits

    async def _emit(self, message: dict[str, Any]) -> None:
        message["agent"] = self.address
        await trio.to_thread.run_sync(self.events.put, message)

    def _new_data(self) -> list[tuple[str, bytes]]:
        """(file, bytes appended since the last call) for every file that grew."""
        chunks = []
        for relative, offset in self.offsets.items():
            try:
                with open(self.scratch / relative, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except FileNotFoundError:
                continue
            if data:
                self.offsets[relative] = offset + len(data)
                chunks.append((relative, data))
        return chunks

    def _sample(self) -> None:
        if self.run_start is None:
            return
        from testbed.resources import ResourceSampler

        if self.sampler is None:
            (self.scratch / "cluster").mkdir(exist_ok=True)
            self.sampler = ResourceSampler(self.scratch / self.resources)
            self.offsets[self.resources] = 0
        pids = {"agent": os.getpid()}
        if isinstance(self.launcher, ForkServerLauncher) and self.launcher.zygote_pid:
            pids["forkserver"] = self.launcher.zygote_pid
        pids.update({n: h.pid for n, h in self.procs.items() if h.returncode is None})
        self.sampler.sample(time.monotonic() - self.run_start, pids)

    def _cpu(self) -> dict[str, Any] | None:
        from testbed.resources import summarize_cpu

        if self.sampler is None or not self.sampler.times:
            return None
        return summarize_cpu(self.sampler.times, self.sampler.host_cpu,
                             self.sampler.times[-1]).to_json()
