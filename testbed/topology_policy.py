"""A topology's choker and picker entries: checked, built as the peers will build them, and a
researcher's policy file beside the topology resolved and carried into the run directory.

Three forms name a policy (docs/policies.md): a built-in name (``tit_for_tat``), an importable
``module:Class``, or ``path/to/file.py:Class`` with the path relative to the topology file. The
file form is what a researcher trying an idea writes: no package, no edit to the project. The
topology holds it by absolute path (validation loads that file); ``expand`` then names it by its
copy in the run directory (``policies/<file>.py:Class``), which is what the peers load, so a run
executes the exact code testbed.provenance keeps and hashes, even if the original is edited
while the run goes on.
"""

from __future__ import annotations

import math
import re
from pathlib import Path, PurePosixPath
from typing import Any

from peer.config import PolicySpec
from peer.errors import ConfigError
from peer.policy import CHOKERS, PICKERS, PolicyParamsError, build_policy, policy_file_parts
from testbed.yamlfile import FieldChecker, describe, did_you_mean

__all__ = [
    "BUILTIN_CHOKERS",
    "BUILTIN_PICKERS",
    "POLICY_COPY_DIR",
    "PolicyChecker",
    "run_copy_names",
]

# Policy names the topology accepts without a ``module:Class`` path: the peer's own registries,
# so a policy registered there is accepted here (peer.policy imports nothing heavy).
BUILTIN_CHOKERS: tuple[str, ...] = tuple(CHOKERS)
BUILTIN_PICKERS: tuple[str, ...] = tuple(PICKERS)

POLICY_COPY_DIR = "policies"
"""Where a run directory keeps the policy sources it used (docs/run-directory.md)."""

_POLICY_KEYS = ("name", "params")
_POLICY_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


class PolicyChecker(FieldChecker):
    """The ``choker`` / ``picker`` checks of a topology. ``base_dir`` is the topology file's
    folder: policy file paths are relative to it."""

    base_dir: Path = Path()

    def policy(self, value: Any, path: str, builtins: tuple[str, ...], what: str) -> PolicySpec:
        """A policy by name, ``module:Class``, ``file.py:Class`` or ``{name: ..., params: ...}``."""
        params: dict[str, Any] = {}
        name_path = path
        if isinstance(value, dict):
            self.mapping(value, path, _POLICY_KEYS, required=("name",))
            name_path, name = f"{path}.name", value["name"]
            raw_params = value.get("params") or {}
            if not isinstance(raw_params, dict):
                self.fail(f"{path}.params", f"must be a mapping of parameter names to values, "
                                            f"got {describe(raw_params)}")
            self._plain(raw_params, f"{path}.params")
            params = dict(raw_params)
        else:
            name = value
        if not isinstance(name, str):
            self.fail(name_path, f"must be a {what} name, got {describe(name)}")
        file_parts = policy_file_parts(name)
        if file_parts is not None:
            name = self._policy_file(*file_parts, name_path)
        elif name not in builtins and not _POLICY_PATH.match(name):
            self.fail(name_path, f"unknown {what} '{name}'{did_you_mean(name, builtins)}; "
                                 f"built-in {what}s: {', '.join(builtins)}, your own as "
                                 "'module:Class', or a file beside the topology as "
                                 "'./file.py:Class'")
        spec = PolicySpec(name=name, params=params)
        self._build(spec, name_path, f"{path}.params" if params else name_path, what)
        return spec

    def _policy_file(self, written: str, class_name: str, path: str) -> str:
        """The absolute ``file.py:Class`` name of a policy file named relative to the topology."""
        file = (self.base_dir / written).resolve()
        if not file.is_file():
            where = f" (relative to {self.base_dir}/)" if not Path(written).is_absolute() else ""
            self.fail(path, f"{written}: no such file{where}; a policy file is named by its "
                            "path relative to the topology file, e.g. './mine.py:MyChoker'")
        return f"{file}:{class_name}"

    def _build(self, spec: PolicySpec, path: str, params_path: str, what: str) -> None:
        """Import and instantiate the policy as a peer will (its params and a seed), so that a
        missing module or class, a class without the method, or a parameter the constructor
        refuses stops the run before anything starts, naming the group's key."""
        registry = CHOKERS if what == "choker" else PICKERS
        try:
            build_policy(spec, registry, what, 0)
        except PolicyParamsError as exc:
            self.fail(params_path, exc.detail)
        except ConfigError as exc:
            self.fail(path, exc.detail)
        except Exception as exc:  # a researcher's constructor may raise anything
            self.fail(params_path, f"{what} {spec.name!r} could not be built with params "
                                   f"{spec.params}: {type(exc).__name__}: {exc}")

    def _plain(self, value: Any, path: str) -> None:
        """Policy parameters end up in JSON config files: only JSON's types are allowed."""
        if isinstance(value, dict):
            for key, item in value.items():
                self._plain(item, f"{path}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self._plain(item, f"{path}[{i}]")
        elif not (value is None or isinstance(value, str | bool | int)
                  or (isinstance(value, float) and math.isfinite(value))):
            self.fail(path, f"must be text, a number, true/false, null, a list or a mapping; "
                            f"got {describe(value)}")


def run_copy_names(specs: list[PolicySpec]) -> dict[str, str]:
    """For every policy file among ``specs`` (absolute ``file.py:Class`` names), the
    run-directory-relative file its copy gets: ``{"/abs/mine.py": "policies/mine.py"}``.
    Two different files of the same name get ``mine.py`` and ``mine-2.py``."""
    copies: dict[str, str] = {}
    taken: set[str] = set()
    for spec in specs:
        parts = policy_file_parts(spec.name)
        if parts is None or parts[0] in copies:
            continue
        source = PurePosixPath(parts[0])
        copy, n = source.name, 1
        while copy in taken:
            n += 1
            copy = f"{source.stem}-{n}{source.suffix}"
        taken.add(copy)
        copies[parts[0]] = f"{POLICY_COPY_DIR}/{copy}"
    return copies


def as_run_copy(spec: PolicySpec, copies: dict[str, str]) -> PolicySpec:
    """``spec`` naming its run directory's copy, if it is a policy file."""
    parts = policy_file_parts(spec.name)
    if parts is None:
        return spec
    return PolicySpec(name=f"{copies[parts[0]]}:{parts[1]}", params=spec.params)
