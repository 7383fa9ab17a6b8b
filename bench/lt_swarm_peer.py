"""One libtorrent peer of bench/capacity.py's libtorrent swarm (run as a script, one per peer).

    python bench/lt_swarm_peer.py --torrent T --dir D --port P --upload-kib N \
        --peer-id ID --go FILE [--seed]

The session is set up as bench/real_clients/lt_client.py sets it up (loopback only; DHT, LSD,
UPnP, NAT-PMP and uTP off; several connections per IP; every address in the global peer class so
that the rate limits hold on 127.0.0.1: libtorrent exempts 127.0.0.0/8 by default). Two things
differ, both for measuring: the peer waits for ``--go`` to exist before it adds the torrent, so
every peer of the swarm starts at one instant after its imports (which a testbed peer, forked
from a pre-imported process, does not pay), and it prints what the benchmark reads:

    ready                               the session is set up; waiting for --go
    go <cpu s> <t>                      at the start instant: CPU used so far (imports, session)
    s <t> <downloaded> <uploaded>       payload totals, every second
    complete <t>                        the torrent finished (torrent_finished_alert)

``t`` is ``time.monotonic()`` (CLOCK_MONOTONIC: one clock for every process). SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import sys
import time

import libtorrent as lt


def cpu_seconds_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def make_session(port: int, upload_kib: int, peer_id: str) -> lt.session:
    settings = {
        "listen_interfaces": f"127.0.0.1:{port}",
        "outgoing_interfaces": "127.0.0.1",
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "allow_multiple_connections_per_ip": True,
        "enable_outgoing_utp": False, "enable_incoming_utp": False,
        "upload_rate_limit": upload_kib * 1024,
        "alert_mask": lt.alert.category_t.error_notification
        | lt.alert.category_t.status_notification,
        "out_enc_policy": int(lt.enc_policy.pe_disabled),
        "in_enc_policy": int(lt.enc_policy.pe_enabled),
        "peer_fingerprint": peer_id,
    }
    session = lt.session(settings)
    every_address = lt.ip_filter()
    every_address.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
    session.set_peer_class_filter(every_address)
    return session


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--torrent", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upload-kib", type=int, required=True)
    p.add_argument("--peer-id", required=True)
    p.add_argument("--go", required=True)
    p.add_argument("--seed", action="store_true", help="the file is in --dir: trust it")
    args = p.parse_args(argv)
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    session = make_session(args.port, args.upload_kib, args.peer_id)
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(args.torrent)
    params.save_path = args.dir
    if args.seed:
        params.flags |= lt.torrent_flags.seed_mode
    print("ready", flush=True)
    while not os.path.exists(args.go) and not stop:
        time.sleep(0.005)
    print(f"go {cpu_seconds_self():.4f} {time.monotonic():.4f}", flush=True)
    handle = session.add_torrent(params)
    next_status = 0.0
    while not stop:
        session.wait_for_alert(250)
        for alert in session.pop_alerts():
            if isinstance(alert, lt.torrent_finished_alert):
                print(f"complete {time.monotonic():.4f}", flush=True)
        now = time.monotonic()
        if now >= next_status:
            status = handle.status()
            print(f"s {now:.4f} {status.total_payload_download} {status.total_payload_upload}",
                  flush=True)
            next_status = now + 1.0
    return 0


if __name__ == "__main__":
    sys.exit(main())
