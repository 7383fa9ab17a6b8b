"""What a run's processes read, written into the run directory before they start: the content
(or, for synthetic storage, only its hashes), the .torrent, and one JSON config per peer
(docs/run-directory.md). testbed.run calls these; they do no scheduling of their own."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from peer.metainfo import Metainfo
from testbed.experiment import Experiment, PeerPlan
from testbed.external import ExternalPeerPlan
from testbed.rundir import RunDir, write_json_atomic

PLACEHOLDER_ANNOUNCE = "http://127.0.0.1:9/announce"
"""The .torrent is made before the tracker has a port; it is rewritten once it has one (the
info dictionary, hence the info_hash, does not change)."""


def make_content(experiment: Experiment, run: RunDir) -> tuple[Path | None, Path, Metainfo]:
    """The content file (None for synthetic storage), the .torrent, its metainfo."""
    from peer.content import synthetic_piece_hashes
    from peer.metainfo import build_metainfo, make_synthetic_torrent, write_torrent

    spec = experiment.content
    announce = experiment.tracker_url or PLACEHOLDER_ANNOUNCE
    target = run.torrent(spec.name)
    if spec.storage == "synthetic":
        # Every testbed peer regenerates the content: no file, only its hashes.
        metainfo = build_metainfo(
            announce=announce, name=spec.name, length=spec.size,
            piece_length=spec.piece_length,
            piece_hashes=synthetic_piece_hashes(spec.size, spec.seed, spec.piece_length))
        write_torrent(target, metainfo)
        return None, target, metainfo
    content, torrent, metainfo = make_synthetic_torrent(
        run.content_dir, size=spec.size, seed=spec.seed,
        piece_length=spec.piece_length, announce=announce, name=spec.name)
    os.replace(torrent, target)
    return content, target, metainfo


def set_announce(torrent: Path, metainfo: Metainfo, tracker_url: str) -> None:
    """Rewrite the .torrent (atomically) to announce to ``tracker_url``; same info_hash."""
    from peer.metainfo import build_metainfo, write_torrent

    rewritten = build_metainfo(announce=tracker_url, name=metainfo.name,
                               length=metainfo.length, piece_length=metainfo.piece_length,
                               piece_hashes=metainfo.piece_hashes)
    assert rewritten.info_hash == metainfo.info_hash
    tmp = torrent.with_name(f".{torrent.name}.tmp")
    write_torrent(tmp, rewritten)
    os.replace(tmp, torrent)


def write_peer_configs(experiment: Experiment, run: RunDir, plans: Iterable[PeerPlan],
                       torrent: Path, content: Path | None, tracker_url: str,
                       run_start: float) -> None:
    """One JSON config per peer (testbed peers and real clients) in the run directory."""
    storage = experiment.content.storage_spec
    for plan in plans:
        seed_content = (f"content/{content.name}" if plan.role == "seed" and content
                        else None)
        if isinstance(plan, ExternalPeerPlan):
            external = plan.external_config(
                torrent=torrent.name, log=f"peers/{plan.name}.jsonl", tracker=tracker_url,
                run_start=run_start, directory=f"external/{plan.name}",
                content=seed_content)
            write_json_atomic(run.peer_config(plan.name), external.to_json())
            continue
        config = plan.peer_config(
            torrent=torrent.name, log=f"peers/{plan.name}.jsonl", tracker=tracker_url,
            run_start=run_start, content=seed_content, storage=storage)
        write_json_atomic(run.peer_config(plan.name), config.to_json())
