"""Bounds on what validation accepts (issue 12, item 4): each hostile or absurd input found by
hand is refused in one line naming the key and the line, quickly, with nothing created.

The limits themselves are testbed/limits.py's; docs/topology.md, "Bounds", documents them.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from testbed import limits
from testbed.cli import main
from testbed.regress import ExpectationsError, load_expectations, parse_expectations
from testbed.topology import TopologyError, expand, load_topology, parse_topology

SMALL = """content: {size: 1MiB}
groups:
  - {name: seed, role: seed}
  - {name: leecher, count: 2}
"""


def write(tmp_path: Path, text: str, name: str = "t.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def refused(text: str, *, seconds: float = 2.0) -> TopologyError:
    """The TopologyError ``text`` raises, within ``seconds`` of CPU."""
    started = time.process_time()
    with pytest.raises(TopologyError) as info:
        expand(parse_topology(text, file="t.yaml"))
    assert time.process_time() - started < seconds, "took too long to refuse"
    assert "\n" not in str(info.value)
    return info.value


def alias_bomb() -> str:
    """Nine levels of nine aliases each: 9^9 (387 million) strings from a few hundred bytes."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    return "\n".join(lines) + "\n"


def test_ten_thousand_nested_brackets_are_a_clean_error() -> None:
    error = refused("content: " + "[" * 10_000 + "]" * 10_000 + "\n")
    assert f"nested more than {limits.MAX_NESTING} levels deep" in error.message
    assert error.line == 1


def test_an_alias_bomb_is_refused_without_expanding_it() -> None:
    text = alias_bomb()
    assert len(text) < 800
    error = refused(text)
    assert "once its aliases (*name) are expanded" in error.message
    assert error.line is not None and error.key


def test_chained_aliases_cannot_nest_past_the_limit() -> None:
    # Each anchor is shallow, but every one holds the one before: depth grows with the chain.
    lines = ["a0: &a0 [[[1]]]"]
    lines += [f"a{i}: &a{i} [[[*a{i - 1}]]]" for i in range(1, 30)]
    error = refused("\n".join(lines) + "\n")
    assert "nested more than" in error.message and "aliases expanded" in error.message


def test_a_few_aliases_are_still_fine() -> None:
    topology = parse_topology(textwrap.dedent("""
        content: {size: 1MiB}
        groups:
          - {name: seed, role: seed, upload: &fast 1MiB/s}
          - {name: leecher, count: 2, upload: *fast}
        """))
    assert topology.groups[1].upload.rate == 1024 * 1024


@pytest.mark.parametrize("count", [10**6, 10**8])
def test_a_huge_leecher_count_is_refused_before_expanding(count: int) -> None:
    error = refused(SMALL.replace("count: 2", f"count: {count}"), seconds=0.5)
    assert error.key == "groups[1].count" and error.line == 4
    assert "more than max_peers (1,000" in error.message
    assert "raise the top-level max_peers" in error.message


def test_max_peers_raises_the_cap_up_to_its_ceiling() -> None:
    text = SMALL.replace("count: 2", "count: 1500")
    assert parse_topology("max_peers: 2000\n" + text).peer_count == 1501
    error = refused(f"max_peers: {limits.MAX_PEERS_CEILING + 1}\n" + text)
    assert error.key == "max_peers" and "must be at most 20000" in error.message


@pytest.mark.parametrize(("arrival", "fragment"), [
    ("700", "a peer would arrive at 700 s"),
    ("{at: [0, 650]}", "a peer would arrive at 650 s"),
    ("{uniform: [0, 601]}", "a peer would arrive at 601 s"),
    ("{poisson: {rate: 1, start: 600}}", "a peer would arrive at 600 s"),
])
def test_an_arrival_after_the_time_limit_is_refused(arrival: str, fragment: str) -> None:
    text = SMALL.replace("count: 2}", f"count: 2, arrival: {arrival}}}") + \
        "end: {time_limit: 600}\n"
    error = refused(text)
    assert error.key == "groups[1].arrival" and error.line == 4
    assert fragment in error.message and "time limit" in error.message


@pytest.mark.parametrize(("line", "key"), [
    ("seed: 18446744073709551616", "seed"),
    ("seed: -1", "seed"),
    ("content: {size: 1MiB, seed: 18446744073709551616}", "content.seed"),
])
def test_seeds_beyond_64_bits_are_refused_at_validation(line: str, key: str) -> None:
    text = SMALL.replace("content: {size: 1MiB}", line) if "content" in line else f"{line}\n{SMALL}"
    error = refused(text)
    assert error.key == key and error.line == 1


def test_a_run_seed_beyond_64_bits_is_refused_by_expand() -> None:
    with pytest.raises(TopologyError, match="the run seed must be at most"):
        expand(parse_topology(SMALL), seed=2**64)


@pytest.mark.parametrize(("setting", "key"), [
    ("rechoke_period: 1e-9", "protocol.rechoke_period"),
    ("optimistic_period: 1ms", "protocol.optimistic_period"),
    ("rate_window: 0.01", "protocol.rate_window"),
    ("snub_time: 0.001", "protocol.snub_time"),
    ("stall_timeout: 0.01", "protocol.stall_timeout"),
    ("announce_interval: 0.001", "protocol.announce_interval"),
    ("short_announce_interval: 1e-6", "protocol.short_announce_interval"),
    ("pipeline_depth: 1000000", "protocol.pipeline_depth"),
    ("rechoke_period: 1e12", "protocol.rechoke_period"),
])
def test_timers_and_counts_have_sane_bounds(setting: str, key: str) -> None:
    error = refused(f"protocol: {{{setting}}}\n" + SMALL)
    assert error.key == key and error.line == 1
    assert "must be" in error.message


def test_group_protocol_and_tracker_timers_are_bounded_too() -> None:
    group = SMALL.replace("count: 2}", "count: 2, protocol: {rechoke_period: 0.05}}")
    assert refused(group).key == "groups[1].protocol.rechoke_period"
    tracker = "tracker: {announce_interval: 1e-9}\n" + SMALL
    assert refused(tracker).key == "tracker.announce_interval"


def test_content_with_too_many_pieces_is_refused() -> None:
    error = refused(SMALL.replace("size: 1MiB", "size: 20000GiB, piece_size: 16KiB"))
    assert error.key == "content.size" and "use a larger piece_size" in error.message


def test_times_beyond_a_week_are_refused() -> None:
    error = refused(SMALL + "end: {time_limit: 1e300}\n")
    assert error.key == "end.time_limit" and "at most a week" in error.message


def test_a_huge_integer_is_a_clean_error() -> None:
    error = refused("seed: " + "9" * 5000 + "\n" + SMALL)
    assert error.key == "seed" and "cannot read value" in error.message


def test_a_50_mb_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"a" * (50 * 1024 * 1024))
    started = time.process_time()
    with pytest.raises(TopologyError, match="larger than 256 KiB"):
        load_topology(path)
    assert time.process_time() - started < 0.5


def test_an_endless_file_is_refused() -> None:
    with pytest.raises(TopologyError, match="larger than 256 KiB"):
        load_topology("/dev/zero")


def test_text_given_directly_is_bounded_too() -> None:
    with pytest.raises(TopologyError, match="too large"):
        parse_topology("#" * (limits.MAX_FILE_BYTES + 1))


# --- expectations files: the same reader, the same bounds --------------------------------------


def test_expectations_files_get_the_same_bounds(tmp_path: Path) -> None:
    with pytest.raises(ExpectationsError, match="nested more than"):
        parse_expectations("median_completion: " + "[" * 5000 + "]" * 5000)
    with pytest.raises(ExpectationsError, match="aliases"):
        parse_expectations(alias_bomb())
    big = tmp_path / "big.expect.yml"
    big.write_bytes(b"#" * (limits.MAX_FILE_BYTES + 1))
    with pytest.raises(ExpectationsError, match="larger than 256 KiB"):
        load_expectations(big)


# --- the command line: exit 2, one line, nothing created ---------------------------------------


@pytest.mark.parametrize("text", [
    "content: " + "[" * 10_000 + "]" * 10_000 + "\n",
    alias_bomb(),
    SMALL.replace("count: 2", "count: 1000000"),
    "seed: 18446744073709551616\n" + SMALL,
    "protocol: {rechoke_period: 1e-9}\n" + SMALL,
    SMALL.replace("count: 2}", "count: 2, arrival: 700}") + "end: {time_limit: 600}\n",
], ids=["brackets", "alias-bomb", "million-leechers", "seed-2^64", "rechoke-1ns",
        "arrival-after-limit"])
def test_run_refuses_in_one_line_and_creates_nothing(tmp_path: Path, text: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, text)
    runs = tmp_path / "runs"
    assert main(["run", str(path), "--runs", str(runs), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}:" in err, err
    assert not runs.exists()
    assert main(["validate", str(path)]) == 2


@pytest.mark.parametrize("seed", ["18446744073709551616", "-1", "9" * 5000])
def test_command_line_seed_is_bounded(tmp_path: Path, seed: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, SMALL)
    with pytest.raises(SystemExit) as info:
        main(["run", str(path), "--seed", seed, "--runs", str(tmp_path / "runs")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--seed" in err and len(err) < 300
    assert not (tmp_path / "runs").exists()
