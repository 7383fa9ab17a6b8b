"""Provenance of a run's policies: the source of every policy that is not built in, kept in the
run directory with its SHA-256, so that a result can be traced to the exact code that produced
it after the file has changed (docs/run-directory.md, "policies/").

- A policy file named in the topology (``./mine.py:Class``) is copied to ``policies/mine.py``
  when the run starts; the peers load that copy (testbed.topology_policy), so the copy and its
  hash are exactly what ran.
- A ``module:Class`` policy from outside the testbed's registry (an installed package, or
  ``peer.policies.examples``) has its module's source file copied and hashed the same way; the
  peers import the module as usual, so the copy is the source as it was when the run started.
  Only that one file is kept, not what it imports.

``meta.json`` lists them under ``policies``; ``testbed compare`` warns when two results sets
used different ones (``different_policy_sources``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from peer.config import PolicySpec
from peer.errors import TestbedError
from peer.policy import CHOKERS, PICKERS, policy_file_parts
from testbed.experiment import Experiment
from testbed.topology_policy import POLICY_COPY_DIR

__all__ = ["different_policy_sources", "policy_sources_of_run", "record_policy_sources"]


def record_policy_sources(run_root: Path, experiment: Experiment) -> list[dict[str, Any]]:
    """Copy the source of every non-built-in policy of ``experiment`` into
    ``run_root/policies/`` and describe each for meta.json: kind, name, groups, source (the
    original file), copy (relative to the run directory) and sha256 of the copied bytes."""
    copied: dict[str, str] = {}  # copy (relative) -> sha256
    sources = dict(experiment.policy_files)
    for copy, source in experiment.policy_files:
        copied[copy] = _copy(Path(source), run_root / copy)
    entries: list[dict[str, Any]] = []
    for kind, spec, groups in _custom_policies(experiment):
        file_parts = policy_file_parts(spec.name)
        if file_parts is not None:
            copy = file_parts[0]
            entries.append(_entry(kind, spec, groups, sources.get(copy), copy, copied.get(copy)))
            continue
        module = spec.name.partition(":")[0]
        origin = _module_source(module)
        if origin is None:
            entries.append(_entry(kind, spec, groups, None, None, None))
            continue
        copy = f"{POLICY_COPY_DIR}/{module}.py"
        if copy not in copied:
            copied[copy] = _copy(origin, run_root / copy)
        entries.append(_entry(kind, spec, groups, str(origin), copy, copied[copy]))
    return entries


def _entry(kind: str, spec: PolicySpec, groups: list[str], source: str | None,
           copy: str | None, sha256: str | None) -> dict[str, Any]:
    return {"kind": kind, "name": spec.name, "groups": groups, "source": source, "copy": copy,
            "sha256": sha256}


def _custom_policies(experiment: Experiment) -> list[tuple[str, PolicySpec, list[str]]]:
    """(kind, spec, groups) for every policy name that is neither built in nor a real client's."""
    found: dict[tuple[str, str], tuple[PolicySpec, list[str]]] = {}
    for peer in experiment.peers:
        for kind, spec, registry in (("choker", peer.choker, CHOKERS),
                                     ("picker", peer.picker, PICKERS)):
            if spec.name in registry or spec.name.startswith("external:"):
                continue
            _, groups = found.setdefault((kind, spec.name), (spec, []))
            if peer.group not in groups:
                groups.append(peer.group)
    return [(kind, spec, groups) for (kind, _), (spec, groups) in found.items()]


def _module_source(module: str) -> Path | None:
    """The .py file a module would be imported from, or None (not found, or not Python source)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _copy(source: Path, target: Path) -> str:
    """Copy ``source`` to ``target`` (bytes read once) and return their SHA-256."""
    try:
        data = source.read_bytes()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    except OSError as exc:
        raise TestbedError(f"{source}: cannot keep the policy source in the run directory: "
                           f"{exc.strerror or exc}") from None
    return hashlib.sha256(data).hexdigest()


def policy_sources_of_run(run_dir: Path) -> dict[str, str | None] | None:
    """``{"choker mine.py:MostPieces": sha256, ...}`` from a run directory's meta.json; None
    when meta.json is missing or predates provenance (no ``policies`` key)."""
    try:
        meta = json.loads((run_dir / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    policies = meta.get("policies") if isinstance(meta, dict) else None
    if not isinstance(policies, list):
        return None
    return {f"{p.get('kind')} {_display_name(p)}": p.get("sha256")
            for p in policies if isinstance(p, dict)}


def _display_name(entry: dict[str, Any]) -> str:
    """A policy's name without the run directory's copy path: ``mine.py:MostPieces``."""
    name = str(entry.get("name"))
    parts = policy_file_parts(name)
    return f"{Path(parts[0]).name}:{parts[1]}" if parts else name


def different_policy_sources(baseline: Iterable[Path], candidate: Iterable[Path]) -> list[str]:
    """Lines saying which non-built-in policies differ in source between the run directories
    of two results sets (or within one), for ``testbed compare``'s warnings."""
    sides, unrecorded = {}, {}
    for label, run_dirs in (("baseline", baseline), ("candidate", candidate)):
        sides[label], unrecorded[label] = _union(run_dirs)
    if any(unrecorded.values()):
        # Runs from before provenance: nothing to compare, which matters only if the other
        # side used a policy of its own.
        return [f"{count} of the {label}'s runs do not record their policy sources (run by an "
                "older testbed): cannot tell whether the policies' code changed"
                for label, count in unrecorded.items()
                if count and any(seen for other, seen in sides.items() if other != label)]
    notes = []
    for label, seen in sides.items():
        for policy, hashes in sorted(seen.items()):
            if len(hashes) > 1:
                notes.append(f"the {label}'s runs used {len(hashes)} different sources of "
                             f"{policy} ({', '.join(sorted(_short(h) for h in hashes))})")
    base, cand = sides["baseline"], sides["candidate"]
    for policy in sorted(set(base) | set(cand)):
        b, c = base.get(policy), cand.get(policy)
        if b is None or c is None:
            only = "baseline" if c is None else "candidate"
            notes.append(f"{policy} was used only by the {only}")
        elif b != c and len(b) == len(c) == 1:
            notes.append(f"{policy} has different sources: baseline sha256 "
                         f"{_short(next(iter(b)))}, candidate {_short(next(iter(c)))} "
                         "(see policies/ in the run directories)")
    return notes


def _union(run_dirs: Iterable[Path]) -> tuple[dict[str, set[str | None]], int]:
    """Every policy's hashes over ``run_dirs``, and how many runs record none."""
    seen: dict[str, set[str | None]] = {}
    unrecorded = 0
    for run_dir in run_dirs:
        sources = policy_sources_of_run(run_dir)
        if sources is None:
            unrecorded += 1
            continue
        for policy, sha in sources.items():
            seen.setdefault(policy, set()).add(sha)
    return seen, unrecorded


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "unknown"
