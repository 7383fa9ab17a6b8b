"""The tracker's HTTP face without the HTTP plumbing: query strings in, bencoded bodies out.

Pure functions (no sockets, no clock): ``handle_request`` takes the request line's method and
target as h11 hands them over (bytes), the client's address, the swarm and the time, and
returns the status, the body and the log record to write. The trio server only moves bytes.

Query strings are decoded as bytes, never as text: ``info_hash`` and ``peer_id`` are 20 raw
bytes each, and real clients send them partly percent-escaped and partly raw
(docs/real-clients.md, "Announce query"). ``+`` is taken literally, as RFC 3986 says;
BitTorrent clients escape a space byte as ``%20``.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from peer import bencode
from peer.eventlog import peer_id_text
from tracker.swarm import (
    EVENTS,
    Announce,
    AnnounceRefused,
    AnnounceResult,
    PeerAddress,
    ScrapeStats,
    Swarm,
)

_UNSIGNED = re.compile(rb"[0-9]{1,20}")
_SIGNED = re.compile(rb"-?[0-9]{1,20}")
MAX_COUNTER = 2**63 - 1  # byte counters are 64-bit in every client


class BadQuery(AnnounceRefused):
    """A parameter is missing or malformed; ``param`` names it."""

    def __init__(self, param: str, problem: str) -> None:
        self.param = param
        super().__init__(f"invalid {param}: {problem}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """What to send back, and what to log about it (``log_ev`` None: nothing)."""

    status: int
    body: bytes
    content_type: bytes = b"text/plain"
    log_ev: str | None = None
    log_fields: dict[str, Any] | None = None


# ---------------------------------------------------------------------------------------------
# Query strings


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """``/announce?a=1`` -> (``/announce``, ``a=1``). A fragment, if any, is dropped."""
    target = target.split(b"#", 1)[0]
    path, _, query = target.partition(b"?")
    return path, query


def parse_query(query: bytes) -> dict[str, list[bytes]]:
    """Percent-decode every ``name=value`` pair as bytes; names become text, values stay bytes.

    Repeated names keep every value in order (scrape sends ``info_hash`` several times).
    """
    params: dict[str, list[bytes]] = {}
    for part in query.split(b"&"):
        if not part:
            continue
        raw_name, _, raw_value = part.partition(b"=")
        name = unquote_to_bytes(raw_name).decode("latin-1")
        params.setdefault(name, []).append(unquote_to_bytes(raw_value))
    return params


def parse_announce(query: bytes) -> Announce:
    """Validate an announce's parameters (BEP 3). Raises BadQuery naming the parameter.

    Unknown parameters (``key``, ``ip``, ``supportcrypto``, ``no_peer_id``, …) are ignored;
    ``ip`` in particular, since the address to hand out is the connection's source address.
    """
    params = parse_query(query)
    return Announce(
        info_hash=_twenty_bytes(params, "info_hash"),
        peer_id=_twenty_bytes(params, "peer_id"),
        port=_port(params),
        uploaded=_counter(params, "uploaded", default=0),
        downloaded=_counter(params, "downloaded", default=0),
        left=_counter(params, "left", default=None),
        event=_event(params),
        numwant=_numwant(params),
        compact=_compact(params),
    )


def parse_scrape(query: bytes) -> list[bytes]:
    """The info_hashes of a scrape (BEP 48); none means every torrent."""
    hashes = parse_query(query).get("info_hash", [])
    for value in hashes:
        if len(value) != 20:
            raise BadQuery("info_hash", f"must be 20 bytes, got {len(value)}")
    return hashes


def _first(params: dict[str, list[bytes]], name: str) -> bytes | None:
    values = params.get(name)
    return values[0] if values else None


def _twenty_bytes(params: dict[str, list[bytes]], name: str) -> bytes:
    value = _first(params, name)
    if value is None:
        raise BadQuery(name, "missing")
    if len(value) != 20:
        raise BadQuery(name, f"must be 20 bytes, got {len(value)}")
    return value


def _port(params: dict[str, list[bytes]]) -> int:
    value = _first(params, "port")
    if value is None:
        raise BadQuery("port", "missing")
    if not _UNSIGNED.fullmatch(value) or not 1 <= int(value) <= 65535:
        raise BadQuery("port", f"must be a whole number 1..65535, got {_show(value)}")
    return int(value)


def _counter(params: dict[str, list[bytes]], name: str, *, default: int | None) -> int:
    value = _first(params, name)
    if value is None:
        if default is None:
            raise BadQuery(name, "missing")
        return default
    # A regex, not int(): int() also takes "+5", " 5", "1_000" and 5000-digit strings.
    if not _UNSIGNED.fullmatch(value) or int(value) > MAX_COUNTER:
        raise BadQuery(name, f"must be a whole number of bytes >= 0, got {_show(value)}")
    return int(value)


def _event(params: dict[str, list[bytes]]) -> str:
    value = _first(params, "event")
    if value is None:
        return ""
    text = value.decode("latin-1")
    if text not in EVENTS:
        raise BadQuery("event", f"must be started, completed, stopped or empty, got {_show(value)}")
    return text


def _numwant(params: dict[str, list[bytes]]) -> int | None:
    value = _first(params, "numwant")
    if value is None or value == b"":
        return None
    if not _SIGNED.fullmatch(value):
        raise BadQuery("numwant", f"must be a whole number, got {_show(value)}")
    return int(value)


def _compact(params: dict[str, list[bytes]]) -> bool:
    value = _first(params, "compact")
    if value is None or value == b"":
        return True  # every client sends compact=1; default to what they all understand
    if value not in (b"0", b"1"):
        raise BadQuery("compact", f"must be 0 or 1, got {_show(value)}")
    return value == b"1"


def _show(value: bytes) -> str:
    text = repr(value[:40])[1:]
    return text + "…" if len(value) > 40 else text


# ---------------------------------------------------------------------------------------------
# Responses


def encode_failure(reason: str) -> bytes:
    """BEP 3: a failed request gets a dictionary with only ``failure reason``."""
    return bencode.encode({b"failure reason": reason})


def compact_peers(peers: Iterable[PeerAddress]) -> bytes:
    """BEP 23: 4 bytes of IPv4 address and 2 bytes of port per peer, network byte order.

    Peers that are not IPv4 cannot be written in this form and are left out.
    """
    out = bytearray()
    for p in peers:
        try:
            out += socket.inet_pton(socket.AF_INET, p.ip)
        except OSError:
            continue
        out += p.port.to_bytes(2, "big")
    return bytes(out)


def encode_announce(result: AnnounceResult, *, compact: bool) -> bytes:
    peers: bytes | list[dict[bytes, Any]]
    if compact:
        peers = compact_peers(result.peers)
    else:
        peers = [{b"peer id": p.peer_id, b"ip": p.ip, b"port": p.port} for p in result.peers]
    response: dict[bytes, Any] = {
        b"interval": result.interval,
        b"complete": result.complete,
        b"incomplete": result.incomplete,
        b"peers": peers,
    }
    if result.min_interval is not None:
        # Not in BEP 3 but sent by common trackers (opentracker, ...) and read by clients.
        response[b"min interval"] = result.min_interval
    return bencode.encode(response)


def encode_scrape(stats: dict[bytes, ScrapeStats]) -> bytes:
    return bencode.encode({
        b"files": {
            info_hash: {b"complete": s.complete, b"downloaded": s.downloaded,
                        b"incomplete": s.incomplete}
            for info_hash, s in stats.items()
        }
    })


# ---------------------------------------------------------------------------------------------
# Dispatch


def handle_request(method: bytes, target: bytes, *, client_ip: str, swarm: Swarm,
                   now: float) -> Reply:
    """Answer one HTTP request. Failures of the BitTorrent kind are HTTP 200 (BEP 3)."""
    path, query = split_target(target)
    if path not in (b"/announce", b"/scrape"):
        return Reply(status=404, body=b"not found: the tracker serves /announce and /scrape\n")
    if method != b"GET":
        return Reply(status=405, body=b"method not allowed: use GET\n")
    if path == b"/announce":
        return _announce(query, client_ip=client_ip, swarm=swarm, now=now)
    return _scrape(query, swarm=swarm, now=now)


def _announce(query: bytes, *, client_ip: str, swarm: Swarm, now: float) -> Reply:
    try:
        request = parse_announce(query)
        result = swarm.announce(request, ip=client_ip, now=now)
    except AnnounceRefused as exc:
        return Reply(status=200, body=encode_failure(exc.reason), log_ev="announce",
                     log_fields=_failed_announce_fields(query, client_ip, exc.reason))
    fields = {
        "info_hash": request.info_hash.hex(),
        "peer": peer_id_text(request.peer_id),
        "addr": f"{client_ip}:{request.port}",
        "event": request.event,
        "uploaded": request.uploaded,
        "downloaded": request.downloaded,
        "left": request.left,
        "numwant": request.numwant,
        "returned": len(result.peers),
        "complete": result.complete,
        "incomplete": result.incomplete,
        "failure": None,
    }
    return Reply(status=200, body=encode_announce(result, compact=request.compact),
                 log_ev="announce", log_fields=fields)


def _failed_announce_fields(query: bytes, client_ip: str, reason: str) -> dict[str, Any]:
    """Log what can be read of a refused announce; what cannot is null."""
    params = parse_query(query)

    def number(name: str, pattern: re.Pattern[bytes] = _UNSIGNED) -> int | None:
        value = _first(params, name)
        return int(value) if value is not None and pattern.fullmatch(value) else None

    info_hash = _first(params, "info_hash")
    peer_id = _first(params, "peer_id")
    port = number("port")
    event = _first(params, "event")
    return {
        "info_hash": None if info_hash is None else info_hash.hex(),
        "peer": None if peer_id is None else peer_id_text(peer_id),
        "addr": client_ip if port is None else f"{client_ip}:{port}",
        "event": None if event is None else event.decode("latin-1"),
        "uploaded": number("uploaded"),
        "downloaded": number("downloaded"),
        "left": number("left"),
        "numwant": number("numwant", _SIGNED),
        "returned": 0,
        "complete": None,
        "incomplete": None,
        "failure": reason,
    }


def _scrape(query: bytes, *, swarm: Swarm, now: float) -> Reply:
    try:
        hashes = parse_scrape(query)
    except AnnounceRefused as exc:
        return Reply(status=200, body=encode_failure(exc.reason), log_ev="scrape",
                     log_fields={"info_hashes": [], "failure": exc.reason})
    stats = swarm.scrape(hashes, now=now)
    return Reply(status=200, body=encode_scrape(stats), log_ev="scrape",
                 log_fields={"info_hashes": [h.hex() for h in hashes]})
