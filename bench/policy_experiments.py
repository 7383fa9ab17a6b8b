"""Run and analyse the incentive-policy topologies; print the outcome beside the published one.

    .venv/bin/python bench/policy_experiments.py                      # run all five, then analyse
    .venv/bin/python bench/policy_experiments.py --only free_riders   # one (repeatable)
    .venv/bin/python bench/policy_experiments.py --seeds 1 2 3        # repeat with other seeds
    .venv/bin/python bench/policy_experiments.py --analyze-only       # re-analyse existing runs

Runs go to ``runs/policy/<topology>-s<seed>`` (kept: re-running a topology and seed that
already has a finished run directory just analyses it again, unless ``--rerun``). Each run is
``testbed run --out DIR --quiet --no-analyze`` as a subprocess, one at a time, since the host
has two cores. The table (docs/policies.md has the measured one) gives per topology:
completion median per group (completed / leechers), the clustering index of each group with
itself (Legout et al. 2007), free-rider slowdown (median free-rider completion / median
contributor completion), strategic speed-up (median tit-for-tat completion of the BitTyrant
peer's class / the BitTyrant peer's), PropShare vs tit-for-tat medians, and the host-CPU
saturation flag from summary.json.
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from analysis import load_run, metrics
from analysis.load import Run

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGIES = ("legout_classes", "free_riders", "bittyrant_one", "bittyrant_all",
              "propshare_vs_tft")
PUBLISHED = {
    "legout_classes": "faster classes finish sooner; clustering index > 1 within each class",
    "free_riders": "free riders finish, later than contributors (slowdown > 1)",
    "bittyrant_one": "BitTyrant finishes sooner than its class (median 70 % faster, live)",
    "bittyrant_all": "an all-BitTyrant swarm can be slower than a tit-for-tat one",
    "propshare_vs_tft": "PropShare faster than tit-for-tat peers of the same swarm",
}


@dataclass(slots=True)
class Outcome:
    topology: str
    seed: int
    run_dir: Path
    status: str
    medians: dict[str, float]
    done: dict[str, tuple[int, int]]
    makespan: float | None
    clustering_diag: dict[str, float]
    figures: dict[str, float] = field(default_factory=dict)
    cpu: str = ""


def run_topology(name: str, seed: int, out: Path, time_limit: float | None) -> None:
    cmd = [str(ROOT / ".venv/bin/testbed"), "run", str(ROOT / "topologies" / f"{name}.yaml"),
           "--out", str(out), "--seed", str(seed), "--quiet", "--no-analyze"]
    if time_limit is not None:
        cmd += ["--time-limit", str(time_limit)]
    print(f"running {name} seed {seed} -> {out}", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, check=False)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"testbed run {name} failed with exit status {proc.returncode}")


def _median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def _group_times(run: Run, prefix: str) -> list[float]:
    ct = metrics.completion_times(run)
    return [float(t) for t in ct.loc[ct["group"].astype(str).str.startswith(prefix),
                                     "completion_time"].dropna()]


def analyse(name: str, seed: int, run_dir: Path) -> Outcome:
    run = load_run(run_dir)
    by_group = metrics.completion_by_group(run)
    medians = {str(g): float(r["median"]) for g, r in by_group.iterrows()}
    done = {str(g): (int(r["completed"]), int(r["leechers"])) for g, r in by_group.iterrows()}
    cl = metrics.clustering(run)
    diag = {str(g): float(cl.loc[g, g]) for g in cl.index if g in cl.columns}
    summary = run.summary or {}
    cpu = summary.get("cpu") or {}
    cpu_text = (f"host mean {cpu.get('host_mean', math.nan):.0f} %, "
                f"{'SATURATED' if cpu.get('saturated') else 'ok'}")
    if cpu.get("warning"):
        cpu_text += f" ({cpu['warning']})"
    out = Outcome(topology=name, seed=seed, run_dir=run_dir,
                  status=str(summary.get("status")), medians=medians, done=done,
                  makespan=metrics.makespan(run), clustering_diag=diag, cpu=cpu_text)
    f = out.figures
    if name == "free_riders":
        f["free_rider_slowdown"] = (medians.get("free_rider", math.nan)
                                    / medians.get("contributor", math.nan))
    if name == "bittyrant_one":
        f["strategic_speedup"] = medians.get("medium", math.nan) / medians.get("tyrant", math.nan)
    if name == "propshare_vs_tft":
        ps, tft = _median(_group_times(run, "ps_")), _median(_group_times(run, "tft_"))
        f["propshare_median"], f["tft_median"] = ps, tft
        f["tft_over_propshare"] = tft / ps
        for cls in ("slow", "fast"):
            f[f"tft_over_propshare_{cls}"] = (medians.get(f"tft_{cls}", math.nan)
                                              / medians.get(f"ps_{cls}", math.nan))
    if name == "legout_classes":
        f["slow_over_fast"] = medians.get("slow", math.nan) / medians.get("fast", math.nan)
    return out


def _fmt(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def print_table(outcomes: list[Outcome]) -> None:
    for o in outcomes:
        print(f"\n## {o.topology} (seed {o.seed}) — {o.run_dir}, status {o.status}; CPU {o.cpu}")
        print(f"published: {PUBLISHED[o.topology]}")
        groups = [g for g in o.medians if g != "all"] + ["all"]
        print("  completion median (s):  " + ", ".join(
            f"{g} {_fmt(o.medians[g])} ({o.done[g][0]}/{o.done[g][1]})" for g in groups))
        print(f"  makespan: {_fmt(o.makespan)} s")
        if o.clustering_diag:
            print("  clustering index I_kk:  " + ", ".join(
                f"{g} {_fmt(v, 2)}" for g, v in o.clustering_diag.items()))
        for key, value in o.figures.items():
            print(f"  {key}: {_fmt(value, 2)}")
    # Cross-run figure: all-BitTyrant swarm against the (nearly) all-tit-for-tat one.
    one = {o.seed: o for o in outcomes if o.topology == "bittyrant_one"}
    for o in outcomes:
        if o.topology == "bittyrant_all" and o.seed in one:
            base = one[o.seed]
            print(f"\nbittyrant_all vs bittyrant_one (seed {o.seed}): median all "
                  f"{_fmt(o.medians.get('all'))} s vs {_fmt(base.medians.get('all'))} s; "
                  f"makespan {_fmt(o.makespan)} s vs {_fmt(base.makespan)} s")


def _per_seed(outcomes: list[Outcome], topology: str, value) -> str:
    """``v1 / v2 / v3 (median m)`` of ``value(outcome)`` over the seeds of one topology."""
    vals = [value(o) for o in outcomes if o.topology == topology]
    vals = [v for v in vals if v is not None]
    if not vals:
        return "–"
    text = " / ".join(_fmt(v, 2) for v in vals)
    return text + (f" (median {_fmt(_median(vals), 2)})" if len(vals) > 1 else "")


def print_summary(outcomes: list[Outcome]) -> None:
    """One markdown table over all seeds: the figures docs/policies.md quotes."""
    seeds = sorted({o.seed for o in outcomes})
    one = {o.seed: o for o in outcomes if o.topology == "bittyrant_one"}
    rows: list[tuple[str, str, str]] = []

    def add(topology: str, figure: str, value) -> None:
        if any(o.topology == topology for o in outcomes):
            rows.append((topology, figure, _per_seed(outcomes, topology, value)))

    for cls in ("slow", "medium", "fast"):
        add("legout_classes", f"median completion {cls} (s)", lambda o, c=cls: o.medians.get(c))
    add("legout_classes", "slow / fast median", lambda o: o.figures.get("slow_over_fast"))
    for cls in ("slow", "medium", "fast"):
        add("legout_classes", f"clustering I_kk {cls}", lambda o, c=cls: o.clustering_diag.get(c))
    add("free_riders", "median contributor (s)", lambda o: o.medians.get("contributor"))
    add("free_riders", "median free rider (s)", lambda o: o.medians.get("free_rider"))
    add("free_riders", "free-rider slowdown", lambda o: o.figures.get("free_rider_slowdown"))
    add("bittyrant_one", "BitTyrant peer (s)", lambda o: o.medians.get("tyrant"))
    add("bittyrant_one", "median medium TFT (s)", lambda o: o.medians.get("medium"))
    add("bittyrant_one", "strategic speed-up", lambda o: o.figures.get("strategic_speedup"))
    add("bittyrant_all", "median all (s)", lambda o: o.medians.get("all"))
    add("bittyrant_all", "median all of bittyrant_one, same seed (s)",
        lambda o: one[o.seed].medians.get("all") if o.seed in one else None)
    add("bittyrant_all", "makespan (s)", lambda o: o.makespan)
    add("bittyrant_all", "makespan of bittyrant_one, same seed (s)",
        lambda o: one[o.seed].makespan if o.seed in one else None)
    add("propshare_vs_tft", "median PropShare (s)", lambda o: o.figures.get("propshare_median"))
    add("propshare_vs_tft", "median TFT (s)", lambda o: o.figures.get("tft_median"))
    add("propshare_vs_tft", "TFT / PropShare, slow class",
        lambda o: o.figures.get("tft_over_propshare_slow"))
    add("propshare_vs_tft", "TFT / PropShare, fast class",
        lambda o: o.figures.get("tft_over_propshare_fast"))
    for name in TOPOLOGIES:
        add(name, "host CPU mean % (saturated?)", lambda o: None)
    print(f"\n## Summary over seeds {', '.join(map(str, seeds))} (values per seed, in order)\n")
    print("| topology | figure | measured |\n|---|---|---|")
    for topology, figure, text in rows:
        if figure.startswith("host CPU"):
            text = " / ".join(o.cpu.split(" (")[0].replace("host mean ", "")
                              for o in outcomes if o.topology == topology)
        print(f"| {topology} | {figure} | {text} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", choices=TOPOLOGIES,
                    help="run only this topology (repeatable)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "policy")
    ap.add_argument("--analyze-only", action="store_true",
                    help="analyse existing run directories, run nothing")
    ap.add_argument("--rerun", action="store_true", help="replace existing run directories")
    ap.add_argument("--time-limit", type=float, default=None)
    args = ap.parse_args(argv)
    outcomes = []
    for seed in args.seeds:
        for name in args.only or TOPOLOGIES:
            out = args.runs / f"{name}-s{seed}"
            finished = (out / "summary.json").exists()
            if not args.analyze_only and (args.rerun or not finished):
                if out.exists():
                    shutil.rmtree(out)
                out.parent.mkdir(parents=True, exist_ok=True)
                run_topology(name, seed, out, args.time_limit)
            if not (out / "experiment.json").exists():
                print(f"no run directory {out}; skipped", file=sys.stderr)
                continue
            outcomes.append(analyse(name, seed, out))
    print_table(outcomes)
    print_summary(outcomes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
