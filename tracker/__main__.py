"""The tracker process: HTTP announce and scrape (BEP 3, BEP 23, BEP 48) on 127.0.0.1.

    python -m tracker --torrent run/torrent --port-file run/tracker.port --log run/tracker.jsonl
    python -m tracker --info-hash 0123…(40 hex digits) --port 6969
    python -m tracker --any

Prints ``listening on HOST:PORT`` once listening and, with --port-file, writes the port there
(atomically), so a parent process never guesses. SIGTERM or SIGINT: logs ``stop``, flushes the
log and exits 0. Bad arguments: one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
from pathlib import Path
from typing import NoReturn

# trio, h11 and the server are imported only once the arguments are good, so --help and
# argument errors answer at once.
from peer.cli import OneLineParser, fail, seconds
from peer.errors import TestbedError
from peer.eventlog import (
    EXIT_WRITE_FAILED,
    EventLog,
    LogWriteError,
    RunClock,
    first_write_error,
)
from tracker.swarm import CLIENT_MAX_REANNOUNCE, DEFAULT_GRACE, DEFAULT_INTERVAL, Swarm

PROG = "python -m tracker"


def _fail(message: str) -> NoReturn:
    fail(PROG, message)


def _info_hash(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 20:
        raise argparse.ArgumentTypeError(f"info hash {text!r} is not 40 hex digits")
    return raw


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"port {text!r} must be 0..65535 (0: any free port)")
    return int(text)


def _interval(text: str) -> int:
    # Whole seconds: the response's ``interval`` is a bencoded integer.
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value.is_integer() or value < 1:
        raise argparse.ArgumentTypeError(
            f"interval {text!r} must be a whole number of seconds >= 1")
    return int(value)


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed {text!r} is not a whole number") from None


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=_port, default=0, help="port; 0 picks a free one (0)")
    parser.add_argument("--port-file", type=Path, metavar="PATH",
                        help="write the bound port here once listening")
    parser.add_argument("--log", type=Path, metavar="PATH", help="JSON-lines event log")
    parser.add_argument("--torrent", type=Path, action="append", default=[], metavar="PATH",
                        help="serve this torrent (repeatable)")
    parser.add_argument("--info-hash", type=_info_hash, action="append", default=[],
                        metavar="HEX", help="serve this info_hash, 40 hex digits (repeatable)")
    parser.add_argument("--any", action="store_true",
                        help="serve any info_hash (a swarm starts at its first announce)")
    parser.add_argument("--interval", type=_interval, default=DEFAULT_INTERVAL,
                        help=f"seconds between announces told to peers ({DEFAULT_INTERVAL})")
    parser.add_argument("--min-interval", type=_interval, default=None, metavar="S",
                        help="the min interval told to peers (half the interval)")
    parser.add_argument("--peer-timeout", type=seconds, default=None, metavar="S",
                        help="forget a peer silent this long (two intervals or "
                             f"{CLIENT_MAX_REANNOUNCE} s, whichever is longer, + "
                             f"{DEFAULT_GRACE:g} s)")
    parser.add_argument("--run-start", type=_float, default=None, metavar="FLOAT",
                        help="the run's t = 0 on the monotonic clock (default: now)")
    parser.add_argument("--seed", type=_seed, default=0,
                        help="seed of the peer-list sampling (0)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.any and (args.torrent or args.info_hash):
        parser.error("--any serves every info_hash; do not combine it with --torrent/--info-hash")
    if not (args.any or args.torrent or args.info_hash):
        parser.error("say which torrents to serve: --torrent, --info-hash or --any")

    hashes: list[bytes] = list(args.info_hash)
    if args.torrent:
        from peer.metainfo import read_torrent

        for path in args.torrent:
            try:
                hashes.append(read_torrent(path).info_hash)
            except TestbedError as exc:
                _fail(str(exc))
    if args.min_interval is not None and args.min_interval > args.interval:
        parser.error(f"--min-interval {args.min_interval} is longer than the interval "
                     f"({args.interval})")
    swarm = Swarm(None if args.any else hashes, rng=random.Random(args.seed),
                  interval=args.interval, min_interval=args.min_interval,
                  peer_timeout=args.peer_timeout)
    try:
        log = EventLog(args.log if args.log is not None else os.devnull, RunClock(args.run_start))
    except OSError as exc:
        _fail(f"{args.log}: cannot open the log: {exc.strerror or exc}")

    import trio

    write_failure: LogWriteError | None = None
    try:
        try:
            problem = trio.run(_run, args, swarm, log)
        except* LogWriteError as group:
            write_failure = first_write_error(group)
            problem = None
    except KeyboardInterrupt:  # a Ctrl-C before the signal handler was in place
        problem = None
    finally:
        log.close()
    if write_failure is not None:
        # Like a peer's: the log ends at its last complete line, and the orchestrator reads
        # this status as "its files could not be written". stderr may be on the same disk.
        with contextlib.suppress(OSError):
            print(f"{PROG}: stopped: {write_failure}", file=sys.stderr)
        return EXIT_WRITE_FAILED
    if problem:
        _fail(problem)
    return 0


async def _run(args: argparse.Namespace, swarm: Swarm, log: EventLog) -> str | None:
    """Serve until SIGTERM/SIGINT. Returns a start-up problem to report, or None."""
    import signal
    from functools import partial

    import trio

    from tracker.server import serve_tracker

    problem: str | None = None
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            try:
                port = await nursery.start(partial(serve_tracker, host=args.host,
                                                   port=args.port, swarm=swarm, log=log))
            except OSError as exc:
                nursery.cancel_scope.cancel()
                return f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
            print(f"listening on {args.host}:{port}", flush=True)
            if args.port_file is not None:
                try:
                    _write_atomically(args.port_file, f"{port}\n")
                except OSError as exc:
                    problem = f"{args.port_file}: cannot write the port file: {exc.strerror}"
                    nursery.cancel_scope.cancel()
                    return problem
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break
    return problem


def _write_atomically(path: Path, text: str) -> None:
    # Write beside the target, then rename: a reader sees no file or the whole port, never a
    # half-written number.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


if __name__ == "__main__":
    sys.exit(main())
