"""Strict bencoding (BEP 3).

Strict because the info_hash is the SHA-1 of the exact bytes of the ``info`` dictionary: a
decoder that accepted ``i03e``, ``i-0e`` or unsorted keys would let two different byte strings
decode to the same value, and re-encoding would then change the hash. Every rejection names the
byte offset where decoding failed.
"""

from __future__ import annotations

import itertools
from typing import Any

from peer.errors import BencodeError

Bencodable = int | bytes | list["Bencodable"] | dict[bytes, "Bencodable"]

_DIGITS = frozenset(b"0123456789")


def encode(value: Any) -> bytes:
    """Encode ints, bytes (str is encoded as UTF-8), lists and dicts with byte or str keys."""
    out: list[bytes] = []
    _encode(value, out)
    return b"".join(out)


def _encode(value: Any, out: list[bytes]) -> None:
    if isinstance(value, bool):
        raise TypeError("bencode has no booleans; use 0 or 1")
    if isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        out.append(b"%d:" % len(raw))
        out.append(raw)
    elif isinstance(value, str):
        _encode(value.encode("utf-8"), out)
    elif isinstance(value, list | tuple):
        out.append(b"l")
        for item in value:
            _encode(item, out)
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
            _encode(raw_key, out)
            _encode(item, out)
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
    MAX_DEPTH = 100  # guards against stack exhaustion on hostile input

    def __init__(self, data: bytes) -> None:
        self.data = data

    def value(self, pos: int, depth: int) -> tuple[Bencodable, int]:
        data = self.data
        if pos >= len(data):
            raise BencodeError("unexpected end of data", pos)
        if depth > self.MAX_DEPTH:
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
        end = data.find(b"e", pos + 1)
        if end < 0:
            raise BencodeError("unterminated integer", pos)
        body = data[pos + 1 : end]
        digits = body[1:] if body.startswith(b"-") else body
        if not digits or not all(c in _DIGITS for c in digits):
            raise BencodeError(f"malformed integer {body!r}", pos)
        if digits.startswith(b"0") and (len(digits) > 1 or body.startswith(b"-")):
            raise BencodeError(f"non-canonical integer {body!r}", pos)
        return int(body), end + 1

    def string(self, pos: int) -> tuple[bytes, int]:
        data = self.data
        colon = data.find(b":", pos)
        if colon < 0:
            raise BencodeError("byte string without ':'", pos)
        length_text = data[pos:colon]
        if not length_text or not all(c in _DIGITS for c in length_text):
            raise BencodeError(f"malformed byte string length {length_text!r}", pos)
        if length_text.startswith(b"0") and len(length_text) > 1:
            raise BencodeError(f"non-canonical byte string length {length_text!r}", pos)
        start = colon + 1
        end = start + int(length_text)
        if end > len(data):
            raise BencodeError("byte string runs past the end of data", pos)
        return data[start:end], end
