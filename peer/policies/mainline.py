"""Mainline BitTorrent 4.x's choker, the client of Legout et al.'s experiments.

Legout, Urvoy-Keller, Michiardi, "Rarest first and choke algorithms are enough" (IMC 2006),
section 2.2, and Legout, Liogkas, Kohler, Zhang, "Clustering and sharing incentives in BitTorrent
systems" (SIGMETRICS 2007), section 2, describe this algorithm; it differs from the textbook
tit-for-tat (``TitForTat``) in five ways, each kept here:

1. Upload slots follow the upload limit: 2 below 9 KiB/s, 3 below 15, 4 below 42, then
   ``int(sqrt(0.6 * rate))`` (rate in KiB/s; 7 when unlimited). ``upload_slots`` overrides it.
2. Leecher state: ``slots - 1`` interested, non-snubbed neighbours with the best download rate
   get regular unchokes; the optimistic unchoke is not random but round robin: neighbours are
   kept in a list (a newcomer inserted at a random place), every third rechoke the list is
   rotated to the first choked, interested neighbour, and the first interested neighbours in
   list order outside the regular set are unchoked until ``min_uploads`` are (at least one).
   Neighbours passed over on the way that are not interested are unchoked too, so they can
   download at once when they become interested.
3. Rechokes are also triggered, between the 10 s rounds, when an unchoked neighbour becomes
   interested or not interested, or disconnects (``triggered_rechokes``).
4. Seed state (BitTorrent 4.0.0 and later): neighbours are served by when they were unchoked,
   not by upload rate. Each 10 s round keeps the neighbours unchoked in the last three rounds,
   most recent first, and unchokes new ones in list order so that about ``(slots + 2) // 3``
   new neighbours are unchoked every 30 s: each leecher gets the seed for about 30 s in turn,
   and the seed's upload is spread over the whole swarm.
5. No "newcomers three times as likely" weighting (that is libtorrent's and later clients').
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from peer.policy_types import ChokeView, Decision, NeighbourView

KIB = 1024.0


def mainline_upload_slots(upload_capacity: float | None) -> int:
    """BitTorrent 4.x's ``max_uploads`` rule, from the upload limit in bytes/s."""
    if upload_capacity is None or upload_capacity <= 0:
        return 7
    rate = upload_capacity / KIB
    if rate < 9:
        return 2
    if rate < 15:
        return 3
    if rate < 42:
        return 4
    return int(math.sqrt(rate * 0.6))


@dataclass(slots=True)
class Mainline:
    """Mainline BitTorrent 4.x's choke algorithm (see the module docstring)."""

    seed: int = 0
    upload_slots: int | str = "auto"
    min_uploads: int = 2
    triggered_rechokes: bool = True
    """Tells the peer to rechoke when an unchoked neighbour's interest changes or it leaves."""
    rng: random.Random = field(init=False)
    order: list[str] = field(init=False, default_factory=list)
    """The round-robin list of neighbours (peer ids)."""
    timer_rounds: int = field(init=False, default=0)
    unchokes_since_last: int = field(init=False, default=0)
    unchoke_round: dict[str, int] = field(init=False, default_factory=dict)
    """Timer round at which each neighbour was last unchoked (seed state)."""

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        if self.upload_slots != "auto" and (not isinstance(self.upload_slots, int)
                                            or self.upload_slots < 1):
            raise TypeError(f"upload_slots must be 'auto' or a whole number >= 1, "
                            f"got {self.upload_slots!r}")
        if not isinstance(self.min_uploads, int) or self.min_uploads < 1:
            raise TypeError(f"min_uploads must be a whole number >= 1, got {self.min_uploads!r}")

    def slots(self, view: ChokeView) -> int:
        if isinstance(self.upload_slots, int):
            return self.upload_slots
        return mainline_upload_slots(view.upload_capacity)

    def rechoke(self, view: ChokeView) -> dict[str, Decision]:
        self._sync_order(view.neighbours)
        timer = view.trigger == "timer"
        if timer:
            self.timer_rounds += 1
        if view.we_are_seed:
            return self._seed_rechoke(view, force_new_unchokes=timer)
        rotated = timer and self.timer_rounds % 3 == 0
        if rotated:
            self._rotate_to_next_waiting(view.neighbours)
        return self._leecher_rechoke(view, rotated=rotated)

    # --- the round-robin list -----------------------------------------------------------------

    def _sync_order(self, neighbours: tuple[NeighbourView, ...]) -> None:
        present = {n.peer for n in neighbours}
        self.order = [p for p in self.order if p in present]
        for gone in self.unchoke_round.keys() - present:
            del self.unchoke_round[gone]
        known = set(self.order)
        for n in neighbours:
            if n.peer not in known:
                self.order.insert(self.rng.randrange(len(self.order) + 1), n.peer)

    def _rotate_to_next_waiting(self, neighbours: tuple[NeighbourView, ...]) -> None:
        by_peer = {n.peer: n for n in neighbours}
        for i, peer in enumerate(self.order):
            n = by_peer[peer]
            if n.current == "choke" and n.interested:
                self.order = self.order[i:] + self.order[:i]
                return

    # --- leecher state ------------------------------------------------------------------------

    def _leecher_rechoke(self, view: ChokeView, *, rotated: bool) -> dict[str, Decision]:
        slots = self.slots(view)
        by_peer = {n.peer: n for n in view.neighbours}
        preferred = [n for n in view.neighbours if n.interested and not n.snubbed]
        self.rng.shuffle(preferred)  # ties (all zero at the start) at random, then stable
        preferred.sort(key=lambda n: n.down_rate, reverse=True)
        regular = preferred[:min(len(preferred), slots - 1)]
        decisions = {n.peer: Decision("regular", f"download rate rank {rank}")
                     for rank, n in enumerate(regular, start=1)}
        to_unchoke = max(1, self.min_uploads - len(regular))
        for peer in self.order:
            if peer in decisions:
                continue
            n = by_peer[peer]
            if to_unchoke > 0:
                reason = "round robin" if n.interested else "round robin (not interested)"
                decisions[peer] = Decision("optimistic", reason,
                                           rotated=rotated and n.current != "optimistic")
                if n.interested:
                    to_unchoke -= 1
            else:
                decisions[peer] = Decision(
                    "choke", "snubbed" if n.snubbed and n.interested
                    else "not among the fastest" if n.interested else "not interested")
        return decisions

    # --- seed state ---------------------------------------------------------------------------

    def _seed_rechoke(self, view: ChokeView, *, force_new_unchokes: bool) -> dict[str, Decision]:
        slots = self.slots(view)
        now_round = self.timer_rounds
        if force_new_unchokes:
            per_30s = (slots + 2) // 3
            new_now = max(0, (per_30s + now_round % 3) // 3 - self.unchokes_since_last)
        else:
            new_now = 0
        by_peer = {n.peer: n for n in view.neighbours}
        recent_limit = now_round - 3
        kept = [n for n in view.neighbours if n.current != "choke" and n.interested]

        position = {peer: i for i, peer in enumerate(self.order)}

        def keep_rank(n: NeighbourView) -> tuple[float, float, int]:
            unchoked = self.unchoke_round.get(n.peer, -1)
            if unchoked > recent_limit:  # most recently unchoked first
                return (-unchoked, -n.up_rate, position[n.peer])
            return (1.0, -n.up_rate, position[n.peer])

        kept.sort(key=keep_rank)
        kept = kept[:max(0, slots - new_now)]
        decisions = {n.peer: Decision("regular", "seed: kept (recently unchoked)") for n in kept}
        free = slots - len(kept)
        if force_new_unchokes:
            self.unchokes_since_last = 0
        else:
            self.unchokes_since_last += free
        last_unchoked = None
        for i, peer in enumerate(self.order):
            if peer in decisions:
                continue
            n = by_peer[peer]
            if not n.interested:
                decisions[peer] = Decision("choke", "not interested")
            elif free > 0:
                if n.current == "choke":
                    self.unchoke_round[peer] = now_round
                    decisions[peer] = Decision("regular", "seed: round robin")
                else:
                    decisions[peer] = Decision("regular", "seed: kept (slot free)")
                free -= 1
                if free == 0:
                    last_unchoked = i
            else:
                decisions[peer] = Decision("choke", "seed: turn over")
        if last_unchoked is not None:
            self.order = self.order[last_unchoked + 1:] + self.order[:last_unchoked + 1]
        return decisions
