"""PropShare: Levin, LaCurts, Spring, Bhattacharjee, "BitTorrent is an auction: analyzing and
improving BitTorrent's incentives", SIGCOMM 2008.

BitTorrent's unchoke is an auction whose prize is an equal share of upload; PropShare instead
splits the upload capacity among neighbours in proportion to what each sent us in the previous
round, which the paper shows is harder to game (a strategic peer gains nothing by sending just
enough to win a slot). A small fixed share is kept for optimistic unchokes so newcomers (who
have sent nothing yet) can start.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from peer.errors import ConfigError
from peer.policies.tit_for_tat import TitForTat
from peer.policy_types import ChokeView, Decision, NeighbourView


@dataclass(slots=True)
class PropShare:
    """The PropShare choker. Parameters:

    - ``optimistic_share`` (0.1): the fraction of capacity reserved for optimistic unchokes;
    - ``optimistic_slots``: how many non-contributors share it each round (default: the
      protocol's ``optimistic_slots``, or 1 if that is 0);
    - ``bootstrap_slots``: when nobody sent us anything last round (start-up), how many
      interested neighbours split the non-optimistic share equally (default: regular slots),
      so a lone PropShare swarm does not idle at 10 % of its capacity before anyone has sent.

    Each periodic rechoke: c_p = bytes p sent us since the previous rechoke. Every interested p
    with c_p > 0 is unchoked with ``Decision.rate = (1 - optimistic_share) · C · c_p / Σ c``;
    ``optimistic_slots`` interested peers with c_p = 0, drawn at random (newcomers, connected
    for less than three rechoke periods, three times as likely, as in tit-for-tat), share
    ``optimistic_share · C``. Peers that sent nothing get nothing else. With an unlimited
    capacity (C = None) contributors are unchoked without a cap. As a seed, it seeds as
    tit-for-tat does. Mid-round triggers (``unchoke_when_free``) keep every decision.
    """

    seed: int = 0
    optimistic_share: float = 0.1
    optimistic_slots: int | None = None
    bootstrap_slots: int | None = None
    rng: random.Random = field(init=False)
    last_down: dict[str, int] = field(init=False, default_factory=dict)
    rates: dict[str, float | None] = field(init=False, default_factory=dict)
    seeding: TitForTat = field(init=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.optimistic_share < 1.0:
            raise ConfigError(f"must be in [0, 1), got {self.optimistic_share!r}",
                              "propshare.optimistic_share")
        self.rng = random.Random(self.seed)
        self.seeding = TitForTat(seed=self.seed)

    def rechoke(self, view: ChokeView) -> dict[str, Decision]:
        if view.we_are_seed:
            return self.seeding.rechoke(view)
        if view.trigger != "timer":
            return {n.peer: Decision(n.current, "unchanged", self.rates.get(n.peer))
                    for n in view.neighbours}
        sent: dict[str, int] = {}
        for n in view.neighbours:
            sent[n.peer] = max(0, n.down_total - self.last_down.get(n.peer, 0))
            self.last_down[n.peer] = n.down_total
        for gone in set(self.last_down) - set(sent):
            del self.last_down[gone]

        s = view.settings
        cap = view.upload_capacity
        interested = [n for n in view.neighbours if n.interested]
        contributors = [n for n in interested if sent[n.peer] > 0]
        total = sum(sent[n.peer] for n in contributors)
        decisions: dict[str, Decision] = {}
        if contributors:
            share_pool = None if cap is None else (1.0 - self.optimistic_share) * cap
            for n in sorted(contributors, key=lambda n: sent[n.peer], reverse=True):
                share = sent[n.peer] / total
                rate = None if share_pool is None else share_pool * share
                decisions[n.peer] = Decision("regular", f"proportional share {share:.0%}", rate)
        else:
            slots = self.bootstrap_slots or s.regular_slots
            pool = list(interested)
            self.rng.shuffle(pool)
            chosen = pool[:slots]
            for n in chosen:
                rate = None if cap is None else (1.0 - self.optimistic_share) * cap / len(chosen)
                decisions[n.peer] = Decision("regular", "bootstrap: nobody sent yet", rate)

        opt_slots = self.optimistic_slots
        if opt_slots is None:
            opt_slots = s.optimistic_slots or 1
        pool = [n for n in interested if n.peer not in decisions]
        newcomer_age = 3 * s.rechoke_period
        chosen_opt: list[NeighbourView] = []
        while pool and len(chosen_opt) < opt_slots and self.optimistic_share > 0:
            weights = [3 if view.now - n.connected_at < newcomer_age else 1 for n in pool]
            pick = self.rng.choices(pool, weights=weights)[0]
            pool.remove(pick)
            chosen_opt.append(pick)
        for n in chosen_opt:
            rate = None if cap is None else self.optimistic_share * cap / len(chosen_opt)
            decisions[n.peer] = Decision("optimistic", "optimistic unchoke (rotated)", rate,
                                        rotated=True)

        for n in view.neighbours:
            if n.peer not in decisions:
                decisions[n.peer] = Decision(
                    "choke", "not interested" if not n.interested else "sent us nothing")
        self.rates = {p: d.rate for p, d in decisions.items() if d.kind != "choke"}
        return decisions
