"""Choker and piece picker: the two incentive policies, as plain objects with no I/O.

The node hands a policy a snapshot (neighbours, their bitfields, measured rates, the time) and
acts on what it returns; a policy never touches a socket, a clock or a file. That keeps a new
policy a few lines long and testable on constructed snapshots in microseconds. See
docs/policies.md for the guide.

Interfaces:
- ``Choker.rechoke(view: ChokeView) -> dict[str, Decision]``: a decision for every neighbour;
- ``PiecePicker.pick(view: PickView) -> int | None``: the next piece to start downloading from
  one neighbour, or None. Finishing started pieces first (strict priority) and end game are the
  node's job, not the picker's.

Policies are named in topologies by a built-in name (``CHOKERS``, ``PICKERS``), as
``module:Class``, or as ``path/to/file.py:Class`` (a single file loaded by path: a relative path
is relative to the working directory, which for a peer is its run directory); parameters become
keyword arguments of the class.

This module is the registry and the one import for users of policies: the interface types live
in ``peer.policy_types`` and the built-in policies in ``peer.policies``; both are re-exported
here, so ``from peer.policy import ChokeView, Decision, TitForTat`` works.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import sys
import types
from pathlib import Path

from peer.config import PolicySpec
from peer.errors import ConfigError
from peer.policies.altruist import Altruist
from peer.policies.bittyrant import BitTyrant
from peer.policies.free_rider import FreeRider
from peer.policies.mainline import Mainline
from peer.policies.pickers import RandomPicker, RarestFirst, Sequential
from peer.policies.propshare import PropShare
from peer.policies.tit_for_tat import TitForTat
from peer.policy_types import (
    Choker,
    ChokeView,
    Decision,
    DecisionKind,
    NeighbourView,
    PickView,
    PiecePicker,
    RechokeTrigger,
)

__all__ = [
    "CHOKERS",
    "PICKERS",
    "Altruist",
    "BitTyrant",
    "ChokeView",
    "Choker",
    "Decision",
    "DecisionKind",
    "FreeRider",
    "Mainline",
    "NeighbourView",
    "PickView",
    "PiecePicker",
    "PolicyParamsError",
    "PropShare",
    "RandomPicker",
    "RarestFirst",
    "RechokeTrigger",
    "Sequential",
    "TitForTat",
    "build_choker",
    "build_picker",
    "build_policy",
    "load_policy_file",
    "policy_file_parts",
    "resolve_policy_class",
]

CHOKERS: dict[str, tuple[type, dict[str, object]]] = {
    "tit_for_tat": (TitForTat, {}),
    "bep3": (TitForTat, {"regular_slots": 3, "optimistic_slots": 1}),
    "free_rider": (FreeRider, {}),
    "altruist": (Altruist, {}),
    "bittyrant": (BitTyrant, {}),
    "propshare": (PropShare, {}),
    "mainline": (Mainline, {}),
}
PICKERS: dict[str, tuple[type, dict[str, object]]] = {
    "rarest_first": (RarestFirst, {}),
    "random": (RandomPicker, {}),
    "sequential": (Sequential, {}),
    "mainline": (RarestFirst, {"random_first": 4}),
}


def resolve_policy_class(spec: PolicySpec, registry: dict[str, tuple[type, dict[str, object]]],
                         kind: str) -> tuple[type, dict[str, object]]:
    """The class and default parameters a spec names; ConfigError if it names nothing."""
    if spec.name in registry:
        return registry[spec.name]
    if ":" not in spec.name:
        raise ConfigError(f"unknown {kind} {spec.name!r}; built-in: {', '.join(sorted(registry))}"
                          f", or 'module:Class'", kind)
    file_parts = policy_file_parts(spec.name)
    if file_parts is not None:
        module_name, class_name = file_parts
        module = load_policy_file(module_name, kind)
    else:
        module_name, _, class_name = spec.name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"cannot import {module_name!r} for {spec.name!r}: {exc}",
                              kind) from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise ConfigError(f"{module_name!r} has no class {class_name!r}", kind)
    return cls, {}


_POLICY_FILE = re.compile(r"^(?P<path>[^:]*\.py):(?P<cls>[A-Za-z_]\w*)$")


def policy_file_parts(name: str) -> tuple[str, str] | None:
    """``(path, class)`` for a ``path/to/file.py:Class`` policy name, else None."""
    match = _POLICY_FILE.match(name)
    return (match["path"], match["cls"]) if match else None


def load_policy_file(path: str, kind: str = "policy") -> types.ModuleType:
    """A policy file as a module, loaded from the bytes read now.

    The module's name carries a hash of those bytes, so the same file loaded twice is one module
    and an edited file is loaded anew (the class a run builds is the code it read). It is not
    on the import path: a policy file imports the standard library and ``peer`` but not its
    neighbouring files.
    """
    file = Path(path).absolute()
    try:
        source = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file", kind) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}", kind) from None
    digest = hashlib.sha256(source).hexdigest()[:16]
    stem = re.sub(r"\W", "_", file.stem)
    module_name = f"_policy_file_{stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    module = types.ModuleType(module_name)
    module.__file__ = str(file)
    sys.modules[module_name] = module  # dataclasses look their module up while it executes
    try:
        exec(compile(source, str(file), "exec"), module.__dict__)
    except Exception as exc:  # the researcher's module may raise anything while loading
        del sys.modules[module_name]
        raise ConfigError(f"{path}: cannot load: {type(exc).__name__}: {exc}", kind) from None
    return module


class PolicyParamsError(ConfigError):
    """The policy's constructor refused its parameters (the class itself was found)."""


def build_policy(spec: PolicySpec, registry: dict[str, tuple[type, dict[str, object]]],
                 kind: str, seed: int) -> object:
    """Instantiate a policy with its defaults, the spec's params and the peer's seed."""
    cls, defaults = resolve_policy_class(spec, registry, kind)
    params = {**defaults, **spec.params}
    try:
        policy = cls(seed=seed, **params)
    except TypeError as exc:
        raise PolicyParamsError(f"bad parameters for {spec.name!r}: {exc}", kind) from None
    method = "rechoke" if kind == "choker" else "pick"
    if not callable(getattr(policy, method, None)):
        raise ConfigError(f"{spec.name!r} has no {method}() method", kind)
    return policy


def build_choker(spec: PolicySpec, seed: int) -> Choker:
    choker = build_policy(spec, CHOKERS, "choker", seed)
    assert isinstance(choker, Choker)  # build_policy refused it unless it has rechoke()
    return choker


def build_picker(spec: PolicySpec, seed: int) -> PiecePicker:
    picker = build_policy(spec, PICKERS, "picker", seed)
    assert isinstance(picker, PiecePicker)  # build_policy refused it unless it has pick()
    return picker
