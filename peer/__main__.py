"""``python -m peer``: one BitTorrent peer process.

The orchestrator runs ``python -m peer --config peers/<name>.json``; for hand use, flags build
the same config (``python -m peer --torrent x.torrent --role leecher --log me.jsonl``).
Exit status: 0 after a clean stop (SIGTERM, or leaving after completion), 2 on bad input, 74
when the event log could not be written (a full disk: the peer stops in order and its log ends
at its last complete line).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import sys
from typing import TYPE_CHECKING

from peer.cli import seconds
from peer.config import STOP_SIGNALS, PeerConfig, PolicySpec, ProtocolSettings, RateLimit
from peer.errors import TestbedError
from peer.eventlog import EXIT_WRITE_FAILED, LogWriteError, first_write_error
from peer.units import parse_rate

if TYPE_CHECKING:
    from peer.node import Node


@functools.cache
def build_parser() -> argparse.ArgumentParser:
    """The command line (built once: the fork server builds it before forking, warm_up)."""
    parser = argparse.ArgumentParser(prog="python -m peer", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="a PeerConfig JSON file (what the orchestrator writes)")
    parser.add_argument("--torrent", help=".torrent file")
    parser.add_argument("--role", choices=("seed", "leecher"), default="leecher")
    parser.add_argument("--content", help="seed: file to serve; leecher: where to write it")
    parser.add_argument("--log", help="event log path (JSON lines)")
    parser.add_argument("--name", default="peer")
    parser.add_argument("--peer-id", default="-TB0100-000000000000")
    parser.add_argument("--tracker", help="announce URL (default: the torrent's)")
    parser.add_argument("--announce-interval", type=seconds, default=None, metavar="S",
                        help="seconds between announces (default: the tracker's interval; a "
                             "peer short of neighbours announces sooner, at the tracker's "
                             "min interval)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upload", default="unlimited", help="upload cap, e.g. 512KiB/s")
    parser.add_argument("--download", default="unlimited", help="download cap, e.g. 4Mbit/s")
    parser.add_argument("--choker", default="tit_for_tat")
    parser.add_argument("--picker", default="rarest_first")
    parser.add_argument("--seed", type=int, default=0, help="random seed of this peer")
    parser.add_argument("--leave-after-complete", type=float, default=None)
    parser.add_argument("--unchoke-when-free", action="store_true",
                        help="unchoke a newly interested neighbour at once while a regular "
                             "slot is free, instead of at the next "
                             f"{ProtocolSettings().rechoke_period:g} s rechoke")
    return parser


def warm_up() -> None:
    """What the fork server (testbed/launch.py) runs once before forking peers, so that each
    peer does not build the parser (and compile its regular expressions) again."""
    build_parser()


def config_from_args(args: argparse.Namespace) -> PeerConfig:
    if args.config:
        return PeerConfig.load(args.config)
    if not args.torrent or not args.log:
        raise TestbedError("give --config FILE, or at least --torrent and --log")
    try:
        upload, download = parse_rate(args.upload), parse_rate(args.download)
    except ValueError as exc:
        raise TestbedError(str(exc)) from None
    config = PeerConfig(
        name=args.name, peer_id=args.peer_id, torrent=args.torrent, role=args.role, log=args.log,
        content=args.content, tracker=args.tracker, listen_host=args.host, listen_port=args.port,
        seed=args.seed, upload=RateLimit(rate=upload), download=RateLimit(rate=download),
        choker=PolicySpec(name=args.choker), picker=PolicySpec(name=args.picker),
        leave_after_complete=args.leave_after_complete,
        protocol=ProtocolSettings(unchoke_when_free=args.unchoke_when_free,
                                  announce_interval=args.announce_interval))
    config.validate()
    return config


def main(argv: list[str] | None = None) -> int:
    # A stop signal that arrives while we start (before the node's receiver is open) would kill
    # us with the default action and leave a log that ends at "start": hold it until the node
    # takes it over (Node.run unblocks), so every stop is a clean one.
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        return _run_main(argv)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)


def _run_main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        # Imported here so that --help and config errors stay instant.
        from peer.node import Node

        node = Node(config)
    except TestbedError as exc:
        print(f"peer: {exc}", file=sys.stderr)
        return 2
    failure: LogWriteError | None = None
    try:
        _run_node(node, config.name)
    except* LogWriteError as group:
        failure = first_write_error(group)
    if failure is not None:
        # The log ends at its last complete line; stderr may be on the same full disk.
        with contextlib.suppress(OSError):
            print(f"peer: stopped: {failure}", file=sys.stderr)
        return EXIT_WRITE_FAILED
    return 0


def _run_node(node: Node, name: str) -> None:
    import trio

    profile_dir = os.environ.get("BT_TESTBED_PROFILE")
    if profile_dir:
        # Developer aid: a cProfile dump per peer, to see where a swarm's CPU goes.
        import cProfile
        import time

        profiler = cProfile.Profile(time.process_time)  # CPU time: the machine is shared
        profiler.enable()
        try:
            trio.run(node.run)
        finally:
            profiler.disable()
        profiler.dump_stats(os.path.join(profile_dir, f"{name}.prof"))
    elif task_cpu_dir := os.environ.get("BT_TESTBED_TASK_CPU"):
        # Developer aid: this peer's CPU by what woke it (peer/taskcpu.py).
        from peer.taskcpu import TaskCpu

        instrument = TaskCpu()
        try:
            trio.run(node.run, instruments=[instrument])
        finally:
            instrument.dump(os.path.join(task_cpu_dir, f"{name}.json"))
    else:
        trio.run(node.run)


if __name__ == "__main__":
    sys.exit(main())
