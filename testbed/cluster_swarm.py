"""``testbed run TOPOLOGY --cluster tcp://HOST:8786``: one swarm split across the workers of a
Dask scheduler (docs/cluster.md). Imported only with ``--cluster``.

1. Every worker must run this testbed (the same check as for whole runs, testbed.cluster).
2. Each worker is asked where its peers listen (testbed.cluster_agent.agent_info) and its
   clock offset to this machine is measured: several round trips, the one with the smallest
   round-trip time kept (offset = the worker's clock minus the midpoint of the round trip, off
   by at most half that round trip).
3. The peers are placed (testbed.placement); each peer's ``listen_host`` becomes its worker's
   address, the tracker's this machine's address towards the scheduler (``--tracker-host``).
4. One node agent per worker with peers is submitted (a long-running task pinned to it), and
   the run is ``testbed.run.execute_run`` with a ``ClusterLauncher``: the same Orchestrator,
   the same run directory, plus ``cluster.json`` (workers, placement, clock offsets at the
   start and the end, the workers' CPU, losses) and ``cluster/resources-<worker>.jsonl``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from peer.errors import TestbedError
from peer.eventlog import clock_offset
from testbed.cluster import connect, mismatch
from testbed.cluster_agent import agent_info, agent_task, monotonic_now
from testbed.cluster_launcher import AgentSlot, ClusterLauncher, worker_identities
from testbed.cluster_worker import identity
from testbed.experiment import Experiment
from testbed.external import ExternalPeerPlan
from testbed.launch import LocalLauncher
from testbed.placement import WorkerInfo, host_port, place, placement_record
from testbed.run import Commands, RunOptions, RunResult, execute_run
from testbed.topology import expand, load_topology

OFFSET_ROUNDS = 7


def run_split_swarm(topology_file: Path, seed: int | None, address: str, options: RunOptions,
                    tracker_host: str | None = None,
                    say: Callable[[str], None] = print) -> RunResult:
    """Run the topology as one swarm across the cluster's workers (see the module's doc)."""
    topology = load_topology(topology_file)
    experiment = expand(topology, seed)
    check_splittable(experiment)
    client = connect(address)
    agents: dict[str, AgentSlot] = {}
    try:
        workers = checked_workers(client)
        placed = place(workers, [(p.name, p.group) for p in experiment.peers],
                       {g.name: g.placement for g in topology.groups}, experiment.seed)
        used = sorted({w.address for w in placed.values()})
        offsets = {a: measure_offset(client, a) for a in used}
        host = tracker_host or local_address_towards(address)
        experiment = dataclasses.replace(
            experiment, tracker_host=host,
            peers=tuple(dataclasses.replace(p, listen_host=placed[p.name].host)
                        for p in experiment.peers))
        prefix = f"testbed-swarm-{uuid.uuid4().hex}"
        agents = _submit_agents(client, prefix, workers, used, offsets, options.launcher)
        record = {"scheduler": address, "tracker_host": host,
                  "workers": [dataclasses.asdict(w) for w in workers],
                  "placement": placement_record(placed), "clock_offsets": offsets}
        launcher = ClusterLauncher(client, agents, _queue(client, f"{prefix}-events"), placed,
                                   LocalLauncher(), record, say,
                                   end_offset=lambda a: measure_offset(client, a),
                                   fork=options.launcher == "fork")
        return execute_run(experiment, topology.text, options, Commands(),
                           launcher=launcher)
    finally:
        for agent in agents.values():  # whatever happened, no agent outlives the run
            with contextlib.suppress(Exception):
                client.cancel(agent.future)
        with contextlib.suppress(Exception):
            client.close(timeout=5)


def check_splittable(experiment: Experiment) -> None:
    """What a split swarm cannot do yet, refused before anything starts."""
    if any(isinstance(p, ExternalPeerPlan) for p in experiment.peers):
        raise TestbedError("--cluster without --repeat runs testbed peers only: real clients "
                           "(a group with 'command') cannot be split across workers")
    if experiment.content.storage != "synthetic":
        raise TestbedError("--cluster without --repeat needs content.storage: synthetic (the "
                           "seeds on the workers regenerate the content; no file is shipped)")


def checked_workers(client: Any) -> list[WorkerInfo]:
    """Every worker of the scheduler, each running this testbed; a TestbedError naming the
    first that does not (nothing has started)."""
    addresses = sorted(worker_identities(client))
    if not addresses:
        raise TestbedError("--cluster: the scheduler has no workers: start some with "
                           "'dask worker' (docs/cluster.md)")
    local = identity()
    identities = client.run(identity, workers=addresses, on_error="return")
    for address in addresses:
        remote = identities.get(address)
        problem = (f"did not answer ({remote!r})" if not isinstance(remote, dict)
                   else mismatch(local, remote))
        if problem is not None:
            raise TestbedError(f"--cluster: worker {address} {problem}")
    infos = client.run(agent_info, workers=addresses)
    return [WorkerInfo(address=a, name=str(infos[a]["name"]), host=str(infos[a]["host"]))
            for a in addresses]


def measure_offset(client: Any, address: str, rounds: int = OFFSET_ROUNDS) -> dict[str, float]:
    """The worker's CLOCK_MONOTONIC minus this machine's, from the round trip with the smallest
    round-trip time; ``error`` bounds how far off it can be (half that round trip)."""
    offset, error = clock_offset(
        time.monotonic, lambda: float(client.run(monotonic_now, workers=[address])[address]),
        rounds)
    return {"offset": round(offset, 6), "rtt": round(2 * error, 6), "error": round(error, 6)}


def local_address_towards(address: str) -> str:
    """This machine's address on the route to the scheduler (where the workers' peers can reach
    the tracker); no packet is sent."""
    host, port = host_port(address)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, port))
        return str(s.getsockname()[0])


def _queue(client: Any, name: str) -> Any:
    from distributed import Queue

    return Queue(name, client=client)  # type: ignore[no-untyped-call]


def _label(worker: WorkerInfo) -> str:
    """A file-name-safe label of a worker (its name, else its address)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", worker.name or worker.address).strip("_")


def _submit_agents(client: Any, prefix: str, workers: Sequence[WorkerInfo], used: Sequence[str],
                   offsets: dict[str, dict[str, float]], launcher: str) -> dict[str, AgentSlot]:
    by_address = {w.address: w for w in workers}
    identities = worker_identities(client)
    agents: dict[str, AgentSlot] = {}
    for i, address in enumerate(used):
        worker = by_address[address]
        key = f"{prefix}-agent-{i}"
        spec: dict[str, Any] = {"key": key, "label": _label(worker), "address": address,
                "clock_offset": offsets[address]["offset"], "launcher": launcher,
                "commands": f"{prefix}-commands-{i}", "events": f"{prefix}-events"}
        commands = _queue(client, spec["commands"])
        future = client.submit(agent_task, spec, key=key, workers=[address],
                               allow_other_workers=False, pure=False)
        agents[address] = AgentSlot(worker=worker, label=spec["label"], commands=commands,
                                    future=future, identity=identities.get(address, ""),
                                    clock_offset=offsets[address])
    return agents
