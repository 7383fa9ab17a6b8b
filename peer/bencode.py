"""Strict bencoding (BEP 3).

Strict because the info_hash is the SHA-1 of the exact bytes of the ``info`` dictionary: a
decoder that accepted ``i03e``, ``i-0e`` or unsorted keys would let two different byte strings
decode to the same value, and re-encoding would then change the hash. Every rejection names the
byte offset where decoding failed.

Bounded, because the bytes come from strangers: nesting deeper than ``MAX_DEPTH`` and integers
longer than ``MAX_INTEGER_DIGITS`` digits are a BencodeError (never a RecursionError, nor the
ValueError Python's int() raises beyond 4300 digits), and a byte string that claims more bytes
than the data holds is refused before anything is allocated. ``encode`` refuses the same
values, so whatever it returns, ``decode`` accepts.
"""

from __future__ import annotations

import itertools
from typing import Any

from peer.errors import BencodeError

Bencodable = int | bytes | list["Bencodable"] | dict[bytes, "Bencodable"]

_DIGITS = frozenset(b"0123456789")

MAX_DEPTH = 100
"""Deepest nesting of lists and dictionaries accepted (the top-level value is depth 0)."""
MAX_INTEGER_DIGITS = 128
"""Most decimal digits in an integer: far beyond the 64-bit counters of every BitTorrent field,
and short enough that converting one costs nothing."""
_INTEGER_LIMIT = 10**MAX_INTEGER_DIGITS


def encode(value: Any) -> bytes:
    """Encode ints, bytes (str is encoded as UTF-8), lists and dicts with byte or str keys.

    TypeError for a type bencode cannot hold; ValueError for a value ``decode`` would refuse
    (nesting deeper than MAX_DEPTH, an integer longer than MAX_INTEGER_DIGITS digits).
    """
    out: list[bytes] = []
    _encode(value, out, 0)
    return b"".join(out)


def _encode(value: Any, out: list[bytes], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"nesting deeper than {MAX_DEPTH} levels: bencode.decode refuses it")
    if isinstance(value, bool):
        raise TypeError("bencode has no booleans; use 0 or 1")
    if isinstance(value, int):
        # Compare magnitudes, not digit strings: str() of a huge int is itself the problem.
        if abs(value) >= _INTEGER_LIMIT:
            raise ValueError(f"integer of more than {MAX_INTEGER_DIGITS} digits: "
                             f"bencode.decode refuses it")
        out.append(b"i%de" % value)
    elif isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        out.append(b"%d:" % len(raw))
        out.append(raw)
    elif isinstance(value, str):
        _encode(value.encode("utf-8"), out, depth)
    elif isinstance(value, list | tuple):
        out.append(b"l")
        for item in value:
            _encode(item, out, depth + 1)
        out.append(b"e")
    elif isinstance(value, dict):
        items = []
        for key, item in value.items():
            raw_key = key.encode("utf-8") if isinstance(key, str) else key
            if not isinstance(raw_key, bytes):
                raise TypeError(f"bencode dictionary keys must be bytes or str, not {key!r}")
            items.append((raw_key, item))
        items.sort(key=lambda pair: pair[0])
        for (k1, _), (k2, _) in itertools.pairwise(items):
            if k1 == k2:
                raise TypeError(f"duplicate dictionary key {k1!r}")
        out.append(b"d")
        for raw_key, item in items:
            _encode(raw_key, out, depth + 1)
            _encode(item, out, depth + 1)
        out.append(b"e")
    else:
        raise TypeError(f"cannot bencode {type(value).__name__}")


def decode(data: bytes) -> Bencodable:
    """Decode one bencoded value that must span all of ``data``."""
    value, end = decode_prefix(data, 0)
    if end != len(data):
        raise BencodeError("trailing data after the bencoded value", end)
    return value


def decode_prefix(data: bytes, start: int = 0) -> tuple[Bencodable, int]:
    """Decode the value starting at ``start``; return it and the offset just past it.

    Used by the metainfo reader to find the exact byte span of the ``info`` dictionary.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("bencode.decode takes bytes")
    return _Decoder(bytes(data)).value(start, depth=0)


class _Decoder:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def value(self, pos: int, depth: int) -> tuple[Bencodable, int]:
        data = self.data
        if pos >= len(data):
            raise BencodeError("unexpected end of data", pos)
        if depth > MAX_DEPTH:
            raise BencodeError("nesting too deep", pos)
        lead = data[pos]
        if lead == 0x69:  # i
            return self.integer(pos)
        if lead in _DIGITS:
            return self.string(pos)
        if lead == 0x6C:  # l
            items: list[Bencodable] = []
            pos += 1
            while True:
                if pos >= len(data):
                    raise BencodeError("unterminated list", pos)
                if data[pos] == 0x65:  # e
                    return items, pos + 1
                item, pos = self.value(pos, depth + 1)
                items.append(item)
        if lead == 0x64:  # d
            result: dict[bytes, Bencodable] = {}
            previous: bytes | None = None
            pos += 1
            while True:
                if pos >= len(data):
                    raise BencodeError("unterminated dictionary", pos)
                if data[pos] == 0x65:
                    return result, pos + 1
                if data[pos] not in _DIGITS:
                    raise BencodeError("dictionary key is not a byte string", pos)
                key_pos = pos
                key, pos = self.string(pos)
                if previous is not None:
                    if key == previous:
                        raise BencodeError(f"duplicate dictionary key {key!r}", key_pos)
                    if key < previous:
                        raise BencodeError(f"dictionary key {key!r} out of sorted order", key_pos)
                previous = key
                result[key], pos = self.value(pos, depth + 1)
        raise BencodeError(f"unexpected byte {bytes([lead])!r}", pos)

    def integer(self, pos: int) -> tuple[int, int]:
        data = self.data
        # Look for the 'e' only as far as the longest integer allowed ('-' and digits) reaches.
        window_end = pos + 3 + MAX_INTEGER_DIGITS
        end = data.find(b"e", pos + 1, window_end)
        if end < 0:
            if window_end > len(data):
                raise BencodeError("unterminated integer", pos)
            end = window_end  # report what the window holds
        body = data[pos + 1 : end]
        digits = body[1:] if body.startswith(b"-") else body
        if not digits.isdigit():  # bytes.isdigit: ASCII digits only, False when empty
            raise BencodeError(f"malformed integer {body[:24]!r}", pos)
        if len(digits) > MAX_INTEGER_DIGITS:
            raise BencodeError(f"integer longer than {MAX_INTEGER_DIGITS} digits", pos)
        if digits.startswith(b"0") and (len(digits) > 1 or body.startswith(b"-")):
            raise BencodeError(f"non-canonical integer {body!r}", pos)
        return int(body), end + 1

    def string(self, pos: int) -> tuple[bytes, int]:
        data = self.data
        colon = data.find(b":", pos)
        if colon < 0:
            raise BencodeError("byte string without ':'", pos)
        length_text = data[pos:colon]
        if not length_text.isdigit():
            raise BencodeError(f"malformed byte string length {length_text[:24]!r}", pos)
        if length_text.startswith(b"0") and len(length_text) > 1:
            raise BencodeError(f"non-canonical byte string length {length_text!r}", pos)
        start = colon + 1
        # More digits than the data's own length has cannot fit; int() of them could raise.
        if len(length_text) > len(str(len(data))):
            raise BencodeError("byte string runs past the end of data", pos)
        end = start + int(length_text)
        if end > len(data):
            raise BencodeError("byte string runs past the end of data", pos)
        return data[start:end], end
