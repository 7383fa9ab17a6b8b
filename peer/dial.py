"""Opening a TCP connection: straight to a numeric address, as every testbed address is.

``trio.open_tcp_stream`` resolves the host and races connection attempts (happy eyeballs) in a
nursery of its own: a name lookup, a nursery and a task per connection. A peer dials numeric
addresses only (the tracker hands out IPs; the orchestrator writes 127.0.0.1 or the worker's
address), and in a flash crowd of hundreds it dials thousands of them within seconds, so the
numeric case connects one socket directly: a stdlib socket, wrapped for trio once connected
(trio's own connect resolves the address again: 129 us of CPU a dial against 69-86 us, the
accept and close included). A host name goes through trio as before.
"""

from __future__ import annotations

import ipaddress
import os
import socket

import trio


async def connect_tcp(host: str, port: int, *, local_address: str | None = None
                      ) -> trio.SocketStream:
    """A connected stream to ``host:port``, leaving from ``local_address`` when given."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return await trio.open_tcp_stream(host, port, local_address=local_address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if local_address is not None:
            # As trio does: the port is chosen at connect, so binding does not use one up.
            if hasattr(socket, "IP_BIND_ADDRESS_NO_PORT"):
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((local_address, 0))
        await _connect(sock, (host, port))
    except OSError as exc:
        sock.close()
        # trio's words, which the announce and connection records carry
        host_port = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        raise OSError(f"all attempts to connect to {host_port} failed") from exc
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(trio.socket.from_stdlib_socket(sock))


async def _connect(sock: socket.socket, address: tuple[str, int]) -> None:
    """trio's non-blocking connect for an address that needs no resolving: start it, wait until
    the socket is writable, then read how it went."""
    await trio.lowlevel.checkpoint_if_cancelled()
    try:
        sock.connect(address)
        return
    except BlockingIOError:
        pass
    await trio.lowlevel.wait_writable(sock)
    error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if error:
        raise OSError(error, f"Error connecting to {address!r}: {os.strerror(error)}")
