"""Read a run directory into pandas DataFrames (docs/run-directory.md, docs/log-schema.md).

``load_run(path)`` is the one entry point. It reads ``experiment.json`` (who is who), every
``peers/*.jsonl`` event log, ``tracker.jsonl``, ``resources.jsonl``, ``summary.json`` and
``meta.json``, and returns a ``Run`` whose tables a researcher uses directly in a notebook.

Speed matters (a 100-peer run logs a million events, hundreds of MB): each log is decoded in
one call (its lines joined into one JSON array; orjson when installed, else the standard
library), the big lists of ``rechoke`` and ``counters`` lines through pandas' CSV parser (see
``_split_lists``), two logs at a time in worker threads (and a big run's second half of logs in
a forked process: ``_read_peer_logs``); its events are then grouped by kind and
each kind turned into columns at once (numpy ``fromiter`` / ``repeat``, strings as integer
codes, no per-row appends), with the garbage collector paused while millions of small objects
are made. A ``counters`` line names only the neighbours whose counts changed
(docs/log-schema.md): the counters are cumulative, so a missing entry means "no bytes in that
interval" and nothing is lost.
"""

from __future__ import annotations

import gc
import io
import json
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from peer.config import PeerConfig
from peer.errors import TestbedError

try:  # optional: about three times faster than the standard library on these logs
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - depends on the environment
    from json import loads as _loads

KNOWN_SCHEMAS = frozenset({1})
DECODE_THREADS = 2
"""Logs decoded at once, beside the main thread (see ``_decode_peer_log``)."""
PARALLEL = True
"""Read a big run's logs in two processes (``_read_peer_logs``); False: in this one only."""
PARALLEL_MIN_BYTES = 64 * 2**20
"""Below this many bytes of peer logs, forking costs more than it saves."""
DEFAULT_COUNTERS_PERIOD = float(PeerConfig.__dataclass_fields__["counters_period"].default)
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

    logs = sorted((root / "peers").glob("*.jsonl")) if (root / "peers").is_dir() else []
    gc_was_enabled = gc.isenabled()
    gc.disable()  # millions of small containers: the cyclic GC would only rescan them
    try:
        acc = _read_peer_logs(logs, warnings)
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
    totals = _totals_frame(acc)
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


def _read_lines(path: Path) -> list[bytes]:
    """The file's lines, without trailing blank ones."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AnalysisError(f"{path}: cannot read: {exc.strerror}") from None
    raw_lines = data.split(b"\n")
    last = len(raw_lines)
    while last > 0 and not raw_lines[last - 1].strip():
        last -= 1
    del raw_lines[last:]
    return raw_lines


def _records(path: Path, warnings: list[str],
             raw_lines: list[bytes] | None = None) -> tuple[list[Any], list[int] | None]:
    """Every object of a JSON-lines file, and their 1-based line numbers (None: record k is on
    line k + 1). A malformed last line is dropped with a warning.

    Fast path: the lines joined into one JSON array and decoded in a single call, which spares
    a million calls' overhead. Anything unusual (a truncated or malformed line, blank lines in
    the middle) falls back to decoding line by line, which names the bad line.
    """
    if raw_lines is None:
        raw_lines = _read_lines(path)
    if not raw_lines:
        return [], None
    try:
        records = _loads(b"[" + b",".join(raw_lines) + b"]")
        numbers = None
    except ValueError:
        records, numbers = _records_by_line(path, raw_lines, warnings)
    for k, rec in enumerate(records):
        if type(rec) is not dict:
            line = k + 1 if numbers is None else numbers[k]
            raise AnalysisError(f"{path}:{line}: expected a JSON object, "
                                f"got {type(rec).__name__}")
    return records, numbers


# Two kinds of lines are most of a log's bytes: ``rechoke`` (20 neighbour objects of 9 fields
# per line) and ``counters`` (a map of neighbour -> [up, down]). Decoding them into millions of
# dicts and lists is most of the loading time, so while they are in exactly the form
# peer/eventlog.py writes (compact JSON, these keys in this order, no escapes) their lists are
# turned into CSV with two byte replacements and read by pandas' C parser, which makes no
# Python object per field; the rest of each line is decoded as JSON. The rows are checked
# (counts of every key, field counts and types, the first and last row against a plain JSON
# decoding); on any doubt the file is decoded as plain JSON instead, so the tables never depend
# on which path was taken.
_NBR_KEYS = ("peer", "down_rate", "up_rate", "interested", "choking_us", "snubbed", "decision",
             "reason", "rate")
_NBR_CSV_NAMES = [name for key in _NBR_KEYS for name in (f"key_{key}", key)]
_NBR_DTYPES: dict[str, Any] = {
    "peer": "category", "down_rate": float, "up_rate": float, "interested": bool,
    "choking_us": bool, "snubbed": bool, "decision": "category", "reason": "category",
    "rate": float}


@dataclass(frozen=True, slots=True)
class _ListForm:
    """Where a kind of line keeps its list, and how that list becomes CSV."""

    mark: bytes  # in every such line
    opening: bytes  # the list's key and opening bracket; the list closes the line
    closing: bytes
    separator: bytes  # between two items, up to the first key of the next


_RECHOKE = _ListForm(b'"ev":"rechoke"', b',"nbrs":[', b"]}", b'},{"peer":')
_COUNTERS = _ListForm(b'"ev":"counters"', b',"n":{', b"}}", b'],"')


def _split_lists(raw_lines: list[bytes], form: _ListForm,
                 parse: Any) -> pd.DataFrame | None:
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
        return pd.DataFrame({c: pd.Series(dtype=_NBR_DTYPES[c]) for c in _NBR_KEYS})
    text = b",".join(bodies)
    if b"\\" in text or not (text.startswith(b'{"peer":') and text.endswith(b"}")):
        return None
    if text.count(b'":') != len(_NBR_KEYS) * expected:  # every row has all keys, no more
        return None
    # {"peer":"A","down_rate":1.5,...},{"peer":"B",...}  ->  "peer":"A":"down_rate":1.5:...
    # one row per neighbour, ':' between fields, keys in the even columns (not read).
    csv_text = text[1:-1].replace(b'},{"', b'\n"').replace(b',"', b':"')
    frame = _read_csv(csv_text, sep=":", names=_NBR_CSV_NAMES, usecols=list(_NBR_KEYS),
                      dtype=_NBR_DTYPES, true_values=["true"], false_values=["false"],
                      na_values=["null"])
    if frame is None or len(frame) != expected:
        return None
    for key in ("peer", "decision", "reason"):
        if any('"' in c for c in frame[key].cat.categories):
            return None
    for key in ("peer", "decision", "down_rate", "up_rate"):
        if frame[key].isna().any():
            return None
    # The key order is one dict literal in the writer: check it on the first and last rows.
    for row, raw in ((0, bodies[0]), (len(frame) - 1, bodies[-1])):
        items = _loads(b"[" + raw + b"]")
        item = items[0] if row == 0 else items[-1]
        if list(item) != list(_NBR_KEYS) or not _same_row(item, frame, row):
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
    first = _loads(b"{" + bodies[0] + b"}")
    peer, pair = next(iter(first.items()))
    if (frame["peer"].iloc[0], int(frame["up"].iloc[0]), int(frame["down"].iloc[0])) != \
            (peer, *pair):
        return None
    return frame


def _records_by_line(path: Path, raw_lines: list[bytes],
                     warnings: list[str]) -> tuple[list[Any], list[int]]:
    """Line-by-line decoding: a peer killed with SIGKILL may leave its last line half written
    (docs/log-schema.md); any other malformed line means a damaged file, an error naming it."""
    records: list[Any] = []
    numbers: list[int] = []
    last = len(raw_lines)
    for i, raw in enumerate(raw_lines):
        if not raw.strip():
            continue
        try:
            rec = _loads(raw)
        except ValueError as exc:
            if i == last - 1:
                warnings.append(f"{path}:{i + 1}: truncated last line skipped "
                                f"({len(raw)} bytes: {_short(exc)})")
                break
            raise AnalysisError(f"{path}:{i + 1}: malformed JSON line: {_short(exc)}") from None
        records.append(rec)
        numbers.append(i + 1)
    return records, numbers


def _short(exc: Exception) -> str:
    return str(exc).split(":")[0]


def _check_schema(path: Path, lineno: int, rec: dict[str, Any]) -> None:
    schema = rec.get("schema")
    if schema not in KNOWN_SCHEMAS:
        known = ", ".join(str(s) for s in sorted(KNOWN_SCHEMAS))
        raise AnalysisError(
            f"{path}:{lineno}: event log schema {schema!r} is not one this analysis reads "
            f"(known: {known}); use a testbed version that matches the run")


_CHOKE_COLUMNS = ["t", "peer", "round", "trigger", "seed_state", "optimistic_rotated",
                  "neighbour", "down_rate", "up_rate", "interested", "choking_us", "snubbed",
                  "decision", "reason", "rate", "until"]
_TRANSFER_COLUMNS = ["t", "t0", "peer", "neighbour", "up", "down", "d_up", "d_down"]
_PIECE_COLUMNS = ["t", "peer", "index", "start", "size", "ok", "from", "blame"]
_TOTAL_COLUMNS = ["t", "peer", "up", "down"]

# Fields an event cannot do without (docs/log-schema.md); used to name the line at fault.
_REQUIRED = {"counters": ("t", "up", "down", "n"), "piece": ("t", "index", "size", "ok"),
             "rechoke": ("t", "round", "trigger", "nbrs"), "conn_open": ("t", "peer"),
             "conn_close": ("t", "peer"), "announce": ("t", "event", "ok"),
             "start": ("t",), "complete": ("t",), "stop": ("t",)}
_REQUIRED_NBR = ("peer", "down_rate", "up_rate", "interested", "choking_us", "snubbed",
                 "decision")


class _Columns:
    """Columns filled while reading the peer logs: per future table, a list of per-file chunks
    (numpy arrays or lists) for each column, joined once at the end."""

    def __init__(self) -> None:
        self.starts: dict[str, dict[str, Any]] = {}
        self.completes: dict[str, tuple[float, Any, Any]] = {}
        self.stops: dict[str, tuple[float, Any, Any, Any]] = {}
        self.last_t: dict[str, float] = {}
        self.last_totals: dict[str, tuple[int, int]] = {}
        self.names: list[str] = []
        """One per log read; ``peer`` columns hold codes into it until the frames are built."""
        self.pc: dict[str, list[Any]] = {c: [] for c in _PIECE_COLUMNS}
        self.ch: dict[str, list[Any]] = {c: [] for c in _CHOKE_COLUMNS}
        self.tr: dict[str, list[Any]] = {c: [] for c in _TRANSFER_COLUMNS}
        self.tot: dict[str, list[Any]] = {c: [] for c in _TOTAL_COLUMNS}
        self.conn: list[tuple[Any, ...]] = []
        self.ann: list[tuple[Any, ...]] = []
        self.ids = _Interner()
        """Neighbour peer ids, shared by the chokes and transfers columns (as codes)."""
        self.labels = _Interner()
        """Triggers, decisions and reasons (as codes)."""


    def extend(self, other: _Columns) -> None:
        """Append ``other``'s columns (read from later logs) to ours, codes translated."""
        offset = len(self.names)
        self.names.extend(other.names)
        for mine, theirs in ((self.starts, other.starts), (self.completes, other.completes),
                             (self.stops, other.stops), (self.last_t, other.last_t),
                             (self.last_totals, other.last_totals)):
            mine.update(theirs)  # type: ignore[attr-defined]
        ids = self.ids.translation(other.ids)
        labels = self.labels.translation(other.labels)
        for table, theirs in ((self.pc, other.pc), (self.ch, other.ch), (self.tr, other.tr),
                              (self.tot, other.tot)):
            for column, chunks in theirs.items():
                if column == "peer":
                    chunks = [np.asarray(c) + offset for c in chunks]
                elif column == "neighbour":
                    chunks = [ids[np.asarray(c)] for c in chunks]
                elif column in ("trigger", "decision", "reason"):
                    chunks = [labels[np.asarray(c)] for c in chunks]
                table[column].extend(chunks)
        self.conn.extend(other.conn)
        self.ann.extend(other.ann)


class _Interner:
    """Strings -> small integer codes, so that millions of repeated strings become one int
    array and a handful of categories (a pandas category column, without hashing each row
    again at the end)."""

    def __init__(self) -> None:
        self.table: dict[str, int] = {}

    def codes(self, values: Any, count: int) -> np.ndarray:
        table = self.table
        add = table.setdefault
        # None (e.g. no reason) is code -1: a missing value in the category column.
        return np.fromiter((-1 if v is None else add(v, len(table)) for v in values),
                           np.int64, count)

    def from_categorical(self, column: pd.Series) -> np.ndarray:
        table = self.table
        cmap = np.asarray([table.setdefault(c, len(table)) for c in column.cat.categories]
                          + [-1], dtype=np.int64)
        return cmap[column.cat.codes.to_numpy()]

    def translation(self, other: _Interner) -> np.ndarray:
        """other's codes -> ours (adding its strings); index -1 stays -1."""
        table = self.table
        return np.asarray([table.setdefault(c, len(table)) for c in other.table] + [-1],
                          dtype=np.int64)

    def categorical(self, chunks: list[Any]) -> pd.Series:
        """The codes as a category column of the strings they stand for: sorted, and only
        those used (a bincount, cheaper than pandas' remove_unused_categories)."""
        codes = _joined(chunks, np.int64)
        names = list(self.table)
        used = np.bincount(codes[codes >= 0], minlength=len(names)) > 0
        order = sorted(np.flatnonzero(used).tolist(), key=names.__getitem__)
        remap = np.full(len(names) + 1, -1, dtype=np.int64)
        remap[order] = np.arange(len(order))
        return pd.Series(pd.Categorical.from_codes(remap[codes],
                                                   categories=[names[i] for i in order]))


def _counters_period(root: Path, stem: str) -> float:
    """The peer's ``counters_period`` from its config file in the run directory."""
    try:
        config = json.loads((root / "peers" / f"{stem}.json").read_text(encoding="utf-8"))
        period = float(config["counters_period"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_COUNTERS_PERIOD
    return period if period > 0 else DEFAULT_COUNTERS_PERIOD


def _read_logs_here(logs: list[Path]) -> tuple[_Columns, list[str]]:
    """The logs' columns, read in this process (two decoding threads beside this one)."""
    acc = _Columns()
    warnings: list[str] = []
    # In file order, so that the tables do not depend on which thread finished first.
    with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
        for decoded in pool.map(_decode_peer_log, logs):
            _read_peer_log(decoded, acc, warnings)
    return acc, warnings


def _read_in_child(logs: list[Path]) -> tuple[_Columns, list[str]]:
    gc.disable()  # as in the parent: the child is short-lived and makes millions of objects
    return _read_logs_here(logs)


def _read_peer_logs(logs: list[Path], warnings: list[str]) -> _Columns:
    """Every peer log's columns. A big run is split in two by bytes: a forked process reads
    the second half while this one reads the first, and the halves are joined in file order
    (the tables are the same either way; only the time differs)."""
    sizes = []
    for log in logs:
        try:
            sizes.append(log.stat().st_size)
        except OSError:
            sizes.append(0)
    total = sum(sizes)
    if not PARALLEL or total < PARALLEL_MIN_BYTES or (os.cpu_count() or 1) < 2 or \
            "fork" not in multiprocessing.get_all_start_methods():
        acc, found = _read_logs_here(logs)
        warnings.extend(found)
        return acc
    cut, running = len(logs), 0
    for i, size in enumerate(sizes):
        running += size
        if running >= total / 2:
            cut = i + 1
            break
    first, second = logs[:cut], logs[cut:]
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        future = pool.submit(_read_in_child, second)
        acc, found = _read_logs_here(first)
        warnings.extend(found)
        try:
            other, found = future.result()
        except BrokenProcessPool:  # the child died (e.g. out of memory): read it here
            other, found = _read_logs_here(second)
    warnings.extend(found)
    acc.extend(other)
    return acc


@dataclass(slots=True)
class _Decoded:
    """One peer log, decoded (``_decode_peer_log``), waiting to become columns."""

    path: Path
    records: list[dict[str, Any]]
    numbers: list[int] | None
    nbrs: pd.DataFrame | None
    pairs: pd.DataFrame | None
    warnings: list[str]


def _decode_peer_log(path: Path) -> _Decoded:
    """Read and decode one log. Runs in a worker thread: it touches nothing shared, and its
    heaviest parts (file reads, pandas' CSV tokenizer) release the GIL, so two logs are
    decoded while the main thread turns a third into columns."""
    warnings: list[str] = []
    raw_lines = _read_lines(path)
    nbrs = _split_lists(raw_lines, _RECHOKE, _nbrs_frame)
    pairs = _split_lists(raw_lines, _COUNTERS, _counter_frame)
    records, numbers = _records(path, warnings, raw_lines)
    if (nbrs is not None or pairs is not None) and not (
            _lined_up(records, "rechoke", "nbrs", nbrs) and
            _lined_up(records, "counters", "n", pairs)):
        # A line looked like a rechoke or counters line but was not one: the plain way.
        warnings = []
        nbrs = pairs = None
        records, numbers = _records(path, warnings)
    return _Decoded(path, records, numbers, nbrs, pairs, warnings)


def _read_peer_log(log: _Decoded, acc: _Columns, warnings: list[str]) -> None:
    path, records, numbers = log.path, log.records, log.numbers
    warnings.extend(log.warnings)
    if not records:
        warnings.append(f"{path}: no events")
        return
    name = path.stem
    first = records[0]
    line1 = 1 if numbers is None else numbers[0]
    if first.get("ev") == "start":
        _check_schema(path, line1, first)
        name = str(first.get("name") or name)
    else:
        warnings.append(f"{path}:{line1}: first event is {first.get('ev')!r}, not 'start'")
    try:
        _peer_columns(records, name, acc, _counters_period(path.parent.parent, path.stem),
                      log.nbrs, log.pairs)
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as exc:
        raise _locate(path, records, numbers, exc) from None


def _lined_up(records: list[dict[str, Any]], ev: str, key: str,
              frame: pd.DataFrame | None) -> bool:
    """Every line of kind ``ev`` (and only those) had its list read column-wise."""
    if frame is None:
        return True
    total = 0
    for r in records:
        if type(r.get(key)) is int:
            if r.get("ev") != ev:
                return False
            total += r[key]
        elif r.get("ev") == ev:
            return False
    return total == len(frame)


def _peer_columns(records: list[dict[str, Any]], name: str, acc: _Columns,
                  period: float, nbrs: pd.DataFrame | None,
                  pairs: pd.DataFrame | None) -> None:
    """One peer's events into ``acc``: grouped by kind, then each kind column-wise."""
    by_ev: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        ev = rec["ev"]
        bucket = by_ev.get(ev)
        if bucket is None:
            by_ev[ev] = [rec]
        else:
            bucket.append(rec)
    # Other events are ignored: a newer peer may add events without a schema bump.
    code = len(acc.names)
    acc.names.append(name)
    last_t = records[-1]["t"]
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
    first_t = starts[0]["t"] if starts else None
    _counter_columns(by_ev.get("counters", []), code, name, first_t, period, acc, pairs)
    _choke_columns(by_ev.get("rechoke", []), code, end, acc, nbrs)
    _piece_columns(by_ev.get("piece", []), code, acc)
    conns = sorted(by_ev.get("conn_open", []) + by_ev.get("conn_close", []),
                   key=lambda r: r["t"])
    for r in conns:
        acc.conn.append((r["t"], name, "open" if r["ev"] == "conn_open" else "close",
                         r["peer"], r.get("addr"), r.get("dir"), r.get("reason"), r.get("up"),
                         r.get("down")))
    for r in by_ev.get("announce", []):
        acc.ann.append((r["t"], name, r["event"], r["ok"], r.get("peers"), r.get("interval"),
                        r.get("complete"), r.get("incomplete"), r.get("error")))


def _counter_columns(recs: list[dict[str, Any]], code: int, name: str, first_t: float | None,
                     period: float, acc: _Columns, pairs: pd.DataFrame | None) -> None:
    """``counters`` lines -> totals rows and one transfers row per neighbour that moved.

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
    tot = acc.tot
    tot["t"].append(t)
    tot["peer"].append(np.full(n_lines, code, np.int64))
    tot["up"].append(np.fromiter(map(itemgetter("up"), recs), np.int64, n_lines))
    tot["down"].append(np.fromiter(map(itemgetter("down"), recs), np.int64, n_lines))
    acc.last_totals[name] = (recs[-1]["up"], recs[-1]["down"])
    if pairs is None:
        maps = [r["n"] for r in recs]
        lens = np.fromiter(map(len, maps), np.int64, n_lines)
        total = int(lens.sum())
        nb_codes = acc.ids.codes((k for m in maps for k in m), total)
        values = [v for m in maps for v in m.values()]
        up = np.fromiter(map(itemgetter(0), values), np.int64, total)
        down = np.fromiter(map(itemgetter(1), values), np.int64, total)
    else:
        lens = np.fromiter(map(itemgetter("n"), recs), np.int64, n_lines)
        total = len(pairs)
        nb_codes = acc.ids.from_categorical(pairs["peer"])
        up = pairs["up"].to_numpy(np.int64)
        down = pairs["down"].to_numpy(np.int64)
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
    tr = acc.tr
    tr["t"].append(t[line])
    tr["t0"].append(t0[line])
    tr["peer"].append(np.full(len(line), code, np.int64))
    tr["neighbour"].append(nb_codes[keep])
    tr["up"].append(up[keep])
    tr["down"].append(down[keep])
    tr["d_up"].append(d_up[keep])
    tr["d_down"].append(d_down[keep])


def _choke_columns(recs: list[dict[str, Any]], code: int, end: float, acc: _Columns,
                   nbrs: pd.DataFrame | None) -> None:
    """``rechoke`` lines -> one row per neighbour; a decision holds until the peer's next
    rechoke, or until it left (``end``). ``nbrs``: the neighbours already read column-wise
    (``_split_rechokes``), each line's ``nbrs`` then being their number."""
    if not recs:
        return
    n_lines = len(recs)
    ch = acc.ch
    if nbrs is None:
        lists = [r["nbrs"] for r in recs]
        lens = np.fromiter(map(len, lists), np.int64, n_lines)
        rows = [nb for nbrs_ in lists for nb in nbrs_]
        n = len(rows)
        ch["neighbour"].append(acc.ids.codes(map(itemgetter("peer"), rows), n))
        for key in ("down_rate", "up_rate"):
            ch[key].append(np.fromiter(map(itemgetter(key), rows), float, n))
        for key in ("interested", "choking_us", "snubbed"):
            ch[key].append(np.fromiter(map(itemgetter(key), rows), bool, n))
        ch["decision"].append(acc.labels.codes(map(itemgetter("decision"), rows), n))
        ch["reason"].append(acc.labels.codes((nb.get("reason") for nb in rows), n))
        ch["rate"].append(np.fromiter((_nan_if_none(nb.get("rate")) for nb in rows), float, n))
    else:
        lens = np.fromiter(map(itemgetter("nbrs"), recs), np.int64, n_lines)
        n = len(nbrs)
        ch["neighbour"].append(acc.ids.from_categorical(nbrs["peer"]))
        for key in ("down_rate", "up_rate", "rate"):
            ch[key].append(nbrs[key].to_numpy(float))
        for key in ("interested", "choking_us", "snubbed"):
            ch[key].append(nbrs[key].to_numpy(bool))
        ch["decision"].append(acc.labels.from_categorical(nbrs["decision"]))
        ch["reason"].append(acc.labels.from_categorical(nbrs["reason"]))
    t = np.fromiter(map(itemgetter("t"), recs), float, n_lines)
    until = np.append(t[1:], end)
    ch["t"].append(np.repeat(t, lens))
    ch["until"].append(np.repeat(until, lens))
    ch["peer"].append(np.full(n, code, np.int64))
    ch["round"].append(np.repeat(np.fromiter(map(itemgetter("round"), recs), np.int64,
                                             n_lines), lens))
    ch["trigger"].append(np.repeat(acc.labels.codes(map(itemgetter("trigger"), recs),
                                                    n_lines), lens))
    ch["seed_state"].append(np.repeat(
        np.fromiter((bool(r.get("seed", False)) for r in recs), bool, n_lines), lens))
    ch["optimistic_rotated"].append(np.repeat(
        np.fromiter((bool(r.get("optimistic_rotated", False)) for r in recs), bool, n_lines),
        lens))


def _nan_if_none(value: Any) -> Any:
    return math.nan if value is None else value


def _piece_columns(recs: list[dict[str, Any]], code: int, acc: _Columns) -> None:
    if not recs:
        return
    n = len(recs)
    pc = acc.pc
    pc["t"].append(np.fromiter((r["t"] for r in recs), float, n))
    pc["peer"].append(np.full(n, code, np.int64))
    pc["index"].append(np.fromiter((r["index"] for r in recs), np.int64, n))
    pc["start"].append(np.fromiter((_nan_if_none(r.get("start")) for r in recs), float, n))
    pc["size"].append(np.fromiter((r["size"] for r in recs), np.int64, n))
    pc["ok"].append(np.fromiter((bool(r["ok"]) for r in recs), bool, n))
    pc["from"].append([r.get("from") or [] for r in recs])
    pc["blame"].append([r.get("blame") or [] for r in recs])


def _locate(path: Path, records: list[dict[str, Any]], numbers: list[int] | None,
            exc: Exception) -> AnalysisError:
    """The error naming the first line whose event lacks a field or has one of a bad type."""
    for k, rec in enumerate(records):
        line = k + 1 if numbers is None else numbers[k]
        ev = rec.get("ev")
        if ev is None:
            return AnalysisError(f"{path}:{line}: event without 'ev'")
        problem = _problem(rec, ev)
        if problem:
            return AnalysisError(f"{path}:{line}: {ev!r} event: {problem}")
    return AnalysisError(f"{path}: bad event: {exc!r}")


def _problem(rec: dict[str, Any], ev: str) -> str | None:
    for key in _REQUIRED.get(ev, ("t",)):
        if key not in rec:
            return f"missing field '{key}'"
    if not isinstance(rec["t"], int | float) or isinstance(rec["t"], bool):
        return f"bad field: 't' is {rec['t']!r}"
    if ev == "counters":
        n = rec["n"]
        if type(n) is int:  # read column-wise already (_split_lists)
            n = {}
        if not isinstance(n, dict):
            return "bad field: 'n' is not a mapping"
        for peer, pair in n.items():
            if not (isinstance(pair, list) and len(pair) == 2 and
                    all(isinstance(x, int) and not isinstance(x, bool) for x in pair)):
                return f"bad field: n[{peer!r}] is {pair!r}, not [up, down]"
        for key in ("up", "down"):
            if not isinstance(rec[key], int) or isinstance(rec[key], bool):
                return f"bad field: {key!r} is {rec[key]!r}"
    elif ev == "rechoke":
        nbrs = rec["nbrs"]
        if type(nbrs) is int:  # read column-wise already (_split_rechokes)
            nbrs = []
        if not isinstance(nbrs, list):
            return "bad field: 'nbrs' is not a list"
        for i, nb in enumerate(nbrs):
            if not isinstance(nb, dict):
                return f"bad field: nbrs[{i}] is not an object"
            for key in _REQUIRED_NBR:
                if key not in nb:
                    return f"missing field 'nbrs[{i}].{key}'"
            for key in ("down_rate", "up_rate"):
                if not isinstance(nb[key], int | float):
                    return f"bad field: nbrs[{i}].{key} is {nb[key]!r}"
        if not isinstance(rec["round"], int):
            return f"bad field: 'round' is {rec['round']!r}"
    elif ev == "piece":
        for key in ("index", "size"):
            if not isinstance(rec[key], int) or isinstance(rec[key], bool):
                return f"bad field: {key!r} is {rec[key]!r}"
        if rec.get("start") is not None and not isinstance(rec["start"], int | float):
            return f"bad field: 'start' is {rec['start']!r}"
    return None


def _read_tracker_log(path: Path, warnings: list[str]) -> list[tuple[Any, ...]]:
    if not path.is_file():
        return []
    rows = []
    records, numbers = _records(path, warnings)
    for k, rec in enumerate(records):
        lineno = k + 1 if numbers is None else numbers[k]
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
    records, numbers = _records(path, warnings)
    for k, rec in enumerate(records):
        lineno = k + 1 if numbers is None else numbers[k]
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


def _joined(chunks: list[Any], dtype: Any) -> np.ndarray:
    if not chunks:
        return np.empty(0, dtype=dtype)
    return np.concatenate([np.asarray(c, dtype=dtype) for c in chunks])


def _peer_codes(acc: _Columns, chunks: list[Any]) -> pd.Series:
    """The ``peer`` column: codes into ``acc.names`` as a category of names."""
    codes = _joined(chunks, np.int64)
    uniq = sorted(set(acc.names))
    remap = np.asarray([uniq.index(n) for n in acc.names] + [-1], dtype=np.int64)
    return pd.Series(pd.Categorical.from_codes(remap[codes], categories=uniq))


def _pieces_frame(acc: _Columns, names: _IdMapper) -> pd.DataFrame:
    table = names.id_to_name
    pc = acc.pc
    get = table.get
    froms = [list(map(get, f, f)) for chunk in pc["from"] for f in chunk]
    return pd.DataFrame({
        "t": _joined(pc["t"], float),
        "peer": _peer_codes(acc, pc["peer"]),
        "index": _joined(pc["index"], np.int64),
        "start": _joined(pc["start"], float),
        "size": _joined(pc["size"], np.int64),
        "ok": _joined(pc["ok"], bool),
        "from": pd.Series(froms, dtype=object),
        "from_first": pd.Series([f[0] if f else None for f in froms], dtype=object),
        "blame": pd.Series([list(map(get, b, b)) if b else b for chunk in pc["blame"]
                            for b in chunk], dtype=object),
    }, copy=False)


def _chokes_frame(acc: _Columns, names: _IdMapper) -> pd.DataFrame:
    ch = acc.ch
    frame = pd.DataFrame({
        "t": _joined(ch["t"], float), "peer": _peer_codes(acc, ch["peer"]),
        "round": _joined(ch["round"], np.int64),
        "trigger": acc.labels.categorical(ch["trigger"]),
        "seed_state": _joined(ch["seed_state"], bool),
        "optimistic_rotated": _joined(ch["optimistic_rotated"], bool),
        "neighbour": names.map(acc.ids.categorical(ch["neighbour"])),
        "down_rate": _joined(ch["down_rate"], float),
        "up_rate": _joined(ch["up_rate"], float),
        "interested": _joined(ch["interested"], bool),
        "choking_us": _joined(ch["choking_us"], bool),
        "snubbed": _joined(ch["snubbed"], bool),
        "decision": acc.labels.categorical(ch["decision"]),
        "reason": acc.labels.categorical(ch["reason"]),
        "rate": _joined(ch["rate"], float),
    }, copy=False)  # no consolidation: a copy of every column for nothing
    frame["until"] = _joined(ch["until"], float)
    frame["duration"] = frame["until"] - frame["t"]
    return frame


def _transfers_frame(acc: _Columns, names: _IdMapper) -> pd.DataFrame:
    tr = acc.tr
    t = _joined(tr["t"], float)
    t0 = _joined(tr["t0"], float)
    d_up = _joined(tr["d_up"], np.int64)
    d_down = _joined(tr["d_down"], np.int64)
    dt = t - t0
    with np.errstate(divide="ignore", invalid="ignore"):
        rate_up = np.where(dt > 0, d_up / dt, np.nan)
        rate_down = np.where(dt > 0, d_down / dt, np.nan)
    return pd.DataFrame({
        "t": t, "t0": t0, "peer": _peer_codes(acc, tr["peer"]),
        "neighbour": names.map(acc.ids.categorical(tr["neighbour"])),
        "up": _joined(tr["up"], np.int64), "down": _joined(tr["down"], np.int64),
        "d_up": d_up, "d_down": d_down, "rate_up": rate_up, "rate_down": rate_down,
    }, copy=False)


def _totals_frame(acc: _Columns) -> pd.DataFrame:
    tot = acc.tot
    return pd.DataFrame({"t": _joined(tot["t"], float), "peer": _peer_codes(acc, tot["peer"]),
                         "up": _joined(tot["up"], np.int64),
                         "down": _joined(tot["down"], np.int64)}, copy=False)


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
