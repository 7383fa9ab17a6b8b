"""The altruist: uploads to interested neighbours in turn, whatever they give back."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from peer.policy_types import ChokeView, Decision, NeighbourView


@dataclass(slots=True)
class Altruist:
    """Round robin over interested neighbours, ``slots`` at a time, ignoring reciprocation.

    Every periodic rechoke the ``slots`` interested neighbours that waited longest since their
    last turn (never-served first, ties in a seeded random order) are unchoked; the next rechoke
    moves on to the next ones. ``slots`` defaults to regular + optimistic slots of the protocol
    settings, so an altruist uses as many connections as a tit-for-tat peer. On an ``interest``
    or ``disconnect`` trigger (``unchoke_when_free``) current unchokes stay and free slots are
    filled at once.
    """

    seed: int = 0
    slots: int | None = None
    rng: random.Random = field(init=False)
    last_turn: dict[str, int] = field(init=False, default_factory=dict)
    """Peer -> the sequence number of its last turn: every unchoke takes the next number, so
    the longest-waiting peers come first and the rotation is a fair cycle."""
    order: dict[str, float] = field(init=False, default_factory=dict)
    """Peer -> a random tie-break drawn once, so the rotation order is stable and seeded."""
    turns: int = field(init=False, default=0)
    """Unchoke turns handed out so far (the sequence of ``last_turn``)."""

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def rechoke(self, view: ChokeView) -> dict[str, Decision]:
        slots = self.slots if self.slots is not None else (
            view.settings.regular_slots + view.settings.optimistic_slots)
        for n in view.neighbours:
            if n.peer not in self.order:
                self.order[n.peer] = self.rng.random()
        interested = [n for n in view.neighbours if n.interested]
        if view.trigger != "timer":
            decisions = {n.peer: Decision(n.current, "unchanged") for n in view.neighbours}
            in_use = sum(1 for n in interested if n.current != "choke")
            waiting = [n for n in interested if n.current == "choke"]
            waiting.sort(key=self._queue_key)
            for n in waiting[: max(0, slots - in_use)]:
                decisions[n.peer] = Decision("regular", "free slot")
                self._take_turn(n.peer)
            return decisions

        chosen = sorted(interested, key=self._queue_key)[:slots]
        decisions = {}
        for n in chosen:
            decisions[n.peer] = Decision("regular", "round robin")
            self._take_turn(n.peer)
        for n in view.neighbours:
            if n.peer not in decisions:
                decisions[n.peer] = Decision(
                    "choke", "not interested" if not n.interested else "waiting for its turn")
        return decisions

    def _take_turn(self, peer: str) -> None:
        self.turns += 1
        self.last_turn[peer] = self.turns

    def _queue_key(self, n: NeighbourView) -> tuple[int, float]:
        return (self.last_turn.get(n.peer, -1), self.order[n.peer])
