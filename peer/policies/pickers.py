"""The built-in piece pickers: rarest first (the default), random and sequential."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from peer.policy_types import PickView


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
