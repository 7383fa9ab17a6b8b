"""Duplicate connections: two ends that dial each other at once, whatever rule the other follows.

No I/O. Both testbed ends keep the connection dialled by the smaller peer id, so exactly one
survives whichever end decides first. A real client may follow another rule (aria2 did): if
each end closed at once the connection the other keeps, both would die. So the losing
connection of a crossed pair is never closed at once: it waits as a *spare* (what arrives on it
is held, nothing is sent on it) for ``DUPLICATE_GRACE`` seconds. If the neighbour's other
connection closes meanwhile, the spare takes its place; if both still stand at the end, the
spare is closed. The last connection to a neighbour is never closed as a duplicate.

A second connection in the same direction (a remote dialling twice) or one beside a connection
up for ``ESTABLISHED_AGE`` is no crossed dial: it is closed at once, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from peer.messages import Message
from peer.neighbour import Neighbour

ESTABLISHED_AGE = 2.0
"""A duplicate connection never replaces one that has been up this long (seconds)."""
DUPLICATE_GRACE = 2.0
"""Seconds a spare waits for the other connection to close before it is closed itself."""
MAX_HELD_MESSAGES = 1000
"""A spare that receives more than this before it is needed is closed."""


def crossed(existing: Neighbour, new: Neighbour, now: float) -> bool:
    """Both ends dialled each other at about the same time."""
    return existing.direction != new.direction and \
        now - existing.connected_at < ESTABLISHED_AGE


def new_one_wins(new: Neighbour, our_id: bytes, their_id: bytes) -> bool:
    """Of a crossed pair, both ends keep the connection dialled by the smaller peer id."""
    return (new.direction == "out") == (our_id < their_id)


@dataclass(slots=True)
class Spare:
    """The losing connection of a crossed pair while it waits."""

    nbr: Neighbour
    since: float
    reserved: bytes
    """The reserved bytes of the remote's handshake (BEP 10 support)."""
    have_then: bytes | None
    """Pieces we held when it was set aside, if it had been a neighbour (the remote knows
    those); None if it never was one."""
    held: list[Message] = field(default_factory=list)


class Spares:
    """At most one spare per neighbour, by peer id and by connection id."""

    def __init__(self) -> None:
        self._by_peer: dict[bytes, Spare] = {}
        self._by_cid: dict[int, Spare] = {}

    def __contains__(self, peer_id: bytes) -> bool:
        return peer_id in self._by_peer

    def add(self, spare: Spare) -> None:
        assert spare.nbr.peer_id is not None
        self._by_peer[spare.nbr.peer_id] = spare
        self._by_cid[spare.nbr.cid] = spare

    def of_connection(self, cid: int) -> Spare | None:
        return self._by_cid.get(cid)

    def of_peer(self, peer_id: bytes) -> Spare | None:
        return self._by_peer.get(peer_id)

    def pop(self, peer_id: bytes) -> Spare | None:
        spare = self._by_peer.pop(peer_id, None)
        if spare is not None:
            del self._by_cid[spare.nbr.cid]
        return spare

    def expired(self, now: float) -> list[Spare]:
        return [s for s in self._by_peer.values() if now - s.since >= DUPLICATE_GRACE]
