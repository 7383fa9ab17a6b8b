"""What the session (peer/session.py) asks the node to do: the output half of its interface.

Plain frozen records, so a test reads them as easily as the node acts on them. Connections are
named by the node's connection id (``cid``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from peer.policy_types import RechokeTrigger


class CloseConnection(Exception):
    """Close this one connection; ``reason`` goes into the conn_close event."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Refused(Exception):
    """Refuse a connection before it is a neighbour (at the cap, or a banned peer): closed
    and counted in the ``counters`` events, not logged one line each."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Send:
    """Queue wire bytes for a connection. ``lazy``: they may wait for the next send or the
    node's periodic flush (have messages: a third of all messages, each costing a system call
    and a task switch at both ends when sent alone)."""

    cid: int
    data: bytes
    lazy: bool = False


@dataclass(frozen=True, slots=True)
class Close:
    """Tear a connection down. The session has already forgotten it and logged why."""

    cid: int
    reason: str


@dataclass(frozen=True, slots=True)
class Log:
    """Write an event to the peer's log (docs/log-schema.md)."""

    ev: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class UploadQueued:
    """A connection's request was queued: wake its writer."""

    cid: int


@dataclass(frozen=True, slots=True)
class SetUploadCap:
    """Cap the upload to one connection (bytes/s), under the peer's own cap; None: no cap."""

    cid: int
    rate: float | None


@dataclass(frozen=True, slots=True)
class RechokeSoon:
    """Run ``rechoke(trigger)`` once the current event is handled (``unchoke_when_free``)."""

    trigger: RechokeTrigger


@dataclass(frozen=True, slots=True)
class Completed:
    """The last piece verified: write the content out, announce ``completed``, maybe leave."""


Action = Send | Close | Log | UploadQueued | SetUploadCap | RechokeSoon | Completed
NOTHING: tuple[Action, ...] = ()
"""What most events call for."""


class Outbox:
    """The actions the session and its exchange (peer/exchange.py) queued while handling one
    event, in order, until the session hands them to the node."""

    __slots__ = ("actions",)

    def __init__(self) -> None:
        self.actions: list[Action] = []

    def send(self, cid: int, data: bytes) -> None:
        self.actions.append(Send(cid, data))

    def log(self, ev: str, **fields: Any) -> None:
        self.actions.append(Log(ev, fields))

    def flush(self) -> Sequence[Action]:
        out = self.actions
        if not out:
            return NOTHING
        self.actions = []
        return out
