"""Is the initial seed the bottleneck? Piece injection and the initial seeds' redundant upload.

Until every piece exists outside the initial seeds, the swarm cannot finish without them: the
seeds' upload capacity u_s bounds how fast the content enters the swarm, and the fastest it can
is F / u_s (every piece sent once). Two questions follow, each a function of a ``Run``:

- ``injection``: when did each piece first exist outside the initial seeds, when did the last one,
  and how does that compare with F / u_s?
- ``seed_redundancy``: how much of what the initial seeds sent went to pieces that some other peer
  already held (capacity not spent on injecting)?

Both read ``run.pieces`` and ``run.peers`` only. docs/analysis.md gives every formula.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis import metrics
from analysis.load import EXTERNAL, Run

NEW = "new"
ALREADY_HELD = "already held"


def _seed_names(run: Run) -> set[str]:
    return set(run.seeds["name"].astype(str))


def _leave_times(run: Run) -> dict[str, float]:
    """Peer name -> when it left; inf for a peer still there at the run's end."""
    pres = metrics.presence(run)
    leave = pres["leave"].astype(float).to_numpy()
    leave = np.where(np.isnan(leave) | (leave >= run.end), np.inf, leave)
    return dict(zip(pres["name"].astype(str), leave, strict=True))


def _held_at_start(run: Run) -> list[pd.DataFrame]:
    """The pieces each peer other than the initial seeds held when it started, as copies."""
    others = run.peers[~run.peers["role"].isin(["seed", EXTERNAL])]
    held = []
    for name, t0 in zip(others["name"].astype(str), others["start"].astype(float), strict=True):
        have = run.initial_pieces.get(name, np.empty(0, np.int64))
        if len(have) and not math.isnan(t0):
            held.append(pd.DataFrame({"t": t0, "peer": name, "index": have.astype(np.int64),
                                      "start": math.nan, "size": math.nan,
                                      "from": [[] for _ in have]}))
    return held


def copies_outside_seeds(run: Run) -> pd.DataFrame:
    """Every copy of a piece that appeared at a peer other than the initial seeds, in time order.

    One row per verified piece event at a peer whose role is not ``seed``, and one per piece
    such a peer already held at its start (``t`` = its start, no senders). Columns: t, peer,
    index, start (the piece's first request; NaN for a piece held at start), size (bytes; NaN
    for a piece held at start), from (senders), seeds (the initial seeds among the senders),
    leave (when the peer left; inf if it stayed to the run's end). Sorted by t; ties keep log
    order. External peers log nothing, so their copies are unknown.
    """
    seeds = _seed_names(run)
    pc = run.pieces[run.pieces["ok"] & ~run.pieces["peer"].astype(str).isin(seeds)]
    pc = pc[(pc["index"] >= 0) & (pc["index"] < run.num_pieces)]
    events = pd.DataFrame({"t": pc["t"].astype(float), "peer": pc["peer"].astype(str),
                           "index": pc["index"].astype(np.int64),
                           "start": pc["start"].astype(float), "size": pc["size"].astype(float),
                           "from": pc["from"]})
    held = _held_at_start(run)
    copies = pd.concat([*held, events], ignore_index=True) if held else events
    copies = copies.sort_values("t", kind="stable").reset_index(drop=True)
    copies["seeds"] = copies["from"].map(lambda senders: [s for s in senders if s in seeds])
    leave = _leave_times(run)
    copies["leave"] = copies["peer"].map(leave).fillna(np.inf).astype(float)
    return copies


def piece_injection(run: Run) -> pd.DataFrame:
    """Per piece j (index 0 … M − 1): when it first existed outside the initial seeds.

    first_t_j = min t over ``copies_outside_seeds`` rows of piece j (NaN: never injected);
    first_peer the peer that held that copy; from_seed whether an initial seed was among its
    senders (False for a piece a leecher held at its start or got only from external peers).
    A copy counts from its verification even if its peer left later: injection is work the
    seeds did, not a state.
    """
    first = copies_outside_seeds(run).drop_duplicates("index").set_index("index")
    idx = pd.RangeIndex(run.num_pieces, name="index")
    return pd.DataFrame({"first_t": first["t"].reindex(idx).astype(float),
                         "first_peer": first["peer"].reindex(idx),
                         "from_seed": first["seeds"].map(bool).reindex(idx).astype("boolean")},
                        index=idx)


def injection_start(run: Run) -> float:
    """The first instant an initial seed and another testbed peer had both started (NaN if
    never): injection cannot begin before it."""
    peers = run.peers[run.peers["role"] != EXTERNAL]
    is_seed = peers["role"] == "seed"
    # np.max, not max(): NaN (nobody of one kind started) must win
    return float(np.max([peers.loc[is_seed, "start"].min(), peers.loc[~is_seed, "start"].min()]))


def seed_time(run: Run) -> float | None:
    """F / u_s: seconds the initial seeds need to send every piece once, u_s the sum of their
    upload capacities (``metrics.bounds``); None when a seed is unlimited or u_s is 0."""
    u_s = metrics.bounds(run)["u_s"]
    return run.file_size / u_s if u_s else None


def _number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def injection(run: Run) -> dict[str, Any]:
    """How fast the content entered the swarm, against the seeds' capacity.

    With first_t_j from ``piece_injection`` and t_0 = ``injection_start``:
    all_injected_at = max_j first_t_j ("every piece in the swarm at"; None while a piece was
    never injected), injection_time = all_injected_at − t_0, f_over_u_s = F / u_s
    (``seed_time``) and ratio = injection_time / (F / u_s): 1 when the seeds sent each piece
    once at full rate, above 1 when they sent duplicates or idled. Also: pieces (M), injected,
    never_injected (how many first_t_j are NaN), first_at (min_j first_t_j), half_at (the
    ⌈M/2⌉-th smallest first_t_j: half the pieces were in the swarm), from_seeds (pieces whose first
    copy came from an initial seed).
    """
    inj = piece_injection(run)
    first = inj["first_t"]
    never = int(first.isna().sum())
    all_at = float(first.max()) if never == 0 and len(first) else math.nan
    t0 = injection_start(run)
    f_us = seed_time(run)
    took = all_at - t0
    half = float(np.sort(first.to_numpy())[(len(first) - 1) // 2]) if len(first) else math.nan
    return {"pieces": run.num_pieces, "injected": run.num_pieces - never,
            "never_injected": never, "first_at": _number(float(first.min())),
            "half_at": _number(half), "all_injected_at": _number(all_at),
            "injection_start": _number(t0), "injection_time": _number(took),
            "f_over_u_s": f_us,
            "ratio": took / f_us if f_us and not math.isnan(took) else None,
            "from_seeds": int(inj["from_seed"].sum())}


def seed_contributions(run: Run) -> pd.DataFrame:
    """Every verified piece event an initial seed sent blocks of, classified.

    Events are ``copies_outside_seeds`` in time order. status is ``new`` for the first copy of
    its piece outside the seeds, else ``already held`` (an earlier copy existed: a verified
    event at another peer, or a piece a peer held at its start). Columns: t, start, peer, index,
    size, seeds, senders (how many peers sent blocks), seed_share = seeds among the senders /
    senders, status, first_t (the piece's first copy outside the seeds), delay = start −
    first_t (> 0: requested after the first copy was complete), holder_present (an earlier
    copy's peer had not left by t: another peer held it then, not merely once). The log names a
    piece's senders, not their bytes: seed_share is the seeds' part of its blocks if every
    sender sent as many. Failed pieces (``ok`` false) are left out: they add no copy.
    """
    copies = copies_outside_seeds(run)
    by_piece = copies.groupby("index", sort=False)
    copies["status"] = np.where(by_piece.cumcount() == 0, NEW, ALREADY_HELD)
    copies["first_t"] = by_piece["t"].transform("first")
    # the latest leave among the piece's earlier copies: one still present means held at t
    earlier_leave = by_piece["leave"].cummax().groupby(copies["index"], sort=False).shift(1)
    copies["holder_present"] = earlier_leave.fillna(-np.inf).to_numpy() > copies["t"].to_numpy()
    out = copies[copies["seeds"].map(len) > 0].copy()
    out["senders"] = out["from"].map(len)
    out["seed_share"] = out["seeds"].map(len) / out["senders"]
    out["delay"] = np.where(out["status"] == ALREADY_HELD, out["start"] - out["first_t"],
                            np.nan)
    return out[["t", "start", "peer", "index", "size", "seeds", "senders", "seed_share",
                "status", "first_t", "delay", "holder_present"]].reset_index(drop=True)


def _counts(contrib: pd.DataFrame, weight: pd.Series) -> dict[str, Any]:
    """Counts and shares over ``contrib``; ``weight`` is each event's part of its blocks
    credited to the seed(s) counted (the even split)."""
    held = contrib["status"] == ALREADY_HELD
    n, total = len(contrib), float(weight.sum())
    return {"contributions": n, "new": int((~held).sum()), "already_held": int(held.sum()),
            "share": float(held.sum()) / n if n else None,
            "share_split": float(weight[held].sum()) / total if total else None,
            "split_bytes": float((weight * contrib["size"]).sum())}


def seed_redundancy(run: Run) -> dict[str, Any]:
    """The initial seeds' upload spent on pieces some other peer already held.

    Over ``seed_contributions``: contributions (events an initial seed sent to), new,
    already_held, share = already_held / contributions (0 when the seeds sent each piece once),
    share_split = Σ_already-held seed_share / Σ seed_share (each event weighed by the seeds'
    part of its blocks under an even split among its senders: an estimate of the share of
    bytes), split_bytes = Σ seed_share × size (the bytes that split credits to the seeds),
    holder_present (already held by a peer still there), requested_after_first_copy (already
    held and start > first_t: the receiver asked after a copy existed elsewhere) and
    median_delay (median start − first_t over those). Bytes from ``run.peers``: seed_up = Σ U
    of the initial seeds, copies_sent = seed_up / F (1 at best with one seed: each piece once).
    by_seed: per initial seed, the counts over the events it sent to (an event two seeds sent
    to counts for both; its split weight is 1 / senders) and its own U.
    """
    contrib = seed_contributions(run)
    held = contrib[contrib["status"] == ALREADY_HELD]
    after = held[held["delay"] > 0]
    seeds = run.seeds
    seed_up = float(seeds["up"].astype(float).sum())
    by_seed = {}
    for name, up in zip(seeds["name"].astype(str), seeds["up"].astype(float), strict=True):
        # .loc with a bool mask: an empty object-dtype mask would select columns, not rows
        mine = contrib.loc[contrib["seeds"].map(lambda s, n=name: n in s).astype(bool)]
        by_seed[name] = {**_counts(mine, 1 / mine["senders"]), "up": _number(up)}
    return {**_counts(contrib, contrib["seed_share"]),
            "holder_present": int(held["holder_present"].sum()),
            "requested_after_first_copy": len(after),
            "median_delay": float(after["delay"].median()) if len(after) else None,
            "seed_up": seed_up,
            "copies_sent": seed_up / run.file_size if run.file_size else None,
            "by_seed": by_seed}
