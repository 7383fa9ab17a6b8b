"""Mainline BitTorrent 4.x's choker (peer/policies/mainline.py) on constructed snapshots."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter

import pytest
from peer_helpers import choke_view, kinds, nbr

from peer.config import PolicySpec
from peer.errors import ConfigError
from peer.policies.mainline import Mainline, mainline_upload_slots
from peer.policy import build_choker

KB = 1000.0


def view(neighbours, *, cap=None, **kw):
    return dataclasses.replace(choke_view(neighbours, **kw), upload_capacity=cap)


def unchoked(decisions):
    return {p for p, d in decisions.items() if d.kind != "choke"}


@pytest.mark.parametrize(("capacity", "slots"), [
    (None, 7), (5 * 1024, 2), (12 * 1024, 3), (20 * KB, 4), (41 * 1024, 4),
    (50 * KB, 5), (200 * KB, 10), (1024 * 1024, 24)])
def test_upload_slots_follow_the_upload_limit(capacity, slots):
    assert mainline_upload_slots(capacity) == slots


def test_leecher_unchokes_the_fastest_slots_minus_one_and_one_in_list_order():
    names = [f"p{i}" for i in range(8)]
    nbrs = [nbr(p, down_rate=100.0 * i) for i, p in enumerate(names)]
    m = Mainline(upload_slots=4)
    decisions = m.rechoke(view(nbrs))
    assert kinds(decisions, "regular") == {"p7", "p6", "p5"}
    (optimistic,) = kinds(decisions, "optimistic")
    # The optimistic unchoke is the first other interested neighbour in the list, not random.
    assert optimistic == next(p for p in m.order if p not in {"p7", "p6", "p5"})
    assert len(unchoked(decisions)) == 4


def test_not_interested_neighbours_before_the_optimistic_one_are_unchoked_too():
    m = Mainline(upload_slots=2)
    nbrs = [nbr("fast", down_rate=500.0), nbr("bored", interested=False), nbr("waiting")]
    m.rechoke(view(nbrs))
    m.order = ["fast", "bored", "waiting"]
    decisions = m.rechoke(view(nbrs, trigger="interest"))
    assert decisions["fast"].kind == "regular"
    assert decisions["bored"] == decisions["bored"].__class__("optimistic",
                                                              "round robin (not interested)")
    assert decisions["waiting"].kind == "optimistic"


def test_optimistic_unchoke_rotates_every_third_timer_round():
    names = [f"p{i}" for i in range(6)]
    m = Mainline(upload_slots=2)
    current = {p: "choke" for p in names}
    seen = []
    for round_ in range(1, 19):
        # p0 sends fastest and holds the one regular slot; the other slot goes round robin.
        nbrs = [nbr(p, current=current[p], down_rate=1000.0 if p == "p0" else 0.0)
                for p in names]
        decisions = m.rechoke(view(nbrs, now=10.0 * round_))
        assert decisions["p0"].kind == "regular"
        (opt,) = kinds(decisions, "optimistic")
        current = {p: d.kind for p, d in decisions.items()}
        seen.append(opt)
    changes = [i for i in range(1, len(seen)) if seen[i] != seen[i - 1]]
    assert changes and all((i + 1) % 3 == 0 for i in changes), seen
    assert set(seen) == {"p1", "p2", "p3", "p4", "p5"}


def test_seed_serves_neighbours_in_turn():
    rng = random.Random(3)
    names = [f"p{i}" for i in range(12)]
    m = Mainline(upload_slots=4)
    current = {p: "choke" for p in names}
    served = Counter()
    for round_ in range(1, 61):
        # Rates of the neighbours being served are alike, with the noise of measurement.
        nbrs = [nbr(p, current=current[p],
                    up_rate=10.0 + rng.random() if current[p] != "choke" else 0.0)
                for p in names]
        decisions = m.rechoke(view(nbrs, now=10.0 * round_, seed=True))
        assert len(unchoked(decisions)) == 4
        current = {p: d.kind for p, d in decisions.items()}
        served.update(unchoked(decisions))
    # 60 rounds x 4 slots over 12 neighbours: 20 rounds each if perfectly uniform. Mainline
    # keeps the fastest of the long-unchoked neighbours, so one slot can stay with one peer.
    assert set(served) == set(names)
    assert min(served.values()) >= 8 and max(served.values()) <= 40, served


def test_seed_keeps_the_fastest_long_unchoked_neighbour_as_mainline_does():
    names = [f"p{i}" for i in range(12)]
    m = Mainline(upload_slots=4)
    current = {p: "choke" for p in names}
    served = Counter()
    for round_ in range(1, 31):
        nbrs = [nbr(p, current=current[p], up_rate=1e6 if p == "p0" else 10.0) for p in names]
        decisions = m.rechoke(view(nbrs, now=10.0 * round_, seed=True))
        current = {p: d.kind for p, d in decisions.items()}
        served.update(unchoked(decisions))
    assert served["p0"] >= 28


def test_seed_unchokes_about_slots_plus_two_over_three_new_neighbours_per_30_s():
    names = [f"p{i}" for i in range(20)]
    m = Mainline(upload_slots=4)
    current = {p: "choke" for p in names}
    new_per_round = []
    for round_ in range(1, 31):
        nbrs = [nbr(p, current=current[p]) for p in names]
        decisions = m.rechoke(view(nbrs, now=10.0 * round_, seed=True))
        fresh = {p for p in unchoked(decisions) if current[p] == "choke"}
        current = {p: d.kind for p, d in decisions.items()}
        new_per_round.append(len(fresh))
    steady = new_per_round[3:]
    assert sum(steady) / (len(steady) / 3) == pytest.approx((4 + 2) // 3, abs=0.5)


def test_seed_chokes_the_uninterested_and_a_trigger_refills_a_freed_slot():
    names = [f"p{i}" for i in range(6)]
    m = Mainline(upload_slots=2)
    decisions = m.rechoke(view([nbr(p) for p in names], seed=True))
    first = unchoked(decisions)
    assert len(first) == 2
    gone = sorted(first)[0]
    nbrs = [nbr(p, current=decisions[p].kind, interested=p != gone) for p in names]
    decisions = m.rechoke(view(nbrs, seed=True, trigger="interest"))
    assert decisions[gone].kind == "choke"
    assert len(unchoked(decisions)) == 2


def test_built_by_name_with_params_and_bad_params_refused():
    choker = build_choker(PolicySpec(name="mainline", params={"upload_slots": 3}), seed=1)
    assert isinstance(choker, Mainline) and choker.triggered_rechokes
    with pytest.raises(ConfigError, match="upload_slots"):
        build_choker(PolicySpec(name="mainline", params={"upload_slots": 0}), seed=1)
    with pytest.raises(ConfigError, match="min_uploads"):
        build_choker(PolicySpec(name="mainline", params={"min_uploads": "x"}), seed=1)
