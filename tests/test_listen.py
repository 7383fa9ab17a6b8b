"""The accept loop (peer/listen.py): pending connections accepted, refused ones closed untouched."""

from __future__ import annotations

import socket

import trio

from peer.listen import accept_forever, listening_sockets


def dial(port: int) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port))
    client.settimeout(5)
    return client


async def test_every_pending_connection_reaches_the_handler_and_is_closed_after_it():
    [sock] = listening_sockets("127.0.0.1", 0)
    port = sock.getsockname()[1]
    assert not sock.getblocking()
    clients = [dial(port) for _ in range(5)]  # all pending before the loop runs
    handled: list[str] = []

    async def handler(stream: trio.SocketStream) -> None:
        handled.append(stream.socket.getpeername()[0])
        await stream.send_all(b"hi")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_forever, sock, lambda: False, handler, nursery)
        with trio.fail_after(5):
            while len(handled) < 5:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert handled == ["127.0.0.1"] * 5
    for client in clients:
        assert client.recv(10) == b"hi"
        assert client.recv(10) == b""  # the stream was closed once the handler returned
        client.close()
    assert sock.fileno() == -1  # the listener is closed when the loop ends


async def test_a_refused_connection_is_closed_without_a_handler():
    [sock] = listening_sockets("127.0.0.1", 0)
    port = sock.getsockname()[1]
    answers = iter([True, False])
    asked: list[bool] = []

    def refuse() -> bool:
        asked.append(next(answers))
        return asked[-1]

    handled: list[trio.SocketStream] = []

    async def handler(stream: trio.SocketStream) -> None:
        handled.append(stream)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_forever, sock, refuse, handler, nursery)
        refused = dial(port)
        with trio.fail_after(5):
            while not asked:
                await trio.sleep(0.01)
        assert refused.recv(10) == b""  # closed at once
        assert handled == []
        accepted = dial(port)
        with trio.fail_after(5):
            while not handled:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert asked == [True, False]
    refused.close()
    accepted.close()


def test_a_port_in_use_is_an_error():
    [first] = listening_sockets("127.0.0.1", 0)
    port = first.getsockname()[1]
    try:
        listening_sockets("127.0.0.1", port)
    except OSError:
        pass
    else:
        raise AssertionError("a second listener on a port in use must fail")
    finally:
        first.close()
