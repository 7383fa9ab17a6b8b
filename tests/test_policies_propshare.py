"""PropShare (peer/policies/propshare.py, Levin et al. SIGCOMM 2008) on constructed snapshots."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
from peer_helpers import choke_view, kinds, nbr

from peer.config import PolicySpec
from peer.errors import ConfigError
from peer.policies.propshare import PropShare
from peer.policy import build_choker

CAP = 100_000.0


def view(neighbours, *, now=0.0, cap=CAP, **kw):
    return dataclasses.replace(choke_view(neighbours, now=now, **kw), upload_capacity=cap)


def round_two(sent, *, extra=(), **params):
    """A PropShare that saw everyone at 0 bytes, then ``sent`` bytes over the next round."""
    ps = PropShare(**params)
    names = list(sent) + list(extra)
    ps.rechoke(view([nbr(p) for p in names]))
    return ps, ps.rechoke(view([nbr(p, down_total=sent.get(p, 0)) for p in names], now=10.0))


def test_capacity_is_split_in_proportion_to_what_each_sent_last_round():
    _, decisions = round_two({"a": 300_000, "b": 100_000, "c": 0, "d": 0})
    assert decisions["a"].rate == pytest.approx(0.9 * CAP * 0.75)
    assert decisions["b"].rate == pytest.approx(0.9 * CAP * 0.25)
    assert decisions["a"].kind == decisions["b"].kind == "regular"
    # One of the two that sent nothing holds the optimistic 10 %; the other gets nothing.
    (opt,) = kinds(decisions, "optimistic")
    assert opt in {"c", "d"} and decisions[opt].rate == pytest.approx(0.1 * CAP)
    (other,) = {"c", "d"} - {opt}
    assert decisions[other].kind == "choke" and decisions[other].reason == "sent us nothing"
    assert sum(d.rate for d in decisions.values() if d.rate) == pytest.approx(CAP)


def test_only_the_previous_round_counts_not_the_history():
    ps, _ = round_two({"past": 5_000_000, "now": 0})
    # Round three: "past" sent nothing more, "now" sent 10 kB.
    decisions = ps.rechoke(view([nbr("past", down_total=5_000_000),
                                 nbr("now", down_total=10_000)], now=20.0))
    assert decisions["now"].kind == "regular"
    assert decisions["now"].rate == pytest.approx(0.9 * CAP)
    assert decisions["past"].kind == "optimistic"  # the only non-contributor left


def test_uninterested_contributors_are_choked():
    _, decisions = round_two({"giver": 100_000, "bored_giver": 100_000})
    assert decisions["giver"].rate == pytest.approx(0.45 * CAP)
    ps = PropShare()
    ps.rechoke(view([nbr("giver"), nbr("bored_giver", interested=False)]))
    decisions = ps.rechoke(view([nbr("giver", down_total=100_000),
                                 nbr("bored_giver", interested=False, down_total=100_000)],
                                now=10.0))
    assert decisions["bored_giver"].kind == "choke"
    assert decisions["bored_giver"].reason == "not interested"
    # Its bytes do not count in the split either: the interested giver gets all 90 %.
    assert decisions["giver"].rate == pytest.approx(0.9 * CAP)


def test_start_up_without_contributors_bootstraps_regular_slots():
    decisions = PropShare(seed=2).rechoke(view([nbr(f"p{i}") for i in range(8)]))
    regular = kinds(decisions, "regular")
    assert len(regular) == 4  # regular_slots
    assert [decisions[p].rate for p in regular] == pytest.approx([0.9 * CAP / 4] * 4)
    assert len(kinds(decisions, "optimistic")) == 1


def test_optimistic_share_zero_means_no_optimistic_unchoke():
    _, decisions = round_two({"a": 1000, "b": 0}, optimistic_share=0.0)
    assert kinds(decisions, "optimistic") == set()
    assert decisions["a"].rate == pytest.approx(CAP)


def test_newcomers_are_favoured_for_the_optimistic_share():
    counts = Counter()
    for seed in range(300):
        ps = PropShare(seed=seed)
        neighbours = [nbr("giver", down_total=1000), nbr("old"),
                      nbr("new", connected_at=-5.0)]
        ps.last_down["giver"] = 0
        decisions = ps.rechoke(view(neighbours))
        counts.update(kinds(decisions, "optimistic"))
    assert counts["new"] > 2 * counts["old"]  # weight 3 : 1


def test_unlimited_capacity_unchokes_contributors_without_a_cap():
    ps = PropShare()
    ps.rechoke(view([nbr("a"), nbr("b")], cap=None))
    decisions = ps.rechoke(view([nbr("a", down_total=5), nbr("b")], now=10.0, cap=None))
    assert decisions["a"].kind == "regular" and decisions["a"].rate is None


def test_a_mid_round_trigger_keeps_decisions_and_rates():
    ps, decisions = round_two({"a": 1000, "b": 3000})
    current = [nbr(p, current=d.kind, down_total=9999) for p, d in decisions.items()]
    again = ps.rechoke(view(current, now=12.0, trigger="disconnect"))
    assert {p: d.rate for p, d in again.items()} == {p: d.rate for p, d in decisions.items()}


def test_seeds_like_tit_for_tat():
    decisions = PropShare().rechoke(view([nbr(f"p{i}") for i in range(7)], seed=True))
    assert len(kinds(decisions, "regular")) == 4
    assert all(d.rate is None for d in decisions.values())


def test_bad_optimistic_share_is_a_config_error():
    with pytest.raises(ConfigError, match="optimistic_share"):
        build_choker(PolicySpec(name="propshare", params={"optimistic_share": 1.5}), seed=0)
