"""The free rider: downloads, never uploads (Legout et al., IMC 2006, test its robustness).

It still gets data from other peers' optimistic unchokes and from seeds, which is exactly what
the experiments measure: how much slower than contributors a free rider finishes.
"""

from __future__ import annotations

from dataclasses import dataclass

from peer.policy_types import ChokeView, Decision


@dataclass(slots=True)
class FreeRider:
    """Chokes every neighbour, always (as a leecher and after completing)."""

    seed: int = 0

    def rechoke(self, view: ChokeView) -> dict[str, Decision]:
        return {n.peer: Decision("choke", "free rider") for n in view.neighbours}
