"""Long fuzzing run of the parsers that read bytes from strangers (issue 12, item 6).

Run: ``nice -n 15 .venv/bin/python bench/fuzz.py [--minutes 10] [--seed 1] [--only wire]``

The properties are the ones CI checks with 100 examples each (tests/parser_properties.py,
tests/test_properties_parsers.py): every input parses, consistently, or raises the one error its
module documents, within a CPU-time and memory bound. Two ways of making inputs, half the time
each, the time shared equally between the properties:

- hypothesis: the same strategies as CI (structured-but-wrong inputs: mutated valid documents
  and streams, lying length prefixes, huge integers, deep nesting, tampered .torrent fields,
  hostile announce parameters), in rounds of ``--batch`` examples with a fresh seed per round;
- mutation: plain ``random`` (no hypothesis, no atheris): a corpus of valid inputs drawn from
  the strategies once, each example 1-8 random mutations of one of them (tests/parser_properties
  .mutate: bit flips, truncation, insertion, duplication, lying length fields, digit runs
  replaced by huge numbers, bencode tokens), which runs far more examples per second.

Prints, per property and mode, the examples run, the seconds, examples/s and the failures
(failing inputs; for hypothesis, the shrunk failures of each round); then every distinct
failure (property, exception type, first line) once, with the input that showed it. Exit
status 1 if anything failed. ``--json PATH`` also writes the figures.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import parser_properties as props
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import NonInteractiveExampleWarning

_cuts = st.lists(st.integers(0, 2**16), max_size=8)


def _wire_mutated(case: tuple[int | None, bytes], cuts: list[int], close: bool) -> None:
    props.check_wire_stream(case[1], cuts, case[0], handshake=True, close=close)


def _wire_lying(case: tuple[int | None, bytes], cuts: list[int], close: bool) -> None:
    props.check_wire_stream(case[1], cuts, case[0], handshake=False, close=close)


def _queries(query: bytes) -> None:
    props.check_announce_query(query)
    props.check_scrape_query(query)


_stream_cases = props.wire_streams().map(lambda s: (s[0], props.stream_bytes(s[1], s[2])))


@dataclass
class Property:
    name: str
    strategy: st.SearchStrategy[tuple[Any, ...]]
    check: Callable[..., object]
    mutation_seeds: st.SearchStrategy[bytes] | None = None
    """Valid inputs for the mutation mode (None: this property takes no bytes)."""
    mutation_check: Callable[[bytes, random.Random], object] | None = None


PROPERTIES = [
    Property("bencode.decode", st.tuples(props.bencode_inputs), props.check_bencode_decode,
             props.bencode_values.map(props.bencode.encode),
             lambda data, rng: props.check_bencode_decode(data)),
    Property("bencode.round_trip", st.tuples(props.bencode_values),
             props.check_bencode_round_trip),
    Property("wire.round_trip", st.tuples(props.wire_streams(), _cuts),
             lambda stream, cuts: props.check_wire_round_trip(*stream, cuts)),
    Property("wire.mutated", st.tuples(
        _stream_cases.flatmap(lambda s: st.tuples(st.just(s[0]), props.mutated(st.just(s[1])))),
        _cuts, st.booleans()), _wire_mutated,
        _stream_cases.map(lambda s: s[1]),
        lambda data, rng: props.check_wire_stream(
            data, [rng.randrange(len(data) + 1) for _ in range(rng.randrange(6))],
            rng.choice([None, 0, 1, 8, 21, 300]), handshake=rng.random() < 0.5,
            close=rng.random() < 0.5)),
    Property("wire.lying_length", st.tuples(props.lying_length_prefixes(), _cuts, st.booleans()),
             _wire_lying),
    Property("metainfo.tampered", st.tuples(props.tampered_torrents()), props.check_metainfo),
    Property("metainfo.mutated", st.tuples(props.metainfo_inputs), props.check_metainfo,
             props.torrents, lambda data, rng: props.check_metainfo(data)),
    Property("tracker.query", st.tuples(props.query_inputs), _queries,
             props.announce_queries(), lambda data, rng: _queries(data)),
    Property("tracker.request", st.tuples(
        st.sampled_from([b"GET", b"POST", b""]), props.request_targets(props.query_inputs)),
        props.check_handle_request,
        props.request_targets(props.announce_queries()),
        lambda data, rng: props.check_handle_request(b"GET", data)),
    Property("tracker.announce_round_trip", st.tuples(props.announce_requests),
             props.check_announce_round_trip),
    Property("tracker.compact_peers", st.tuples(st.lists(props.peer_addresses, max_size=20)),
             props.check_compact_peers_round_trip),
]


@dataclass
class Tally:
    examples: int = 0
    seconds: float = 0.0
    failures: int = 0
    distinct: dict[tuple[str, str], str] = field(default_factory=dict)

    def record(self, exc: BaseException, example: str) -> None:
        self.failures += 1
        lines = str(exc).strip().splitlines()
        if not lines:  # a bare assert: name the line that failed
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            lines = [f"{Path(frame.filename).name}:{frame.lineno}: {frame.line}"]
        # Numbers vary between inputs showing the same fault ("value has 4992 digits").
        key = (type(exc).__name__, re.sub(r"\d+", "N", lines[0])[:160])
        self.distinct.setdefault(key, example[:600])


def run_hypothesis(prop: Property, budget: float, batch: int, rng: random.Random,
                   tally: Tally) -> None:
    """Rounds of ``batch`` examples with a fresh seed each, until ``budget`` seconds are used."""
    def counted(args: tuple[Any, ...]) -> None:
        tally.examples += 1
        prop.check(*args)

    end = time.monotonic() + budget
    size = min(batch, 50)  # a first small round measures the rate
    while (left := end - time.monotonic()) > 0:
        test = settings(
            max_examples=size, deadline=None, database=None, derandomize=False,
            suppress_health_check=list(HealthCheck), print_blob=True,
        )(hypothesis_seed(rng.getrandbits(64))(given(prop.strategy)(counted)))
        start, before = time.monotonic(), tally.examples
        try:
            test()
        except Exception as exc:  # the property failed: hypothesis has shrunk it already
            # Several distinct failures in one round come as a group: record each.
            for failure in exc.exceptions if isinstance(exc, ExceptionGroup) else [exc]:
                notes = "\n".join(getattr(failure, "__notes__", []))
                tally.record(failure, notes or "".join(traceback.format_exception(failure)))
        took = time.monotonic() - start
        tally.seconds += took
        # Size the next round to what is left of the budget, so slow properties do not overrun.
        rate = (tally.examples - before) / max(took, 1e-3)
        size = max(10, min(batch, int(rate * (left - took))))


def run_mutation(prop: Property, budget: float, rng: random.Random, tally: Tally) -> None:
    """Random mutations of a corpus of valid inputs until ``budget`` seconds are used."""
    assert prop.mutation_seeds is not None and prop.mutation_check is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonInteractiveExampleWarning)
        corpus = [prop.mutation_seeds.example() for _ in range(64)]
    start = time.monotonic()
    end = start + budget
    while time.monotonic() < end:
        for _ in range(50):
            data = props.mutate(rng.choice(corpus), rng, rng.randint(1, 8))
            tally.examples += 1
            try:
                prop.mutation_check(data, rng)
            except Exception as exc:
                tally.record(exc, repr(data))
    tally.seconds += time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="total time (default 10)")
    parser.add_argument("--seed", type=int, default=1, help="seed of every random choice")
    parser.add_argument("--batch", type=int, default=500,
                        help="hypothesis examples per round (default 500)")
    parser.add_argument("--only", default="", help="run properties whose name contains this")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    chosen = [p for p in PROPERTIES if args.only in p.name]
    if not chosen:
        parser.error(f"no property name contains {args.only!r}")
    runs = [(p, "hypothesis") for p in chosen]
    runs += [(p, "mutation") for p in chosen if p.mutation_check is not None]
    per_mode = args.minutes * 60 / 2
    rng = random.Random(args.seed)
    tallies: list[tuple[str, str, Tally]] = []
    for prop, mode in runs:
        count = sum(1 for _, m in runs if m == mode)
        budget = per_mode / count
        tally = Tally()
        if mode == "hypothesis":
            run_hypothesis(prop, budget, args.batch, rng, tally)
        else:
            run_mutation(prop, budget, rng, tally)
        tallies.append((prop.name, mode, tally))
        print(f"{prop.name:28} {mode:10} {tally.examples:9d} examples {tally.seconds:7.1f} s "
              f"{tally.examples / max(tally.seconds, 1e-9):9.0f}/s  failures {tally.failures}",
              flush=True)

    total = sum(t.examples for _, _, t in tallies)
    failed = sum(t.failures for _, _, t in tallies)
    print(f"total: {total} examples, {failed} failures")
    for name, mode, tally in tallies:
        for (kind, first), example in tally.distinct.items():
            print(f"\nFAILURE {name} ({mode}): {kind}: {first}\n  input: {example}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "minutes": args.minutes, "seed": args.seed,
            "properties": [
                {"property": name, "mode": mode, "examples": t.examples,
                 "seconds": round(t.seconds, 2), "failures": t.failures,
                 "distinct": [{"error": k, "first_line": f, "input": e}
                              for (k, f), e in t.distinct.items()]}
                for name, mode, t in tallies],
        }, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
