"""Decoding one peer log, with the big per-neighbour lists read by pandas' CSV parser.

Two kinds of lines are most of a log's bytes: ``rechoke`` (20 neighbour objects of 9 fields
per line) and ``counters`` (a map of neighbour -> [up, down]). Decoding them into millions of
dicts and lists is most of the loading time, so while they are in exactly the form
peer/eventlog.py writes (compact JSON, the keys of analysis._tables' CHOKES items in that
order, the list last on its line, no escapes) their lists are turned into CSV with two byte
replacements and read by pandas' C parser, which makes no Python object per field; the rest of
each line is decoded as JSON. The rows are checked (counts of every key, field counts and
types, the first and last row against a plain JSON decoding); on any doubt the file is decoded
as plain JSON instead, so the tables never depend on which path was taken.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis._read import loads, read_lines, records
from analysis._tables import CHOKES, DTYPES, TRANSFERS, Kind

_ITEMS = CHOKES.items
_KEYS = tuple(c.field for c in _ITEMS)
_CSV_NAMES = [name for key in _KEYS for name in (f"key_{key}", key)]
_CSV_DTYPE: dict[Kind, Any] = {**DTYPES, Kind.LABEL: "category", Kind.ID: "category"}
_DTYPES = {c.field: _CSV_DTYPE[c.kind] for c in _ITEMS}
_TEXT = [key for key, dtype in _DTYPES.items() if dtype == "category"]
_NOT_NULL = [c.field for c in _ITEMS if c.required]


@dataclass(frozen=True, slots=True)
class _ListForm:
    """Where a kind of line keeps its list, and how that list becomes CSV."""

    ev: str
    key: str  # the field holding the list: the line's last
    mark: bytes  # in every such line
    opening: bytes  # the list's key and opening bracket
    closing: bytes
    separator: bytes  # between two items, up to the first key of the next


def _form(ev: str, key: str, brackets: bytes, separator: bytes) -> _ListForm:
    return _ListForm(ev, key, mark=b'"ev":"%s"' % ev.encode(),
                     opening=b',"%s":%s' % (key.encode(), brackets[:1]),
                     closing=brackets[1:] + b"}", separator=separator)


_RECHOKE = _form("rechoke", CHOKES.items_key, b"[]", b'},{"%s":' % _KEYS[0].encode())
_COUNTERS = _form("counters", TRANSFERS.items_key, b"{}", b'],"')
Parse = Callable[[list[bytes], int], pd.DataFrame | None]


def split_lists(raw_lines: list[bytes], form: _ListForm, parse: Parse) -> pd.DataFrame | None:
    """The items of every line of ``form`` as one frame (``parse`` of their joined text), each
    line's list replaced, in ``raw_lines``, by its length. None, with ``raw_lines`` untouched,
    when a line is not in the expected form or ``parse`` has doubts."""
    bodies: list[bytes] = []
    replaced: dict[int, bytes] = {}
    expected = 0
    last = len(raw_lines) - 1
    key = form.opening[:-1]
    for i, line in enumerate(raw_lines):
        if form.mark not in line:
            continue
        if not line.endswith(form.closing):
            if i == last:
                continue  # a killed peer's truncated last line: the decoder skips it
            return None
        k = line.rfind(form.opening)
        if k < 0:
            return None
        body = line[k + len(form.opening):-len(form.closing)]
        count = body.count(form.separator) + 1 if body else 0
        if body:
            bodies.append(body)
        expected += count
        replaced[i] = b"%s%s%d}" % (line[:k], key, count)
    if not replaced:
        return None
    frame = parse(bodies, expected)
    if frame is None or len(frame) != expected:
        return None
    for i, line in replaced.items():
        raw_lines[i] = line
    return frame


def _read_csv(text: bytes, **kwargs: Any) -> pd.DataFrame | None:
    try:
        return pd.read_csv(io.BytesIO(text), header=None, index_col=False, engine="c",
                           keep_default_na=False, doublequote=False, **kwargs)
    except (ValueError, TypeError, pd.errors.ParserError):
        return None


def _nbrs_frame(bodies: list[bytes], expected: int) -> pd.DataFrame | None:
    if not bodies:
        return pd.DataFrame({key: pd.Series(dtype=_DTYPES[key]) for key in _KEYS})
    text = b",".join(bodies)
    if b"\\" in text or not (text.startswith(b'{"%s":' % _KEYS[0].encode())
                             and text.endswith(b"}")):
        return None
    if text.count(b'":') != len(_KEYS) * expected:  # every row has all keys, no more
        return None
    # {"peer":"A","down_rate":1.5,...},{"peer":"B",...}  ->  "peer":"A":"down_rate":1.5:...
    # one row per neighbour, ':' between fields, keys in the even columns (not read).
    csv_text = text[1:-1].replace(b'},{"', b'\n"').replace(b',"', b':"')
    frame = _read_csv(csv_text, sep=":", names=_CSV_NAMES, usecols=list(_KEYS), dtype=_DTYPES,
                      true_values=["true"], false_values=["false"], na_values=["null"])
    if frame is None or len(frame) != expected:
        return None
    for key in _TEXT:
        if any('"' in c for c in frame[key].cat.categories):
            return None
    for key in _NOT_NULL:
        if frame[key].isna().any():
            return None
    # The key order is one dict literal in the writer: check it on the first and last rows.
    for row, raw in ((0, bodies[0]), (len(frame) - 1, bodies[-1])):
        items = loads(b"[" + raw + b"]")
        item = items[0] if row == 0 else items[-1]
        if list(item) != list(_KEYS) or not _same_row(item, frame, row):
            return None
    return frame


def _same_row(item: dict[str, Any], frame: pd.DataFrame, row: int) -> bool:
    for key, value in item.items():
        got = frame[key].iloc[row]
        if value is None:
            if not pd.isna(got):
                return False
        elif isinstance(value, float | int) and not isinstance(value, bool):
            if float(got) != float(value):
                return False
        elif got != value:
            return False
    return True


def _counter_frame(bodies: list[bytes], expected: int) -> pd.DataFrame | None:
    if not bodies:
        return pd.DataFrame({"peer": pd.Series(dtype="category"),
                             "up": pd.Series(dtype=np.int64),
                             "down": pd.Series(dtype=np.int64)})
    text = b",".join(bodies)
    if b"\\" in text or text.count(b'":[') != expected or not text.endswith(b"]"):
        return None
    # "A":[1,2],"B":[3,4]  ->  "A",1,2 \n "B",3,4
    csv_text = text[:-1].replace(b'],"', b'\n"').replace(b'":[', b'",')
    frame = _read_csv(csv_text, sep=",", names=["peer", "up", "down"],
                      dtype={"peer": "category", "up": np.int64, "down": np.int64})
    if frame is None or frame["peer"].isna().any() or \
            any('"' in c for c in frame["peer"].cat.categories):
        return None
    first = loads(b"{" + bodies[0] + b"}")
    peer, pair = next(iter(first.items()))
    if (frame["peer"].iloc[0], int(frame["up"].iloc[0]), int(frame["down"].iloc[0])) != \
            (peer, *pair):
        return None
    return frame


@dataclass(slots=True)
class Decoded:
    """One peer log, decoded (``decode_peer_log``), waiting to become columns."""

    path: Path
    records: list[dict[str, Any]]
    numbers: list[int] | None
    nbrs: pd.DataFrame | None
    """Every rechoke line's neighbours, when read column-wise (``nbrs`` is then a count)."""
    pairs: pd.DataFrame | None
    """Every counters line's entries (peer, up, down), when read column-wise."""
    warnings: list[str]


def decode_peer_log(path: Path) -> Decoded:
    """Read and decode one log. Runs in a worker thread: it touches nothing shared, and its
    heaviest parts (file reads, pandas' CSV tokenizer) release the GIL."""
    warnings: list[str] = []
    raw_lines = read_lines(path)
    nbrs = split_lists(raw_lines, _RECHOKE, _nbrs_frame)
    pairs = split_lists(raw_lines, _COUNTERS, _counter_frame)
    found, numbers = records(path, warnings, raw_lines)
    if (nbrs is not None or pairs is not None) and not (
            _lined_up(found, _RECHOKE, nbrs) and _lined_up(found, _COUNTERS, pairs)):
        # A line looked like a rechoke or counters line but was not one: the plain way.
        warnings = []
        nbrs = pairs = None
        found, numbers = records(path, warnings)
    return Decoded(path, found, numbers, nbrs, pairs, warnings)


def _lined_up(found: list[dict[str, Any]], form: _ListForm,
              frame: pd.DataFrame | None) -> bool:
    """Every line of ``form``'s kind (and only those) had its list read column-wise."""
    if frame is None:
        return True
    ev, key = form.ev, form.key
    total = 0
    for r in found:
        if type(r.get(key)) is int:
            if r.get("ev") != ev:
                return False
            total += r[key]
        elif r.get("ev") == ev:
            return False
    return total == len(frame)
