"""A researcher's choker kept beside its topology (own_policy.yaml names it as
``./last_round.py:LastRound``): no package, no edit to the testbed. docs/policies.md walks
through it.

Tit-for-tat ranks neighbours by their rate over the last ``rate_window`` (20 s); this ranks them
by what they sent us since our previous rechoke only, so it answers a change of heart within
one round. One optimistic unchoke, drawn from a seeded generator so a run is reproducible.
"""

from __future__ import annotations

import random

from peer.policy import ChokeView, Decision


class LastRound:
    def __init__(self, seed: int = 0, slots: int = 3) -> None:
        self.rng = random.Random(seed)
        self.slots = slots
        self.seen: dict[str, int] = {}  # bytes each neighbour had sent us at the last rechoke

    def rechoke(self, view: ChokeView) -> dict[str, Decision]:
        sent = {n.peer: n.down_total - self.seen.get(n.peer, 0) for n in view.neighbours}
        self.seen = {n.peer: n.down_total for n in view.neighbours}
        interested = [n for n in view.neighbours if n.interested]
        self.rng.shuffle(interested)  # ties (everyone at 0 at first) broken at random
        interested.sort(key=lambda n: sent[n.peer], reverse=True)
        decisions = {n.peer: Decision("regular", "most sent last round")
                     for n in interested[: self.slots]}
        if rest := interested[self.slots:]:
            decisions[self.rng.choice(rest).peer] = Decision("optimistic", "random", rotated=True)
        for n in view.neighbours:
            decisions.setdefault(n.peer, Decision("choke", "not among the best"))
        return decisions
