"""``python -m testbed.cluster_peer --config X``: ``python -m peer`` whose outgoing connections
leave from the address it listens on (its config's ``listen_host``), for a swarm split across
cluster workers (testbed.cluster_swarm, docs/cluster.md).

Why: the tracker hands out the address an announce came *from* (BEP 3; tracker/swarm.py), and
the kernel picks that source address by route, not by what the peer listens on. On a host with
several addresses (a multi-homed machine, or the loopback workers of the tests, where every
connection to 127.0.0.1 leaves from 127.0.0.1 whichever 127.x the peer listens on) the tracker
would hand out an address nobody listens on. Binding each outgoing connection (announces and
dials) to ``listen_host`` makes the source the listening address. A wildcard listen address
(``0.0.0.0``) binds nothing. The peer itself is unchanged: this only wraps its entry point.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any

WILDCARDS = ("", "0.0.0.0", "::")


def listen_host(argv: list[str]) -> str | None:
    """The ``listen_host`` of the config that ``--config`` names, or None."""
    if "--config" not in argv or argv.index("--config") + 1 >= len(argv):
        return None
    try:
        with open(argv[argv.index("--config") + 1], encoding="utf-8") as f:
            host = json.load(f).get("listen_host")
    except (OSError, ValueError, AttributeError):
        return None  # the peer reports the bad config itself
    return host if isinstance(host, str) else None


def bind_outgoing(host: str) -> None:
    """Make every ``trio.open_tcp_stream`` of this process leave from ``host``."""
    import trio

    original = trio.open_tcp_stream

    @functools.wraps(original)
    async def open_from_host(*args: Any, **kwargs: Any) -> trio.SocketStream:
        kwargs.setdefault("local_address", host)
        return await original(*args, **kwargs)

    trio.open_tcp_stream = open_from_host


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    host = listen_host(args)
    if host is not None and host not in WILDCARDS:
        bind_outgoing(host)
    from peer.__main__ import main as peer_main

    return peer_main(args)


if __name__ == "__main__":
    sys.exit(main())
