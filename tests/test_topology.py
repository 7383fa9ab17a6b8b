"""Topology files: every shipped topology validates, bad files fail with file, key and line,
and expansion is deterministic for a seed."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from peer.errors import TestbedError
from testbed.experiment import Departure, peer_id_for
from testbed.topology import (
    BUILTIN_CHOKERS,
    Topology,
    TopologyError,
    expand,
    load_experiment,
    load_topology,
)

TOPOLOGIES = sorted((Path(__file__).parent.parent / "topologies").glob("*.yaml"))
MiB = 1024 * 1024


def write(tmp_path: Path, text: str, name: str = "t.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


GOOD = """
    seed: 3
    content: {size: 1MiB, piece_size: 64KiB}
    groups:
      - name: seed
        role: seed
        upload: 1MiB/s
      - name: leecher
        count: 4
        upload: 512KiB/s
        arrival: {poisson: {rate: 0.5}}
"""


# --- shipped topologies -----------------------------------------------------------------------

def test_the_required_topologies_are_there() -> None:
    names = {p.stem for p in TOPOLOGIES}
    assert {"flash_crowd", "ci_small", "poisson_arrivals", "capacity_classes",
            "churn"} <= names


@pytest.mark.parametrize("path", TOPOLOGIES, ids=lambda p: p.stem)
def test_shipped_topology_validates_and_expands(path: Path) -> None:
    assert path.read_text().startswith("#"), "each topology opens with a comment saying what"
    experiment = load_experiment(path)
    assert experiment.name == path.stem
    assert experiment.peers and experiment.leechers
    for plan in experiment.peers:
        plan.peer_config(torrent="t", log="l", tracker="http://127.0.0.1:1/announce",
                         run_start=0.0, content="c" if plan.role == "seed" else None).validate()


def test_flash_crowd_is_the_issue_swarm() -> None:
    from testbed.bounds import p2p_time

    experiment = load_experiment(Path(__file__).parent.parent / "topologies/flash_crowd.yaml")
    seeds = [p for p in experiment.peers if p.role == "seed"]
    leechers = experiment.leechers
    assert len(seeds) == 1 and seeds[0].upload.rate == MiB
    assert len(leechers) == 40
    assert all(p.upload.rate == 512 * 1024 and p.download.rate is None for p in leechers)
    assert all(p.arrival == 0 and p.departure.kind == "never" for p in experiment.peers)
    assert (experiment.content.size, experiment.content.piece_length) == (16 * MiB, 256 * 1024)
    bound = p2p_time(experiment.content.size, MiB, [p.upload.rate for p in leechers],
                     [p.download.rate for p in leechers])
    assert bound == pytest.approx(30.5, abs=0.05)


# --- bad files: (snippet, expected message fragment, expected line) ---------------------------

BAD = [
    pytest.param("""
        content: {size: 1MiB}
        groups:
          - name: seed
            role: seed
            uplaod: 1MiB/s
        """, "groups[0].uplaod: unknown key 'uplaod' (did you mean 'upload'?); valid keys:", 5,
        id="unknown-key-suggestion"),
    pytest.param("""
        content: {size: 1MiB}
        sead: 4
        groups: [{name: s, role: seed}, {name: l}]
        """, "sead: unknown key 'sead' (did you mean 'seed'?)", 2, id="unknown-top-key"),
    pytest.param("""
        content: {size: 1MiB}
        groups:
          - name: seed
            role: seed
          - name: leecher
            count: 3
            upload: 1MiB/s
            count: 5
        """, "groups[1].count: duplicate key 'count' (first at line 6)", 8, id="duplicate-key"),
    pytest.param("""
        content: {size: 1MiB}
        groups:
          - name: seed
            role: seed
          - name: leecher

            upload: 5 parsecs
        """, "groups[1].upload: cannot read rate '5 parsecs': write it like '512KiB/s', "
             "'4Mbit/s', 'unlimited'", 7, id="bad-rate-unit"),
    pytest.param("""
        content: {size: 1MiB}
        groups:
          - name: seed
            role: seed
          - name: leecher
            upload: {rate: 1MiB/s, burst: 1KiB}
        """, "groups[1].upload.burst: burst must be at least one block", 6, id="burst-too-small"),
    pytest.param("""
        content: {size: 1MiB}
        groups:
          - name: seed
            role: seed
          - name: leecher
            count: -2
        """, "groups[1].count: must be at least 1, got -2", 6, id="negative-count"),
    pytest.param("""
        content: {size: 1MiB}
        groups:
          - {name: seed, role: seed}
          - {name: leecher, count: 2.5}
        """, "groups[1].count: must be a whole number, got 2.5", 4, id="fractional-count"),
    pytest.param("""
        # nothing but content
        content: {size: 1MiB}
        end: {time_limit: 60}
        """, "groups: missing; the topology needs 'groups'", 2, id="missing-groups"),
    pytest.param("""
        content: {size: 1MiB}
        groups:
          - name: a
          - name: b
        """, "groups: no seed: at least one group needs 'role: seed'", 2, id="no-seed-group"),
    pytest.param("""
        content: {size: 1MiB}
        groups:
          - {name: a, role: seed}
        """, "groups: no leecher", 2, id="no-leecher-group"),
    pytest.param("""
        content: {size: 1MiB}
        groups:
          - {name: seed, role: seeder}
          - {name: l}
        """, "groups[0].role: must be 'seed' or 'leecher', got 'seeder'", 3, id="bad-role"),
    pytest.param("""
        content: {size: 1MiB}
        groups:
          - {name: s, role: seed}
          - name: l
            departure: {leave: 30}
        """, "groups[1].departure.leave: unknown form 'leave'", 5, id="bad-departure-form"),
    pytest.param("""
        content: {size: 1MiB}
        groups:
          - {name: s, role: seed}
          - name: l
            departure: sometimes
        """, "groups[1].departure: unknown departure 'sometimes'", 5,
        id="bad-departure-word"),
    pytest.param("""
        content: {size: 1MiB}
        groups:
          - {name: s, role: seed, departure: on_completion}
          - {name: l}
        """, "groups[0].departure: a seed is complete from the start", 3,
        id="seed-leaving-on-completion"),
    pytest.param("""
        content: {size: 1MiB}
        groups:
          - {name: s, role: seed}
          - name: l
            count: 3
            arrival:
              at: [0, 5]
        """, "groups[1].arrival.at: lists 2 times but the group has count 3", 7,
        id="at-list-length"),
    pytest.param("""
        content: {size: 1MiB}
        groups:
          - {name: s, role: seed}
          - name: l
            arrival: -5
        """, "groups[1].arrival: must not be negative, got -5", 5, id="negative-arrival"),
    pytest.param("""
        content: {size: 1MiB}
        groups:
          - {name: s, role: seed}
          - name: l
            arrival: {poisson: {rate: 0}}
        """, "groups[1].arrival.poisson.rate: must be arrivals per second > 0", 5,
        id="poisson-rate-zero"),
    pytest.param("""
        content: {size: 1MiB}
        groups:
          - {name: s, role: seed}
          - name: l
            arrival: {uniform: [60, 10]}
        """, "groups[1].arrival.uniform: 'to' (10 s) comes before 'from' (60 s)", 5,
        id="uniform-backwards"),
    pytest.param("""
        content: {size: 1MiB}
        groups:
          - {name: s, role: seed}
          - {name: l}
        end: {all_complete: false, time_limit: null}
        """, "end: the run would never end", 5, id="end-never"),
    pytest.param("""
        content: {size: 1MiB}
        groups:
          - {name: s, role: seed}
          - {name: l}
        end:
          all_complete: true
          time_limit: 10 minutes
        """, "end.time_limit: cannot read time '10 minutes'", 7, id="end-bad-time"),
    pytest.param("""
        content: {size: 1MiB}
        groups:
          - {name: s, role: seed}
          - {name: l}
        end: {all_complete: yes please}
        """, "end.all_complete: must be true or false", 5, id="end-not-bool"),
    pytest.param("""
        content: {size: 1MiB}
        groups:
          - name: s
            role: seed
           upload: 1MiB/s
        """, "YAML syntax:", 5, id="yaml-syntax-error"),
    pytest.param("""
        content: {size: 1MiB
        groups: []
        """, "YAML syntax:", 2, id="yaml-unclosed-flow"),
    pytest.param("""
        - name: s
          role: seed
        """, "the top level must be a mapping", 1, id="top-level-list"),
    pytest.param("""
        content: {size: 1MiB}
        groups:
          - {name: s, role: seed}
          - name: l
            choker: tit_for_tatt
        """, "groups[1].choker: unknown choker 'tit_for_tatt' (did you mean 'tit_for_tat'?)", 5,
        id="unknown-choker"),
    pytest.param("""
        content: {size: 1MiB}
        groups:
          - {name: s, role: seed}
          - name: l
            picker: {name: rarest, params: {k: 2}}
        """, "groups[1].picker.name: unknown picker 'rarest'", 5, id="unknown-picker"),
    pytest.param("""
        content: {size: 1MiB}
        protocol:
          regular_slots: 0
        groups:
          - {name: s, role: seed}
          - {name: l}
        """, "protocol.regular_slots: must be a whole number >= 1, got 0", 3,
        id="protocol-validate"),
    pytest.param("""
        content: {size: 1MiB}
        groups:
          - {name: s, role: seed}
          - name: l
            protocol:
              rechoke_period: -10s
        """, "groups[1].protocol.rechoke_period: must be a number of seconds > 0", 6,
        id="group-protocol-validate"),
    pytest.param("""
        content: {size: 1MiB}
        protocol: {optimistic_period: 30, rechoke_priod: 5}
        groups:
          - {name: s, role: seed}
          - {name: l}
        """, "protocol.rechoke_priod: unknown key 'rechoke_priod' (did you mean "
             "'rechoke_period'?)", 2, id="protocol-unknown-field"),
    pytest.param("""
        content: {size: 1MiB, piece_size: 100KiB}
        groups:
          - {name: s, role: seed}
          - {name: l}
        """, "content.piece_size: must be a power of two of at least 16KiB", 1,
        id="piece-size-not-power-of-two"),
    pytest.param("""
        content:
          size: 16 parsecs
        groups:
          - {name: s, role: seed}
          - {name: l}
        """, "content.size: cannot read size '16 parsecs'", 2, id="bad-size"),
    pytest.param("""
        content: {size: 1MiB}
        groups:
          - {name: s, role: seed}
          - {name: s}
        """, "groups[1].name: group name 's' is already used (line 3)", 4,
        id="duplicate-group-name"),
    pytest.param("""
        content: {size: 1MiB}
        tracker: {url: "https://example/announce"}
        groups:
          - {name: s, role: seed}
          - {name: l}
        """, "tracker.url: must be an http://host[:port]/path or udp://host:port tracker URL",
        2, id="tracker-url"),
    pytest.param("""
        content: {size: 1MiB}
        seed: -1
        groups:
          - {name: s, role: seed}
          - {name: l}
        """, "seed: must be at least 0", 2, id="negative-seed"),
    pytest.param("", "empty file", 1, id="empty-file"),
    # What PyYAML would quietly accept, the reader refuses (testbed.yamlfile).
    pytest.param("""
        content: {size: 1MiB}
        groups:
          - <<: {role: seed}
            name: s
        """, "groups[0]: YAML merge keys (<<) are not supported", 3, id="merge-key"),
    pytest.param("""
        content: {size: 1MiB}
        1: 2
        groups: [{name: s, role: seed}, {name: l}]
        """, "keys must be names (text), got 1", 2, id="number-as-key"),
    pytest.param("""
        content: {size: 1MiB}
        groups: !!omap [a: 1]
        """, "groups: unsupported YAML tag tag:yaml.org,2002:omap", 2, id="yaml-tag"),
]


@pytest.mark.parametrize(("text", "fragment", "line"), BAD)
def test_bad_topology_names_key_and_line(tmp_path: Path, text: str, fragment: str,
                                         line: int) -> None:
    path = write(tmp_path, text)
    with pytest.raises(TopologyError) as info:
        load_experiment(path)
    error = info.value
    assert fragment in str(error)
    assert error.line == line, str(error)
    assert error.file == str(path)
    assert str(error).startswith(f"{path}:{line}: ")
    assert isinstance(error, TestbedError)


def test_error_format_matches_the_documented_one() -> None:
    error = TopologyError("cannot read rate '5 parsecs'", file="topologies/x.yaml",
                          key="groups[1].upload", line=12)
    assert str(error) == "topologies/x.yaml:12: groups[1].upload: cannot read rate '5 parsecs'"
    assert (error.file, error.key, error.line) == ("topologies/x.yaml", "groups[1].upload", 12)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="no such file"):
        load_topology(tmp_path / "nope.yaml")


def test_unknown_key_lists_valid_keys(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "    colour: blue\n")
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    assert "valid keys: name, seed, content, protocol, tracker, groups, end" in str(info.value)
    assert "did you mean" not in str(info.value)


def test_every_builtin_choker_and_module_class_form_are_accepted(tmp_path: Path) -> None:
    for choker in [*BUILTIN_CHOKERS, "peer.policies.examples:LongMemory",
                   "{name: bittyrant, params: {raise_factor: 0.2, rounds: 3}}"]:
        path = write(tmp_path, GOOD.replace("upload: 512KiB/s",
                                            f"upload: 512KiB/s\n        choker: {choker}"))
        group = load_topology(path).groups[1]
        assert group.choker.name in (choker, "peer.policies.examples:LongMemory", "bittyrant")
    assert group.choker.params == {"raise_factor": 0.2, "rounds": 3}


@pytest.mark.parametrize(("choker", "key", "fragment"), [
    ("nonexistent.module:Nope", "groups[1].choker",
     "cannot import 'nonexistent.module' for 'nonexistent.module:Nope'"),
    ("peer.policies.examples:Nope", "groups[1].choker",
     "'peer.policies.examples' has no class 'Nope'"),
    ("peer_helpers:NotAPolicy", "groups[1].choker", "has no rechoke() method"),
    ("{name: bittyrant, params: {roundz: 3}}", "groups[1].choker.params",
     "unexpected keyword argument 'roundz'"),
    ("{name: mainline, params: {upload_slots: 0}}", "groups[1].choker.params",
     "upload_slots must be 'auto' or a whole number >= 1"),
])
def test_a_policy_that_cannot_be_built_is_refused_before_the_run(
        tmp_path: Path, choker: str, key: str, fragment: str) -> None:
    # Built as the peer will build it (import, class, method, params): a mistake surfaces at
    # validation, naming the group's key and line, not when that group's peers start.
    path = write(tmp_path, GOOD.replace("upload: 512KiB/s",
                                        f"upload: 512KiB/s\n        choker: {choker}"))
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    assert info.value.key == key and fragment in str(info.value), str(info.value)
    assert info.value.line > 0


def test_departure_before_arrival_is_caught_at_expansion(tmp_path: Path) -> None:
    path = write(tmp_path, """
        content: {size: 1MiB}
        groups:
          - {name: s, role: seed}
          - name: l
            count: 3
            arrival: {at: [0, 5, 50]}
            departure: {killed: 30}
        """)
    with pytest.raises(TopologyError) as info:
        load_experiment(path)
    assert info.value.line == 7
    assert "groups[1].departure: l-2 would leave at 30 s but arrives at 50 s" in str(info.value)


# --- expansion ----------------------------------------------------------------------------------

def test_defaults_are_the_textbooks(tmp_path: Path) -> None:
    topology = load_topology(write(tmp_path, """
        content: {size: 1MiB}
        groups:
          - {name: s, role: seed}
          - {name: l}
        """, name="plain.yaml"))
    assert topology.name == "plain"
    assert topology.seed == 0
    assert topology.piece_size == 256 * 1024
    assert topology.end.all_complete and topology.end.time_limit == 3600
    assert topology.announce_interval == 30
    experiment = expand(topology)
    leecher = experiment.leechers[0]
    assert leecher.protocol.regular_slots == 4 and leecher.protocol.optimistic_slots == 1
    assert leecher.protocol.rechoke_period == 10 and leecher.protocol.optimistic_period == 30
    assert (leecher.choker.name, leecher.picker.name) == ("tit_for_tat", "rarest_first")
    assert leecher.upload.rate is None and leecher.download.rate is None
    assert leecher.arrival == 0 and leecher.departure == Departure(kind="never")
    assert experiment.content.seed == experiment.seed  # content follows the run seed
    assert expand(topology, seed=9).content.seed == 9


def test_counts_names_indexes_and_ids(tmp_path: Path) -> None:
    topology = load_topology(write(tmp_path, """
        content: {size: 1MiB}
        groups:
          - {name: early, count: 2}
          - {name: origin, role: seed}
          - {name: late, count: 3, arrival: {uniform: [10, 20]}}
        """))
    experiment = expand(topology)
    assert [p.name for p in experiment.peers] == [
        "early-0", "early-1", "origin-0", "late-0", "late-1", "late-2"]
    assert [p.index for p in experiment.peers] == list(range(6))
    assert [p.peer_id for p in experiment.peers] == [peer_id_for(i) for i in range(6)]
    assert len({p.peer_id for p in experiment.peers}) == 6
    assert all(len(p.peer_id) == 20 for p in experiment.peers)
    assert len({p.seed for p in experiment.peers}) == 6
    assert [p.role for p in experiment.peers].count("seed") == 1
    late = [p.arrival for p in experiment.peers if p.group == "late"]
    assert late == sorted(late) and all(10 <= t <= 20 for t in late)


def test_same_seed_same_arrivals_different_seed_different_arrivals(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    first, again = load_experiment(path), load_experiment(path)
    assert [p.arrival for p in first.peers] == [p.arrival for p in again.peers]
    assert [p.seed for p in first.peers] == [p.seed for p in again.peers]
    assert first == again
    other = load_experiment(path, seed=4)
    assert other.seed == 4
    assert [p.arrival for p in other.leechers] != [p.arrival for p in first.leechers]
    assert [p.seed for p in other.peers] != [p.seed for p in first.peers]
    arrivals = [p.arrival for p in first.leechers]
    assert arrivals == sorted(arrivals) and arrivals[0] > 0  # one by one after start


def test_per_group_protocol_overrides_the_global_settings(tmp_path: Path) -> None:
    experiment = load_experiment(write(tmp_path, """
        content: {size: 1MiB}
        protocol: {regular_slots: 3, rechoke_period: 5s}
        tracker: {numwant: 30, announce_interval: 2min}
        groups:
          - {name: s, role: seed}
          - name: l
            protocol: {regular_slots: 7, unchoke_when_free: true, announce_interval: 500ms}
        """))
    seed, leecher = experiment.peers
    assert (seed.protocol.regular_slots, seed.protocol.rechoke_period) == (3, 5.0)
    assert seed.protocol.numwant == 30 and not seed.protocol.unchoke_when_free
    assert leecher.protocol.regular_slots == 7
    assert leecher.protocol.rechoke_period == 5.0  # inherited from the global section
    assert leecher.protocol.unchoke_when_free
    assert leecher.protocol.announce_interval == 0.5
    assert experiment.announce_interval == 120.0


@pytest.mark.parametrize(("departure", "kind", "time", "leave"), [
    ("never", "never", None, None),
    ("on_completion", "on_completion", None, 0.0),
    ("{after_completion: 30}", "after_completion", 30.0, 30.0),
    ("{at: 120}", "at", 120.0, None),
    ("{killed: 45s}", "killed", 45.0, None),
])
def test_departure_maps_to_leave_after_complete(tmp_path: Path, departure: str, kind: str,
                                                time: float | None,
                                                leave: float | None) -> None:
    experiment = load_experiment(write(tmp_path, f"""
        content: {{size: 1MiB}}
        groups:
          - {{name: s, role: seed}}
          - {{name: l, departure: {departure}}}
        """))
    plan = experiment.leechers[0]
    assert plan.departure == Departure(kind=kind, time=time)
    config = plan.peer_config(torrent="t", log="l", tracker="u", run_start=0.0, content=None)
    assert config.leave_after_complete == leave


def test_rates_and_bursts(tmp_path: Path) -> None:
    experiment = load_experiment(write(tmp_path, """
        content: {size: 1MiB}
        groups:
          - {name: s, role: seed, upload: {rate: 4Mbit/s, burst: 64KiB}}
          - {name: l, upload: 1000, download: unlimited}
        """))
    seed, leecher = experiment.peers
    assert (seed.upload.rate, seed.upload.burst) == (500_000, 64 * 1024)
    assert leecher.upload.rate == 1000 and leecher.download.rate is None


def test_explicit_arrival_list_and_content_seed(tmp_path: Path) -> None:
    experiment = load_experiment(write(tmp_path, """
        seed: 5
        content: {size: 1MiB, seed: 77}
        groups:
          - {name: s, role: seed}
          - {name: l, count: 3, arrival: {at: [0, 1.5, 2min]}}
        """))
    assert [p.arrival for p in experiment.leechers] == [0, 1.5, 120]
    assert experiment.content.seed == 77 and experiment.seed == 5


def test_topology_is_plain_data() -> None:
    topology = load_topology(TOPOLOGIES[0])
    assert isinstance(topology, Topology)
    with pytest.raises(dataclasses.FrozenInstanceError):
        topology.seed = 2  # type: ignore[misc]


@pytest.mark.parametrize("url", ["udp://127.0.0.1:6969/announce", "udp://tracker:1337",
                                 "http://127.0.0.1:6969/announce"])
def test_a_tracker_url_the_peers_can_announce_to_is_accepted(tmp_path, url):
    text = GOOD + f"    tracker: {{url: {url!r}}}\n"
    assert load_topology(write(tmp_path, text)).tracker_url == url
