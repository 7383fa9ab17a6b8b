"""Tit-for-tat: the textbook choker (Cohen, "Incentives build robustness in BitTorrent", 2003)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from peer.config import ProtocolSettings
from peer.policy_types import ChokeView, Decision, DecisionKind, NeighbourView

_UNCHANGED: dict[DecisionKind, Decision] = {
    "regular": Decision("regular", "unchanged"), "optimistic": Decision("optimistic", "unchanged"),
    "choke": Decision("choke", "unchanged")}
"""A mid-round trigger keeps most decisions: one shared object per kind."""


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
            is_new = rotated and peer not in keep
            why = "optimistic unchoke" + (" (rotated)" if is_new else "")
            decisions[peer] = Decision("optimistic", why, rotated=is_new)

    def trigger_may_change(self, regular_in_use: int, waiting: int,
                           settings: ProtocolSettings) -> bool:
        """A triggered rechoke only fills free regular slots: it changes something only
        when a slot is free and an interested, choked, not snubbing neighbour waits."""
        return waiting > 0 and regular_in_use < (self.regular_slots or settings.regular_slots)

    def _fill_free_slots(self, view: ChokeView, regular_slots: int) -> dict[str, Decision]:
        decisions = {n.peer: _UNCHANGED[n.current] for n in view.neighbours}
        in_use = sum(1 for n in view.neighbours if n.current == "regular" and n.interested)
        waiting = [n for n in view.neighbours
                   if n.current == "choke" and n.interested and not n.snubbed]
        waiting.sort(key=lambda n: n.connected_at, reverse=True)
        for n in waiting[: max(0, regular_slots - in_use)]:
            decisions[n.peer] = Decision("regular", "free slot")
        return decisions
