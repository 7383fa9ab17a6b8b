"""Sans-I/O codec for the BEP 3 peer wire protocol: bytes in, typed messages out, and back.

Shaped like h11: :class:`WireReader` takes whatever bytes the socket produced
(``receive_data``) and hands back one typed message per ``next_event()`` call, or
:data:`NEED_DATA` when the buffer holds no complete message. :func:`encode` turns a message into
bytes. Nothing here touches a socket or a clock, so every framing edge case is a unit test.

Blame follows the direction of the bytes: a message we construct with bad fields raises
:class:`~peer.errors.LocalProtocolError` (a bug on our side); the same fault in bytes from the
remote raises :class:`~peer.errors.RemoteProtocolError` (close that one connection). A handshake
that is not BitTorrent at all (an encrypted handshake from aria2, an HTTP request) raises the
subclass :class:`NotBitTorrentError`, so the node can close quietly instead of logging loudly.

Hot path: dozens of peer processes share two cores, so the sender writes
``encode_piece_header(...)`` followed by the block it already holds (no ``Piece`` object, no
concatenation), payload-less messages are pre-built constants, and the reader keeps one
``bytearray`` with a read offset that is compacted once per receive, not once per message.
"""

from __future__ import annotations

import enum
import itertools
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal, NoReturn

from peer.config import BLOCK_SIZE
from peer.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "BITFIELD",
    "BLOCK_SIZE",
    "CANCEL",
    "CHOKE",
    "CHOKE_BYTES",
    "CLOSED",
    "HANDSHAKE_LENGTH",
    "HAVE",
    "INTERESTED",
    "INTERESTED_BYTES",
    "KEEPALIVE_BYTES",
    "MAX_UNKNOWN_LENGTH",
    "NEED_DATA",
    "NOT_INTERESTED",
    "NOT_INTERESTED_BYTES",
    "PIECE",
    "PORT",
    "PSTR",
    "REQUEST",
    "UNCHOKE",
    "UNCHOKE_BYTES",
    "Bitfield",
    "Cancel",
    "Choke",
    "Handshake",
    "Have",
    "Interested",
    "KeepAlive",
    "Message",
    "NotBitTorrentError",
    "NotInterested",
    "Piece",
    "Port",
    "Request",
    "Sentinel",
    "Unchoke",
    "Unknown",
    "WireReader",
    "bits_from_flags",
    "bits_from_indices",
    "check_bitfield",
    "encode",
    "encode_piece_header",
    "flags_from_bits",
    "indices_from_bits",
]

# BEP 3 message ids.
CHOKE: Final = 0
UNCHOKE: Final = 1
INTERESTED: Final = 2
NOT_INTERESTED: Final = 3
HAVE: Final = 4
BITFIELD: Final = 5
REQUEST: Final = 6
PIECE: Final = 7
CANCEL: Final = 8
PORT: Final = 9  # BEP 5 (DHT port); parsed so that a malformed one is caught, otherwise ignored

PSTR: Final = b"BitTorrent protocol"
_HANDSHAKE_PREFIX: Final = bytes([len(PSTR)]) + PSTR
HANDSHAKE_LENGTH: Final = 1 + len(PSTR) + 8 + 20 + 20  # 68

# Longest length prefix accepted for an id we do not handle (BEP 6 fast ids 13-17, BEP 10
# extension id 20 ...): a ut_metadata piece is a 16 KiB block plus a small bencoded header.
MAX_UNKNOWN_LENGTH: Final = 9 + BLOCK_SIZE + 1024
# Bitfield cap while the torrent's piece count is unknown: libtorrent's default max_pieces
# (0x200000) pieces, i.e. 256 KiB of bits.
_MAX_BITFIELD_BYTES_UNKNOWN: Final = 0x200000 // 8
_U32_MAX: Final = 2**32 - 1

_LEN = struct.Struct(">I")
_HEAD = struct.Struct(">IB")  # length prefix and id
_HAVE = struct.Struct(">IBI")
_TRIPLE = struct.Struct(">IBIII")  # request and cancel
_PIECE_HEADER = struct.Struct(">IBII")
_PORT = struct.Struct(">IBH")
_II = struct.Struct(">II")
_III = struct.Struct(">III")


# --------------------------------------------------------------------------------------------
# Messages (frozen, slotted, keyword-only; constructors refuse what BEP 3 forbids)


class NotBitTorrentError(RemoteProtocolError):
    """The connection does not start with a BEP 3 handshake at all (byte 0 is not 19 or the
    protocol string differs): most likely an encrypted handshake (aria2 tries one first and falls
    back to plaintext), so close quietly rather than log an error."""


def _check_uint(value: object, what: str, field: str, bits: int = 32) -> None:
    if type(value) is not int or not 0 <= value < (1 << bits):  # bool is not a piece index
        raise LocalProtocolError(
            f"{what}.{field} must be an int in [0, 2**{bits}), got {value!r}"
        )


def _check_block_length(value: object, what: str) -> None:
    if type(value) is not int or not 0 < value <= BLOCK_SIZE:
        raise LocalProtocolError(
            f"{what}.length must be in 1..{BLOCK_SIZE} (BEP 3 block size), got {value!r}"
        )


def _check_bytes(value: object, what: str, field: str, size: int | None = None) -> None:
    if type(value) is not bytes:
        raise LocalProtocolError(f"{what}.{field} must be bytes, got {type(value).__name__}")
    if size is not None and len(value) != size:
        raise LocalProtocolError(f"{what}.{field} must be {size} bytes, got {len(value)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Handshake:
    """BEP 3 handshake: ``<19>"BitTorrent protocol"<reserved 8><info_hash 20><peer_id 20>``.

    ``reserved`` carries extension bits (BEP 10 / BEP 6 / DHT); we send zeros and ignore theirs.
    """

    info_hash: bytes
    peer_id: bytes
    reserved: bytes = bytes(8)

    def __post_init__(self) -> None:
        _check_bytes(self.info_hash, "Handshake", "info_hash", 20)
        _check_bytes(self.peer_id, "Handshake", "peer_id", 20)
        _check_bytes(self.reserved, "Handshake", "reserved", 8)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeepAlive:
    """Length prefix 0, no id."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Choke:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Unchoke:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Interested:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class NotInterested:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Have:
    index: int

    def __post_init__(self) -> None:
        _check_uint(self.index, "Have", "index")


@dataclass(frozen=True, slots=True, kw_only=True)
class Bitfield:
    """High bit of byte 0 is piece 0; spare bits at the end are zero (BEP 3).

    The constructor cannot check the length (it does not know the piece count); build one with
    :meth:`from_indices` or check a received one with :func:`check_bitfield`.
    """

    bits: bytes

    def __post_init__(self) -> None:
        _check_bytes(self.bits, "Bitfield", "bits")

    @classmethod
    def from_indices(cls, indices: Iterable[int], num_pieces: int) -> Bitfield:
        return cls(bits=bits_from_indices(indices, num_pieces))

    def indices(self, num_pieces: int) -> list[int]:
        return indices_from_bits(self.bits, num_pieces)


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    index: int
    begin: int
    length: int

    def __post_init__(self) -> None:
        _check_uint(self.index, "Request", "index")
        _check_uint(self.begin, "Request", "begin")
        _check_block_length(self.length, "Request")


@dataclass(frozen=True, slots=True, kw_only=True)
class Piece:
    """One block of a piece. The hot sender path is :func:`encode_piece_header` + the block."""

    index: int
    begin: int
    block: bytes

    def __post_init__(self) -> None:
        _check_uint(self.index, "Piece", "index")
        _check_uint(self.begin, "Piece", "begin")
        _check_bytes(self.block, "Piece", "block")
        if len(self.block) > BLOCK_SIZE:
            raise LocalProtocolError(
                f"Piece.block must be at most {BLOCK_SIZE} bytes (BEP 3 block size), "
                f"got {len(self.block)}"
            )

    def __repr__(self) -> str:
        # Never dump 16 KiB of payload into a log line or a test failure.
        return f"Piece(index={self.index}, begin={self.begin}, block=<{len(self.block)} bytes>)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancel:
    index: int
    begin: int
    length: int

    def __post_init__(self) -> None:
        _check_uint(self.index, "Cancel", "index")
        _check_uint(self.begin, "Cancel", "begin")
        _check_block_length(self.length, "Cancel")


@dataclass(frozen=True, slots=True, kw_only=True)
class Port:
    """BEP 5: the sender's DHT port. The node ignores it."""

    port: int

    def __post_init__(self) -> None:
        _check_uint(self.port, "Port", "port", bits=16)


@dataclass(frozen=True, slots=True, kw_only=True)
class Unknown:
    """A message whose id we do not handle (BEP 6 fast ids 13-17, BEP 10 extension id 20, ...).

    BEP 3 says to ignore unknown ids; we still frame them so the stream stays in sync.
    """

    msg_id: int
    payload: bytes

    def __post_init__(self) -> None:
        _check_uint(self.msg_id, "Unknown", "msg_id", bits=8)
        if self.msg_id <= PORT:
            raise LocalProtocolError(
                f"Unknown.msg_id {self.msg_id} is a BEP 3 message id; use its own class"
            )
        _check_bytes(self.payload, "Unknown", "payload")
        if 1 + len(self.payload) > MAX_UNKNOWN_LENGTH:
            raise LocalProtocolError(
                f"Unknown.payload must be at most {MAX_UNKNOWN_LENGTH - 1} bytes, "
                f"got {len(self.payload)}"
            )


Message = (
    Handshake | KeepAlive | Choke | Unchoke | Interested | NotInterested | Have | Bitfield
    | Request | Piece | Cancel | Port | Unknown
)


class Sentinel(enum.Enum):
    NEED_DATA = "NEED_DATA"
    """No complete message buffered: feed more bytes with ``receive_data``."""
    CLOSED = "CLOSED"
    """The remote closed (``receive_data(b"")``) and every buffered message has been read."""

    def __repr__(self) -> str:
        return self.value


NEED_DATA: Final = Sentinel.NEED_DATA
CLOSED: Final = Sentinel.CLOSED

# Payload-less messages are immutable, so one instance each serves every decode.
_KEEPALIVE: Final = KeepAlive()
_CHOKE: Final = Choke()
_UNCHOKE: Final = Unchoke()
_INTERESTED: Final = Interested()
_NOT_INTERESTED: Final = NotInterested()


# --------------------------------------------------------------------------------------------
# Encoding

KEEPALIVE_BYTES: Final = b"\x00\x00\x00\x00"
CHOKE_BYTES: Final = b"\x00\x00\x00\x01\x00"
UNCHOKE_BYTES: Final = b"\x00\x00\x00\x01\x01"
INTERESTED_BYTES: Final = b"\x00\x00\x00\x01\x02"
NOT_INTERESTED_BYTES: Final = b"\x00\x00\x00\x01\x03"


def encode_piece_header(index: int, begin: int, length: int) -> bytes:
    """The 13 bytes before a block: ``<9 + length><7><index><begin>``. Write the block after it.

    For the sender's hot loop: no Piece object and no copy of the block.
    """
    if not 0 <= length <= BLOCK_SIZE:
        raise LocalProtocolError(
            f"Piece block length must be in 0..{BLOCK_SIZE} (BEP 3 block size), got {length!r}"
        )
    try:
        return _PIECE_HEADER.pack(9 + length, PIECE, index, begin)
    except struct.error:
        raise LocalProtocolError(
            f"Piece index and begin must be ints in [0, 2**32), got index={index!r}, "
            f"begin={begin!r}"
        ) from None


def _encode_handshake(m: Handshake) -> bytes:
    return b"".join((_HANDSHAKE_PREFIX, m.reserved, m.info_hash, m.peer_id))


def _encode_piece(m: Piece) -> bytes:
    return _PIECE_HEADER.pack(9 + len(m.block), PIECE, m.index, m.begin) + m.block


_ENCODERS: Final[dict[type, Callable[[Any], bytes]]] = {
    Handshake: _encode_handshake,
    KeepAlive: lambda m: KEEPALIVE_BYTES,
    Choke: lambda m: CHOKE_BYTES,
    Unchoke: lambda m: UNCHOKE_BYTES,
    Interested: lambda m: INTERESTED_BYTES,
    NotInterested: lambda m: NOT_INTERESTED_BYTES,
    Have: lambda m: _HAVE.pack(5, HAVE, m.index),
    Bitfield: lambda m: _LEN.pack(1 + len(m.bits)) + bytes((BITFIELD,)) + m.bits,
    Request: lambda m: _TRIPLE.pack(13, REQUEST, m.index, m.begin, m.length),
    Piece: _encode_piece,
    Cancel: lambda m: _TRIPLE.pack(13, CANCEL, m.index, m.begin, m.length),
    Port: lambda m: _PORT.pack(3, PORT, m.port),
    Unknown: lambda m: _LEN.pack(1 + len(m.payload)) + bytes((m.msg_id,)) + m.payload,
}


def encode(message: Message) -> bytes:
    """The wire bytes of ``message`` (fields were validated when it was constructed)."""
    try:
        encoder = _ENCODERS[type(message)]
    except KeyError:
        raise LocalProtocolError(
            f"cannot encode {type(message).__name__}: not a wire message"
        ) from None
    return encoder(message)


# --------------------------------------------------------------------------------------------
# Bitfield helpers (BEP 3: high bit of byte 0 is piece 0, spare bits zero)
#
# Conversions go through Python's arbitrary-precision ints and bytes.translate, so a bitfield of
# thousands of pieces costs a few C-level passes, not a Python loop per bit.

_BIT_CHARS_TO_FLAGS: Final = bytes.maketrans(b"01", b"\x00\x01")
_FLAGS_TO_BIT_CHARS: Final = bytes.maketrans(b"\x00\x01", b"01")


def _bitfield_size(num_pieces: int) -> int:
    return (num_pieces + 7) // 8


def check_bitfield(bits: bytes, num_pieces: int) -> None:
    """Raise RemoteProtocolError unless ``bits`` is a valid bitfield for ``num_pieces`` pieces:
    exactly ceil(num_pieces / 8) bytes with the spare bits zero (BEP 3)."""
    expected = _bitfield_size(num_pieces)
    if len(bits) != expected:
        raise RemoteProtocolError(
            f"Bitfield has {len(bits)} bytes, expected {expected} for {num_pieces} pieces"
        )
    spare = expected * 8 - num_pieces
    if spare and bits[-1] & ((1 << spare) - 1):
        raise RemoteProtocolError(
            f"Bitfield spare bits set: last byte {bits[-1]:#04x} with {num_pieces} pieces"
        )


def flags_from_bits(bits: bytes, num_pieces: int) -> bytearray:
    """``flags[i] == 1`` iff piece i is set. The bitfield came from the remote, so a bad one
    raises RemoteProtocolError."""
    check_bitfield(bits, num_pieces)
    if not bits:
        return bytearray()
    text = bin(int.from_bytes(bits, "big") | (1 << (8 * len(bits))))[3:]  # keep leading zeros
    return bytearray(text[:num_pieces].encode("ascii").translate(_BIT_CHARS_TO_FLAGS))


def indices_from_bits(bits: bytes, num_pieces: int) -> list[int]:
    """Sorted indices of the pieces set in a received bitfield (RemoteProtocolError if bad)."""
    return list(itertools.compress(range(num_pieces), flags_from_bits(bits, num_pieces)))


def bits_from_flags(flags: bytes | bytearray) -> bytes:
    """The bitfield for ``flags`` (one byte per piece, 0 or 1); its length is the piece count."""
    num_pieces = len(flags)
    if not num_pieces:
        return b""
    text = bytes(flags).translate(_FLAGS_TO_BIT_CHARS)
    if text.strip(b"01"):
        raise LocalProtocolError("bitfield flags must be 0 or 1 bytes")
    size = _bitfield_size(num_pieces)
    return (int(text, 2) << (size * 8 - num_pieces)).to_bytes(size, "big")


def bits_from_indices(indices: Iterable[int], num_pieces: int) -> bytes:
    """The bitfield with exactly ``indices`` set, for a torrent of ``num_pieces`` pieces."""
    if type(num_pieces) is not int or num_pieces < 0:
        raise LocalProtocolError(f"num_pieces must be a non-negative int, got {num_pieces!r}")
    flags = bytearray(num_pieces)
    for index in indices:
        if type(index) is not int or not 0 <= index < num_pieces:
            raise LocalProtocolError(
                f"Bitfield piece index {index!r} out of range for {num_pieces} pieces"
            )
        flags[index] = 1
    return bits_from_flags(flags)


# --------------------------------------------------------------------------------------------
# Decoding

# Exact length prefix (id byte + payload) of every fixed-size message (BEP 3, BEP 5 for port).
_FIXED_LENGTH: Final = {
    CHOKE: 1, UNCHOKE: 1, INTERESTED: 1, NOT_INTERESTED: 1,
    HAVE: 5, REQUEST: 13, CANCEL: 13, PORT: 3,
}
_NAMES: Final = {
    CHOKE: "Choke", UNCHOKE: "Unchoke", INTERESTED: "Interested",
    NOT_INTERESTED: "NotInterested", HAVE: "Have", BITFIELD: "Bitfield", REQUEST: "Request",
    PIECE: "Piece", CANCEL: "Cancel", PORT: "Port",
}
_SIMPLE: Final[dict[int, Message]] = {CHOKE: _CHOKE, UNCHOKE: _UNCHOKE, INTERESTED: _INTERESTED,
                  NOT_INTERESTED: _NOT_INTERESTED}
_MAX_PIECE_LENGTH: Final = 9 + BLOCK_SIZE

# Drop consumed bytes from the front of the buffer once this many have piled up (or whenever
# everything was consumed): the copy then costs at most what was parsed, so the total stays
# linear while a reader fed one byte at a time never copies per byte.
_COMPACT_AT: Final = 64 * 1024


class _State(enum.Enum):
    HANDSHAKE = "awaiting handshake"
    MESSAGES = "messages"
    ERROR = "error"


class WireReader:
    """Turns the bytes a remote peer sends into messages (h11's receive_data/next_event shape).

    ``num_pieces`` may be None until the torrent is known; while it is, bitfields are checked
    only against a generous cap and piece indices not at all. Set ``reader.num_pieces`` later to
    make the checks exact. After any error the reader stays failed: every further ``next_event``
    raises.
    """

    __slots__ = ("_buf", "_eof", "_error", "_max_length", "_num_pieces", "_pos", "_state")

    def __init__(self, num_pieces: int | None, expect_handshake: bool = True) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._eof = False
        self._error: RemoteProtocolError | None = None
        self._state = _State.HANDSHAKE if expect_handshake else _State.MESSAGES
        self._num_pieces: int | None = None
        self._max_length = 0
        self.num_pieces = num_pieces

    @property
    def num_pieces(self) -> int | None:
        return self._num_pieces

    @num_pieces.setter
    def num_pieces(self, value: int | None) -> None:
        if value is not None and (type(value) is not int or value < 0):
            raise LocalProtocolError(f"num_pieces must be None or an int >= 0, got {value!r}")
        self._num_pieces = value
        bitfield_bytes = (
            _MAX_BITFIELD_BYTES_UNKNOWN if value is None else _bitfield_size(value)
        )
        # The longest legal length prefix: anything above it is refused on sight.
        self._max_length = max(_MAX_PIECE_LENGTH, 1 + bitfield_bytes, MAX_UNKNOWN_LENGTH)

    @property
    def max_length(self) -> int:
        """The largest length prefix this reader accepts."""
        return self._max_length

    @property
    def handshake_done(self) -> bool:
        return self._state is _State.MESSAGES

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as messages."""
        return len(self._buf) - self._pos

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes from the remote; ``b""`` means it closed the connection (end of stream)."""
        if self._eof:
            raise LocalProtocolError("WireReader.receive_data called after end of stream (b'')")
        if not data:
            self._eof = True
            return
        pos = self._pos
        if pos and (pos >= _COMPACT_AT or pos == len(self._buf)):
            del self._buf[:pos]
            self._pos = 0
        self._buf += data

    def next_event(self) -> Message | Literal[Sentinel.NEED_DATA, Sentinel.CLOSED]:
        """The next complete message, NEED_DATA, or CLOSED after the end of stream.

        Raises RemoteProtocolError (or NotBitTorrentError) on malformed input, and again on
        every later call.
        """
        if self._state is not _State.MESSAGES:
            if self._state is _State.ERROR:
                assert self._error is not None
                raise type(self._error)(f"wire reader already failed: {self._error}")
            return self._next_handshake()
        try:
            return self._next_message()
        except LocalProtocolError as exc:
            # The checks below should leave no constructor anything to refuse; should one slip
            # through, the bytes still came from the remote, so the remote is to blame.
            self._fail(f"{exc} (received from the remote)")

    def _next_message(self) -> Message | Literal[Sentinel.NEED_DATA, Sentinel.CLOSED]:
        buf = self._buf
        pos = self._pos
        avail = len(buf) - pos
        if avail < 5:
            if avail < 4:
                return self._need_data(avail, None)
            length = _LEN.unpack_from(buf, pos)[0]
            if length == 0:
                self._pos = pos + 4
                return _KEEPALIVE
            if length > self._max_length:
                self._fail_oversized(length, None)
            return self._need_data(avail, None)
        length, msg_id = _HEAD.unpack_from(buf, pos)
        if length == 0:
            self._pos = pos + 4
            return _KEEPALIVE
        # Check the length against the id before buffering the body: a peer must not be able to
        # make us hold more than one legal message.
        if msg_id == PIECE:
            if not 9 <= length <= _MAX_PIECE_LENGTH:
                self._fail_length(msg_id, length)
            end = pos + 4 + length
            if len(buf) < end:
                return self._need_data(avail, msg_id)
            index, begin = _II.unpack_from(buf, pos + 5)
            self._check_index(index, msg_id)
            self._pos = end
            return Piece(index=index, begin=begin, block=bytes(buf[pos + 13:end]))
        fixed = _FIXED_LENGTH.get(msg_id)
        if fixed is not None:
            if length != fixed:
                self._fail_length(msg_id, length)
        elif msg_id == BITFIELD:
            if self._num_pieces is None:
                if length > self._max_length:
                    self._fail_oversized(length, msg_id)
            elif length != 1 + _bitfield_size(self._num_pieces):
                self._fail_length(msg_id, length)
        elif length > MAX_UNKNOWN_LENGTH:
            self._fail_oversized(length, msg_id)
        end = pos + 4 + length
        if len(buf) < end:
            return self._need_data(avail, msg_id)
        self._pos = end
        simple = _SIMPLE.get(msg_id)
        if simple is not None:
            return simple
        if msg_id in (REQUEST, CANCEL):
            index, begin, block_length = _III.unpack_from(buf, pos + 5)
            self._check_index(index, msg_id)
            if not 0 < block_length <= BLOCK_SIZE:
                self._fail(
                    f"{_NAMES[msg_id]}.length {block_length} out of range 1..{BLOCK_SIZE} "
                    f"(BEP 3 block size)"
                )
            cls = Request if msg_id == REQUEST else Cancel
            return cls(index=index, begin=begin, length=block_length)
        if msg_id == HAVE:
            index = _LEN.unpack_from(buf, pos + 5)[0]
            self._check_index(index, msg_id)
            return Have(index=index)
        if msg_id == BITFIELD:
            bits = bytes(buf[pos + 5:end])
            if self._num_pieces is not None:
                try:
                    check_bitfield(bits, self._num_pieces)
                except RemoteProtocolError as exc:
                    self._fail(str(exc))
            return Bitfield(bits=bits)
        if msg_id == PORT:
            return Port(port=_PORT.unpack_from(buf, pos)[2])
        return Unknown(msg_id=msg_id, payload=bytes(buf[pos + 5:end]))

    # -- helpers ------------------------------------------------------------------------------

    def _next_handshake(self) -> Handshake | Literal[Sentinel.NEED_DATA, Sentinel.CLOSED]:
        buf = self._buf
        pos = self._pos
        avail = len(buf) - pos
        # Compare whatever prefix has arrived: an encrypted handshake (random bytes) is refused
        # on its first byte, without waiting for 68 bytes that may never come.
        seen = min(avail, len(_HANDSHAKE_PREFIX))
        if buf[pos:pos + seen] != _HANDSHAKE_PREFIX[:seen]:
            if buf[pos] != len(PSTR):
                what = f"first byte {buf[pos]} is not 19"
            else:
                what = f"protocol string {bytes(buf[pos + 1:pos + seen])!r} is not {PSTR!r}"
            self._fail(f"Handshake: not a BitTorrent handshake: {what}", NotBitTorrentError)
        if avail < HANDSHAKE_LENGTH:
            return self._need_data(avail, "Handshake")
        start = pos + len(_HANDSHAKE_PREFIX)
        self._pos = pos + HANDSHAKE_LENGTH
        self._state = _State.MESSAGES
        return Handshake(
            reserved=bytes(buf[start:start + 8]),
            info_hash=bytes(buf[start + 8:start + 28]),
            peer_id=bytes(buf[start + 28:start + 48]),
        )

    def _need_data(
        self, avail: int, what: int | str | None
    ) -> Literal[Sentinel.NEED_DATA, Sentinel.CLOSED]:
        if not self._eof:
            return NEED_DATA
        if avail == 0:
            return CLOSED
        name = _NAMES.get(what, f"id {what}") if isinstance(what, int) else what or "message"
        self._fail(f"connection closed in the middle of a {name} message ({avail} bytes buffered)")

    def _check_index(self, index: int, msg_id: int) -> None:
        if self._num_pieces is not None and index >= self._num_pieces:
            self._fail(
                f"{_NAMES[msg_id]}.index {index} out of range for {self._num_pieces} pieces"
            )

    def _fail_length(self, msg_id: int, length: int) -> NoReturn:
        if msg_id == PIECE:
            expected = f"9..{_MAX_PIECE_LENGTH} (block at most {BLOCK_SIZE} bytes)"
        elif msg_id == BITFIELD:
            expected = f"{1 + _bitfield_size(self._num_pieces or 0)} for {self._num_pieces} pieces"
        else:
            expected = str(_FIXED_LENGTH[msg_id])
        self._fail(f"{_NAMES[msg_id]} message with length {length}, expected {expected}")

    def _fail_oversized(self, length: int, msg_id: int | None) -> NoReturn:
        name = "message" if msg_id is None else f"{_NAMES.get(msg_id, f'id {msg_id}')} message"
        limit = self._max_length if msg_id is None or msg_id == BITFIELD else MAX_UNKNOWN_LENGTH
        self._fail(f"{name} length prefix {length} exceeds the largest legal message ({limit})")

    def _fail(self, message: str, cls: type[RemoteProtocolError] = RemoteProtocolError) -> NoReturn:
        self._state = _State.ERROR
        self._error = cls(message)
        raise self._error

