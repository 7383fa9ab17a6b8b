"""What the testbed's input files and options may ask for: the bounds every topology,
expectations file and command-line seed is held to before anything starts.

Each bound keeps a mistake (or a hostile file) from turning into a hang, a multi-gigabyte
experiment.json or peers that spin on their timers; each is documented in docs/topology.md,
"Bounds". None of them limits a sensible experiment on one machine: the largest swarms measured
here are a few hundred peers (README, "Scale").
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MAX_PEERS",
    "MAX_FILE_BYTES",
    "MAX_LATENCY",
    "MAX_NESTING",
    "MAX_PEERS_CEILING",
    "MAX_PIECES",
    "MAX_SECONDS",
    "MAX_SEED",
    "MAX_VALUES",
    "PROTOCOL_BOUNDS",
    "TIMER_BOUNDS",
    "seed_problem",
]

MAX_FILE_BYTES = 256 * 1024
"""Input YAML files (topologies, expectations) are refused above 256 KiB before they are parsed:
the shipped topologies are under 2 KiB, and PyYAML (pure Python, for the lines) needs seconds
of CPU per megabyte."""

MAX_NESTING = 40
"""Mappings and lists nest at most this deep (a topology needs 6: groups, a group, a policy, its
params and a little room for the params' own structure). Deeper input would exhaust Python's
recursion limit in the YAML composer."""

MAX_VALUES = 100_000
"""A document holds at most this many values once YAML aliases are expanded (``*name`` repeats
the whole value anchored as ``&name``; a few hundred bytes of nested aliases expand to billions
of values). Anchors and aliases are otherwise allowed."""

DEFAULT_MAX_PEERS = 1000
"""Peers (testbed peers and real clients) in one run unless the topology's ``max_peers`` raises
it: a 2-core host runs about 100 peers unsaturated (README, "Scale")."""

MAX_PEERS_CEILING = 20_000
"""``max_peers`` itself: past this experiment.json alone is tens of megabytes."""

MAX_SEED = 2**63 - 1
"""Run and content seeds are whole numbers in [0, 2^63 - 1]: they are written into JSON files
and command lines read by other programs, many of which hold integers in 64 signed bits."""

MAX_SECONDS = 7 * 24 * 3600.0
"""Every time in a topology (arrivals, departures, the time limit, protocol periods): a week."""

MAX_LATENCY = 5.0
"""Seconds of one-way delay a group's access link, a link between groups or the tracker may
add (with jitter no larger): 5 s is beyond any real path (a geostationary hop is 0.3 s), and two
access delays add up to the most a peer applies (peer.config.MAX_LINK_DELAY, 10 s)."""

MAX_PIECES = 1 << 20
"""Pieces of the content: the .torrent holds 20 bytes of hash per piece (20 MiB here) and every
bitfield one bit per piece."""

TIMER_BOUNDS = (0.1, MAX_SECONDS)
"""Every period and timeout in seconds (every float ``protocol`` setting, including ones added
later): a rechoke every nanosecond kept a peer at 85 % of a core; 0.1 s still allows Legout et
al.'s timers scaled down 100-fold."""

PROTOCOL_BOUNDS: dict[str, tuple[float, float]] = {
    # Counts: past these they no longer change behaviour, only memory and message volume.
    "regular_slots": (1, 1000),
    "optimistic_slots": (0, 1000),
    "pipeline_depth": (1, 250),
    "max_pipeline_depth": (1, 2000),  # what peers queue at most (ours: 2000)
    "max_neighbours": (1, 1000),
    "max_initiate": (1, 1000),
    "numwant": (1, 1000),
    "wanted_neighbours": (0, 1000),
}
"""[lowest, highest] for each whole-number ``protocol`` setting, checked after its own
validation; the settings in seconds are held to ``TIMER_BOUNDS``."""


def seed_problem(value: int) -> str | None:
    """Why ``value`` cannot be a seed, or None."""
    if value < 0:
        return f"must be at least 0, got {value}"
    if value > MAX_SEED:
        shown = str(value) if value < 10**30 else f"a number of {len(str(value))} digits"
        return f"must be at most 2^63 - 1 = {MAX_SEED}, got {shown}"
    return None
