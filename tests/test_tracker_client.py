"""The peer's tracker client (peer/tracker_client.py) against our tracker's own parser and
encoder, and one announce over loopback."""

from __future__ import annotations

import random
from functools import partial

import pytest
import trio

from peer import bencode
from peer.errors import BencodeError
from peer.eventlog import EventLog, RunClock
from peer.tracker_client import (
    AnnounceRequest,
    AnnounceResponse,
    announce,
    announce_query,
    parse_announce_response,
    parse_peers,
)
from tracker.http import encode_announce, encode_failure, parse_announce
from tracker.server import serve_tracker
from tracker.swarm import AnnounceResult, PeerAddress, Swarm

INFO_HASH = bytes(range(20))  # every byte value below 0x20 must survive percent-encoding
PEER_ID = b"-TB0100-000000000007"


def request(**fields: object) -> AnnounceRequest:
    defaults: dict[str, object] = dict(info_hash=INFO_HASH, peer_id=PEER_ID, port=6881,
                                       uploaded=10, downloaded=20, left=30, numwant=50)
    defaults.update(fields)
    return AnnounceRequest(**defaults)  # type: ignore[arg-type]


def test_the_query_is_what_the_tracker_parses():
    parsed = parse_announce(announce_query(request(event="started")).encode())
    assert (parsed.info_hash, parsed.peer_id, parsed.port) == (INFO_HASH, PEER_ID, 6881)
    assert (parsed.uploaded, parsed.downloaded, parsed.left) == (10, 20, 30)
    assert (parsed.event, parsed.numwant, parsed.compact) == ("started", 50, True)


def test_a_periodic_announce_has_no_event_and_left_is_never_negative():
    query = announce_query(request(left=-5))
    assert "event=" not in query
    assert parse_announce(query.encode()).left == 0


@pytest.mark.parametrize("compact", [True, False])
def test_both_peer_list_forms_are_read(compact):
    result = AnnounceResult(peers=(PeerAddress(peer_id=b"x" * 20, ip="127.0.0.1", port=7001),
                                   PeerAddress(peer_id=b"y" * 20, ip="10.0.0.2", port=65535)),
                            complete=1, incomplete=2, interval=15)
    response = parse_announce_response(encode_announce(result, compact=compact))
    assert response.peers == [("127.0.0.1", 7001), ("10.0.0.2", 65535)]
    assert (response.interval, response.complete, response.incomplete) == (15, 1, 2)
    assert response.usable_interval == 15.0


def test_a_refusal_carries_the_reason_and_no_peers():
    response = parse_announce_response(encode_failure("unknown torrent"))
    assert response == AnnounceResponse(peers=None, failure="unknown torrent")


@pytest.mark.parametrize(("body", "error"), [
    (b"i42e", "not a dictionary"),
    (bencode.encode({b"peers": b"12345"}), "not a multiple of 6"),
    (bencode.encode({b"peers": 7}), "neither a compact string nor a list"),
    (bencode.encode({b"failure reason": 3}), "failure reason is not a string"),
    (b"d8:intervali1e", "unterminated dictionary"),
])
def test_malformed_answers_raise(body, error):
    with pytest.raises((BencodeError, ValueError), match=error):
        parse_announce_response(body)


@pytest.mark.parametrize("entry", [
    {b"ip": b"1.2.3.4", b"port": 10**30},  # overflowed the dial (found by the fuzzer)
    {b"ip": b"1.2.3.4", b"port": 0},
    {b"ip": b"1.2.3.4", b"port": -1},
    {b"ip": b"1.2.3.4", b"port": True},
    {b"ip": b"\xff\xfe", b"port": 80},
    {b"ip": b"bad host!", b"port": 80},
    {b"ip": b"", b"port": 80},
])
def test_dictionary_peers_that_cannot_be_dialled_are_left_out(entry):
    good = {b"ip": b"tracker.example", b"port": 6881}
    assert parse_peers([entry, good, {b"ip": b"::1", b"port": 7}]) == [
        ("tracker.example", 6881), ("::1", 7)]


def test_dictionary_peer_lists_skip_malformed_entries_and_nonsense_intervals_are_ignored():
    assert parse_peers([{b"ip": b"1.2.3.4", b"port": 5}, {b"ip": 1, b"port": 2}, b"junk"]) == [
        ("1.2.3.4", 5)]
    assert AnnounceResponse(peers=[], interval=0).usable_interval is None
    assert AnnounceResponse(peers=[], interval=b"30").usable_interval is None


async def test_an_announce_over_loopback_and_one_to_nobody():
    log = EventLog(None, RunClock())
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(serve_tracker, swarm=Swarm(None, rng=random.Random(0)),
                                           log=log, flush_period=0.1))
        url = f"http://127.0.0.1:{port}/announce"
        response, record = await announce(url, request(event="started", port=7000))
        assert response is not None and response.peers == []
        assert record == {"event": "started", "ok": True, "peers": 0, "interval": 30,
                          "min_interval": 15, "complete": 0, "incomplete": 1, "error": None}
        nursery.cancel_scope.cancel()
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    closed_port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    response, record = await announce(f"http://127.0.0.1:{closed_port}/announce", request())
    assert response is None and not record["ok"] and record["error"].startswith("OSError")
