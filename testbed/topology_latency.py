"""Link latency in a topology: each group's one-way access delay (``latency``, ``jitter``), the
defaults and the overrides between groups (``network``), the tracker's (``tracker.latency``),
and the table of delays each peer gets (``peer.config.LinkDelays``).

The delay between peers A and B is A's access delay plus B's, unless ``network.links`` names
their two groups; jitters add the same way. Delays are written with a unit (``40ms``,
``0.04s``): a bare number is refused (milliseconds or seconds?), except 0. The schema is
docs/topology.md's "Latency"; the peer's side is peer/delayed.py.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from peer.config import LinkDelays
from testbed.experiment import peer_id_for
from testbed.limits import MAX_LATENCY
from testbed.yamlfile import FieldChecker, describe

if TYPE_CHECKING:
    from testbed.topology import GroupSpec

__all__ = ["LatencyChecker", "LinkOverride", "Network", "peer_delays"]

NETWORK_KEYS = ("latency", "jitter", "links")
_LINK_KEYS = ("between", "latency", "jitter")
_DELAY = re.compile(r"^\s*([+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(us|ms|s)\s*$")
_DELAY_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


@dataclass(frozen=True, slots=True)
class LinkOverride:
    """The one-way delay between the peers of two groups (the same group twice: within it)."""

    between: tuple[str, str]
    latency: float
    jitter: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Network:
    """A topology's delays: defaults of the groups' access delays, overrides, the tracker's."""

    latency: float = 0.0
    """The access delay of a group that sets none."""
    jitter: float = 0.0
    links: tuple[LinkOverride, ...] = ()
    tracker: float = 0.0
    """The tracker's own access delay: a peer is its own plus this away from it."""

    def link(self, a: str, b: str) -> LinkOverride | None:
        for link in self.links:
            if link.between in ((a, b), (b, a)):
                return link
        return None


class LatencyChecker(FieldChecker):
    """The checks of ``latency``, ``jitter``, ``network`` and ``tracker.latency``."""

    def delay(self, value: Any, path: str) -> float:
        """Seconds of one-way delay, written with a unit: ``40ms``, ``0.04s``, ``500us``."""
        if value == 0 and not isinstance(value, bool):
            return 0.0
        if isinstance(value, int | float) and not isinstance(value, bool):
            self.fail(path, f"a delay needs a unit: write '{value:g}ms' or '{value:g}s', "
                            f"not {describe(value)}")
        match = _DELAY.match(value) if isinstance(value, str) else None
        if match is None:
            self.fail(path, f"cannot read delay {describe(value)}: write it like '40ms', "
                            "'0.04s' or 0")
        seconds = float(match.group(1)) * _DELAY_UNITS[match.group(2)]
        if seconds < 0:
            self.fail(path, f"must not be negative, got {describe(value)}")
        if seconds > MAX_LATENCY:
            self.fail(path, f"must be at most {MAX_LATENCY:g} s one way, got {describe(value)}")
        return seconds

    def delay_pair(self, spec: dict[str, Any], path: str, default: tuple[float, float]
                   ) -> tuple[float, float]:
        """``latency`` and ``jitter`` of ``spec`` (each defaulting to ``default``'s); the
        jitter may not exceed the latency, or delays would go below zero."""
        prefix = f"{path}." if path else ""
        latency = default[0]
        if "latency" in spec:
            latency = self.delay(spec["latency"], f"{prefix}latency")
        jitter = default[1]
        if "jitter" in spec:
            jitter = self.delay(spec["jitter"], f"{prefix}jitter")
        if jitter > latency:
            self.fail(f"{prefix}jitter" if "jitter" in spec else f"{prefix}latency",
                      f"jitter {jitter * 1e3:g} ms exceeds the latency {latency * 1e3:g} ms: a "
                      "delay cannot go below zero")
        return latency, jitter

    def group_delay(self, group: dict[str, Any], path: str, network: dict[str, Any],
                    external: bool) -> tuple[float, float]:
        """A group's access delay and jitter: its own, else ``network``'s. A real client's
        group has none: the client sends without delay (testbed peers still delay their half)."""
        if external:
            for key in ("latency", "jitter"):
                if key in group:
                    self.fail(f"{path}.{key}", "a real client sends without delay: an external "
                                               f"group cannot have a {key}", key=True)
            return 0.0, 0.0
        default = self.delay_pair(network, "network", (0.0, 0.0))
        return self.delay_pair(group, path, default)

    def network(self, network: dict[str, Any], groups: Sequence[GroupSpec],
                tracker: dict[str, Any]) -> Network:
        """The checked ``network`` section (its defaults already applied to ``groups``)."""
        latency, jitter = self.delay_pair(network, "network", (0.0, 0.0))
        raw = network.get("links", [])
        if not isinstance(raw, list):
            self.fail("network.links", "must be a list of {between: [group, group], latency: "
                                       f"..., jitter: ...}}, got {describe(raw)}")
        by_name = {g.name: g for g in groups}
        links: list[LinkOverride] = []
        for i, item in enumerate(raw):
            where = f"network.links[{i}]"
            spec = self.mapping(item, where, _LINK_KEYS, required=("between", "latency"))
            pair = spec["between"]
            if not isinstance(pair, list) or len(pair) != 2:
                self.fail(f"{where}.between", f"must be two group names, got {describe(pair)}")
            for k, name in enumerate(pair):
                group = by_name.get(name) if isinstance(name, str) else None
                if group is None:
                    self.fail(f"{where}.between[{k}]", f"no group named {describe(name)} "
                                                       f"(groups: {', '.join(by_name)})")
                if group.command is not None:
                    self.fail(f"{where}.between[{k}]", f"'{name}' is a real client's group, "
                                                       "which sends without delay")
            link = LinkOverride((pair[0], pair[1]), *self.delay_pair(spec, where, (0.0, 0.0)))
            if any(set(old.between) == set(link.between) for old in links):
                self.fail(f"{where}.between", f"{pair[0]} and {pair[1]} already have a link")
            links.append(link)
        tracker_latency = self.delay(tracker.get("latency", 0), "tracker.latency")
        return Network(latency=latency, jitter=jitter, links=tuple(links),
                       tracker=tracker_latency)


def peer_delays(group: GroupSpec, groups: Sequence[GroupSpec], first_index: Sequence[int],
                network: Network) -> LinkDelays:
    """The delays a peer of ``group`` adds to what it sends: to every testbed peer, by ranges of
    peer ids (``first_index[k]`` is the index of ``groups[k]``'s first peer), to anything else
    (its own access delay), and to the tracker."""
    default = (group.latency, group.jitter)
    ranges: list[tuple[str, str, float, float]] = []
    previous_last = -2
    for other, first in zip(groups, first_index, strict=True):
        if other.command is not None:
            continue
        link = network.link(group.name, other.name)
        pair = (link.latency, link.jitter) if link else (group.latency + other.latency,
                                                       group.jitter + other.jitter)
        last = first + other.count - 1
        if pair == default:
            continue  # the default covers it
        if ranges and previous_last == first - 1 and ranges[-1][2:] == pair:
            ranges[-1] = (ranges[-1][0], peer_id_for(last), *pair)  # adjacent, equal: merged
        else:
            ranges.append((peer_id_for(first), peer_id_for(last), *pair))
        previous_last = last
    delays = LinkDelays(default=default[0], jitter=default[1], peers=tuple(ranges),
                        tracker=group.latency + network.tracker)
    return delays if delays.active else LinkDelays()
