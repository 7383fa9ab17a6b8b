"""The arrival and departure schedules of a topology's groups: their forms, their checks
and the arrival times they draw (the schema is docs/topology.md's "Arrival" and "Departure")."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from testbed.experiment import Departure, DepartureKind
from testbed.yamlfile import FieldChecker, describe, did_you_mean, is_number

if TYPE_CHECKING:
    from testbed.topology import GroupSpec

__all__ = ["Arrival", "ScheduleChecker"]

@dataclass(frozen=True, slots=True, kw_only=True)
class Arrival:
    """When a group's peers arrive.

    - ``at``: everyone at ``start``;
    - ``uniform``: independently and uniformly over [``start``, ``end``];
    - ``poisson``: one by one, a Poisson process of ``rate`` arrivals per second from ``start``;
    - ``list``: exactly ``times``, one per peer.
    """

    kind: Literal["at", "uniform", "poisson", "list"] = "at"
    start: float = 0.0
    end: float | None = None
    rate: float | None = None
    times: tuple[float, ...] = ()

    def draw(self, count: int, rng: random.Random) -> list[float]:
        """``count`` arrival times, in peer order; random kinds draw from ``rng``."""
        if self.kind == "at":
            return [self.start] * count
        if self.kind == "list":
            return list(self.times)
        if self.kind == "uniform":
            assert self.end is not None
            # Sorted so that a group's peers arrive in name order: easier to read in logs.
            return sorted(round(rng.uniform(self.start, self.end), 3) for _ in range(count))
        assert self.rate is not None
        times, t = [], self.start
        for _ in range(count):
            t += rng.expovariate(self.rate)
            times.append(round(t, 3))
        return times


_ARRIVAL_FORMS = "a time (all at once), {uniform: [from, to]}, {poisson: {rate: r, start: t}} " \
                 "or {at: [t1, t2, ...]}"
_DEPARTURE_FORMS = "never, on_completion, {after_completion: s}, {at: t} or {killed: t}"
_UNTIMED_DEPARTURES: dict[str, DepartureKind] = {"never": "never", "on_completion": "on_completion"}
_TIMED_DEPARTURES: tuple[DepartureKind, ...] = ("after_completion", "at", "killed")


class ScheduleChecker(FieldChecker):
    """The ``arrival`` and ``departure`` checks of a topology's groups."""

    def arrival(self, value: Any, path: str, count: int) -> Arrival:
        if not isinstance(value, dict):
            if isinstance(value, list):
                self.fail(path, f"a list of times goes under 'at': {{at: [...]}}; "
                                f"write {_ARRIVAL_FORMS}")
            return Arrival(kind="at", start=self.duration(value, path))

        def uniform() -> Arrival:
            span, where = value["uniform"], f"{path}.uniform"
            if not isinstance(span, list) or len(span) != 2:
                self.fail(where, f"must be [from, to], got {describe(span)}")
            low = self.duration(span[0], f"{where}[0]")
            high = self.duration(span[1], f"{where}[1]")
            if high < low:
                self.fail(where, f"'to' ({high:g} s) comes before 'from' ({low:g} s)")
            return Arrival(kind="uniform", start=low, end=high)

        def poisson() -> Arrival:
            where = f"{path}.poisson"
            spec = self.mapping(value["poisson"], where, ("rate", "start"), required=("rate",))
            rate = spec["rate"]
            if not is_number(rate) or not math.isfinite(rate) or rate <= 0:
                self.fail(f"{where}.rate", f"must be arrivals per second > 0, "
                                           f"got {describe(rate)}")
            start = self.duration(spec.get("start", 0), f"{where}.start")
            return Arrival(kind="poisson", rate=float(rate), start=start)

        def at() -> Arrival:
            times, where = value["at"], f"{path}.at"
            if not isinstance(times, list):
                self.fail(where, f"must be a list of {count} times, got {describe(times)}")
            if len(times) != count:
                self.fail(where, f"lists {len(times)} times but the group has count {count}: "
                                 "give one arrival time per peer")
            return Arrival(kind="list", times=tuple(
                self.duration(t, f"{where}[{i}]") for i, t in enumerate(times)))

        return self.one_form(value, path, {"uniform": uniform, "poisson": poisson, "at": at},
                             _ARRIVAL_FORMS)

    def arrivals_before(self, time_limit: float | None, groups: Sequence[GroupSpec]) -> None:
        """Refuse an arrival at or after the time limit: that peer would never start."""
        if time_limit is None:
            return
        for group in groups:
            arrival, path = group.arrival, f"{group.key}.arrival"
            # A Poisson process has no last arrival: only its start is checked.
            last = {"list": max(arrival.times, default=0.0),
                    "uniform": arrival.end or 0.0}.get(arrival.kind, arrival.start)
            if last >= time_limit:
                self.fail(path, f"a peer would arrive at {last:g} s, not before the time limit "
                                f"(end.time_limit: {time_limit:g} s), and never start; arrive "
                                "earlier or raise the time limit")

    def departure(self, value: Any, path: str, role: str) -> Departure:
        if isinstance(value, str):
            kind = _UNTIMED_DEPARTURES.get(value)
            if kind is None:
                self.fail(path, f"unknown departure '{value}'"
                                f"{did_you_mean(value, list(_UNTIMED_DEPARTURES))}; "
                                f"write {_DEPARTURE_FORMS}")
            departure = Departure(kind=kind)
        elif isinstance(value, dict):
            def timed(kind: DepartureKind) -> Callable[[], Departure]:
                return lambda: Departure(kind=kind,
                                         time=self.duration(value[kind], f"{path}.{kind}"))
            departure = self.one_form(
                value, path, {k: timed(k) for k in _TIMED_DEPARTURES}, _DEPARTURE_FORMS)
        else:
            self.fail(path, f"cannot read departure {describe(value)}; write {_DEPARTURE_FORMS}")
        if role == "seed" and departure.kind in ("on_completion", "after_completion"):
            self.fail(path, "a seed is complete from the start, so it would leave at once; "
                            "use {at: t} or {killed: t} for a seed that leaves")
        return departure
