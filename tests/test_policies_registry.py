"""One registry: topology names come from peer.policy; every built-in builds and validates."""

from __future__ import annotations

import pytest
from peer_helpers import choke_view, kinds, nbr

from peer.config import PolicySpec
from peer.policy import CHOKERS, PICKERS, build_choker, build_picker
from testbed.topology import BUILTIN_CHOKERS, BUILTIN_PICKERS, load_topology, parse_topology


def test_topology_builtins_are_the_policy_registries():
    assert tuple(CHOKERS) == BUILTIN_CHOKERS
    assert tuple(PICKERS) == BUILTIN_PICKERS
    assert {"free_rider", "altruist", "bittyrant", "propshare"} <= set(CHOKERS)


@pytest.mark.parametrize("name", sorted(CHOKERS))
def test_every_builtin_choker_decides_for_every_neighbour(name):
    choker = build_choker(PolicySpec(name=name), seed=1)
    view = choke_view([nbr("a", down_total=10), nbr("b"), nbr("c", interested=False)])
    decisions = choker.rechoke(view)
    assert set(decisions) == {"a", "b", "c"}
    # An uninterested neighbour never takes a regular slot; mainline may unchoke it on the way
    # round its round-robin list (so that it can download as soon as it becomes interested).
    assert decisions["c"].kind == "choke" or (name == "mainline"
                                              and decisions["c"].kind == "optimistic")


@pytest.mark.parametrize("name", sorted(PICKERS))
def test_every_builtin_picker_builds(name):
    assert callable(build_picker(PolicySpec(name=name), seed=1).pick)


def test_a_topology_names_each_new_policy_with_params():
    text = """
content: {size: 1MiB}
groups:
  - {name: s, role: seed}
  - {name: t, choker: {name: bittyrant, params: {rounds: 2}}}
  - {name: p, choker: {name: propshare, params: {optimistic_share: 0.2}}}
  - {name: f, choker: free_rider}
  - {name: a, choker: altruist}
  - {name: e, choker: "peer.policies.examples:LongMemory"}
"""
    topo = parse_topology(text, file="inline.yaml")
    chokers = {g.name: g.choker for g in topo.groups}
    assert chokers["t"] == PolicySpec(name="bittyrant", params={"rounds": 2})
    assert chokers["e"].name == "peer.policies.examples:LongMemory"


@pytest.mark.parametrize("name", ["legout_classes", "free_riders", "bittyrant_one",
                                  "bittyrant_all", "propshare_vs_tft"])
def test_shipped_policy_topologies_load_and_stay_small(name):
    from pathlib import Path
    topo = load_topology(Path(__file__).parent.parent / "topologies" / f"{name}.yaml")
    assert sum(g.count for g in topo.groups) <= 41
    total = sum(g.count * g.upload.rate for g in topo.groups)
    assert total < 10e6  # bytes/s across the swarm: the 2-core host's budget
    for g in topo.groups:
        build_choker(g.choker, seed=0)  # every named choker and its params build


def test_bep3_with_unchoke_when_free_fills_up_to_three_regular_slots():
    choker = build_choker(PolicySpec(name="bep3"), seed=0)
    neighbours = [nbr("on", current="regular"), *(nbr(f"n{i}", connected_at=float(i))
                                                  for i in range(4))]
    decisions = choker.rechoke(choke_view(neighbours, trigger="interest",
                                          unchoke_when_free=True))
    assert kinds(decisions, "regular") == {"on", "n3", "n2"}
