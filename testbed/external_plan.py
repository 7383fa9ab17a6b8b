"""Real clients as peers, as a topology plans them: command templates and their placeholders,
the external peer of an experiment, and the config its supervisor (``python -m
testbed.external``, docs/real-clients.md) reads.

The topology checks templates and plans external peers with these; the supervisor runs them.
Both import this module, so neither imports the other.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peer.config import RateLimit
from peer.errors import ConfigError
from testbed.experiment import PeerPlan

__all__ = [
    "PLACEHOLDERS",
    "POLL_PERIOD",
    "STOP_GRACE",
    "ExternalConfig",
    "ExternalPeerPlan",
    "check_template",
    "kib",
    "missing_programs",
    "render_command",
    "split_command",
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
    "upload_rate_kb": "the upload capacity in whole kB/s of 1000 bytes, rounded up (0: "
                      "unlimited), for clients counting in those (Transmission)",
    "download_rate_kb": "the download capacity in whole kB/s of 1000 bytes, rounded up (0: "
                        "unlimited)",
    "python": "the testbed's Python interpreter",
    "repo": "the testbed's source tree (for bench/real_clients/lt_client.py)",
}
"""The ``{placeholders}`` a command template may use, and what each becomes."""

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


def kib(rate: float | None, unit: int = 1024) -> int:
    """A rate as whole KiB/s (``unit`` 1024) or kB/s (1000) for a client's option, rounded up;
    0 means unlimited (as aria2c's ``--max-*-limit``, libtorrent's rate limits and the
    wrappers of Transmission and ctorrent read 0)."""
    if rate is None:
        return 0
    return max(1, -(-int(rate) // unit))


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
