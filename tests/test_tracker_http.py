"""Query parsing and response building of the tracker, as bytes in and bytes out."""

from __future__ import annotations

import random
import socket
from urllib.parse import quote_from_bytes

import pytest

from peer import bencode
from tracker.http import (
    BadQuery,
    compact_peers,
    encode_announce,
    encode_failure,
    handle_request,
    parse_announce,
    parse_query,
    parse_scrape,
    split_target,
)
from tracker.swarm import AnnounceResult, PeerAddress, Swarm

# Bytes chosen to need escaping (0x00, '&', '=', '%', '+', '?', high bytes) and not to.
INFO_HASH = b"\x00&=%+?\xff\x80abcXYZ01-._~"
assert len(INFO_HASH) == 20
PEER_ID = b"-TB0100-000000000007"


def q(b: bytes) -> bytes:
    return quote_from_bytes(b, safe="").encode("ascii")


def mixed(b: bytes) -> bytes:
    """Escape as real clients do: unreserved characters raw, every other byte as %XX."""
    unreserved = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    return b"".join(bytes([c]) if c in unreserved else b"%%%02X" % c for c in b)


def query(**params: bytes | str | int) -> bytes:
    base = {"info_hash": mixed(INFO_HASH), "peer_id": mixed(PEER_ID), "port": 6881,
            "uploaded": 0, "downloaded": 0, "left": 1000}
    base.update(params)
    parts = []
    for name, value in base.items():
        if value is None:
            continue
        raw = value if isinstance(value, bytes) else str(value).encode()
        parts.append(name.encode() + b"=" + raw)
    return b"&".join(parts)


def swarm(**kw) -> Swarm:
    return Swarm([INFO_HASH], rng=random.Random(0), **kw)


# --- query strings -----------------------------------------------------------------------------

def test_split_target():
    assert split_target(b"/announce?a=1&b=2") == (b"/announce", b"a=1&b=2")
    assert split_target(b"/scrape") == (b"/scrape", b"")
    assert split_target(b"/announce?a=1#frag") == (b"/announce", b"a=1")


def test_parse_query_keeps_bytes_and_repeats():
    params = parse_query(b"info_hash=%00%ffab&info_hash=x&&flag&e=%zz&p=a+b")
    assert params["info_hash"] == [b"\x00\xffab", b"x"]
    assert params["flag"] == [b""]
    assert params["e"] == [b"%zz"]  # a broken escape stays as it is
    assert params["p"] == [b"a+b"]  # RFC 3986: '+' is literal


@pytest.mark.parametrize("encode", [q, mixed], ids=["all-escaped", "mixed-raw"])
def test_parse_announce_info_hash_raw_and_escaped(encode):
    request = parse_announce(query(info_hash=encode(INFO_HASH), peer_id=encode(PEER_ID)))
    assert request.info_hash == INFO_HASH
    assert request.peer_id == PEER_ID
    assert (request.port, request.uploaded, request.downloaded, request.left) == (6881, 0, 0, 1000)
    assert (request.event, request.numwant, request.compact) == ("", None, True)


def test_parse_announce_lowercase_escapes_and_all_fields():
    lower = b"".join(b"%%%02x" % c for c in INFO_HASH)
    request = parse_announce(query(info_hash=lower, event="completed", numwant=12, compact=0,
                                   uploaded=5, downloaded=2**40, ip="10.9.8.7", key="abc",
                                   supportcrypto=1, no_peer_id=1))
    assert request.info_hash == INFO_HASH
    assert (request.event, request.numwant, request.compact) == ("completed", 12, False)
    assert (request.uploaded, request.downloaded) == (5, 2**40)


def test_parse_announce_defaults_uploaded_downloaded_and_takes_first_repeat():
    request = parse_announce(query(uploaded=None, downloaded=None) + b"&port=1")
    assert (request.uploaded, request.downloaded, request.port) == (0, 0, 6881)
    assert parse_announce(query(event="")).event == ""
    assert parse_announce(query(numwant="-1")).numwant == -1


@pytest.mark.parametrize(("params", "param", "text"), [
    ({"info_hash": None}, "info_hash", "missing"),
    ({"info_hash": b"%00" * 19}, "info_hash", "20 bytes, got 19"),
    ({"info_hash": b"a" * 21}, "info_hash", "20 bytes, got 21"),
    ({"peer_id": None}, "peer_id", "missing"),
    ({"peer_id": b"short"}, "peer_id", "20 bytes, got 5"),
    ({"port": None}, "port", "missing"),
    ({"port": 0}, "port", "1..65535"),
    ({"port": 65536}, "port", "1..65535"),
    ({"port": "http"}, "port", "1..65535"),
    ({"uploaded": -1}, "uploaded", ">= 0"),
    ({"downloaded": "1e3"}, "downloaded", ">= 0"),
    ({"left": None}, "left", "missing"),
    ({"left": "+5"}, "left", ">= 0"),
    ({"left": "1_000"}, "left", ">= 0"),
    ({"left": "9" * 30}, "left", ">= 0"),
    ({"event": "paused"}, "event", "paused"),
    ({"numwant": "lots"}, "numwant", "whole number"),
    ({"compact": "yes"}, "compact", "0 or 1"),
])
def test_bad_parameters_are_named(params, param, text):
    with pytest.raises(BadQuery) as info:
        parse_announce(query(**params))
    assert info.value.param == param
    assert param in info.value.reason and text in info.value.reason


def test_parse_scrape():
    assert parse_scrape(b"") == []
    assert parse_scrape(b"info_hash=" + mixed(INFO_HASH) + b"&info_hash=" + q(b"\x01" * 20)) == [
        INFO_HASH, b"\x01" * 20]
    with pytest.raises(BadQuery, match="info_hash"):
        parse_scrape(b"info_hash=abc")


# --- responses ---------------------------------------------------------------------------------

PEERS = (PeerAddress(peer_id=b"A" * 20, ip="127.0.0.1", port=6881),
         PeerAddress(peer_id=b"B" * 20, ip="10.0.0.2", port=65535))


def test_compact_peers_bep23():
    assert compact_peers(PEERS) == b"\x7f\x00\x00\x01\x1a\xe1" + b"\x0a\x00\x00\x02\xff\xff"
    # Not IPv4: cannot be written in six bytes, left out.
    assert compact_peers([PeerAddress(peer_id=b"C" * 20, ip="::1", port=1)]) == b""


def test_encode_announce_compact_and_dicts():
    result = AnnounceResult(peers=PEERS, complete=3, incomplete=4, interval=30)
    body = bencode.decode(encode_announce(result, compact=True))
    assert body == {b"interval": 30, b"complete": 3, b"incomplete": 4,
                    b"peers": compact_peers(PEERS)}
    body = bencode.decode(encode_announce(result, compact=False))
    assert body[b"peers"] == [
        {b"peer id": b"A" * 20, b"ip": b"127.0.0.1", b"port": 6881},
        {b"peer id": b"B" * 20, b"ip": b"10.0.0.2", b"port": 65535},
    ]


def test_encode_failure_has_only_the_reason():
    assert bencode.decode(encode_failure("nope")) == {b"failure reason": b"nope"}


# --- dispatch ----------------------------------------------------------------------------------

def announce(s: Swarm, n: int, *, src: str = "127.0.0.1", now: float = 0.0, **params):
    pid = b"-TB0100-%012d" % n
    target = b"/announce?" + query(**{"peer_id": mixed(pid), "port": 6000 + n, **params})
    return handle_request(b"GET", target, client_ip=src, swarm=s, now=now)


def test_handle_announce_compact_default_and_source_ip():
    s = swarm()
    first = announce(s, 1, src="127.0.0.5", event="started")
    assert first.status == 200
    assert bencode.decode(first.body)[b"peers"] == b""
    # ctorrent's ip= is ignored: the address handed out is the connection's.
    second = announce(s, 2, src="127.0.0.6", event="started", ip=b"1.2.3.4")
    body = bencode.decode(second.body)
    assert body[b"peers"] == socket.inet_aton("127.0.0.5") + (6001).to_bytes(2, "big")
    assert (body[b"complete"], body[b"incomplete"], body[b"interval"]) == (0, 2, 30)
    assert second.log_ev == "announce"
    assert second.log_fields == {
        "info_hash": INFO_HASH.hex(), "peer": "-TB0100-000000000002", "addr": "127.0.0.6:6002",
        "event": "started", "uploaded": 0, "downloaded": 0, "left": 1000, "numwant": None,
        "returned": 1, "complete": 0, "incomplete": 2, "failure": None,
    }


def test_handle_announce_dict_peers():
    s = swarm()
    announce(s, 1)
    reply = announce(s, 2, compact=0)
    assert bencode.decode(reply.body)[b"peers"] == [
        {b"peer id": b"-TB0100-000000000001", b"ip": b"127.0.0.1", b"port": 6001}]


def test_handle_announce_failure_is_http_200_and_logged():
    s = swarm()
    reply = announce(s, 1, port="x", numwant=-3)
    assert reply.status == 200
    body = bencode.decode(reply.body)
    assert list(body) == [b"failure reason"]
    assert b"port" in body[b"failure reason"]
    assert reply.log_ev == "announce"
    assert reply.log_fields["failure"] == body[b"failure reason"].decode()
    assert reply.log_fields["addr"] == "127.0.0.1"
    assert reply.log_fields["numwant"] == -3
    assert reply.log_fields["peer"] == "-TB0100-000000000001"


def test_handle_announce_unknown_info_hash():
    s = swarm()
    reply = announce(s, 1, info_hash=q(b"\x07" * 20))
    assert reply.status == 200
    assert b"unknown info_hash" in bencode.decode(reply.body)[b"failure reason"]
    assert reply.log_fields["info_hash"] == "07" * 20


def test_handle_scrape():
    s = swarm()
    announce(s, 1, left=0, event="completed")
    announce(s, 2)
    reply = handle_request(b"GET", b"/scrape?info_hash=" + mixed(INFO_HASH), client_ip="127.0.0.1",
                           swarm=s, now=1.0)
    assert reply.status == 200
    assert bencode.decode(reply.body) == {
        b"files": {INFO_HASH: {b"complete": 1, b"downloaded": 1, b"incomplete": 1}}}
    assert (reply.log_ev, reply.log_fields) == ("scrape", {"info_hashes": [INFO_HASH.hex()]})
    everything = handle_request(b"GET", b"/scrape", client_ip="127.0.0.1", swarm=s, now=1.0)
    assert bencode.decode(everything.body) == bencode.decode(reply.body)
    bad = handle_request(b"GET", b"/scrape?info_hash=x", client_ip="127.0.0.1", swarm=s, now=1.0)
    assert b"info_hash" in bencode.decode(bad.body)[b"failure reason"]


def test_handle_unknown_path_and_method():
    s = swarm()
    assert handle_request(b"GET", b"/", client_ip="127.0.0.1", swarm=s, now=0).status == 404
    assert handle_request(b"GET", b"/announce.php", client_ip="127.0.0.1", swarm=s,
                          now=0).status == 404
    reply = handle_request(b"POST", b"/announce", client_ip="127.0.0.1", swarm=s, now=0)
    assert reply.status == 405
    assert reply.log_ev is None
