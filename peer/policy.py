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

Policies are named in topologies by a built-in name (``CHOKERS``, ``PICKERS``) or as
``module:Class``; parameters become keyword arguments of the class.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from peer.config import PolicySpec, ProtocolSettings
from peer.errors import ConfigError

DecisionKind = Literal["regular", "optimistic", "choke"]


@dataclass(frozen=True, slots=True, kw_only=True)
class NeighbourView:
    """One neighbour as the choker sees it at a rechoke."""

    peer: str
    """The neighbour's peer id as text (peer.eventlog.peer_id_text)."""
    interested: bool
    """It is interested in us: only interested neighbours can use an unchoke."""
    am_interested: bool
    choking_us: bool
    am_choking: bool
    down_rate: float
    """Bytes/s it sent us over the rate window: tit-for-tat ranks by this."""
    up_rate: float
    """Bytes/s we sent it over the rate window: a seed ranks by this."""
    down_total: int
    up_total: int
    snubbed: bool
    is_seed: bool
    connected_at: float
    last_unchoked: float | None = None
    """When we last unchoked it (None: never); round-robin seeding uses it."""
    current: DecisionKind = "choke"
    """The decision in force for it before this rechoke."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChokeView:
    """The snapshot a choker decides on."""

    now: float
    round: int
    trigger: Literal["timer", "interest", "disconnect"]
    """``timer``: the periodic rechoke; the others come only with ``unchoke_when_free``."""
    we_are_seed: bool
    neighbours: tuple[NeighbourView, ...]
    settings: ProtocolSettings
    upload_capacity: float | None
    """Our upload cap in bytes/s (None: unlimited); strategic policies size slots with it."""


@dataclass(frozen=True, slots=True)
class Decision:
    kind: DecisionKind
    reason: str
    rate: float | None = None
    """An upload cap in bytes/s towards this neighbour alone, under the peer's own cap (None:
    only the shared cap applies). Strategic policies (BitTyrant's u_p, PropShare's shares)
    allocate upload capacity with it."""


@runtime_checkable
class Choker(Protocol):
    def rechoke(self, view: ChokeView) -> dict[str, Decision]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class PickView:
    """The snapshot a piece picker decides on, for one neighbour that has unchoked us."""

    now: float
    candidates: Sequence[int]
    """Pieces this neighbour has, we lack, and nobody is downloading yet."""
    availability: Sequence[int]
    """Copies of each piece among our neighbours (index = piece)."""
    have_count: int
    num_pieces: int


@runtime_checkable
class PiecePicker(Protocol):
    def pick(self, view: PickView) -> int | None: ...


# --- tit-for-tat -------------------------------------------------------------------------------


@dataclass(slots=True)
class TitForTat:
    """The textbook choker: reciprocate the fastest senders, plus one optimistic unchoke.

    Leecher: every rechoke, the ``regular_slots`` interested, non-snubbing neighbours that sent
    us data fastest over the rate window get regular unchokes. Every ``optimistic_period`` one
    more interested neighbour is unchoked at random, whatever its rate; neighbours connected for
    less than three rechoke periods are three times as likely, as in mainline BitTorrent, so
    newcomers get their first pieces. Seed: rank by our upload rate to each neighbour (or rotate
    round robin), since nobody sends a seed anything.

    With ``unchoke_when_free`` set, an ``interest`` or ``disconnect`` trigger keeps every current
    decision and only fills free regular slots with waiting neighbours, newest first.

    ``regular_slots`` / ``optimistic_slots`` override the protocol settings (the BEP 3 variant
    is ``regular_slots=3, optimistic_slots=1``).
    """

    seed: int = 0
    regular_slots: int | None = None
    optimistic_slots: int | None = None
    rng: random.Random = field(init=False)
    optimistic: list[str] = field(init=False, default_factory=list)
    last_rotation: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def rechoke(self, view: ChokeView) -> dict[str, Decision]:
        regular_slots = self.regular_slots or view.settings.regular_slots
        optimistic_slots = (view.settings.optimistic_slots if self.optimistic_slots is None
                            else self.optimistic_slots)
        if view.trigger != "timer":
            return self._fill_free_slots(view, regular_slots)

        decisions: dict[str, Decision] = {}
        interested = [n for n in view.neighbours if n.interested]
        if view.we_are_seed:
            ranked = self._seed_ranking(interested, view)
            reason_of = "seed: " + ("rotation" if view.settings.seed_choke == "round_robin"
                                    else "upload rate rank")
        else:
            eligible = [n for n in interested if not n.snubbed]
            # Shuffle first so ties (all zero at start) are broken at random, then a stable sort.
            self.rng.shuffle(eligible)
            ranked = sorted(eligible, key=lambda n: n.down_rate, reverse=True)
            reason_of = "download rate rank"
        for rank, n in enumerate(ranked[:regular_slots], start=1):
            decisions[n.peer] = Decision("regular", f"{reason_of} {rank}")

        self._rotate_optimistic(view, decisions, optimistic_slots)
        for n in view.neighbours:
            if n.peer not in decisions:
                if not n.interested:
                    reason = "not interested"
                elif n.snubbed and not view.we_are_seed:
                    reason = "snubbed"
                else:
                    reason = "not among the fastest"
                decisions[n.peer] = Decision("choke", reason)
        return decisions

    def _seed_ranking(self, interested: list[NeighbourView],
                      view: ChokeView) -> list[NeighbourView]:
        self.rng.shuffle(interested)
        if view.settings.seed_choke == "round_robin":
            return sorted(interested, key=lambda n: (
                n.current != "choke", -1.0 if n.last_unchoked is None else n.last_unchoked))
        return sorted(interested, key=lambda n: n.up_rate, reverse=True)

    def _rotate_optimistic(self, view: ChokeView, decisions: dict[str, Decision],
                           slots: int) -> None:
        present = {n.peer: n for n in view.neighbours}
        due = (self.last_rotation is None
               or view.now - self.last_rotation >= view.settings.optimistic_period - 1e-9)
        keep = [p for p in self.optimistic
                if not due and p in present and present[p].interested and p not in decisions]
        rotated = due or len(keep) < len(self.optimistic)
        if due:
            self.last_rotation = view.now
        chosen = list(keep)
        pool = [n for n in view.neighbours
                if n.interested and n.peer not in decisions and n.peer not in chosen]
        newcomer_age = 3 * view.settings.rechoke_period
        while len(chosen) < slots and pool:
            weights = [3 if view.now - n.connected_at < newcomer_age else 1 for n in pool]
            pick = self.rng.choices(pool, weights=weights)[0]
            pool.remove(pick)
            chosen.append(pick.peer)
        self.optimistic = chosen
        for peer in chosen:
            why = "optimistic unchoke" + (" (rotated)" if rotated and peer not in keep else "")
            decisions[peer] = Decision("optimistic", why)

    def _fill_free_slots(self, view: ChokeView, regular_slots: int) -> dict[str, Decision]:
        decisions = {n.peer: Decision(n.current, "unchanged") for n in view.neighbours}
        in_use = sum(1 for n in view.neighbours if n.current == "regular" and n.interested)
        waiting = [n for n in view.neighbours
                   if n.current == "choke" and n.interested and not n.snubbed]
        waiting.sort(key=lambda n: n.connected_at, reverse=True)
        for n in waiting[: max(0, regular_slots - in_use)]:
            decisions[n.peer] = Decision("regular", "free slot")
        return decisions


# --- piece pickers -----------------------------------------------------------------------------


@dataclass(slots=True)
class RarestFirst:
    """Rarest first among neighbours, ties at random; a random piece while we have fewer than
    ``random_first`` pieces, so a newcomer soon has something to trade (BitTorrent's
    "random first piece")."""

    seed: int = 0
    random_first: int = 1
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def pick(self, view: PickView) -> int | None:
        if not view.candidates:
            return None
        if view.have_count < self.random_first:
            return self.rng.choice(view.candidates)
        availability = view.availability
        rarest = min(availability[i] for i in view.candidates)
        ties = [i for i in view.candidates if availability[i] == rarest]
        return self.rng.choice(ties)


@dataclass(slots=True)
class RandomPicker:
    """Any piece the neighbour has, uniformly at random (a baseline for rarest first)."""

    seed: int = 0
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def pick(self, view: PickView) -> int | None:
        return self.rng.choice(view.candidates) if view.candidates else None


@dataclass(slots=True)
class Sequential:
    """The lowest-numbered piece first, as a streaming client would: poor for the swarm."""

    seed: int = 0

    def pick(self, view: PickView) -> int | None:
        return min(view.candidates) if view.candidates else None


# The other strategies live in peer/policies/, one module each; they import this module's types,
# so they are imported here, after those types exist.
from peer.policies.altruist import Altruist  # noqa: E402
from peer.policies.bittyrant import BitTyrant  # noqa: E402
from peer.policies.free_rider import FreeRider  # noqa: E402
from peer.policies.propshare import PropShare  # noqa: E402

CHOKERS: dict[str, tuple[type, dict[str, object]]] = {
    "tit_for_tat": (TitForTat, {}),
    "bep3": (TitForTat, {"regular_slots": 3, "optimistic_slots": 1}),
    "free_rider": (FreeRider, {}),
    "altruist": (Altruist, {}),
    "bittyrant": (BitTyrant, {}),
    "propshare": (PropShare, {}),
}
PICKERS: dict[str, tuple[type, dict[str, object]]] = {
    "rarest_first": (RarestFirst, {}),
    "random": (RandomPicker, {}),
    "sequential": (Sequential, {}),
}


def resolve_policy_class(spec: PolicySpec, registry: dict[str, tuple[type, dict[str, object]]],
                         kind: str) -> tuple[type, dict[str, object]]:
    """The class and default parameters a spec names; ConfigError if it names nothing."""
    if spec.name in registry:
        return registry[spec.name]
    if ":" not in spec.name:
        raise ConfigError(f"unknown {kind} {spec.name!r}; built-in: {', '.join(sorted(registry))}"
                          f", or 'module:Class'", kind)
    module_name, _, class_name = spec.name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r} for {spec.name!r}: {exc}", kind) from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise ConfigError(f"{module_name!r} has no class {class_name!r}", kind)
    return cls, {}


def build_policy(spec: PolicySpec, registry: dict[str, tuple[type, dict[str, object]]],
                 kind: str, seed: int) -> object:
    """Instantiate a policy with its defaults, the spec's params and the peer's seed."""
    cls, defaults = resolve_policy_class(spec, registry, kind)
    params = {**defaults, **spec.params}
    try:
        policy = cls(seed=seed, **params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for {spec.name!r}: {exc}", kind) from None
    method = "rechoke" if kind == "choker" else "pick"
    if not callable(getattr(policy, method, None)):
        raise ConfigError(f"{spec.name!r} has no {method}() method", kind)
    return policy


def build_choker(spec: PolicySpec, seed: int) -> Choker:
    return build_policy(spec, CHOKERS, "choker", seed)  # type: ignore[return-value]


def build_picker(spec: PolicySpec, seed: int) -> PiecePicker:
    return build_policy(spec, PICKERS, "picker", seed)  # type: ignore[return-value]
