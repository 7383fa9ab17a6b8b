"""Topology files: YAML in, a checked ``Topology`` out, expanded peer by peer into an Experiment.

Everything is checked before anything starts: unknown keys (with the closest valid one
suggested), duplicate keys (which PyYAML would silently resolve to the last), wrong types, bad
units, impossible times and counts. Every error is a ``TopologyError`` naming the file, the key
path (``groups[1].upload``) and the 1-based line, so ``testbed validate`` and ``testbed run`` can
print one line and exit 2. The schema is documented in docs/topology.md; the YAML reader and the
field checks are testbed.yamlfile's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

from peer.config import BLOCK_SIZE, PolicySpec, ProtocolSettings, RateLimit
from peer.errors import ConfigError
from peer.tracker_client import tracker_url_problem
from testbed.experiment import (
    ContentSpec,
    Departure,
    EndCondition,
    Experiment,
    PeerPlan,
    peer_id_for,
)
from testbed.external_plan import ExternalPeerPlan, check_template, split_command
from testbed.limits import (
    DEFAULT_MAX_PEERS,
    MAX_PEERS_CEILING,
    MAX_PIECES,
    MAX_SEED,
    PROTOCOL_BOUNDS,
    TIMER_BOUNDS,
    seed_problem,
)
from testbed.topology_latency import NETWORK_KEYS, LatencyChecker, Network, peer_delays
from testbed.topology_policy import (
    BUILTIN_CHOKERS,
    BUILTIN_PICKERS,
    PolicyChecker,
    as_run_copy,
    run_copy_names,
)
from testbed.topology_schedule import Arrival, ScheduleChecker
from testbed.yamlfile import (
    InputFileError,
    describe,
    read_text_file,
    read_yaml,
)

__all__ = [
    "BUILTIN_CHOKERS",
    "BUILTIN_PICKERS",
    "Arrival",
    "GroupSpec",
    "Topology",
    "TopologyError",
    "expand",
    "load_experiment",
    "load_topology",
    "parse_topology",
]

DEFAULT_TIME_LIMIT = 3600.0
DEFAULT_ANNOUNCE_INTERVAL = 30.0


class TopologyError(InputFileError):
    """A topology that cannot be run: ``file``, ``key`` (a path like ``groups[1].upload``),
    ``line`` (1-based) and ``message`` say what and where."""

    unnamed = "<topology>"


# ---------------------------------------------------------------------------------------------
# The validated topology


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupSpec:
    """One peer group of the topology, with the global protocol settings already merged in."""

    name: str
    count: int
    role: Literal["seed", "leecher"]
    upload: RateLimit
    download: RateLimit
    choker: PolicySpec
    picker: PolicySpec
    protocol: ProtocolSettings
    arrival: Arrival
    departure: Departure
    key: str
    """Key path of this group in the file, e.g. ``groups[1]``."""
    line: int
    departure_line: int
    command: tuple[str, ...] | None = None
    """A real client's command template: the group's peers are external (testbed.external)."""
    latency: float = 0.0
    """One-way access delay in seconds (testbed.topology_latency)."""
    jitter: float = 0.0
    placement: tuple[str, ...] = ()
    """The cluster workers this group's peers may run on (``testbed run --cluster``, the
    names, addresses or hosts of workers: testbed.placement); empty: any. Ignored locally."""


@dataclass(frozen=True, slots=True)
class TrackerOutage:
    """The testbed's tracker is down from run time ``at`` for ``duration`` seconds (it is stopped,
    then restarted on the same port: testbed.tracker_control)."""

    at: float
    duration: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Topology:
    """A topology file, checked: what ``expand`` turns into an ``Experiment`` for one seed."""

    name: str
    file: str
    text: str
    """The file as given, for the run directory."""
    seed: int
    content_name: str
    content_size: int
    piece_size: int
    content_seed: int | None
    """None: the content's bytes follow the run's seed."""
    content_storage: str = "auto"
    """``auto``, ``file`` or ``synthetic`` (``ContentSpec.storage``)."""
    protocol: ProtocolSettings
    tracker_url: str | None
    announce_interval: float
    groups: tuple[GroupSpec, ...]
    end: EndCondition
    tracker_outages: tuple[TrackerOutage, ...] = ()
    network: Network = field(default_factory=Network)
    """Link delays: defaults, overrides between groups, the tracker's."""

    @property
    def peer_count(self) -> int:
        return sum(g.count for g in self.groups)


# ---------------------------------------------------------------------------------------------
# Public entry points


def load_topology(path: str | Path) -> Topology:
    """Read and check a topology file; raises ``TopologyError`` naming the file, key and line."""
    text = read_text_file(path, "a topology file", TopologyError)
    return parse_topology(text, file=str(path), default_name=Path(path).stem)


def parse_topology(text: str, *, file: str = "<topology>", default_name: str = "topology",
                   base_dir: str | Path | None = None) -> Topology:
    """Check topology YAML given as text. ``file`` names it in messages; policy files
    (``./mine.py:Class``) are relative to ``base_dir``, by default ``file``'s folder (the
    working directory when ``file`` is not a path)."""
    document = read_yaml(text, file, error=TopologyError,
                         empty="empty file: a topology needs at least 'content' and 'groups'")
    checker = _TopologyChecker(document, file, TopologyError, whole="the topology")
    if base_dir is None:
        base_dir = Path(file).parent if file != TopologyError.unnamed else Path()
    checker.base_dir = Path(base_dir)
    return checker.topology(document.value, text, default_name)


def expand(topology: Topology, seed: int | None = None) -> Experiment:
    """Every peer of ``topology`` with its settings, arrival and departure, for run seed ``seed``
    (default: the topology's). The same topology and seed always give the same experiment."""
    run_seed = topology.seed if seed is None else seed
    if not isinstance(run_seed, int) or isinstance(run_seed, bool):
        raise TopologyError(f"the run seed must be a whole number, got {run_seed!r}",
                            file=topology.file, key="seed")
    if (problem := seed_problem(run_seed)) is not None:
        raise TopologyError(f"the run seed {problem}", file=topology.file, key="seed")
    # Policy files are run from their copies in the run directory (testbed.topology_policy).
    copies = run_copy_names([p for g in topology.groups for p in (g.choker, g.picker)])
    peers: list[PeerPlan] = []
    first_index = [sum(g.count for g in topology.groups[:k]) for k in range(len(topology.groups))]
    for group in topology.groups:
        delays = peer_delays(group, topology.groups, first_index, topology.network)
        # One generator per group, keyed by name: adding a group does not move the others.
        rng = random.Random(f"{run_seed}:{group.name}")
        for i, arrival in enumerate(group.arrival.draw(group.count, rng)):
            name = f"{group.name}-{i}"
            leaves = group.departure.time
            if group.departure.kind in ("at", "killed") and leaves is not None \
                    and leaves <= arrival:
                raise TopologyError(
                    f"{name} would leave at {leaves:g} s but arrives at {arrival:g} s"
                    f" (run seed {run_seed}); make the departure later than every arrival",
                    file=topology.file, key=f"{group.key}.departure", line=group.departure_line)
            index = len(peers)
            fields: dict[str, Any] = dict(
                name=name, group=group.name, index=index, role=group.role,
                peer_id=peer_id_for(index), seed=_peer_seed(run_seed, index), arrival=arrival,
                departure=group.departure, upload=group.upload, download=group.download,
                protocol=group.protocol, choker=as_run_copy(group.choker, copies),
                picker=as_run_copy(group.picker, copies),
            )
            if group.command is not None:
                peers.append(ExternalPeerPlan(command=group.command, **fields))
            else:
                peers.append(PeerPlan(delays=delays, **fields))
    content = ContentSpec(
        size=topology.content_size, piece_length=topology.piece_size, name=topology.content_name,
        seed=run_seed if topology.content_seed is None else topology.content_seed,
        storage=_content_storage(topology, peers),
    )
    return Experiment(
        name=topology.name, seed=run_seed, content=content, peers=tuple(peers), end=topology.end,
        tracker_url=topology.tracker_url, announce_interval=topology.announce_interval,
        policy_files=tuple((copy, source) for source, copy in copies.items()),
        tracker_outages=topology.tracker_outages,
    )


def _content_storage(topology: Topology,
                     peers: list[PeerPlan]) -> Literal["file", "synthetic"]:
    """``auto``: synthetic content needs no file, unless a real client is in the run."""
    real_client = any(isinstance(p, ExternalPeerPlan) for p in peers)
    if topology.content_storage == "synthetic" and real_client:
        raise TopologyError("synthetic storage writes no content file, and the real clients "
                            "need one: use file (or auto)", file=topology.file,
                            key="content.storage")
    if topology.content_storage == "auto":
        return "file" if real_client else "synthetic"
    return "file" if topology.content_storage == "file" else "synthetic"


def load_experiment(path: str | Path, seed: int | None = None) -> Experiment:
    """``expand(load_topology(path), seed)``: what ``testbed run`` and ``testbed validate`` need."""
    return expand(load_topology(path), seed)


def _peer_seed(run_seed: int, index: int) -> int:
    # A hash, not run_seed + index: neighbouring runs must not share peers' random streams.
    digest = hashlib.blake2b(f"bt-testbed:{run_seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1  # 63 bits: fits any JSON reader's int64


# ---------------------------------------------------------------------------------------------
# The schema

_TOP_KEYS = ("name", "seed", "content", "protocol", "tracker", "groups", "end", "max_peers",
             "network")
_CONTENT_KEYS = ("size", "piece_size", "seed", "name", "storage")
_STORAGES = ("auto", "file", "synthetic")
_TRACKER_KEYS = ("announce_interval", "numwant", "url", "outages", "latency")
_GROUP_KEYS = ("name", "count", "role", "upload", "download", "choker", "picker", "protocol",
               "arrival", "departure", "command", "latency", "jitter", "placement")
_TESTBED_ONLY_KEYS = ("choker", "picker", "protocol")
"""Group keys that mean nothing for a real client (it runs its own algorithms)."""
_END_KEYS = ("all_complete", "time_limit", "tolerate_crashes")
_PROTOCOL_FIELDS = {f.name: f for f in dataclasses.fields(ProtocolSettings)}

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_GROUP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _TopologyChecker(PolicyChecker, ScheduleChecker, LatencyChecker):
    """Turns the plain YAML value into a ``Topology``; every complaint gets its line."""

    def config_error(self, exc: ConfigError) -> NoReturn:
        """A ConfigError from a peer.config validator, placed at its key's line."""
        message = str(exc)
        if exc.key and message.startswith(f"{exc.key}: "):
            message = message[len(exc.key) + 2:]
        self.fail(exc.key or "", message)

    # -- sections -------------------------------------------------------------------------

    def topology(self, value: Any, text: str, default_name: str) -> Topology:
        if not isinstance(value, dict):
            self.fail("", f"the top level must be a mapping with keys {', '.join(_TOP_KEYS)}; "
                          f"got {describe(value)}")
        top = self.mapping(value, "", _TOP_KEYS, required=("content", "groups"))
        name = self.text(top.get("name", default_name), "name", _NAME,
                         "use letters, digits, '_', '-' and '.'")
        seed = self.integer(top.get("seed", 0), "seed", 0, MAX_SEED)
        content = self.content(top["content"])
        tracker = self.mapping(_or_empty(top.get("tracker")), "tracker", _TRACKER_KEYS)
        announce_interval = self.duration(
            tracker.get("announce_interval", DEFAULT_ANNOUNCE_INTERVAL),
            "tracker.announce_interval", positive=True)
        self.within(announce_interval, "tracker.announce_interval", TIMER_BOUNDS, "s")
        url = self.tracker_url(tracker.get("url"))
        outages = self.tracker_outages(tracker.get("outages", []), url)
        protocol = self.global_protocol(_or_empty(top.get("protocol")), tracker)
        max_peers = self.integer(top.get("max_peers", DEFAULT_MAX_PEERS), "max_peers", 2,
                                 MAX_PEERS_CEILING)
        network = self.mapping(_or_empty(top.get("network")), "network", NETWORK_KEYS)
        groups = self.groups(top["groups"], protocol, max_peers, network)
        end = self.end(top.get("end", {}))
        self.arrivals_before(end.time_limit, groups)
        return Topology(
            name=name, file=self.file, text=text, seed=seed, **content, protocol=protocol,
            tracker_url=url, announce_interval=announce_interval, groups=groups, end=end,
            tracker_outages=outages, network=self.network(network, groups, tracker),
        )

    def content(self, value: Any) -> dict[str, Any]:
        """The ``content`` section, as the Topology fields it sets."""
        content = self.mapping(value, "content", _CONTENT_KEYS, required=("size",))
        size = self.size(content["size"], "content.size")
        piece_size = self.size(content.get("piece_size", 256 * 1024), "content.piece_size")
        if piece_size < BLOCK_SIZE or piece_size & (piece_size - 1):
            # BEP 3 allows any length, but every client uses powers of two, at least one block.
            self.fail("content.piece_size", f"must be a power of two of at least 16KiB, "
                                            f"got {piece_size} bytes")
        if size < 1:
            self.fail("content.size", "must be at least 1 byte")
        if -(-size // piece_size) > MAX_PIECES:
            self.fail("content.size", f"makes {-(-size // piece_size):,} pieces of "
                                      f"{piece_size} bytes, more than {MAX_PIECES:,}: "
                                      "use a larger piece_size or less content")
        content_seed = None
        if content.get("seed") is not None:
            content_seed = self.integer(content["seed"], "content.seed", 0, MAX_SEED)
        content_name = self.text(content.get("name", "content.bin"), "content.name", _NAME,
                                 "a file name: letters, digits, '_', '-' and '.'")
        storage = content.get("storage", "auto")
        if storage not in _STORAGES:
            self.fail("content.storage", f"must be one of {', '.join(_STORAGES)}, got "
                                         f"{describe(storage)}")
        return {"content_size": size, "piece_size": piece_size, "content_seed": content_seed,
                "content_name": content_name, "content_storage": storage}

    def tracker_outages(self, value: Any, url: str | None) -> tuple[TrackerOutage, ...]:
        """``tracker.outages``: ``[{at: s, for: s}, ...]``, in time order, not overlapping."""
        path = "tracker.outages"
        if not isinstance(value, list):
            self.fail(path, f"must be a list of {{at: s, for: s}}, got {describe(value)}")
        if value and url is not None:
            self.fail(path, "outages stop and restart the testbed's own tracker: remove "
                            "tracker.url to use them")
        outages: list[TrackerOutage] = []
        for i, item in enumerate(value):
            where = f"{path}[{i}]"
            spec = self.mapping(item, where, ("at", "for"), required=("at", "for"))
            at = self.duration(spec["at"], f"{where}.at")
            duration = self.duration(spec["for"], f"{where}.for", positive=True)
            if outages and at < outages[-1].at + outages[-1].duration:
                self.fail(f"{where}.at", f"starts at {at:g} s, before the previous outage "
                                         "ends: list outages in time order, apart")
            outages.append(TrackerOutage(at=at, duration=duration))
        return tuple(outages)

    def tracker_url(self, value: Any) -> str | None:
        if value is None:
            return None
        url = self.text(value, "tracker.url")
        problem = tracker_url_problem(url)
        if problem is not None:  # the peers would refuse it at start: say so now
            self.fail("tracker.url", problem)
        return url

    def global_protocol(self, value: Any, tracker: dict[str, Any]) -> ProtocolSettings:
        """The ``protocol`` section over the defaults, with ``tracker.numwant`` if set."""
        base = ProtocolSettings()
        if "numwant" in tracker:
            base = dataclasses.replace(
                base, numwant=self.integer(tracker["numwant"], "tracker.numwant", 1))
            if isinstance(value, dict) and "numwant" in value:
                self.fail("protocol.numwant", "numwant is also set in tracker.numwant: "
                                              "set it in one place", key=True)
        return self.protocol(value, "protocol", base)

    def protocol(self, value: Any, path: str, base: ProtocolSettings) -> ProtocolSettings:
        """ProtocolSettings fields by name, over ``base``; ranges checked by its validate()."""
        self.mapping(value, path, tuple(_PROTOCOL_FIELDS))
        changes: dict[str, Any] = {}
        for key, raw in value.items():
            child = f"{path}.{key}"
            kind = str(_PROTOCOL_FIELDS[key].type)
            if kind == "bool":
                changes[key] = self.boolean(raw, child)
            elif kind == "int":
                if not isinstance(raw, int) or isinstance(raw, bool):
                    self.fail(child, f"must be a whole number, got {describe(raw)}")
                changes[key] = raw
            elif kind.startswith("float"):
                if raw is None and "None" in kind:
                    changes[key] = None
                else:
                    # The sign and range are the settings' own validate()'s business.
                    changes[key] = self.duration(raw, child, check_sign=False)
            elif kind == "str":
                changes[key] = self.text(raw, child)
            else:  # a field type this reader does not know yet: validate() judges it
                changes[key] = raw
        settings = dataclasses.replace(base, **changes)
        try:
            settings.validate(where=path)
        except ConfigError as exc:
            self.config_error(exc)
        for key, value in changes.items():
            if isinstance(value, float):
                self.within(value, f"{path}.{key}", TIMER_BOUNDS, "s")
            elif key in PROTOCOL_BOUNDS and value is not None:
                self.within(value, f"{path}.{key}", PROTOCOL_BOUNDS[key], "")
        return settings

    def within(self, value: float, path: str, bounds: tuple[float, float], unit: str) -> None:
        """Refuse ``value`` outside ``bounds`` (testbed.limits: sane timers and counts)."""
        low, high = bounds
        if not low <= value <= high:
            self.fail(path, f"must be between {low:g} and {high:g}{' ' + unit if unit else ''}"
                            f", got {value:g}")

    def groups(self, value: Any, protocol: ProtocolSettings, max_peers: int,
               network: dict[str, Any]) -> tuple[GroupSpec, ...]:
        if not isinstance(value, list) or not value:
            self.fail("groups", f"must be a list of peer groups (at least one), "
                                f"got {describe(value)}")
        result: list[GroupSpec] = []
        first_line: dict[str, int] = {}
        total = 0
        for i, raw in enumerate(value):
            result.append(self.group(raw, f"groups[{i}]", protocol, first_line, network))
            total += result[-1].count
            if total > max_peers:
                self.fail(f"groups[{i}].count",
                          f"brings the run to {total:,} peers, more than max_peers "
                          f"({max_peers:,}; a 2-core host runs about 100 unsaturated): lower "
                          f"the counts, or raise the top-level max_peers (at most "
                          f"{MAX_PEERS_CEILING:,})")
        if not any(g.role == "seed" for g in result):
            self.fail("groups", "no seed: at least one group needs 'role: seed', or nobody has "
                                "the content to start with", key=True)
        if not any(g.role == "leecher" for g in result):
            self.fail("groups", "no leecher: at least one group needs 'role: leecher' "
                                "(the default), or there is nothing to distribute", key=True)
        return tuple(result)

    def group(self, raw: Any, path: str, protocol: ProtocolSettings,
              first_line: dict[str, int], network: dict[str, Any]) -> GroupSpec:
        """One group; ``first_line`` maps the names of the groups before it to their lines."""
        group = self.mapping(raw, path, _GROUP_KEYS, required=("name",))
        name = self.text(group["name"], f"{path}.name", _GROUP_NAME,
                         "start with a letter or '_', then letters, digits or '_'")
        if name in first_line:
            self.fail(f"{path}.name", f"group name '{name}' is already used "
                                      f"(line {first_line[name]}); names must be unique")
        first_line[name] = self.line(f"{path}.name") or 0
        count = self.integer(group.get("count", 1), f"{path}.count", 1)
        role = group.get("role", "leecher")
        if role not in ("seed", "leecher"):
            self.fail(f"{path}.role", f"must be 'seed' or 'leecher', got {describe(role)}")
        merged = protocol
        if group.get("protocol") is not None:
            merged = self.protocol(group["protocol"], f"{path}.protocol", protocol)
        departure = self.departure(group.get("departure", "never"), f"{path}.departure", role)
        command = None
        if "command" in group:
            command = self.command(group["command"], f"{path}.command")
            for key in _TESTBED_ONLY_KEYS:
                if key in group:
                    self.fail(f"{path}.{key}", f"an external client group (with 'command') "
                                               f"runs the client's own {key}: remove "
                                               f"'{key}'", key=True)
        latency, jitter = self.group_delay(group, path, network, command is not None)
        spec = GroupSpec(
            name=name, count=count, role=role,
            upload=self.rate(group.get("upload", "unlimited"), f"{path}.upload"),
            download=self.rate(group.get("download", "unlimited"), f"{path}.download"),
            choker=self.policy(group.get("choker", "tit_for_tat"), f"{path}.choker",
                               BUILTIN_CHOKERS, "choker"),
            picker=self.policy(group.get("picker", "rarest_first"), f"{path}.picker",
                               BUILTIN_PICKERS, "picker"),
            protocol=merged,
            arrival=self.arrival(group.get("arrival", 0), f"{path}.arrival", count),
            departure=departure,
            key=path, line=self.line(path) or 0,
            departure_line=self.line(f"{path}.departure") or self.line(path) or 0,
            command=command, latency=latency, jitter=jitter,
            placement=(self.placement(group["placement"], f"{path}.placement")
                       if "placement" in group else ()),
        )
        if command is None:
            return spec
        # Recorded in experiment.json so that analyses see whose algorithms these are.
        external = PolicySpec(name=f"external:{command[0]}")
        return dataclasses.replace(spec, choker=external, picker=external)

    def placement(self, value: Any, path: str) -> tuple[str, ...]:
        """The workers a group may run on with --cluster: one name or a list of them."""
        words = [value] if isinstance(value, str) else value
        if not isinstance(words, list) or (isinstance(value, list) and not value):
            self.fail(path, "must name cluster workers: a worker's name, address or host, or a "
                            f"list of them (testbed run --cluster), got "
                            f"{'an empty list' if value == [] else describe(value)}")
        for i, word in enumerate(words):
            where = path if isinstance(value, str) else f"{path}[{i}]"
            if not isinstance(word, str) or not word.strip():
                self.fail(where, f"must be a worker's name, address or host, got "
                                 f"{describe(word)}")
            if words.index(word) != i:
                self.fail(where, f"worker '{word}' is named twice")
        return tuple(words)

    def command(self, value: Any, path: str) -> tuple[str, ...]:
        """A real client's command template: one string (split like a shell) or a list."""
        if isinstance(value, list):
            for i, word in enumerate(value):
                if not isinstance(word, str | int | float) or isinstance(word, bool):
                    self.fail(f"{path}[{i}]", f"must be text, got {describe(word)}")
            value = [str(word) for word in value]
        elif not isinstance(value, str):
            self.fail(path, f"must be the client's command line (text or a list of words), "
                            f"got {describe(value)}")
        try:
            words = split_command(value)
        except ValueError as exc:
            self.fail(path, f"cannot split the command like a shell: {exc}")
        problem = check_template(words)
        if problem:
            self.fail(path, problem)
        return words

    def end(self, value: Any) -> EndCondition:
        end = self.mapping(value if value is not None else {}, "end", _END_KEYS)
        all_complete = self.boolean(end.get("all_complete", True), "end.all_complete")
        limit = end.get("time_limit", DEFAULT_TIME_LIMIT)
        time_limit = None if limit is None else self.duration(limit, "end.time_limit",
                                                              positive=True)
        if not all_complete and time_limit is None:
            self.fail("end", "the run would never end: set all_complete: true, a time_limit, "
                             "or both")
        tolerate = self.boolean(end.get("tolerate_crashes", False), "end.tolerate_crashes")
        return EndCondition(all_complete=all_complete, time_limit=time_limit,
                            tolerate_crashes=tolerate)


def _or_empty(value: Any) -> Any:
    # A section written with no content (``tracker:``) is YAML null: take it as empty.
    return {} if value is None else value
