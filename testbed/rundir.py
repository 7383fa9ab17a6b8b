"""The run directory: one per run, never overwritten (docs/run-directory.md is the contract).

Everything here is synchronous file work done before the run starts or after it ends.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import itertools
import json
import os
import platform
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peer.errors import TestbedError

SCHEMA_VERSION = 1


class RunDirError(TestbedError):
    """The run directory cannot be created (it exists, or the parent is not writable)."""


@dataclass(frozen=True, slots=True)
class RunDir:
    """The paths of one run directory."""

    root: Path

    @property
    def topology(self) -> Path:
        return self.root / "topology.yaml"

    @property
    def experiment(self) -> Path:
        return self.root / "experiment.json"

    @property
    def meta(self) -> Path:
        return self.root / "meta.json"

    @property
    def content_dir(self) -> Path:
        return self.root / "content"

    @property
    def tracker_log(self) -> Path:
        return self.root / "tracker.jsonl"

    @property
    def tracker_out(self) -> Path:
        return self.root / "tracker.out"

    @property
    def tracker_port(self) -> Path:
        return self.root / "tracker.port"

    @property
    def peers_dir(self) -> Path:
        return self.root / "peers"

    @property
    def resources(self) -> Path:
        return self.root / "resources.jsonl"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def launcher_out(self) -> Path:
        return self.root / "launcher.out"

    def torrent(self, name: str) -> Path:
        return self.root / f"{name}.torrent"

    def peer_config(self, peer: str) -> Path:
        return self.peers_dir / f"{peer}.json"

    def peer_log(self, peer: str) -> Path:
        return self.peers_dir / f"{peer}.jsonl"

    def peer_out(self, peer: str) -> Path:
        return self.peers_dir / f"{peer}.out"


def create_fresh_dir(base: str, *, out: Path | None, runs_root: Path, what: str) -> Path:
    """Create ``out`` (which must not exist) or ``runs_root/<base>`` (``-2``, ``-3``, …
    appended if taken) and return it as an absolute path.

    ``mkdir`` (not a check, then create) makes it race-free, so results are never overwritten.
    Absolute, because every process of a run works in its run directory: a relative path would
    name something else for it.
    """
    if out is not None:
        out = out.absolute()
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.mkdir()
        except FileExistsError:
            raise RunDirError(f"{out}: already exists (a {what} is never overwritten)") from None
        except OSError as exc:
            raise RunDirError(f"{out}: cannot create: {exc.strerror or exc}") from None
        return out
    runs_root = runs_root.absolute()
    try:
        runs_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"{runs_root}: cannot create: {exc.strerror or exc}") from None
    for suffix in itertools.count(1):
        root = runs_root / (base if suffix == 1 else f"{base}-{suffix}")
        try:
            root.mkdir()
            return root
        except FileExistsError:
            continue
        except OSError as exc:
            raise RunDirError(f"{root}: cannot create: {exc.strerror or exc}") from None
    raise AssertionError("unreachable")


def timestamp(now: _dt.datetime | None = None) -> str:
    return (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")


def create_run_dir(name: str, *, out: Path | None = None, runs_root: Path = Path("runs"),
                   now: _dt.datetime | None = None) -> RunDir:
    """Create a fresh run directory (``runs_root/<name>-<YYYYmmdd-HHMMSS>`` or ``out``) and its
    ``peers/`` and ``content/`` folders."""
    root = create_fresh_dir(f"{name}-{timestamp(now)}", out=out, runs_root=runs_root,
                            what="run directory")
    run = RunDir(root)
    run.peers_dir.mkdir()
    run.content_dir.mkdir()
    return run


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file and rename it over ``path``: readers never see half."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                                timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _packages() -> dict[str, str]:
    """Versions of the testbed and of what it depends on (importlib.metadata)."""
    import importlib.metadata as md
    import re

    versions: dict[str, str] = {}
    try:
        versions["bt-testbed"] = md.version("bt-testbed")
        requirements = md.requires("bt-testbed") or []
    except md.PackageNotFoundError:
        requirements = []
    for requirement in requirements:
        if "extra ==" in requirement:
            continue
        name = re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]
        with contextlib.suppress(md.PackageNotFoundError):
            versions[name] = md.version(name)
    return versions


def host_info() -> dict[str, Any]:
    memory = None
    with contextlib.suppress(Exception):
        import psutil

        memory = psutil.virtual_memory().total
    return {"hostname": socket.gethostname(), "cpus": os.cpu_count(), "memory": memory,
            "platform": platform.platform(), "cpu_model": cpu_model()}


def cpu_model() -> str | None:
    """The processor's name (Linux's /proc/cpuinfo), or None where it cannot be read: CPU
    figures are comparable only between runs on the same kind of processor."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    return platform.processor() or None


def collect_meta(*, command: list[str], seed: int, started_at: str,
                 run_start_monotonic: float | None) -> dict[str, Any]:
    """meta.json: what ran, where, with which versions and commit."""
    source = Path(__file__).resolve().parent.parent
    commit = _git(["rev-parse", "HEAD"], source)
    dirty = None
    if commit is not None:
        status = _git(["status", "--porcelain", "--untracked-files=no"], source)
        dirty = bool(status) if status is not None else None
    packages = _packages()
    return {
        "schema": SCHEMA_VERSION,
        "testbed_version": packages.get("bt-testbed"),
        "python": sys.version.split()[0],
        "packages": packages,
        "git_commit": commit,
        "git_dirty": dirty,
        "host": host_info(),
        "command": command,
        "seed": seed,
        "started_at": started_at,
        "run_start_monotonic": run_start_monotonic,
    }


def utc_now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
