"""Hand-made run directories for the analysis tests (and anyone who needs a small run).

``make_run`` writes what the orchestrator and the peers would: experiment.json (from the real
``testbed.experiment`` dataclasses, so the format cannot drift), peers/<name>.jsonl from Python
lists of events, resources.jsonl and optionally summary.json. Event helpers fill in the fields
the schema requires so a test only states what matters to it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from peer.config import ProtocolSettings, RateLimit
from testbed.experiment import ContentSpec, Departure, Experiment, PeerPlan, peer_id_for


def plan(name: str, index: int, *, group: str = "g", role: str = "leecher",
         up: float | None = None, down: float | None = None, arrival: float = 0.0,
         departure: str = "never", departure_time: float | None = None,
         rechoke_period: float = 10.0) -> PeerPlan:
    return PeerPlan(name=name, group=group, index=index, role=role,  # type: ignore[arg-type]
                    peer_id=peer_id_for(index), seed=index, arrival=arrival,
                    departure=Departure(kind=departure, time=departure_time),  # type: ignore
                    upload=RateLimit(rate=up), download=RateLimit(rate=down),
                    protocol=ProtocolSettings(rechoke_period=rechoke_period))


def pid(index: int) -> str:
    return peer_id_for(index)


def start(p: PeerPlan, t: float = 0.0, *, pieces: int = 4, piece_length: int = 100,
          have: Any = None, schema: Any = 1) -> dict[str, Any]:
    if have is None:
        have = list(range(pieces)) if p.role == "seed" else []
    return {"t": t, "ev": "start", "schema": schema, "name": p.name, "group": p.group,
            "peer_id": p.peer_id, "role": p.role, "pid": 1000 + p.index,
            "info_hash": "00" * 20, "length": pieces * piece_length,
            "piece_length": piece_length, "pieces": pieces,
            "listen": f"127.0.0.1:{7000 + p.index}",
            "upload": {"rate": p.upload.rate, "burst": p.upload.burst},
            "download": {"rate": p.download.rate, "burst": p.download.burst},
            "choker": {"name": p.choker.name, "params": {}},
            "picker": {"name": p.picker.name, "params": {}},
            "protocol": {}, "seed": p.seed, "have": have}


def piece(t: float, index: int, frm: Iterable[int], *, size: int = 100, ok: bool = True,
          started: float | None = None) -> dict[str, Any]:
    senders = [pid(i) for i in frm]
    return {"t": t, "ev": "piece", "index": index, "from": senders, "size": size,
            "start": t - 0.5 if started is None else started, "ok": ok,
            "blame": [] if ok else senders}


def counters(t: float, n: dict[int, tuple[int, int]], *, up: int | None = None,
             down: int | None = None) -> dict[str, Any]:
    """A ``counters`` line; ``n`` lists the neighbours whose counts changed since the previous
    line (docs/log-schema.md). The totals default to the sums over ``n``, which is right only
    when ``n`` names every neighbour that ever moved bytes: pass them otherwise."""
    return {"t": t, "ev": "counters",
            "up": sum(v[0] for v in n.values()) if up is None else up,
            "down": sum(v[1] for v in n.values()) if down is None else down,
            "n": {pid(i): [u, d] for i, (u, d) in n.items()}}


def rechoke(t: float, rnd: int, decisions: dict[int, str], *, seed: bool = False,
            trigger: str = "timer", rates: dict[int, float] | None = None) -> dict[str, Any]:
    """A ``rechoke`` line as peer/session.py writes it (neighbour keys in its order)."""
    nbrs = [{"peer": pid(i), "down_rate": 10.0 * i, "up_rate": 0.5 * i, "interested": True,
             "choking_us": i % 2 == 0, "snubbed": False, "decision": d,
             "reason": None if d == "choke" else f"test, {d}",
             "rate": (rates or {}).get(i)}
            for i, d in decisions.items()]
    return {"t": t, "ev": "rechoke", "round": rnd, "trigger": trigger, "seed": seed,
            "optimistic_rotated": False, "nbrs": nbrs}


def complete(t: float, downloaded: int, elapsed: float) -> dict[str, Any]:
    return {"t": t, "ev": "complete", "downloaded": downloaded, "elapsed": elapsed}


def stop(t: float, up: int, down: int, reason: str = "signal") -> dict[str, Any]:
    return {"t": t, "ev": "stop", "reason": reason, "up": up, "down": down}


def make_run(root: Path, plans: list[PeerPlan], logs: dict[str, list[dict[str, Any]]], *,
             size: int = 400, piece_length: int = 100,
             resources: list[dict[str, Any]] | None = None,
             summary: dict[str, Any] | None = None,
             raw_tail: dict[str, str] | None = None) -> Path:
    """Write a run directory at ``root``; ``raw_tail[name]`` is appended verbatim to a log."""
    exp = Experiment(name="test", seed=1,
                     content=ContentSpec(size=size, piece_length=piece_length),
                     peers=tuple(plans))
    root.mkdir(parents=True, exist_ok=True)
    (root / "experiment.json").write_text(json.dumps(exp.to_json(), indent=1))
    (root / "peers").mkdir(exist_ok=True)
    for name, events in logs.items():
        text = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events)
        text += (raw_tail or {}).get(name, "")
        (root / "peers" / f"{name}.jsonl").write_text(text)
    if resources is not None:
        (root / "resources.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in resources))
    if summary is not None:
        (root / "summary.json").write_text(json.dumps(summary))
    return root


def small_swarm_plans() -> list[PeerPlan]:
    """Seed s (100 B/s); a, b (group fast, up 200 B/s); c (group slow, up 50 B/s, arrives at 2).
    Downloads 1000 B/s; a 400-byte file in 4 pieces of 100."""
    return [plan("s", 0, group="seed", role="seed", up=100),
            plan("a", 1, group="fast", up=200, down=1000),
            plan("b", 2, group="fast", up=200, down=1000),
            plan("c", 3, group="slow", up=50, down=1000, arrival=2.0)]


def small_swarm_leecher_logs(a: PeerPlan, b: PeerPlan,
                             c: PeerPlan) -> dict[str, list[dict[str, Any]]]:
    """a completes at 5 (T = 5), b at 7 (T = 7), c at 12 (T = 10); all stop at 20 with
    up/down a 300/400, b 200/400, c 100/400."""
    return {
        "a": [start(a), *[piece(2 + i, i, [0]) for i in range(4)], complete(5, 400, 5),
              stop(20, 300, 400)],
        "b": [start(b), *[piece(4 + i, i, [0, 1]) for i in range(4)], complete(7, 400, 7),
              stop(20, 200, 400)],
        "c": [start(c, 2.0), *[piece(9 + i, i, [1]) for i in range(4)], complete(12, 400, 10),
              stop(20, 100, 400)],
    }
