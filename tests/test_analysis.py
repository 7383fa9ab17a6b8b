"""The analysis on hand-made run directories whose answers are worked out by hand below."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from analysis_fixtures import (
    complete,
    counters,
    make_run,
    pid,
    piece,
    plan,
    rechoke,
    small_swarm_leecher_logs,
    small_swarm_plans,
    start,
    stop,
)

from analysis import AnalysisError, cli_analyze, jain, load_run, metrics
from peer.errors import TestbedError

# ---------------------------------------------------------------------------------------------
# A small swarm: seed s (100 B/s) and three leechers of a 400-byte file in 4 pieces of 100.
#   a, b: group fast, up 200 B/s; c: group slow, up 50 B/s, arrives at t = 2. Downloads 1000 B/s.
#   a completes at 5 (T = 5), b at 7 (T = 7), c at 12 (T = 12 − 2 = 10). Everyone stops at 20.
#   Bytes up/down at stop: s 600/0, a 300/400, b 200/400, c 100/400.


def small_swarm(tmp_path):
    s, a, b, c = small_swarm_plans()
    logs = {
        "s": [start(s), counters(1, {1: (100, 0)}), counters(2, {1: (200, 0), 2: (100, 0)}),
              counters(3, {1: (400, 0), 2: (200, 0)}), stop(20, 600, 0)],
        **small_swarm_leecher_logs(a, b, c),
    }
    summary = {"schema": 1, "status": "completed",
               "cpu": {"host_mean": 40.0, "host_p95": 95.0, "saturated_seconds": 8,
                       "saturated": True, "warning": "host CPU above 90 % for 8 s"}}
    resources = [{"t": 1.0, "host_cpu": 50.0, "cpus": 2,
                  "procs": {"s": {"pid": 1000, "cpu": 10.0, "rss": 1000},
                            "tracker": {"pid": 999, "cpu": 1.0, "rss": 500}}},
                 {"t": 2.0, "host_cpu": 30.0, "cpus": 2,
                  "procs": {"s": {"pid": 1000, "cpu": 5.0, "rss": 1100}}}]
    return make_run(tmp_path / "run", [s, a, b, c], logs, summary=summary, resources=resources)


def test_peers_table(tmp_path):
    run = load_run(small_swarm(tmp_path))
    p = run.peers.set_index("name")
    assert list(p.index) == ["s", "a", "b", "c"]
    assert p.loc["c", "group"] == "slow" and p.loc["c", "role"] == "leecher"
    assert p.loc["c", "peer_id"] == pid(3)
    assert p.loc["c", "upload_rate"] == 50 and p.loc["c", "download_rate"] == 1000
    assert math.isnan(p.loc["s", "download_rate"])  # unlimited
    assert p.loc["c", "arrival"] == 2.0 and p.loc["c", "start"] == 2.0
    assert p.loc["c", "complete"] == 12 and p.loc["c", "completion_time"] == 10
    assert p.loc["a", "stop"] == 20 and p.loc["a", "stop_reason"] == "signal"
    assert (p.loc["a", "up"], p.loc["a", "down"]) == (300, 400)
    assert p.loc["a", "choker"] == "tit_for_tat" and p.loc["a", "departure_kind"] == "never"
    assert run.num_pieces == 4 and run.file_size == 400 and run.end == 20
    assert run.summary["status"] == "completed" and run.warnings == []


def test_pieces_table_maps_ids_to_names(tmp_path):
    run = load_run(small_swarm(tmp_path))
    b = run.pieces[run.pieces["peer"] == "b"]
    assert list(b["index"]) == [0, 1, 2, 3]
    assert b.iloc[0]["from"] == ["s", "a"]
    assert b.iloc[0]["from_first"] == "s" and b.iloc[0]["from_group"] == "seed"
    assert b.iloc[0]["t"] == 4 and b.iloc[0]["start"] == 3.5 and b["ok"].all()
    assert (b["group"] == "fast").all()


def test_resources_table(tmp_path):
    run = load_run(small_swarm(tmp_path))
    r = run.resources
    assert len(r) == 3
    row = r[(r["t"] == 1.0) & (r["proc"] == "tracker")].iloc[0]
    assert (row["pid"], row["cpu"], row["rss"], row["host_cpu"]) == (999, 1.0, 500, 50.0)


def test_completion_metrics(tmp_path):
    run = load_run(small_swarm(tmp_path))
    ct = metrics.completion_times(run).set_index("name")["completion_time"]
    assert ct.to_dict() == {"a": 5.0, "b": 7.0, "c": 10.0}
    by = metrics.completion_by_group(run)
    assert by.loc["fast", "mean"] == 6.0 and by.loc["fast", "median"] == 6.0
    assert by.loc["fast", "p90"] == pytest.approx(5 + 0.9 * (7 - 5))
    assert by.loc["slow", "mean"] == 10.0 and by.loc["slow", "completed"] == 1
    # all: 5, 7, 10; p90 at rank 0.9 · 2 = 1.8 -> 7 + 0.8 · 3
    assert by.loc["all", "mean"] == pytest.approx(22 / 3)
    assert by.loc["all", "median"] == 7.0 and by.loc["all", "p90"] == pytest.approx(9.4)
    cdf = metrics.completion_cdf(run)
    fast = cdf[cdf["group"] == "fast"]
    assert list(fast["completion_time"]) == [5.0, 7.0] and list(fast["fraction"]) == [0.5, 1.0]
    assert metrics.makespan(run) == 12.0


def test_makespan_none_when_a_staying_leecher_never_completed(tmp_path):
    s = plan("s", 0, role="seed", up=100)
    a = plan("a", 1)
    k = plan("k", 2, departure="killed", departure_time=3.0)
    logs = {"s": [start(s), stop(10, 0, 0)], "a": [start(a), complete(6, 400, 6)],
            "k": [start(k), counters(1, {0: (0, 50)})]}
    run = load_run(make_run(tmp_path / "r", [s, a, k], logs))
    assert metrics.makespan(run) == 6.0  # k was killed on purpose: it does not count
    logs["a"] = [start(a)]
    run = load_run(make_run(tmp_path / "r2", [s, a, k], logs))
    assert metrics.makespan(run) is None
    # a killed peer's bytes come from its last counters sample
    assert run.peers.set_index("name").loc["k", "down"] == 50


def test_bounds_and_efficiency(tmp_path):
    run = load_run(small_swarm(tmp_path))
    b = metrics.bounds(run)
    # F = 400, N = 3, u_s = 100, Σu_i = 450, d_min = 1000
    assert (b["u_s"], b["sum_u_i"], b["d_min"], b["leechers"]) == (100, 450, 1000, 3)
    assert b["d_cs"] == pytest.approx(max(3 * 400 / 100, 400 / 1000))  # 12
    assert b["d_p2p"] == pytest.approx(max(400 / 100, 400 / 1000, 1200 / 550))  # 4
    e = metrics.efficiency(run)
    assert e["makespan"] == 12.0
    assert e["efficiency"] == pytest.approx(4 / 12) and e["speedup"] == pytest.approx(1.0)


@pytest.mark.parametrize(("values", "expected"), [
    ([1, 1, 1, 1], 1.0),
    ([1, 0, 0, 0], 0.25),
    ([2, 2, 0, 0], 0.5),
    ([1, 2, 3], 36 / (3 * 14)),
    ([0.75, 0.5, 0.25], 6 / 7),
    ([0, 0], 1.0),
    ([5, float("nan"), 5], 1.0),
])
def test_jain_table(values, expected):
    assert jain(values) == pytest.approx(expected)


def test_jain_edges():
    assert math.isnan(jain([]))
    with pytest.raises(ValueError):
        jain([1, -1])


def test_share_ratios_and_fairness(tmp_path):
    run = load_run(small_swarm(tmp_path))
    sr = metrics.share_ratios(run).set_index("name")["share_ratio"]
    assert math.isnan(sr["s"])
    assert (sr["a"], sr["b"], sr["c"]) == (0.75, 0.5, 0.25)
    g = metrics.share_by_group(run)
    assert g.loc["fast", "ratio"] == pytest.approx(500 / 800)
    assert g.loc["fast", "mean_ratio"] == pytest.approx(0.625)
    assert g.loc["slow", "ratio"] == pytest.approx(0.25)
    dpc = metrics.download_per_capacity(run).set_index("name")["rate_per_capacity"]
    # a: 400 B in 5 s / 200; b: 400 B in 7 s / 200; c: 400 B in 10 s (from its start) / 50
    assert dpc["a"] == pytest.approx(0.4) and dpc["b"] == pytest.approx(400 / 7 / 200)
    assert dpc["c"] == pytest.approx(0.8)
    f = metrics.fairness(run)
    assert f["jain_share_ratio"] == pytest.approx(6 / 7)
    x = [0.4, 2 / 7, 0.8]
    assert f["jain_rate_per_capacity"] == pytest.approx(sum(x) ** 2 / (3 * sum(v * v for v in x)))


def test_utilisation(tmp_path):
    run = load_run(small_swarm(tmp_path))
    u = metrics.utilisation(run).set_index("name")["utilisation"]
    assert u["s"] == pytest.approx(600 / (100 * 20))
    assert u["c"] == pytest.approx(100 / (50 * 18))  # in the swarm from 2 to 20
    g = metrics.utilisation_by_group(run)["utilisation"]
    assert g["fast"] == pytest.approx(500 / (200 * 20 + 200 * 20))
    # the seed's counters totals: 100 by t=1, 300 by t=2, 600 by t=3 (100 B/s capacity)
    ot = metrics.utilisation_over_time(run, step=1.0, by="peer")["s"]
    assert math.isnan(ot.loc[0.0])
    assert list(ot.loc[1.0:4.0]) == pytest.approx([1.0, 2.0, 3.0, 0.0])


# ---------------------------------------------------------------------------------------------
# availability: seed s (all 4 pieces), a from t = 0, b from t = 1 holding piece 3.
#   a: piece 0 at 2, piece 1 at 3, piece 2 fails its hash at 3.5; a leaves at 5.
#   b: piece 0 at 4. s and b stop at 10 (the end of the run).
#   copies:  t=0 [1,1,1,1]  t=1 [1,1,1,2]  t=2 [2,1,1,2]  t=3 [2,2,1,2]  t=4 [3,2,1,2]
#            t>=5 [2,1,1,2] (a took its two copies away)


def availability_run(tmp_path):
    s = plan("s", 0, group="seed", role="seed")
    a = plan("a", 1)
    b = plan("b", 2)
    logs = {"s": [start(s), stop(10, 0, 0)],
            "a": [start(a), piece(2, 0, [0]), piece(3, 1, [0]), piece(3.5, 2, [0], ok=False),
                  stop(5, 0, 200)],
            "b": [start(b, 1.0, have=[3]), piece(4, 0, [0]), stop(10, 0, 100)]}
    return load_run(make_run(tmp_path / "av", [s, a, b], logs))


def test_availability(tmp_path):
    run = availability_run(tmp_path)
    av = metrics.availability(run, step=1.0).set_index("t")
    copies = {0: [1, 1, 1, 1], 1: [1, 1, 1, 2], 2: [2, 1, 1, 2], 3: [2, 2, 1, 2],
              4: [3, 2, 1, 2], 5: [2, 1, 1, 2], 10: [2, 1, 1, 2]}
    for t, c in copies.items():
        c = np.array(c, dtype=float)
        p = c / c.sum()
        assert av.loc[t, "min"] == c.min(), t
        assert av.loc[t, "mean"] == pytest.approx(c.mean()), t
        assert av.loc[t, "entropy"] == pytest.approx(-(p * np.log(p)).sum() / np.log(4)), t
    assert av.loc[0, "entropy"] == pytest.approx(1.0)
    assert list(av.loc[[0, 1, 4, 5], "peers"]) == [2, 3, 3, 2]


def test_population_and_progress(tmp_path):
    run = availability_run(tmp_path)
    pop = metrics.population(run, step=1.0).set_index("t")
    assert list(pop.loc[[0, 1, 4, 5, 10], "seeds"]) == [1, 1, 1, 1, 1]
    assert list(pop.loc[[0, 1, 4, 5, 10], "leechers"]) == [1, 2, 2, 1, 1]
    prog = metrics.progress(run, step=1.0).set_index("t")
    # N·M = 8: b's piece 3 from t = 1, then pieces at 2, 3, 4 (the failed one does not count)
    assert list(prog.loc[[0, 1, 2, 3, 4, 5, 10], "pieces"]) == [0, 1, 2, 3, 4, 4, 4]
    assert prog.loc[10, "fraction"] == 0.5


# ---------------------------------------------------------------------------------------------
# clustering: leechers a1, a2 (group A) and b1, b2 (group B); N = 4; a seed s unchokes a1.
#   a1: t=0 regular {a2, b1}, optimistic b2; t=10 regular {a2}; stops at 20
#       -> a2 20 s, b1 10 s regular; b2 10 s optimistic.
#   a2: t=0 regular {a1}; stops at 20 -> a1 20 s.
#   b1: t=0 regular {a1, b2}; t=10 (now a seed) regular {a1}, optimistic a2; stops at 30
#       -> leecher state: a1 10 s, b2 10 s; the seed-state rechoke does not count for clustering,
#          but its optimistic unchoke of a2 (20 s) counts for optimistic shares.
#   Group A gives 50 s: 40 to A, 10 to B. Group B gives 20 s: 10 to A, 10 to B.
#   Chance: same group (2 − 1)/3, other group 2/3.


def clustering_run(tmp_path):
    s = plan("s", 0, group="seed", role="seed")
    a1, a2 = plan("a1", 1, group="A"), plan("a2", 2, group="A")
    b1, b2 = plan("b1", 3, group="B"), plan("b2", 4, group="B")
    logs = {
        "s": [start(s), rechoke(0, 1, {1: "regular"}, seed=True), stop(30, 0, 0)],
        "a1": [start(a1), rechoke(0, 1, {2: "regular", 3: "regular", 4: "optimistic"}),
               rechoke(10, 2, {2: "regular", 3: "choke", 4: "choke"}), stop(20, 0, 0)],
        "a2": [start(a2), rechoke(0, 1, {1: "regular"}), stop(20, 0, 0)],
        "b1": [start(b1), rechoke(0, 1, {1: "regular", 4: "regular"}),
               rechoke(10, 2, {1: "regular", 2: "optimistic"}, seed=True), stop(30, 0, 0)],
        "b2": [start(b2), stop(30, 0, 0)],
    }
    return load_run(make_run(tmp_path / "cl", [s, a1, a2, b1, b2], logs))


def test_chokes_table(tmp_path):
    run = clustering_run(tmp_path)
    ch = run.chokes
    a1 = ch[ch["peer"] == "a1"]
    assert len(a1) == 6
    first = a1[a1["t"] == 0].set_index("neighbour")
    assert first.loc["b1", "decision"] == "regular" and first.loc["b1", "until"] == 10
    assert first.loc["b1", "neighbour_group"] == "B" and first.loc["b1", "group"] == "A"
    assert (a1[a1["t"] == 10]["duration"] == 10).all()  # until a1's stop at 20
    assert (ch[ch["peer"] == "b1"]["seed_state"].tolist()) == [False, False, True, True]


def test_unchoke_time_and_clustering(tmp_path):
    run = clustering_run(tmp_path)
    t = metrics.unchoke_time(run)
    assert t.loc["A", "A"] == 40 and t.loc["A", "B"] == 10
    assert t.loc["B", "A"] == 10 and t.loc["B", "B"] == 10
    assert "seed" not in t.index  # the seed's choices are not tit-for-tat
    cl = metrics.clustering(run)
    assert cl.loc["A", "A"] == pytest.approx(0.8 / (1 / 3))
    assert cl.loc["A", "B"] == pytest.approx(0.2 / (2 / 3))
    assert cl.loc["B", "A"] == pytest.approx(0.5 / (2 / 3))
    assert cl.loc["B", "B"] == pytest.approx(0.5 / (1 / 3))


def test_optimistic_share(tmp_path):
    run = clustering_run(tmp_path)
    o = metrics.optimistic_share(run).set_index("name")
    assert o["time"].to_dict() == {"a1": 0.0, "a2": 20.0, "b1": 0.0, "b2": 10.0}
    assert o.loc["a2", "share"] == pytest.approx(2 / 3) and o.loc["a1", "equal"] == 0.25


def test_chokes_table_columns(tmp_path):
    run = clustering_run(tmp_path)
    a1 = run.chokes[run.chokes["peer"] == "a1"].set_index("neighbour")
    first = a1[a1["t"] == 0]
    assert first.loc["b1", "down_rate"] == 30.0 and first.loc["b1", "up_rate"] == 1.5
    assert bool(first.loc["a2", "choking_us"]) and not bool(first.loc["b1", "choking_us"])
    assert first.loc["b2", "reason"] == "test, optimistic"  # a comma inside a value
    assert pd.isna(a1[a1["t"] == 10].loc["b1", "reason"])  # null
    assert a1["rate"].isna().all()
    assert list(run.chokes["trigger"].cat.categories) == ["timer"]


# ---------------------------------------------------------------------------------------------
# the column-wise reading of rechoke and counters lists gives what plain JSON decoding gives


def fast_path_logs(plans):
    s, a, b = plans
    return {
        "s": [start(s), rechoke(0.5, 1, {1: "regular", 2: "optimistic"}, seed=True),
              counters(1, {1: (300, 0), 2: (100, 0)}),
              counters(2, {1: (600, 0)}, up=700, down=0), stop(9, 700, 0)],
        "a": [start(a), rechoke(0.5, 1, {}), counters(1, {0: (0, 300), 2: (5, 7)}),
              rechoke(2.5, 2, {0: "choke", 2: "regular"}, trigger="interest",
                      rates={2: 1024.0}),
              {"t": 3, "ev": "future_event", "x": [1, {"y": 2}]},
              counters(4, {0: (0, 600)}, up=5, down=607), stop(9, 5, 607)],
        "b": [start(b), counters(1.5, {0: (0, 100), 1: (7, 5)})],
    }


def fast_path_plans():
    return [plan("s", 0, role="seed", group="seed"), plan("a", 1), plan("b", 2)]


def frames(run):
    return {name: getattr(run, name).reset_index(drop=True)
            for name in ("peers", "pieces", "chokes", "transfers", "totals", "connections")}


def assert_same_run(one, other):
    a, b = frames(one), frames(other)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_categorical=False, obj=name)
    assert one.warnings == other.warnings


@pytest.mark.parametrize("tail", ["", '{"t":9.5,"ev":"rechoke","round":3,"trigger":"ti'])
def test_fast_and_plain_reading_agree(tmp_path, monkeypatch, tail):
    import analysis._fastpath as fastpath

    plans = fast_path_plans()
    root = make_run(tmp_path / "r", plans, fast_path_logs(plans), raw_tail={"b": tail})
    calls = []
    real = fastpath.split_lists

    def spy(raw_lines, form, parse):
        frame = real(raw_lines, form, parse)
        calls.append(frame is not None)
        return frame

    monkeypatch.setattr(fastpath, "split_lists", spy)
    fast = load_run(root)
    assert calls.count(True) >= 4  # the fast path was taken, for both kinds of lines
    monkeypatch.setattr(fastpath, "split_lists", lambda *args: None)
    plain = load_run(root)
    assert_same_run(fast, plain)
    ch = fast.chokes.set_index(["peer", "neighbour"])
    assert ch.loc[("a", "b"), "rate"] == 1024.0 and ch.loc[("a", "b"), "trigger"] == "interest"
    assert len(fast.transfers) == 8 and bool(tail) == bool(fast.warnings)


def test_two_process_reading_gives_the_same_tables(tmp_path, monkeypatch):
    import analysis._parallel as parallel
    import analysis.load as load_module

    # Logs whose halves use different neighbours, decisions and reasons, so that joining the
    # child's half must translate its codes.
    root = small_swarm(tmp_path)
    clustering = clustering_run(tmp_path)
    plans = fast_path_plans()
    reference_fast = load_run(make_run(tmp_path / "fp", plans, fast_path_logs(plans)))
    pools = []
    real_pool = parallel.ProcessPoolExecutor

    def counting_pool(*args, **kwargs):
        pools.append(1)
        return real_pool(*args, **kwargs)

    monkeypatch.setattr(parallel, "ProcessPoolExecutor", counting_pool)
    for path in (root, clustering.path, reference_fast.path):
        monkeypatch.setattr(load_module, "PARALLEL", False)
        one = load_run(path)
        monkeypatch.setattr(load_module, "PARALLEL", True)
        monkeypatch.setattr(load_module, "PARALLEL_MIN_BYTES", 0)
        two = load_run(path)
        assert_same_run(one, two)
        for name in ("chokes", "transfers"):
            frame = getattr(two, name)
            assert frame["neighbour"].isin(two.peers["name"]).all()
    assert len(pools) == 3  # the child process did read half of each run


def test_unusual_lists_fall_back_to_plain_json(tmp_path):
    # Keys in another order, spaces, escapes: the plain decoder reads them the same.
    plans = fast_path_plans()
    logs = fast_path_logs(plans)
    reference = load_run(make_run(tmp_path / "ref", plans, logs))
    nb = logs["a"][3]["nbrs"][1]
    logs["a"][3]["nbrs"][1] = dict(reversed(list(nb.items())))
    run = load_run(make_run(tmp_path / "order", plans, logs))
    assert_same_run(run, reference)
    root = make_run(tmp_path / "spaces", plans, fast_path_logs(plans))
    log = root / "peers" / "s.jsonl"
    text = log.read_text().replace('"peer":', '"peer": ').replace('"test, ', '"t\\u0065st, ')
    log.write_text(text)
    run = load_run(root)
    assert_same_run(run, reference)


def test_blank_lines_inside_a_log_are_skipped(tmp_path):
    plans = fast_path_plans()
    root = make_run(tmp_path / "blank", plans, fast_path_logs(plans))
    log = root / "peers" / "a.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join([*lines[:2], "", "  ", *lines[2:]]) + "\n")
    reference = load_run(make_run(tmp_path / "ref", plans, fast_path_logs(plans)))
    assert_same_run(load_run(root), reference)


def test_bad_neighbour_field_names_the_line(tmp_path):
    plans = fast_path_plans()
    logs = fast_path_logs(plans)
    del logs["a"][3]["nbrs"][0]["decision"]
    with pytest.raises(AnalysisError, match=r"a\.jsonl:4: 'rechoke' event: missing field "
                                            r"'nbrs\[0\]\.decision'"):
        load_run(make_run(tmp_path / "bad", plans, logs))
    logs = fast_path_logs(plans)
    logs["a"][2]["n"][pid(0)] = [0, "x"]
    with pytest.raises(AnalysisError, match=r"a\.jsonl:3: 'counters' event: bad field"):
        load_run(make_run(tmp_path / "bad2", plans, logs))


# ---------------------------------------------------------------------------------------------
# reciprocation and the transfers table: peer a's counters toward x (index 1) and y (index 2).
# A counters line names only the neighbours whose counts changed (docs/log-schema.md).
#   t=1: x up 100 down 0;   y up 50 down 50
#   t=2: x up 200 down 10   (y unchanged: not in the line)
#   (t=3..11: nothing moved, no line)
#   t=12: y up 150 down 50
#   Periods of 10 s: [0,10): x sent 200 with 10 back -> reciprocated; y 50 with 50 back -> yes.
#   [10,20): y sent 100, nothing back -> not. Share 250 / 350.
#   Periods of 1 s: [1,2): x 100, nothing back: no; y 50: yes. [2,3): x 100, 10 back: yes.
#   -> 150 / 350.
#   The t=12 entry's interval: a line comes every counters_period (1 s) while anything moves,
#   so after the silent gap the 100 bytes moved in (11, 12]: 100 B/s, not 10 B/s over (2, 12].


def reciprocation_logs(a):
    return {"a": [start(a), counters(1, {1: (100, 0), 2: (50, 50)}),
                  counters(2, {1: (200, 10)}, up=250, down=60),
                  counters(12, {2: (150, 50)}, up=350, down=60)]}


def reciprocation_run(tmp_path):
    a, x, y = plan("a", 0), plan("x", 1), plan("y", 2)
    return load_run(make_run(tmp_path / "rc", [a, x, y], reciprocation_logs(a)))


def test_transfers_table(tmp_path):
    run = reciprocation_run(tmp_path)
    tr = run.transfers
    assert list(zip(tr["t"], tr["neighbour"], strict=True)) == [(1, "x"), (1, "y"), (2, "x"),
                                                                  (12, "y")]
    last = tr.iloc[3]
    assert (last["t0"], last["up"], last["d_up"], last["d_down"]) == (11, 150, 100, 0)
    assert last["rate_up"] == pytest.approx(100.0)
    assert tr.iloc[0]["rate_up"] == pytest.approx(100.0)  # since a's start at t = 0
    assert (tr.iloc[2]["t0"], tr.iloc[2]["d_up"], tr.iloc[2]["d_down"]) == (1, 100, 10)
    assert list(run.totals["up"]) == [150, 250, 350]


def test_transfers_interval_follows_the_peers_counters_period(tmp_path):
    a, x, y = plan("a", 0), plan("x", 1), plan("y", 2)
    root = make_run(tmp_path / "cp", [a, x, y], reciprocation_logs(a))
    (root / "peers" / "a.json").write_text(json.dumps({"counters_period": 4.0}))
    last = load_run(root).transfers.iloc[3]
    assert last["t0"] == 8 and last["rate_up"] == pytest.approx(25.0)


def test_older_logs_listing_unchanged_neighbours_give_the_same_rows(tmp_path):
    # Before only changed neighbours were logged, every line named every neighbour.
    a, x, y = plan("a", 0), plan("x", 1), plan("y", 2)
    logs = {"a": [start(a), counters(1, {1: (100, 0), 2: (50, 50)}),
                  counters(2, {1: (200, 10), 2: (50, 50)}),
                  counters(12, {1: (200, 10), 2: (150, 50)})]}
    old = load_run(make_run(tmp_path / "old", [a, x, y], logs)).transfers
    new = reciprocation_run(tmp_path).transfers
    pd.testing.assert_frame_equal(old.reset_index(drop=True), new.reset_index(drop=True))


def test_reciprocation(tmp_path):
    run = reciprocation_run(tmp_path)
    r = metrics.reciprocation(run).set_index("name")
    assert r.loc["a", "up"] == 350
    assert r.loc["a", "share"] == pytest.approx(250 / 350)
    r1 = metrics.reciprocation(run, period=1.0).set_index("name")
    assert r1.loc["a", "share"] == pytest.approx(150 / 350)


# ---------------------------------------------------------------------------------------------
# reading: ids, truncation, malformed lines, schema


def test_external_peer_keeps_its_id(tmp_path):
    a = plan("a", 0)
    real = "-qB4650-abcdefghijkl"
    logs = {"a": [start(a), {"t": 1, "ev": "counters", "up": 5, "down": 7,
                             "n": {real: [5, 7]}},
                  {"t": 1.5, "ev": "conn_open", "peer": real, "addr": "127.0.0.1:6881",
                   "dir": "out"}]}
    run = load_run(make_run(tmp_path / "ext", [a], logs))
    assert run.transfers.iloc[0]["neighbour"] == real
    assert run.transfers.iloc[0]["neighbour_group"] == "external"
    assert run.connections.iloc[0]["neighbour"] == real
    ext = run.peers.set_index("name").loc[real]
    assert ext["group"] == "external" and ext["peer_id"] == real


def test_truncated_last_line_is_skipped_with_a_warning(tmp_path):
    a = plan("a", 0)
    path = make_run(tmp_path / "tr", [a], {"a": [start(a), counters(1, {0: (1, 2)})]},
                    raw_tail={"a": '{"t":2.0,"ev":"coun'})
    run = load_run(path)
    assert len(run.totals) == 1
    assert len(run.warnings) == 1 and "a.jsonl:3" in run.warnings[0]
    assert "truncated" in run.warnings[0]


def test_malformed_middle_line_is_an_error_naming_file_and_line(tmp_path):
    a = plan("a", 0)
    path = make_run(tmp_path / "bad", [a], {"a": [start(a), counters(1, {0: (1, 2)})]})
    log = path / "peers" / "a.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join([lines[0], "{not json", lines[1]]) + "\n")
    with pytest.raises(AnalysisError, match=r"peers/a\.jsonl:2: malformed JSON"):
        load_run(path)


def test_missing_field_is_an_error_naming_file_and_line(tmp_path):
    a = plan("a", 0)
    path = make_run(tmp_path / "mf", [a], {"a": [start(a), {"t": 1, "ev": "piece"}]})
    with pytest.raises(AnalysisError, match=r"a\.jsonl:2: 'piece' event: missing field"):
        load_run(path)


def test_unknown_schema_is_refused(tmp_path):
    a = plan("a", 0)
    path = make_run(tmp_path / "sc", [a], {"a": [start(a, schema=2)]})
    with pytest.raises(AnalysisError, match=r"schema 2 is not one this analysis reads"):
        load_run(path)
    assert issubclass(AnalysisError, TestbedError)


def test_not_a_run_directory(tmp_path):
    with pytest.raises(AnalysisError, match="no such directory"):
        load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AnalysisError, match=r"no experiment\.json"):
        load_run(tmp_path / "empty")


# ---------------------------------------------------------------------------------------------
# the command


def test_cli_analyze_text(tmp_path, capsys):
    path = small_swarm(tmp_path)
    assert cli_analyze(path, as_json=False) == 0
    out = capsys.readouterr().out
    assert "makespan 12.0 s" in out and "efficiency D_p2p/makespan 0.33" in out
    assert "SATURATED" in out
    for name in ("completion_cdf", "progress", "unchoke_matrix", "availability", "utilisation"):
        assert (path / "figures" / f"{name}.png").stat().st_size > 1000
    assert json.loads((path / "analysis.json").read_text())["efficiency"]["makespan"] == 12.0


def test_cli_analyze_json(tmp_path, capsys):
    path = small_swarm(tmp_path)
    assert cli_analyze(path, as_json=True) == 0
    h = json.loads(capsys.readouterr().out)
    assert h["completed"] == 3 and h["completion"]["fast"]["mean"] == 6.0
    assert h["bounds"]["d_cs"] == 12.0 and h["cpu"]["saturated"] is True
    assert h["fairness"]["jain_share_ratio"] == pytest.approx(6 / 7)


def test_cli_analyze_bad_dir(tmp_path, capsys):
    assert cli_analyze(tmp_path / "missing", as_json=False) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing" in err
