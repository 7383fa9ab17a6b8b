"""One peer log's events into columns (``add_log``), following the tables of analysis._tables.

Events are grouped by kind and each kind turned into columns at once (numpy ``fromiter`` /
``repeat``, strings as integer codes, no per-row appends). A log's columns are chunks, joined
once for the whole run when the frames are built (analysis._frames).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from operator import itemgetter, methodcaller
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis._fastpath import Decoded
from analysis._read import check_schema, line_number, locate
from analysis._tables import (
    CHOKES,
    COLUMNAR,
    DTYPES,
    PIECES,
    ROWS,
    TOTALS,
    TRANSFERS,
    Col,
    Kind,
    Source,
    Table,
)
from peer.config import PeerConfig

_period = PeerConfig.__dataclass_fields__["counters_period"].default
assert isinstance(_period, float)
DEFAULT_COUNTERS_PERIOD = _period
"""A peer's ``counters_period`` when its config file in the run directory does not say."""


def joined(chunks: list[Any], dtype: Any) -> np.ndarray:
    if not chunks:
        return np.empty(0, dtype=dtype)
    return np.concatenate([np.asarray(c, dtype=dtype) for c in chunks])


class Interner:
    """Strings -> small integer codes, so that millions of repeated strings become one int
    array and a handful of categories (a pandas category column, without hashing each row
    again at the end)."""

    def __init__(self) -> None:
        self.table: dict[str, int] = {}

    def codes(self, values: Iterable[str | None], count: int) -> np.ndarray:
        table = self.table
        add = table.setdefault
        # None (e.g. no reason) is code -1: a missing value in the category column.
        return np.fromiter((-1 if v is None else add(v, len(table)) for v in values),
                           np.int64, count)

    def from_categorical(self, column: pd.Series) -> np.ndarray:
        table = self.table
        cmap = np.asarray([table.setdefault(c, len(table)) for c in column.cat.categories]
                          + [-1], dtype=np.int64)
        codes: np.ndarray = cmap[column.cat.codes.to_numpy()]
        return codes

    def translation(self, other: Interner) -> np.ndarray:
        """other's codes -> ours (adding its strings); index -1 stays -1."""
        table = self.table
        return np.asarray([table.setdefault(c, len(table)) for c in other.table] + [-1],
                          dtype=np.int64)

    def categorical(self, chunks: list[Any]) -> pd.Series:
        """The codes as a category column of the strings they stand for: sorted, and only
        those used (a bincount, cheaper than pandas' remove_unused_categories)."""
        codes = joined(chunks, np.int64)
        names = list(self.table)
        used = np.bincount(codes[codes >= 0], minlength=len(names)) > 0
        order = sorted(np.flatnonzero(used).tolist(), key=names.__getitem__)
        remap = np.full(len(names) + 1, -1, dtype=np.int64)
        remap[order] = np.arange(len(order))
        return pd.Series(pd.Categorical.from_codes(remap[codes],
                                                   categories=[names[i] for i in order]))


class Columns:
    """Columns filled while reading the peer logs: per table, a list of per-log chunks (numpy
    arrays or lists) for each column; rows for the small tables."""

    def __init__(self) -> None:
        self.starts: dict[str, dict[str, Any]] = {}
        self.completes: dict[str, tuple[float, Any, Any]] = {}
        self.stops: dict[str, tuple[float, Any, Any, Any]] = {}
        self.last_t: dict[str, float] = {}
        self.last_totals: dict[str, tuple[int, int]] = {}
        self.names: list[str] = []
        """One per log read; ``peer`` columns hold codes into it until the frames are built."""
        self.chunks: dict[str, dict[str, list[Any]]] = {
            t.name: {c.name: [] for c in t.columns if c.source is not Source.TABLE}
            for t in COLUMNAR}
        self.rows: dict[str, list[tuple[Any, ...]]] = {t.name: [] for t in ROWS}
        self.ids = Interner()
        """Neighbour peer ids, shared by every ``ID`` column (as codes)."""
        self.labels = Interner()
        """Every ``LABEL`` column's text: triggers, decisions, reasons (as codes)."""

    def extend(self, other: Columns) -> None:
        """Append ``other``'s columns (read from later logs) to ours, codes translated."""
        offset = len(self.names)
        self.names.extend(other.names)
        self.starts.update(other.starts)
        self.completes.update(other.completes)
        self.stops.update(other.stops)
        self.last_t.update(other.last_t)
        self.last_totals.update(other.last_totals)
        ids = self.ids.translation(other.ids)
        labels = self.labels.translation(other.labels)
        translate: dict[Kind, Callable[[Any], np.ndarray]] = {
            Kind.PEER: lambda c: np.asarray(c) + offset,
            Kind.ID: lambda c: ids[np.asarray(c)],
            Kind.LABEL: lambda c: labels[np.asarray(c)]}
        for table in COLUMNAR:
            mine, theirs = self.chunks[table.name], other.chunks[table.name]
            for col in table.columns:
                if col.name not in theirs:  # derived once the table is built
                    continue
                chunks = theirs[col.name]
                if col.kind in translate:
                    chunks = [translate[col.kind](c) for c in chunks]
                mine[col.name].extend(chunks)
        for name, rows in other.rows.items():
            self.rows[name].extend(rows)


# ---------------------------------------------------------------------------------------------
# one log


def counters_period(root: Path, stem: str) -> float:
    """The peer's ``counters_period`` from its config file in the run directory."""
    try:
        config = json.loads((root / "peers" / f"{stem}.json").read_text(encoding="utf-8"))
        period = float(config["counters_period"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_COUNTERS_PERIOD
    return period if period > 0 else DEFAULT_COUNTERS_PERIOD


def add_log(log: Decoded, acc: Columns, warnings: list[str]) -> None:
    """One decoded peer log into ``acc``; the peer is named by its ``start`` line."""
    path, found, numbers = log.path, log.records, log.numbers
    warnings.extend(log.warnings)
    if not found:
        warnings.append(f"{path}: no events")
        return
    name = path.stem
    first = found[0]
    line1 = line_number(0, numbers)
    if first.get("ev") == "start":
        check_schema(path, line1, first)
        name = str(first.get("name") or name)
    else:
        warnings.append(f"{path}:{line1}: first event is {first.get('ev')!r}, not 'start'")
    try:
        _peer_columns(found, name, acc, counters_period(path.parent.parent, path.stem),
                      log.nbrs, log.pairs)
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as exc:
        raise locate(path, found, numbers, exc) from None


def _peer_columns(found: list[dict[str, Any]], name: str, acc: Columns, period: float,
                  nbrs: pd.DataFrame | None, pairs: pd.DataFrame | None) -> None:
    """One peer's events into ``acc``: grouped by kind, then each kind column-wise."""
    by_ev: dict[str, list[dict[str, Any]]] = {}
    for rec in found:
        ev = rec["ev"]
        bucket = by_ev.get(ev)
        if bucket is None:
            by_ev[ev] = [rec]
        else:
            bucket.append(rec)
    # Other events are ignored: a newer peer may add events without a schema bump.
    code = len(acc.names)
    acc.names.append(name)
    first_t, end = _note_peer(by_ev, name, found[-1]["t"], acc)
    counters = by_ev.get("counters", [])
    _fill_lines(TOTALS, counters, code, acc)
    if counters:
        acc.last_totals[name] = (counters[-1]["up"], counters[-1]["down"])
    _fill_transfers(counters, code, first_t, period, acc, pairs)
    _fill_chokes(by_ev.get("rechoke", []), code, end, acc, nbrs)
    _fill_lines(PIECES, by_ev.get("piece", []), code, acc)
    for table in ROWS:
        _fill_rows(table, by_ev, name, acc)


def _note_peer(by_ev: dict[str, list[dict[str, Any]]], name: str, last_t: float,
               acc: Columns) -> tuple[float | None, float]:
    """The peer's start, completion and stop; returns (its first start, when it left)."""
    starts = by_ev.get("start", [])
    if starts:
        acc.starts[name] = {**starts[-1], "name": name}
    if "complete" in by_ev:
        c = by_ev["complete"][-1]
        acc.completes[name] = (c["t"], c.get("downloaded"), c.get("elapsed"))
    if "stop" in by_ev:
        s = by_ev["stop"][-1]
        acc.stops[name] = (s["t"], s.get("reason"), s.get("up"), s.get("down"))
    acc.last_t[name] = last_t
    end = acc.stops[name][0] if name in acc.stops else last_t
    return (starts[0]["t"] if starts else None), end


def _nan_if_none(value: Any) -> Any:
    return math.nan if value is None else value


def _read_column(col: Col, recs: list[dict[str, Any]], n: int, acc: Columns) -> Any:
    """Column ``col`` of ``n`` events (or items): a missing required field raises KeyError."""
    key = col.field
    values: Iterable[Any] = (map(itemgetter(key), recs) if col.required
                             else map(methodcaller("get", key), recs))
    kind = col.kind
    if kind is Kind.FLOAT:
        return np.fromiter(values if col.required else map(_nan_if_none, values), float, n)
    if kind is Kind.INT:
        return np.fromiter(values, np.int64, n)
    if kind is Kind.BOOL:
        return np.fromiter(values, bool, n)
    if kind is Kind.LABEL:
        return acc.labels.codes(values, n)
    if kind is Kind.ID:
        return acc.ids.codes(values, n)
    if kind is Kind.IDS:
        return [v or [] for v in values]
    raise TypeError(f"{col.name}: {kind} columns are read row by row")


def _column_of_frame(col: Col, values: pd.Series, acc: Columns) -> np.ndarray:
    """Column ``col`` from a column read by pandas (analysis._fastpath)."""
    if col.kind is Kind.ID:
        return acc.ids.from_categorical(values)
    if col.kind is Kind.LABEL:
        return acc.labels.from_categorical(values)
    array: np.ndarray = values.to_numpy(DTYPES[col.kind])
    return array


def _fill_lines(table: Table, recs: list[dict[str, Any]], code: int, acc: Columns) -> None:
    """A table with one row per event."""
    if not recs:
        return
    n = len(recs)
    chunks = acc.chunks[table.name]
    for col in table.line:
        if col.kind is Kind.PEER:
            chunks[col.name].append(np.full(n, code, np.int64))
        elif col.source is Source.EVENT:
            chunks[col.name].append(_read_column(col, recs, n, acc))


def _fill_chokes(recs: list[dict[str, Any]], code: int, end: float, acc: Columns,
                 nbrs: pd.DataFrame | None) -> None:
    """``rechoke`` lines -> one row per neighbour; a decision holds until the peer's next
    rechoke, or until it left (``end``). ``nbrs``: the neighbours already read column-wise
    (analysis._fastpath), each line's list then being its length."""
    if not recs:
        return
    table = CHOKES
    n_lines = len(recs)
    chunks = acc.chunks[table.name]
    if nbrs is None:
        lists = [r[table.items_key] for r in recs]
        lens = np.fromiter(map(len, lists), np.int64, n_lines)
        rows = [item for items in lists for item in items]
        for col in table.items:
            chunks[col.name].append(_read_column(col, rows, len(rows), acc))
    else:
        lens = np.fromiter(map(itemgetter(table.items_key), recs), np.int64, n_lines)
        for col in table.items:
            chunks[col.name].append(_column_of_frame(col, nbrs[col.field], acc))
    n = int(lens.sum())
    t = np.empty(0)
    for col in table.line:
        if col.kind is Kind.PEER:
            chunks[col.name].append(np.full(n, code, np.int64))
            continue
        values = _read_column(col, recs, n_lines, acc)
        if col.name == "t":
            t = values
        chunks[col.name].append(np.repeat(values, lens))
    chunks["until"].append(np.repeat(np.append(t[1:], end), lens))


def _fill_transfers(recs: list[dict[str, Any]], code: int, first_t: float | None,
                    period: float, acc: Columns, pairs: pd.DataFrame | None) -> None:
    """``counters`` lines -> one transfers row per neighbour that moved.

    A line names only the neighbours whose counts changed since the previous line, and a
    peer writes a line only when something changed, every ``period`` seconds: after a silent
    gap the bytes moved in the last period, not over the whole gap. So an entry's interval is
    (t0, t] with t0 = max(previous line or the peer's start, t − period). Entries whose counts
    did not change (older logs listed every neighbour) are dropped: deltas are computed
    against the previous entry of the same neighbour, so nothing is lost.
    """
    if not recs:
        return
    n_lines = len(recs)
    t = np.fromiter(map(itemgetter("t"), recs), float, n_lines)
    lens, nb_codes, up, down = _counter_entries(recs, acc, pairs)
    total = len(nb_codes)
    if total == 0:
        return
    order = np.argsort(nb_codes, kind="stable")  # per neighbour, in time order
    sorted_codes = nb_codes[order]
    first = np.ones(total, dtype=bool)
    first[1:] = sorted_codes[1:] != sorted_codes[:-1]
    d_up = np.empty(total, np.int64)
    d_down = np.empty(total, np.int64)
    for col, out in ((up, d_up), (down, d_down)):
        ordered = col[order]
        delta = np.diff(ordered, prepend=0)
        delta[first] = ordered[first]
        out[order] = delta
    keep = (d_up != 0) | (d_down != 0)
    previous = np.empty(n_lines)
    previous[0] = t[0] if first_t is None else first_t
    previous[1:] = t[:-1]
    t0 = np.maximum(previous, t - period)
    line = np.repeat(np.arange(n_lines), lens)[keep]
    columns = {"t": t[line], "t0": t0[line], "peer": np.full(len(line), code, np.int64),
               "neighbour": nb_codes[keep], "up": up[keep], "down": down[keep],
               "d_up": d_up[keep], "d_down": d_down[keep]}
    chunks = acc.chunks[TRANSFERS.name]
    for name, values in columns.items():
        chunks[name].append(values)


def _counter_entries(recs: list[dict[str, Any]], acc: Columns, pairs: pd.DataFrame | None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every line's entries: (entries per line, neighbour codes, up, down)."""
    n_lines = len(recs)
    key = TRANSFERS.items_key
    if pairs is None:
        maps = [r[key] for r in recs]
        lens = np.fromiter(map(len, maps), np.int64, n_lines)
        total = int(lens.sum())
        nb_codes = acc.ids.codes((k for m in maps for k in m), total)
        values = [v for m in maps for v in m.values()]
        up = np.fromiter(map(itemgetter(0), values), np.int64, total)
        down = np.fromiter(map(itemgetter(1), values), np.int64, total)
        return lens, nb_codes, up, down
    lens = np.fromiter(map(itemgetter(key), recs), np.int64, n_lines)
    return (lens, acc.ids.from_categorical(pairs["peer"]), pairs["up"].to_numpy(np.int64),
            pairs["down"].to_numpy(np.int64))


def _fill_rows(table: Table, by_ev: dict[str, list[dict[str, Any]]], name: str,
               acc: Columns) -> None:
    """A small table, row by row; one made of two events is in time order."""
    recs = [r for ev in table.events for r in by_ev.get(ev, [])]
    if len(table.events) > 1:
        recs.sort(key=itemgetter("t"))
    getters = [_row_getter(table, col, name) for col in table.line]
    rows = acc.rows[table.name]
    for r in recs:
        rows.append(tuple(get(r) for get in getters))


def _row_getter(table: Table, col: Col, name: str) -> Callable[[dict[str, Any]], Any]:
    if col.source is Source.EVENT:
        return itemgetter(col.field) if col.required else methodcaller("get", col.field)
    if col.name == "peer":
        return lambda r: name
    if col.name == "event" and table.name == "connections":
        return lambda r: "open" if r["ev"] == "conn_open" else "close"
    raise TypeError(f"{table.name}.{col.name}: no maker")
