"""Reproduce the published incentive findings: run each setup with several seeds, several runs at
once, and print the paper's figure beside the measured one (median and range over seeds).

    .venv/bin/python bench/reproduce.py --jobs 4                      # paper setups, seeds 1-3
    .venv/bin/python bench/reproduce.py --scaled --jobs 2             # and the scaled ones
    .venv/bin/python bench/reproduce.py --only legout_2007 --seeds 1 2 3 4 5
    .venv/bin/python bench/reproduce.py --analyze-only                # re-read existing runs

Runs go to ``<runs>/<topology>-s<seed>`` (default ``runs/reproduce``); a finished run directory
is analysed again, not re-run, unless ``--rerun``. Each run is ``testbed run --quiet
--no-analyze`` in its own process, at most ``--jobs`` at once, under the host CPU guard of
``testbed.parallel`` (no new run while the host is saturated). docs/policies.md holds the table
this prints, with the command and the date.

Setups (topologies/): the Legout et al. 2007 swarm at the paper's rates and timers with the
textbook tit-for-tat, with mainline 4.x's choker, and with an underprovisioned seed; free riders
(Legout et al. 2006), one and all BitTyrant peers (Piatek et al. 2007) and PropShare against
tit-for-tat (Levin et al. 2008) at the same rates and default timers. ``--scaled`` adds the
same setups scaled to a few minutes per run (legout_classes, free_riders, bittyrant_one,
bittyrant_all, propshare_vs_tft: rates x2.5, 8 MiB, timers / 4).
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis import injection, load_run, metrics  # noqa: E402
from analysis.load import Run  # noqa: E402
from testbed.parallel import Outcome, Task, run_plan  # noqa: E402

Figures = dict[str, float]


@dataclass(frozen=True, slots=True)
class Finding:
    setup: str
    """The topology it is measured on (topologies/<setup>.yaml)."""
    figure: str
    published: str
    key: str
    """The key of the per-run figures (``figures_of``) it reads."""
    reproduced: Callable[[float, float], bool] | None = None
    """The check on the median over seeds (and the ``against`` setup's median, else NaN);
    None: a figure shown for context."""
    against: str | None = None
    """Another setup whose same-seed figure this one is shown beside (or divided by)."""
    divide: bool = False
    """The figure is this setup's value over the ``against`` setup's, seed by seed."""


def _legout(setup: str, *, seed_state: bool = False) -> list[Finding]:
    """The Legout et al. 2007 figures of one setup with slow / medium / fast classes."""
    rows = [
        Finding(setup, "median completion slow / medium / fast (s)", "faster classes finish "
                "sooner", "medians"),
        Finding(setup, "sharing incentive: slow / fast median completion",
                "> 1 (faster classes finish sooner)", "slow_over_fast", lambda v, _: v > 1.05),
        Finding(setup, "clustering I_kk fast", "> 1 (similar peers unchoke each other)",
                "cluster_fast", lambda v, _: v > 1.0),
        Finding(setup, "clustering I_kk slow", "> 1", "cluster_slow", lambda v, _: v > 1.0),
        Finding(setup, "upload utilisation of the leechers", "high", "utilisation",
                lambda v, _: v > 0.8),
        Finding(setup, "every piece in the swarm at / (F / u_s)", "about 1 with a "
                "well-provisioned seed", "injection_ratio", lambda v, _: v < 1.5),
        Finding(setup, "seed's contributions to pieces already in the swarm, until every "
                "piece was", "–", "seed_redundant"),
    ]
    rows.append(Finding(setup, "Jain's index of the seed's service rate over leechers",
                        "uniform service in seed state (mainline 4.x)", "seed_jain",
                        (lambda v, _: v > 0.9) if seed_state else None))
    return rows


FINDINGS: tuple[Finding, ...] = (
    *_legout("legout_2007"),
    *_legout("legout_2007_mainline", seed_state=True),
    Finding("legout_2007_stay", "median completion slow / medium / fast (s)",
            "libtorrent 2.1.1 on this host, same swarm: means 779 / 708 / 669", "medians"),
    Finding("legout_2007_stay", "sharing incentive: slow / fast median completion",
            "libtorrent 2.1.1 here: 1.16 (of means)", "slow_over_fast", lambda v, _: v > 1.05),
    Finding("legout_2007_stay", "makespan / D_p2p", "libtorrent 2.1.1 here: 1.34",
            "makespan_over_bound"),
    Finding("legout_2007_stay", "clustering I_kk fast", "> 1", "cluster_fast",
            lambda v, _: v > 1.0),
    Finding("legout_2007_slow_seed", "sharing incentive: slow / fast median completion",
            "weaker than with a fast seed", "slow_over_fast", lambda v, base: v < base,
            against="legout_2007"),
    Finding("legout_2007_slow_seed", "clustering I_kk fast", "absent (about 1)",
            "cluster_fast", lambda v, base: v < min(base, 1.1), against="legout_2007"),
    Finding("legout_2007_slow_seed", "every piece in the swarm at / (F / u_s)", "–",
            "injection_ratio"),
    Finding("free_riders_paper", "free-rider slowdown: free rider / contributor median",
            "> 1 (free riders finish, later)", "free_rider_slowdown", lambda v, _: v > 1.05),
    Finding("bittyrant_one_paper", "strategic speed-up: medium tit-for-tat / BitTyrant",
            "1.7 (median 70 % faster, live swarms)", "strategic_speedup", lambda v, _: v > 1.05),
    Finding("bittyrant_all_paper", "all-BitTyrant / one-BitTyrant median completion",
            "> 1 (an all-strategic swarm can be slower)", "median_all", lambda v, _: v > 1.05,
            against="bittyrant_one_paper", divide=True),
    Finding("propshare_vs_tft_paper", "tit-for-tat / PropShare median, slow class",
            "> 1 (PropShare faster)", "tft_over_ps_slow", lambda v, _: v > 1.05),
    Finding("propshare_vs_tft_paper", "tit-for-tat / PropShare median, fast class",
            "> 1 (PropShare faster)", "tft_over_ps_fast", lambda v, _: v > 1.05),
    # The same setups scaled to minutes (rates x2.5, 8 MiB, timers / 4): quick looks.
    *_legout("legout_classes"),
    Finding("free_riders", "free-rider slowdown: free rider / contributor median", "> 1",
            "free_rider_slowdown", lambda v, _: v > 1.05),
    Finding("bittyrant_one", "strategic speed-up: medium tit-for-tat / BitTyrant", "1.7",
            "strategic_speedup", lambda v, _: v > 1.05),
    Finding("bittyrant_all", "all-BitTyrant / one-BitTyrant median completion", "> 1",
            "median_all", lambda v, _: v > 1.05, against="bittyrant_one",
            divide=True),
    Finding("propshare_vs_tft", "tit-for-tat / PropShare median, slow class", "> 1",
            "tft_over_ps_slow", lambda v, _: v > 1.05),
    Finding("propshare_vs_tft", "tit-for-tat / PropShare median, fast class", "> 1",
            "tft_over_ps_fast", lambda v, _: v > 1.05),
)
PAPER_SETUPS = ("legout_2007", "legout_2007_mainline", "legout_2007_stay",
                "legout_2007_slow_seed",
                "free_riders_paper", "bittyrant_one_paper", "bittyrant_all_paper",
                "propshare_vs_tft_paper")
SETUPS = tuple(dict.fromkeys(f.setup for f in FINDINGS))


def _ratio(a: float | None, b: float | None) -> float:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return math.nan
    return a / b


def seed_service_jain(run: Run) -> float:
    """Jain's index over leechers of (bytes the initial seeds sent them / time they were there):
    1 when the seeds serve every leecher at the same rate."""
    seeds = set(run.seeds["name"].astype(str))
    t = run.transfers
    last = t[t["peer"].astype(str).isin(seeds)].groupby("neighbour")["up"].max()
    lee = run.leechers.set_index("name")
    stay = (lee["left"] - lee["start"]).astype(float)
    rates = [float(last.get(name, 0.0)) / stay[name] for name in lee.index if stay[name] > 0]
    return metrics.jain(rates)


def seed_redundancy_while_injecting(run: Run, done_at: float | None) -> float:
    """Share of the initial seeds' piece contributions, until ``done_at`` (when the last piece
    first reached a leecher, ``injection.injection``), that went to pieces some leecher already
    held (0: each piece sent once). Later contributions are all to pieces the swarm holds,
    whatever the seed does."""
    contrib = injection.seed_contributions(run)
    if done_at is not None:
        contrib = contrib[contrib["t"] <= done_at]
    if not len(contrib):
        return math.nan
    return float((contrib["status"] != "new").mean())


def figures_of(run: Run) -> Figures:
    by_group = metrics.completion_by_group(run)
    med = {str(g): float(r["median"]) for g, r in by_group.iterrows()}
    cl = metrics.clustering(run)
    diag = {str(g): float(cl.loc[g, g]) for g in cl.index if g in cl.columns}
    util = metrics.utilisation(run)
    util = util[util["role"] == "leecher"].dropna(subset=["capacity", "tau"])
    eff = metrics.efficiency(run)
    inj = injection.injection(run)
    f: Figures = {
        "median_all": med.get("all", math.nan),
        "makespan_over_bound": _ratio(eff["makespan"], eff["d_p2p"]),
        "slow_over_fast": _ratio(med.get("slow"), med.get("fast")),
        "cluster_fast": diag.get("fast", math.nan), "cluster_slow": diag.get("slow", math.nan),
        "utilisation": float(util["up"].sum() / (util["capacity"] * util["tau"]).sum())
        if len(util) else math.nan,
        "injection_ratio": inj["ratio"] or math.nan,
        "seed_redundant": seed_redundancy_while_injecting(run, inj["all_injected_at"]),
        "seed_jain": seed_service_jain(run),
        "free_rider_slowdown": _ratio(med.get("free_rider"), med.get("contributor")),
        "strategic_speedup": _ratio(med.get("medium"), med.get("tyrant")),
        "tft_over_ps_slow": _ratio(med.get("tft_slow"), med.get("ps_slow")),
        "tft_over_ps_fast": _ratio(med.get("tft_fast"), med.get("ps_fast")),
    }
    for group in ("slow", "medium", "fast"):
        f[f"median_{group}"] = med.get(group, math.nan)
    cpu = (run.summary or {}).get("cpu") or {}
    f["saturated"] = 1.0 if cpu.get("saturated") else 0.0
    return f


def run_dir(runs: Path, setup: str, seed: int) -> Path:
    return runs / f"{setup}-s{seed}"


def plan(setups: list[str], seeds: list[int], runs: Path, rerun: bool) -> list[Task]:
    tasks = []
    for seed in seeds:
        for setup in setups:
            out = run_dir(runs, setup, seed)
            if (out / "summary.json").exists() and not rerun:
                continue

            def work(setup: str = setup, seed: int = seed, out: Path = out) -> Outcome:
                if out.exists():
                    shutil.rmtree(out)
                out.parent.mkdir(parents=True, exist_ok=True)
                cmd = [sys.executable, "-m", "testbed.cli", "run",
                       str(ROOT / "topologies" / f"{setup}.yaml"), "--out", str(out),
                       "--seed", str(seed), "--quiet", "--no-analyze"]
                code = subprocess.run(cmd, cwd=ROOT, check=False).returncode
                return Outcome("completed" if code == 0 else f"exit {code}")

            tasks.append(Task(f"{setup} seed {seed}", work))
    return tasks


def _spread(values: list[float], digits: int = 2) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "–"
    text = f"{statistics.median(values):.{digits}f}"
    return text + (f" ({min(values):.{digits}f}–{max(values):.{digits}f})"
                   if len(values) > 1 else "")


def table(results: dict[tuple[str, int], Figures], seeds: list[int]) -> str:
    rows = ["| setup | figure | published | measured: median (range) over seeds | reproduced? |",
            "|---|---|---|---|---|"]
    for f in FINDINGS:
        per_seed = [results[(f.setup, s)] for s in seeds if (f.setup, s) in results]
        if not per_seed:
            continue
        if f.key == "medians":
            text = " / ".join(_spread([r[f"median_{g}"] for r in per_seed], 0)
                              for g in ("slow", "medium", "fast"))
            rows.append(f"| {f.setup} | {f.figure} | {f.published} | {text} | |")
            continue
        values = [r[f.key] for r in per_seed]
        base = [math.nan] * len(values)
        if f.against is not None:
            base = [results.get((f.against, s), {}).get(f.key, math.nan)
                    for s in seeds if (f.setup, s) in results]
        if f.divide:
            values = [_ratio(v, b) for v, b in zip(values, base, strict=True)]
            base = [math.nan] * len(values)
            values_text = _spread(values)
        elif f.against is not None:
            values_text = f"{_spread(values)} (vs {_spread(base)} in {f.against})"
        else:
            values_text = _spread(values)
        clean = [v for v in values if not math.isnan(v)]
        clean_base = [b for b in base if not math.isnan(b)]
        base_median = statistics.median(clean_base) if clean_base else math.nan
        verdict = ("–" if f.reproduced is None or not clean
                   else "**yes**" if f.reproduced(statistics.median(clean), base_median)
                   else "**no**")
        rows.append(f"| {f.setup} | {f.figure} | {f.published} | {values_text} | {verdict} |")
    saturated = sorted(f"{setup} s{seed}" for (setup, seed), r in results.items()
                       if r["saturated"])
    rows.append("")
    rows.append(f"Runs flagged host-CPU saturated: {', '.join(saturated) or 'none'}.")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", choices=SETUPS, help="this setup (repeatable)")
    ap.add_argument("--scaled", action="store_true",
                    help="also the scaled setups (minutes per run instead of ~15)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "reproduce")
    ap.add_argument("--jobs", type=int, default=3, help="runs at once (default 3)")
    ap.add_argument("--analyze-only", action="store_true", help="run nothing")
    ap.add_argument("--rerun", action="store_true", help="replace finished run directories")
    args = ap.parse_args(argv)
    setups = args.only or list(SETUPS if args.scaled else PAPER_SETUPS)
    if not args.analyze_only:
        run_plan(plan(setups, args.seeds, args.runs.resolve(), args.rerun), jobs=args.jobs)
    results = {}
    for setup in setups:
        for seed in args.seeds:
            out = run_dir(args.runs, setup, seed)
            if (out / "summary.json").exists():
                results[(setup, seed)] = figures_of(load_run(out))
            else:
                print(f"no finished run in {out}; skipped", file=sys.stderr)
    print(table(results, args.seeds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
