"""The metrics of docs/analysis.md, each a small function of a ``Run``.

Notation: T_i completion time of peer i from its arrival, U_i / D_i payload bytes it uploaded /
downloaded, C_i its upload capacity (bytes/s), τ_i its time in the swarm (from its ``start``
event to its ``stop``, or its last event when it was killed), F the file size, M the number of
pieces, N the number of leechers.

Which peers count, unless a docstring says otherwise: "leechers" are the peers whose role in
``experiment.json`` is ``leecher`` (they start without the file); "initial seeds" have role
``seed``. A capacity of ``None`` in the experiment (unlimited) becomes NaN in the tables, and a
metric that divides by it skips that peer.

Whether the initial seeds were the bottleneck (piece injection, their redundant upload) is in
``analysis.injection``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from analysis.load import EXTERNAL, Run
from testbed.bounds import bound_inputs

# ---------------------------------------------------------------------------------------------
# completion


def completion_times(run: Run) -> pd.DataFrame:
    """Per leecher: T_i = t_complete,i − a_i, with a_i its planned arrival (NaN if incomplete).

    Columns: name, group, arrival, complete (run time of its ``complete`` event),
    completion_time.
    """
    cols = ["name", "group", "arrival", "complete", "completion_time"]
    return run.leechers[cols].reset_index(drop=True)


def completion_cdf(run: Run) -> pd.DataFrame:
    """Empirical CDF of T_i per group and for ``all`` leechers.

    For a group of n leechers, the k-th smallest completion time has fraction k / n: peers that
    never completed count in n, so a curve that stops below 1 shows who did not finish.
    Columns: group, completion_time, fraction.
    """
    ct = completion_times(run)
    parts = []
    for group, sub in [("all", ct), *ct.groupby("group", sort=True)]:
        times = np.sort(sub["completion_time"].dropna().to_numpy())
        parts.append(pd.DataFrame({"group": group, "completion_time": times,
                                   "fraction": np.arange(1, len(times) + 1) / len(sub)}))
    return pd.concat(parts, ignore_index=True) if parts else \
        pd.DataFrame(columns=["group", "completion_time", "fraction"])


def completion_by_group(run: Run) -> pd.DataFrame:
    """Per group (and ``all``): leechers, completed, and the mean, median and p90 of T_i.

    p90 is numpy's default (linear-interpolation) 0.9 quantile of the completed peers' T_i.
    """
    ct = completion_times(run)
    rows = []
    for group, sub in [*ct.groupby("group", sort=True), ("all", ct)]:
        times = sub["completion_time"].dropna().to_numpy()
        done = len(times) > 0
        rows.append({"group": group, "leechers": len(sub), "completed": len(times),
                     "mean": float(times.mean()) if done else math.nan,
                     "median": float(np.median(times)) if done else math.nan,
                     "p90": float(np.quantile(times, 0.9)) if done else math.nan})
    return pd.DataFrame(rows).set_index("group")


def makespan(run: Run) -> float | None:
    """max_i t_complete,i over leechers, in run time (since t = 0, not since arrival).

    None when a leecher that was meant to stay until done (departure ``never``,
    ``on_completion`` or ``after_completion``) never completed; leechers stopped or killed on
    purpose before completing (``at`` / ``killed``) do not hold the makespan back.
    """
    lee = run.leechers
    if lee.empty:
        return None
    must = lee[lee["departure_kind"].isin(["never", "on_completion", "after_completion"]) |
               lee["departure_kind"].isna()]
    if must["complete"].isna().any():
        return None
    done = lee["complete"].dropna()
    return float(done.max()) if len(done) else None


# ---------------------------------------------------------------------------------------------
# bounds and efficiency


def bounds(run: Run) -> dict[str, Any]:
    """The textbook bounds for this run's own parameters (testbed.bounds, Kurose & Ross), from
    ``testbed.bounds.bound_inputs`` as the run summary computes them.

    F = the file size, N = number of leechers, u_s = Σ upload capacity of the initial seeds
    (None = unlimited if any seed is unlimited; 0 without a seed, which makes both bounds
    infinite), u_i the leechers' upload capacities, d_min their slowest download capacity:
    D_cs = max(N·F/u_s, F/d_min); D_p2p = max(F/u_s, F/d_min, N·F/(u_s + Σu_i)); both 0 without
    a leecher. Both assume every leecher is there at t = 0; with staggered arrivals they are
    looser.
    """
    inputs = bound_inputs(run.experiment, file_size=run.file_size)
    return {"file_size": run.file_size, "leechers": inputs.leechers,
            "u_s": inputs.server_upload, "sum_u_i": inputs.sum_u_i, "d_min": inputs.d_min,
            "d_cs": inputs.d_cs(), "d_p2p": inputs.d_p2p()}


def efficiency(run: Run) -> dict[str, Any]:
    """efficiency = D_p2p / makespan (1 is the textbook's ideal); speedup = D_cs / makespan.

    Both None while the makespan is undefined (see ``makespan``).
    """
    b = bounds(run)
    ms = makespan(run)
    ok = ms is not None and ms > 0
    return {"makespan": ms, "d_p2p": b["d_p2p"], "d_cs": b["d_cs"],
            "efficiency": b["d_p2p"] / ms if ok else None,
            "speedup": b["d_cs"] / ms if ok else None}


# ---------------------------------------------------------------------------------------------
# fairness


def jain(x: Iterable[float]) -> float:
    """Jain's fairness index J(x) = (Σx_i)² / (n·Σx_i²), for x_i ≥ 0.

    1 when all x_i are equal, 1/n when one gets everything. NaN values are dropped; NaN for an
    empty input; 1.0 when every x_i is 0 (all equal). Negative values raise ValueError.
    """
    arr = np.asarray(list(x), dtype=float)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return math.nan
    if (arr < 0).any():
        raise ValueError("jain() is defined for values >= 0")
    sq = float((arr * arr).sum())
    if sq == 0:
        return 1.0
    return float(arr.sum() ** 2 / (arr.size * sq))


def share_ratios(run: Run) -> pd.DataFrame:
    """Per testbed peer: U_i, D_i and share ratio U_i / D_i (NaN when D_i = 0, e.g. a seed).

    U_i, D_i come from the ``stop`` event, or the last ``counters`` totals of a killed peer.
    """
    p = run.peers[run.peers["role"] != EXTERNAL]
    out = p[["name", "group", "role", "up", "down"]].copy().reset_index(drop=True)
    down = out["down"].astype(float)
    out["share_ratio"] = np.where(down > 0, out["up"].astype(float) / down.where(down > 0),
                                  np.nan)
    return out


def share_by_group(run: Run) -> pd.DataFrame:
    """Per group of leechers: ΣU / ΣD (``ratio``) and the mean of the peers' own U_i / D_i."""
    sr = share_ratios(run)
    sr = sr[sr["role"] == "leecher"]
    g = sr.groupby("group", sort=True)
    out = pd.DataFrame({"up": g["up"].sum(), "down": g["down"].sum(),
                        "mean_ratio": g["share_ratio"].mean()})
    out["ratio"] = out["up"].astype(float) / out["down"].astype(float).where(out["down"] > 0)
    return out


def download_per_capacity(run: Run) -> pd.DataFrame:
    """Per leecher: download rate D_i / (t_end,i − s_i) over its upload capacity C_i.

    s_i is its ``start``; t_end,i its completion, or when it left if it never completed.
    Peers with unlimited or zero capacity get NaN.
    """
    lee = run.leechers
    end = lee["complete"].fillna(lee["left"])
    span = (end - lee["start"]).astype(float)
    rate = lee["down"].astype(float) / span.where(span > 0)
    cap = lee["upload_rate"].astype(float)
    return pd.DataFrame({"name": lee["name"], "group": lee["group"], "download_rate": rate,
                         "upload_capacity": cap,
                         "rate_per_capacity": rate / cap.where(cap > 0)}).reset_index(drop=True)


def fairness(run: Run) -> dict[str, float]:
    """Jain's index over the leechers' share ratios and over download rate / upload capacity."""
    sr = share_ratios(run)
    return {"jain_share_ratio": jain(sr.loc[sr["role"] == "leecher", "share_ratio"]),
            "jain_rate_per_capacity": jain(download_per_capacity(run)["rate_per_capacity"])}


# ---------------------------------------------------------------------------------------------
# tit-for-tat at work


def _receivers(run: Run) -> pd.DataFrame:
    """Peers that can be unchoked by a leecher: the leechers and any external peers."""
    return run.peers[run.peers["role"].isin(["leecher", EXTERNAL])]


def unchoke_time(run: Run, decision: str = "regular", *,
                 leecher_state_only: bool = True) -> pd.DataFrame:
    """Seconds of ``decision`` unchoke given by peers of group j (rows) to group k (columns).

    A decision made at a rechoke holds until that peer's next rechoke (or until it left), so
    each row of ``run.chokes`` weighs its ``duration``. With ``leecher_state_only`` only
    rechokes made while the giver was not yet a seed count (a seed's choices are not
    tit-for-tat).
    """
    ch = run.chokes
    sel = ch["decision"] == decision
    if leecher_state_only:
        sel &= ~ch["seed_state"].astype(bool)
    ch = ch[sel]
    table = ch.pivot_table(index="group", columns="neighbour_group", values="duration",
                           aggfunc="sum", fill_value=0.0)
    table.index.name, table.columns.name = "from", "to"
    return table


def clustering(run: Run) -> pd.DataFrame:
    """Clustering index I_jk per (giver group j, receiver group k), Legout et al. 2007.

    f_jk = regular-unchoke time given by leechers of group j to peers of group k / all the
    regular-unchoke time given by leechers of group j (leecher state only, see
    ``unchoke_time``); chance c_jk = (n_k − 1)/(N − 1) if j = k else n_k/(N − 1), with n_k the
    leechers (and external peers) of group k and N all of them: a leecher never unchokes a
    seed, which is never interested. I_jk = f_jk / c_jk; above 1 means group j favours group k.
    """
    recv = _receivers(run)
    counts = recv.groupby("group").size()
    n_total = int(counts.sum())
    time = unchoke_time(run, "regular")
    groups = list(counts.index)
    out = pd.DataFrame(np.nan, index=pd.Index(groups, name="from"),
                       columns=pd.Index(groups, name="to"))
    if n_total < 2:
        return out
    for j in groups:
        if j not in time.index:
            continue
        row = time.loc[j]
        total = float(row.sum())
        if total <= 0:
            continue
        for k in groups:
            chance = (counts[k] - (1 if j == k else 0)) / (n_total - 1)
            given = float(row.get(k, 0.0))
            out.loc[j, k] = (given / total) / chance if chance > 0 else math.nan
    return out


def reciprocation(run: Run, period: float | None = None) -> pd.DataFrame:
    """Per peer: the share of U_i sent to neighbours that also sent to i in the same period.

    Periods are [k·P, (k+1)·P) of run time, P = ``period`` or else the peer's own
    ``rechoke_period``; each counter interval's bytes go to the period holding its end.
    reciprocated_i = Σ over (neighbour, period) with D > 0 of U; share = reciprocated_i / U_i
    (NaN when U_i = 0). Computed from i's own counters (run.transfers).
    """
    tr = run.transfers
    periods = {p["name"]: float(p.get("protocol", {}).get("rechoke_period", 10.0))
               for p in run.experiment["peers"]}
    if period is not None:
        per = np.full(len(tr), float(period))
    else:
        per = tr["peer"].map(periods).fillna(10.0).to_numpy(dtype=float)
    peer_codes = tr["peer"].cat.codes.to_numpy(np.int64)
    nb_codes = tr["neighbour"].cat.codes.to_numpy(np.int64)
    bins = np.floor(tr["t"].to_numpy(float) / per).astype(np.int64)
    d_up = tr["d_up"].to_numpy(np.int64)
    names = tr["peer"].cat.categories
    recip: np.ndarray  # float: bincount with weights (numpy's stubs say integers)
    up: np.ndarray
    if len(tr):
        # One integer per (peer, neighbour, period): a single-key group-by, then bincounts.
        n_nb = int(nb_codes.max()) + 1
        bins -= bins.min()
        n_bins = int(bins.max()) + 1
        key = (peer_codes * n_nb + nb_codes) * n_bins + bins
        sums = pd.DataFrame({"key": key, "d_up": d_up, "d_down": tr["d_down"].to_numpy()},
                            copy=False).groupby("key", sort=False).sum()
        back = sums["d_down"].to_numpy() > 0
        owner = sums.index.to_numpy() // (n_nb * n_bins)
        recip = np.bincount(owner, weights=np.where(back, sums["d_up"].to_numpy(), 0),
                            minlength=len(names))
        up = np.bincount(peer_codes, weights=d_up, minlength=len(names))
        present = np.bincount(peer_codes, minlength=len(names)) > 0
    else:
        recip = up = np.zeros(len(names))
        present = np.zeros(len(names), dtype=bool)
    per_peer = pd.DataFrame({"up": np.rint(up).astype(np.int64),
                             "reciprocated": np.rint(recip).astype(np.int64)},
                            index=pd.Index(names.astype(str), name="name"))[present]
    out = run.peers[["name", "group", "role"]].set_index("name").join(per_peer, how="inner")
    out["share"] = out["reciprocated"] / out["up"].where(out["up"] > 0)
    return out.reset_index()


def optimistic_share(run: Run) -> pd.DataFrame:
    """Per possible receiver (leechers, external peers): its share of all optimistic-unchoke time.

    time_i = Σ durations of ``optimistic`` decisions naming i (by any peer, any state);
    share_i = time_i / Σ_j time_j; ``equal`` = 1/n is what perfect fairness gives.
    """
    ch = run.chokes[run.chokes["decision"] == "optimistic"]
    time = ch.groupby("neighbour")["duration"].sum()
    recv = _receivers(run)
    out = recv[["name", "group"]].reset_index(drop=True).copy()
    out["time"] = out["name"].map(time).fillna(0.0).astype(float)
    total = float(out["time"].sum())
    out["share"] = out["time"] / total if total > 0 else math.nan
    out["equal"] = 1.0 / len(out) if len(out) else math.nan
    return out


# ---------------------------------------------------------------------------------------------
# swarm health over time


def time_grid(run: Run, step: float | None = None) -> np.ndarray:
    """Sample instants 0, step, 2·step, … up to the run's end (default: ~500 samples, ≥ 1 s)."""
    end = max(run.end, 0.0)
    if step is None:
        step = max(1.0, end / 500)
    k = math.ceil(end / step - 1e-9)
    return np.arange(k + 1, dtype=float) * step


def presence(run: Run) -> pd.DataFrame:
    """Per testbed peer: ``join`` (its start event) and ``leave`` (stop, else its last event)."""
    p = run.peers[run.peers["role"] != EXTERNAL]
    return pd.DataFrame({"name": p["name"], "group": p["group"], "role": p["role"],
                         "join": p["start"].astype(float), "leave": p["left"].astype(float),
                         "complete": p["complete"].astype(float)}).reset_index(drop=True)


def _holdings(run: Run) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t, piece index, ±1) events: a peer's copies appear and disappear over time."""
    pres = presence(run).dropna(subset=["join"])
    pieces = run.pieces[run.pieces["ok"]].drop_duplicates(["peer", "index"])
    ts, idx, delta = [], [], []
    leave = dict(zip(pres["name"], pres["leave"], strict=True))
    for name, join in zip(pres["name"], pres["join"], strict=True):
        held0 = run.initial_pieces.get(name, np.empty(0, np.int64))
        got = pieces[pieces["peer"] == name]
        got_t, got_i = got["t"].to_numpy(float), got["index"].to_numpy(np.int64)
        ts += [np.full(len(held0), join), got_t]
        idx += [held0, got_i]
        delta += [np.ones(len(held0), np.int64), np.ones(len(got_i), np.int64)]
        lv = leave.get(name)
        if lv is not None and not math.isnan(lv) and lv < run.end:
            held = np.concatenate([held0, got_i[got_t <= lv]])
            ts.append(np.full(len(held), lv))
            idx.append(held)
            delta.append(-np.ones(len(held), np.int64))
    if not ts:
        return np.empty(0), np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(ts), np.concatenate(idx), np.concatenate(delta)


def availability(run: Run, step: float | None = None) -> pd.DataFrame:
    """Copies of each piece among the peers present, sampled on ``time_grid``.

    c_j(t) = number of peers present at t (joined, not yet left) holding piece j (initial
    seeds hold all; others what they had at start plus each verified piece from its ``t``).
    Columns: t, peers (present), min (min_j c_j), mean (Σ c_j / M), entropy (normalised:
    −Σ p_j ln p_j / ln M with p_j = c_j / Σ c; NaN when no copies or M = 1).
    A peer that leaves before the run's end takes its copies with it.
    """
    grid = time_grid(run, step)
    m = run.num_pieces
    ts, idx, delta = _holdings(run)
    counts = np.zeros((len(grid), max(m, 1)), dtype=np.int64)
    if len(ts):
        rows = np.searchsorted(grid, ts, side="left")
        keep = rows < len(grid)
        np.add.at(counts, (rows[keep], idx[keep]), delta[keep])
        counts = np.cumsum(counts, axis=0)
    counts = counts[:, :m] if m else counts[:, :0]
    total = counts.sum(axis=1).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = counts / total[:, None]
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
        entropy = -plogp.sum(axis=1) / math.log(m) if m > 1 else np.full(len(grid), np.nan)
    entropy = np.where(total > 0, entropy, np.nan)
    pres = presence(run).dropna(subset=["join"])
    present = _present(pres, grid)
    return pd.DataFrame({"t": grid, "peers": present.sum(axis=1),
                         "min": counts.min(axis=1) if m else np.nan,
                         "mean": counts.mean(axis=1) if m else np.nan, "entropy": entropy})


def _present(pres: pd.DataFrame, grid: np.ndarray) -> np.ndarray:
    """Boolean (grid × peer): joined at or before t and not yet left (a peer still there at
    the run's end counts as present to the end)."""
    join = pres["join"].to_numpy(float)
    leave = pres["leave"].fillna(np.inf).to_numpy(float)
    end = grid[-1] if len(grid) else 0.0
    leave = np.where(leave >= end, np.inf, leave)
    g = grid[:, None]
    present: np.ndarray = (join[None, :] <= g) & (g < leave[None, :])
    return present


def population(run: Run, step: float | None = None) -> pd.DataFrame:
    """Seeds and leechers present over time: a present peer is a seed from its completion on
    (an initial seed from its start). Columns: t, seeds, leechers."""
    grid = time_grid(run, step)
    pres = presence(run).dropna(subset=["join"])
    present = _present(pres, grid)
    done_at = np.where(pres["role"] == "seed", pres["join"], pres["complete"].fillna(np.inf))
    seed = present & (done_at[None, :] <= grid[:, None])
    return pd.DataFrame({"t": grid, "seeds": seed.sum(axis=1),
                         "leechers": (present & ~seed).sum(axis=1)})


def progress(run: Run, step: float | None = None) -> pd.DataFrame:
    """Swarm progress: verified pieces the leechers hold / (N·M), over time.

    Counts each leecher's distinct verified pieces (plus any it had at its start) up to t; a
    leecher that left keeps what it got, so the curve reaches 1 when every leecher completed.
    """
    grid = time_grid(run, step)
    lee = run.leechers["name"]
    total = len(lee) * run.num_pieces
    pc = run.pieces[run.pieces["ok"] & run.pieces["peer"].isin(lee)]
    pc = pc.drop_duplicates(["peer", "index"])
    joins = dict(zip(run.peers["name"], run.peers["start"], strict=True))
    at_start = [np.full(len(run.initial_pieces.get(n, ())), joins.get(n, np.nan)) for n in lee]
    times = np.sort(np.concatenate([pc["t"].to_numpy(float), *at_start]))
    done = np.searchsorted(times, grid, side="right")
    return pd.DataFrame({"t": grid, "pieces": done,
                         "fraction": done / total if total else np.nan})


def utilisation(run: Run) -> pd.DataFrame:
    """Per testbed peer: upload utilisation U_i / (C_i·τ_i), τ_i = leave − join (NaN for an
    unlimited capacity)."""
    p = run.peers[run.peers["role"] != EXTERNAL]
    tau = (p["left"] - p["start"]).astype(float)
    cap = p["upload_rate"].astype(float)
    return pd.DataFrame({"name": p["name"], "group": p["group"], "role": p["role"],
                         "up": p["up"].astype(float), "capacity": cap, "tau": tau,
                         "utilisation": p["up"].astype(float) / (cap * tau).where(cap * tau > 0)}
                        ).reset_index(drop=True)


def utilisation_by_group(run: Run) -> pd.DataFrame:
    """Per group: ΣU_i / Σ(C_i·τ_i) over its peers with a finite capacity."""
    u = utilisation(run).dropna(subset=["capacity", "tau"])
    u = u.assign(budget=u["capacity"] * u["tau"])
    g = u.groupby("group", sort=True)[["up", "budget"]].sum()
    g["utilisation"] = g["up"] / g["budget"].where(g["budget"] > 0)
    return g


def _cumulative_upload(run: Run, grid: np.ndarray) -> dict[str, np.ndarray]:
    """Per peer: bytes sent up to each grid instant, each ``counters`` line's bytes spread
    evenly over its interval (t0, t] (run.transfers), not lumped at t: otherwise a 1 s
    counters period aliases against the intervals, and the run's last, short interval gets a
    whole second's bytes."""
    tr = run.transfers
    lines = pd.DataFrame({"peer": tr["peer"].astype(str), "t": tr["t"], "t0": tr["t0"],
                          "d_up": tr["d_up"]}).groupby(["peer", "t"], sort=True).agg(
        t0=("t0", "first"), d_up=("d_up", "sum"))
    out = {}
    for name, sub in lines.groupby(level="peer", sort=False):
        done = np.cumsum(sub["d_up"].to_numpy(float))
        # knots (t0_k, S_{k−1}), (t_k, S_k): linear within a line's interval, flat between
        xp = np.column_stack([sub["t0"].to_numpy(float),
                              sub.index.get_level_values("t").to_numpy(float)]).ravel()
        fp = np.column_stack([done - sub["d_up"].to_numpy(float), done]).ravel()
        out[str(name)] = np.interp(grid, xp, fp, left=0.0)
    return out


def _sent_and_budget(run: Run, grid: np.ndarray) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The finite-capacity peers (``utilisation`` rows), and two (grid × peer) arrays: bytes
    each sent in (grid[k−1], grid[k]] (``_cumulative_upload``) and its capacity × time
    present in that interval (from its start to its leave, and to the run's end at most).
    """
    u = utilisation(run)
    u = u[u["capacity"].notna()].reset_index(drop=True)
    pres = presence(run).set_index("name")
    cumulative = _cumulative_upload(run, grid)
    sent = np.zeros((len(grid), len(u)))
    budget = np.zeros((len(grid), len(u)))
    lo = np.concatenate([[-np.inf], grid[:-1]])
    hi = np.minimum(grid, run.end)
    for j, (name, cap) in enumerate(zip(u["name"], u["capacity"], strict=True)):
        if name in cumulative:
            sent[:, j] = np.diff(cumulative[name], prepend=0.0)
        join, leave = pres.loc[name, "join"], pres.loc[name, "leave"]
        if math.isnan(join):
            continue
        if math.isnan(leave) or leave >= run.end:
            leave = math.inf
        budget[:, j] = cap * np.clip(np.minimum(hi, leave) - np.maximum(lo, join), 0, None)
    return u, sent, budget


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)


def utilisation_over_time(run: Run, step: float | None = None, *,
                          by: str = "group") -> pd.DataFrame:
    """Upload utilisation per interval (t − step, t]: bytes sent / (C · time present).

    ``by="group"``: one column per group (Σ bytes / Σ C·presence of its finite-capacity peers);
    ``by="peer"``: one column per peer. Bytes come from the ``counters`` lines
    (run.transfers), each line's spread evenly over its interval (t0, t]. Index: t (interval
    end). The first row (t = 0) is NaN.
    """
    grid = time_grid(run, step)
    u, sent, budget = _sent_and_budget(run, grid)
    keys = u["name"] if by == "peer" else u["group"]
    out = {}
    for key in u["name"] if by == "peer" else sorted(set(keys)):
        cols = (keys == key).to_numpy()
        out[key] = _ratio(sent[:, cols].sum(axis=1), budget[:, cols].sum(axis=1))
    return pd.DataFrame(out, index=pd.Index(grid, name="t"))


def utilisation_step(run: Run) -> float:
    """The default interval of ``utilisation_table``: 10 s (a rechoke period), or a tenth of
    the run rounded to whole seconds (at least 1 s) when it lasted under 100 s."""
    return max(1.0, min(10.0, float(round(run.end / 10))))


def utilisation_table(run: Run, step: float | None = None) -> pd.DataFrame:
    """Upload utilisation of each group over time, with what it is made of.

    One row per group g (its finite-capacity peers) and interval (t0, t] of ``time_grid(run,
    step)`` (step: ``utilisation_step`` unless given): peers (how many were present in it),
    up = bytes they sent in it (as in ``utilisation_over_time``), budget = Σ C_i × time
    present in it (what they could have sent), capacity = budget / (t − t0) (the capacity
    present, bytes/s; t of the last interval is the run's end), rate = up / (t − t0),
    utilisation = up / budget.
    """
    step = utilisation_step(run) if step is None else step
    grid = time_grid(run, step)
    u, sent, budget = _sent_and_budget(run, grid)
    t0, t = grid[:-1], np.minimum(grid[1:], run.end)
    span = t - t0
    parts = []
    for group in sorted(set(u["group"])):
        cols = (u["group"] == group).to_numpy()
        up, bud = sent[1:, cols].sum(axis=1), budget[1:, cols].sum(axis=1)
        parts.append(pd.DataFrame({"group": group, "t0": t0, "t": t,
                                   "peers": (budget[1:, cols] > 0).sum(axis=1), "up": up,
                                   "budget": bud, "capacity": _ratio(bud, span),
                                   "rate": _ratio(up, span), "utilisation": _ratio(up, bud)}))
    columns = ["group", "t0", "t", "peers", "up", "budget", "capacity", "rate", "utilisation"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
