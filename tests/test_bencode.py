"""Strict bencode (peer/bencode.py): round trips, a table of invalid inputs with byte offsets,
every truncation of a valid document, and encoder type errors."""

from __future__ import annotations

import pytest

from peer.bencode import decode, decode_prefix, encode
from peer.errors import BencodeError, TestbedError

# --- round trips -------------------------------------------------------------------------------

ROUND_TRIPS = [
    (0, b"i0e"),
    (42, b"i42e"),
    (-7, b"i-7e"),
    (2**70, b"i1180591620717411303424e"),
    (-(2**70), b"i-1180591620717411303424e"),
    (b"", b"0:"),
    (b"spam", b"4:spam"),
    (bytes(range(256)), b"256:" + bytes(range(256))),
    ([], b"le"),
    ({}, b"de"),
    ([1, b"a", [b"b", []], {b"k": b"v"}], b"li1e1:al1:bleed1:k1:vee"),
    ({b"a": {b"b": [0, -1]}, b"c": b""}, b"d1:ad1:bli0ei-1eee1:c0:e"),
]


@pytest.mark.parametrize(("value", "raw"), ROUND_TRIPS)
def test_round_trip(value, raw):
    assert encode(value) == raw
    assert decode(raw) == value
    assert encode(decode(raw)) == raw


def test_str_is_utf8_and_keys_sort_by_raw_bytes():
    # Keys sort by their encoded bytes (BEP 3: "sorted as raw strings, not alphanumerics").
    value = {"é": 1, "Z": 2, b"a": 3, "aa": 4}
    raw = encode(value)
    assert raw == b"d1:Zi2e1:ai3e2:aai4e2:\xc3\xa9i1ee"
    assert decode(raw) == {b"Z": 2, b"a": 3, b"aa": 4, "é".encode(): 1}


def test_tuples_bytearray_and_memoryview_encode_as_list_and_bytes():
    assert encode((1, bytearray(b"xy"), memoryview(b"z"))) == b"li1e2:xy1:ze"


def test_decode_prefix_reports_the_end_offset():
    data = b"xxd4:infod1:ai1eee5:trail"
    value, end = decode_prefix(data, 2)
    assert value == {b"info": {b"a": 1}}
    assert data[end:] == b"5:trail"
    assert decode_prefix(data, end) == (b"trail", len(data))


def test_decode_accepts_bytearray_and_memoryview():
    assert decode(bytearray(b"i5e")) == 5
    assert decode(memoryview(b"l0:e")) == [b""]


def test_decode_refuses_str():
    with pytest.raises(TypeError):
        decode("i1e")  # type: ignore[arg-type]


def test_longest_integers_decode():
    assert decode(b"i" + b"9" * 128 + b"e") == 10**128 - 1
    assert decode(b"i-" + b"9" * 128 + b"e") == -(10**128 - 1)
    assert encode(10**128 - 1) == b"i" + b"9" * 128 + b"e"


def test_encode_refuses_what_decode_would_refuse():
    # Found by the property tests: the encoder wrote nesting the decoder refuses, and a deep
    # or cyclic value was a RecursionError.
    deep: list = []
    for _ in range(101):
        deep = [deep]
    with pytest.raises(ValueError, match="nesting deeper than 100 levels"):
        encode(deep)
    assert decode(encode(deep[0])) == deep[0]
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError, match="nesting deeper"):
        encode(cyclic)
    with pytest.raises(ValueError, match="more than 128 digits"):
        encode(10**128)
    with pytest.raises(ValueError, match="more than 128 digits"):
        encode({b"k": -(10**5000)})


def test_nesting_just_under_the_limit_decodes():
    depth = 101  # lists at depth 0..100 are allowed
    assert decode(b"l" * depth + b"e" * depth) is not None


# --- invalid inputs ----------------------------------------------------------------------------

INVALID = [
    # (input, message fragment, byte offset)
    (b"i03e", "non-canonical integer", 0),
    (b"i00e", "non-canonical integer", 0),
    (b"i-0e", "non-canonical integer", 0),
    (b"i-03e", "non-canonical integer", 0),
    (b"ie", "malformed integer", 0),
    (b"i-e", "malformed integer", 0),
    (b"i+1e", "malformed integer", 0),
    (b"i 1e", "malformed integer", 0),
    (b"i1.5e", "malformed integer", 0),
    (b"i--1e", "malformed integer", 0),
    (b"i12", "unterminated integer", 0),
    (b"-0:", "unexpected byte b'-'", 0),
    (b"-1:a", "unexpected byte b'-'", 0),
    (b"l-0:e", "unexpected byte b'-'", 1),
    (b"01:a", "non-canonical byte string length", 0),
    (b"00:", "non-canonical byte string length", 0),
    (b"li1e01:ae", "non-canonical byte string length", 4),
    (b"1a:b", "malformed byte string length", 0),
    (b"3ab", "byte string without ':'", 0),
    (b"3:ab", "byte string runs past the end of data", 0),
    (b"l5:abce", "byte string runs past the end of data", 1),
    (b"d1:bi1e1:ai2ee", "out of sorted order", 7),
    (b"d2:aai1e1:ai2ee", "out of sorted order", 8),
    (b"d1:ai1e1:ai2ee", "duplicate dictionary key b'a'", 7),
    (b"i1ei2e", "trailing data", 3),
    (b"0:0:", "trailing data", 2),
    (b"dee", "trailing data", 2),
    (b"di1ei2ee", "dictionary key is not a byte string", 1),
    (b"d1:ai1eli1eei2ee", "dictionary key is not a byte string", 7),
    (b"d1:ai1eee", "trailing data", 8),
    (b"x", "unexpected byte b'x'", 0),
    (b"li1exe", "unexpected byte b'x'", 4),
    (b"", "unexpected end of data", 0),
    (b"l", "unterminated list", 1),
    (b"li1e", "unterminated list", 4),
    (b"d", "unterminated dictionary", 1),
    (b"d1:a", "unexpected end of data", 4),
    (b"l" * 102 + b"e" * 102, "nesting too deep", 101),
    (b"d1:a" * 102 + b"e" * 102, "nesting too deep", 404),
    # Found by the property tests: past Python's int() limit of 4300 digits these were a bare
    # ValueError, not a BencodeError.
    (b"i" + b"9" * 4301 + b"e", "integer longer than 128 digits", 0),
    (b"i-" + b"9" * 5000 + b"e", "integer longer than 128 digits", 0),
    (b"i" + b"9" * 129 + b"e", "integer longer than 128 digits", 0),
    (b"li1ei" + b"9" * 129 + b"ee", "integer longer than 128 digits", 4),
    (b"i1" + b"x" * 300, "malformed integer", 0),
    (b"9" * 5000 + b":", "byte string runs past the end of data", 0),
    (b"l" + b"9" * 4301 + b":xe", "byte string runs past the end of data", 1),
    (b"l" * 20_000, "nesting too deep", 101),
]


@pytest.mark.parametrize(("data", "fragment", "offset"), INVALID,
                         ids=[repr(d[:16]) for d, _, _ in INVALID])
def test_invalid_input(data, fragment, offset):
    with pytest.raises(BencodeError) as info:
        decode(data)
    assert fragment in str(info.value)
    assert info.value.offset == offset
    assert str(info.value).endswith(f"at byte {offset}")
    # One error family: CLIs catch TestbedError and print one line.
    assert isinstance(info.value, TestbedError)


VALID_DOCUMENT = encode({
    b"announce": b"http://127.0.0.1:6969/announce",
    b"info": {b"length": 123456, b"name": b"f.bin", b"piece length": 16384,
              b"pieces": bytes(range(40))},
    b"list": [-5, [], {}, b""],
})


@pytest.mark.parametrize("cut", range(len(VALID_DOCUMENT)))
def test_every_truncation_is_refused_with_an_offset_inside_the_data(cut):
    data = VALID_DOCUMENT[:cut]
    with pytest.raises(BencodeError) as info:
        decode(data)
    assert info.value.offset is not None
    assert 0 <= info.value.offset <= cut


# --- encoder type errors -----------------------------------------------------------------------

BAD_VALUES = [
    (True, "no booleans"),
    ([False], "no booleans"),
    (1.5, "cannot bencode float"),
    ({b"k": 0.0}, "cannot bencode float"),
    (None, "cannot bencode NoneType"),
    ({1, 2}, "cannot bencode set"),
    ({1: b"x"}, "keys must be bytes or str"),
    ({(b"a",): 1}, "keys must be bytes or str"),
    ({"a": 1, b"a": 2}, "duplicate dictionary key b'a'"),
]


@pytest.mark.parametrize(("value", "fragment"), BAD_VALUES)
def test_encode_type_errors(value, fragment):
    with pytest.raises(TypeError, match=fragment):
        encode(value)
