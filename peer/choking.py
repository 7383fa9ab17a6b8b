"""Choking: ask the choker policy, apply its decisions to the neighbours, and log them.

No I/O: the session (peer/session.py) calls ``rechoke`` with its neighbours and the time, and
what to send goes into the session's list of actions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from peer import wire
from peer.actions import Action, Log, Send, SetUploadCap
from peer.config import ProtocolSettings
from peer.neighbour import Neighbour
from peer.policy_types import Choker, ChokeView, Decision, NeighbourView, RechokeTrigger

NO_DECISION = Decision("choke", "no decision")


class Choking:
    """The choker policy and the rechoke rounds."""

    def __init__(self, choker: Choker, settings: ProtocolSettings) -> None:
        self.choker = choker
        self.settings = settings
        self.triggered_rechokes = bool(getattr(choker, "triggered_rechokes", False))
        """Mainline BitTorrent also rechokes when an unchoked neighbour's interest changes or it
        leaves; a choker asks for those rechokes with a ``triggered_rechokes`` attribute."""
        self.trigger_may_change = getattr(choker, "trigger_may_change", None)
        """A choker's optional pre-check of triggered rechokes (``_trigger_may_change``)."""
        self.round = 0
        self._out: list[Action] = []

    def rechoke(self, trigger: RechokeTrigger, nbrs: Sequence[Neighbour], now: float, *,
                we_are_seed: bool, num_pieces: int,
                upload_capacity: float | None) -> list[Action]:
        """Ask the choker, act on its decisions, and log them (a ``timer`` rechoke lists every
        neighbour; a triggered one only the changed decisions, and no line if none changed).
        Returns what to send and log."""
        if trigger != "timer" and not self._trigger_may_change(nbrs, now):
            return []
        views = tuple(nbr.view(now, self.settings.snub_time, num_pieces) for nbr in nbrs)
        decisions = self.choker.rechoke(ChokeView(
            now=now, round=self.round, trigger=trigger, we_are_seed=we_are_seed,
            neighbours=views, settings=self.settings, upload_capacity=upload_capacity))
        lines = []
        for nbr, view in zip(nbrs, views, strict=True):
            decision = decisions.get(nbr.peer, NO_DECISION)
            self._apply(nbr, decision, now)
            if trigger != "timer" and decision.kind == view.current:
                continue  # between timer rechokes only the changes are worth a log line
            lines.append(_rechoke_line(view, decision))
        out, self._out = self._out, []
        if trigger != "timer" and not lines:
            return out  # a triggered rechoke that changed nothing: not worth a line
        out.append(Log("rechoke", {
            "round": self.round, "trigger": trigger, "seed": we_are_seed,
            "optimistic_rotated": any(d.rotated for d in decisions.values()), "nbrs": lines}))
        self.round += 1
        return out

    def _trigger_may_change(self, nbrs: Sequence[Neighbour], now: float) -> bool:
        """Whether a triggered rechoke is worth asking the choker for: always, unless it
        answers ``trigger_may_change(regular_in_use, waiting)`` (the neighbours it unchokes in
        a regular slot that are interested, and the choked, interested, not snubbing ones) with
        False. Views are not built for nothing: they are most of a rechoke's cost."""
        may_change = self.trigger_may_change
        if may_change is None:
            return True
        snub_time = self.settings.snub_time
        in_use = waiting = 0
        for nbr in nbrs:
            if nbr.peer_interested:
                if nbr.decision == "regular":
                    in_use += 1
                elif nbr.decision == "choke" and not nbr.snubbed(now, snub_time):
                    waiting += 1
        return bool(may_change(in_use, waiting, self.settings))

    def _apply(self, nbr: Neighbour, decision: Decision, now: float) -> None:
        nbr.decision = decision.kind
        unchoke = decision.kind != "choke"
        cap = decision.rate if unchoke else None
        if cap != nbr.upload_cap:
            nbr.upload_cap = cap
            self._out.append(SetUploadCap(nbr.cid, cap))
        if unchoke and nbr.am_choking:
            nbr.am_choking = False
            nbr.last_unchoked = now
            self._out.append(Send(nbr.cid, wire.UNCHOKE_BYTES))
        elif not unchoke and not nbr.am_choking:
            nbr.am_choking = True
            nbr.uploads.clear()
            self._out.append(Send(nbr.cid, wire.CHOKE_BYTES))


def _rechoke_line(view: NeighbourView, decision: Decision) -> dict[str, Any]:
    """One neighbour's entry in the rechoke log event."""
    return {"peer": view.peer, "down_rate": round(view.down_rate, 1),
            "up_rate": round(view.up_rate, 1), "interested": view.interested,
            "choking_us": view.choking_us, "snubbed": view.snubbed, "decision": decision.kind,
            "reason": decision.reason, "rate": decision.rate}
