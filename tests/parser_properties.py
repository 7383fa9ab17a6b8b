"""Properties of the parsers that read bytes from strangers, and strategies that attack them.

Shared by the property-based tests (tests/test_properties_parsers.py, few examples, in CI) and
the long fuzzing run (bench/fuzz.py, many examples and plain random mutation for minutes).

Every ``check_*`` function states one property for one input and fails with AssertionError or
the unexpected exception when it does not hold: the input parses (and what it parses to is
consistent), or the parser raises the one error its module documents:

- peer/bencode.py: BencodeError, with a byte offset inside the data;
- peer/wire.py: RemoteProtocolError (NotBitTorrentError for a non-BitTorrent handshake);
- peer/metainfo.py: MetainfoError, on one line;
- tracker/http.py's parse_announce / parse_scrape: BadQuery naming a parameter; handle_request
  answers every request and never raises.

Every parse runs under :func:`bounded`: CPU time (of this thread, so a loaded machine does not
fail it) and peak memory allocated (tracemalloc) proportional to the input, so an input that
claims a 4 GiB length or nests 10,000 levels deep cannot make a parser allocate or loop.

Inputs are structured-but-wrong, not only random bytes: valid documents and streams mutated by
:func:`mutate` (bit flips, truncation, insertion, duplication, length fields replaced by
interesting values), bencode token soup, deep nesting, .torrent files with one field deleted
or replaced by a hostile value, announce queries with hostile parameters.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import socket
import struct
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import quote_from_bytes

from hypothesis import strategies as st

from peer import bencode
from peer.config import BLOCK_SIZE
from peer.content import num_pieces
from peer.errors import BencodeError, MetainfoError, RemoteProtocolError
from peer.metainfo import MAX_LENGTH, MAX_PIECE_LENGTH, parse_metainfo
from peer.tracker_client import AnnounceRequest, announce_query, parse_peers
from peer.wire import (
    CLOSED,
    HANDSHAKE_LENGTH,
    NEED_DATA,
    Bitfield,
    Cancel,
    Choke,
    Handshake,
    Have,
    Interested,
    KeepAlive,
    Message,
    NotInterested,
    Piece,
    Port,
    Request,
    Unchoke,
    Unknown,
    WireReader,
    encode,
)
from tracker.http import BadQuery, compact_peers, handle_request, parse_announce, parse_scrape
from tracker.swarm import EVENTS, PeerAddress, Swarm

T = TypeVar("T")

# --------------------------------------------------------------------------------------------
# Bounds

CPU_SECONDS_BASE = 0.5
CPU_SECONDS_PER_BYTE = 20e-6
MEMORY_BASE = 1 << 20
MEMORY_PER_BYTE = 64  # a 2-byte "le" decodes to a 56-byte list: structure costs more than bytes


def bounded(parse: Callable[..., T], *args: Any, size: int, **kwargs: Any) -> T:
    """``parse(*args, **kwargs)``, asserting that its CPU time and peak allocation stay
    linear in ``size``.

    Exceptions from ``parse`` propagate; only the bounds are asserted here.
    """
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    start = time.thread_time()
    try:
        return parse(*args, **kwargs)
    finally:
        cpu = time.thread_time() - start
        peak = tracemalloc.get_traced_memory()[1] - base
        if not tracing:
            tracemalloc.stop()
        cpu_limit = CPU_SECONDS_BASE + CPU_SECONDS_PER_BYTE * size
        memory_limit = MEMORY_BASE + MEMORY_PER_BYTE * size
        assert cpu <= cpu_limit, f"{cpu:.3f} s of CPU on {size} bytes (limit {cpu_limit:.3f})"
        assert peak <= memory_limit, f"{peak} bytes allocated on {size} bytes of input"


# --------------------------------------------------------------------------------------------
# Mutation: plain functions of a random.Random, so bench/fuzz.py runs them without hypothesis
# and the strategies below draw the Random from hypothesis (shrinkable).

INTERESTING_U32 = (0, 1, 2, 3, 4, 5, 9, 12, 13, 14, 0x7F, 0x80, 0xFF, 0x100, 0x3FFF, 0x4000,
                   0x4009, 0x400A, 0x440A, 0xFFFF, 0x10000, 0x40001, 0x7FFFFFFF, 0x80000000,
                   0xFFFFFFFE, 0xFFFFFFFF)
INTERESTING_NUMBERS = (b"", b"0", b"00", b"-0", b"-1", b"01", b"+1", b" 1", b"1_0", b"0x10",
                       b"4294967296", b"9223372036854775807", b"9223372036854775808",
                       b"18446744073709551616", b"9" * 20, b"9" * 21, b"1" * 129, b"7" * 5000,
                       b"99999999999")
BENCODE_TOKENS = (b"i", b"e", b"l", b"d", b"0", b"1", b"9", b":", b"-", b"le", b"de", b"i0e",
                  b"i-0e", b"i01e", b"0:", b"1:a", b"4:spam", b"4294967296:", b"d1:a",
                  b"d1:bi1e1:ai2ee", b"l" * 120, b"e" * 120)


def _digit_runs(buf: bytearray) -> list[tuple[int, int]]:
    runs, start = [], None
    for i, c in enumerate(buf):
        if 0x30 <= c <= 0x39:
            if start is None:
                start = i
        elif start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(buf)))
    return runs


def _mutate_once(buf: bytearray, rng: random.Random) -> None:
    n = len(buf)
    pos = rng.randrange(n + 1)
    op = rng.randrange(11)
    if op == 0 and n:
        buf[min(pos, n - 1)] ^= 1 << rng.randrange(8)
    elif op == 1 and n:
        buf[min(pos, n - 1)] = rng.randrange(256)
    elif op == 2:
        buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    elif op == 3 and n:
        del buf[pos:pos + rng.randint(1, 16)]
    elif op == 4:
        del buf[pos:]
    elif op == 5 and n:
        start = rng.randrange(n)
        chunk = buf[start:start + rng.randint(1, 64)]
        buf[pos:pos] = chunk * rng.randint(1, 4)
    elif op == 6:
        # A length prefix (wire) that lies: over-long, zero, off by one, 4 GiB.
        buf[pos:pos + 4] = struct.pack(">I", rng.choice(INTERESTING_U32))
    elif op == 7:
        runs = _digit_runs(buf)
        if runs:
            start, end = rng.choice(runs)
            buf[start:end] = rng.choice(INTERESTING_NUMBERS)
    elif op == 8:
        buf[pos:pos] = rng.choice(BENCODE_TOKENS)
    elif op == 9 and n:
        buf[:] = buf * rng.randint(2, 3)  # over-long: the whole thing again
    elif n:
        start = rng.randrange(n)  # swap two slices (out-of-order keys, shuffled messages)
        a = buf[start:start + rng.randint(1, 32)]
        b_start = rng.randrange(n)
        b = buf[b_start:b_start + len(a)]
        if len(b) == len(a) and b_start >= start + len(a):
            buf[start:start + len(a)], buf[b_start:b_start + len(a)] = b, a


def mutate(data: bytes, rng: random.Random, rounds: int = 1) -> bytes:
    """``data`` after ``rounds`` random structural mutations."""
    buf = bytearray(data)
    for _ in range(rounds):
        _mutate_once(buf, rng)
    return bytes(buf)


def mutated(base: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.builds(mutate, base, st.randoms(use_true_random=False), st.integers(1, 4))


# --------------------------------------------------------------------------------------------
# Bencode

MAX_INTEGER = 10**bencode.MAX_INTEGER_DIGITS - 1

bencode_ints = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64, MAX_INTEGER, -MAX_INTEGER]),
    st.integers(-MAX_INTEGER, MAX_INTEGER),
)
bencode_values: st.SearchStrategy[Any] = st.recursive(
    bencode_ints | st.binary(max_size=24),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.binary(max_size=8), children, max_size=5),
    max_leaves=25,
)
bencode_soup = st.lists(st.sampled_from(BENCODE_TOKENS), max_size=30).map(b"".join)
deep_nesting = st.builds(
    lambda depth, opener, leaf, closed: opener * depth + leaf + (b"e" * depth if closed else b""),
    st.integers(bencode.MAX_DEPTH - 2, 20_000),
    st.sampled_from([b"l", b"d1:a", b"ld0:"]),
    st.sampled_from([b"", b"i1e", b"le", b"0:"]),
    st.booleans(),
)
huge_numbers = st.builds(
    # Integers and byte string lengths of up to 6000 digits: past Python's int() limit (4300).
    lambda before, digits, after: before + digits + after,
    st.sampled_from([b"", b"i", b"i-", b"li", b"d1:ai", b"l", b"d", b"d1:a"]),
    (st.sampled_from([1, 19, 20, 128, 129, 4300, 4301, 6000]) | st.integers(1, 6000))
    .map(lambda n: b"9" * n),
    st.sampled_from([b"", b"e", b"ee", b":", b":x", b":xe", b"e1:a"]),
)
bencode_inputs = st.one_of(
    st.binary(max_size=64),
    bencode_soup,
    mutated(bencode_values.map(bencode.encode)),
    deep_nesting,
    huge_numbers,
)


def check_bencode_decode(data: bytes) -> None:
    """decode accepts only canonical encodings (re-encoding gives the same bytes), or raises
    BencodeError with an offset inside the data."""
    try:
        value = bounded(bencode.decode, data, size=len(data))
    except BencodeError as exc:
        assert exc.offset is not None and 0 <= exc.offset <= len(data), exc
        return
    assert bencode.encode(value) == data


def check_bencode_round_trip(value: Any) -> None:
    raw = bencode.encode(value)
    assert bounded(bencode.decode, raw, size=len(raw)) == value


# --------------------------------------------------------------------------------------------
# Wire

_u32 = st.integers(0, 2**32 - 1)
_blocks = st.one_of(st.binary(max_size=48), st.integers(0, BLOCK_SIZE).map(bytes))
_SIMPLE = (KeepAlive(), Choke(), Unchoke(), Interested(), NotInterested())
handshakes = st.builds(Handshake, info_hash=st.binary(min_size=20, max_size=20),
                       peer_id=st.binary(min_size=20, max_size=20),
                       reserved=st.binary(min_size=8, max_size=8))


def wire_messages(pieces: int | None) -> st.SearchStrategy[Message]:
    """Every message a reader expecting ``pieces`` pieces (None: unknown yet) must accept."""
    index = _u32 if pieces is None else st.integers(0, max(pieces - 1, 0))
    lengths = st.integers(1, BLOCK_SIZE)
    options: list[st.SearchStrategy[Message]] = [
        st.sampled_from(_SIMPLE),
        st.builds(Port, port=st.integers(0, 65535)),
        st.builds(Unknown, msg_id=st.integers(10, 255), payload=st.binary(max_size=48)),
    ]
    if pieces != 0:
        options += [
            st.builds(Have, index=index),
            st.builds(Request, index=index, begin=_u32, length=lengths),
            st.builds(Cancel, index=index, begin=_u32, length=lengths),
            st.builds(Piece, index=index, begin=_u32, block=_blocks),
        ]
    if pieces is None:
        options.append(st.builds(Bitfield, bits=st.binary(max_size=48)))
    else:
        options.append(st.sets(st.integers(0, max(pieces - 1, 0)), max_size=pieces)
                       .map(lambda chosen: Bitfield.from_indices(chosen, pieces)))
    return st.one_of(options)


@st.composite
def wire_streams(draw: st.DrawFn) -> tuple[int | None, Handshake, list[Message]]:
    pieces = draw(st.none() | st.integers(0, 300))
    messages = draw(st.lists(wire_messages(pieces), max_size=12))
    return pieces, draw(handshakes), messages


def stream_bytes(handshake: Handshake | None, messages: Sequence[Message]) -> bytes:
    return (encode(handshake) if handshake else b"") + b"".join(encode(m) for m in messages)


@st.composite
def lying_length_prefixes(draw: st.DrawFn) -> tuple[int | None, bytes]:
    """A valid message whose length prefix is replaced by an interesting value."""
    pieces, _, messages = draw(wire_streams())
    message = draw(wire_messages(pieces))
    raw = bytearray(encode(message))
    raw[:4] = struct.pack(">I", draw(st.sampled_from(INTERESTING_U32) | _u32))
    body = stream_bytes(None, messages) + bytes(raw) + draw(st.binary(max_size=32))
    return pieces, body


def split(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length, sorted)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


Outcome = tuple[list[object], str]


def read_stream(chunks: Sequence[bytes], pieces: int | None, *, handshake: bool,
                close: bool) -> Outcome:
    """Feed ``chunks`` to a WireReader, draining after each; the events and how it ended.

    Asserts the memory property of the reader after every drain: what it holds is less than
    one legal message (a peer cannot make it buffer more).
    """
    reader = WireReader(pieces, expect_handshake=handshake)
    events: list[object] = []
    feeds = [chunk for chunk in chunks if chunk]  # b"" would mean end of stream
    if close:
        feeds.append(b"")
    try:
        for chunk in feeds:
            reader.receive_data(chunk)
            while (event := reader.next_event()) is not NEED_DATA:
                events.append(event)
                if event is CLOSED:
                    return events, "closed"
            limit = HANDSHAKE_LENGTH if not reader.handshake_done else 4 + reader.max_length
            assert reader.buffered < limit, (reader.buffered, limit)
    except RemoteProtocolError as exc:
        return events, type(exc).__name__
    return events, "need data"


def check_wire_stream(data: bytes, cuts: Sequence[int], pieces: int | None, *,
                      handshake: bool, close: bool) -> Outcome:
    """Any bytes: messages then NEED_DATA, CLOSED or a RemoteProtocolError, the same whether
    they arrive at once or cut anywhere, within the time and memory bounds."""
    whole = bounded(read_stream, [data], pieces, handshake=handshake, close=close,
                    size=len(data))
    chunked = bounded(read_stream, split(data, cuts), pieces, handshake=handshake, close=close,
                      size=len(data))
    assert whole == chunked
    return whole


def check_wire_round_trip(pieces: int | None, handshake: Handshake, messages: list[Message],
                          cuts: Sequence[int]) -> None:
    """Encoded messages decode to themselves, however the bytes are cut, then CLOSED."""
    data = stream_bytes(handshake, messages)
    events, end = check_wire_stream(data, cuts, pieces, handshake=True, close=True)
    assert (events, end) == ([handshake, *messages, CLOSED], "closed")


# --------------------------------------------------------------------------------------------
# Metainfo

_names = st.text(min_size=1, max_size=16).filter(
    lambda s: "/" not in s and "\\" not in s and "\0" not in s and s not in (".", ".."))
_announces = st.sampled_from([
    "http://127.0.0.1:6969/announce", "https://tracker.example/a?x=1", "http://[::1]:80/",
    "http://h:1/announce",
])


@st.composite
def torrent_documents(draw: st.DrawFn) -> dict[bytes, Any]:
    """A valid single-file torrent as a dictionary, sometimes with keys nobody defined."""
    piece_length = 2 ** draw(st.integers(14, 28))
    count = draw(st.integers(1, 24))
    info: dict[bytes, Any] = {
        b"name": draw(_names).encode(),
        b"length": draw(st.integers((count - 1) * piece_length + 1, count * piece_length)),
        b"piece length": piece_length,
        b"pieces": draw(st.binary(min_size=20 * count, max_size=20 * count)),
    }
    top: dict[bytes, Any] = {b"announce": draw(_announces).encode(), b"info": info}
    extra = st.dictionaries(st.binary(min_size=1, max_size=10), bencode_values, max_size=2)
    top.update({k: v for k, v in draw(extra).items() if k not in top})
    info.update({k: v for k, v in draw(extra).items() if k not in info and k != b"files"})
    return top


torrents = torrent_documents().map(bencode.encode)

HOSTILE_NUMBERS = (0, -1, 1, 2**14 - 1, 2**14, 2**14 + 1, 2**28, 2**29, 2**31, 2**32, 2**63 - 1,
                   2**63, 2**64, MAX_INTEGER, -MAX_INTEGER)
HOSTILE_TEXTS = (
    b"", b".", b"..", b"a/b", b"a\\b", b"a\0b", b"\xff\xfe", b"x" * 300, b"http://[::1",
    b"http://[::1]:99999/", b"http://h\xe2\x84\x80/", b"http://h:port/", b"udp://t:1/",
    b"http://", b"http:///announce", b"//h/announce", b"http://h/\n",
)
TAMPERING: dict[tuple[bytes, ...], tuple[Any, ...]] = {
    # What to put in each field instead of its value: what that field's readers are likeliest
    # to mishandle (tampered_torrents also puts anything at all there).
    (b"announce",): HOSTILE_TEXTS,
    (b"info",): (b"", 0, [], {}),
    (b"info", b"name"): HOSTILE_TEXTS,
    (b"info", b"length"): HOSTILE_NUMBERS,
    (b"info", b"piece length"): HOSTILE_NUMBERS,
    (b"info", b"pieces"): (b"", b"x" * 19, b"x" * 21, b"x" * 40),
    (b"info", b"files"): ([], [{b"length": 1, b"path": [b"a"]}]),
}
DELETE = object()


def tamper(top: dict[bytes, Any], path: tuple[bytes, ...], value: Any) -> bytes:
    """The torrent ``top`` with the field at ``path`` set to ``value`` (or deleted: DELETE)."""
    holder = top if len(path) == 1 else top[b"info"]
    if value is DELETE:
        holder.pop(path[-1], None)
    else:
        holder[path[-1]] = value
    return bencode.encode(top)


@st.composite
def tampered_torrents(draw: st.DrawFn) -> bytes:
    """A valid torrent with one of its fields deleted, retyped or set to a hostile value."""
    top = draw(torrent_documents())
    path = draw(st.sampled_from(sorted(TAMPERING)))
    action = draw(st.sampled_from(["delete", "hostile", "hostile", "any"]))
    if action == "delete":
        return tamper(top, path, DELETE)
    return tamper(top, path, draw(
        st.sampled_from(TAMPERING[path]) if action == "hostile" else bencode_values))


metainfo_inputs = st.one_of(tampered_torrents(), mutated(torrents), bencode_inputs)


def check_metainfo(data: bytes) -> None:
    """A .torrent is read, consistently with its bytes, or refused with one MetainfoError line."""
    try:
        meta = bounded(parse_metainfo, data, size=len(data))
    except MetainfoError as exc:
        assert "\n" not in str(exc), str(exc)
        return
    assert meta.raw == data
    info = bencode.decode(data)[b"info"]  # type: ignore[index,call-overload]
    assert meta.info_hash == hashlib.sha1(bencode.encode(info)).digest()
    assert 0 < meta.length <= MAX_LENGTH and meta.piece_length <= MAX_PIECE_LENGTH
    assert meta.num_pieces == num_pieces(meta.length, meta.piece_length)
    assert sum(meta.piece_size(i) for i in range(meta.num_pieces)) == meta.length
    assert parse_metainfo(meta.raw) == meta


# --------------------------------------------------------------------------------------------
# Tracker queries and peer lists

ANNOUNCE_PARAMS = ("info_hash", "peer_id", "port", "uploaded", "downloaded", "left", "event",
                   "numwant", "compact")
_hostile_param_values = st.one_of(
    st.binary(max_size=24), st.sampled_from(INTERESTING_NUMBERS),
    st.sampled_from([b"started", b"stopped", b"completed", b"empty", b"1", b"0", b"2"]),
    st.binary(min_size=19, max_size=21),
)


def escape(value: bytes, rng: random.Random) -> bytes:
    """Percent-escape as a client might: every byte, or unreserved ones raw, or raw where safe."""
    style = rng.randrange(3)
    if style == 0:
        return quote_from_bytes(value, safe="").encode()
    if style == 1:
        return quote_from_bytes(value).encode()
    return bytes(value)  # raw: '&', '=', '%' and '#' in it make a hostile query


@st.composite
def announce_queries(draw: st.DrawFn) -> bytes:
    rng = draw(st.randoms(use_true_random=False))
    params: list[tuple[bytes, bytes]] = [
        (b"info_hash", draw(st.binary(min_size=20, max_size=20))),
        (b"peer_id", draw(st.binary(min_size=20, max_size=20))),
        (b"port", b"%d" % draw(st.integers(1, 65535))),
        (b"uploaded", b"%d" % draw(st.integers(0, 2**63 - 1))),
        (b"downloaded", b"%d" % draw(st.integers(0, 2**63 - 1))),
        (b"left", b"%d" % draw(st.integers(0, 2**63 - 1))),
        (b"event", draw(st.sampled_from(EVENTS)).encode()),
        (b"numwant", b"%d" % draw(st.integers(-1, 500))),
        (b"compact", draw(st.sampled_from([b"0", b"1"]))),
    ]
    for _ in range(draw(st.integers(0, 3))):  # tamper: drop, replace, repeat, add unknown
        i = rng.randrange(len(params))
        action = rng.randrange(4)
        if action == 0:
            del params[i]
        elif action == 1:
            params[i] = (params[i][0], draw(_hostile_param_values))
        elif action == 2:
            params.insert(0, (params[i][0], draw(_hostile_param_values)))
        else:
            params.append((draw(st.binary(max_size=8)), draw(st.binary(max_size=8))))
        if not params:
            break
    rng.shuffle(params)
    return b"&".join(escape(k, rng) + b"=" + escape(v, rng) for k, v in params)


query_inputs = st.one_of(announce_queries(), mutated(announce_queries()), st.binary(max_size=80))


def check_announce_query(query: bytes) -> None:
    """parse_announce gives a valid Announce or a BadQuery naming one of its parameters."""
    try:
        announce = bounded(parse_announce, query, size=len(query))
    except BadQuery as exc:
        assert exc.param in ANNOUNCE_PARAMS, exc.param
        return
    assert len(announce.info_hash) == 20 and len(announce.peer_id) == 20
    assert 1 <= announce.port <= 65535 and announce.event in EVENTS
    assert min(announce.uploaded, announce.downloaded, announce.left) >= 0


def check_scrape_query(query: bytes) -> None:
    try:
        hashes = bounded(parse_scrape, query, size=len(query))
    except BadQuery as exc:
        assert exc.param == "info_hash"
        return
    assert all(len(h) == 20 for h in hashes)


def check_handle_request(method: bytes, target: bytes) -> None:
    """The tracker answers any request line: 404, 405, or 200 with a bencoded dictionary."""
    swarm = Swarm(None, rng=random.Random(0))
    reply = bounded(handle_request, method, target, client_ip="127.0.0.1", swarm=swarm,
                    now=0.0, size=len(target))
    assert reply.status in (200, 404, 405)
    if reply.status == 200:
        body = bencode.decode(reply.body)
        assert isinstance(body, dict)
        assert b"failure reason" in body or b"peers" in body or b"files" in body


def request_targets(query: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    paths = st.sampled_from([b"/announce", b"/scrape", b"/", b"", b"/announce/x", b"*"])
    return st.builds(lambda p, sep, q: p + sep + q, paths, st.sampled_from([b"?", b"#", b""]),
                     query)


announce_requests = st.builds(
    AnnounceRequest, info_hash=st.binary(min_size=20, max_size=20),
    peer_id=st.binary(min_size=20, max_size=20), port=st.integers(1, 65535),
    uploaded=st.integers(0, 2**63 - 1), downloaded=st.integers(0, 2**63 - 1),
    left=st.integers(0, 2**63 - 1), numwant=st.integers(0, 500), event=st.sampled_from(EVENTS))


def check_announce_round_trip(request: AnnounceRequest) -> None:
    """What the peer's announce_query says, the tracker's parse_announce reads back."""
    announce = parse_announce(announce_query(request).encode())
    assert (announce.info_hash, announce.peer_id, announce.port, announce.uploaded,
            announce.downloaded, announce.left, announce.event, announce.numwant,
            announce.compact) == (request.info_hash, request.peer_id, request.port,
                                  request.uploaded, request.downloaded, request.left,
                                  request.event, request.numwant, True)


peer_addresses = st.builds(
    PeerAddress, peer_id=st.binary(min_size=20, max_size=20),
    ip=st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str),
                 st.sampled_from(["localhost", "", "1.2.3", "256.1.1.1"])),
    port=st.integers(0, 65535))


def check_compact_peers_round_trip(peers: list[PeerAddress]) -> None:
    """BEP 23 compact peer lists: the IPv4 peers come back, in order; others are left out."""
    ipv4 = []
    for p in peers:
        try:
            socket.inet_pton(socket.AF_INET, p.ip)
        except OSError:
            continue
        ipv4.append((p.ip, p.port))
    assert parse_peers(compact_peers(peers)) == ipv4
