"""The textbook's distribution-time bounds (Kurose & Ross, chapter 2).

For a file of F bytes, N downloading peers, server (initial seeds') upload u_s, peer uploads
u_i and the slowest peer download d_min (all in bytes per second):

- client-server: D_cs = max(N·F / u_s, F / d_min)
- P2P:           D_p2p = max(F / u_s, F / d_min, N·F / (u_s + Σ u_i))

An unlimited download rate makes the F / d_min term vanish. An unlimited upload makes a bound
zero where it appears as a divisor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _div(numerator: float, rate: float | None) -> float:
    if rate is None:
        return 0.0
    if rate <= 0:
        return math.inf
    return numerator / rate


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
    if server_upload is None or any(u is None for u in peer_uploads):
        swarm_term = 0.0
    else:
        swarm_term = _div(n * file_size, server_upload + sum(peer_uploads))  # type: ignore[arg-type]
    return max(_div(file_size, server_upload), d_min_term, swarm_term)
