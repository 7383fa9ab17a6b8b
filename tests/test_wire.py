"""The BEP 3 peer-wire codec (peer/wire.py): round trips, framing at every split, bad input."""

from __future__ import annotations

import random
import struct

import pytest

from peer.errors import LocalProtocolError, RemoteProtocolError
from peer.wire import (
    BLOCK_SIZE,
    CHOKE_BYTES,
    CLOSED,
    HANDSHAKE_LENGTH,
    INTERESTED_BYTES,
    KEEPALIVE_BYTES,
    MAX_UNKNOWN_LENGTH,
    NEED_DATA,
    NOT_INTERESTED_BYTES,
    UNCHOKE_BYTES,
    Bitfield,
    Cancel,
    Choke,
    Handshake,
    Have,
    Interested,
    KeepAlive,
    NotBitTorrentError,
    NotInterested,
    Piece,
    Port,
    Request,
    Unchoke,
    Unknown,
    WireReader,
    bits_from_flags,
    bits_from_indices,
    check_bitfield,
    encode,
    encode_piece_header,
    flags_from_bits,
    indices_from_bits,
)

INFO_HASH = bytes(range(20))
PEER_ID = b"-TB0100-000000000007"
HANDSHAKE = Handshake(info_hash=INFO_HASH, peer_id=PEER_ID)
NUM_PIECES = 21  # 3 bitfield bytes, 3 spare bits


def frame(msg_id: int, payload: bytes = b"", length: int | None = None) -> bytes:
    """A raw message, with a length prefix that may lie."""
    if length is None:
        length = 1 + len(payload)
    return struct.pack(">IB", length, msg_id) + payload


def drain(reader: WireReader) -> list[object]:
    events = []
    while (event := reader.next_event()) is not NEED_DATA:
        events.append(event)
        if event is CLOSED:
            break
    return events


def decode_all(data: bytes, num_pieces: int | None = NUM_PIECES, handshake: bool = False):
    reader = WireReader(num_pieces, expect_handshake=handshake)
    reader.receive_data(data)
    return drain(reader)


# A bit of everything, with short blocks so that splitting at every byte stays cheap.
MESSAGES = [
    KeepAlive(),
    Choke(),
    Unchoke(),
    Interested(),
    NotInterested(),
    Have(index=0),
    Have(index=NUM_PIECES - 1),
    Bitfield(bits=bits_from_indices([0, 5, 20], NUM_PIECES)),
    Request(index=3, begin=0, length=BLOCK_SIZE),
    Request(index=20, begin=2**32 - 1, length=1),
    Piece(index=2, begin=16384, block=b"block-bytes" * 3),
    Piece(index=2, begin=0, block=b""),
    Cancel(index=3, begin=0, length=BLOCK_SIZE),
    Port(port=6881),
    Port(port=0),
    Unknown(msg_id=14, payload=b""),  # BEP 6 have-all
    Unknown(msg_id=20, payload=b"\x00d1:md11:ut_metadatai3eee"),  # BEP 10 extension handshake
    Unknown(msg_id=255, payload=b"x" * 100),
]


# -------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("message", MESSAGES, ids=repr)
def test_every_message_round_trips(message):
    assert decode_all(encode(message)) == [message]


def test_handshake_round_trips_with_reserved_bits():
    reserved = b"\x00\x00\x00\x00\x00\x10\x00\x05"  # BEP 10 and fast extension bits
    hs = Handshake(info_hash=INFO_HASH, peer_id=PEER_ID, reserved=reserved)
    data = encode(hs)
    assert len(data) == HANDSHAKE_LENGTH == 68
    assert data[:20] == b"\x13BitTorrent protocol"
    assert decode_all(data, handshake=True) == [hs]
    assert HANDSHAKE.reserved == bytes(8)


def test_full_size_piece_round_trips_and_header_fast_path_matches():
    block = random.Random(1).randbytes(BLOCK_SIZE)
    piece = Piece(index=7, begin=3 * BLOCK_SIZE, block=block)
    header = encode_piece_header(7, 3 * BLOCK_SIZE, len(block))
    assert len(header) == 13
    assert header == struct.pack(">IBII", 9 + BLOCK_SIZE, 7, 7, 3 * BLOCK_SIZE)
    assert header + block == encode(piece)
    assert decode_all(header + block) == [piece]


def test_prebuilt_constants_are_the_encodings():
    assert encode(KeepAlive()) == KEEPALIVE_BYTES == b"\0\0\0\0"
    assert encode(Choke()) == CHOKE_BYTES == b"\0\0\0\1\0"
    assert encode(Unchoke()) == UNCHOKE_BYTES == b"\0\0\0\1\1"
    assert encode(Interested()) == INTERESTED_BYTES == b"\0\0\0\1\2"
    assert encode(NotInterested()) == NOT_INTERESTED_BYTES == b"\0\0\0\1\3"


def test_known_encodings_from_bep3():
    assert encode(Have(index=258)) == b"\0\0\0\5\4\0\0\1\2"
    assert encode(Request(index=1, begin=2, length=3)) == frame(6, struct.pack(">III", 1, 2, 3))
    assert encode(Cancel(index=1, begin=2, length=3)) == frame(8, struct.pack(">III", 1, 2, 3))
    assert encode(Port(port=6881)) == b"\0\0\0\3\x09\x1a\xe1"
    assert encode(Bitfield(bits=b"\x80\x40")) == b"\0\0\0\3\5\x80\x40"
    assert encode(Unknown(msg_id=20, payload=b"ab")) == b"\0\0\0\3\x14ab"


def test_piece_repr_hides_the_block():
    assert repr(Piece(index=1, begin=0, block=bytes(BLOCK_SIZE))) == (
        "Piece(index=1, begin=0, block=<16384 bytes>)"
    )


# -------------------------------------------------------------------------------------------
# Framing: any split of the stream gives the same messages


STREAM = encode(HANDSHAKE) + b"".join(encode(m) for m in MESSAGES)
EXPECTED = [HANDSHAKE, *MESSAGES]


def test_whole_stream_decodes():
    assert decode_all(STREAM, handshake=True) == EXPECTED


def test_every_two_part_split_decodes_identically():
    for cut in range(1, len(STREAM)):  # both parts non-empty: b"" means end of stream
        reader = WireReader(NUM_PIECES)
        reader.receive_data(STREAM[:cut])
        events = drain(reader)
        reader.receive_data(STREAM[cut:])
        events += drain(reader)
        reader.receive_data(b"")
        assert events + drain(reader) == [*EXPECTED, CLOSED], f"split at byte {cut}"


def test_byte_by_byte_decodes_identically_then_closes():
    reader = WireReader(NUM_PIECES)
    events = []
    for i in range(len(STREAM)):
        reader.receive_data(STREAM[i:i + 1])
        events += drain(reader)
    reader.receive_data(b"")
    assert events == EXPECTED
    assert reader.next_event() is CLOSED
    assert reader.buffered == 0


def test_full_size_pieces_byte_by_byte():
    pieces = [Piece(index=i, begin=0, block=bytes([i]) * BLOCK_SIZE) for i in range(2)]
    data = b"".join(map(encode, pieces))
    reader = WireReader(NUM_PIECES, expect_handshake=False)
    events = []
    for i in range(len(data)):
        reader.receive_data(data[i:i + 1])
        events += drain(reader)
    assert events == pieces


def test_many_messages_in_one_receive_and_buffer_compacts():
    block = bytes(BLOCK_SIZE)
    one = encode(Piece(index=1, begin=0, block=block)) + KEEPALIVE_BYTES + encode(Have(index=3))
    data = one * 50
    reader = WireReader(NUM_PIECES, expect_handshake=False)
    count = 0
    for start in range(0, len(data), 64 * 1024):
        reader.receive_data(data[start:start + 64 * 1024])
        count += len(drain(reader))
        # Consumed bytes are dropped on the next receive: the buffer never holds the stream.
        assert len(reader._buf) <= 2 * 64 * 1024 + 9 + BLOCK_SIZE
    assert count == 150
    assert reader.buffered == 0


def test_keepalives_anywhere():
    data = KEEPALIVE_BYTES * 3 + CHOKE_BYTES + KEEPALIVE_BYTES + encode(Have(index=1))
    assert decode_all(data) == [KeepAlive()] * 3 + [Choke(), KeepAlive(), Have(index=1)]
    # A keep-alive is complete with its 4 bytes; no id byte is awaited.
    reader = WireReader(None, expect_handshake=False)
    reader.receive_data(KEEPALIVE_BYTES)
    assert reader.next_event() == KeepAlive()
    assert reader.next_event() is NEED_DATA


@pytest.mark.parametrize("msg_id", [10, 13, 14, 15, 16, 17, 20, 255])
def test_unknown_ids_come_out_as_unknown(msg_id):
    data = frame(msg_id, b"payload") + frame(msg_id) + CHOKE_BYTES
    assert decode_all(data) == [
        Unknown(msg_id=msg_id, payload=b"payload"),
        Unknown(msg_id=msg_id, payload=b""),
        Choke(),
    ]


def test_unknown_message_up_to_the_allowance_is_accepted():
    payload = bytes(MAX_UNKNOWN_LENGTH - 1)
    assert decode_all(frame(20, payload)) == [Unknown(msg_id=20, payload=payload)]
    assert MAX_UNKNOWN_LENGTH == 9 + BLOCK_SIZE + 1024


def test_bitfield_accepted_again_later():
    # aria2 re-sends whole bitfields instead of have messages (docs/real-clients.md).
    b1 = Bitfield.from_indices([0], NUM_PIECES)
    b2 = Bitfield.from_indices([0, 1], NUM_PIECES)
    assert decode_all(encode(b1) + CHOKE_BYTES + encode(b2)) == [b1, Choke(), b2]


# -------------------------------------------------------------------------------------------
# Malformed input from the remote


def _triple(msg_id: int, index: int = 0, begin: int = 0, length: int = BLOCK_SIZE) -> bytes:
    return frame(msg_id, struct.pack(">III", index, begin, length))


MALFORMED = {
    "choke length 2": (frame(0, b"x"), "Choke message with length 2"),
    "unchoke length 5": (frame(1, b"xxxx"), "Unchoke message with length 5"),
    "interested length 2": (frame(2, b"x"), "Interested message with length 2"),
    "not interested length 3": (frame(3, b"xx"), "NotInterested message with length 3"),
    "have length 1": (frame(4), "Have message with length 1"),
    "have length 4": (frame(4, b"xxx"), "Have message with length 4"),
    "have length 6": (frame(4, b"xxxxx"), "Have message with length 6"),
    "request length 12": (frame(6, bytes(11)), "Request message with length 12"),
    "request length 14": (frame(6, bytes(13)), "Request message with length 14"),
    "cancel length 12": (frame(8, bytes(11)), "Cancel message with length 12"),
    "cancel length 17": (frame(8, bytes(16)), "Cancel message with length 17"),
    "port length 2": (frame(9, b"x"), "Port message with length 2"),
    "port length 4": (frame(9, b"xxx"), "Port message with length 4"),
    "piece length 8": (frame(7, bytes(7)), "Piece message with length 8"),
    "piece length 1": (frame(7), "Piece message with length 1"),
    "piece with 20 KiB block": (frame(7, bytes(8 + 20 * 1024)), "Piece message with length 20489"),
    "piece one byte too long": (frame(7, bytes(8 + BLOCK_SIZE + 1)), "Piece message with length"),
    "request for 32 KiB": (_triple(6, length=32 * 1024), "Request.length 32768"),
    "request for 16 KiB + 1": (_triple(6, length=BLOCK_SIZE + 1), "Request.length 16385"),
    "request for 0 bytes": (_triple(6, length=0), "Request.length 0"),
    "cancel for 32 KiB": (_triple(8, length=32 * 1024), "Cancel.length 32768"),
    "have index out of range": (frame(4, struct.pack(">I", NUM_PIECES)), "Have.index 21"),
    "request index out of range": (_triple(6, index=NUM_PIECES), "Request.index 21"),
    "cancel index out of range": (_triple(8, index=2**32 - 1), "Cancel.index 4294967295"),
    "piece index out of range": (frame(7, struct.pack(">II", NUM_PIECES, 0) + b"x"), "Piece.index"),
    "bitfield too short": (frame(5, b"\xff\xff"), "Bitfield message with length 3, expected 4"),
    "bitfield too long": (frame(5, bytes(4)), "Bitfield message with length 5, expected 4"),
    "bitfield empty": (frame(5), "Bitfield message with length 1"),
    "bitfield spare bit set": (frame(5, b"\xff\xff\xf9"), "spare bits"),
    "bitfield last spare bit set": (frame(5, b"\x00\x00\x01"), "spare bits"),
    "length prefix 2**31": (struct.pack(">I", 2**31), "length (prefix )?2147483648"),
    "length prefix 2**32-1": (struct.pack(">I", 2**32 - 1) + b"\x07", "Piece message with length"),
    "unknown id over the allowance": (
        frame(20, length=MAX_UNKNOWN_LENGTH + 1),
        "id 20 message length prefix 17418",
    ),
    "bitfield length prefix 2**31": (frame(5, length=2**31), "Bitfield message with length"),
    "have length prefix 2**31": (frame(4, length=2**31), "Have message with length 2147483648,"),
}


@pytest.mark.parametrize(("data", "match"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_message_raises_remote_error_and_stays_failed(data, match):
    reader = WireReader(NUM_PIECES, expect_handshake=False)
    reader.receive_data(CHOKE_BYTES + data + UNCHOKE_BYTES)
    assert reader.next_event() == Choke()
    with pytest.raises(RemoteProtocolError, match=match) as info:
        reader.next_event()
    assert not isinstance(info.value, NotBitTorrentError)
    # No way back to a good state: the connection is to be closed.
    with pytest.raises(RemoteProtocolError, match="already failed"):
        reader.next_event()
    reader.receive_data(UNCHOKE_BYTES)
    with pytest.raises(RemoteProtocolError):
        reader.next_event()


@pytest.mark.parametrize("prefix", [2**31, 2**32 - 1, 10**6, 9 + BLOCK_SIZE + 1024 + 1])
def test_over_long_length_prefix_refused_before_the_body(prefix):
    reader = WireReader(NUM_PIECES, expect_handshake=False)
    reader.receive_data(struct.pack(">I", prefix))  # the 4 prefix bytes and nothing else
    with pytest.raises(RemoteProtocolError, match=f"length prefix {prefix} exceeds"):
        reader.next_event()


@pytest.mark.parametrize(
    ("msg_id", "length"), [(0, 1000), (4, 6), (6, 2**20), (7, 9 + BLOCK_SIZE + 1), (5, 5)]
)
def test_wrong_length_refused_as_soon_as_the_id_is_known(msg_id, length):
    reader = WireReader(NUM_PIECES, expect_handshake=False)
    reader.receive_data(struct.pack(">IB", length, msg_id))  # header only, no payload
    with pytest.raises(RemoteProtocolError, match=f"length {length}"):
        reader.next_event()


def test_largest_legal_prefix_follows_num_pieces():
    reader = WireReader(None, expect_handshake=False)
    assert reader.max_length == max(9 + BLOCK_SIZE, MAX_UNKNOWN_LENGTH, 1 + 2**21 // 8)
    reader.num_pieces = 8
    assert reader.max_length == MAX_UNKNOWN_LENGTH
    reader.num_pieces = 800_000  # 100 000 bytes of bitfield
    assert reader.max_length == 100_001
    bits = bits_from_indices([0, 799_999], 800_000)
    reader.receive_data(encode(Bitfield(bits=bits)))
    assert reader.next_event() == Bitfield(bits=bits)


def test_bitfield_unchecked_until_num_pieces_is_known():
    reader = WireReader(None, expect_handshake=False)
    reader.receive_data(frame(5, b"\xff\xff"))
    assert reader.next_event() == Bitfield(bits=b"\xff\xff")
    reader.num_pieces = NUM_PIECES
    reader.receive_data(frame(5, b"\xff\xff"))
    with pytest.raises(RemoteProtocolError, match="Bitfield message with length 3"):
        reader.next_event()


def test_bitfield_cap_while_num_pieces_unknown():
    reader = WireReader(None, expect_handshake=False)
    reader.receive_data(struct.pack(">IB", 1 + 2**21 // 8 + 1, 5))
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        reader.next_event()


def test_end_of_stream_in_the_middle_of_a_message():
    reader = WireReader(NUM_PIECES, expect_handshake=False)
    reader.receive_data(CHOKE_BYTES + encode(Have(index=1))[:-1])
    reader.receive_data(b"")
    assert reader.next_event() == Choke()
    with pytest.raises(RemoteProtocolError, match="closed in the middle of a Have message"):
        reader.next_event()


def test_end_of_stream_in_the_middle_of_the_handshake():
    reader = WireReader(NUM_PIECES)
    reader.receive_data(encode(HANDSHAKE)[:30])
    assert reader.next_event() is NEED_DATA
    reader.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="middle of a Handshake"):
        reader.next_event()


def test_receive_after_end_of_stream_is_our_bug():
    reader = WireReader(NUM_PIECES)
    reader.receive_data(b"")
    assert reader.next_event() is CLOSED
    with pytest.raises(LocalProtocolError):
        reader.receive_data(b"x")


def test_garbage_never_escapes_as_another_exception():
    rng = random.Random(3)
    for trial in range(3000):
        data = bytes(rng.choice((0, 1, 5, 7, 9, 13, 20, 255)) for _ in range(rng.randrange(40)))
        reader = WireReader(rng.choice((None, 3, NUM_PIECES)), expect_handshake=trial % 10 == 0)
        if data:
            reader.receive_data(data)
        reader.receive_data(b"")
        try:
            while reader.next_event() is not CLOSED:
                pass
        except RemoteProtocolError:
            pass


# -------------------------------------------------------------------------------------------
# Handshake


def test_handshake_must_come_first():
    reader = WireReader(NUM_PIECES)
    assert not reader.handshake_done
    reader.receive_data(encode(HANDSHAKE) + CHOKE_BYTES)
    assert reader.next_event() == HANDSHAKE
    assert reader.handshake_done
    assert reader.next_event() == Choke()


@pytest.mark.parametrize("first", [0, 18, 20, 0x16, 0xFF])
def test_non_19_first_byte_is_not_bittorrent_and_fails_at_once(first):
    reader = WireReader(NUM_PIECES)
    reader.receive_data(bytes([first]))  # e.g. the first byte of aria2's encrypted handshake
    with pytest.raises(NotBitTorrentError, match=f"first byte {first} is not 19"):
        reader.next_event()
    with pytest.raises(NotBitTorrentError):
        reader.next_event()


def test_bad_protocol_string_is_not_bittorrent():
    data = b"\x13BitTorrent protocoX" + bytes(48)
    reader = WireReader(NUM_PIECES)
    reader.receive_data(data[:5])
    assert reader.next_event() is NEED_DATA  # so far it matches
    reader.receive_data(data[5:])
    with pytest.raises(NotBitTorrentError, match="protocol string") as info:
        reader.next_event()
    assert isinstance(info.value, RemoteProtocolError)


def test_message_where_the_handshake_belongs_is_refused():
    with pytest.raises(NotBitTorrentError):
        decode_all(CHOKE_BYTES + encode(HANDSHAKE), handshake=True)


def test_handshake_bytes_after_the_handshake_are_a_message_error():
    # A second handshake is framed as a message: its length prefix 0x13426974 is far too long.
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        decode_all(encode(HANDSHAKE) * 2, handshake=True)


# -------------------------------------------------------------------------------------------
# Constructors refuse what BEP 3 forbids (our bug, so LocalProtocolError)


BAD_CONSTRUCTIONS = {
    "request 32 KiB": (lambda: Request(index=0, begin=0, length=32 * 1024), "Request.length"),
    "request 0": (lambda: Request(index=0, begin=0, length=0), "Request.length"),
    "request negative": (lambda: Request(index=0, begin=0, length=-1), "Request.length"),
    "request bool": (lambda: Request(index=0, begin=0, length=True), "Request.length"),
    "request index -1": (lambda: Request(index=-1, begin=0, length=1), "Request.index"),
    "request begin 2**32": (lambda: Request(index=0, begin=2**32, length=1), "Request.begin"),
    "cancel 16 KiB + 1": (lambda: Cancel(index=0, begin=0, length=BLOCK_SIZE + 1), "Cancel.length"),
    "piece 20 KiB": (lambda: Piece(index=0, begin=0, block=bytes(20 * 1024)), "Piece.block"),
    "piece bytearray": (lambda: Piece(index=0, begin=0, block=bytearray(3)), "Piece.block"),
    "have float": (lambda: Have(index=1.0), "Have.index"),
    "port 65536": (lambda: Port(port=65536), "Port.port"),
    "handshake short info_hash": (
        lambda: Handshake(info_hash=bytes(19), peer_id=PEER_ID), "Handshake.info_hash"),
    "handshake str peer_id": (
        lambda: Handshake(info_hash=INFO_HASH, peer_id="x" * 20), "Handshake.peer_id"),
    "handshake long reserved": (
        lambda: Handshake(info_hash=INFO_HASH, peer_id=PEER_ID, reserved=bytes(9)),
        "Handshake.reserved"),
    "bitfield str": (lambda: Bitfield(bits="\xff"), "Bitfield.bits"),
    "unknown with a BEP 3 id": (lambda: Unknown(msg_id=7, payload=b""), "Unknown.msg_id 7"),
    "unknown id 256": (lambda: Unknown(msg_id=256, payload=b""), "Unknown.msg_id"),
    "unknown too long": (
        lambda: Unknown(msg_id=20, payload=bytes(MAX_UNKNOWN_LENGTH)), "Unknown.payload"),
    "piece header 16 KiB + 1": (lambda: encode_piece_header(0, 0, BLOCK_SIZE + 1), "length"),
    "piece header index -1": (lambda: encode_piece_header(-1, 0, 1), "index"),
    "encode a non-message": (lambda: encode(b"\0\0\0\0"), "cannot encode bytes"),
}


@pytest.mark.parametrize(
    ("make", "match"), BAD_CONSTRUCTIONS.values(), ids=BAD_CONSTRUCTIONS.keys()
)
def test_bad_construction_raises_local_error(make, match):
    with pytest.raises(LocalProtocolError, match=match):
        make()


def test_messages_are_frozen_keyword_only_and_hashable():
    with pytest.raises(TypeError):
        Have(3)  # type: ignore[misc]
    have = Have(index=3)
    with pytest.raises(AttributeError):
        have.index = 4  # type: ignore[misc]
    assert {Have(index=3), have} == {have}
    assert not hasattr(have, "__dict__")


# -------------------------------------------------------------------------------------------
# Bitfield helpers


def test_bitfield_layout_is_high_bit_first():
    assert bits_from_indices([0, 9], 10) == b"\x80\x40"
    assert bits_from_indices([7], 8) == b"\x01"
    assert bits_from_indices(range(9), 9) == b"\xff\x80"
    assert bits_from_indices([], 3) == b"\x00"
    assert bits_from_indices([], 0) == b""
    assert indices_from_bits(b"\x80\x40", 10) == [0, 9]
    assert flags_from_bits(b"\xa0", 3) == bytearray(b"\x01\x00\x01")
    assert bits_from_flags(b"\x01\x00\x01") == b"\xa0"


@pytest.mark.parametrize("num_pieces", [1, 7, 8, 9, 15, 16, 17, 1000, 4099])
def test_bitfield_helpers_round_trip(num_pieces):
    rng = random.Random(num_pieces)
    for _ in range(5):
        chosen = sorted(rng.sample(range(num_pieces), rng.randrange(num_pieces + 1)))
        bits = bits_from_indices(chosen, num_pieces)
        check_bitfield(bits, num_pieces)
        assert len(bits) == (num_pieces + 7) // 8
        assert indices_from_bits(bits, num_pieces) == chosen
        flags = flags_from_bits(bits, num_pieces)
        assert [i for i, f in enumerate(flags) if f] == chosen
        assert bits_from_flags(flags) == bits
        assert Bitfield.from_indices(chosen, num_pieces).indices(num_pieces) == chosen


def test_bitfield_helpers_refuse_bad_input():
    with pytest.raises(LocalProtocolError, match="index 10 out of range"):
        bits_from_indices([10], 10)
    with pytest.raises(LocalProtocolError, match="index -1"):
        bits_from_indices([-1], 10)
    with pytest.raises(LocalProtocolError, match="0 or 1"):
        bits_from_flags(b"\x00\x02")
    # Bits to decode came from the remote: blame it.
    with pytest.raises(RemoteProtocolError, match="expected 2 for 10 pieces"):
        indices_from_bits(b"\x80", 10)
    with pytest.raises(RemoteProtocolError, match="spare bits"):
        indices_from_bits(b"\x80\x20", 10)
