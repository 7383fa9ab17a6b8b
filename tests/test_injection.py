"""Piece injection, the initial seeds' redundant upload and per-group utilisation over time,
on hand-made runs whose answers are worked out by hand in each test.

Every run: a 400-byte file in 4 pieces of 100 bytes; a seed at 100 B/s needs F/u_s = 4 s.
"""

from __future__ import annotations

import json
import math

import pytest
from analysis_fixtures import complete, counters, make_run, piece, plan, start, stop

from analysis import cli_analyze, injection, load_run, metrics


def _run(tmp_path, plans, logs, name="run"):
    return load_run(make_run(tmp_path / name, plans, logs))


def seed_once_run(tmp_path):
    """s sends each piece once, to a (at 1, 2, 3, 4); b gets everything from a."""
    s = plan("s", 0, group="seed", role="seed", up=100)
    a = plan("a", 1, up=100)
    b = plan("b", 2, up=100)
    logs = {"s": [start(s), stop(10, 400, 0)],
            "a": [start(a), *[piece(1 + i, i, [0]) for i in range(4)], complete(4, 400, 4),
                  stop(10, 400, 400)],
            "b": [start(b), *[piece(2.5 + i, i, [1]) for i in range(4)],
                  complete(5.5, 400, 5.5), stop(10, 0, 400)]}
    return _run(tmp_path, [s, a, b], logs)


def test_seed_that_sends_each_piece_once(tmp_path):
    run = seed_once_run(tmp_path)
    inj = injection.injection(run)
    assert inj["all_injected_at"] == 4.0 and inj["injection_start"] == 0.0
    assert inj["f_over_u_s"] == 4.0 and inj["ratio"] == pytest.approx(1.0)
    assert (inj["first_at"], inj["half_at"]) == (1.0, 2.0)
    assert (inj["injected"], inj["never_injected"], inj["from_seeds"]) == (4, 0, 4)
    per_piece = injection.piece_injection(run)
    assert list(per_piece["first_t"]) == [1.0, 2.0, 3.0, 4.0]
    assert set(per_piece["first_peer"]) == {"a"} and per_piece["from_seed"].all()
    red = injection.seed_redundancy(run)
    assert (red["contributions"], red["new"], red["already_held"]) == (4, 4, 0)
    assert red["share"] == 0.0 and red["share_split"] == 0.0
    assert red["requested_after_first_copy"] == 0 and red["split_bytes"] == 400
    assert red["median_delay"] is None
    assert red["seed_up"] == 400 and red["copies_sent"] == 1.0


def test_seed_that_resends_pieces_already_held(tmp_path):
    """As above, but b gets pieces 0 and 1 from s too:
    piece 0 at 2.5, requested at 2.0, after a's copy (t = 1) was complete: delay 1.0;
    piece 1 at 2.8 from s and a, requested at 1.5, before a's copy (t = 2): delay −0.5."""
    s = plan("s", 0, group="seed", role="seed", up=100)
    a = plan("a", 1, up=100)
    b = plan("b", 2, up=100)
    logs = {"s": [start(s), stop(10, 600, 0)],
            "a": [start(a), *[piece(1 + i, i, [0]) for i in range(4)], stop(10, 200, 400)],
            "b": [start(b), piece(2.5, 0, [0], started=2.0), piece(2.8, 1, [0, 1], started=1.5),
                  piece(5, 2, [1]), piece(6, 3, [1]), stop(10, 0, 400)]}
    run = _run(tmp_path, [s, a, b], logs)
    assert injection.injection(run)["ratio"] == pytest.approx(1.0)  # injection is unchanged
    contrib = injection.seed_contributions(run)
    resent = contrib[contrib["status"] == injection.ALREADY_HELD]
    assert list(resent["index"]) == [0, 1] and list(resent["peer"]) == ["b", "b"]
    assert list(resent["delay"]) == pytest.approx([1.0, -0.5])
    assert list(resent["senders"]) == [1, 2]
    red = injection.seed_redundancy(run)
    assert (red["contributions"], red["new"], red["already_held"]) == (6, 4, 2)
    assert red["share"] == pytest.approx(2 / 6) and red["holder_present"] == 2
    assert red["requested_after_first_copy"] == 1 and red["median_delay"] == pytest.approx(1.0)
    # piece 1's blocks split evenly between s and a: half of it is the seed's
    assert red["share_split"] == pytest.approx(1.5 / 5.5) and red["split_bytes"] == 550
    assert red["copies_sent"] == 1.5


def test_piece_never_injected(tmp_path):
    """a gets pieces 0, 1, 2 from s at 1, 2, 3 and never piece 3 (the run ends at 10)."""
    s = plan("s", 0, group="seed", role="seed", up=100)
    a = plan("a", 1, up=100)
    logs = {"s": [start(s), stop(10, 300, 0)],
            "a": [start(a), *[piece(1 + i, i, [0]) for i in range(3)], stop(10, 0, 300)]}
    run = _run(tmp_path, [s, a], logs)
    first = injection.piece_injection(run)["first_t"]
    assert list(first[:3]) == [1.0, 2.0, 3.0] and math.isnan(first[3])
    inj = injection.injection(run)
    assert (inj["injected"], inj["never_injected"]) == (3, 1)
    assert inj["all_injected_at"] is None and inj["injection_time"] is None
    assert inj["ratio"] is None and inj["f_over_u_s"] == 4.0
    assert inj["half_at"] == 2.0  # the 2nd of 4 pieces


def test_two_initial_seeds(tmp_path):
    """s1 (starts at 0.5) and s2 (at 0.8), 100 B/s each: u_s = 200, F/u_s = 2 s. a and b start
    at 0.2, so injection can start at 0.5, when s1 does. a gets 0, 1 from s1 at 1.5, 2.5;
    b gets 2, 3 from s2 at 1.5, 2.5, then piece 0 from both seeds at 3 (already held by a)."""
    s1 = plan("s1", 0, group="seed", role="seed", up=100)
    s2 = plan("s2", 1, group="seed", role="seed", up=100)
    a = plan("a", 2, up=100)
    b = plan("b", 3, up=100)
    logs = {"s1": [start(s1, 0.5), stop(10, 300, 0)], "s2": [start(s2, 0.8), stop(10, 250, 0)],
            "a": [start(a, 0.2), piece(1.5, 0, [0]), piece(2.5, 1, [0]), stop(10, 0, 200)],
            "b": [start(b, 0.2), piece(1.5, 2, [1]), piece(2.5, 3, [1]), piece(3, 0, [0, 1]),
                  stop(10, 0, 300)]}
    run = _run(tmp_path, [s1, s2, a, b], logs)
    inj = injection.injection(run)
    assert inj["injection_start"] == 0.5 and inj["all_injected_at"] == 2.5
    assert inj["f_over_u_s"] == 2.0 and inj["ratio"] == pytest.approx(1.0)
    red = injection.seed_redundancy(run)
    assert (red["contributions"], red["new"], red["already_held"]) == (5, 4, 1)
    assert red["seed_up"] == 550 and red["copies_sent"] == pytest.approx(550 / 400)
    assert red["share_split"] == pytest.approx(1 / 5)  # both seeds: all of piece 0's blocks
    assert red["by_seed"]["s1"] == {"contributions": 3, "new": 2, "already_held": 1,
                                    "share": pytest.approx(1 / 3),
                                    "share_split": pytest.approx(0.5 / 2.5),
                                    "split_bytes": 250.0, "up": 300.0}
    assert red["by_seed"]["s2"]["contributions"] == 3 and red["by_seed"]["s2"]["new"] == 2


def test_unlimited_seed_has_no_seed_time(tmp_path):
    s = plan("s", 0, group="seed", role="seed", up=None)
    a = plan("a", 1, up=100)
    logs = {"s": [start(s), stop(5, 400, 0)],
            "a": [start(a), *[piece(0.5 + 0.5 * i, i, [0]) for i in range(4)],
                  stop(5, 0, 400)]}
    run = _run(tmp_path, [s, a], logs)
    inj = injection.injection(run)
    assert inj["all_injected_at"] == 2.0 and inj["injection_time"] == 2.0
    assert inj["f_over_u_s"] is None and inj["ratio"] is None
    assert "s" not in metrics.utilisation_over_time(run, 1.0, by="peer").columns


def test_leechers_that_leave_and_pieces_held_at_start(tmp_path):
    """a gets 0, 1, 2 from s at 1, 2, 3 and leaves at 3.5. b starts at 0.5 holding piece 3.
    Then s sends piece 0 to b at 5 (a's copy left with a: re-injected, no holder present) and
    piece 1 to c at 2.5 (a still there)."""
    s = plan("s", 0, group="seed", role="seed", up=100)
    a = plan("a", 1, up=100, departure="at", departure_time=3.5)
    b = plan("b", 2, up=100)
    c = plan("c", 3, up=100)
    logs = {"s": [start(s), stop(10, 500, 0)],
            "a": [start(a), *[piece(1 + i, i, [0]) for i in range(3)], stop(3.5, 0, 300)],
            "b": [start(b, 0.5, have=[3]), piece(5, 0, [0]), stop(10, 0, 100)],
            "c": [start(c), piece(2.5, 1, [0]), stop(10, 0, 100)]}
    run = _run(tmp_path, [s, a, b, c], logs)
    per_piece = injection.piece_injection(run)
    assert list(per_piece["first_t"]) == [1.0, 2.0, 3.0, 0.5]
    assert per_piece.loc[3, "first_peer"] == "b" and not per_piece.loc[3, "from_seed"]
    inj = injection.injection(run)
    assert inj["all_injected_at"] == 3.0 and inj["from_seeds"] == 3
    assert inj["ratio"] == pytest.approx(3.0 / 4.0)
    red = injection.seed_redundancy(run)
    assert (red["contributions"], red["new"], red["already_held"]) == (5, 3, 2)
    assert red["holder_present"] == 1  # c's piece 1 (a present), not b's piece 0 (a gone)


# ---------------------------------------------------------------------------------------------
# utilisation per group over time


def test_utilisation_table_per_group_and_interval(tmp_path):
    """s (100 B/s) sends 100 B in each of (0,1], (1,2], (2,3], then 50 B in (3,4]. Group fast:
    a (200 B/s, from 0) sends 200 B in (2,3]; b (200 B/s) arrives at 2. The run ends at 4."""
    s = plan("s", 0, group="seed", role="seed", up=100)
    a = plan("a", 1, group="fast", up=200)
    b = plan("b", 2, group="fast", up=200, arrival=2.0)
    logs = {"s": [start(s), counters(1, {1: (100, 0)}), counters(2, {1: (200, 0)}),
                  counters(3, {1: (300, 0)}), counters(4, {1: (350, 0)}), stop(4, 350, 0)],
            "a": [start(a), counters(3, {2: (200, 0)}), stop(4, 200, 0)],
            "b": [start(b, 2.0), stop(4, 0, 200)]}
    run = _run(tmp_path, [s, a, b], logs)
    table = metrics.utilisation_table(run, step=1.0).set_index(["group", "t"])
    seed = table.loc["seed"]
    assert list(seed["utilisation"]) == pytest.approx([1.0, 1.0, 1.0, 0.5])
    assert list(seed["up"]) == [100, 100, 100, 50] and list(seed["peers"]) == [1, 1, 1, 1]
    fast = table.loc["fast"]
    assert list(fast["peers"]) == [1, 1, 2, 2]
    assert list(fast["budget"]) == [200, 200, 400, 400]
    assert list(fast["utilisation"]) == pytest.approx([0.0, 0.0, 0.5, 0.0])
    assert fast.loc[3.0, "rate"] == 200 and fast.loc[3.0, "capacity"] == 400


def test_counter_bytes_spread_over_their_interval(tmp_path):
    """s's only counters line is at 1.5 with 100 B: its interval is (0.5, 1.5] (1 s counters
    period), so (0,1] and (1,2] get 50 B each; the run ends at 1.5, so the last interval is
    (1, 1.5] with half a second of capacity."""
    s = plan("s", 0, group="seed", role="seed", up=100)
    logs = {"s": [start(s), counters(1.5, {1: (100, 0)})]}
    run = _run(tmp_path, [s], logs)
    assert list(metrics.utilisation_over_time(run, 1.0, by="peer")["s"][1:]) == \
        pytest.approx([0.5, 1.0])
    table = metrics.utilisation_table(run, step=1.0)
    assert list(table["t"]) == [1.0, 1.5] and list(table["up"]) == [50, 50]
    assert list(table["capacity"]) == pytest.approx([100, 100])
    assert metrics.utilisation_step(run) == 1.0  # a tenth of a short run, at least 1 s


# ---------------------------------------------------------------------------------------------
# the command


def test_cli_analyze_shows_injection(tmp_path, capsys):
    run = seed_once_run(tmp_path)
    assert cli_analyze(run.path, as_json=True) == 0
    h = json.loads(capsys.readouterr().out)
    assert h["injection"]["ratio"] == pytest.approx(1.0)
    assert h["seed_redundancy"]["share"] == 0.0
    series = h["utilisation_over_time"]
    assert series["step"] == 1.0 and len(series["t"]) == len(series["by_group"]["g"]["up"])
    for name in ("injection", "utilisation_over_time"):
        assert (run.path / "figures" / f"{name}.png").stat().st_size > 1000
    assert cli_analyze(run.path, as_json=False) == 0
    out = capsys.readouterr().out
    assert "every piece in the swarm (outside the initial seeds) at 4.0 s" in out
    assert "= 1.00 × F/u_s 4.0 s" in out and "already held elsewhere 0 (0 %" in out
    assert "upload utilisation per group over time" in out


def test_seed_that_contributed_to_no_logged_piece(tmp_path):
    # A testbed seed whose only downloader is a real client: no leecher log names it as a
    # sender, so there are no contributions; the figures are zeros, not a KeyError.
    s = plan("s", 0, group="seed", role="seed", up=100)
    a = plan("a", 1, up=100)
    logs = {"s": [start(s), stop(10, 400, 0)], "a": [start(a), stop(10, 0, 0)]}
    red = injection.seed_redundancy(_run(tmp_path, [s, a], logs))
    assert (red["contributions"], red["new"], red["already_held"]) == (0, 0, 0)
    assert red["share"] is None and red["by_seed"]["s"]["contributions"] == 0
