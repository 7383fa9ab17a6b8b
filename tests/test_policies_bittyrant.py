"""BitTyrant (peer/policies/bittyrant.py, Piatek et al. NSDI 2007) on constructed snapshots."""

from __future__ import annotations

import dataclasses

import pytest
from peer_helpers import choke_view, kinds
from peer_helpers import nbr as plain_nbr

from peer.config import PolicySpec
from peer.policies.bittyrant import BitTyrant
from peer.policy import build_choker

CAP = 100_000.0  # our upload capacity, bytes/s: the default start is CAP / 5 per peer


def nbr(peer, **fields):
    """A neighbour that is interested in us and has pieces we want, unless told otherwise."""
    return plain_nbr(peer, **{"am_interested": True, **fields})


def view(neighbours, *, now=0.0, cap=CAP, **kw):
    return dataclasses.replace(choke_view(neighbours, now=now, **kw), upload_capacity=cap)


def unchoked(decisions):
    return kinds(decisions, "regular")


def test_first_round_unchokes_until_capacity_at_equal_split_and_no_optimistic():
    neighbours = [nbr(f"p{i}") for i in range(8)] + [nbr("bored", interested=False)]
    decisions = BitTyrant().rechoke(view(neighbours))
    assert len(unchoked(decisions)) == 5  # 5 x CAP/5 = CAP
    assert kinds(decisions, "optimistic") == set()
    assert sum(d.rate for d in decisions.values() if d.kind == "regular") == pytest.approx(CAP)
    assert {d.rate for d in decisions.values() if d.kind == "regular"} == {CAP / 5}
    assert decisions["bored"].reason == "not interested"
    assert {d.reason for p, d in decisions.items()
            if d.kind == "choke" and p != "bored"} == {"over budget"}


def test_ranks_by_expected_download_over_required_upload():
    tyrant = BitTyrant()
    names = ["rich", "mid", "poor"] + [f"x{i}" for i in range(5)]
    tyrant.rechoke(view([nbr(p) for p in names]))
    # Over the next 10 s: rich sent 400 kB/s, mid 30 kB/s, poor 1 kB/s; the rest nothing.
    sent = {"rich": 4_000_000, "mid": 300_000, "poor": 10_000}
    decisions = tyrant.rechoke(view([nbr(p, down_total=sent.get(p, 0),
                                         choking_us=p not in sent) for p in names], now=10.0))
    assert decisions["rich"].reason == "d/u rank 1"
    assert decisions["mid"].reason == "d/u rank 2"
    # poor measured 1 kB/s < the 20 kB/s guess of an untried peer: untried ones go first.
    assert decisions["poor"].kind == "choke"
    assert sum(d.rate for d in decisions.values() if d.rate) <= CAP + 1e-6


def test_raises_u_by_20_percent_for_unchoked_peers_that_do_not_reciprocate():
    tyrant = BitTyrant()
    neighbours = [nbr("stingy")]
    first = tyrant.rechoke(view(neighbours))["stingy"].rate
    second = tyrant.rechoke(view(neighbours, now=10.0))["stingy"].rate
    third = tyrant.rechoke(view(neighbours, now=20.0))["stingy"].rate
    assert second == pytest.approx(first * 1.2)
    assert third == pytest.approx(first * 1.44)


def test_u_never_exceeds_the_capacity():
    tyrant = BitTyrant(initial_rate=90_000.0)
    rates = [tyrant.rechoke(view([nbr("stingy")], now=10.0 * k))["stingy"].rate
             for k in range(5)]
    assert max(rates) == pytest.approx(CAP)


def test_cuts_u_by_10_percent_after_three_reciprocated_rounds():
    tyrant = BitTyrant()
    rates = []
    for k in range(7):
        neighbours = [nbr("friend", choking_us=False, down_total=k * 100_000)]
        rates.append(tyrant.rechoke(view(neighbours, now=10.0 * k))["friend"].rate)
    base = CAP / 5
    # Rounds 1, 2, 3 reciprocated: the cut applies at the 3rd, then again 3 rounds later.
    assert rates == pytest.approx([base, base, base, base * 0.9, base * 0.9, base * 0.9,
                                   base * 0.81])


def test_a_refusal_resets_the_reciprocation_streak():
    tyrant = BitTyrant()
    tyrant.rechoke(view([nbr("fickle", choking_us=False)]))
    tyrant.rechoke(view([nbr("fickle", choking_us=False, down_total=1)], now=10.0))
    tyrant.rechoke(view([nbr("fickle", choking_us=False, down_total=2)], now=20.0))
    # Two reciprocated rounds, then one refusal: raise, and the streak starts again.
    rate = tyrant.rechoke(view([nbr("fickle", down_total=2)], now=30.0))["fickle"].rate
    assert rate == pytest.approx(CAP / 5 * 1.2)
    assert tyrant.estimates["fickle"].streak == 0


def test_only_peers_we_paid_have_their_u_moved():
    tyrant = BitTyrant(initial_rate=CAP)  # one peer uses the whole budget
    names = ["a", "b"]
    first = tyrant.rechoke(view([nbr(p) for p in names]))
    (paid,) = unchoked(first)
    (unpaid,) = set(names) - {paid}
    tyrant.rechoke(view([nbr(p) for p in names], now=10.0))
    assert tyrant.estimates[unpaid].u == pytest.approx(CAP)
    assert tyrant.estimates[paid].u == pytest.approx(CAP)  # raised, capped at the capacity


def test_unlimited_capacity_falls_back_to_a_slot_count_without_rates():
    decisions = BitTyrant(slots=3).rechoke(view([nbr(f"p{i}") for i in range(6)], cap=None))
    assert len(unchoked(decisions)) == 3
    assert all(d.rate is None for d in decisions.values())


def test_seeds_like_tit_for_tat():
    neighbours = [nbr(f"p{i}", up_rate=float(i)) for i in range(7)]
    decisions = BitTyrant().rechoke(view(neighbours, seed=True))
    assert len(unchoked(decisions)) == 4 and len(kinds(decisions, "optimistic")) == 1
    assert all(d.rate is None for d in decisions.values())


def test_a_mid_round_trigger_keeps_decisions_and_their_rates():
    tyrant = BitTyrant()
    neighbours = [nbr(f"p{i}") for i in range(6)]
    first = tyrant.rechoke(view(neighbours))
    current = [n._replace(current=first[n.peer].kind) for n in neighbours]
    again = tyrant.rechoke(view(current, now=3.0, trigger="interest"))
    assert {p: (d.kind, d.rate) for p, d in again.items()} == \
        {p: (d.kind, d.rate) for p, d in first.items()}


def test_forgets_departed_neighbours():
    tyrant = BitTyrant()
    tyrant.rechoke(view([nbr("a"), nbr("b")]))
    tyrant.rechoke(view([nbr("a")], now=10.0))
    assert set(tyrant.estimates) == {"a"}


def test_parameters_from_a_topology():
    tyrant = build_choker(PolicySpec(name="bittyrant", params={
        "raise_factor": 0.5, "cut_factor": 0.2, "rounds": 2}), seed=0)
    first = tyrant.rechoke(view([nbr("s")]))["s"].rate
    assert tyrant.rechoke(view([nbr("s")], now=10.0))["s"].rate == pytest.approx(first * 1.5)


def test_a_peer_that_unchokes_us_but_sends_nothing_measures_zero_and_drops():
    tyrant = BitTyrant(initial_rate=CAP / 2)  # room for two
    first = tyrant.rechoke(view([nbr("mute"), nbr("a"), nbr("b")]))
    assert unchoked(first) == {"mute", "a"}  # equal ratios: neighbour order
    decisions = tyrant.rechoke(view([nbr("mute", choking_us=False),
                                     nbr("a", choking_us=False, down_total=500_000), nbr("b")],
                                    now=10.0))
    assert tyrant.estimates["mute"].d == 0.0 and tyrant.estimates["mute"].measured
    assert unchoked(decisions) == {"a", "b"}


def test_neighbours_with_nothing_we_want_rank_last():
    tyrant = BitTyrant(initial_rate=CAP / 2)  # room for two
    neighbours = [nbr("useless", am_interested=False), nbr("a"), nbr("b")]
    decisions = tyrant.rechoke(view(neighbours))
    assert unchoked(decisions) == {"a", "b"}
    assert decisions["useless"].reason == "over budget"
