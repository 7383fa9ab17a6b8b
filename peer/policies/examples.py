"""The worked example of docs/policies.md, kept here so its test (tests/test_policies_examples.py)
keeps the guide honest. Use it in a topology as ``choker: peer.policies.examples:LongMemory``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from peer.policy import ChokeView, Decision


@dataclass(slots=True)
class LongMemory:
    """Tit-for-tat with a long memory: rank by all bytes a neighbour ever sent us, not by its
    rate over the last ``rate_window`` seconds; ``slots`` unchokes, no optimistic unchoke."""

    seed: int = 0
    slots: int = 4
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def rechoke(self, view: ChokeView) -> dict[str, Decision]:
        interested = [n for n in view.neighbours if n.interested]
        self.rng.shuffle(interested)  # ties (everyone at 0 at first) broken at random
        best = sorted(interested, key=lambda n: n.down_total, reverse=True)[: self.slots]
        decisions = {n.peer: Decision("regular", "most bytes ever") for n in best}
        for n in view.neighbours:
            decisions.setdefault(n.peer, Decision("choke", "not among the best"))
        return decisions
