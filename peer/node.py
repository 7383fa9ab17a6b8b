"""One BitTorrent peer on trio: listen, announce, dial, one reader and one writer task per
connection, the rechoke timer and the event log.

The protocol logic lives elsewhere and has no I/O: framing in ``peer.wire``, block bookkeeping in
``peer.pieces``, choking and piece selection in ``peer.policy``, rate limits in ``peer.bucket``.
This module only moves bytes between them and the sockets, and writes down what happened.

Time: every internal time is ``Node.now()``, trio's clock shifted so that it reads run time (the
orchestrator's t = 0), so tests drive it with MockClock; log lines are stamped from the
system-wide monotonic clock (``RunClock``) so the logs of all processes line up.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import random
import signal
from collections import deque
from pathlib import Path
from typing import Any

import trio

from peer import bencode, wire
from peer.bucket import TokenBucket
from peer.config import BLOCK_SIZE, PeerConfig, RateLimit
from peer.errors import BencodeError, RemoteProtocolError, TestbedError
from peer.eventlog import SCHEMA_VERSION, EventLog, RunClock, peer_id_text
from peer.metainfo import Metainfo, read_torrent
from peer.pieces import BlockResult, PieceDone, PieceState
from peer.policy import ChokeView, Decision, NeighbourView, PickView, build_choker, build_picker
from peer.tracker_client import AnnounceRequest, announce

RECEIVE_SIZE = 256 * 1024
HANDSHAKE_TIMEOUT = 10.0
KEEPALIVE_PERIOD = 60.0
MAX_QUEUED_REQUESTS = 2000
"""Requests we queue from one neighbour (libtorrent's default); more are dropped."""
PIPELINE_SECONDS = 0.25
"""Keep this much of the measured download rate in flight, so a link never idles."""
MAX_PIPELINE = 250
"""Never more requests out to one neighbour: well under what peers queue (ours: 2000,
libtorrent 500 by default), or the excess is silently dropped and the download stalls."""
REQUEST_TIMEOUT = 15.0
"""Requests unanswered this long while unchoked go back to the pool for other neighbours."""
MAX_FAILED_PIECES = 3
"""Close a neighbour after it took part in this many pieces that failed their hash."""
LOG_FLUSH_PERIOD = 0.5
EXTENSION_BIT = 0x10
"""BEP 10: reserved byte 5, bit 0x10 announces the extension protocol."""
EXTENDED = 20
RESERVED = bytes([0, 0, 0, 0, 0, EXTENSION_BIT, 0, 0])
ESTABLISHED_AGE = 2.0
"""A duplicate connection never replaces one that has been up this long (seconds)."""
HAVE_FLUSH_PERIOD = 0.5


class CloseConnection(Exception):
    """Close this one connection; ``reason`` goes into the conn_close event."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RateMeter:
    """Bytes per second over a rolling window, in one-second bins (cheap per block)."""

    __slots__ = ("bins", "start", "window")

    def __init__(self, window: float, now: float) -> None:
        self.window = window
        self.start = now
        self.bins: deque[list[int]] = deque()

    def add(self, amount: int, now: float) -> None:
        second = int(now)
        bins = self.bins
        if bins and bins[-1][0] == second:
            bins[-1][1] += amount
        else:
            bins.append([second, amount])
            horizon = second - self.window - 1
            while bins and bins[0][0] < horizon:
                bins.popleft()

    def rate(self, now: float, window: float | None = None) -> float:
        window = self.window if window is None else window
        horizon = now - window
        total = sum(amount for second, amount in self.bins if second + 1 > horizon)
        return total / max(1.0, min(window, now - self.start))


class Connection:
    """State of one neighbour connection. The node's methods act on it."""

    def __init__(self, node: Node, stream: trio.SocketStream, addr: str, direction: str) -> None:
        now = node.now()
        self.node = node
        self.stream = stream
        self.addr = addr
        self.direction = direction
        self.peer_id: bytes | None = None
        self.peer = ""
        self.reader = wire.WireReader(node.pieces.num_pieces, expect_handshake=True)
        self.remote_has = bytearray(node.pieces.num_pieces)
        self.remote_count = 0
        self.interesting = 0
        """Pieces it has that we lack: we are interested while this is above zero."""
        self.am_choking = True
        self.am_interested = False
        self.peer_choking = True
        self.peer_interested = False
        self.decision = "choke"
        self.last_unchoked: float | None = None
        self.outstanding: dict[tuple[int, int], int] = {}
        self.cancelled: set[tuple[int, int]] = set()
        self.uploads: deque[tuple[int, int, int]] = deque()
        self.control: list[bytes] = []
        self.wakeup = trio.Event()
        settings = node.config.protocol
        self.down_meter = RateMeter(settings.rate_window, now)
        self.up_meter = RateMeter(settings.rate_window, now)
        self.up = 0
        self.down = 0
        self.connected_at = now
        self.last_received = now
        self.last_block_at = now
        self.unchoked_us_at = now
        self.failed_pieces = 0
        self.limit: TokenBucket | None = None
        """This neighbour's own upload cap, when the choker sets one (Decision.rate)."""
        self.registered = False
        self.cancel_scope = trio.CancelScope()

    def send(self, data: bytes) -> None:
        self.control.append(data)
        self.wakeup.set()

    def send_lazily(self, data: bytes) -> None:
        """Queue a message that may wait for the next send or the node's have flush.

        Have messages are a third of all messages in a swarm (every piece, to every
        neighbour); sending each on its own costs a system call and a task switch at both
        ends. Batching them for at most ``HAVE_FLUSH_PERIOD`` costs the swarm little.
        """
        self.control.append(data)

    def snubbed(self, now: float, snub_time: float) -> bool:
        waiting_since = max(self.last_block_at, self.unchoked_us_at)
        return self.am_interested and not self.peer_choking and now - waiting_since > snub_time


class Node:
    def __init__(self, config: PeerConfig, *, clock: RunClock | None = None,
                 log: EventLog | None = None) -> None:
        self.config = config
        self.clock = clock or RunClock(config.run_start)
        self.log = log or EventLog(config.log, self.clock)
        self.metainfo: Metainfo = read_torrent(config.torrent)
        self.peer_id = config.peer_id.encode("latin-1")
        self.rng = random.Random(config.seed)
        self.choker = build_choker(config.choker, self.rng.randrange(2**32))
        self.picker = build_picker(config.picker, self.rng.randrange(2**32))
        self.pieces = PieceState(
            piece_length=self.metainfo.piece_length, length=self.metainfo.length,
            piece_hashes=self.metainfo.piece_hashes, storage=self._open_storage(),
            have_all=config.role == "seed")
        self.up_bucket = TokenBucket(config.upload.rate, config.upload.effective_burst)
        self.down_bucket = TokenBucket(config.download.rate, config.download.effective_burst)
        self.connections: dict[bytes, Connection] = {}
        self.all_connections: set[Connection] = set()
        self.dialing: set[tuple[str, int]] = set()
        self.peer_at: dict[tuple[str, int], bytes] = {}
        """Listening address -> peer id, learnt from the handshakes of connections we dialled."""
        self.counters: dict[str, list[int]] = {}
        self._counters_logged: dict[str, tuple[int, ...]] = {}
        self.counters_dirty = True
        self.uploaded = 0
        self.downloaded = 0
        self.rechoke_round = 0
        self.listen_port = 0
        self.announce_interval = config.protocol.first_announce_interval
        self.completed = trio.Event()
        self.started_complete = self.pieces.complete
        self._time_offset = 0.0
        self.start_time = 0.0
        self._nursery: trio.Nursery | None = None
        self._rechoke_pending = False
        self._announce_now = trio.Event()
        self.tracker_url = config.tracker or self.metainfo.announce

    # --- set-up -----------------------------------------------------------------------------

    def _open_storage(self) -> mmap.mmap:
        if self.config.role == "seed":
            path = Path(self.config.content or "")
            try:
                size = path.stat().st_size
                if size != self.metainfo.length:
                    raise TestbedError(f"{path}: content is {size} bytes, the torrent says "
                                       f"{self.metainfo.length}")
                with open(path, "rb") as f:
                    return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except OSError as exc:
                raise TestbedError(f"{path}: cannot read the content: {exc.strerror}") from None
        # Anonymous memory is zero-filled lazily by the kernel, so a peer's RSS grows with
        # what it has downloaded, not with the size of the torrent.
        return mmap.mmap(-1, max(1, self.metainfo.length))

    def now(self) -> float:
        return trio.current_time() - self._time_offset

    # --- main -------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> str:
        """Run until a signal, leaving after completion, or cancellation; returns the reason."""
        self._time_offset = trio.current_time() - self.clock.now()
        reason = "cancelled"
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                listeners = await trio.open_tcp_listeners(self.config.listen_port,
                                                          host=self.config.listen_host)
                self.listen_port = listeners[0].socket.getsockname()[1]
                self._log_start()
                nursery.start_soon(self._serve, listeners)
                nursery.start_soon(self._housekeeping)
                nursery.start_soon(self._flush_lazy_messages)
                nursery.start_soon(self._rechoke_timer)
                nursery.start_soon(self._announcer)
                task_status.started(self.listen_port)
                reason = await self._wait_for_exit()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self._shutdown(reason)
        return reason

    async def _wait_for_exit(self) -> str:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                outcome: list[str] = []

                async def on_signal() -> None:
                    async for _ in signals:
                        outcome.append("signal")
                        nursery.cancel_scope.cancel()

                async def on_leave() -> None:
                    leave = self.config.leave_after_complete
                    if leave is None:
                        await trio.sleep_forever()
                    await self.completed.wait()
                    await trio.sleep(leave)
                    outcome.append("left after completion")
                    nursery.cancel_scope.cancel()

                nursery.start_soon(on_signal)
                nursery.start_soon(on_leave)
        return outcome[0] if outcome else "cancelled"

    async def _shutdown(self, reason: str) -> None:
        for conn in list(self.all_connections):
            self._unregister(conn, "shutdown")
        with trio.move_on_after(0.5):
            await self._announce("stopped")
        self._emit_counters(force=True)
        self.log.emit("stop", reason=reason, up=self.uploaded, down=self.downloaded)
        self.log.close()

    def _log_start(self) -> None:
        c = self.config
        self.start_time = self.now()
        self.log.emit(
            "start", schema=SCHEMA_VERSION, name=c.name, group=c.group, peer_id=c.peer_id,
            role=c.role, pid=os.getpid(), info_hash=self.metainfo.info_hash.hex(),
            length=self.metainfo.length, piece_length=self.metainfo.piece_length,
            pieces=self.pieces.num_pieces, listen=f"{c.listen_host}:{self.listen_port}",
            upload={"rate": c.upload.rate, "burst": _finite(self.up_bucket.burst)},
            download={"rate": c.download.rate, "burst": _finite(self.down_bucket.burst)},
            choker={"name": c.choker.name, "params": c.choker.params},
            picker={"name": c.picker.name, "params": c.picker.params},
            protocol=c.to_json()["protocol"], seed=c.seed, have=self.pieces.have_count)
        self.log.flush()

    async def _housekeeping(self) -> None:
        """Flush the log, write counters, drop stalled connections."""
        next_counters = self.now() + self.config.counters_period
        stall = self.config.protocol.stall_timeout
        while True:
            await trio.sleep(LOG_FLUSH_PERIOD)
            now = self.now()
            if now >= next_counters:
                next_counters = now + self.config.counters_period
                self._emit_counters()
                for conn in list(self.connections.values()):
                    if now - conn.last_received > stall:
                        self._close(conn, "stalled")
                    elif conn.outstanding and \
                            now - max(conn.last_block_at, conn.unchoked_us_at) > REQUEST_TIMEOUT:
                        self._reclaim_requests(conn)
            self.log.flush()

    async def _flush_lazy_messages(self) -> None:
        while True:
            await trio.sleep(HAVE_FLUSH_PERIOD)
            for conn in self.connections.values():
                if conn.control:
                    conn.wakeup.set()

    def _emit_counters(self, force: bool = False) -> None:
        if not (self.counters_dirty or force):
            return
        self.counters_dirty = False
        # Only neighbours whose counts moved since the last line: a peer with dozens of idle
        # neighbours would otherwise repeat them every second and bloat the log tenfold.
        changed = {peer: list(pair) for peer, pair in self.counters.items()
                   if self._counters_logged.get(peer) != tuple(pair)}
        for peer, pair in changed.items():
            self._counters_logged[peer] = tuple(pair)
        self.log.emit("counters", up=self.uploaded, down=self.downloaded, n=changed)

    # --- tracker ----------------------------------------------------------------------------

    async def _announcer(self) -> None:
        event = "started"
        delay = 1.0
        while True:
            peers = await self._announce(event)
            if peers is None:
                # Tracker unreachable or refusing: retry soon, with backoff, same event.
                with trio.move_on_after(delay):
                    await self._announce_now.wait()
                delay = min(delay * 2, self.announce_interval)
                continue
            delay = 1.0
            event = ""
            self._dial_peers(peers)
            with trio.move_on_after(self.announce_interval):
                await self._announce_now.wait()
            if self._announce_now.is_set():
                self._announce_now = trio.Event()
                event = "completed" if self.pieces.complete else ""

    async def _announce(self, event: str) -> list[tuple[str, int]] | None:
        left = self.metainfo.length - (self.metainfo.length if self.pieces.complete
                                       else self.pieces.bytes_verified)
        request = AnnounceRequest(
            info_hash=self.metainfo.info_hash, peer_id=self.peer_id, port=self.listen_port,
            uploaded=self.uploaded, downloaded=self.downloaded, left=left,
            numwant=self.config.protocol.numwant, event=event)
        response, record = await announce(self.tracker_url, request)
        self.log.emit("announce", **record)
        if response is None or response.peers is None:
            return None
        interval = response.usable_interval
        if interval is not None and self.config.protocol.announce_interval is None:
            self.announce_interval = interval
        return response.peers

    # --- connections: dialling and accepting -------------------------------------------------

    def _dial_peers(self, peers: list[tuple[str, int]]) -> None:
        assert self._nursery is not None
        own = (self.config.listen_host, self.listen_port)
        known = {conn.addr for conn in self.all_connections}
        # An accepted connection shows the remote's ephemeral port, not the one it listens on,
        # so the tracker's address of a neighbour we accepted is unknown to us until we dial it
        # once; after that dial's handshake we know whose address it is.
        known.update(f"{host}:{port}" for (host, port), peer_id in self.peer_at.items()
                     if peer_id in self.connections)
        self.rng.shuffle(peers)
        for host, port in peers:
            if self._neighbour_count() + len(self.dialing) >= self.config.protocol.max_neighbours:
                break
            if (host, port) == own or (host, port) in self.dialing or f"{host}:{port}" in known:
                continue
            self.dialing.add((host, port))
            self._nursery.start_soon(self._dial, host, port)

    def _neighbour_count(self) -> int:
        return len(self.all_connections)

    async def _dial(self, host: str, port: int) -> None:
        try:
            with trio.fail_after(5):
                stream = await trio.open_tcp_stream(host, port)
        except (OSError, trio.TooSlowError):
            return
        finally:
            self.dialing.discard((host, port))
        await self._run_connection(stream, f"{host}:{port}", "out")

    async def _serve(self, listeners: list[trio.SocketListener]) -> None:
        await trio.serve_listeners(self._accept, listeners)

    async def _accept(self, stream: trio.SocketStream) -> None:
        host, port = stream.socket.getpeername()[:2]
        if self._neighbour_count() >= self.config.protocol.max_neighbours:
            self.log.emit("conn_close", peer=None, addr=f"{host}:{port}",
                          reason="neighbour cap", up=0, down=0)
            await stream.aclose()
            return
        await self._run_connection(stream, f"{host}:{port}", "in")

    async def _run_connection(self, stream: trio.SocketStream, addr: str, direction: str) -> None:
        conn = Connection(self, stream, addr, direction)
        self.all_connections.add(conn)
        reasons: list[str] = []

        async def guarded(task: Any) -> None:
            # Whichever task ends first (a protocol error, the remote closing) ends both.
            try:
                await task(conn)
            except Exception as exc:
                reason = _close_reason(exc)
                if reason is None:
                    raise
                reasons.append(reason)
                conn.cancel_scope.cancel()

        try:
            with conn.cancel_scope:
                await guarded(self._open)
                if not reasons:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(guarded, self._writer)
                        nursery.start_soon(guarded, self._reader)
        finally:
            if conn in self.all_connections:
                self._unregister(conn, reasons[0] if reasons else "shutdown")
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _open(self, conn: Connection) -> None:
        await conn.stream.send_all(wire.encode(wire.Handshake(
            info_hash=self.metainfo.info_hash, peer_id=self.peer_id, reserved=RESERVED)))
        with trio.fail_after(HANDSHAKE_TIMEOUT):
            await self._receive_handshake(conn)

    async def _receive_handshake(self, conn: Connection) -> None:
        while True:
            data = await conn.stream.receive_some(RECEIVE_SIZE)
            if not data:
                raise CloseConnection("handshake failed: closed")
            conn.reader.receive_data(data)
            event = conn.reader.next_event()
            if event is wire.NEED_DATA:
                continue
            assert isinstance(event, wire.Handshake)
            break
        if event.info_hash != self.metainfo.info_hash:
            raise CloseConnection("wrong info_hash")
        if event.peer_id == self.peer_id:
            raise CloseConnection("self")
        conn.peer_id = event.peer_id
        conn.peer = peer_id_text(event.peer_id)
        if conn.direction == "out":
            host, _, port = conn.addr.rpartition(":")
            self.peer_at[(host, int(port))] = event.peer_id
        existing = self.connections.get(event.peer_id)
        if existing is not None:
            # Both sides may dial each other at once. Both keep the connection dialled by the
            # smaller peer id, so exactly one survives whichever side decides first. A
            # connection established for a while is kept whatever the ids: both ends see it as
            # old, and it carries state (unchokes, requests) worth keeping.
            established = self.now() - existing.connected_at >= ESTABLISHED_AGE
            keep_new = not established and existing.direction != conn.direction and \
                (conn.direction == "out") == (self.peer_id < event.peer_id)
            if not keep_new:
                raise CloseConnection("duplicate")
            self._close(existing, "duplicate")
        conn.registered = True
        self.connections[event.peer_id] = conn
        self.log.emit("conn_open", peer=conn.peer, addr=conn.addr, dir=conn.direction)
        self.counters.setdefault(conn.peer, [0, 0])
        if self.pieces.have_count:
            conn.send(wire.encode(wire.Bitfield(bits=wire.bits_from_flags(self.pieces.have))))
        if event.reserved[5] & EXTENSION_BIT:
            # BEP 10 extended handshake, only to tell our listening port ("p"): with it the
            # remote can tell that the tracker's address for us is this connection.
            payload = b"\x00" + bencode.encode({"m": {}, "p": self.listen_port,
                                                "v": "bt-testbed"})
            conn.send(wire.encode(wire.Unknown(msg_id=EXTENDED, payload=payload)))
        # Messages that came in the same segment as the handshake.
        self._handle_buffered(conn)

    def _close(self, conn: Connection, reason: str) -> None:
        self._unregister(conn, reason)
        conn.cancel_scope.cancel()

    def _unregister(self, conn: Connection, reason: str) -> None:
        if conn not in self.all_connections:
            return
        self.all_connections.discard(conn)
        if conn.registered:
            conn.registered = False
            if self.connections.get(conn.peer_id or b"") is conn:
                del self.connections[conn.peer_id or b""]
            self.pieces.add_availability(conn.remote_has, -1)
            self.pieces.release(conn, list(conn.outstanding))
            conn.outstanding.clear()
            was_unchoked = not conn.am_choking
            self.log.emit("conn_close", peer=conn.peer, addr=conn.addr, reason=reason,
                          up=conn.up, down=conn.down)
            if was_unchoked and self.config.protocol.unchoke_when_free:
                self._request_rechoke("disconnect")
            # Blocks it was fetching are free again: let others pick them up.
            for other in self.connections.values():
                self._fill_requests(other)
        else:
            self.log.emit("conn_close", peer=conn.peer or None, addr=conn.addr, reason=reason,
                          up=0, down=0)

    # --- the two tasks of a connection ------------------------------------------------------

    async def _reader(self, conn: Connection) -> None:
        stream, down_bucket = conn.stream, self.down_bucket
        limited = not down_bucket.unlimited
        while True:
            data = await stream.receive_some(RECEIVE_SIZE)
            if not data:
                raise CloseConnection("remote closed")
            conn.last_received = self.now()
            if limited:
                await down_bucket.take(len(data))
            conn.reader.receive_data(data)
            self._handle_buffered(conn)

    def _handle_buffered(self, conn: Connection) -> None:
        reader = conn.reader
        got_block = False
        while True:
            event = reader.next_event()
            if event is wire.NEED_DATA:
                break
            if type(event) is wire.Piece:
                self._on_block(conn, event)
                got_block = True
            else:
                self._on_message(conn, event)
        if got_block:
            self._fill_requests(conn)

    async def _writer(self, conn: Connection) -> None:
        stream, bucket, pieces = conn.stream, self.up_bucket, self.pieces
        while True:
            if conn.uploads and not conn.am_choking:
                index, begin, length = conn.uploads.popleft()
                if conn.limit is not None:
                    await conn.limit.take(length)
                await bucket.take(length)
                if conn.am_choking:
                    continue
                # Queued control messages ride along with the block: one system call.
                parts = conn.control
                conn.control = []
                parts.append(wire.encode_piece_header(index, begin, length))
                parts.append(pieces.read_block(index, begin, length))
                await stream.send_all(b"".join(parts))
                now = self.now()
                conn.up += length
                conn.up_meter.add(length, now)
                self.uploaded += length
                self.counters[conn.peer][0] += length
                self.counters_dirty = True
                continue
            if conn.control:
                data = b"".join(conn.control)
                conn.control.clear()
                await stream.send_all(data)
                continue
            conn.wakeup = trio.Event()
            with trio.move_on_after(KEEPALIVE_PERIOD) as idle:
                await conn.wakeup.wait()
            if idle.cancelled_caught:
                conn.send(wire.KEEPALIVE_BYTES)

    # --- incoming messages ------------------------------------------------------------------

    def _on_message(self, conn: Connection, message: wire.Message) -> None:
        kind = type(message)
        if kind is wire.Request:
            self._on_request(conn, message)  # type: ignore[arg-type]
        elif kind is wire.Have:
            self._set_has(conn, message.index)  # type: ignore[union-attr]
            self._update_interest(conn)
        elif kind is wire.Unchoke:
            conn.peer_choking = False
            conn.unchoked_us_at = self.now()
            self._fill_requests(conn)
        elif kind is wire.Choke:
            conn.peer_choking = True
            # BEP 3: a choke discards every pending request; those blocks go back to the pool.
            self.pieces.release(conn, list(conn.outstanding))
            conn.cancelled.update(conn.outstanding)
            conn.outstanding.clear()
        elif kind is wire.Interested:
            conn.peer_interested = True
            if self.config.protocol.unchoke_when_free and conn.am_choking:
                self._request_rechoke("interest")
        elif kind is wire.NotInterested:
            conn.peer_interested = False
            if self.config.protocol.unchoke_when_free and not conn.am_choking:
                self._request_rechoke("interest")
        elif kind is wire.Bitfield:
            self._on_bitfield(conn, message.bits)  # type: ignore[union-attr]
        elif kind is wire.Cancel:
            key = (message.index, message.begin, message.length)  # type: ignore[union-attr]
            with contextlib.suppress(ValueError):
                conn.uploads.remove(key)
        elif kind is wire.Unknown and message.msg_id == EXTENDED:  # type: ignore[union-attr]
            self._on_extended(conn, message.payload)  # type: ignore[union-attr]
        # KeepAlive, Port and other extension messages need nothing from us.

    def _on_extended(self, conn: Connection, payload: bytes) -> None:
        """Learn a neighbour's listening port from its BEP 10 handshake; ignore the rest."""
        if not payload or payload[0] != 0:
            return
        try:
            handshake = bencode.decode(payload[1:])
        except BencodeError:
            return  # liberal in what we accept: extensions are optional
        port = handshake.get(b"p") if isinstance(handshake, dict) else None
        if isinstance(port, int) and 0 < port < 65536 and conn.peer_id is not None:
            self.peer_at[(conn.addr.rpartition(":")[0], port)] = conn.peer_id

    def _on_request(self, conn: Connection, request: wire.Request) -> None:
        if not self.pieces.valid_block(request.index, request.begin, request.length):
            raise CloseConnection(f"protocol error: request outside the file ({request.index}, "
                                  f"{request.begin}, {request.length})")
        if not self.pieces.have[request.index]:
            raise CloseConnection(f"protocol error: request for piece {request.index}, "
                                  f"which we do not have")
        if conn.am_choking or len(conn.uploads) >= MAX_QUEUED_REQUESTS:
            return  # BEP 3: requests from a choked peer are dropped
        conn.uploads.append((request.index, request.begin, request.length))
        conn.wakeup.set()

    def _on_bitfield(self, conn: Connection, bits: bytes) -> None:
        # aria2 sends fresh bitfields instead of have messages: treat each as the full set.
        flags = wire.flags_from_bits(bits, self.pieces.num_pieces)
        self.pieces.add_availability(conn.remote_has, -1)
        conn.remote_has = flags
        conn.remote_count = sum(flags)
        self.pieces.add_availability(flags, +1)
        have = self.pieces.have
        conn.interesting = sum(1 for i, f in enumerate(flags) if f and not have[i])
        self._update_interest(conn)

    def _set_has(self, conn: Connection, index: int) -> None:
        if index >= self.pieces.num_pieces:
            raise CloseConnection(f"protocol error: have for piece {index} outside the torrent")
        if conn.remote_has[index]:
            return
        conn.remote_has[index] = 1
        conn.remote_count += 1
        self.pieces.availability[index] += 1
        if not self.pieces.have[index]:
            conn.interesting += 1

    def _update_interest(self, conn: Connection) -> None:
        if self.pieces.complete and conn.remote_count == self.pieces.num_pieces:
            self._close(conn, "both seeds")
            return
        want = conn.interesting > 0
        if want != conn.am_interested:
            conn.am_interested = want
            conn.send(wire.INTERESTED_BYTES if want else wire.NOT_INTERESTED_BYTES)
            if want:
                self._fill_requests(conn)

    def _on_block(self, conn: Connection, piece_msg: wire.Piece) -> None:
        key = (piece_msg.index, piece_msg.begin)
        length = conn.outstanding.pop(key, None)
        if length is None:
            if key in conn.cancelled:
                conn.cancelled.discard(key)
                return  # answer to a request we cancelled (or voided by a choke): harmless
            raise CloseConnection(f"protocol error: piece {key} that nobody asked for")
        block = piece_msg.block
        if len(block) != length:
            raise CloseConnection(f"protocol error: block {key} of {len(block)} bytes, "
                                  f"asked for {length}")
        now = self.now()
        size = len(block)
        conn.down += size
        conn.down_meter.add(size, now)
        conn.last_block_at = now
        self.downloaded += size
        self.counters[conn.peer][1] += size
        self.counters_dirty = True
        if self.pieces.end_game:
            self._cancel_duplicates(conn, key)
        result, done = self.pieces.on_block(conn, conn.peer, piece_msg.index, piece_msg.begin,
                                            block)
        if result == BlockResult.ACCEPTED and done is not None:
            self._on_piece_done(done)

    def _cancel_duplicates(self, conn: Connection, key: tuple[int, int]) -> None:
        piece = self.pieces.active.get(key[0])
        if piece is None:
            return
        for other in list(piece.requesters[key[1] // BLOCK_SIZE]):
            if other is conn:
                continue
            length = other.outstanding.pop(key, None)
            if length is not None:
                other.cancelled.add(key)
                other.send(wire.encode(wire.Cancel(index=key[0], begin=key[1], length=length)))
                self._fill_requests(other)

    def _on_piece_done(self, done: PieceDone) -> None:
        blame = [] if done.ok else list(done.senders)
        self.log.emit("piece", index=done.index, size=done.size, start=round(done.started_at, 4),
                      ok=done.ok, blame=blame, **{"from": list(done.senders)})
        if not done.ok:
            for conn in list(self.connections.values()):
                if conn.peer in done.senders:
                    conn.failed_pieces += 1
                    if conn.failed_pieces >= MAX_FAILED_PIECES:
                        self._close(conn, f"sent {conn.failed_pieces} pieces that failed the hash")
            return
        have_message = wire.encode(wire.Have(index=done.index))
        for conn in list(self.connections.values()):
            if conn.remote_has[done.index]:
                # Have suppression: a neighbour that holds the piece learns nothing it acts on
                # (it never asks us for it, and its interest in us does not change), while in a
                # 40-peer mesh have messages outnumber blocks by far and each costs a send and a
                # receive.
                conn.interesting -= 1
            else:
                conn.send_lazily(have_message)
            self._update_interest(conn)
        if self.pieces.complete:
            self._on_complete()

    def _on_complete(self) -> None:
        self.log.emit("complete", downloaded=self.downloaded,
                      elapsed=round(self.now() - self.start_time, 4))
        self.log.flush()
        self.completed.set()
        self._announce_now.set()
        if self.config.content and self.config.role == "leecher":
            Path(self.config.content).write_bytes(self.pieces.storage)

    # --- requests ---------------------------------------------------------------------------

    def _reclaim_requests(self, conn: Connection) -> None:
        """A neighbour sits on our requests: let the others fetch those blocks."""
        self.pieces.release(conn, list(conn.outstanding))
        conn.cancelled.update(conn.outstanding)
        conn.outstanding.clear()
        for other in self.connections.values():
            if other is not conn:
                self._fill_requests(other)

    def _fill_requests(self, conn: Connection) -> None:
        if conn.peer_choking or not conn.am_interested or not conn.registered:
            return
        now = self.now()
        recent = conn.down_meter.rate(now, window=3.0)
        depth = max(self.config.protocol.pipeline_depth,
                    min(MAX_PIPELINE, math.ceil(recent * PIPELINE_SECONDS / BLOCK_SIZE)))
        wanted = depth - len(conn.outstanding)
        # Top up in batches (half the pipeline at a time), not one request per block received:
        # each request sent alone costs a send here and a wake-up there, as much as the block.
        # A peer with nothing out always asks.
        if wanted <= 0 or (conn.outstanding and wanted < max(2, depth // 2)):
            return
        pieces = self.pieces

        def pick(candidates: list[int]) -> int | None:
            return self.picker.pick(PickView(now=now, candidates=candidates,
                                             availability=pieces.availability,
                                             have_count=pieces.have_count,
                                             num_pieces=pieces.num_pieces))

        requests = pieces.next_requests(conn, conn.remote_has, wanted, conn.outstanding,
                                        pick, now)
        if not requests:
            return
        out = []
        for index, begin, length in requests:
            conn.outstanding[(index, begin)] = length
            conn.cancelled.discard((index, begin))
            out.append(wire.encode(wire.Request(index=index, begin=begin, length=length)))
        conn.send(b"".join(out))

    # --- choking ----------------------------------------------------------------------------

    async def _rechoke_timer(self) -> None:
        """Rechoke every ``rechoke_period`` on an absolute schedule, so periods never drift."""
        period = self.config.protocol.rechoke_period
        deadline = trio.current_time()
        while True:
            self.rechoke("timer")
            deadline += period
            await trio.sleep_until(deadline)

    def _request_rechoke(self, trigger: str) -> None:
        if not self._rechoke_pending and self._nursery is not None:
            self._rechoke_pending = True

            async def soon() -> None:
                await trio.sleep(0)
                self._rechoke_pending = False
                self.rechoke(trigger)

            self._nursery.start_soon(soon)

    def rechoke(self, trigger: str) -> None:
        now = self.now()
        settings = self.config.protocol
        conns = list(self.connections.values())
        views = tuple(
            NeighbourView(
                peer=c.peer, interested=c.peer_interested, am_interested=c.am_interested,
                choking_us=c.peer_choking, am_choking=c.am_choking,
                down_rate=c.down_meter.rate(now), up_rate=c.up_meter.rate(now),
                down_total=c.down, up_total=c.up, snubbed=c.snubbed(now, settings.snub_time),
                is_seed=c.remote_count == self.pieces.num_pieces, connected_at=c.connected_at,
                last_unchoked=c.last_unchoked, current=c.decision)  # type: ignore[arg-type]
            for c in conns)
        view = ChokeView(now=now, round=self.rechoke_round, trigger=trigger,  # type: ignore[arg-type]
                         we_are_seed=self.pieces.complete, neighbours=views, settings=settings,
                         upload_capacity=self.config.upload.rate)
        decisions = self.choker.rechoke(view)
        optimistic_rotated = any(d.rotated for d in decisions.values())
        nbrs = []
        for conn, nview in zip(conns, views, strict=True):
            decision = decisions.get(conn.peer, Decision("choke", "no decision"))
            self._apply(conn, decision, now)
            if trigger != "timer" and decision.kind == nview.current:
                continue  # between timer rechokes only the changes are worth a log line
            nbrs.append({"peer": conn.peer, "down_rate": round(nview.down_rate, 1),
                         "up_rate": round(nview.up_rate, 1), "interested": nview.interested,
                         "choking_us": nview.choking_us, "snubbed": nview.snubbed,
                         "decision": decision.kind, "reason": decision.reason,
                         "rate": decision.rate})
        if trigger != "timer" and not nbrs:
            return  # a triggered rechoke that changed nothing: not a decision worth a line
        self.log.emit("rechoke", round=self.rechoke_round, trigger=trigger,
                      seed=self.pieces.complete, optimistic_rotated=optimistic_rotated, nbrs=nbrs)
        self.rechoke_round += 1

    def _apply(self, conn: Connection, decision: Decision, now: float) -> None:
        conn.decision = decision.kind
        unchoke = decision.kind != "choke"
        if decision.rate is None or not unchoke:
            conn.limit = None
        elif conn.limit is None:
            conn.limit = TokenBucket(decision.rate, RateLimit(rate=decision.rate).effective_burst)
        else:
            conn.limit.rate = decision.rate  # keeps its balance: no burst on a change
        if unchoke and conn.am_choking:
            conn.am_choking = False
            conn.last_unchoked = now
            conn.send(wire.UNCHOKE_BYTES)
        elif not unchoke and not conn.am_choking:
            conn.am_choking = True
            conn.uploads.clear()
            conn.send(wire.CHOKE_BYTES)


def _close_reason(exc: BaseException) -> str | None:
    """The conn_close reason for an exception that ends one connection (None: a real bug)."""
    if isinstance(exc, CloseConnection):
        return exc.reason
    if isinstance(exc, wire.NotBitTorrentError):
        return "handshake failed: not BitTorrent"
    if isinstance(exc, RemoteProtocolError):
        return f"protocol error: {exc}"
    if isinstance(exc, trio.TooSlowError):
        return "handshake failed: timeout"
    if isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError | OSError):
        return "remote closed"
    return None


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
