"""The DataFrames of a ``Run``, from the columns read out of its logs (analysis._columns)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis._columns import Columns, joined
from analysis._tables import DTYPES, Col, Kind, Table

EXTERNAL = "external"
"""The group of a peer id that ``experiment.json`` does not name (a real client)."""


class IdMapper:
    """Peer id text -> peer name; ids the experiment does not name stay as they are."""

    def __init__(self, id_to_name: dict[str, str]) -> None:
        self.id_to_name = id_to_name
        self.names = set(id_to_name.values())
        self.unknown: set[str] = set()

    def map(self, ids: Any) -> pd.Series:
        """Ids -> names as a category (a run has a few hundred ids but millions of rows)."""
        cat = pd.Categorical(ids)
        mapped = [self.id_to_name.get(c, c) for c in cat.categories]
        if len(set(mapped)) == len(mapped):
            return pd.Series(cat.rename_categories(mapped))
        return pd.Series(pd.Categorical(np.asarray(mapped, dtype=object)[cat.codes]))

    def note_unknown(self, names: pd.Series) -> None:
        for value in pd.unique(names.dropna()):
            if value not in self.names:
                self.unknown.add(value)


def lookup(series: pd.Series, table: dict[str, str]) -> pd.Series:
    """Each peer name's group (``EXTERNAL`` for a name ``table`` lacks), as a category."""
    cat = pd.Categorical(series)
    groups = [table.get(c, EXTERNAL) for c in cat.categories]
    codes = np.asarray(cat.codes)
    uniq = sorted(set(groups))
    gcodes = np.asarray([uniq.index(g) for g in groups] + [-1], dtype=np.int64)
    return pd.Series(pd.Categorical.from_codes(gcodes[codes], categories=uniq),
                     index=series.index)


def _peer_codes(acc: Columns, chunks: list[Any]) -> pd.Series:
    """A ``PEER`` column: codes into ``acc.names`` as a category of names."""
    codes = joined(chunks, np.int64)
    uniq = sorted(set(acc.names))
    remap = np.asarray([uniq.index(n) for n in acc.names] + [-1], dtype=np.int64)
    return pd.Series(pd.Categorical.from_codes(remap[codes], categories=uniq))


def _column(col: Col, chunks: list[Any], acc: Columns, names: IdMapper) -> Any:
    kind = col.kind
    if kind is Kind.PEER:
        return _peer_codes(acc, chunks)
    if kind is Kind.ID:
        return names.map(acc.ids.categorical(chunks))
    if kind is Kind.LABEL:
        return acc.labels.categorical(chunks)
    if kind is Kind.IDS:
        get = names.id_to_name.get
        return pd.Series([list(map(get, ids, ids)) for chunk in chunks for ids in chunk],
                         dtype=object)
    return joined(chunks, DTYPES[kind])


def table_frame(table: Table, acc: Columns, names: IdMapper) -> pd.DataFrame:
    """A column-wise table: its chunks joined, its derived columns computed."""
    chunks = acc.chunks[table.name]
    columns: dict[str, Any] = {}
    for col in table.columns:
        columns[col.name] = col.derive(columns) if col.derive is not None else \
            _column(col, chunks[col.name], acc, names)
    return pd.DataFrame(columns, copy=False)  # no consolidation: a copy of every column


def row_frame(table: Table, rows: list[tuple[Any, ...]], names: IdMapper) -> pd.DataFrame:
    """A row-wise table: pandas infers each column's dtype; peer ids become names."""
    frame = pd.DataFrame(rows, columns=table.names)
    for col in table.columns:
        if col.kind is Kind.ID:
            frame[col.name] = names.map(frame[col.name])
    return frame


# ---------------------------------------------------------------------------------------------
# peers: the experiment's plan for each, and what its log says happened


def peers_frame(experiment: dict[str, Any], acc: Columns, num_pieces: int) -> pd.DataFrame:
    """One row per peer of the experiment, then per log whose peer it does not list."""
    listed = [p["name"] for p in experiment["peers"]]
    extra = [n for n in acc.starts if n not in set(listed)]
    plans = {p["name"]: p for p in experiment["peers"]}
    rows = [_peer_row(name, plans.get(name) or _plan_from_start(acc.starts[name]), acc,
                      num_pieces) for name in listed + extra]
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=["name", "group", "role"])
    return frame


def _peer_row(name: str, plan: dict[str, Any], acc: Columns,
              num_pieces: int) -> dict[str, Any]:
    start = acc.starts.get(name, {})
    up_cap = (plan.get("upload") or {})
    down_cap = (plan.get("download") or {})
    departure = plan.get("departure") or {}
    arrival = plan.get("arrival")
    start_t = start.get("t", np.nan)
    if arrival is None:
        arrival = start_t
    complete = acc.completes.get(name)
    stop = acc.stops.get(name)
    if stop is not None and stop[2] is not None:
        up, down = stop[2], stop[3]
    else:
        up, down = acc.last_totals.get(name, (0, 0))
    left = stop[0] if stop is not None else acc.last_t.get(name, np.nan)
    complete_t = complete[0] if complete else np.nan
    return {
        "name": name, "group": plan.get("group") or start.get("group") or "",
        "role": plan.get("role"), "index": plan.get("index"), "peer_id": plan.get("peer_id"),
        "upload_rate": _num(up_cap.get("rate")), "upload_burst": _num(up_cap.get("burst")),
        "download_rate": _num(down_cap.get("rate")),
        "download_burst": _num(down_cap.get("burst")),
        "choker": (plan.get("choker") or {}).get("name"),
        "picker": (plan.get("picker") or {}).get("name"),
        "arrival": float(arrival), "departure_kind": departure.get("kind"),
        "departure_time": _num(departure.get("time")),
        "start": start_t,
        "have_at_start": _have_count(start.get("have")) if start else np.nan,
        "complete": complete_t, "completion_time": complete_t - float(arrival),
        "stop": stop[0] if stop else np.nan, "stop_reason": stop[1] if stop else None,
        "left": left, "up": up, "down": down,
    }


def _plan_from_start(start: dict[str, Any]) -> dict[str, Any]:
    return {"group": start.get("group"), "role": start.get("role"),
            "peer_id": start.get("peer_id"), "upload": start.get("upload"),
            "download": start.get("download"), "choker": start.get("choker"),
            "picker": start.get("picker"), "arrival": start.get("t")}


def _num(value: Any) -> float:
    return np.nan if value is None else float(value)


def _have_count(have: Any) -> int:
    if isinstance(have, list):
        return len(have)
    if isinstance(have, int) and not isinstance(have, bool):
        return have
    return 0


def initial_pieces(peers: pd.DataFrame, acc: Columns, num_pieces: int,
                   warnings: list[str]) -> dict[str, np.ndarray]:
    """Pieces each peer held when it started: every piece for an initial seed, else ``have``."""
    everything = np.arange(num_pieces, dtype=np.int64)
    out: dict[str, np.ndarray] = {}
    for name, role in zip(peers["name"], peers["role"], strict=True):
        have = acc.starts.get(name, {}).get("have")
        if role == "seed" or have == num_pieces:
            out[name] = everything
        elif isinstance(have, list):
            out[name] = np.asarray(have, dtype=np.int64)
        elif have in (None, 0):
            out[name] = everything[:0]
        else:
            warnings.append(f"{name}: start 'have' {have!r} does not say which pieces; "
                            "counted as none for availability")
            out[name] = everything[:0]
    return out
