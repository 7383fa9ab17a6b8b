"""The interface between the node and its incentive policies: the snapshots a policy decides on,
the decisions it returns, and the two Protocols (``Choker``, ``PiecePicker``).

Policies (``peer.policies``) import these types from here; ``peer.policy`` re-exports them with
the registries, so ``from peer.policy import ChokeView, Decision`` keeps working. See
docs/policies.md for the guide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol, runtime_checkable

from peer.config import ProtocolSettings

DecisionKind = Literal["regular", "optimistic", "choke"]
RechokeTrigger = Literal["timer", "interest", "disconnect"]


class NeighbourView(NamedTuple):
    """One neighbour as the choker sees it at a rechoke: an immutable snapshot.

    ``peer``: the neighbour's peer id as text (peer.eventlog.peer_id_text). ``interested``: it
    is interested in us (only interested neighbours can use an unchoke). ``down_rate``: bytes/s
    it sent us over the rate window (tit-for-tat ranks by this); ``up_rate``: bytes/s we sent it
    (a seed ranks by this). ``last_unchoked``: when we last unchoked it (None: never; round-robin
    seeding uses it). ``current``: the decision in force for it before this rechoke.

    A named tuple rather than a frozen dataclass: every rechoke builds one per neighbour, and a
    frozen dataclass took three times as long to build (docs/capacity.md)."""

    peer: str
    interested: bool
    am_interested: bool
    choking_us: bool
    am_choking: bool
    down_rate: float
    up_rate: float
    down_total: int
    up_total: int
    snubbed: bool
    is_seed: bool
    connected_at: float
    last_unchoked: float | None = None
    current: DecisionKind = "choke"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChokeView:
    """The snapshot a choker decides on."""

    now: float
    round: int
    trigger: RechokeTrigger
    """``timer``: the periodic rechoke; the others come only with ``unchoke_when_free``."""
    we_are_seed: bool
    neighbours: tuple[NeighbourView, ...]
    settings: ProtocolSettings
    upload_capacity: float | None
    """Our upload cap in bytes/s (None: unlimited); strategic policies size slots with it."""


class Decision(NamedTuple):
    """What a choker decides for one neighbour: ``kind`` and a ``reason`` for the log.

    ``rate``: an upload cap in bytes/s towards this neighbour alone, under the peer's own cap
    (None: only the shared cap applies); strategic policies (BitTyrant's u_p, PropShare's
    shares) allocate upload capacity with it. ``rotated``: this optimistic unchoke is a new
    choice (a rotation), not one kept from the last round; the rechoke log's
    ``optimistic_rotated`` is set when any decision says so."""

    kind: DecisionKind
    reason: str
    rate: float | None = None
    rotated: bool = False


@runtime_checkable
class Choker(Protocol):
    """``rechoke`` decides. A choker may also define ``trigger_may_change(regular_in_use,
    waiting, settings) -> bool``: a mid-round trigger it answers False for is not asked for
    (docs/policies.md)."""

    def rechoke(self, view: ChokeView) -> dict[str, Decision]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class PickView:
    """The snapshot a piece picker decides on, for one neighbour that has unchoked us."""

    now: float
    candidates: Sequence[int]
    """Pieces this neighbour has, we lack, and nobody is downloading yet; from a seed, also
    pieces started from leechers that still have blocks nobody was asked for."""
    availability: Sequence[int]
    """Copies of each piece among our neighbours (index = piece)."""
    have_count: int
    num_pieces: int


@runtime_checkable
class PiecePicker(Protocol):
    def pick(self, view: PickView) -> int | None: ...
