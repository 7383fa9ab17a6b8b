"""BEP 3 peer-wire messages as typed values, and the bitfield format; peer/wire.py encodes and
decodes them (and re-exports everything here, so ``wire.Have`` is this ``Have``).

Messages are frozen, slotted and keyword-only, and their constructors refuse what BEP 3 forbids:
a message we build with bad fields raises :class:`~peer.errors.LocalProtocolError` (a bug on our
side); bytes from the remote that break the same rules raise
:class:`~peer.errors.RemoteProtocolError` in the decoder.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from peer.config import BLOCK_SIZE
from peer.errors import LocalProtocolError, RemoteProtocolError

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
HANDSHAKE_LENGTH: Final = 1 + len(PSTR) + 8 + 20 + 20  # 68

# Longest length prefix accepted for an id we do not handle (BEP 6 fast ids 13-17, BEP 10
# extension id 20 ...): a ut_metadata piece is a 16 KiB block plus a small bencoded header.
MAX_UNKNOWN_LENGTH: Final = 9 + BLOCK_SIZE + 1024


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


# --------------------------------------------------------------------------------------------
# Bitfield helpers (BEP 3: high bit of byte 0 is piece 0, spare bits zero)
#
# Conversions go through Python's arbitrary-precision ints and bytes.translate, so a bitfield of
# thousands of pieces costs a few C-level passes, not a Python loop per bit.

_BIT_CHARS_TO_FLAGS: Final = bytes.maketrans(b"01", b"\x00\x01")
_FLAGS_TO_BIT_CHARS: Final = bytes.maketrans(b"\x00\x01", b"01")


def bitfield_size(num_pieces: int) -> int:
    return (num_pieces + 7) // 8


def check_bitfield(bits: bytes, num_pieces: int) -> None:
    """Raise RemoteProtocolError unless ``bits`` is a valid bitfield for ``num_pieces`` pieces:
    exactly ceil(num_pieces / 8) bytes with the spare bits zero (BEP 3)."""
    expected = bitfield_size(num_pieces)
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
    size = bitfield_size(num_pieces)
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
