"""Read a run directory into pandas DataFrames (docs/run-directory.md, docs/log-schema.md).

``load_run(path)`` is the one entry point. It reads ``experiment.json`` (who is who), every
``peers/*.jsonl`` event log, ``tracker.jsonl``, ``resources.jsonl``, ``summary.json`` and
``meta.json``, and returns a ``Run`` whose tables a researcher uses directly in a notebook.

Speed matters (a 100-peer run logs a million events, hundreds of MB), and the work is spread
over private modules:

- ``_tables``: what every table is made of, one definition per table (columns, dtypes,
  defaults, derivations), and the validation that names a bad line;
- ``_read``: JSON and JSON-lines files, each decoded in one call (orjson when installed);
- ``_fastpath``: one peer log, its big ``rechoke`` and ``counters`` lists read by pandas' CSV
  parser while they are in exactly the form peer/eventlog.py writes;
- ``_columns``: a log's events grouped by kind, each kind turned into numpy columns at once;
- ``_parallel``: logs decoded in threads, a big run's second half in a forked process;
- ``_frames``: the columns joined into DataFrames, peer ids mapped to names and groups.

The garbage collector is paused while millions of small objects are made. A ``counters`` line
names only the neighbours whose counts changed (docs/log-schema.md): the counters are
cumulative, so a missing entry means "no bytes in that interval" and nothing is lost.
"""

from __future__ import annotations

import gc
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis._columns import DEFAULT_COUNTERS_PERIOD, Columns
from analysis._frames import (
    EXTERNAL,
    IdMapper,
    initial_pieces,
    lookup,
    peers_frame,
    row_frame,
    table_frame,
)
from analysis._parallel import read_peer_logs
from analysis._read import KNOWN_SCHEMAS, AnalysisError, read_json, read_resources, read_tracker_log
from analysis._tables import COLUMNAR, RESOURCES, ROWS, TRACKER, WITH_GROUPS, Source

__all__ = ["DECODE_THREADS", "DEFAULT_COUNTERS_PERIOD", "EXTERNAL", "KNOWN_SCHEMAS", "PARALLEL",
           "PARALLEL_MIN_BYTES", "AnalysisError", "Run", "load_run"]

DECODE_THREADS = 2
"""Logs decoded at once, beside the main thread."""
PARALLEL = True
"""Read a big run's logs in two processes; False: in this one only."""
PARALLEL_MIN_BYTES = 64 * 2**20
"""Below this many bytes of peer logs, forking costs more than it saves."""


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
    warnings: list[str] = []
    experiment = _read_experiment(root)
    summary = read_json(root / "summary.json", required=False, warnings=warnings)
    meta = read_json(root / "meta.json", required=False, warnings=warnings)
    logs = sorted((root / "peers").glob("*.jsonl")) if (root / "peers").is_dir() else []
    gc_was_enabled = gc.isenabled()
    gc.disable()  # millions of small containers: the cyclic GC would only rescan them
    try:
        acc = read_peer_logs(logs, warnings, threads=DECODE_THREADS, parallel=PARALLEL,
                             min_bytes=PARALLEL_MIN_BYTES)
        tracker_rows = read_tracker_log(root / "tracker.jsonl", warnings)
        resource_rows = read_resources(root / "resources.jsonl", warnings)
    finally:
        if gc_was_enabled:
            gc.enable()

    names = IdMapper(_id_to_name(experiment, acc))
    frames = {t.name: table_frame(t, acc, names) for t in COLUMNAR}
    frames.update({t.name: row_frame(t, acc.rows[t.name], names) for t in ROWS})
    tracker = row_frame(TRACKER, tracker_rows, names)
    if len(tracker):
        tracker["peer"] = names.map(tracker["peer"])
    file_size, piece_length, num_pieces = _content(experiment, acc)
    end = max([acc.last_t.get(n, 0.0) for n in acc.last_t] +
              [resource_rows[-1][0] if resource_rows else 0.0, 0.0])
    peers = peers_frame(experiment, acc, num_pieces)
    initial = initial_pieces(peers, acc, num_pieces, warnings)
    peers = _add_groups(frames, peers, names)
    return Run(path=root, experiment=experiment, summary=summary, meta=meta, peers=peers,
               **frames, tracker=tracker,
               resources=pd.DataFrame(resource_rows, columns=RESOURCES.names),
               file_size=file_size, piece_length=piece_length, num_pieces=num_pieces,
               end=float(end), initial_pieces=initial, warnings=warnings)


def _read_experiment(root: Path) -> dict[str, Any]:
    if not root.is_dir():
        raise AnalysisError(f"{root}: not a run directory (no such directory)")
    path = root / "experiment.json"
    if not path.is_file():
        raise AnalysisError(f"{root}: not a run directory (no experiment.json)")
    experiment = read_json(path, required=True)
    if not isinstance(experiment, dict) or not isinstance(experiment.get("peers"), list):
        raise AnalysisError(f"{path}: not an experiment (no 'peers' list)")
    return experiment


def _id_to_name(experiment: dict[str, Any], acc: Columns) -> dict[str, str]:
    """Peer id -> name: the experiment's peers, and logs it does not list (their start line
    names them)."""
    listed = {p["name"] for p in experiment["peers"]}
    id_to_name = {p["peer_id"]: p["name"] for p in experiment["peers"]}
    for info in acc.starts.values():
        if info.get("peer_id") and info["name"] not in listed:
            id_to_name.setdefault(info["peer_id"], info["name"])
    return id_to_name


def _content(experiment: dict[str, Any], acc: Columns) -> tuple[int, int, int]:
    """(file size, piece length, number of pieces): from the experiment, else the logs."""
    content = experiment.get("content") or {}
    first_start = next(iter(acc.starts.values()), {})
    file_size = int(content.get("size") or first_start.get("length") or 0)
    piece_length = int(content.get("piece_length") or first_start.get("piece_length") or 0)
    num_pieces = int(first_start.get("pieces") or
                     (math.ceil(file_size / piece_length) if piece_length else 0))
    return file_size, piece_length, num_pieces


def _add_groups(frames: dict[str, pd.DataFrame], peers: pd.DataFrame,
                names: IdMapper) -> pd.DataFrame:
    """Each peer column's group beside it (in ``frames``); returns ``peers`` with a row for
    every peer id the experiment does not name (group and role ``EXTERNAL``)."""
    for table in WITH_GROUPS:
        for col in table.columns:
            if col.group and col.source is not Source.LOG:  # a logging peer is known
                names.note_unknown(frames[table.name][col.name])
    groups = dict(zip(peers["name"], peers["group"], strict=True))
    if names.unknown:
        externals = pd.DataFrame({"name": sorted(names.unknown), "group": EXTERNAL,
                                  "role": EXTERNAL})
        externals["peer_id"] = externals["name"]
        peers = pd.concat([peers, externals], ignore_index=True)
        groups.update(dict.fromkeys(names.unknown, EXTERNAL))
    for table in WITH_GROUPS:
        frame = frames[table.name]
        for col in table.columns:
            if col.group:
                frame.insert(frame.columns.get_loc(col.name) + 1, col.group,
                             lookup(frame[col.name], groups))
    return peers
