"""peer/dial.py: numeric addresses connect one socket directly; names go through trio."""

from __future__ import annotations

import pytest
import trio

from peer.dial import connect_tcp

pytestmark = pytest.mark.integration


async def test_a_numeric_address_connects_from_the_local_address():
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.3"))[0]
    port = listener.socket.getsockname()[1]
    stream = await connect_tcp("127.0.0.3", port, local_address="127.0.0.2")
    accepted = await listener.accept()
    assert accepted.socket.getpeername()[0] == "127.0.0.2"
    await stream.send_all(b"x")
    assert await accepted.receive_some(1) == b"x"
    for s in (stream, accepted, listener):
        await s.aclose()


async def test_a_refused_connection_is_the_oserror_trio_would_raise():
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    await listener.aclose()  # nobody listens there now
    with pytest.raises(OSError, match=rf"^all attempts to connect to 127\.0\.0\.1:{port} failed$"):
        await connect_tcp("127.0.0.1", port)


async def test_a_host_name_goes_through_trio():
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    stream = await connect_tcp("localhost", port)
    accepted = await listener.accept()
    for s in (stream, accepted, listener):
        await s.aclose()
