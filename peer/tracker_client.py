"""The peer's side of the tracker protocol: BEP 3 announces over HTTP, BEP 15 over UDP, BEP 23
compact peer lists, and when to announce (``AnnounceSchedule``).

Building the query (``announce_query``) and reading the answer (``parse_announce_response``)
are pure functions, as is the UDP protocol (``peer/udp_tracker.py``); ``http_get`` and
``TrackerClient._udp_exchange`` are the only I/O. ``TrackerClient.announce`` turns every
failure into the ``announce`` log record instead of an exception: an unreachable tracker is
something a peer retries, not a reason to stop.
"""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_from_bytes, urlsplit

import h11
import trio

from peer import bencode
from peer.addresses import decode_compact_peers, dialable
from peer.bencode import Bencodable
from peer.config import ProtocolSettings
from peer.dial import connect_tcp
from peer.errors import BencodeError, ConfigError
from peer.udp_tracker import AnnounceReply, UdpAnnouncer, UdpTrackerError

ANNOUNCE_TIMEOUT = 5.0
"""Seconds an announce may take, connection included, before it counts as failed."""
USER_AGENT = "bt-testbed/0.1"
SHORT_ANNOUNCE_FLOOR = 5.0
"""Seconds: a peer short of neighbours announces at most this often unless told otherwise."""

UDP_TIMEOUT_CAP = 2.0
"""Seconds a UDP tracker request waits before it is sent again: BEP 15's 15 x 2^n capped for
runs that last minutes (loopback loses no datagram; a silent tracker is retried by the node)."""
UDP_ATTEMPTS = 3
"""Sends of one UDP request before the announce counts as failed."""

Address = tuple[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnounceRequest:
    """What one announce tells the tracker (BEP 3 parameter names)."""

    info_hash: bytes
    peer_id: bytes
    port: int
    uploaded: int
    downloaded: int
    left: int
    numwant: int
    event: str = ""
    """``started``, ``completed``, ``stopped``, or ``""`` for a periodic announce."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnounceResponse:
    """A decoded tracker answer: a peer list, or the tracker's ``failure reason``."""

    peers: list[Address] | None
    """None when the tracker refused (``failure`` is set)."""
    failure: str | None = None
    interval: Bencodable | None = None
    min_interval: Bencodable | None = None
    """The tracker's ``min interval``: announce no more often than this, even when short."""
    complete: Bencodable | None = None
    incomplete: Bencodable | None = None

    @property
    def usable_interval(self) -> float | None:
        """The tracker's announce interval in seconds, when it gave a sensible one."""
        return _seconds(self.interval)

    @property
    def usable_min_interval(self) -> float | None:
        """The tracker's ``min interval`` in seconds, when it gave a sensible one."""
        return _seconds(self.min_interval)


def _seconds(value: Bencodable | None) -> float | None:
    if isinstance(value, int) and value > 0:
        return float(value)
    return None


class AnnounceSchedule:
    """When to announce next (no I/O, no clock: times are passed in).

    Periodic announces follow ``protocol.announce_interval`` if set, else the tracker's
    ``interval`` (``FALLBACK_ANNOUNCE_INTERVAL`` until it names one). A peer with fewer than
    ``wanted_neighbours`` neighbours announces early, as clients short of peers do: every
    ``short_announce_interval`` if set, else at the tracker's ``min interval``, else twice as
    often with a floor of ``SHORT_ANNOUNCE_FLOOR``; never later than the periodic announce.
    """

    def __init__(self, settings: ProtocolSettings) -> None:
        self.settings = settings
        self.interval = settings.first_announce_interval
        self.min_interval: float | None = None

    def heard(self, response: AnnounceResponse) -> None:
        """Take the intervals from a tracker's answer (the settings win when set)."""
        interval = response.usable_interval
        if interval is not None and self.settings.announce_interval is None:
            self.interval = interval
        self.min_interval = response.usable_min_interval

    @property
    def short_interval(self) -> float:
        """Seconds between announces while short of neighbours."""
        short = self.settings.short_announce_interval
        if short is None:
            short = self.min_interval
        if short is None:
            short = max(SHORT_ANNOUNCE_FLOOR, self.interval / 2)
        return min(short, self.interval)

    def next_announce(self, last: float, neighbours: int) -> float:
        """The time of the next periodic announce after one at ``last``, given how many
        neighbours the peer has now (ask again as that changes)."""
        if neighbours < self.settings.wanted_neighbours:
            return last + self.short_interval
        return last + self.interval


def announce_query(request: AnnounceRequest) -> str:
    """The URL query string of an announce, every value percent-encoded."""
    params: dict[str, bytes | str] = {
        "info_hash": request.info_hash, "peer_id": request.peer_id, "port": str(request.port),
        "uploaded": str(request.uploaded), "downloaded": str(request.downloaded),
        "left": str(max(0, request.left)), "compact": "1", "numwant": str(request.numwant)}
    if request.event:
        params["event"] = request.event
    return "&".join(f"{k}={quote_from_bytes(v if isinstance(v, bytes) else v.encode())}"
                    for k, v in params.items())


def parse_announce_response(body: bytes) -> AnnounceResponse:
    """Decode a tracker's answer; BencodeError or ValueError when it is malformed."""
    response = bencode.decode(body)
    if not isinstance(response, dict):
        raise BencodeError("announce response is not a dictionary")
    if b"failure reason" in response:
        reason = response[b"failure reason"]
        if not isinstance(reason, bytes):
            raise BencodeError("failure reason is not a string")
        return AnnounceResponse(peers=None, failure=reason.decode("utf-8", "replace"))
    return AnnounceResponse(peers=parse_peers(response.get(b"peers", b"")),
                            interval=response.get(b"interval"),
                            min_interval=response.get(b"min interval"),
                            complete=response.get(b"complete"),
                            incomplete=response.get(b"incomplete"))


def parse_peers(peers: Bencodable) -> list[Address]:
    """BEP 23 compact (6 bytes a peer) or BEP 3 dictionary peer lists."""
    if isinstance(peers, bytes):
        if len(peers) % 6:
            raise ValueError(f"compact peer list of {len(peers)} bytes, not a multiple of 6")
        return decode_compact_peers(peers)
    if isinstance(peers, list):
        entries = (dialable(entry.get(b"ip"), entry.get(b"port")) for entry in peers
                   if isinstance(entry, dict))
        return [address for address in entries if address is not None]
    raise ValueError("peers is neither a compact string nor a list")


def announce_record(event: str, response: AnnounceResponse | None,
                    error: str | None = None) -> dict[str, Any]:
    """The fields of the ``announce`` log event (docs/log-schema.md)."""
    record: dict[str, Any] = {"event": event, "ok": False, "peers": 0, "interval": None,
                              "min_interval": None, "complete": None, "incomplete": None,
                              "error": error}
    if response is not None and response.peers is None:
        record["error"] = response.failure
    elif response is not None and response.peers is not None:
        record.update(ok=True, peers=len(response.peers), interval=response.interval,
                      min_interval=response.min_interval, complete=response.complete,
                      incomplete=response.incomplete)
    return record


async def announce(url: str, request: AnnounceRequest, *, local_address: str | None = None
                   ) -> tuple[AnnounceResponse | None, dict[str, Any]]:
    """Announce once: the decoded answer (None if it failed) and the log record."""
    try:
        with trio.fail_after(ANNOUNCE_TIMEOUT):
            body = await http_get(url, announce_query(request), local_address=local_address)
        response = parse_announce_response(body)
    except (OSError, trio.TooSlowError, BencodeError, h11.ProtocolError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return None, announce_record(request.event, None, error)
    return response, announce_record(request.event, response)


def tracker_url_problem(url: str) -> str | None:
    """Why a peer cannot announce to ``url`` (the schemes it speaks: BEP 3's http:// and BEP 15's
    udp://host:port), or None. The topology checker asks the same question before a run."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a tracker URL: {url!r} ({exc})"
    if parts.scheme == "udp" and parts.hostname and port:
        return None
    if parts.scheme == "http" and parts.hostname:
        return None
    return f"must be an http://host[:port]/path or udp://host:port tracker URL, got {url!r}"


class TrackerClient:
    """Announces to one tracker: ``http://`` (BEP 3) or ``udp://host:port`` (BEP 15).

    A UDP tracker's connection id is kept between announces (reused for 60 s, BEP 15). A URL of
    another scheme is a ConfigError at once, so a peer refuses it before starting.
    """

    def __init__(self, url: str, *, rng: random.Random, local_address: str | None = None) -> None:
        problem = tracker_url_problem(url)
        if problem is not None:
            raise ConfigError(problem, "tracker")
        self.url = url
        self.local_address = local_address
        """The address announces leave from (None: the kernel's choice; see
        ``PeerConfig.outgoing_address``)."""
        parts = urlsplit(url)
        self._udp: UdpAnnouncer | None = None
        if parts.scheme == "udp":
            assert parts.hostname is not None and parts.port is not None  # checked above
            self._udp_address = (parts.hostname, parts.port)
            self._udp = UdpAnnouncer(rng=rng, timeout_cap=UDP_TIMEOUT_CAP,
                                     max_attempts=UDP_ATTEMPTS)

    async def announce(self, request: AnnounceRequest
                       ) -> tuple[AnnounceResponse | None, dict[str, Any]]:
        """Announce once: the decoded answer (None if it failed) and the log record."""
        if self._udp is None:
            return await announce(self.url, request, local_address=self.local_address)
        try:
            reply = await self._udp_exchange(self._udp, request)
        except (OSError, UdpTrackerError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return None, announce_record(request.event, None, error)
        response = AnnounceResponse(peers=reply.peers, interval=reply.interval,
                                    complete=reply.seeders, incomplete=reply.leechers)
        return response, announce_record(request.event, response)

    async def _udp_exchange(self, udp: UdpAnnouncer, request: AnnounceRequest) -> AnnounceReply:
        """Connect (unless the connection id is fresh) and announce, resending on timeouts."""
        host, port = self._udp_address
        infos = await trio.socket.getaddrinfo(host, port, family=socket.AF_INET,
                                              type=socket.SOCK_DGRAM)
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            if self.local_address is not None:
                await sock.bind((self.local_address, 0))
            await sock.connect(infos[0][4])
            datagram = udp.begin(request, trio.current_time())
            while True:
                await sock.send(datagram)
                while True:
                    with trio.move_on_at(udp.deadline):
                        answer = udp.datagram_received(await sock.recv(65536),
                                                       trio.current_time())
                        if isinstance(answer, AnnounceReply):
                            return answer
                        if answer is None:
                            continue  # not an answer to our request: keep waiting
                        datagram = answer
                        break
                    datagram = udp.timed_out(trio.current_time())
                    break


async def http_get(url: str, query: str, *, local_address: str | None = None) -> bytes:
    """GET ``url?query`` over HTTP/1.1 (h11) and return the body of a 200 response; from
    ``local_address`` when given."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"tracker URL must be http://host:port/path, got {url!r}")
    port = parts.port or 80
    target = (parts.path or "/") + ("&" if parts.query else "?") + query
    if parts.query:
        target = f"{parts.path}?{parts.query}&{query}"
    conn = h11.Connection(h11.CLIENT)
    stream = await connect_tcp(parts.hostname, port, local_address=local_address)
    async with stream:
        request = h11.Request(method="GET", target=target,
                              headers=[("Host", f"{parts.hostname}:{port}"),
                                       ("Connection", "close"),
                                       ("User-Agent", USER_AGENT)])
        await stream.send_all(_h11_bytes(conn, request) + _h11_bytes(conn, h11.EndOfMessage()))
        body = bytearray()
        status = None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
    if status != 200:
        raise ValueError(f"tracker answered HTTP {status}")
    return bytes(body)


def _h11_bytes(conn: h11.Connection, event: h11.Request | h11.EndOfMessage) -> bytes:
    data = conn.send(event)
    assert data is not None  # None only for ConnectionClosed, which we never send
    return data
