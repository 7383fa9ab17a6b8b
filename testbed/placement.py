"""Which Dask worker runs which peer of a swarm split across machines (docs/cluster.md).

``place`` is a pure function of the worker list, the peers (name and group, in the
experiment's order), the groups' ``placement`` keys (docs/topology.md) and the run's seed: the
same inputs always give the same placement, whatever order the workers were listed in.

- The workers are sorted by address, then rotated by the seed, so that runs of several seeds
  do not always give the first worker the first seed.
- Each peer goes to the candidate worker that has the fewest peers so far (the first of them in
  that order on a tie): every group is spread evenly, and the swarm as a whole too.
- A group's candidates are every worker, or those its ``placement`` names (a worker's name, its
  address ``tcp://HOST:PORT`` or its host).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from peer.errors import TestbedError


class PlacementError(TestbedError):
    """A group names a worker the cluster does not have, or there are no workers."""


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker as placement sees it."""

    address: str
    """``tcp://HOST:PORT``, as the scheduler reports it."""
    name: str
    """The worker's ``--name`` (Dask's default: its address)."""
    host: str
    """Where its peers listen (the host of its address, or the worker's TESTBED_PEER_HOST)."""

    def answers_to(self, label: str) -> bool:
        return label in (self.name, self.address, self.host, host_port(self.address)[0])


SCHEDULER_PORT = 8786
"""Dask's default scheduler port: an address without a port means it."""


def host_port(address: str) -> tuple[str, int]:
    """(host, port) of a Dask address: ``tcp://HOST:PORT``, ``HOST:PORT``, ``tcp://[v6]:PORT``,
    or a host alone (``SCHEDULER_PORT``)."""
    rest = address.split("://", 1)[-1]
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else ""
    else:
        host, sep, port = rest.rpartition(":")
        if not sep:
            host, port = rest, ""
    return host, int(port) if port.isdigit() else SCHEDULER_PORT


def place(workers: Sequence[WorkerInfo], peers: Sequence[tuple[str, str]],
          placements: Mapping[str, Sequence[str]], seed: int) -> dict[str, WorkerInfo]:
    """Peer name -> the worker that runs it. ``peers`` are (name, group) pairs; ``placements``
    maps a group to the workers it names (a group not in it may go anywhere)."""
    if not workers:
        raise PlacementError("--cluster: the scheduler has no workers: start some with "
                             "'dask worker' (docs/cluster.md)")
    ordered = sorted(workers, key=lambda w: w.address)
    shift = seed % len(ordered)
    ordered = ordered[shift:] + ordered[:shift]
    candidates = {group: _named(ordered, group, labels)
                  for group, labels in placements.items() if labels}
    load = {w.address: 0 for w in ordered}
    result: dict[str, WorkerInfo] = {}
    for name, group in peers:
        choice = min(candidates.get(group, ordered), key=lambda w: load[w.address])
        load[choice.address] += 1
        result[name] = choice
    return result


def _named(ordered: Sequence[WorkerInfo], group: str,
           labels: Sequence[str]) -> list[WorkerInfo]:
    chosen: list[WorkerInfo] = []
    for label in labels:
        matches = [w for w in ordered if w.answers_to(label)]
        if not matches:
            known = ", ".join(f"{w.name} ({w.address})" for w in ordered)
            raise PlacementError(f"group '{group}': placement names worker '{label}', which "
                                 f"is not among the cluster's workers: {known}")
        chosen.extend(w for w in matches if w not in chosen)
    return [w for w in ordered if w in chosen]


def placement_record(placed: Mapping[str, WorkerInfo]) -> dict[str, list[str]]:
    """Worker address -> its peers' names, for cluster.json."""
    record: dict[str, list[str]] = {}
    for name, worker in placed.items():
        record.setdefault(worker.address, []).append(name)
    return record
