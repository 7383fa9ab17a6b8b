"""The textbook's distribution-time bounds (Kurose & Ross, chapter 2).

For a file of F bytes, N downloading peers, server (initial seeds') upload u_s, peer uploads
u_i and the slowest peer download d_min (all in bytes per second):

- client-server: D_cs = max(N·F / u_s, F / d_min)
- P2P:           D_p2p = max(F / u_s, F / d_min, N·F / (u_s + Σ u_i))

An unlimited download rate makes the F / d_min term vanish. An unlimited upload makes a bound
zero where it appears as a divisor.

``bound_inputs`` reads F, u_s, the u_i and the downloads from an expanded experiment (the
``experiment.json`` form) for both the run summary (testbed.run) and the analysis
(analysis.metrics), so the two cannot disagree. This module imports nothing heavy: the
orchestrator uses it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def _div(numerator: float, rate: float | None) -> float:
    if rate is None:
        return 0.0
    if rate <= 0:
        return math.inf
    return numerator / rate


def _total(rates: Iterable[float | None]) -> float | None:
    """Σ rates; None (unlimited) when any rate is."""
    finite = []
    for rate in rates:
        if rate is None:
            return None
        finite.append(rate)
    return float(sum(finite))


def client_server_time(file_size: float, server_upload: float | None,
                       downloads: Sequence[float | None]) -> float:
    """D_cs: the server alone sends the file to each of the N peers."""
    n = len(downloads)
    d_min_term = max((_div(file_size, d) for d in downloads), default=0.0)
    return max(_div(n * file_size, server_upload), d_min_term)


def p2p_time(file_size: float, server_upload: float | None,
             peer_uploads: Sequence[float | None], downloads: Sequence[float | None]) -> float:
    """D_p2p: the lower bound when every peer re-uploads what it has."""
    n = len(downloads)
    d_min_term = max((_div(file_size, d) for d in downloads), default=0.0)
    peers_upload = _total(peer_uploads)
    if server_upload is None or peers_upload is None:
        swarm_term = 0.0
    else:
        swarm_term = _div(n * file_size, server_upload + peers_upload)
    return max(_div(file_size, server_upload), d_min_term, swarm_term)


@dataclass(frozen=True, slots=True)
class BoundInputs:
    """What the bounds of one experiment depend on (``bound_inputs``). Rates in bytes/s."""

    file_size: float
    """F."""
    server_upload: float | None
    """u_s: the initial seeds' uploads together; None when one is unlimited; 0.0 with no seed
    (nobody holds the file, so both bounds are infinite)."""
    peer_uploads: tuple[float | None, ...]
    """u_i of each leecher (None: unlimited)."""
    downloads: tuple[float | None, ...]
    """Each leecher's download capacity (None: unlimited)."""

    @property
    def leechers(self) -> int:
        """N."""
        return len(self.downloads)

    @property
    def sum_u_i(self) -> float | None:
        """Σ u_i; None when a leecher's upload is unlimited."""
        return _total(self.peer_uploads)

    @property
    def d_min(self) -> float | None:
        """The slowest download; None when a leecher's is unlimited or there is no leecher."""
        if not self.downloads or any(d is None for d in self.downloads):
            return None
        return min(d for d in self.downloads if d is not None)

    def d_cs(self) -> float:
        """D_cs; 0 with no leecher (nothing to distribute)."""
        if not self.leechers:
            return 0.0
        return client_server_time(self.file_size, self.server_upload, self.downloads)

    def d_p2p(self) -> float:
        """D_p2p; 0 with no leecher (nothing to distribute)."""
        if not self.leechers:
            return 0.0
        return p2p_time(self.file_size, self.server_upload, self.peer_uploads, self.downloads)


def _rate(limit: Mapping[str, Any] | None) -> float | None:
    rate = (limit or {}).get("rate")
    return None if rate is None else float(rate)


def bound_inputs(experiment: Mapping[str, Any], *,
                 file_size: float | None = None) -> BoundInputs:
    """The bound inputs of an expanded experiment in its ``experiment.json`` form.

    The server is every peer of role ``seed`` (the initial seeds), N the peers of role
    ``leecher``; a ``rate`` of null is unlimited. ``file_size`` replaces the experiment's
    ``content.size`` when the caller knows F otherwise (the analysis, for a record without it).
    """
    peers = experiment.get("peers") or []
    leechers = [p for p in peers if p.get("role") == "leecher"]
    size = experiment["content"]["size"] if file_size is None else file_size
    return BoundInputs(
        file_size=float(size),
        server_upload=_total(_rate(p.get("upload")) for p in peers if p.get("role") == "seed"),
        peer_uploads=tuple(_rate(p.get("upload")) for p in leechers),
        downloads=tuple(_rate(p.get("download")) for p in leechers))
