"""Real BitTorrent clients (aria2c, libtorrent, ...) as peers of a testbed run.

A topology group with a ``command`` is a group of *external* peers: each is a real client
started from the command template (docs/topology.md, "External clients"). The orchestrator runs
each one like any peer, through the launcher, as

    python -m testbed.external --config peers/<name>.json

a small supervisor that

- prepares the client's directory (a seed gets the content file there, hard-linked or copied),
  picks a free port on 127.0.0.1 and fills the placeholders of the template;
- starts the client as its child (its stdout and stderr go to ``peers/<name>.out``), with the
  parent-death signal set, so nothing outlives a killed supervisor;
- checks the client's file every ``poll_period`` seconds: pieces whose SHA-1 matches the torrent
  are logged as ``piece`` events, and ``complete`` once the file holds every piece. The file is
  what every client reports in the same way, whatever its console output looks like;
- writes ``peers/<name>.jsonl`` in the peer event-log schema (``start``, ``piece``,
  ``complete``, ``stop``), so the orchestrator's completion tracking and the analysis need
  nothing special for external peers;
- on SIGTERM/SIGINT (a departure ``at``, the end of the run) stops the client with SIGTERM,
  then SIGKILL after ``stop_grace``; after completion with ``leave_after_complete`` it stops the
  client itself; when the client exits on its own (aria2c with ``--seed-time=0``), it checks
  the file once more and exits with 0 if the client did, 1 otherwise.

Nothing here imports pandas or numpy: the supervisor is one more small process per peer.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn

from peer.cli import fail
from peer.errors import TestbedError
from peer.eventlog import SCHEMA_VERSION, EventLog, RunClock
from peer.metainfo import Metainfo, read_torrent
from testbed.experiment import Experiment
from testbed.external_plan import (
    PLACEHOLDERS,
    ExternalConfig,
    ExternalPeerPlan,
    check_template,
    kib,
    missing_programs,
    render_command,
)

# The plan side (templates, ExternalPeerPlan, ExternalConfig) lives in testbed.external_plan;
# it is re-exported here for callers that know real clients by this module.
__all__ = [
    "PLACEHOLDERS",
    "ExternalConfig",
    "ExternalPeerPlan",
    "FileChecker",
    "check_template",
    "experiment_info_hash",
    "kib",
    "main",
    "missing_programs",
    "opentracker_argv",
    "render_command",
]

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------
# An external tracker (opentracker)


def experiment_info_hash(experiment: Experiment) -> bytes:
    """The info_hash of the torrent a run of ``experiment`` will make, computed ahead.

    The content is synthetic and deterministic and the info dictionary holds no announce URL,
    so an external tracker that serves only listed torrents (Debian's opentracker has a
    whitelist) can be told the info_hash before the run starts.
    """
    from peer.content import iter_synthetic_pieces
    from peer.metainfo import build_metainfo

    spec = experiment.content
    digests = [hashlib.sha1(piece).digest()
               for piece in iter_synthetic_pieces(spec.size, spec.seed, spec.piece_length)]
    return build_metainfo(announce="http://127.0.0.1:9/announce", name=spec.name,
                          length=spec.size, piece_length=spec.piece_length,
                          piece_hashes=digests).info_hash


def opentracker_argv(*, port: int, directory: str | Path, program: str = "opentracker",
                     user: str = "nobody") -> list[str]:
    """Debian's opentracker on 127.0.0.1:``port`` (TCP and UDP), whitelist ``whitelist.txt``.

    Debian builds it with a whitelist (``WANT_ACCESSLIST_WHITE``): write the info_hashes, one
    in hex a line, to ``directory/whitelist.txt`` first. It chroots into ``directory`` (so the
    whitelist path is relative to it) and refuses to keep running as root: ``-u`` drops to
    ``user`` (the directory and file must be readable by that user).
    """
    return [program, "-i", "127.0.0.1", "-p", str(port), "-P", str(port), "-u", user,
            "-d", str(directory), "-w", "whitelist.txt"]


# ---------------------------------------------------------------------------------------------
# Watching the file


class FileChecker:
    """Which pieces of a file match the torrent, re-hashing only those not yet matched.

    A piece whose bytes match stays matched: clients write a piece's bytes once (a client may
    preallocate the file with zeros, which simply do not match yet). A read that races the
    client's write fails the hash and is tried again at the next check.
    """

    def __init__(self, path: Path, metainfo: Metainfo) -> None:
        self.path = path
        self.metainfo = metainfo
        self.have = [False] * metainfo.num_pieces
        self.count = 0

    @property
    def complete(self) -> bool:
        return self.count == self.metainfo.num_pieces

    def check(self) -> list[int]:
        """Hash the pieces not yet matched; returns the ones that match now."""
        meta = self.metainfo
        found: list[int] = []
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - closed below
        except OSError:
            return found
        with f:
            for index, expected in enumerate(meta.piece_hashes):
                if self.have[index]:
                    continue
                f.seek(index * meta.piece_length)
                data = f.read(meta.piece_size(index))
                if len(data) == meta.piece_size(index) and \
                        hashlib.sha1(data).digest() == expected:
                    self.have[index] = True
                    self.count += 1
                    found.append(index)
        return found


# ---------------------------------------------------------------------------------------------
# The supervisor


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the client binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _place_content(source: Path, target: Path) -> None:
    if target.exists():
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


class Supervisor:
    def __init__(self, config: ExternalConfig) -> None:
        self.config = config
        self.metainfo = read_torrent(config.torrent)
        self.clock = RunClock(config.run_start)
        self.directory = Path(config.directory).resolve()
        self.file = self.directory / self.metainfo.name
        self.checker = FileChecker(self.file, self.metainfo)
        self.stop_signal: int | None = None
        self.log = EventLog(config.log, self.clock)

    def values(self, port: int) -> dict[str, object]:
        c = self.config
        return {
            "torrent": Path(c.torrent).resolve(), "dir": self.directory, "file": self.file,
            "port": port, "tracker": c.tracker, "name": c.name, "peer_id": c.peer_id,
            "seed": c.seed, "upload_rate": int(c.upload.rate or 0),
            "download_rate": int(c.download.rate or 0),
            "upload_rate_kib": kib(c.upload.rate), "download_rate_kib": kib(c.download.rate),
            "upload_rate_kb": kib(c.upload.rate, 1000),
            "download_rate_kb": kib(c.download.rate, 1000),
            "python": sys.executable, "repo": REPO,
        }

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum

    def _new_pieces(self) -> None:
        for index in self.checker.check():
            # Which peers sent the blocks is the client's secret: ``from`` stays empty.
            self.log.emit("piece", index=index, size=self.metainfo.piece_size(index),
                          start=None, ok=True, blame=[], **{"from": []})

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self._prepare_directory()
        port = free_port()
        argv = render_command(self.config.command, self.values(port))
        self.checker.check()  # a seed holds everything already; a leecher usually nothing
        started = self.clock.now()
        client = self._start_client(argv, port)
        was_complete = self.checker.complete
        reason, code = self._watch(client, started, was_complete)
        if code is None:
            code = _stop(client, self.config.stop_grace)
        if not self.checker.complete:
            self._new_pieces()  # what the client wrote before it went
            if self.checker.complete:
                self._log_complete(self.clock.now() - started)
        down = 0 if was_complete else sum(self.metainfo.piece_size(i)
                                          for i, h in enumerate(self.checker.have) if h)
        self.log.emit("stop", reason=reason, up=None, down=down, client_exit=code)
        self.log.close()
        if reason.startswith("client exited"):
            return 0 if code == 0 else 1
        return 0

    def _prepare_directory(self) -> None:
        c = self.config
        self.directory.mkdir(parents=True, exist_ok=True)
        if c.role == "seed":
            if not c.content:
                raise TestbedError(f"{c.name}: an external seed needs the content file")
            _place_content(Path(c.content).resolve(), self.file)

    def _start_client(self, argv: list[str], port: int) -> subprocess.Popen[bytes]:
        """Start the client, dying with us, and log ``start`` as a testbed peer would."""
        from testbed.launch import set_parent_death_signal

        c = self.config
        parent = os.getpid()
        try:
            client = subprocess.Popen(argv, stdin=subprocess.DEVNULL, cwd=self.directory,
                                      preexec_fn=lambda: set_parent_death_signal(parent))
        except OSError as exc:
            raise TestbedError(f"{c.name}: cannot start {argv[0]!r}: "
                               f"{exc.strerror or exc}") from None
        rate = {"upload": c.upload.rate, "download": c.download.rate}
        self.log.emit(
            "start", schema=SCHEMA_VERSION, name=c.name, group=c.group, peer_id=c.peer_id,
            role=c.role, pid=client.pid, info_hash=self.metainfo.info_hash_hex,
            length=self.metainfo.length, piece_length=self.metainfo.piece_length,
            pieces=self.metainfo.num_pieces, listen=f"127.0.0.1:{port}",
            upload={"rate": rate["upload"], "burst": None},
            download={"rate": rate["download"], "burst": None},
            choker={"name": f"external:{Path(argv[0]).name}", "params": {}},
            picker={"name": f"external:{Path(argv[0]).name}", "params": {}},
            protocol={}, seed=c.seed, have=self.checker.count, external=True, command=argv)
        self.log.flush()
        print(f"testbed.external: started {shlex.join(argv)} (pid {client.pid})", flush=True)
        return client

    def _watch(self, client: subprocess.Popen[bytes], started: float,
               was_complete: bool) -> tuple[str, int | None]:
        """Log pieces as they appear until the client exits (its exit code), a signal comes
        or it is time to leave after completing (None: the client still runs)."""
        c = self.config
        completed_at: float | None = self.clock.now() if was_complete else None
        while True:
            code = client.poll()
            if code is not None:
                return f"client exited with code {code}", code
            if self.stop_signal is not None:
                return "signal", None
            if not self.checker.complete:
                self._new_pieces()
                if self.checker.complete:
                    completed_at = self.clock.now()
                    self._log_complete(completed_at - started)
            leave = c.leave_after_complete
            if completed_at is not None and not was_complete and leave is not None and \
                    self.clock.now() - completed_at >= leave:
                return "left after completion", None
            self.log.flush()
            time.sleep(c.poll_period)

    def _log_complete(self, elapsed: float) -> None:
        self.log.emit("complete", downloaded=self.metainfo.length, elapsed=round(elapsed, 4))


def _stop(client: subprocess.Popen[bytes], grace: float) -> int:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; the client's exit code."""
    with contextlib.suppress(ProcessLookupError):
        client.send_signal(signal.SIGTERM)
    try:
        return client.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        client.kill()
        return client.wait()


PROG = "python -m testbed.external"


def _fail(message: str) -> NoReturn:
    fail(PROG, message)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", help="run the client of peers/<name>.json (kind external)")
    what.add_argument("--info-hash", metavar="TOPOLOGY",
                      help="print the info_hash a run of TOPOLOGY will have (for a tracker's "
                           "whitelist) and exit")
    parser.add_argument("--seed", type=int, default=None, help="with --info-hash: run seed")
    args = parser.parse_args(argv)
    try:
        if args.info_hash:
            from testbed.topology import load_experiment

            print(experiment_info_hash(load_experiment(args.info_hash, args.seed)).hex())
            return 0
        return Supervisor(ExternalConfig.load(args.config)).run()
    except TestbedError as exc:
        _fail(str(exc))


if __name__ == "__main__":
    sys.exit(main())
