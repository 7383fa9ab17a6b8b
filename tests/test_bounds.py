"""The textbook bounds: their inputs read once from the experiment, so the run summary
(testbed.run) and the analysis (analysis.metrics) give the same D_p2p and D_cs."""

from __future__ import annotations

import math

import pytest
from analysis_fixtures import plan

from analysis import load_run, metrics
from testbed.bounds import bound_inputs
from testbed.experiment import ContentSpec, Experiment, PeerPlan
from testbed.run import Commands, Orchestrator, RunOptions
from testbed.rundir import create_run_dir, write_json_atomic

SIZE = 400

SWARMS = {
    # 1 seed at 100 B/s; leechers up 200, 200, 50, down 1000: D_cs = 12, D_p2p = 4.
    "one seed": [plan("s", 0, role="seed", up=100), plan("a", 1, up=200, down=1000),
                 plan("b", 2, up=200, down=1000), plan("c", 3, up=50, down=1000)],
    # u_s = 300; the slowest download (100 B/s) dominates: D_cs = max(2·400/300, 4) = 4.
    "two seeds, a slow download": [plan("s1", 0, role="seed", up=100),
                                   plan("s2", 1, role="seed", up=200),
                                   plan("a", 2, up=100, down=100), plan("b", 3, up=100)],
    # Nobody holds the file: both bounds are infinite (the summary writes null).
    "no seed": [plan("a", 0, up=100, down=1000), plan("b", 1, up=50)],
    "unlimited seed": [plan("s", 0, role="seed"), plan("a", 1, up=100)],
    # An unlimited leecher upload removes the swarm term: D_p2p = F/u_s = 4.
    "unlimited leecher upload": [plan("s", 0, role="seed", up=100), plan("a", 1),
                                 plan("b", 2, up=100)],
    "no leecher": [plan("s", 0, role="seed", up=100)],
}

EXPECTED = {"one seed": (4.0, 12.0), "two seeds, a slow download": (4.0, 4.0),
            "no seed": (math.inf, math.inf), "unlimited seed": (0.0, 0.0),
            "unlimited leecher upload": (4.0, 8.0), "no leecher": (0.0, 0.0)}


def summarised_run(tmp_path, peers: list[PeerPlan]):
    """A run directory whose experiment.json and summary.json the orchestrator wrote (no
    process started: the bounds depend on the experiment alone)."""
    exp = Experiment(name="bounds", seed=1, content=ContentSpec(size=SIZE, piece_length=100),
                     peers=tuple(peers))
    run = create_run_dir(exp.name, out=tmp_path / "run")
    write_json_atomic(run.experiment, exp.to_json())
    orchestrator = Orchestrator(exp, run, RunOptions(out=run.root, quiet=True, launcher="local"),
                                Commands(), meta={})
    write_json_atomic(run.summary, orchestrator.summary())
    return load_run(run.root)


def _as_summary(x: float) -> float | None:
    return round(x, 3) if math.isfinite(x) else None


@pytest.mark.parametrize("name", list(SWARMS))
def test_run_summary_and_analysis_agree(tmp_path, name):
    run = summarised_run(tmp_path, SWARMS[name])
    summary = run.summary["bounds"]
    b = metrics.bounds(run)
    assert (b["d_p2p"], b["d_cs"]) == pytest.approx(EXPECTED[name])
    assert summary == {"d_p2p": _as_summary(b["d_p2p"]), "d_cs": _as_summary(b["d_cs"])}


def test_bound_inputs_from_the_experiment_record():
    exp = Experiment(name="x", seed=1, content=ContentSpec(size=SIZE),
                     peers=tuple(SWARMS["two seeds, a slow download"])).to_json()
    inputs = bound_inputs(exp)
    assert (inputs.file_size, inputs.server_upload, inputs.leechers) == (400.0, 300.0, 2)
    assert inputs.peer_uploads == (100.0, 100.0) and inputs.downloads == (100.0, None)
    assert inputs.sum_u_i == 200.0 and inputs.d_min is None  # one download is unlimited
    assert bound_inputs(exp, file_size=800).d_cs() == pytest.approx(8.0)
    no_seed = bound_inputs({**exp, "peers": [p for p in exp["peers"] if p["role"] != "seed"]})
    assert no_seed.server_upload == 0.0 and no_seed.d_p2p() == math.inf
    unlimited = bound_inputs({**exp, "peers": [{**exp["peers"][0], "upload": {"rate": None}},
                                               *exp["peers"][1:]]})
    assert unlimited.server_upload is None
