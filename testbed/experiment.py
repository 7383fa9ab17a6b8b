"""The fully expanded experiment: what a topology file means, peer by peer.

``testbed.topology`` turns a YAML file into an ``Experiment``; the orchestrator (``testbed.run``)
runs one; ``experiment.json`` in the run directory records it, so the analysis knows every peer's
group, capacities, policies, arrival and departure without re-reading the topology.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from peer.config import (
    LinkDelays,
    PeerConfig,
    PolicySpec,
    ProtocolSettings,
    RateLimit,
    StorageSpec,
)

if TYPE_CHECKING:
    from testbed.topology import TrackerOutage

DepartureKind = Literal["never", "on_completion", "after_completion", "at", "killed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Departure:
    """When a peer leaves.

    - ``never``: stays (as a seed once complete) until the run ends;
    - ``on_completion``: leaves (announces ``stopped``) as soon as it has every piece;
    - ``after_completion``: leaves ``time`` seconds after completing;
    - ``at``: is stopped with SIGTERM (announces ``stopped``) at run time ``time``;
    - ``killed``: is killed with SIGKILL at run time ``time``, without warning (churn).
    """

    kind: DepartureKind = "never"
    time: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ContentSpec:
    """Synthetic content: ``size`` bytes generated deterministically from ``seed``."""

    name: str = "content.bin"
    size: int
    piece_length: int = 256 * 1024
    seed: int = 0
    storage: Literal["file", "synthetic"] = "file"
    """How the testbed peers hold it (peer.config.StorageSpec): ``synthetic`` (regenerated from
    ``seed``: no content file, memory independent of the size) or ``file`` (the seeds serve the
    content file, the leechers hold what they download in memory). The topology's ``auto``
    resolves to ``synthetic`` unless a real client is in the run."""

    @property
    def storage_spec(self) -> StorageSpec:
        """What each testbed peer's config says about its storage."""
        if self.storage == "synthetic":
            return StorageSpec(kind="synthetic", content_seed=self.seed)
        return StorageSpec()


@dataclass(frozen=True, slots=True, kw_only=True)
class EndCondition:
    """The run ends when every leecher has completed (if ``all_complete``) or at ``time_limit``."""

    all_complete: bool = True
    time_limit: float | None = None
    tolerate_crashes: bool = False
    """A peer that exits non-zero unasked (no departure, no end of run) fails the run, unless
    this is set (fault-injection experiments)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerPlan:
    """One peer of the experiment, with every setting resolved."""

    name: str
    group: str
    index: int
    role: Literal["seed", "leecher"]
    peer_id: str
    seed: int
    arrival: float
    departure: Departure = field(default_factory=Departure)
    upload: RateLimit = field(default_factory=RateLimit)
    download: RateLimit = field(default_factory=RateLimit)
    protocol: ProtocolSettings = field(default_factory=ProtocolSettings)
    choker: PolicySpec = field(default_factory=lambda: PolicySpec(name="tit_for_tat"))
    picker: PolicySpec = field(default_factory=lambda: PolicySpec(name="rarest_first"))
    listen_host: str = "127.0.0.1"
    delays: LinkDelays = field(default_factory=LinkDelays)
    """One-way delays this peer adds to what it sends (testbed.topology_latency)."""

    def peer_config(self, *, torrent: str, log: str, tracker: str, run_start: float,
                    content: str | None, storage: StorageSpec | None = None) -> PeerConfig:
        """The config file the orchestrator hands to ``python -m peer`` for this peer."""
        leave: float | None = None
        if self.departure.kind == "on_completion":
            leave = 0.0
        elif self.departure.kind == "after_completion":
            leave = self.departure.time
        return PeerConfig(
            name=self.name, peer_id=self.peer_id, torrent=torrent, role=self.role, log=log,
            content=content, tracker=tracker, listen_host=self.listen_host, run_start=run_start,
            seed=self.seed, group=self.group, upload=self.upload, download=self.download,
            protocol=self.protocol, choker=self.choker, picker=self.picker,
            leave_after_complete=leave, delays=self.delays, storage=storage or StorageSpec(),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Experiment:
    """A topology expanded for one seed: everything the orchestrator needs to run it."""

    name: str
    seed: int
    content: ContentSpec
    peers: tuple[PeerPlan, ...]
    end: EndCondition = field(default_factory=EndCondition)
    tracker_host: str = "127.0.0.1"
    tracker_url: str | None = None
    """An external tracker's announce URL; None starts the testbed's own tracker."""
    announce_interval: float = 30.0
    """The ``interval`` the testbed's tracker tells peers."""
    tracker_outages: tuple[TrackerOutage, ...] = ()
    """When the testbed's tracker is down (``tracker.outages``)."""
    policy_files: tuple[tuple[str, str], ...] = ()
    """Policy files the peers load from the run directory: (copy, source) pairs, the copy
    relative to the run directory (``policies/mine.py``), the source the absolute path it is
    copied from when the run starts (testbed.provenance)."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def leechers(self) -> tuple[PeerPlan, ...]:
        return tuple(p for p in self.peers if p.role == "leecher")


def peer_id_for(index: int) -> str:
    """Testbed peer ids are readable: client tag ``-TB0100-`` and the peer's index."""
    return f"-TB0100-{index:012d}"
