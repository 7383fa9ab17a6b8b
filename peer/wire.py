"""Sans-I/O codec for the BEP 3 peer wire protocol: bytes in, typed messages out, and back.

Shaped like h11: :class:`WireReader` takes whatever bytes the socket produced
(``receive_data``) and hands back one typed message per ``next_event()`` call, or
:data:`NEED_DATA` when the buffer holds no complete message. :func:`encode` turns a message into
bytes. Nothing here touches a socket or a clock, so every framing edge case is a unit test.
The message types and the bitfield format are defined in ``peer.messages`` and re-exported
here, so ``wire.Have`` and ``wire.bits_from_flags`` are the names to use.

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
import struct
from collections.abc import Callable
from typing import Any, Final, Literal, NoReturn

from peer.config import BLOCK_SIZE
from peer.errors import LocalProtocolError, RemoteProtocolError
from peer.messages import (
    BITFIELD,
    CANCEL,
    CHOKE,
    CLOSED,
    HANDSHAKE_LENGTH,
    HAVE,
    INTERESTED,
    MAX_UNKNOWN_LENGTH,
    NEED_DATA,
    NOT_INTERESTED,
    PIECE,
    PORT,
    PSTR,
    REQUEST,
    UNCHOKE,
    Bitfield,
    Cancel,
    Choke,
    Handshake,
    Have,
    Interested,
    KeepAlive,
    Message,
    NotBitTorrentError,
    NotInterested,
    Piece,
    Port,
    Request,
    Sentinel,
    Unchoke,
    Unknown,
    bitfield_size,
    bits_from_flags,
    bits_from_indices,
    check_bitfield,
    flags_from_bits,
    indices_from_bits,
)

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

_HANDSHAKE_PREFIX: Final = bytes([len(PSTR)]) + PSTR
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
# Decoding

# Decoded messages are built without their constructors' checks: the decoder has checked every
# field already (lengths, block size, piece index), and the checks cost more than the rest of
# a have's decoding (a quarter of a million messages a minute in a 40-peer flash crowd).
_new = object.__new__
_set_field = object.__setattr__


def _decoded_have(index: int) -> Have:
    message = _new(Have)
    _set_field(message, "index", index)
    return message


def _decoded_triple(cls: type[Request] | type[Cancel], index: int, begin: int,
                    length: int) -> Request | Cancel:
    message = _new(cls)
    _set_field(message, "index", index)
    _set_field(message, "begin", begin)
    _set_field(message, "length", length)
    return message


def _decoded_piece(index: int, begin: int, block: bytes) -> Piece:
    message = _new(Piece)
    _set_field(message, "index", index)
    _set_field(message, "begin", begin)
    _set_field(message, "block", block)
    return message


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
            _MAX_BITFIELD_BYTES_UNKNOWN if value is None else bitfield_size(value)
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
            return _decoded_piece(index, begin, bytes(buf[pos + 13:end]))
        fixed = _FIXED_LENGTH.get(msg_id)
        if fixed is not None:
            if length != fixed:
                self._fail_length(msg_id, length)
        elif msg_id == BITFIELD:
            if self._num_pieces is None:
                if length > self._max_length:
                    self._fail_oversized(length, msg_id)
            elif length != 1 + bitfield_size(self._num_pieces):
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
        return self._decode_body(msg_id, pos, end)

    def _decode_body(self, msg_id: int, pos: int, end: int) -> Message:
        """A message with a payload other than a block, whole in ``_buf[pos:end]``."""
        if msg_id in (REQUEST, CANCEL):
            index, begin, block_length = _III.unpack_from(self._buf, pos + 5)
            self._check_index(index, msg_id)
            if not 0 < block_length <= BLOCK_SIZE:
                self._fail(
                    f"{_NAMES[msg_id]}.length {block_length} out of range 1..{BLOCK_SIZE} "
                    f"(BEP 3 block size)"
                )
            return _decoded_triple(Request if msg_id == REQUEST else Cancel, index, begin,
                                   block_length)
        if msg_id == HAVE:
            index = _LEN.unpack_from(self._buf, pos + 5)[0]
            self._check_index(index, msg_id)
            return _decoded_have(index)
        if msg_id == BITFIELD:
            bits = bytes(self._buf[pos + 5:end])
            if self._num_pieces is not None:
                try:
                    check_bitfield(bits, self._num_pieces)
                except RemoteProtocolError as exc:
                    self._fail(str(exc))
            return Bitfield(bits=bits)
        if msg_id == PORT:
            return Port(port=_PORT.unpack_from(self._buf, pos)[2])
        return Unknown(msg_id=msg_id, payload=bytes(self._buf[pos + 5:end]))

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
            expected = f"{1 + bitfield_size(self._num_pieces or 0)} for {self._num_pieces} pieces"
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

