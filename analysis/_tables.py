"""What each table of a ``Run`` is made of: one definition per table, in one place.

A table lists its columns in order. A column is read from an event field (or from each item of
the line's per-neighbour list), made while reading one log (the peer's own name, a choke
decision's end, a counter entry's interval), or derived from earlier columns once the table is
built. Its kind fixes its dtype, what a missing optional field becomes, how its text is shared
(``category`` columns) and how a bad value is reported. Adding an event field is one line here:
reading (both the plain and the column-wise path), validation and the frame follow.

The fields and their meaning are docs/log-schema.md's; the tables are docs/analysis.md's.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


class Kind(enum.Enum):
    """How a column is stored. Missing or null optional fields become the kind's default."""

    FLOAT = "float"  # float64; default NaN
    INT = "int"  # int64; always required
    BOOL = "bool"  # bool; default False
    LABEL = "label"  # repeated text: a category column; default missing
    ID = "id"  # a peer id: a category column of peer names (docs/analysis.md, "Reading")
    IDS = "ids"  # a list of peer ids: a list of peer names per row; default []
    PEER = "peer"  # the peer whose log it is: a category column of names
    VALUE = "value"  # as decoded, row by row (small tables): pandas infers the dtype


DTYPES: dict[Kind, Any] = {Kind.FLOAT: float, Kind.INT: np.int64, Kind.BOOL: bool}
"""The numpy dtype of the kinds stored as plain arrays."""


class Source(enum.Enum):
    """Where a column's values come from."""

    EVENT = "event"  # read from the event line, or from each item of its list
    LOG = "log"  # made while reading one log (see analysis._columns)
    TABLE = "table"  # derived from the table's earlier columns when it is built


@dataclass(frozen=True, slots=True)
class Col:
    name: str
    kind: Kind
    source: Source = Source.EVENT
    key: str = ""
    """The event field, when it is not the column's name."""
    required: bool = False
    """An event without the field is an error naming its line."""
    group: str | None = None
    """The column of this peer's group, inserted just after it."""
    derive: Callable[[dict[str, Any]], Any] | None = None
    """Source.TABLE: the column from the table's earlier columns (name -> array or Series)."""

    @property
    def field(self) -> str:
        return self.key or self.name


def field(name: str, kind: Kind, *, key: str = "", required: bool = False,
          group: str | None = None) -> Col:
    return Col(name, kind, Source.EVENT, key=key, required=required, group=group)


def made(name: str, kind: Kind, *, group: str | None = None) -> Col:
    return Col(name, kind, Source.LOG, group=group)


def derived(name: str, kind: Kind, derive: Callable[[dict[str, Any]], Any], *,
            group: str | None = None) -> Col:
    return Col(name, kind, Source.TABLE, group=group, derive=derive)


@dataclass(frozen=True, slots=True)
class Table:
    """One table: the events it is read from and its columns, in the table's order."""

    name: str
    """The ``Run`` attribute."""
    events: tuple[str, ...]
    line: tuple[Col, ...]
    """Columns read from (or made for) each event line; repeated for each of its items."""
    items_key: str = ""
    """The field holding a line's per-neighbour items: one row per item. A list of objects,
    or (``items_map``) a map from a peer id to the list of the other item columns."""
    items: tuple[Col, ...] = ()
    """Columns of each item; for a list of objects in the order peer/node.py writes their keys
    (the column-wise reading in analysis._fastpath depends on it)."""
    items_map: bool = False
    tail: tuple[Col, ...] = ()
    """Columns after the items': made while reading, or derived."""

    @property
    def columns(self) -> tuple[Col, ...]:
        return self.line + self.items + self.tail

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


def _rate(delta: str) -> Callable[[dict[str, Any]], np.ndarray]:
    def rate(columns: dict[str, Any]) -> np.ndarray:
        dt = columns["t"] - columns["t0"]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(dt > 0, columns[delta] / dt, np.nan)
    return rate


def _first_sender(columns: dict[str, Any]) -> pd.Series:
    return pd.Series([f[0] if f else None for f in columns["from"]], dtype=object)


FLOAT, INT, BOOL, LABEL, ID, IDS, PEER, VALUE = (Kind.FLOAT, Kind.INT, Kind.BOOL, Kind.LABEL,
                                                 Kind.ID, Kind.IDS, Kind.PEER, Kind.VALUE)

PIECES = Table("pieces", ("piece",), (
    field("t", FLOAT, required=True), made("peer", PEER, group="group"),
    field("index", INT, required=True), field("start", FLOAT), field("size", INT, required=True),
    field("ok", BOOL, required=True), field("from", IDS),
    derived("from_first", VALUE, _first_sender, group="from_group"), field("blame", IDS)))

CHOKES = Table(
    "chokes", ("rechoke",),
    (field("t", FLOAT, required=True), made("peer", PEER, group="group"),
     field("round", INT, required=True), field("trigger", LABEL, required=True),
     field("seed_state", BOOL, key="seed"), field("optimistic_rotated", BOOL)),
    items_key="nbrs",
    items=(field("neighbour", ID, key="peer", required=True, group="neighbour_group"),
           field("down_rate", FLOAT, required=True), field("up_rate", FLOAT, required=True),
           field("interested", BOOL, required=True), field("choking_us", BOOL, required=True),
           field("snubbed", BOOL, required=True), field("decision", LABEL, required=True),
           field("reason", LABEL), field("rate", FLOAT)),
    # A decision holds until the peer's next rechoke, or until it left.
    tail=(made("until", FLOAT),
          derived("duration", FLOAT, lambda c: c["until"] - c["t"])))

TOTALS = Table("totals", ("counters",), (
    field("t", FLOAT, required=True), made("peer", PEER), field("up", INT, required=True),
    field("down", INT, required=True)))

TRANSFERS = Table(
    "transfers", ("counters",),
    # t0: the start of the entry's interval (analysis._columns.fill_transfers).
    (field("t", FLOAT, required=True), made("t0", FLOAT), made("peer", PEER, group="group")),
    items_key="n", items_map=True,
    items=(field("neighbour", ID, required=True, group="neighbour_group"),
           field("up", INT, required=True), field("down", INT, required=True)),
    tail=(made("d_up", INT), made("d_down", INT), derived("rate_up", FLOAT, _rate("d_up")),
          derived("rate_down", FLOAT, _rate("d_down"))))

CONNECTIONS = Table("connections", ("conn_open", "conn_close"), (
    field("t", VALUE, required=True), made("peer", VALUE, group="group"),
    made("event", VALUE),  # open / close, from the event's name
    field("neighbour", ID, key="peer", required=True, group="neighbour_group"),
    field("addr", VALUE), field("dir", VALUE), field("reason", VALUE), field("up", VALUE),
    field("down", VALUE)))

ANNOUNCES = Table("announces", ("announce",), (
    field("t", VALUE, required=True), made("peer", VALUE),
    field("event", VALUE, required=True), field("ok", VALUE, required=True),
    field("peers", VALUE), field("interval", VALUE), field("complete", VALUE),
    field("incomplete", VALUE), field("error", VALUE)))

COLUMNAR = (PIECES, CHOKES, TOTALS, TRANSFERS)
"""Big tables: filled column-wise, a numpy chunk per log and column."""
ROWS = (CONNECTIONS, ANNOUNCES)
"""Small tables: filled row by row."""
WITH_GROUPS = tuple(t for t in (*COLUMNAR, *ROWS) if any(c.group for c in t.columns))

# The tracker's log and the resource samples (read by analysis._read).
TRACKER = Table("tracker", ("announce",), tuple(field(name, VALUE) for name in (
    "t", "peer", "addr", "event", "uploaded", "downloaded", "left", "complete", "incomplete",
    "failure")))
RESOURCES = Table("resources", (), tuple(field(name, VALUE) for name in (
    "t", "proc", "pid", "cpu", "rss", "host_cpu")))


# ---------------------------------------------------------------------------------------------
# validation: which field of a line is at fault, once reading it failed


def _required_fields() -> dict[str, tuple[str, ...]]:
    required: dict[str, dict[str, None]] = {}
    for table in (*COLUMNAR, *ROWS):
        for ev in table.events:
            keys = required.setdefault(ev, {"t": None})
            keys.update((c.field, None) for c in table.line
                        if c.source is Source.EVENT and c.required)
            if table.items_key:
                keys[table.items_key] = None
    return {ev: tuple(keys) for ev, keys in required.items()}


REQUIRED = _required_fields()
"""Event name -> the fields it cannot do without, in the order they are reported."""
_BY_EVENT = {ev: tuple(t for t in (*COLUMNAR, *ROWS) if ev in t.events)
             for ev in REQUIRED}


def _bad_number(col: Col, value: Any) -> bool:
    """A value of a numeric column that is not a number of its kind (a bool is not one)."""
    if col.kind is Kind.INT:
        return isinstance(value, bool) or not isinstance(value, int)
    if col.kind is Kind.FLOAT:
        return isinstance(value, bool) or not isinstance(value, int | float)
    return False


def _bad_field(col: Col, fields: dict[str, Any]) -> bool:
    """A required field or a present optional one (null: the default) that is not valid."""
    if col.source is not Source.EVENT or col.field not in fields:
        return False
    value = fields[col.field]
    return (col.required or value is not None) and _bad_number(col, value)


def problem(rec: dict[str, Any], ev: str) -> str | None:
    """What is wrong with one event line (None: nothing found)."""
    for key in REQUIRED.get(ev, ("t",)):
        if key not in rec:
            return f"missing field '{key}'"
    if not isinstance(rec["t"], int | float) or isinstance(rec["t"], bool):
        return f"bad field: 't' is {rec['t']!r}"
    for table in _BY_EVENT.get(ev, ()):
        for col in table.line:
            if _bad_field(col, rec):
                return f"bad field: {col.field!r} is {rec[col.field]!r}"
        if table.items_key:
            found = _items_problem(table, rec[table.items_key])
            if found:
                return found
    return None


def _items_problem(table: Table, items: Any) -> str | None:
    key = table.items_key
    if type(items) is int:  # its items were read column-wise already (analysis._fastpath)
        return None
    if table.items_map:
        if not isinstance(items, dict):
            return f"bad field: {key!r} is not a mapping"
        values = table.items[1:]
        for peer, pair in items.items():
            if not (isinstance(pair, list) and len(pair) == len(values) and
                    not any(_bad_number(c, x) for c, x in zip(values, pair, strict=True))):
                names = ", ".join(c.name for c in values)
                return f"bad field: {key}[{peer!r}] is {pair!r}, not [{names}]"
        return None
    if not isinstance(items, list):
        return f"bad field: {key!r} is not a list"
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            return f"bad field: {key}[{i}] is not an object"
        for col in table.items:
            if col.required and col.field not in item:
                return f"missing field '{key}[{i}].{col.field}'"
        for col in table.items:
            if _bad_field(col, item):
                return f"bad field: {key}[{i}].{col.field} is {item[col.field]!r}"
    return None
