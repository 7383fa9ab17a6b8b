"""Property-based tests of the parsers that read bytes from strangers (issue 12, item 6).

The properties and the strategies live in tests/parser_properties.py, shared with the long
fuzzing run (bench/fuzz.py). Here they run with the ``ci`` hypothesis profile
(tests/conftest.py): 100 derandomized examples each.
"""

from __future__ import annotations

import parser_properties as props
import pytest
from hypothesis import given
from hypothesis import strategies as st

from peer.tracker_client import AnnounceRequest
from peer.wire import Handshake, Message
from tracker.swarm import PeerAddress

_cuts = st.lists(st.integers(0, 2**16), max_size=8)


# --- bencode ----------------------------------------------------------------------------------


@given(props.bencode_inputs)
def test_bencode_decodes_canonically_or_raises_bencode_error(data: bytes) -> None:
    props.check_bencode_decode(data)


@given(props.deep_nesting)
def test_bencode_deep_nesting_is_a_clean_error(data: bytes) -> None:
    props.check_bencode_decode(data)


@given(props.bencode_values)
def test_bencode_round_trips(value: object) -> None:
    props.check_bencode_round_trip(value)


# --- wire -------------------------------------------------------------------------------------


@given(props.wire_streams(), _cuts)
def test_wire_messages_round_trip_however_the_bytes_are_cut(
        stream: tuple[int | None, Handshake, list[Message]], cuts: list[int]) -> None:
    props.check_wire_round_trip(*stream, cuts)


@given(props.wire_streams().map(lambda s: (s[0], props.stream_bytes(s[1], s[2]))).flatmap(
    lambda s: st.tuples(st.just(s[0]), props.mutated(st.just(s[1])))),
    _cuts, st.booleans())
def test_wire_mutated_streams_parse_or_raise_remote_protocol_error(
        case: tuple[int | None, bytes], cuts: list[int], close: bool) -> None:
    pieces, data = case
    props.check_wire_stream(data, cuts, pieces, handshake=True, close=close)


@given(props.lying_length_prefixes(), _cuts, st.booleans())
def test_wire_lying_length_prefixes_parse_or_raise_remote_protocol_error(
        case: tuple[int | None, bytes], cuts: list[int], close: bool) -> None:
    pieces, data = case
    props.check_wire_stream(data, cuts, pieces, handshake=False, close=close)


@given(st.binary(max_size=200), _cuts, st.none() | st.integers(0, 64), st.booleans(),
       st.booleans())
def test_wire_random_bytes_parse_or_raise_remote_protocol_error(
        data: bytes, cuts: list[int], pieces: int | None, handshake: bool, close: bool) -> None:
    props.check_wire_stream(data, cuts, pieces, handshake=handshake, close=close)


# --- metainfo ---------------------------------------------------------------------------------


@given(props.torrents)
def test_valid_torrents_are_read(data: bytes) -> None:
    props.check_metainfo(data)
    assert props.parse_metainfo(data).raw == data


@pytest.mark.parametrize("pieces", [1, 3])
@pytest.mark.parametrize(("path", "value"), [
    (path, value) for path, values in props.TAMPERING.items()
    for value in (props.DELETE, *values)])
def test_every_field_tampered_every_way(path: tuple[bytes, ...], value: object,
                                        pieces: int) -> None:
    top = {b"announce": b"http://127.0.0.1:6969/announce", b"info": {
        b"length": 16384 * pieces - 5, b"name": b"c.bin", b"piece length": 16384,
        b"pieces": b"h" * 20 * pieces}}
    props.check_metainfo(props.tamper(top, path, value))


@given(props.tampered_torrents())
def test_tampered_torrents_are_read_or_raise_metainfo_error(data: bytes) -> None:
    props.check_metainfo(data)


@given(props.metainfo_inputs)
def test_mutated_torrents_are_read_or_raise_metainfo_error(data: bytes) -> None:
    props.check_metainfo(data)


# --- tracker ----------------------------------------------------------------------------------


@given(props.query_inputs)
def test_announce_queries_parse_or_raise_bad_query(query: bytes) -> None:
    props.check_announce_query(query)
    props.check_scrape_query(query)


@given(st.sampled_from([b"GET", b"POST", b"get", b""]), props.request_targets(props.query_inputs))
def test_the_tracker_answers_every_request(method: bytes, target: bytes) -> None:
    props.check_handle_request(method, target)


@given(props.announce_requests)
def test_peer_announces_round_trip_through_the_tracker_parser(request: AnnounceRequest) -> None:
    props.check_announce_round_trip(request)


@given(st.lists(props.peer_addresses, max_size=20))
def test_compact_peer_lists_round_trip(peers: list[PeerAddress]) -> None:
    props.check_compact_peers_round_trip(peers)


# --- the bounds themselves can fail -----------------------------------------------------------


def test_bounded_catches_an_allocation_beyond_the_input() -> None:
    assert props.bounded(bytes, 100, size=100) == bytes(100)
    with pytest.raises(AssertionError, match="allocated"):
        props.bounded(bytearray, 4 << 20, size=100)  # what a claimed length must not do


def test_bounded_catches_cpu_time_beyond_the_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(props, "CPU_SECONDS_BASE", 0.0)
    monkeypatch.setattr(props, "CPU_SECONDS_PER_BYTE", 1e-9)
    with pytest.raises(AssertionError, match="of CPU"):
        props.bounded(sum, range(200_000), size=10)
