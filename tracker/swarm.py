"""The tracker's bookkeeping: who is in which swarm. No sockets, no clock, no global randomness.

Every method takes the current time as an argument and draws its random choices from the
``random.Random`` it was given, so tests drive it with explicit times and fixed seeds, and a
run with the same seed and the same announces hands out the same peer lists.

The rules follow BEP 3 ("Trackers") and what real clients do (docs/tracker.md):

- a peer is identified by its peer id, never by its IP address (every testbed peer shares
  127.0.0.1); its address is the connection's source address, never a client-supplied ``ip=``;
- ``stopped`` from a peer the tracker does not know is harmless (Transmission sends ``stopped``
  before ``started``), and a periodic announce from an unknown peer registers it (a tracker
  restart must not strand a swarm);
- the peer list is a random subset of at most ``numwant`` *other* peers, never the asker itself.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from peer.errors import TestbedError

EVENTS = ("", "started", "completed", "stopped")
"""BEP 3 announce events; ``""`` is a periodic announce (the parameter absent or empty)."""

DEFAULT_NUMWANT = 50  # BEP 3 leaves it to the tracker; 50 is what clients and trackers use
MAX_NUMWANT = 200
DEFAULT_INTERVAL = 30
DEFAULT_GRACE = 10.0
CLIENT_MAX_REANNOUNCE = 300
"""Seconds: the longest a well-behaved client waits between announces whatever the tracker
says. libtorrent never re-announces sooner than its ``min_announce_interval``, 300 s by
default, so a tracker that forgot peers sooner would lose libtorrent seeds between announces."""


class AnnounceRefused(TestbedError):
    """A request the tracker answers with a BEP 3 ``failure reason`` (still HTTP 200)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerAddress:
    """One entry of a peer list: what a tracker response says about a peer."""

    peer_id: bytes
    ip: str
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Announce:
    """One validated announce, as parsed from the query string (BEP 3 parameter names)."""

    info_hash: bytes
    peer_id: bytes
    port: int
    uploaded: int = 0
    downloaded: int = 0
    left: int
    event: str = ""
    numwant: int | None = None
    """None: the tracker's default."""
    compact: bool = True

    def __post_init__(self) -> None:
        # Refuse impossible values at birth; the HTTP layer names the
        # offending parameter before it gets here, so these are programming errors.
        if len(self.info_hash) != 20 or len(self.peer_id) != 20:
            raise ValueError("info_hash and peer_id must be 20 bytes")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port must be 1..65535, got {self.port}")
        if min(self.uploaded, self.downloaded, self.left) < 0:
            raise ValueError("uploaded, downloaded and left must be >= 0")
        if self.event not in EVENTS:
            raise ValueError(f"event must be one of {EVENTS}, got {self.event!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnounceResult:
    """What the tracker answers to a successful announce."""

    peers: tuple[PeerAddress, ...]
    complete: int
    """Seeds: peers with nothing left to download."""
    incomplete: int
    """Leechers."""
    interval: int
    """Seconds until the peer should announce again."""
    min_interval: int | None = None
    """Seconds a peer should wait at least before announcing again, even short of peers
    (the response's ``min interval``; None: not sent)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ScrapeStats:
    """One torrent's line of a scrape response (BEP 48 field names)."""

    complete: int
    downloaded: int
    """How many times a peer has reported ``completed``."""
    incomplete: int


@dataclass(slots=True, kw_only=True)
class _Peer:
    peer_id: bytes
    ip: str
    port: int
    uploaded: int
    downloaded: int
    left: int
    last_seen: float
    counted_completion: bool = False


@dataclass(slots=True)
class _Torrent:
    # Insertion-ordered, so the candidate list handed to the random sampler, and therefore
    # the sample, depends only on the seed and the order of announces.
    peers: dict[bytes, _Peer]
    downloaded: int = 0


class Swarm:
    """The peers of every torrent the tracker serves.

    ``info_hashes`` lists the torrents served; ``None`` accepts any info_hash and starts a
    swarm for it on its first announce. A peer not heard from for ``peer_timeout`` seconds
    has left without saying so and is dropped; by default that is two intervals or
    ``CLIENT_MAX_REANNOUNCE``, whichever is longer, plus ``grace``. ``min_interval`` (default:
    half the interval) is sent as the response's ``min interval``.
    """

    def __init__(
        self,
        info_hashes: Iterable[bytes] | None,
        *,
        rng: random.Random,
        interval: int = DEFAULT_INTERVAL,
        min_interval: int | None = None,
        peer_timeout: float | None = None,
        grace: float = DEFAULT_GRACE,
        default_numwant: int = DEFAULT_NUMWANT,
        max_numwant: int = MAX_NUMWANT,
    ) -> None:
        if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
            # bencode has no fractions: the response's ``interval`` is whole seconds.
            raise ValueError(f"interval must be a whole number of seconds >= 1, got {interval!r}")
        if grace < 0:
            raise ValueError(f"grace must be >= 0, got {grace!r}")
        if min_interval is None:
            min_interval = max(1, interval // 2)
        if not isinstance(min_interval, int) or not 1 <= min_interval <= interval:
            raise ValueError(f"min interval must be whole seconds in 1..interval ({interval}), "
                             f"got {min_interval!r}")
        if peer_timeout is not None and not peer_timeout > 0:
            raise ValueError(f"peer timeout must be seconds > 0, got {peer_timeout!r}")
        if not 0 <= default_numwant <= max_numwant:
            raise ValueError("need 0 <= default_numwant <= max_numwant")
        self.rng = rng
        self.interval = interval
        self.min_interval = min_interval
        self.grace = grace
        self.expiry = (max(2 * interval, CLIENT_MAX_REANNOUNCE) + grace
                       if peer_timeout is None else float(peer_timeout))
        """Seconds of silence after which a peer is dropped."""
        self.default_numwant = default_numwant
        self.max_numwant = max_numwant
        self.accept_any = info_hashes is None
        self._torrents: dict[bytes, _Torrent] = {}
        for info_hash in info_hashes or ():
            if len(info_hash) != 20:
                raise ValueError(f"an info_hash is 20 bytes, got {len(info_hash)}")
            self._torrents.setdefault(bytes(info_hash), _Torrent(peers={}))

    @property
    def info_hashes(self) -> list[bytes] | None:
        """The torrents served, or None when any info_hash is accepted."""
        return None if self.accept_any else list(self._torrents)

    def announce(self, request: Announce, *, ip: str, now: float) -> AnnounceResult:
        """Record one announce from ``ip`` (the connection's source address) at time ``now``.

        Raises AnnounceRefused for a torrent this tracker does not serve.
        """
        torrent = self._torrents.get(request.info_hash)
        if torrent is None:
            if not self.accept_any:
                raise AnnounceRefused("unknown info_hash: this tracker does not serve that torrent")
            if request.event == "stopped":
                # Nothing to forget; don't create a swarm just to say it is empty.
                return self._result((), 0, 0)
            torrent = self._torrents[request.info_hash] = _Torrent(peers={})
        self._expire_torrent(torrent, now)

        if request.event == "stopped":
            torrent.peers.pop(request.peer_id, None)
            complete, incomplete = _counts(torrent)
            return self._result((), complete, incomplete)

        peer = torrent.peers.get(request.peer_id)
        if peer is None:
            peer = torrent.peers[request.peer_id] = _Peer(
                peer_id=request.peer_id, ip=ip, port=request.port, uploaded=request.uploaded,
                downloaded=request.downloaded, left=request.left, last_seen=now,
            )
        else:
            # A peer may come back on another port or address; the latest announce wins.
            peer.ip, peer.port = ip, request.port
            peer.uploaded, peer.downloaded = request.uploaded, request.downloaded
            peer.left, peer.last_seen = request.left, now
        if request.event == "completed" and not peer.counted_completion:
            # BEP 48's ``downloaded``: completions the tracker has registered. A client that
            # repeats ``completed`` is counted once.
            peer.counted_completion = True
            torrent.downloaded += 1

        numwant = self.default_numwant if request.numwant is None else request.numwant
        if numwant < 0:
            numwant = self.default_numwant  # some clients send -1 for "tracker's choice"
        numwant = min(numwant, self.max_numwant)
        others = [p for pid, p in torrent.peers.items() if pid != request.peer_id]
        chosen = self.rng.sample(others, min(numwant, len(others)))
        complete, incomplete = _counts(torrent)
        return self._result(
            tuple(PeerAddress(peer_id=p.peer_id, ip=p.ip, port=p.port) for p in chosen),
            complete, incomplete)

    def _result(self, peers: tuple[PeerAddress, ...], complete: int,
                incomplete: int) -> AnnounceResult:
        return AnnounceResult(peers=peers, complete=complete, incomplete=incomplete,
                              interval=self.interval, min_interval=self.min_interval)

    def scrape(self, info_hashes: Iterable[bytes], *, now: float) -> dict[bytes, ScrapeStats]:
        """Statistics per torrent; an empty request means every torrent (BEP 48).

        Torrents the tracker does not serve are left out, as BEP 48 lists only torrents it
        has statistics for.
        """
        wanted = list(info_hashes) or list(self._torrents)
        stats: dict[bytes, ScrapeStats] = {}
        for info_hash in wanted:
            torrent = self._torrents.get(info_hash)
            if torrent is None:
                continue
            self._expire_torrent(torrent, now)
            complete, incomplete = _counts(torrent)
            stats[info_hash] = ScrapeStats(complete=complete, downloaded=torrent.downloaded,
                                           incomplete=incomplete)
        return stats

    def expire(self, now: float) -> int:
        """Drop every peer silent for longer than ``expiry``; return how many were dropped."""
        return sum(self._expire_torrent(t, now) for t in self._torrents.values())

    def peer_count(self, info_hash: bytes) -> int:
        torrent = self._torrents.get(info_hash)
        return 0 if torrent is None else len(torrent.peers)

    def _expire_torrent(self, torrent: _Torrent, now: float) -> int:
        deadline = now - self.expiry
        stale = [pid for pid, p in torrent.peers.items() if p.last_seen < deadline]
        for pid in stale:
            del torrent.peers[pid]
        return len(stale)


def _counts(torrent: _Torrent) -> tuple[int, int]:
    complete = sum(1 for p in torrent.peers.values() if p.left == 0)
    return complete, len(torrent.peers) - complete
