"""Starting the processes of a run, behind a small interface.

The orchestrator only ever asks a ``Launcher`` to start a command with its output going to a
file, and gets a ``ProcessHandle`` back (pid, terminate, kill, wait). Two launchers exist:

- ``LocalLauncher``: one ``fork``/``exec`` of a fresh interpreter per process. Simple, but each
  Python process pays its imports (about 0.1-0.2 s of CPU for trio and the peer), which on two
  cores makes a 100-peer flash crowd take many seconds to start.
- ``ForkServerLauncher``: one pre-imported "zygote" interpreter (it imports the peer and trio
  but never starts ``trio.run``) forks a child per request and runs the module's ``__main__``
  in it. A child costs a ``fork`` (milliseconds), not a new interpreter.

A later issue runs peers on several machines through the same interface: keep it small.

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
import json
import os
import select
import signal
import subprocess
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import trio

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

PR_SET_PDEATHSIG = 1

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


class ForkedProcess:
    """A child of the zygote: signalled by pid, its exit reported by the zygote."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._returncode: int | None = None
        self._exited = trio.Event()

    @property
    def returncode(self) -> int | None:
        return self._returncode

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

    def _set_exit(self, code: int) -> None:
        self._returncode = code
        self._exited.set()

    async def wait(self) -> int:
        await self._exited.wait()
        assert self._returncode is not None
        return self._returncode


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
        parent = os.getpid()
        out = open(self.output_path, "ab") if self.output_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            popen = subprocess.Popen(
                [sys.executable, "-m", "testbed.launch", "--zygote", *self.preload],
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


# ---------------------------------------------------------------------------------------------
# The zygote process (``python -m testbed.launch --zygote MODULE...``)


def _preload(modules: list[str]) -> None:
    """Import ``modules`` and move them out of the cyclic GC's reach.

    Children share the preloaded modules' memory copy-on-write; the cyclic GC would touch (and
    so copy) every page of them in every child. Freezing moves them out of its reach.
    """
    import gc
    import importlib
    import socket

    for module in modules:
        try:
            imported = importlib.import_module(module)
        except Exception as exc:  # the child will report the real error when it runs
            print(f"zygote: cannot preload {module}: {exc!r}", file=sys.stderr, flush=True)
            continue
        spec = imported.__spec__
        if module.endswith(".__main__") and spec is not None and spec.loader is not None:
            code = spec.loader.get_code(module)  # type: ignore[attr-defined]
            if code is not None:
                _MAIN_CODE[module.removesuffix(".__main__")] = (spec, code)
        warm_up = getattr(imported, "warm_up", None)
        if callable(warm_up):
            warm_up()
    # Paid once here instead of in every child (a 1,000-peer crowd forks 1,000): the first
    # getaddrinfo loads the idna codec and the resolver's configuration.
    socket.getaddrinfo("127.0.0.1", 0)
    gc.collect()
    gc.freeze()


_MAIN_CODE: dict[str, tuple[ModuleSpec, types.CodeType]] = {}
"""Compiled ``pkg.__main__`` code of the preloaded packages, run by the children as runpy would
(without reading and compiling the source again in each child)."""


def _run_as_main(package: str, args: list[str]) -> None:
    """``python -m package args``: from the zygote's compiled code when it has it."""
    import runpy

    if package not in _MAIN_CODE:
        sys.argv = [package, *args]
        runpy.run_module(package, run_name="__main__", alter_sys=True)
        return
    spec, code = _MAIN_CODE[package]
    main = types.ModuleType("__main__")
    main.__dict__.update(__file__=spec.origin, __spec__=spec, __loader__=spec.loader,
                         __package__=spec.parent, __cached__=None)
    sys.modules["__main__"] = main
    sys.argv = [str(spec.origin), *args]
    exec(code, main.__dict__)


def _forked_child(request: dict[str, object], zygote_pid: int, inherited: tuple[int, ...],
                  release: int) -> None:
    """In a child just forked from the zygote: wait for the zygote to release its batch (one
    byte on ``release``), then become the requested program; never returns."""
    import runpy

    code = 1
    try:
        os.setsid()
        set_parent_death_signal(zygote_pid)
        os.read(release, 1)  # an EOF (the zygote died) releases too; PDEATHSIG then ends us
        os.close(release)
        signal.set_wakeup_fd(-1)
        # As in a fresh interpreter (which ignores SIGPIPE and raises KeyboardInterrupt).
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(str(request["cwd"]))
        fd = os.open(str(request["output"]), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        for unused in (fd, null, *inherited):
            with contextlib.suppress(OSError):
                os.close(unused)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", closefd=False, buffering=1)  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False, buffering=1)  # noqa: SIM115
        args = [str(a) for a in request["args"]]  # type: ignore[attr-defined]
        if "module" in request:
            # A preloaded ``pkg.__main__`` would make runpy warn; its imports stay cached.
            sys.modules.pop(f"{request['module']}.__main__", None)
            _run_as_main(str(request["module"]), args)
        else:
            sys.argv = [str(request["path"]), *args]
            runpy.run_path(str(request["path"]), run_name="__main__")
        code = 0
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        code = 130
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _kill_all(children: set[int]) -> None:
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in list(children):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def _zygote_signals() -> tuple[int, int]:
    """Die with the orchestrator, ignore Ctrl-C (the orchestrator handles it), and turn SIGCHLD
    into a byte on a pipe that select() watches: returns the pipe (read end, write end)."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return wake_r, wake_w


BATCH_GAP = 0.005
"""The zygote's batch ends when no further request comes within this many seconds."""


def _read_batch(fd: int) -> bytes:
    """What the orchestrator is writing now, whole: a flash crowd's requests exceed the pipe's
    64 KiB, so keep reading while more arrives within ``BATCH_GAP``."""
    data = os.read(fd, 65536)
    while data:
        readable, _, _ = select.select([fd], [], [], BATCH_GAP)
        if not readable:
            break
        more = os.read(fd, 65536)
        if not more:
            break  # EOF: the caller sees it on its next read
        data += more
    return data


def _fork_batch(requests: list[dict[str, object]], children: set[int],
                send: Callable[[dict[str, object]], None], zygote_pid: int,
                inherited: tuple[int, ...]) -> None:
    """Fork a child for each request that arrived together, holding them until all are forked.

    A flash crowd's children would otherwise start running as they are forked and take the
    CPU from the zygote (one process among hundreds), so the last forks of a 1,000-peer crowd
    waited tens of seconds: the batch is forked first (a few ms each), then released at once.
    """
    release_r, release_w = os.pipe()
    forked = 0
    try:
        for request in requests:
            try:
                pid = os.fork()
            except OSError as exc:
                send({"id": request["id"], "error": f"fork failed: {exc}"})
                continue
            if pid == 0:
                _forked_child(request, zygote_pid, (*inherited, release_w), release_r)
            forked += 1
            children.add(pid)
            send({"id": request["id"], "pid": pid})
    finally:
        os.write(release_w, b"r" * forked)  # the pipe holds 64 KiB: more than a batch
        os.close(release_w)
        os.close(release_r)


def _zygote_main(preload: list[str]) -> int:
    """Import ``preload``, then fork a child for each JSON request read from stdin.

    Single-threaded and never runs trio, so forking is safe. Replies and exits go to stdout as
    JSON lines. When stdin closes (the orchestrator is gone or done) every child still running
    is SIGKILLed and the zygote exits.
    """
    _preload(preload)
    wake_r, wake_w = _zygote_signals()
    out = sys.stdout.buffer
    children: set[int] = set()

    def send(message: dict[str, object]) -> None:
        out.write(json.dumps(message).encode() + b"\n")
        out.flush()

    def reap() -> None:
        for pid in list(children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                children.discard(pid)
                continue
            if done:
                children.discard(pid)
                send({"exit": pid, "code": os.waitstatus_to_exitcode(status)})

    zygote_pid = os.getpid()
    send({"ready": True})
    # The unbuffered file under stdin: select() and os.read() must see the same bytes.
    stdin = getattr(sys.stdin.buffer, "raw", sys.stdin.buffer)
    buffer = b""
    while True:
        try:
            readable, _, _ = select.select([stdin, wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in readable:
            os.read(wake_r, 4096)
            reap()
        if stdin in readable:
            data = _read_batch(stdin.fileno())
            if not data:
                break
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            _fork_batch([json.loads(line) for line in lines], children, send, zygote_pid,
                        (wake_r, wake_w))
        reap()
    _kill_all(children)  # the orchestrator is gone: take everything down with us
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--zygote":
        sys.exit(_zygote_main(sys.argv[2:]))
    print("usage: python -m testbed.launch --zygote MODULE...", file=sys.stderr)
    sys.exit(2)
