"""The altruist (peer/policies/altruist.py): round robin, blind to reciprocation."""

from __future__ import annotations

from collections import Counter

import pytest
from peer_helpers import choke_view, kinds, nbr

from peer.config import PolicySpec
from peer.policies.altruist import Altruist
from peer.policy import build_choker


def unchoked(decisions):
    return kinds(decisions, "regular")


def test_default_slots_are_regular_plus_optimistic_and_rates_are_ignored():
    neighbours = [nbr(f"p{i}", down_rate=1000.0 * i) for i in range(10)]
    decisions = Altruist(seed=1).rechoke(choke_view(neighbours))
    assert len(unchoked(decisions)) == 5
    assert kinds(decisions, "optimistic") == set()
    assert {decisions[p].reason for p in unchoked(decisions)} == {"round robin"}
    # Not the five fastest: the order is a seeded shuffle, not a ranking by down_rate.
    fastest = {"p5", "p6", "p7", "p8", "p9"}
    assert any(unchoked(Altruist(seed=s).rechoke(choke_view(neighbours))) != fastest
               for s in range(5))


@pytest.mark.parametrize("seed", range(5))
def test_every_interested_neighbour_gets_a_turn_in_a_fair_cycle(seed):
    neighbours = [nbr(f"p{i}") for i in range(7)] + [nbr("bored", interested=False)]
    altruist = Altruist(seed=seed, slots=3)
    served = Counter()
    first_two_rounds = set()
    for k in range(21):  # 21 rounds x 3 slots = 9 turns for each of 7 peers
        decisions = altruist.rechoke(choke_view(neighbours, now=10.0 * k))
        assert len(unchoked(decisions)) == 3
        assert decisions["bored"].kind == "choke"
        assert decisions["bored"].reason == "not interested"
        served.update(unchoked(decisions))
        if k < 3:
            first_two_rounds |= unchoked(decisions)
    assert first_two_rounds == {f"p{i}" for i in range(7)}  # 3 rounds x 3 slots cover all 7
    assert set(served.values()) == {9}


def test_waiting_peers_are_choked_with_a_reason():
    neighbours = [nbr(f"p{i}") for i in range(4)]
    decisions = Altruist(slots=1).rechoke(choke_view(neighbours))
    assert len(unchoked(decisions)) == 1
    assert {d.reason for d in decisions.values() if d.kind == "choke"} == {"waiting for its turn"}


def test_a_free_slot_trigger_keeps_decisions_and_fills_free_slots():
    neighbours = [nbr("on", current="regular"), nbr("new1"), nbr("new2"),
                  nbr("gone_bored", interested=False, current="regular")]
    decisions = Altruist(slots=2).rechoke(choke_view(neighbours, trigger="interest"))
    assert decisions["on"].kind == "regular" and decisions["on"].reason == "unchanged"
    assert len(unchoked(decisions) & {"new1", "new2"}) == 1  # one slot was free
    assert decisions["gone_bored"].reason == "unchanged"


def test_built_by_name_with_params():
    altruist = build_choker(PolicySpec(name="altruist", params={"slots": 2}), seed=4)
    assert isinstance(altruist, Altruist) and altruist.slots == 2
