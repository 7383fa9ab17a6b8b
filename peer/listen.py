"""Accepting TCP connections: every pending one per wake-up, and those refused at once cheaply.

``trio.serve_listeners`` accepts one connection per wake-up and starts a task for each before
our code sees it. When hundreds of peers start together, most of a peer's neighbours dial it in
the same second and many find it at its neighbour cap (docs/capacity.md): there, a connection
the session would refuse at once is closed straight after ``accept``, counted by the session,
and costs no task, no stream and no connection state. Anything else goes to the handler in a
task of its own, as with trio (and, like trio, out of descriptors or buffers we pause 100 ms).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Awaitable, Callable

import trio

BACKLOG = 0xFFFF
"""What trio asks for by default; the kernel caps it (net.core.somaxconn)."""
CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
CAPACITY_PAUSE = 0.1


def listening_sockets(host: str, port: int) -> list[socket.socket]:
    """Non-blocking sockets listening on ``host:port`` (port 0: the kernel picks one), one per
    address the host resolves to, set up as ``trio.open_tcp_listeners`` sets them."""
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


async def accept_forever(sock: socket.socket, refuse: Callable[[], bool],
                         handler: Callable[[trio.SocketStream], Awaitable[None]],
                         nursery: trio.Nursery) -> None:
    """Accept connections on ``sock`` until cancelled. Each is closed at once if ``refuse()``
    says so, else handed to ``handler`` in a new task of ``nursery``; the handler's stream is
    closed when it returns."""
    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            await handler(stream)

    with sock:
        while True:
            await trio.lowlevel.wait_readable(sock)
            while True:
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno not in CAPACITY_ERRNOS:
                        raise
                    await trio.sleep(CAPACITY_PAUSE)
                    break
                if refuse():
                    conn.close()
                    continue
                nursery.start_soon(handle, trio.SocketStream(trio.socket.from_stdlib_socket(conn)))
