"""What the ``counters`` log events report: payload bytes exchanged with each neighbour and in
total, and connections refused without a line each (docs/log-schema.md). No I/O."""

from __future__ import annotations

from typing import Any


class Counters:
    def __init__(self) -> None:
        self.per_peer: dict[str, list[int]] = {}
        """Peer -> [bytes up, bytes down] since it first connected."""
        self.uploaded = 0
        self.downloaded = 0
        self.refused: dict[str, int] = {}
        """Connections refused by reason (``neighbour cap``, ``banned``)."""
        self._moved: set[str] = set()
        """Neighbours whose counts moved since the last line: a peer with hundreds of past
        neighbours would otherwise compare them all every second."""
        self._dirty = True

    def add_peer(self, peer: str) -> None:
        if peer not in self.per_peer:
            self.per_peer[peer] = [0, 0]
            self._moved.add(peer)  # a new neighbour's first line says [0, 0]

    def sent(self, peer: str, size: int) -> None:
        self.uploaded += size
        self.per_peer[peer][0] += size
        self._moved.add(peer)
        self._dirty = True

    def received(self, peer: str, size: int) -> None:
        self.downloaded += size
        self.per_peer[peer][1] += size
        self._moved.add(peer)
        self._dirty = True

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        self._dirty = True

    def event(self, force: bool = False) -> dict[str, Any] | None:
        """The fields of the next ``counters`` event, or None if nothing moved (unless
        ``force``). The neighbour map ``n`` comes last: the analysis reads it column-wise."""
        if not (self._dirty or force):
            return None
        self._dirty = False
        # Only neighbours whose counts moved since the last line: a peer with dozens of idle
        # neighbours would otherwise repeat them every second and bloat the log tenfold.
        moved = self._moved
        changed = {peer: list(pair) for peer, pair in self.per_peer.items() if peer in moved}
        moved.clear()
        fields: dict[str, Any] = {"up": self.uploaded, "down": self.downloaded}
        if self.refused:
            fields["refused"] = dict(self.refused)
        fields["n"] = changed
        return fields
