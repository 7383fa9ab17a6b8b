"""The worked example of docs/policies.md, loaded the way a topology names it."""

from __future__ import annotations

from peer_helpers import choke_view, kinds, nbr

from peer.config import PolicySpec
from peer.policy import build_choker


def test_long_memory_ranks_by_bytes_ever_received_not_the_recent_rate():
    choker = build_choker(PolicySpec(name="peer.policies.examples:LongMemory",
                                     params={"slots": 2}), seed=0)
    view = choke_view([
        nbr("old_friend", down_total=50_000_000, down_rate=0.0),
        nbr("steady", down_total=20_000_000, down_rate=10_000.0),
        nbr("burst", down_total=1_000_000, down_rate=900_000.0),
        nbr("rich_but_bored", down_total=90_000_000, interested=False),
    ])
    decisions = choker.rechoke(view)
    assert kinds(decisions, "regular") == {"old_friend", "steady"}
    assert decisions["burst"].kind == decisions["rich_but_bored"].kind == "choke"
    assert set(decisions) == {n.peer for n in view.neighbours}
