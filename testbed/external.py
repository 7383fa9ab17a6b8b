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
import dataclasses
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from peer.cli import fail
from peer.config import RateLimit
from peer.errors import ConfigError, TestbedError
from peer.eventlog import SCHEMA_VERSION, EventLog, RunClock
from peer.metainfo import Metainfo, read_torrent
from testbed.experiment import Experiment, PeerPlan

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

PLACEHOLDERS: dict[str, str] = {
    "torrent": "absolute path of the run's .torrent",
    "dir": "absolute path of this peer's own directory (external/<name>/); the client saves "
           "the file there (a seed finds it there)",
    "file": "absolute path of the content file in {dir}",
    "port": "a free TCP port on 127.0.0.1 for the client to listen on",
    "tracker": "the tracker's announce URL",
    "name": "the peer's name, e.g. aria-0",
    "peer_id": "the testbed peer id of this peer (20 characters), e.g. for aria2c's "
               "--peer-id-prefix, so that other peers' logs name it",
    "seed": "this peer's random seed",
    "upload_rate": "the group's upload capacity in bytes/s (0: unlimited)",
    "download_rate": "the group's download capacity in bytes/s (0: unlimited)",
    "upload_rate_kib": "the upload capacity in whole KiB/s, rounded up (0: unlimited)",
    "download_rate_kib": "the download capacity in whole KiB/s, rounded up (0: unlimited)",
    "python": "the testbed's Python interpreter",
    "repo": "the testbed's source tree (for bench/real_clients/lt_client.py)",
}
"""The ``{placeholders}`` a command template may use, and what each becomes."""

REPO = Path(__file__).resolve().parent.parent
POLL_PERIOD = 0.5
STOP_GRACE = 2.5
"""Below the orchestrator's own grace period (3 s), so the supervisor gets to log ``stop``."""


# ---------------------------------------------------------------------------------------------
# Command templates


def check_template(template: Sequence[str]) -> str | None:
    """What is wrong with a command template (None: nothing): an unknown or malformed
    placeholder, an empty command. Literal braces are written ``{{`` and ``}}``."""
    if not template or not template[0].strip():
        return "the command is empty: give the client program and its options"
    for word in template:
        try:
            fields = list(string.Formatter().parse(word))
        except ValueError as exc:
            return f"cannot read {word!r}: {exc} (write a literal brace as '{{{{' or '}}}}')"
        for _, field, spec, conversion in fields:
            if field is None:
                continue
            if field not in PLACEHOLDERS or spec or conversion:
                return (f"unknown placeholder {{{field}}} in {word!r}; known: "
                        + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS))
    return None


def split_command(value: str | Sequence[str]) -> tuple[str, ...]:
    """A command given as one string (split like a POSIX shell) or as a list of words."""
    if isinstance(value, str):
        return tuple(shlex.split(value))
    return tuple(value)


def render_command(template: Sequence[str], values: Mapping[str, object]) -> list[str]:
    """The template's words with every placeholder filled (check it first)."""
    text = {k: str(v) for k, v in values.items()}
    return [word.format_map(text) for word in template]


def kib(rate: float | None) -> int:
    """A rate as whole KiB/s for a client's option, rounded up; 0 means unlimited (as both
    aria2c's ``--max-*-limit`` and libtorrent's rate limits read 0)."""
    if rate is None:
        return 0
    return max(1, -(-int(rate) // 1024))


def missing_programs(templates: Sequence[Sequence[str]]) -> list[str]:
    """The programs of these templates that are not found on PATH (placeholders aside)."""
    missing = []
    for template in templates:
        program = template[0]
        if "{" in program:
            continue  # {python}: always there
        if shutil.which(program) is None and program not in missing:
            missing.append(program)
    return missing


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
# The plan and the supervisor's config


@dataclass(frozen=True, slots=True, kw_only=True)
class ExternalPeerPlan(PeerPlan):
    """A peer of the experiment that is a real client started from ``command``."""

    command: tuple[str, ...]
    """The command template, placeholders unfilled."""

    def external_config(self, *, torrent: str, log: str, tracker: str, run_start: float,
                        directory: str, content: str | None) -> ExternalConfig:
        leave: float | None = None
        if self.departure.kind == "on_completion":
            leave = 0.0
        elif self.departure.kind == "after_completion":
            leave = self.departure.time
        return ExternalConfig(
            name=self.name, group=self.group, peer_id=self.peer_id, role=self.role,
            seed=self.seed, command=self.command, torrent=torrent, log=log, tracker=tracker,
            run_start=run_start, directory=directory, content=content, upload=self.upload,
            download=self.download, leave_after_complete=leave)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExternalConfig:
    """Everything ``python -m testbed.external`` needs; relative paths are from its cwd."""

    name: str
    group: str
    peer_id: str
    role: str
    seed: int
    command: tuple[str, ...]
    torrent: str
    log: str
    tracker: str
    run_start: float
    directory: str
    """The client's own directory, created if missing."""
    content: str | None = None
    """Seed: the content file to place in ``directory`` before the client starts."""
    upload: RateLimit = dataclasses.field(default_factory=RateLimit)
    download: RateLimit = dataclasses.field(default_factory=RateLimit)
    leave_after_complete: float | None = None
    poll_period: float = POLL_PERIOD
    stop_grace: float = STOP_GRACE

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["kind"] = "external"
        return data

    @classmethod
    def load(cls, path: str | Path) -> ExternalConfig:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read external peer config: {exc}", path=str(path)) from None
        if not isinstance(data, dict) or data.pop("kind", None) != "external":
            raise ConfigError("not an external peer config (no \"kind\": \"external\")",
                              path=str(path))
        try:
            data["command"] = tuple(data["command"])
            data["upload"] = RateLimit(**data.get("upload") or {})
            data["download"] = RateLimit(**data.get("download") or {})
            config = cls(**data)
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"bad external peer config: {exc}", path=str(path)) from None
        problem = check_template(config.command)
        if problem:
            raise ConfigError(problem, "command", str(path))
        return config


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
        c = self.config
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.directory.mkdir(parents=True, exist_ok=True)
        if c.role == "seed":
            if not c.content:
                raise TestbedError(f"{c.name}: an external seed needs the content file")
            _place_content(Path(c.content).resolve(), self.file)
        port = free_port()
        argv = render_command(c.command, self.values(port))
        self.checker.check()  # a seed holds everything already; a leecher usually nothing
        started = self.clock.now()
        parent = os.getpid()
        from testbed.launch import set_parent_death_signal

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
        completed_at: float | None = self.clock.now() if self.checker.complete else None
        was_complete = self.checker.complete
        reason = ""
        code: int | None = None
        while True:
            code = client.poll()
            if code is not None:
                reason = f"client exited with code {code}"
                break
            if self.stop_signal is not None:
                reason = "signal"
                break
            if not self.checker.complete:
                self._new_pieces()
                if self.checker.complete:
                    completed_at = self.clock.now()
                    self.log.emit("complete", downloaded=self.metainfo.length,
                                  elapsed=round(completed_at - started, 4))
            leave = c.leave_after_complete
            if completed_at is not None and not was_complete and leave is not None and \
                    self.clock.now() - completed_at >= leave:
                reason = "left after completion"
                break
            self.log.flush()
            time.sleep(c.poll_period)
        if code is None:
            code = _stop(client, c.stop_grace)
        if not self.checker.complete:
            self._new_pieces()  # what the client wrote before it went
            if self.checker.complete:
                now = self.clock.now()
                self.log.emit("complete", downloaded=self.metainfo.length,
                              elapsed=round(now - started, 4))
        down = 0 if was_complete else sum(self.metainfo.piece_size(i)
                                          for i, h in enumerate(self.checker.have) if h)
        self.log.emit("stop", reason=reason, up=None, down=down, client_exit=code)
        self.log.close()
        if reason.startswith("client exited"):
            return 0 if code == 0 else 1
        return 0


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
