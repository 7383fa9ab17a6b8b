"""Settings of one peer process: what the orchestrator writes and ``python -m peer`` reads.

One definition serves the topology expander (testbed/), the peer and the docs: the protocol
settings' field names are the topology file's key names, and their defaults are the textbook's.
The config file is JSON (not YAML) so the peer never needs a YAML parser to start.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peer.errors import ConfigError

BLOCK_SIZE = 16 * 1024  # BEP 3: requests are for 2^14 bytes; larger ones are refused
FALLBACK_ANNOUNCE_INTERVAL = 30.0
"""Seconds between announces while following the tracker and it has not named an interval."""
MAX_QUEUED_REQUESTS = 2000
"""Requests a peer queues from one neighbour (libtorrent's default); more are dropped."""
REQUEST_TIMEOUT = 15.0
"""Requests unanswered this long while unchoked go back to the pool for other neighbours."""
MAX_REDIAL_WAIT = 600.0
"""The longest wait before dialling a failing address again (``redial_backoff`` doubled)."""
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
"""What stops a peer cleanly (announce stopped, flush the log, exit 0): the orchestrator's
SIGTERM and a terminal's Ctrl-C."""


END_GAME_MODES = ("idle", "eager")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProtocolSettings:
    """Every number of the choking and request machinery. Defaults are the textbook's 4 + 1."""

    regular_slots: int = 4
    """Regular (tit-for-tat) unchoke slots. BEP 3's own client used 3 + 1 optimistic = 4 in all."""
    optimistic_slots: int = 1
    rechoke_period: float = 10.0
    optimistic_period: float = 30.0
    rate_window: float = 20.0
    """Seconds over which the rate a neighbour sends to us is averaged for ranking."""
    snub_time: float = 60.0
    """A neighbour that unchoked us but sent nothing for this long counts as snubbing us."""
    unchoke_when_free: bool = False
    """Unchoke a newly interested neighbour at once while a regular slot is free (start-up aid)."""
    seed_choke: str = "upload_rate"
    """How a seed ranks neighbours: by our upload rate to them, or round_robin rotation."""
    pipeline_depth: int = 5
    """Minimum outstanding block requests per connection (BEP 3 suggests 5); raised with the
    measured rate to ``request_queue_time`` of data. Deeper fixed pipelines hoard whole pieces
    on slow neighbours, so faster ones find nothing left to send us."""
    request_queue_time: float = 1.0
    """Seconds of a neighbour's measured rate kept requested. It must exceed the time a
    neighbour takes to answer, or the pipeline never deepens (Transmission answers in batches
    every half second: 0.25 s kept it at 5 blocks, 130 KiB/s). libtorrent keeps 3 s; deeper
    queues slowed the flash crowd's piece injection (1.25 at 0.25 s, 1.34 at 1 s, 1.56 at 3 s)."""
    max_pipeline_depth: int = 250
    """Never more requests out to one neighbour: well under what peers queue (ours: 2000,
    libtorrent 500 by default), or the excess is silently dropped and the download stalls."""
    end_game: str = "idle"
    """Once every block is requested, which neighbours are asked for blocks already requested
    from others: ``idle``, one such block to a neighbour with no request out, as libtorrent
    does; ``eager``, each neighbour's pipeline filled with them, as mainline BitTorrent's end
    game asks everyone for every missing block (in the flash crowd, 6 % of all the blocks sent
    were answers to such duplicates, cancelled too late)."""
    block_size: int = BLOCK_SIZE
    max_neighbours: int = 55
    max_initiate: int = 40
    """Dial no more peers once this many connections are open; the rest of ``max_neighbours`` is
    for peers that dial us (mainline BitTorrent's ``max_initiate``). Without the gap, a peer that
    dropped an idle neighbour to take a newcomer would dial to fill the slot, and an idle swarm
    larger than the cap would churn forever."""
    announce_interval: float | None = None
    """Seconds between periodic announces; None follows the tracker's ``interval`` (until it
    names one: ``FALLBACK_ANNOUNCE_INTERVAL``)."""
    wanted_neighbours: int = 20
    """A peer with fewer neighbours than this announces early, to find more (0: never)."""
    short_announce_interval: float | None = None
    """Seconds between announces while short of neighbours; None: the tracker's ``min
    interval``, else half the announce interval, at least 5 s (never later than the periodic
    announce)."""
    numwant: int = 50
    stall_timeout: float = 180.0
    """Close a connection that sent nothing at all (not even a keep-alive) for this long. Real
    clients send keep-alives about every 2 minutes, so less than that would drop idle ones."""
    idle_drop_after: float = 60.0
    """At the neighbour cap, a new connection takes the place of a neighbour idle this long (no
    interest either way, no block either way), as real clients make room, so that idle
    connections cannot lock honest peers out; without one idle, it is refused."""
    redial_backoff: float = 10.0
    """Seconds before dialling again an address whose last dial failed (no connection, or closed
    before its handshake: a peer full at its neighbour cap); doubled at each failure in a row, up
    to ``MAX_REDIAL_WAIT``. Like libtorrent's ``min_reconnect_time`` x fail count: without it, a
    swarm larger than the cap redials its full neighbours at every announce."""
    dial_rate: float | None = None
    """Dials started per second at most, from the latest tracker list (None: every address it
    gave, up to ``max_initiate``, at once). libtorrent paces its connection attempts the same
    way (``connection_speed``, 30 a second by default): the connections others open to a peer
    then count before it dials more, so fewer dials end refused at a full peer's cap."""

    @property
    def first_announce_interval(self) -> float:
        """Seconds between announces until the tracker has named an interval."""
        if self.announce_interval is None:
            return FALLBACK_ANNOUNCE_INTERVAL
        return self.announce_interval

    def validate(self, where: str = "protocol") -> None:
        positive_ints = ("regular_slots", "pipeline_depth", "max_pipeline_depth",
                         "max_neighbours", "max_initiate", "numwant")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"must be a whole number >= 1, got {value!r}", f"{where}.{name}")
        if not isinstance(self.optimistic_slots, int) or self.optimistic_slots < 0:
            raise ConfigError(
                f"must be a whole number >= 0, got {self.optimistic_slots!r}",
                f"{where}.optimistic_slots",
            )
        for name in ("rechoke_period", "optimistic_period", "rate_window", "snub_time",
                     "stall_timeout", "request_queue_time", "redial_backoff"):
            value = getattr(self, name)
            if not _is_number(value) or value <= 0:
                raise ConfigError(f"must be a number of seconds > 0, got {value!r}",
                                  f"{where}.{name}")
        if not _is_number(self.idle_drop_after) or self.idle_drop_after <= 0:
            raise ConfigError(f"must be a number of seconds > 0, got {self.idle_drop_after!r}",
                              f"{where}.idle_drop_after")
        if self.announce_interval is not None and (
            not _is_number(self.announce_interval) or self.announce_interval <= 0
        ):
            raise ConfigError(f"must be seconds > 0 or null, got {self.announce_interval!r}",
                              f"{where}.announce_interval")
        if self.short_announce_interval is not None and (
            not _is_number(self.short_announce_interval) or self.short_announce_interval <= 0
        ):
            raise ConfigError(
                f"must be seconds > 0 or null, got {self.short_announce_interval!r}",
                f"{where}.short_announce_interval")
        if self.dial_rate is not None and (not _is_number(self.dial_rate) or self.dial_rate <= 0):
            raise ConfigError(f"must be dials per second > 0 or null, got {self.dial_rate!r}",
                              f"{where}.dial_rate")
        wanted = self.wanted_neighbours
        if not isinstance(wanted, int) or isinstance(wanted, bool) or wanted < 0:
            raise ConfigError(f"must be a whole number >= 0, got {wanted!r}",
                              f"{where}.wanted_neighbours")
        if self.seed_choke not in ("upload_rate", "round_robin"):
            raise ConfigError(
                f"must be 'upload_rate' or 'round_robin', got {self.seed_choke!r}",
                f"{where}.seed_choke",
            )
        if self.end_game not in END_GAME_MODES:
            raise ConfigError(f"must be 'idle' or 'eager', got {self.end_game!r}",
                              f"{where}.end_game")
        if not isinstance(self.unchoke_when_free, bool):
            raise ConfigError("must be true or false", f"{where}.unchoke_when_free")
        if self.block_size != BLOCK_SIZE:
            # BEP 3 peers refuse requests over 16 KiB; smaller blocks only waste CPU here.
            raise ConfigError(f"must be {BLOCK_SIZE} (BEP 3 block size)", f"{where}.block_size")


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimit:
    """A token bucket: ``rate`` bytes per second (None = unlimited) and ``burst`` bytes."""

    rate: float | None = None
    burst: float | None = None
    """Bucket depth in bytes; None picks ``burst_for`` the bucket's wake-up grid."""

    def burst_for(self, grid_step: float) -> float:
        """The depth: ``burst`` if given, else the larger of two blocks and 2.5 grid steps of
        the rate (250 ms on the 100 ms grid, 50 ms on the 20 ms one of a peer with link
        delays). The grid's step must stay under half the burst's worth of time, or a sender
        woken late would lose credit (peer/bucket.py); and the smaller the burst, the less an
        idle bucket lets through at once."""
        if self.burst is not None:
            return float(self.burst)
        if self.rate is None:
            return math.inf
        return max(2.0 * BLOCK_SIZE, 2.5 * grid_step * self.rate)

    def validate(self, where: str) -> None:
        if self.rate is not None and (not _is_number(self.rate) or self.rate <= 0):
            raise ConfigError(f"rate must be bytes/s > 0 or null, got {self.rate!r}", where)
        if self.burst is not None and (not _is_number(self.burst) or self.burst < BLOCK_SIZE):
            raise ConfigError(
                f"burst must be at least one block ({BLOCK_SIZE} bytes), got {self.burst!r}", where
            )


MAX_LINK_DELAY = 10.0
"""Seconds: the longest one-way delay a peer adds (a geostationary hop is 0.3 s)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkDelays:
    """One-way delays this peer adds to what it sends (peer/delayline.py, peer/delayed.py):
    to each neighbour, looked up by its peer id once its handshake names it, and to the
    tracker. All zero, the default: no delay line at all, the send path is the plain socket.

    Neighbours are keyed by peer id, not by address: listening ports are chosen at run time and
    an accepted connection shows only an ephemeral port, while testbed peer ids are fixed when
    the topology is expanded. ``peers`` holds ranges of ids (a topology group's ids are
    consecutive), so a config stays small whatever the swarm's size."""

    default: float = 0.0
    """Seconds to a neighbour no range names (a real client, a peer from outside the run)."""
    jitter: float = 0.0
    """The default's jitter: each message's delay is drawn from default ± jitter."""
    peers: tuple[tuple[str, str, float, float], ...] = ()
    """``[first, last, delay, jitter]``: peer ids from ``first`` to ``last`` inclusive, compared
    as text (testbed ids are zero-padded, so text order is index order); ranges do not overlap."""
    tracker: float = 0.0
    """Seconds each way to the tracker."""

    def __post_init__(self) -> None:
        # JSON gives lists; keep the frozen value hashable and comparable with a built one.
        if isinstance(self.peers, list | tuple) and all(
                isinstance(p, list | tuple) for p in self.peers):
            object.__setattr__(self, "peers", tuple(tuple(p) for p in self.peers))

    @property
    def active(self) -> bool:
        """Whether any delay applies: otherwise the peer runs no delay line."""
        return bool(self.default or self.jitter or self.tracker
                    or any(d or j for _, _, d, j in self.peers))

    def validate(self, where: str = "delays") -> None:
        for name in ("default", "jitter", "tracker"):
            _check_delay(getattr(self, name), f"{where}.{name}")
        if self.jitter > self.default:
            raise ConfigError(f"jitter {self.jitter!r} exceeds the delay {self.default!r}",
                              f"{where}.jitter")
        previous = ""
        if not isinstance(self.peers, tuple):
            raise ConfigError("must be a list of [first, last, delay, jitter]", f"{where}.peers")
        for i, entry in enumerate(self.peers):
            at = f"{where}.peers[{i}]"
            if len(entry) != 4 or not all(isinstance(x, str) for x in entry[:2]):
                raise ConfigError(f"must be [first, last, delay, jitter], got {list(entry)!r}",
                                  at)
            first, last, delay, jitter = entry
            if not previous < first <= last:
                raise ConfigError("ranges must be in order, first <= last, not overlapping", at)
            _check_delay(delay, f"{at}[2]")
            _check_delay(jitter, f"{at}[3]")
            if jitter > delay:
                raise ConfigError(f"jitter {jitter!r} exceeds the delay {delay!r}", at)
            previous = last


def _check_delay(value: Any, where: str) -> None:
    if not _is_number(value) or not 0 <= value <= MAX_LINK_DELAY:
        raise ConfigError(f"must be seconds in [0, {MAX_LINK_DELAY:g}], got {value!r}", where)


STORAGE_KINDS = ("file", "synthetic")
MAX_CONTENT_SEED = 2**64 - 1
CACHE_BYTES = 4 * 1024 * 1024
"""Synthetic storage keeps this much of recently sent or verified pieces by default: in the
flash crowd (256 KiB pieces) the pieces a peer serves at once number 13-16, and a cache of 8 or
12 missed for most of them (docs/capacity.md)."""
MIN_CACHE_PIECES = 8


def default_cache_pieces(piece_length: int) -> int:
    """How many pieces synthetic storage caches unless the config says: ``CACHE_BYTES`` worth,
    and at least ``MIN_CACHE_PIECES``."""
    return max(MIN_CACHE_PIECES, CACHE_BYTES // piece_length)


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageSpec:
    """Where a peer keeps the content (peer/storage.py).

    ``file``: a seed maps its content file, a leecher holds what it downloads in anonymous
    memory (its RSS grows with the download). ``synthetic``: the content is the testbed's
    synthetic content of ``content_seed`` (peer/content.py); a leecher keeps which pieces it
    has, buffering a piece's blocks only until the piece verifies, and every peer regenerates a
    piece's bytes when it sends them, keeping the last ``cache_pieces`` pieces (None:
    ``default_cache_pieces`` of the piece length). A synthetic seed needs no content file."""

    kind: str = "file"
    content_seed: int | None = None
    cache_pieces: int | None = None

    def validate(self, where: str = "storage") -> None:
        if self.kind not in STORAGE_KINDS:
            raise ConfigError(f"must be one of {', '.join(STORAGE_KINDS)}, got {self.kind!r}",
                              f"{where}.kind")
        seed = self.content_seed
        if self.kind == "synthetic" and (
                not isinstance(seed, int) or isinstance(seed, bool)
                or not 0 <= seed <= MAX_CONTENT_SEED):
            raise ConfigError(f"synthetic storage needs the content's seed, a whole number in "
                              f"0..2**64-1, got {seed!r}", f"{where}.content_seed")
        if self.cache_pieces is not None and (
                not isinstance(self.cache_pieces, int) or isinstance(self.cache_pieces, bool)
                or self.cache_pieces < 1):
            raise ConfigError(f"must be a whole number >= 1, got {self.cache_pieces!r}",
                              f"{where}.cache_pieces")


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicySpec:
    """A choker or piece picker: a built-in name or ``module:Class``, with keyword parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerConfig:
    """Everything one peer process needs. Written as JSON by the orchestrator."""

    name: str
    peer_id: str
    """20 ASCII characters, e.g. ``-TB0100-000000000007``; logged by remote peers."""
    torrent: str
    role: str  # "seed" or "leecher"
    log: str
    content: str | None = None
    """Seed: the file to serve. Leecher: where to write the finished file (None: keep in memory)."""
    tracker: str | None = None
    """Announce URL; None uses the .torrent's ``announce``."""
    listen_host: str = "127.0.0.1"
    """Where the peer listens; its dials and announces leave from the same address."""
    listen_port: int = 0
    run_start: float | None = None
    """The run's t = 0 on the system-wide monotonic clock; None means this process's start."""
    seed: int = 0
    """Seeds every random choice of this peer."""
    group: str = ""
    upload: RateLimit = field(default_factory=RateLimit)
    download: RateLimit = field(default_factory=RateLimit)
    protocol: ProtocolSettings = field(default_factory=ProtocolSettings)
    choker: PolicySpec = field(default_factory=lambda: PolicySpec(name="tit_for_tat"))
    picker: PolicySpec = field(default_factory=lambda: PolicySpec(name="rarest_first"))
    leave_after_complete: float | None = None
    """None: stay as a seed after completing. 0: leave at once. x: leave x seconds later."""
    counters_period: float = 1.0
    """Seconds between per-neighbour byte counter events in the log."""
    delays: LinkDelays = field(default_factory=LinkDelays)
    """Link delays (topology ``latency``); none by default."""
    storage: StorageSpec = field(default_factory=StorageSpec)
    """How the content is held: a file (or anonymous memory), or regenerated (synthetic)."""

    @property
    def outgoing_address(self) -> str | None:
        """The address dials and announces leave from: ``listen_host`` unless it is a wildcard.

        A tracker hands out the address an announce came *from* (BEP 3), and the kernel picks
        it by route, not by what the peer listens on: on a host with several addresses (a
        cluster worker; 127.0.0.2 on loopback, where every connection to 127.0.0.1 leaves from
        127.0.0.1) the tracker would otherwise hand out an address nobody listens on."""
        return None if self.listen_host in ("", "0.0.0.0", "::") else self.listen_host

    def validate(self) -> None:
        if self.role not in ("seed", "leecher"):
            raise ConfigError(f"must be 'seed' or 'leecher', got {self.role!r}", "role")
        if len(self.peer_id.encode("latin-1", "replace")) != 20:
            raise ConfigError(f"must be 20 characters, got {self.peer_id!r}", "peer_id")
        self.storage.validate()
        if self.role == "seed" and not self.content and self.storage.kind == "file":
            raise ConfigError("a seed needs the content file to serve (or synthetic storage)",
                              "content")
        if not (0 <= self.listen_port < 65536):
            raise ConfigError(f"must be 0..65535, got {self.listen_port!r}", "listen_port")
        self.upload.validate("upload")
        self.download.validate("download")
        self.protocol.validate()
        self.delays.validate()
        if self.leave_after_complete is not None and (
            not _is_number(self.leave_after_complete) or self.leave_after_complete < 0
        ):
            raise ConfigError("must be seconds >= 0 or null", "leave_after_complete")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any, source: str = "config") -> PeerConfig:
        """Build and validate a config from parsed JSON; errors name the source and key."""
        try:
            config: PeerConfig = _build(cls, data, "")
            config.validate()
        except ConfigError as exc:
            raise ConfigError(str(exc), path=source) from None
        return config

    @classmethod
    def load(cls, path: str | Path) -> PeerConfig:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror}", path=str(path)) from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                path=str(path),
            ) from None
        return cls.from_json(data, str(path))


_NESTED = {"upload": RateLimit, "download": RateLimit, "protocol": ProtocolSettings,
           "choker": PolicySpec, "picker": PolicySpec, "delays": LinkDelays,
           "storage": StorageSpec}


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"must be an object, got {type(data).__name__}",
                          prefix.rstrip(".") or None)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
                          prefix.rstrip(".") or None)
    kwargs = {}
    for key, value in data.items():
        nested = _NESTED.get(key) if cls is PeerConfig else None
        kwargs[key] = _build(nested, value, f"{prefix}{key}.") if nested else value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(str(exc), prefix.rstrip(".") or None) from None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
