"""The tracker's trio server: h11 for HTTP/1.1 framing, tracker.http for everything else.

This module only moves bytes: each connection gets its own task and an h11
state machine; complete requests go to ``tracker.http.handle_request``; replies go back. A
client that stalls is dropped after ``request_timeout`` seconds, so idle or slow connections
cannot pile up; a client that sends garbage gets a 400 and its connection closed, and the
tracker carries on.
"""

from __future__ import annotations

import contextlib
from http import HTTPStatus

import h11
import trio

from peer.eventlog import SCHEMA_VERSION, EventLog
from tracker.http import Reply, handle_request
from tracker.swarm import Swarm

MAX_BODY = 64 * 1024
"""A tracker request has no body; a client that sends more than this is not a BitTorrent one."""

SERVER_HEADER = b"bt-testbed-tracker"


async def serve_tracker(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    swarm: Swarm,
    log: EventLog,
    request_timeout: float = 10.0,
    flush_period: float = 0.5,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve announces and scrapes until cancelled; report the bound port once listening.

    Use as ``port = await nursery.start(partial(serve_tracker, swarm=..., log=...))``
    (trio's nursery.start protocol). Logs ``start`` once listening and ``stop`` on the way out, and
    flushes the log every ``flush_period`` seconds and at exit.
    """
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound_port = listeners[0].socket.getsockname()[1]
    try:
        info_hashes = swarm.info_hashes
        log.emit("start", schema=SCHEMA_VERSION, listen=f"{host}:{bound_port}",
                 info_hashes=None if info_hashes is None else [h.hex() for h in info_hashes],
                 interval=swarm.interval, min_interval=swarm.min_interval,
                 peer_timeout=swarm.expiry)
        log.flush()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_housekeeping, swarm, log, flush_period)

            async def handler(stream: trio.SocketStream) -> None:
                await _serve_connection(stream, swarm=swarm, log=log, timeout=request_timeout)

            await nursery.start(trio.serve_listeners, handler, listeners)
            task_status.started(bound_port)
    finally:
        # Runs on cancellation too (SIGTERM in the CLI): the last lines must reach the file.
        log.emit("stop")
        log.flush()
        for listener in listeners:
            with contextlib.suppress(trio.ClosedResourceError, OSError):
                listener.socket.close()


async def _housekeeping(swarm: Swarm, log: EventLog, flush_period: float) -> None:
    # Flushing bounds what a SIGKILL can lose; expiring here (not only lazily on announce)
    # keeps scrape counts honest for swarms nobody announces to any more.
    while True:
        await trio.sleep(flush_period)
        log.flush()
        swarm.expire(trio.current_time())


def _client_ip(stream: trio.SocketStream) -> str:
    try:
        return str(stream.socket.getpeername()[0])
    except (OSError, AttributeError, IndexError):
        return "0.0.0.0"


async def _serve_connection(stream: trio.SocketStream, *, swarm: Swarm, log: EventLog,
                            timeout: float) -> None:
    conn = h11.Connection(h11.SERVER)
    client_ip = _client_ip(stream)
    async with stream:
        try:
            while True:
                # One deadline per request-response cycle: an idle keep-alive connection or a
                # client that neither sends nor reads is dropped when it runs out.
                with trio.move_on_after(timeout):
                    request = await _receive_request(conn, stream)
                    if request is None:
                        return
                    reply = handle_request(request.method, request.target, client_ip=client_ip,
                                           swarm=swarm, now=trio.current_time())
                    if reply.log_ev is not None:
                        log.emit(reply.log_ev, **(reply.log_fields or {}))
                    await _send_reply(conn, stream, reply)
                    if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                        conn.start_next_cycle()
                        continue
                    return
                return  # the deadline passed
        except h11.RemoteProtocolError as exc:
            await _send_bad_request(conn, stream, exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away; nothing to answer


async def _receive_request(conn: h11.Connection, stream: trio.SocketStream) -> h11.Request | None:
    """Read one whole request (headers and any body); None if the client closed first."""
    request: h11.Request | None = None
    body = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(16384))
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += len(event.data)
            if body > MAX_BODY:
                raise h11.RemoteProtocolError("request body too large", error_status_hint=413)
        elif isinstance(event, h11.EndOfMessage):
            return request
        elif isinstance(event, h11.ConnectionClosed):
            return None
        else:  # PAUSED cannot happen before we answer; anything else is a bug in h11 or us
            raise h11.RemoteProtocolError(f"unexpected {event!r}")


async def _send_reply(conn: h11.Connection, stream: trio.SocketStream, reply: Reply) -> None:
    headers = [
        (b"Content-Type", reply.content_type),
        (b"Content-Length", b"%d" % len(reply.body)),
        (b"Server", SERVER_HEADER),
    ]
    data = conn.send(h11.Response(status_code=reply.status, headers=headers,
                                   reason=_reason(reply.status)))
    data += conn.send(h11.Data(data=reply.body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)


async def _send_bad_request(conn: h11.Connection, stream: trio.SocketStream,
                            exc: h11.RemoteProtocolError) -> None:
    # h11 still lets us answer when the error came from the client's bytes and we have not
    # started a response (h11's own trio example does the same).
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    status = exc.error_status_hint
    body = f"bad request: {exc}\n".encode("utf-8", "replace")
    headers = [(b"Content-Type", b"text/plain"), (b"Content-Length", b"%d" % len(body)),
               (b"Connection", b"close"), (b"Server", SERVER_HEADER)]
    try:
        with trio.move_on_after(1.0):
            data = conn.send(h11.Response(status_code=status, headers=headers,
                                           reason=_reason(status)))
            data += conn.send(h11.Data(data=body)) or b""
            data += conn.send(h11.EndOfMessage()) or b""
            await stream.send_all(data)
    except (h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
        pass



def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


__all__ = ["serve_tracker"]
