"""Read a run directory into pandas DataFrames (docs/run-directory.md, docs/log-schema.md).

``load_run(path)`` is the one entry point. It reads ``experiment.json`` (who is who), every
``peers/*.jsonl`` event log, ``tracker.jsonl``, ``resources.jsonl``, ``summary.json`` and
``meta.json``, and returns a ``Run`` whose tables a researcher uses directly in a notebook.

Speed matters (a 100-peer run logs millions of events), so each log is parsed in one pass with
``json.loads`` per line straight into column lists (measured faster here than
``pandas.read_json(lines=True)``, which builds a column of dicts for the nested fields), with the
garbage collector paused while millions of small objects are made. Counter samples are kept only
for the neighbours whose counts changed since the previous sample: the counters are cumulative,
so an omitted row means "no bytes in that interval" and nothing is lost.
"""

from __future__ import annotations

import gc
import itertools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from peer.errors import TestbedError

KNOWN_SCHEMAS = frozenset({1})
EXTERNAL = "external"
"""The group of a peer id that ``experiment.json`` does not name (a real client)."""


class AnalysisError(TestbedError, ValueError):
    """A run directory or log the analysis cannot read; the message names the file (and line)."""


@dataclass(slots=True, kw_only=True)
class Run:
    """One run directory as tables. Times are run seconds (t = 0 is the run's start)."""

    path: Path
    experiment: dict[str, Any]
    summary: dict[str, Any] | None
    meta: dict[str, Any] | None
    peers: pd.DataFrame
    pieces: pd.DataFrame
    chokes: pd.DataFrame
    transfers: pd.DataFrame
    totals: pd.DataFrame
    connections: pd.DataFrame
    announces: pd.DataFrame
    tracker: pd.DataFrame
    resources: pd.DataFrame
    file_size: int
    piece_length: int
    num_pieces: int
    end: float
    """The last instant the run saw: the latest event or resource sample."""
    initial_pieces: dict[str, np.ndarray] = field(default_factory=dict)
    """Pieces each peer held when it started: every piece for an initial seed, else ``have``."""
    warnings: list[str] = field(default_factory=list)

    @property
    def group_of(self) -> dict[str, str]:
        """Peer name -> group, for every peer in ``peers`` (external ids included)."""
        return dict(zip(self.peers["name"], self.peers["group"], strict=True))

    @property
    def leechers(self) -> pd.DataFrame:
        return self.peers[self.peers["role"] == "leecher"]

    @property
    def seeds(self) -> pd.DataFrame:
        """The initial seeds (role ``seed`` in the experiment)."""
        return self.peers[self.peers["role"] == "seed"]


def load_run(path: str | Path) -> Run:
    """Read the run directory ``path``; raises ``AnalysisError`` on what cannot be read."""
    root = Path(path)
    if not root.is_dir():
        raise AnalysisError(f"{root}: not a run directory (no such directory)")
    exp_path = root / "experiment.json"
    if not exp_path.is_file():
        raise AnalysisError(f"{root}: not a run directory (no experiment.json)")
    experiment = _read_json(exp_path, required=True)
    if not isinstance(experiment, dict) or not isinstance(experiment.get("peers"), list):
        raise AnalysisError(f"{exp_path}: not an experiment (no 'peers' list)")
    warnings: list[str] = []
    summary = _read_json(root / "summary.json", required=False, warnings=warnings)
    meta = _read_json(root / "meta.json", required=False, warnings=warnings)

    plans = {p["name"]: p for p in experiment["peers"]}
    id_to_name = {p["peer_id"]: p["name"] for p in experiment["peers"]}

    acc = _Columns()
    logs = sorted((root / "peers").glob("*.jsonl")) if (root / "peers").is_dir() else []
    gc_was_enabled = gc.isenabled()
    gc.disable()  # millions of small containers: the cyclic GC would only rescan them
    try:
        for log in logs:
            _read_peer_log(log, acc, warnings)
        tracker_rows = _read_tracker_log(root / "tracker.jsonl", warnings)
        resource_rows = _read_resources(root / "resources.jsonl", warnings)
    finally:
        if gc_was_enabled:
            gc.enable()

    for info in acc.starts.values():
        # A log whose peer the experiment does not list still names itself in its start line.
        if info.get("peer_id") and info["name"] not in plans:
            id_to_name.setdefault(info["peer_id"], info["name"])

    names = _IdMapper(id_to_name)
    pieces = _pieces_frame(acc, names)
    chokes = _chokes_frame(acc, names)
    transfers = _transfers_frame(acc, names)
    totals = pd.DataFrame({"t": np.asarray(acc.tot_t, dtype=float),
                           "peer": _category(acc.tot_peer),
                           "up": np.asarray(acc.tot_up, dtype=np.int64),
                           "down": np.asarray(acc.tot_down, dtype=np.int64)})
    connections = _connections_frame(acc, names)
    announces = pd.DataFrame(acc.ann, columns=["t", "peer", "event", "ok", "peers", "interval",
                                               "complete", "incomplete", "error"])
    tracker = pd.DataFrame(tracker_rows, columns=["t", "peer", "addr", "event", "uploaded",
                                                  "downloaded", "left", "complete", "incomplete",
                                                  "failure"])
    if len(tracker):
        tracker["peer"] = names.map(tracker["peer"])
    resources = pd.DataFrame(resource_rows, columns=["t", "proc", "pid", "cpu", "rss", "host_cpu"])

    content = experiment.get("content") or {}
    first_start = next(iter(acc.starts.values()), {})
    file_size = int(content.get("size") or first_start.get("length") or 0)
    piece_length = int(content.get("piece_length") or first_start.get("piece_length") or 0)
    num_pieces = int(first_start.get("pieces") or
                     (math.ceil(file_size / piece_length) if piece_length else 0))
    end = max([acc.last_t.get(n, 0.0) for n in acc.last_t] +
              [resource_rows[-1][0] if resource_rows else 0.0, 0.0])

    peers = _peers_frame(experiment, acc, names, num_pieces)
    initial = _initial_pieces(peers, acc, num_pieces, warnings)
    for frame, cols in ((pieces, ("from_first",)), (chokes, ("neighbour",)),
                        (transfers, ("neighbour",)), (connections, ("neighbour",))):
        for col in cols:
            names.note_unknown(frame[col])
    groups = dict(zip(peers["name"], peers["group"], strict=True))
    if names.unknown:
        externals = pd.DataFrame({"name": sorted(names.unknown), "group": EXTERNAL,
                                  "role": EXTERNAL})
        externals["peer_id"] = externals["name"]
        peers = pd.concat([peers, externals], ignore_index=True)
        groups.update(dict.fromkeys(names.unknown, EXTERNAL))
    for frame, col, gcol in ((pieces, "peer", "group"), (pieces, "from_first", "from_group"),
                             (chokes, "peer", "group"), (chokes, "neighbour", "neighbour_group"),
                             (transfers, "peer", "group"),
                             (transfers, "neighbour", "neighbour_group"),
                             (connections, "peer", "group"),
                             (connections, "neighbour", "neighbour_group")):
        frame.insert(frame.columns.get_loc(col) + 1, gcol, _lookup(frame[col], groups))

    return Run(path=root, experiment=experiment, summary=summary, meta=meta, peers=peers,
               pieces=pieces, chokes=chokes, transfers=transfers, totals=totals,
               connections=connections, announces=announces, tracker=tracker,
               resources=resources, file_size=file_size, piece_length=piece_length,
               num_pieces=num_pieces, end=float(end), initial_pieces=initial,
               warnings=warnings)


# ---------------------------------------------------------------------------------------------
# reading


def _read_json(path: Path, *, required: bool, warnings: list[str] | None = None) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise AnalysisError(f"{path}: missing") from None
        return None
    except OSError as exc:
        raise AnalysisError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        message = f"{path}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        if required:
            raise AnalysisError(message) from None
        assert warnings is not None
        warnings.append(message + "; ignored")
        return None


def _lines(path: Path, warnings: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Parsed (line number, object) pairs; a malformed last line is dropped with a warning.

    A peer killed with SIGKILL may leave its last line half written (docs/log-schema.md); any
    other malformed line means a damaged file, and is an error naming the file and line.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AnalysisError(f"{path}: cannot read: {exc.strerror}") from None
    raw_lines = data.split(b"\n")
    last = len(raw_lines)
    while last > 0 and not raw_lines[last - 1].strip():
        last -= 1
    loads = json.loads
    for i in range(last):
        raw = raw_lines[i]
        try:
            rec = loads(raw)
        except ValueError as exc:
            if not raw.strip():
                continue
            if i == last - 1:
                warnings.append(f"{path}:{i + 1}: truncated last line skipped "
                                f"({len(raw)} bytes: {_short(exc)})")
                break
            raise AnalysisError(f"{path}:{i + 1}: malformed JSON line: {_short(exc)}") from None
        if not isinstance(rec, dict):
            raise AnalysisError(f"{path}:{i + 1}: expected a JSON object, "
                                f"got {type(rec).__name__}")
        yield i + 1, rec


def _short(exc: Exception) -> str:
    return str(exc).split(":")[0] if isinstance(exc, json.JSONDecodeError) else str(exc)


def _check_schema(path: Path, lineno: int, rec: dict[str, Any]) -> None:
    schema = rec.get("schema")
    if schema not in KNOWN_SCHEMAS:
        known = ", ".join(str(s) for s in sorted(KNOWN_SCHEMAS))
        raise AnalysisError(
            f"{path}:{lineno}: event log schema {schema!r} is not one this analysis reads "
            f"(known: {known}); use a testbed version that matches the run")


class _Columns:
    """Column lists filled while reading the peer logs, one list per future DataFrame column."""

    def __init__(self) -> None:
        self.starts: dict[str, dict[str, Any]] = {}
        self.completes: dict[str, tuple[float, Any, Any]] = {}
        self.stops: dict[str, tuple[float, Any, Any, Any]] = {}
        self.last_t: dict[str, float] = {}
        self.last_totals: dict[str, tuple[int, int]] = {}
        # pieces
        self.pc_t: list[float] = []
        self.pc_peer: list[str] = []
        self.pc_index: list[int] = []
        self.pc_start: list[Any] = []
        self.pc_size: list[int] = []
        self.pc_ok: list[bool] = []
        self.pc_from: list[list[str]] = []
        self.pc_blame: list[list[str]] = []
        # chokes: one row per neighbour per rechoke
        self.ch: dict[str, list[Any]] = {c: [] for c in _CHOKE_COLUMNS}
        self.ch_until: list[float] = []
        # transfers (changed counter entries only)
        self.tr_t: list[float] = []
        self.tr_t0: list[float] = []
        self.tr_peer: list[str] = []
        self.tr_nb: list[str] = []
        self.tr_up: list[int] = []
        self.tr_down: list[int] = []
        self.tr_dup: list[int] = []
        self.tr_ddown: list[int] = []
        # totals
        self.tot_t: list[float] = []
        self.tot_peer: list[str] = []
        self.tot_up: list[int] = []
        self.tot_down: list[int] = []
        self.conn: list[tuple[Any, ...]] = []
        self.ann: list[tuple[Any, ...]] = []


def _read_peer_log(path: Path, acc: _Columns, warnings: list[str]) -> None:
    records = _lines(path, warnings)
    name = path.stem
    first = next(records, None)
    if first is None:
        warnings.append(f"{path}: no events")
        return
    lineno, rec = first
    if rec.get("ev") == "start":
        _check_schema(path, lineno, rec)
        name = str(rec.get("name") or name)
    else:
        warnings.append(f"{path}:{lineno}: first event is {rec.get('ev')!r}, not 'start'")
    records = itertools.chain([first], records)
    prev_n: dict[str, list[int]] = {}
    prev_t: float | None = None
    rechoke_times: list[float] = []
    first_row = len(acc.ch_until)
    ch = acc.ch
    c_t, c_peer, c_round, c_trig, c_seed, c_rot = (ch[c].append for c in _CHOKE_COLUMNS[:6])
    c_nb, c_down, c_up, c_int, c_chk, c_snub, c_dec, c_why = (ch[c].append
                                                             for c in _CHOKE_COLUMNS[6:])
    row_rechoke: list[int] = []
    zero = [0, 0]
    t = 0.0
    # Bound methods hoisted out of the loop: this loop runs once per event of the run.
    tr_t, tr_t0, tr_peer, tr_nb = acc.tr_t.append, acc.tr_t0.append, acc.tr_peer.append, \
        acc.tr_nb.append
    tr_up, tr_down, tr_dup, tr_ddown = acc.tr_up.append, acc.tr_down.append, \
        acc.tr_dup.append, acc.tr_ddown.append
    try:
        for lineno, rec in records:  # noqa: B007 - lineno names the line in errors
            ev = rec["ev"]
            t = rec["t"]
            if ev == "counters":
                t0 = t if prev_t is None else prev_t
                for nb, val in rec["n"].items():
                    old = prev_n.get(nb, zero)
                    if old != val:
                        tr_t(t)
                        tr_t0(t0)
                        tr_peer(name)
                        tr_nb(nb)
                        tr_up(val[0])
                        tr_down(val[1])
                        tr_dup(val[0] - old[0])
                        tr_ddown(val[1] - old[1])
                        prev_n[nb] = val
                prev_t = t
                acc.tot_t.append(t)
                acc.tot_peer.append(name)
                acc.tot_up.append(rec["up"])
                acc.tot_down.append(rec["down"])
                acc.last_totals[name] = (rec["up"], rec["down"])
            elif ev == "piece":
                acc.pc_t.append(t)
                acc.pc_peer.append(name)
                acc.pc_index.append(rec["index"])
                acc.pc_start.append(rec.get("start"))
                acc.pc_size.append(rec["size"])
                acc.pc_ok.append(bool(rec["ok"]))
                acc.pc_from.append(rec.get("from") or [])
                acc.pc_blame.append(rec.get("blame") or [])
            elif ev == "rechoke":
                k = len(rechoke_times)
                rechoke_times.append(t)
                rnd, trig = rec["round"], rec["trigger"]
                seed_state = bool(rec.get("seed", False))
                rotated = bool(rec.get("optimistic_rotated", False))
                for nb in rec["nbrs"]:
                    c_t(t)
                    c_peer(name)
                    c_round(rnd)
                    c_trig(trig)
                    c_seed(seed_state)
                    c_rot(rotated)
                    c_nb(nb["peer"])
                    c_down(nb["down_rate"])
                    c_up(nb["up_rate"])
                    c_int(nb["interested"])
                    c_chk(nb["choking_us"])
                    c_snub(nb["snubbed"])
                    c_dec(nb["decision"])
                    c_why(nb.get("reason"))
                    row_rechoke.append(k)
            elif ev in ("conn_open", "conn_close"):
                opened = ev == "conn_open"
                acc.conn.append((t, name, "open" if opened else "close", rec["peer"],
                                 rec.get("addr"), rec.get("dir"), rec.get("reason"),
                                 rec.get("up"), rec.get("down")))
            elif ev == "announce":
                acc.ann.append((t, name, rec["event"], rec["ok"], rec.get("peers"),
                                rec.get("interval"), rec.get("complete"), rec.get("incomplete"),
                                rec.get("error")))
            elif ev == "start":
                acc.starts[name] = {**rec, "name": name}
                prev_t = t
            elif ev == "complete":
                acc.completes[name] = (t, rec.get("downloaded"), rec.get("elapsed"))
            elif ev == "stop":
                acc.stops[name] = (t, rec.get("reason"), rec.get("up"), rec.get("down"))
            # Other events are ignored: a newer peer may add events without a schema bump.
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else f"bad field: {exc}"
        raise AnalysisError(f"{path}:{lineno}: {rec.get('ev')!r} event: {what}") from None
    end = acc.stops[name][0] if name in acc.stops else t
    acc.last_t[name] = t
    # A decision holds until the peer's next rechoke, or until it left (the end of its log).
    until = [*rechoke_times[1:], end]
    acc.ch_until.extend(until[k] for k in row_rechoke)
    assert len(acc.ch_until) == first_row + len(row_rechoke)


def _read_tracker_log(path: Path, warnings: list[str]) -> list[tuple[Any, ...]]:
    if not path.is_file():
        return []
    rows = []
    for lineno, rec in _lines(path, warnings):
        ev = rec.get("ev")
        if ev == "start":
            _check_schema(path, lineno, rec)
        elif ev == "announce":
            rows.append((rec.get("t"), rec.get("peer"), rec.get("addr"), rec.get("event"),
                         rec.get("uploaded"), rec.get("downloaded"), rec.get("left"),
                         rec.get("complete"), rec.get("incomplete"), rec.get("failure")))
    return rows


def _read_resources(path: Path, warnings: list[str]) -> list[tuple[Any, ...]]:
    if not path.is_file():
        return []
    rows = []
    for lineno, rec in _lines(path, warnings):
        try:
            t, host = rec["t"], rec.get("host_cpu")
            for proc, p in (rec.get("procs") or {}).items():
                rows.append((t, proc, p.get("pid"), p.get("cpu"), p.get("rss"), host))
        except (KeyError, AttributeError, TypeError) as exc:
            raise AnalysisError(f"{path}:{lineno}: bad resource sample: {exc}") from None
    return rows


# ---------------------------------------------------------------------------------------------
# frames


class _IdMapper:
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


def _lookup(series: pd.Series, table: dict[str, str]) -> pd.Series:
    cat = pd.Categorical(series)
    groups = [table.get(c, EXTERNAL) for c in cat.categories]
    codes = np.asarray(cat.codes)
    uniq = sorted(set(groups))
    gcodes = np.asarray([uniq.index(g) for g in groups] + [-1], dtype=np.int64)
    return pd.Series(pd.Categorical.from_codes(gcodes[codes], categories=uniq),
                     index=series.index)


def _pieces_frame(acc: _Columns, names: _IdMapper) -> pd.DataFrame:
    table = names.id_to_name
    froms = [[table.get(x, x) for x in f] for f in acc.pc_from]
    return pd.DataFrame({
        "t": np.asarray(acc.pc_t, dtype=float),
        "peer": _category(acc.pc_peer),
        "index": np.asarray(acc.pc_index, dtype=np.int64),
        "start": np.asarray([np.nan if s is None else s for s in acc.pc_start], dtype=float),
        "size": np.asarray(acc.pc_size, dtype=np.int64),
        "ok": np.asarray(acc.pc_ok, dtype=bool),
        "from": pd.Series(froms, dtype=object),
        "from_first": pd.Series([f[0] if f else None for f in froms], dtype=object),
        "blame": pd.Series([[table.get(x, x) for x in b] for b in acc.pc_blame], dtype=object),
    })


_CHOKE_COLUMNS = ["t", "peer", "round", "trigger", "seed_state", "optimistic_rotated",
                  "neighbour", "down_rate", "up_rate", "interested", "choking_us", "snubbed",
                  "decision", "reason"]


def _chokes_frame(acc: _Columns, names: _IdMapper) -> pd.DataFrame:
    ch = acc.ch
    frame = pd.DataFrame({
        "t": np.asarray(ch["t"], dtype=float), "peer": _category(ch["peer"]),
        "round": np.asarray(ch["round"], dtype=np.int64), "trigger": _category(ch["trigger"]),
        "seed_state": np.asarray(ch["seed_state"], dtype=bool),
        "optimistic_rotated": np.asarray(ch["optimistic_rotated"], dtype=bool),
        "neighbour": names.map(ch["neighbour"]),
        "down_rate": np.asarray(ch["down_rate"], dtype=float),
        "up_rate": np.asarray(ch["up_rate"], dtype=float),
        "interested": np.asarray(ch["interested"], dtype=bool),
        "choking_us": np.asarray(ch["choking_us"], dtype=bool),
        "snubbed": np.asarray(ch["snubbed"], dtype=bool),
        "decision": _category(ch["decision"]), "reason": _category(ch["reason"]),
    })
    frame["until"] = np.asarray(acc.ch_until, dtype=float)
    frame["duration"] = frame["until"] - frame["t"]
    return frame


def _category(values: Any) -> pd.Series:
    """Repeated strings (names, decisions) as a pandas category: a fraction of the memory,
    and group-bys on them are much faster."""
    return pd.Series(pd.Categorical(values))


def _transfers_frame(acc: _Columns, names: _IdMapper) -> pd.DataFrame:
    t = np.asarray(acc.tr_t, dtype=float)
    t0 = np.asarray(acc.tr_t0, dtype=float)
    d_up = np.asarray(acc.tr_dup, dtype=np.int64)
    d_down = np.asarray(acc.tr_ddown, dtype=np.int64)
    dt = t - t0
    with np.errstate(divide="ignore", invalid="ignore"):
        rate_up = np.where(dt > 0, d_up / dt, np.nan)
        rate_down = np.where(dt > 0, d_down / dt, np.nan)
    return pd.DataFrame({
        "t": t, "t0": t0, "peer": _category(acc.tr_peer),
        "neighbour": names.map(acc.tr_nb),
        "up": np.asarray(acc.tr_up, dtype=np.int64), "down": np.asarray(acc.tr_down, np.int64),
        "d_up": d_up, "d_down": d_down, "rate_up": rate_up, "rate_down": rate_down,
    })


def _connections_frame(acc: _Columns, names: _IdMapper) -> pd.DataFrame:
    frame = pd.DataFrame(acc.conn, columns=["t", "peer", "event", "neighbour", "addr", "dir",
                                            "reason", "up", "down"])
    frame["neighbour"] = names.map(frame["neighbour"])
    return frame


def _have_count(have: Any, num_pieces: int) -> int:
    if isinstance(have, list):
        return len(have)
    if isinstance(have, int) and not isinstance(have, bool):
        return have
    return 0


def _initial_pieces(peers: pd.DataFrame, acc: _Columns, num_pieces: int,
                    warnings: list[str]) -> dict[str, np.ndarray]:
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


def _peers_frame(experiment: dict[str, Any], acc: _Columns, names: _IdMapper,
                 num_pieces: int) -> pd.DataFrame:
    rows = []
    listed = [p["name"] for p in experiment["peers"]]
    extra = [n for n in acc.starts if n not in set(listed)]
    plans = {p["name"]: p for p in experiment["peers"]}
    for name in listed + extra:
        plan = plans.get(name) or _plan_from_start(acc.starts[name])
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
        rows.append({
            "name": name, "group": plan.get("group") or start.get("group") or "",
            "role": plan.get("role"), "index": plan.get("index"),
            "peer_id": plan.get("peer_id"),
            "upload_rate": _num(up_cap.get("rate")), "upload_burst": _num(up_cap.get("burst")),
            "download_rate": _num(down_cap.get("rate")),
            "download_burst": _num(down_cap.get("burst")),
            "choker": (plan.get("choker") or {}).get("name"),
            "picker": (plan.get("picker") or {}).get("name"),
            "arrival": float(arrival), "departure_kind": departure.get("kind"),
            "departure_time": _num(departure.get("time")),
            "start": start_t,
            "have_at_start": _have_count(start.get("have"), num_pieces) if start else np.nan,
            "complete": complete_t, "completion_time": complete_t - float(arrival),
            "stop": stop[0] if stop else np.nan, "stop_reason": stop[1] if stop else None,
            "left": left, "up": up, "down": down,
        })
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=["name", "group", "role"])
    return frame


def _plan_from_start(start: dict[str, Any]) -> dict[str, Any]:
    return {"group": start.get("group"), "role": start.get("role"),
            "peer_id": start.get("peer_id"), "upload": start.get("upload"),
            "download": start.get("download"), "choker": start.get("choker"),
            "picker": start.get("picker"), "arrival": start.get("t")}


def _num(value: Any) -> float:
    return np.nan if value is None else float(value)
