"""The run's own tracker: start it, follow it, take it down and bring it back.

A tracker that dies does not end the run: the peers keep trading with the neighbours they know
and re-announce on their own schedule, so its death is recorded (summary.json ``tracker``, a
line on the console) and the run goes on. A topology can also take the tracker down on purpose
(``tracker: {outages: [{at, for}]}``): at ``at`` it is stopped as at the end of a run (SIGTERM,
so its log stays whole), and ``for`` seconds later a new tracker is started on the same port,
the one in every peer's .torrent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import trio

from testbed.experiment import Experiment
from testbed.launch import Launcher, ProcessHandle
from testbed.rundir import RunDir

RESTART_RETRY = 1.0
"""Seconds between attempts to restart the tracker when its port is not free yet."""


class RunFailed(Exception):
    """The run cannot go on (the tracker did not start, a process could not be launched)."""


class Outage(Protocol):
    """A planned tracker outage (``testbed.topology.TrackerOutage``)."""

    @property
    def at(self) -> float: ...

    @property
    def duration(self) -> float: ...


def output_tail(path: Path, lines: int = 8) -> str:
    """The last lines of a process's output file, to quote in an error."""
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    if not text:
        return f" ({path.name} is empty)"
    tail = "\n  ".join(text.splitlines()[-lines:])
    return f"; {path.name} ends with:\n  {tail}"


class TrackerControl:
    """The tracker process (or its successive processes) of one run.

    ``events`` is what summary.json records: ``{"t", "event", "code"}`` with event ``died``
    (it exited unasked), ``stopped`` (a planned outage began), ``restarted`` (it is back) or
    ``restart_failed`` (a restart attempt failed; it is retried every second).
    """

    def __init__(self, *, launcher: Launcher, run: RunDir, experiment: Experiment,
                 argv: Callable[[list[str]], list[str]], now: Callable[[], float],
                 say: Callable[[str], None], timeout: float) -> None:
        self.launcher = launcher
        self.run = run
        self.experiment = experiment
        self.argv = argv
        self.now = now
        self.say = say
        self.timeout = timeout
        self.handle: ProcessHandle | None = None
        self.port: int | None = None
        self.events: list[dict[str, Any]] = []
        self.crash: int | None = None
        """Exit code of the first unasked nonzero exit (summary.json ``crashes``)."""
        self._asked: set[int] = set()
        """ids of the handles we stopped (an outage, the end of the run)."""
        self._torrent: Path | None = None
        self._run_start: float | None = None
        self._watch_scope: trio.CancelScope | None = None

    @property
    def running(self) -> bool:
        return self.handle is not None and self.handle.returncode is None

    async def start(self, torrent: Path, run_start: float) -> int:
        """Start the tracker on a free port; return the port once it listens."""
        self._torrent, self._run_start = torrent, run_start
        self.port = await self._launch(0)
        return self.port

    async def _launch(self, port: int) -> int:
        assert self._torrent is not None and self._run_start is not None
        exp = self.experiment
        args = ["--host", exp.tracker_host, "--port", str(port),
                "--port-file", self.run.tracker_port.name, "--log", self.run.tracker_log.name,
                "--torrent", self._torrent.name,
                "--interval", str(max(1, round(exp.announce_interval))),
                "--run-start", repr(self._run_start), "--seed", str(exp.seed)]
        self.run.tracker_port.unlink(missing_ok=True)
        handle = await self.launcher.start("tracker", self.argv(args), cwd=self.run.root,
                                           output_path=self.run.tracker_out)
        self.handle = handle
        with trio.move_on_after(self.timeout):
            while True:
                try:
                    text = self.run.tracker_port.read_text().strip()
                except FileNotFoundError:
                    text = ""
                if text.isdigit():
                    return int(text)
                if handle.returncode is not None:
                    self._asked.add(id(handle))
                    raise RunFailed(f"the tracker exited with code {handle.returncode} "
                                    f"before listening{output_tail(self.run.tracker_out)}")
                await trio.sleep(0.02)
        self._asked.add(id(handle))
        handle.kill()
        raise RunFailed(f"the tracker did not report its port within {self.timeout:g} s"
                        f"{output_tail(self.run.tracker_out)}")

    async def watch(self) -> None:
        """Record the current tracker's exit if nobody asked for it (run it in a nursery; it
        returns when that process exits)."""
        handle = self.handle
        assert handle is not None
        # Stopping the tracker cancels this wait first: a process has one waiter at a time.
        with trio.CancelScope() as self._watch_scope:
            code = await handle.wait()
        if self._watch_scope.cancelled_caught or id(handle) in self._asked:
            return
        t = self.now()
        self.events.append({"t": round(t, 3), "event": "died", "code": code})
        if code != 0 and self.crash is None:
            self.crash = code
        self.say(f"t={t:.1f} s: the tracker exited with code {code} (see tracker.out); the "
                 "peers go on with the neighbours they know")

    async def stop(self, stop: Callable[[list[ProcessHandle]], Awaitable[None]]) -> None:
        """Stop the current tracker with ``stop`` (SIGTERM, grace, SIGKILL)."""
        if self.handle is not None:
            self._asked.add(id(self.handle))
            if self._watch_scope is not None:
                self._watch_scope.cancel()
            if self.handle.returncode is None:
                await stop([self.handle])

    async def run_outages(self, outages: Sequence[Outage],
                          sleep_until: Callable[[float], Awaitable[None]],
                          stop: Callable[[list[ProcessHandle]], Awaitable[None]],
                          nursery: trio.Nursery) -> None:
        """Take the tracker down at each outage's start and bring it back at its end."""
        for outage in sorted(outages, key=lambda o: o.at):
            await sleep_until(outage.at)
            if self.running:
                await self.stop(stop)
                assert self.handle is not None
                self.events.append({"t": round(self.now(), 3), "event": "stopped",
                                    "code": self.handle.returncode})
                self.say(f"t={self.now():.1f} s: tracker outage: stopped for "
                         f"{outage.duration:g} s")
            await sleep_until(outage.at + outage.duration)
            if not self.running:
                await self.restart(nursery)

    async def restart(self, nursery: trio.Nursery) -> None:
        """Start a new tracker on the same port, retrying while the port is not free."""
        assert self.port is not None
        failed = False
        while True:
            try:
                await self._launch(self.port)
                break
            except RunFailed as exc:
                if not failed:
                    failed = True
                    self.events.append({"t": round(self.now(), 3), "event": "restart_failed",
                                        "code": None, "detail": str(exc).splitlines()[0]})
                    self.say(f"t={self.now():.1f} s: the tracker could not restart "
                             f"({str(exc).splitlines()[0]}); retrying every "
                             f"{RESTART_RETRY:g} s")
                await trio.sleep(RESTART_RETRY)
        self.events.append({"t": round(self.now(), 3), "event": "restarted", "code": None})
        self.say(f"t={self.now():.1f} s: the tracker is back on port {self.port}")
        nursery.start_soon(self.watch)

    def to_json(self, outages: Sequence[Outage]) -> dict[str, Any]:
        return {"outages": [{"at": o.at, "for": o.duration} for o in outages],
                "events": list(self.events)}
