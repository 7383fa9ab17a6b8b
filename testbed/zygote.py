"""The fork server's own process (``python -m testbed.zygote --zygote MODULE...``).

It imports the peer and the tracker once, then forks a child per request that
``testbed.launch.ForkServerLauncher`` writes to its stdin (JSON lines), and reports each child's
pid and exit status on its stdout. Requests that arrive together (a flash crowd) are forked as
one batch and released together. Single-threaded and never runs trio, so forking is safe.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import types
from collections.abc import Callable
from typing import TYPE_CHECKING

from testbed.launch import PIPE_SIZE, exit_forked_child, set_parent_death_signal

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec




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
                  release: tuple[int, int]) -> None:
    """In a child just forked from the zygote: wait for the zygote to release its batch (the
    end of file on the ``release`` pipe), then become the requested program; never returns."""
    import runpy

    code = 1
    try:
        release_r, release_w = release
        os.close(release_w)
        os.setsid()
        set_parent_death_signal(zygote_pid)
        # The end of file wakes every waiting child at once; bytes would wake them one by one,
        # each woken reader waking the next (Linux pipes wait exclusively), in fork order.
        os.read(release_r, 1)
        os.close(release_r)
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
        exit_forked_child(code)


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
    set_parent_death_signal(os.getppid())
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return wake_r, wake_w


BATCH_GAP = 0.005
"""The zygote's batch ends when no further request comes within this many seconds."""


def _read_batch(fd: int) -> bytes:
    """What the orchestrator is writing now, whole: keep reading while more arrives within
    ``BATCH_GAP`` (where the pipe could not be enlarged to ``PIPE_SIZE``, a crowd's requests
    fill it several times over)."""
    data = os.read(fd, PIPE_SIZE)
    while data:
        readable, _, _ = select.select([fd], [], [], BATCH_GAP)
        if not readable:
            break
        more = os.read(fd, PIPE_SIZE)
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
    waited tens of seconds: the batch is forked first (a few ms each), then released at once
    by closing the pipe they wait on (each child closes its own copy of the write end first).
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
                _forked_child(request, zygote_pid, inherited, (release_r, release_w))
            forked += 1
            children.add(pid)
            send({"id": request["id"], "pid": pid})
    finally:
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
    print("usage: python -m testbed.zygote --zygote MODULE...", file=sys.stderr)
    sys.exit(2)
