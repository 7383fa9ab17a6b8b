"""A minimal BitTorrent client on libtorrent's Python bindings, for testbed external groups.

    python bench/real_clients/lt_client.py --torrent T --dir D --port P \
        [--upload-kib N] [--download-kib N] [--peer-id ID] [--seed-mode] [--exit-on-complete]

Downloads (or, with the file already in ``--dir``, seeds) one torrent on 127.0.0.1 only, with
DHT, local service discovery, UPnP and NAT-PMP off, so it talks to nothing but the testbed's
tracker and peers. Prints one line a second (``progress 0.53 peers 4 down 123456 up 0``) and
``complete`` once every piece is verified; with ``--exit-on-complete`` it then exits 0.
SIGTERM or SIGINT: pauses, tells the tracker ``stopped`` and exits 0.

Two libtorrent defaults would make it misbehave in a loopback swarm (docs/real-clients.md,
"Protocol corners"):
- ``allow_multiple_connections_per_ip`` is off: every testbed peer is 127.0.0.1, so it would
  talk to one of them only;
- peers on 127.0.0.0/8 are in the "local" peer class, exempt from rate limits: the global class
  is applied to every address so that ``--upload-kib``/``--download-kib`` hold on loopback.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

try:
    import libtorrent as lt
except ImportError:  # pragma: no cover - depends on the machine
    sys.stderr.write("lt_client: the libtorrent Python bindings are not installed "
                     "(pip install libtorrent)\n")
    sys.exit(2)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lt_client", description=__doc__.splitlines()[0])
    p.add_argument("--torrent", required=True)
    p.add_argument("--dir", required=True, help="save path (holds the file when seeding)")
    p.add_argument("--port", type=int, required=True, help="listen port on 127.0.0.1")
    p.add_argument("--upload-kib", type=int, default=0, help="upload cap in KiB/s; 0 unlimited")
    p.add_argument("--download-kib", type=int, default=0,
                   help="download cap in KiB/s; 0 unlimited")
    p.add_argument("--peer-id", default="",
                   help="peer id (20 characters: used whole; shorter: libtorrent fills it up)")
    p.add_argument("--seed-mode", action="store_true",
                   help="trust the existing file without checking it (faster start)")
    p.add_argument("--exit-on-complete", action="store_true")
    return p


def _verbose() -> int:
    import os
    if not os.environ.get("LT_CLIENT_VERBOSE"):
        return 0
    c = lt.alert.category_t
    return (c.tracker_notification | c.peer_notification | c.connect_notification
            | c.status_notification)

def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    settings = {
        "listen_interfaces": f"127.0.0.1:{args.port}",
        "outgoing_interfaces": "127.0.0.1",
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "allow_multiple_connections_per_ip": True,
        # libtorrent dials uTP (BEP 29, over UDP) first; the testbed speaks TCP only, so the
        # attempt times out and the peer is not retried over TCP for a while.
        "enable_outgoing_utp": False, "enable_incoming_utp": False,
        "upload_rate_limit": args.upload_kib * 1024,
        "download_rate_limit": args.download_kib * 1024,
        "alert_mask": lt.alert.category_t.error_notification | _verbose(),
        # Plaintext only, as the testbed's peers speak it (saves a failed attempt per peer).
        "out_enc_policy": int(lt.enc_policy.pe_disabled),
        "in_enc_policy": int(lt.enc_policy.pe_enabled),
    }
    if args.peer_id:
        settings["peer_fingerprint"] = args.peer_id
    session = lt.session(settings)
    every_address = lt.ip_filter()
    every_address.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
    session.set_peer_class_filter(every_address)

    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(args.torrent)
    params.save_path = args.dir
    if args.seed_mode:
        params.flags |= lt.torrent_flags.seed_mode
    handle = session.add_torrent(params)

    announced_complete = False
    while not stop:
        status = handle.status()
        print(f"progress {status.progress:.4f} peers {status.num_peers} "
              f"down {status.total_payload_download} up {status.total_payload_upload} "
              f"state {status.state}", flush=True)
        if status.is_seeding and not announced_complete:
            announced_complete = True
            print("complete", flush=True)
            if args.exit_on_complete:
                break
        for alert in session.pop_alerts():
            print(f"alert {alert.what()}: {alert.message()}", flush=True)
        time.sleep(1.0)
    handle.pause()
    session.remove_torrent(handle)
    # Give the 'stopped' announce a moment to leave.
    time.sleep(0.3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
