"""Transmission's command-line client (Debian ``transmission-cli`` 3.00) for testbed external
groups: writes the settings the command line cannot give, then becomes ``transmission-cli``.

    python bench/real_clients/transmission_client.py --torrent T --dir D --port P \
        [--upload-kb N] [--download-kb N]

The file is saved in (or, to seed, found in) ``--dir``; Transmission's own state (settings,
resume data, a copy of the torrent) goes to ``--dir/.transmission``. The process execs
``transmission-cli``, so the supervisor's signals and exit code are the client's own.

Settings written (``settings.json``, docs/real-clients.md "Protocol corners"):
- ``rename-partial-files: false``: Transmission otherwise writes ``<name>.part`` until the end,
  and the supervisor, which watches ``<name>``, would see every piece arrive at once;
- DHT, local peer discovery, PEX, uTP and port mapping off: it talks to nothing but the
  testbed's tracker and peers, over TCP (the testbed has no uTP);
- ``encryption: 0`` ("prefer plaintext"), as the testbed speaks it.

Rates are in Transmission's unit, kB/s of 1000 bytes (``{upload_rate_kb}``); 0 = unlimited.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

PROGRAM = "transmission-cli"

SETTINGS = {
    "rename-partial-files": False,
    "dht-enabled": False,
    "lpd-enabled": False,
    "pex-enabled": False,
    "utp-enabled": False,
    "port-forwarding-enabled": False,
    "encryption": 0,
    "blocklist-enabled": False,
    "rpc-enabled": False,
    "message-level": 2,
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="transmission_client", description=__doc__.splitlines()[0])
    p.add_argument("--torrent", required=True)
    p.add_argument("--dir", required=True, help="save directory (holds the file when seeding)")
    p.add_argument("--port", type=int, required=True, help="listen port")
    p.add_argument("--upload-kb", type=int, default=0,
                   help="upload cap in kB/s (1000 bytes); 0 unlimited")
    p.add_argument("--download-kb", type=int, default=0,
                   help="download cap in kB/s (1000 bytes); 0 unlimited")
    return p


def argv_for(args: argparse.Namespace, config_dir: Path) -> list[str]:
    """The transmission-cli command line for these options."""
    argv = [PROGRAM, "--config-dir", str(config_dir), "--download-dir", args.dir,
            "--port", str(args.port), "--no-portmap", "--encryption-tolerated"]
    argv += ["--uplimit", str(args.upload_kb)] if args.upload_kb else ["--no-uplimit"]
    argv += ["--downlimit", str(args.download_kb)] if args.download_kb else ["--no-downlimit"]
    return [*argv, args.torrent]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if shutil.which(PROGRAM) is None:
        sys.stderr.write(f"transmission_client: {PROGRAM} not found on PATH "
                         "(apt-get install transmission-cli)\n")
        return 2
    config_dir = Path(args.dir) / ".transmission"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "settings.json").write_text(json.dumps(SETTINGS, indent=1) + "\n")
    command = argv_for(args, config_dir)
    print("transmission_client: exec", " ".join(command), flush=True)
    os.execvp(command[0], command)


if __name__ == "__main__":
    sys.exit(main())
