"""Starting the processes of a run, behind a small interface.

The orchestrator only ever asks a ``Launcher`` to start a command with its output going to a
file, and gets a ``ProcessHandle`` back (pid, terminate, kill, wait). Two launchers exist:

- ``LocalLauncher``: one ``fork``/``exec`` of a fresh interpreter per process. Simple, but each
  Python process pays its imports (about 0.1-0.2 s of CPU for trio and the peer), which on two
  cores makes a 100-peer flash crowd take many seconds to start.
- ``ForkServerLauncher``: one pre-imported "zygote" interpreter (it imports the peer and trio
  but never starts ``trio.run``) forks a child per request and runs the module's ``__main__``
  in it. A child costs a ``fork`` (milliseconds), not a new interpreter. The zygote's own code
  is testbed/zygote.py.

A cluster run (testbed/cluster_launcher.py) starts peers on other machines through the same
interface: keep it small.

Nothing outlives the orchestrator. Children run in their own session (``setsid``), so a Ctrl-C
in the terminal reaches only the orchestrator, which then stops them in order; and each child
asks the kernel (``prctl(PR_SET_PDEATHSIG, SIGKILL)``) to be killed when its parent dies, so
even a SIGKILLed orchestrator leaves nothing behind. PDEATHSIG fires when the parent *thread*
exits, which is why processes are spawned from the trio thread itself and not from a worker
thread (trio's ``open_process`` uses a worker thread that exits after 10 s idle).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, runtime_checkable

import trio

if TYPE_CHECKING:
    pass

PR_SET_PDEATHSIG = 1
PIPE_SIZE = 1 << 20
"""The fork server's pipes: Linux's default limit for an unprivileged process (64 KiB without)."""
STOP_GRACE = 3.0
STOP_GRACE_PER_PROCESS = 0.05
"""CPU seconds a stopping peer may need: it closes and logs its connections and announces
``stopped``. Hundreds of peers stopping at once queue for a small host's cores."""


def stop_grace_for(processes: int, cpus: int) -> float:
    """Seconds ``processes`` stopping at once get before SIGKILL on ``cpus`` cores: 3 s, plus
    their queue for the cores (a peer SIGKILLed there loses its log's last lines)."""
    return STOP_GRACE + STOP_GRACE_PER_PROCESS * processes / max(1, cpus)


TRACKER_START = 0.3
"""Seconds the tracker takes to start and listen; the peers are started after it."""
PEER_START_FORKED = 0.025
"""CPU seconds a peer forked from the fork server takes to start (its config, the .torrent,
the content check): 12 ms measured among 300 starting at once, doubled for margin."""
PEER_START_EXEC = 0.15
"""The same for a peer started as a new interpreter (``--launcher local``): its imports too."""


def start_lead(peers: int, cpus: int, *, forked: bool) -> float:
    """Seconds to start ``peers`` processes ahead of t = 0 on ``cpus`` cores, tracker first."""
    if peers == 0:
        return 0.0
    per_peer = PEER_START_FORKED if forked else PEER_START_EXEC
    return TRACKER_START + per_peer * peers / max(1, cpus)


_prctl: Any
try:
    # Resolved in the parent: a forked child must not load libraries (malloc locks).
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
    _prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                       ctypes.c_ulong]
except (OSError, AttributeError):  # not Linux: no parent-death signal
    _prctl = None


def set_parent_death_signal(expected_parent: int) -> None:
    """Ask to be SIGKILLed when the parent dies; exit at once if it already has.

    Called in a freshly forked child. The ``getppid`` check closes the race where the parent
    died between the fork and the ``prctl``.
    """
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != expected_parent:
        os._exit(1)


class ProcessHandle(Protocol):
    """A started process. ``returncode`` is None while it runs, negative if killed by a signal."""

    pid: int

    @property
    def returncode(self) -> int | None: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...

    async def wait(self) -> int: ...


class Launcher(Protocol):
    async def start(self, name: str, argv: Sequence[str], *, cwd: Path, output_path: Path,
                    env: Mapping[str, str] | None = None) -> ProcessHandle:
        """Start ``argv`` in ``cwd`` with stdout and stderr appended to ``output_path``."""
        ...

    async def aclose(self) -> None:
        """Release the launcher's own resources (after every process it started has exited)."""
        ...


@runtime_checkable
class ServedLauncher(Protocol):
    """A launcher with a task of its own (the fork server's zygote, a cluster's agents): the
    orchestrator runs ``run`` in its nursery and waits for ``wait_ready`` before t = 0."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        ...

    async def wait_ready(self) -> None:
        ...


def is_remote(handle: ProcessHandle) -> bool:
    """A process on another machine (testbed.cluster_launcher): its pid is not this host's."""
    return getattr(handle, "worker", None) is not None


def was_lost(handle: ProcessHandle) -> bool:
    """A remote process that ended because its machine was lost, not by itself."""
    return bool(getattr(handle, "lost", False))


# ---------------------------------------------------------------------------------------------
# Local: one interpreter per process


class LocalProcess:
    """A ``subprocess.Popen`` waited for through a pidfd, so waiting needs no thread."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid
        self._pidfd: int | None = None
        with contextlib.suppress(OSError, AttributeError):
            self._pidfd = os.pidfd_open(popen.pid)

    @property
    def returncode(self) -> int | None:
        # Reaps it if it has exited (a cheap WNOHANG waitpid), so the answer is current.
        return self._popen.poll()

    def terminate(self) -> None:
        # Popen.send_signal polls first, so an already reaped pid is never signalled.
        self._popen.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self._popen.send_signal(signal.SIGKILL)

    async def wait(self) -> int:
        while self._popen.returncode is None:
            if self._pidfd is not None:
                await trio.lowlevel.wait_readable(self._pidfd)
                self._popen.wait()
            else:  # no pidfd (old kernel): poll
                if self._popen.poll() is None:
                    await trio.sleep(0.05)
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        return self._popen.returncode


class LocalLauncher:
    """Each process is a fresh ``fork``+``exec``, spawned from the calling (trio) thread."""

    async def start(self, name: str, argv: Sequence[str], *, cwd: Path, output_path: Path,
                    env: Mapping[str, str] | None = None) -> LocalProcess:
        parent = os.getpid()
        with open(output_path, "ab") as out:
            popen = subprocess.Popen(
                list(argv), cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                env=None if env is None else dict(env), start_new_session=True,
                preexec_fn=lambda: set_parent_death_signal(parent),
            )
        await trio.lowlevel.checkpoint()
        return LocalProcess(popen)

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


# ---------------------------------------------------------------------------------------------
# Fork server: one pre-imported zygote forks a child per process


class LaunchError(RuntimeError):
    """The fork server could not start a process (a bug or a broken install, not bad input)."""


class ReportedProcess:
    """A process whose exit another process reports (the zygote; a cluster worker's agent):
    the first report is its exit status."""

    def __init__(self) -> None:
        self._returncode: int | None = None
        self._exited = trio.Event()

    @property
    def returncode(self) -> int | None:
        return self._returncode

    def _set_exit(self, code: int) -> bool:
        """Record the exit status; False if one was already recorded (this report is late)."""
        if self._returncode is not None:
            return False
        self._returncode = code
        self._exited.set()
        return True

    async def wait(self) -> int:
        await self._exited.wait()
        assert self._returncode is not None
        return self._returncode


def exit_forked_child(code: int) -> NoReturn:
    """End a forked child (a zygote's, a ``--jobs`` run's) at once, its output flushed: no
    interpreter shutdown, no atexit or cleanup inherited from the parent."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


class ForkedProcess(ReportedProcess):
    """A child of the zygote: signalled by pid, its exit reported by the zygote."""

    def __init__(self, pid: int) -> None:
        super().__init__()
        self.pid = pid

    def _signal(self, signum: int) -> None:
        # The zygote reaps the child and then tells us: until then the pid is still the child's
        # (a zombie at worst), so it cannot have been reused.
        if self._returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)


def parse_python_argv(argv: Sequence[str]) -> tuple[str, str, list[str]] | None:
    """``[python, -m, mod, args...]`` -> ("module", mod, args); ``[python, x.py, ...]`` ->
    ("path", x.py, args); anything else (another program, interpreter options) -> None."""
    if len(argv) < 2 or os.path.realpath(argv[0]) != os.path.realpath(sys.executable):
        return None
    if argv[1] == "-m" and len(argv) >= 3:
        return ("module", argv[2], list(argv[3:]))
    if not argv[1].startswith("-"):
        return ("path", argv[1], list(argv[2:]))
    return None


DEFAULT_PRELOAD = ("peer.__main__", "peer.node", "tracker.__main__", "tracker.server")
"""What the zygote imports: the peer and the tracker with trio and h11 (their lazy imports)."""


class ForkServerLauncher:
    """Starts Python commands by forking a pre-imported zygote; anything else runs locally.

    ``preload`` names the modules the zygote imports once (e.g. ``peer.__main__``); a module
    that fails to import is skipped (and its children then pay the import themselves).
    """

    def __init__(self, preload: Sequence[str] = DEFAULT_PRELOAD,
                 *, output_path: Path | None = None) -> None:
        self.preload = list(preload)
        self.output_path = output_path
        self._local = LocalLauncher()
        self._zygote: LocalProcess | None = None
        self._stdin: trio.lowlevel.FdStream | None = None
        self._stdout: trio.lowlevel.FdStream | None = None
        self._lock = trio.Lock()
        self._outbox: list[bytes] = []
        self._children: dict[int, ForkedProcess] = {}
        self._early_exits: dict[int, int] = {}
        self._next_id = 0
        self._replies: dict[int, trio.MemorySendChannel[dict[str, object]]] = {}
        self._ready = trio.Event()
        self._failed: str | None = None

    @property
    def zygote_pid(self) -> int | None:
        return self._zygote.pid if self._zygote is not None else None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the zygote and serve its replies; run it in a nursery with ``nursery.start``."""
        to_zygote_r, to_zygote_w = os.pipe()
        from_zygote_r, from_zygote_w = os.pipe()
        for fd in (to_zygote_w, from_zygote_w):
            # A 1,000-peer crowd's requests (~200 KB) then go in one write and come out in
            # one read: one batch (testbed/zygote.py), however busy the machine.
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        parent = os.getpid()
        out = open(self.output_path, "ab") if self.output_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            popen = subprocess.Popen(
                [sys.executable, "-m", "testbed.zygote", "--zygote", *self.preload],
                stdin=to_zygote_r, stdout=from_zygote_w, stderr=out, start_new_session=True,
                preexec_fn=lambda: set_parent_death_signal(parent),
            )
        finally:
            os.close(to_zygote_r)
            os.close(from_zygote_w)
            if not isinstance(out, int):  # an opened file, not subprocess.DEVNULL
                out.close()
        self._zygote = LocalProcess(popen)
        self._stdin = trio.lowlevel.FdStream(to_zygote_w)
        self._stdout = trio.lowlevel.FdStream(from_zygote_r)
        task_status.started()
        buffer = b""
        try:
            while True:
                data = await self._stdout.receive_some(65536)
                if not data:
                    break
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    self._dispatch(json.loads(line))
        finally:
            self._failed = self._failed or "the fork server exited"
            # Children of a dead zygote are SIGKILLed by their parent-death signal.
            for child in self._children.values():
                if child.returncode is None:
                    child._set_exit(-signal.SIGKILL)
            for channel in self._replies.values():
                channel.close()
            self._ready.set()

    def _dispatch(self, message: dict[str, object]) -> None:
        if "ready" in message:
            self._ready.set()
        elif "exit" in message:
            pid, code = int(message["exit"]), int(message["code"])  # type: ignore[call-overload]
            child = self._children.get(pid)
            if child is None:  # exit reported before our spawn reply was handled
                self._early_exits[pid] = code
            else:
                child._set_exit(code)
        elif "id" in message:
            channel = self._replies.pop(int(message["id"]), None)  # type: ignore[call-overload]
            if channel is not None:
                channel.send_nowait(message)

    async def wait_ready(self) -> None:
        """Wait until the zygote has imported its preloads."""
        await self._ready.wait()
        if self._failed:
            raise LaunchError(self._failed)

    async def start(self, name: str, argv: Sequence[str], *, cwd: Path, output_path: Path,
                    env: Mapping[str, str] | None = None) -> ProcessHandle:
        target = parse_python_argv(argv)
        if target is None or env is not None or self._stdin is None:
            return await self._local.start(name, argv, cwd=cwd, output_path=output_path, env=env)
        await self.wait_ready()
        kind, what, args = target
        request_id = self._next_id
        self._next_id += 1
        send, receive = trio.open_memory_channel[dict[str, object]](1)
        self._replies[request_id] = send
        request = {"id": request_id, kind: what, "args": args, "cwd": str(cwd),
                   "output": str(output_path), "name": name}
        # Starts made together (a flash crowd) go out in one write: the zygote then sees them
        # as one batch, forked before any of them runs (_fork_batch).
        self._outbox.append(json.dumps(request).encode() + b"\n")
        async with self._lock:
            if self._outbox:
                data = b"".join(self._outbox)
                self._outbox.clear()
                await self._stdin.send_all(data)
        try:
            reply = await receive.receive()
        except trio.EndOfChannel:
            raise LaunchError(f"{name}: {self._failed}") from None
        if "error" in reply:
            raise LaunchError(f"{name}: {reply['error']}")
        child = ForkedProcess(int(reply["pid"]))  # type: ignore[call-overload]
        self._children[child.pid] = child
        if child.pid in self._early_exits:
            child._set_exit(self._early_exits.pop(child.pid))
        return child

    async def aclose(self) -> None:
        """Close the zygote's stdin (it exits) and wait for it; kill it if it dawdles."""
        if self._stdin is not None:
            with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
                await self._stdin.aclose()
            self._stdin = None
        if self._zygote is not None:
            with trio.move_on_after(2):
                await self._zygote.wait()
            if self._zygote.returncode is None:
                self._zygote.kill()
                await self._zygote.wait()
