"""A planted regression: mainline's choker with its regular slots given at random, not by rate.

Used by ci_incentive_random.yaml beside it to show that the fidelity guard (docs/regression.md)
fails a choker that no longer reciprocates.
"""

from __future__ import annotations

from dataclasses import replace

from peer.policies.mainline import Mainline
from peer.policy_types import ChokeView, Decision


class RandomRegular(Mainline):
    """Every leecher-state rechoke ranks the neighbours by a random draw, not their rate."""

    def _leecher_rechoke(self, view: ChokeView, *, rotated: bool) -> dict[str, Decision]:
        drawn = tuple(n._replace(down_rate=self.rng.random()) for n in view.neighbours)
        return super()._leecher_rechoke(replace(view, neighbours=drawn), rotated=rotated)
