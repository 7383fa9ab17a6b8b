"""The free rider (peer/policies/free_rider.py) on constructed snapshots."""

from __future__ import annotations

from peer_helpers import choke_view, nbr

from peer.config import PolicySpec
from peer.policies.free_rider import FreeRider
from peer.policy import build_choker


def test_chokes_every_neighbour_whatever_it_sends():
    neighbours = [nbr("generous", down_rate=1e6, choking_us=False), nbr("idle"),
                  nbr("bored", interested=False)]
    decisions = FreeRider().rechoke(choke_view(neighbours))
    assert set(decisions) == {"generous", "idle", "bored"}
    assert all(d.kind == "choke" and d.reason == "free rider" and d.rate is None
               for d in decisions.values())


def test_still_chokes_as_a_seed_and_on_every_trigger():
    neighbours = [nbr("a"), nbr("b", current="regular")]
    for trigger in ("timer", "interest", "disconnect"):
        decisions = FreeRider().rechoke(choke_view(neighbours, seed=True, trigger=trigger))
        assert {d.kind for d in decisions.values()} == {"choke"}


def test_built_by_name():
    assert isinstance(build_choker(PolicySpec(name="free_rider"), seed=3), FreeRider)
