"""The testbed's BitTorrent tracker: HTTP announce and scrape (BEP 3, BEP 23, BEP 48).

``Swarm`` is the pure bookkeeping, ``tracker.http`` turns query strings into announces and
results into bencoded bodies, and ``serve_tracker`` runs both behind trio and h11. Run the
process with ``python -m tracker`` (see docs/tracker.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tracker.swarm import (
    Announce,
    AnnounceRefused,
    AnnounceResult,
    PeerAddress,
    ScrapeStats,
    Swarm,
)

if TYPE_CHECKING:
    from tracker.server import serve_tracker

__all__ = [
    "Announce",
    "AnnounceRefused",
    "AnnounceResult",
    "PeerAddress",
    "ScrapeStats",
    "Swarm",
    "serve_tracker",
]


def __getattr__(name: str) -> Any:
    # The server pulls in trio and h11; importing it lazily keeps `python -m tracker --help`
    # and users of the pure bookkeeping fast.
    if name == "serve_tracker":
        from tracker.server import serve_tracker

        return serve_tracker
    raise AttributeError(f"module 'tracker' has no attribute {name!r}")
