"""BitTyrant: the strategic client of Piatek et al., "Do incentives build robustness in
BitTorrent?", NSDI 2007.

For every neighbour p it keeps two estimates: d_p, the rate p would send us if it reciprocated,
and u_p, the rate we must send p for it to reciprocate. Each periodic rechoke it ranks the
interested neighbours by d_p / u_p (best return on upload first), unchokes them in that order
while the sum of their u_p fits within its upload capacity, and caps its upload to each at u_p
(``Decision.rate``). No optimistic unchokes. After each round:

- p unchoked by us that did not reciprocate (kept choking us and sent nothing): u_p *= 1 + raise;
- p that reciprocated: d_p = the rate it actually sent us over the round (0 if it unchoked us
  but sent nothing we asked for); after ``rounds``
  consecutive reciprocated rounds, u_p *= 1 - cut (probe for the smallest rate that still works).

Constants (paper: 20 % raise, 10 % cut, 3 rounds) are not checked against the paper, nor is the
initial estimate: the paper estimates d_p of a peer that never sent to us from how fast it
announces pieces (its download rate ≈ its upload capacity / its active set size) and starts u_p
at the reference client's equal-split rate. The node's snapshot carries neither the
have-announcement rate nor the neighbour's capacity, so here both start at an equal split of our
own capacity over ``regular_slots + optimistic_slots`` ("peers are like us"), and d_p is replaced
by a measured rate as soon as p sends anything or unchokes us. A neighbour that has nothing we
want (we are not interested in it) ranks last: d_p is what we could download from it, now.
See docs/policies.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from peer.policies.tit_for_tat import TitForTat
from peer.policy_types import ChokeView, Decision, NeighbourView

# The paper's constants (unchecked: see module docstring).
RAISE = 0.2
CUT = 0.1
ROUNDS = 3


@dataclass(slots=True)
class _Estimate:
    d: float
    u: float
    streak: int = 0
    """Consecutive rounds it reciprocated while we unchoked it."""
    measured: bool = False
    """d has come from what p actually sent us (not the initial guess)."""


@dataclass(slots=True)
class BitTyrant:
    """The BitTyrant choker. Parameters:

    - ``raise_factor`` (0.2), ``cut_factor`` (0.1), ``rounds`` (3): the update rule above;
    - ``initial_rate``: bytes/s both d_p and u_p start at; default capacity / (regular +
      optimistic slots), or 1.0 (an arbitrary unit) when the capacity is unlimited;
    - ``slots``: how many peers to unchoke when the capacity is unlimited (default regular +
      optimistic slots): with no capacity there is nothing to budget, so it ranks by d_p / u_p
      and leaves ``Decision.rate`` unset.

    As a seed nothing is left to gain, so it seeds as tit-for-tat does (``TitForTat`` seed mode).
    """

    seed: int = 0
    raise_factor: float = RAISE
    cut_factor: float = CUT
    rounds: int = ROUNDS
    initial_rate: float | None = None
    slots: int | None = None
    estimates: dict[str, _Estimate] = field(init=False, default_factory=dict)
    unchoked: dict[str, float] = field(init=False, default_factory=dict)
    """Peers we unchoked in the last periodic round -> the cap we gave them."""
    last_down: dict[str, int] = field(init=False, default_factory=dict)
    last_time: float | None = field(init=False, default=None)
    seeding: TitForTat = field(init=False)

    def __post_init__(self) -> None:
        self.seeding = TitForTat(seed=self.seed)

    def rechoke(self, view: ChokeView) -> dict[str, Decision]:
        if view.we_are_seed:
            self.unchoked.clear()
            return self.seeding.rechoke(view)
        if view.trigger != "timer":
            # Rates are budgeted once a round; a mid-round trigger changes nothing.
            return {n.peer: Decision(n.current, "unchanged", self.unchoked.get(n.peer))
                    for n in view.neighbours}
        self._learn(view)
        return self._allocate(view)

    def _initial(self, view: ChokeView) -> float:
        if self.initial_rate is not None:
            return self.initial_rate
        if view.upload_capacity is None:
            return 1.0
        s = view.settings
        return view.upload_capacity / max(1, s.regular_slots + s.optimistic_slots)

    def _learn(self, view: ChokeView) -> None:
        """Update d_p and u_p from what each neighbour did over the round that just ended."""
        elapsed = None if self.last_time is None else view.now - self.last_time
        cap = view.upload_capacity
        for n in view.neighbours:
            est = self.estimates.get(n.peer)
            if est is None:
                init = self._initial(view)
                est = self.estimates[n.peer] = _Estimate(d=init, u=init)
            received = n.down_total - self.last_down.get(n.peer, n.down_total)
            self.last_down[n.peer] = n.down_total
            # d_p <- the rate observed while p unchoked us (paper); a peer that unchoked us and
            # sent nothing although we wanted its pieces measured 0, not "unknown".
            if elapsed and (received > 0 or (not n.choking_us and n.am_interested)):
                est.d, est.measured = received / elapsed, True
            if n.peer not in self.unchoked:
                continue  # u_p only moves for peers we actually paid last round
            if received > 0 or not n.choking_us:
                est.streak += 1
                if est.streak >= self.rounds:
                    est.u *= 1.0 - self.cut_factor
                    est.streak = 0
            else:
                est.streak = 0
                est.u *= 1.0 + self.raise_factor
                if cap is not None:
                    est.u = min(est.u, cap)
        for gone in set(self.last_down) - {n.peer for n in view.neighbours}:
            del self.last_down[gone]
            self.estimates.pop(gone, None)
        self.last_time = view.now

    def _allocate(self, view: ChokeView) -> dict[str, Decision]:
        cap = view.upload_capacity
        s = view.settings
        interested = [n for n in view.neighbours if n.interested]
        ranked = sorted(interested, key=self._ratio, reverse=True)
        decisions: dict[str, Decision] = {}
        self.unchoked = {}
        budget = 0.0
        limit = self.slots or (s.regular_slots + s.optimistic_slots)
        for rank, n in enumerate(ranked, start=1):
            est = self.estimates[n.peer]
            if cap is None:
                if rank > limit:
                    break
                rate = None
            else:
                # Unchoke in order until the u_p sum reaches the capacity; the first always fits
                # (u_p never exceeds the capacity).
                if decisions and budget + est.u > cap + 1e-9:
                    break
                rate = est.u
                budget += est.u
            decisions[n.peer] = Decision("regular", f"d/u rank {rank}", rate)
            self.unchoked[n.peer] = est.u
        for n in view.neighbours:
            if n.peer not in decisions:
                decisions[n.peer] = Decision(
                    "choke", "not interested" if not n.interested else "over budget")
        return decisions

    def _ratio(self, n: NeighbourView) -> float:
        est = self.estimates[n.peer]
        if not n.am_interested:
            return 0.0  # it has nothing we want: nothing to expect from it, whatever we pay
        return est.d / est.u if est.u > 0 else 0.0
