"""One BitTorrent peer on trio: the I/O shell around the protocol core (peer/session.py).

It listens, announces (peer/tracker_client.py), dials, runs one reader and one writer task per
connection (peer/connection.py), paces uploads and downloads with token buckets, runs the
timers, writes the event log and opens the storage. Every decision is the session's: the shell
tells it what happened and does what it answers. Framing is ``peer.wire``'s, block bookkeeping
``peer.pieces``', choking and piece selection ``peer.policy``'s.

Time: every internal time is ``Node.now()``, trio's clock shifted so that it reads run time (the
orchestrator's t = 0), so tests drive it with MockClock; log lines are stamped from the
system-wide monotonic clock (``RunClock``) so the logs of all processes line up.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import random
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path

import trio

from peer.actions import (
    Action,
    Close,
    Completed,
    Log,
    RechokeSoon,
    Send,
    SetUploadCap,
    UploadQueued,
)
from peer.bucket import WAKE_GRID, WAKE_GRID_WITH_LATENCY, TokenBucket, on_grid
from peer.config import STOP_SIGNALS, PeerConfig, RateLimit
from peer.connection import KEEPALIVE_SWEEP, Connection, close_reason
from peer.delayed import Links, releasing
from peer.dial import connect_tcp
from peer.eventlog import SCHEMA_VERSION, EventLog, RunClock, clock_offset, peer_id_text
from peer.listen import accept_forever, listening_sockets
from peer.metainfo import Metainfo, read_torrent
from peer.pieces import PieceState
from peer.policy import build_choker, build_picker
from peer.policy_types import RechokeTrigger
from peer.session import Session
from peer.storage import open_storage
from peer.tracker_client import Address, AnnounceRequest, AnnounceSchedule, TrackerClient

HANDSHAKE_TIMEOUT = 10.0
DIAL_TIMEOUT = 5.0
FLUSH_DELAY = 0.5
"""Log lines and lazily queued messages (haves) wait at most this long (until the next multiple
of it on the run's clock): the log's lines for the write that bounds what a SIGKILL loses, the
messages for a send to ride along with."""
RETRY_FIRST_DELAY = 1.0
"""Seconds before retrying a failed announce; doubled each failure, up to the interval."""
STOPPED_ANNOUNCE_TIME = 0.5
"""At shutdown the ``stopped`` announce gets this long; the peer leaves either way."""


class Node:
    def __init__(self, config: PeerConfig, *, clock: RunClock | None = None,
                 log: EventLog | None = None) -> None:
        self.config = config
        self.clock = clock or RunClock(config.run_start)
        self.log = log or EventLog(config.log, self.clock)
        self.metainfo: Metainfo = read_torrent(config.torrent)
        rng = random.Random(config.seed)
        choker = build_choker(config.choker, rng.randrange(2**32))
        picker = build_picker(config.picker, rng.randrange(2**32))
        pieces = PieceState(
            piece_length=self.metainfo.piece_length, length=self.metainfo.length,
            piece_hashes=self.metainfo.piece_hashes, storage=open_storage(config, self.metainfo),
            have_all=config.role == "seed")
        self.session = Session(
            peer_id=config.peer_id.encode("latin-1"), info_hash=self.metainfo.info_hash,
            pieces=pieces, settings=config.protocol, upload_capacity=config.upload.rate,
            choker=choker, picker=picker, rng=rng)
        self._wake_grid = WAKE_GRID_WITH_LATENCY if config.delays.active else WAKE_GRID
        """The token buckets' grid step (peer/bucket.py): finer than an emulated link delay."""
        self.up_bucket = TokenBucket(config.upload.rate, config.upload.burst_for(self._wake_grid))
        self.down_bucket = TokenBucket(config.download.rate,
                                       config.download.burst_for(self._wake_grid))
        self.connections: dict[int, Connection] = {}
        self._cids = itertools.count()
        self.listen_port = 0
        self.announce_schedule = AnnounceSchedule(config.protocol)
        self.completed = trio.Event()
        """Set once the download is complete and the content written out."""
        self._time_offset = 0.0
        self._trio_time: Callable[[], float] = trio.current_time
        """trio's clock, bound once the run starts (one call instead of three: a peer reads
        the time for every batch of messages)."""
        self._nursery: trio.Nursery | None = None
        self._rechoke_trigger: RechokeTrigger | None = None
        """The first reason given for the rechoke asked for and not run yet (None: none)."""
        self._rechoke_wanted = trio.Event()
        self._tick_scope: trio.CancelScope | None = None
        self._flush_due: float | None = None
        """When the pending log lines and lazy messages must go out (trio time); None: none."""
        self.log.on_pending = self._flush_soon
        self._dial_queue: list[Address] = []
        """With ``dial_rate``: the latest tracker list's addresses not dialled yet."""
        self._dial_wakeup = trio.Event()
        self._announce_now = trio.Event()
        self._announcer_wakeup = trio.Event()
        """Set when the next announce may be due sooner: the download completed, or neighbours
        were lost below ``wanted_neighbours`` (no polling: an idle peer does not wake for it)."""
        self.tracker_url = config.tracker or self.metainfo.announce
        self._announcing = False
        """Whether we may have announced: a peer stopped before t = 0 says nothing to the
        tracker."""
        self.tracker = TrackerClient(self.tracker_url,
                                     rng=random.Random(f"tracker {config.seed}"),
                                     local_address=config.outgoing_address)
        self.links = Links(config.delays, seed=config.seed) if config.delays.active else None
        """Link delays (peer/delayed.py); None: sends go straight to the sockets."""

    @property
    def pieces(self) -> PieceState:
        return self.session.pieces

    def now(self) -> float:
        return self._trio_time() - self._time_offset

    # --- main -------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> str:
        """Run until a signal, leaving after completion, or cancellation; returns the reason."""
        self._trio_time = trio.lowlevel.current_clock().current_time
        # Preempted between two readings (hundreds of peers starting at once), a peer would
        # otherwise put its grids and its t = 0 that much early.
        run_time_offset, _ = clock_offset(self._trio_time, self.clock.now, rounds=5)
        self._time_offset = -run_time_offset  # trio's time at run time 0
        for bucket in (self.up_bucket, self.down_bucket):
            bucket.set_grid(self._time_offset, self._wake_grid)  # run time 0 on trio's clock
        reason = "cancelled"
        # The receiver opens first and queues what arrives while we start; ``python -m peer``
        # holds the stop signals blocked until here.
        with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    listeners = listening_sockets(self.config.listen_host,
                                                  self.config.listen_port)
                    self.listen_port = listeners[0].getsockname()[1]
                    task_status.started(self.listen_port)
                    stopped_early = await self._until_run_start(signals)
                    self._log_start()
                    if stopped_early:
                        reason = "signal"
                    else:
                        self._announcing = True
                        for sock in listeners:
                            nursery.start_soon(accept_forever, sock, self._refuses_incoming,
                                               self._accept, nursery)
                        for task in (self._ticker, self._rechoke_timer,
                                     self._triggered_rechokes, self._announcer,
                                     self._keep_alives, self._dial_pacer):
                            nursery.start_soon(task)
                        reason = await self._wait_for_exit(signals)
                    nursery.cancel_scope.cancel()
            finally:
                self._nursery = None
                with trio.CancelScope(shield=True):
                    await self._shutdown(reason)
        return reason

    async def _until_run_start(self, signals: AsyncIterator[int]) -> bool:
        """Wait for t = 0 if we were started ahead of it; True if a stop signal came first.

        The orchestrator starts the peers that arrive at t = 0 ahead of it, so that all of them
        arrive at t = 0 rather than one after another over the seconds their start-up takes
        (docs/run-directory.md). Until then a peer only listens: the kernel queues what
        others send it, and nothing is logged or announced."""
        with trio.move_on_at(self._time_offset):
            async for _ in signals:
                return True
        return False

    async def _wait_for_exit(self, signals: AsyncIterator[int]) -> str:
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
        self._act(self.session.close_all("shutdown", self.now()))
        if self._announcing:
            with trio.move_on_after(STOPPED_ANNOUNCE_TIME):
                await self._announce("stopped")
        self._act(self.session.emit_counters(force=True))
        self.log.emit("stop", reason=reason, up=self.session.uploaded,
                      down=self.session.downloaded, **self.pieces.storage.stats())
        self.log.close()

    def _log_start(self) -> None:
        c = self.config
        self.session.started(self.listen_port, self.now())
        self.log.emit(
            "start", schema=SCHEMA_VERSION, name=c.name, group=c.group, peer_id=c.peer_id,
            role=c.role, pid=os.getpid(), info_hash=self.metainfo.info_hash.hex(),
            length=self.metainfo.length, piece_length=self.metainfo.piece_length,
            pieces=self.pieces.num_pieces, listen=f"{c.listen_host}:{self.listen_port}",
            upload={"rate": c.upload.rate, "burst": _finite(self.up_bucket.burst)},
            download={"rate": c.download.rate, "burst": _finite(self.down_bucket.burst)},
            choker={"name": c.choker.name, "params": c.choker.params},
            picker={"name": c.picker.name, "params": c.picker.params},
            protocol=dataclasses.asdict(c.protocol), seed=c.seed, have=self.pieces.have_count,
            delays=dataclasses.asdict(c.delays) if self.links else None,
            storage=self.pieces.storage.kind)
        self.log.flush()

    # --- doing what the session says --------------------------------------------------------

    def _act(self, actions: Sequence[Action]) -> None:
        if not actions:
            return  # what most messages call for
        urgent: list[Connection] = []
        for action in actions:
            if isinstance(action, Send):
                conn = self.connections.get(action.cid)
                if conn is not None:
                    conn.control.append(action.data)
                    if not action.lazy:
                        urgent.append(conn)
                    else:
                        self._flush_soon()
            elif isinstance(action, Log):
                self.log.emit(action.ev, **action.fields)
            elif isinstance(action, UploadQueued):
                conn = self.connections.get(action.cid)
                if conn is not None:
                    conn.wakeup.set()
            elif isinstance(action, Close):
                conn = self.connections.get(action.cid)
                if conn is not None:
                    conn.cancel_scope.cancel()
            elif isinstance(action, SetUploadCap):
                self._set_upload_cap(action.cid, action.rate)
            elif isinstance(action, RechokeSoon):
                self._request_rechoke(action)
            elif isinstance(action, Completed):
                self.log.flush()
                assert self._nursery is not None  # the session only completes while we run
                self._nursery.start_soon(self._finish_download)
        for conn in urgent:  # after the whole list: what one event queued goes in one send
            if conn.control and not conn.cancel_scope.cancel_called:
                conn.flush_control()

    def _set_upload_cap(self, cid: int, rate: float | None) -> None:
        conn = self.connections.get(cid)
        if conn is None:
            return
        if rate is None:
            conn.limit = None
        elif conn.limit is None:
            conn.limit = TokenBucket(rate, RateLimit(rate=rate).burst_for(self._wake_grid))
            conn.limit.set_grid(self._time_offset, self._wake_grid)
        else:
            conn.limit.rate = rate  # keeps its balance: no burst on a change

    async def _finish_download(self) -> None:
        """Write the content out (off the event loop), then let the peer announce and leave."""
        if self.config.content and self.config.role == "leecher":
            await trio.to_thread.run_sync(self.pieces.storage.save, Path(self.config.content))
        self.completed.set()
        self._announce_now.set()
        self._announcer_wakeup.set()

    # --- timers -----------------------------------------------------------------------------

    async def _ticker(self) -> None:
        """The periodic work, in one task: the session's tick every ``counters_period``, and
        the flush of log lines and lazy messages within ``FLUSH_DELAY`` of the first queued.
        With nothing to flush a peer wakes once per ``counters_period``, not every 0.5 s.

        Both fall on a grid of the run's clock, which every peer of the run shares: the peers
        flush at the same instants, so the haves a peer gets from many neighbours arrive
        together and are read in one wake-up of the process, not one each (a wake-up, not the
        message, is what costs: docs/capacity.md)."""
        period = self.config.counters_period
        next_tick = self._next_on_grid(period)
        while True:
            deadline = next_tick if self._flush_due is None else min(next_tick, self._flush_due)
            with trio.CancelScope(deadline=deadline) as self._tick_scope:
                await trio.sleep_forever()
            self._tick_scope = None
            if trio.current_time() >= next_tick:
                next_tick = self._next_on_grid(period)
                self._act(self.session.housekeeping(self.now()))
            if self._flush_due is not None:  # lazy messages wait only once one was queued
                self._flush_due = None
                for conn in self.connections.values():
                    if conn.control and not conn.cancel_scope.cancel_called:
                        conn.flush_control()  # an idle writer is not woken for its haves
            self.log.flush()

    def _next_on_grid(self, step: float, offset: float = 0.0) -> float:
        """trio's time of the next run time ``offset + k * step`` (k whole), strictly after
        now (a tick that woke on its instant must not be due again at once)."""
        now = self._trio_time()
        instant = on_grid(now, self._time_offset + offset, step)
        return instant + step if instant <= now else instant

    def _flush_soon(self) -> None:
        """Something waits to be flushed: the ticker wakes within ``FLUSH_DELAY``, at the next
        multiple of it on the run's clock, shifted onto the token buckets' half steps
        (peer/bucket.py) so that a busy peer's flush falls in a wake-up its buckets cause
        anyway, and the haves it sends reach its neighbours in theirs."""
        if self._flush_due is None:
            try:
                due = self._next_on_grid(FLUSH_DELAY, self._wake_grid / 2)
            except RuntimeError:  # not running yet: the ticker's first pass flushes
                due = -math.inf
            self._flush_due = due
            if self._tick_scope is not None and self._tick_scope.deadline > due:
                self._tick_scope.deadline = due

    async def _rechoke_timer(self) -> None:
        """Rechoke every ``rechoke_period`` on an absolute schedule, so periods never drift."""
        period = self.config.protocol.rechoke_period
        deadline = trio.current_time()
        while True:
            self._act(self.session.rechoke("timer", self.now()))
            deadline += period
            await trio.sleep_until(deadline)

    def _request_rechoke(self, request: RechokeSoon) -> None:
        if self._rechoke_trigger is None:
            self._rechoke_trigger = request.trigger
            self._rechoke_wanted.set()

    async def _triggered_rechokes(self) -> None:
        """Run the rechokes asked for between rounds (``RechokeSoon``), each once the task
        that asked yields: what asks in the meantime (the rest of a batch of messages) joins
        the pending one. One long-lived task rather than a task spawned per rechoke: a spawn
        and its first step cost more than the rechoke's own wake-up (docs/capacity.md)."""
        while True:
            await self._rechoke_wanted.wait()
            self._rechoke_wanted = trio.Event()
            trigger, self._rechoke_trigger = self._rechoke_trigger, None
            assert trigger is not None  # the event is set only with a trigger
            self._act(self.session.rechoke(trigger, self.now()))

    async def _keep_alives(self) -> None:
        """Queue keep-alives on connections silent for ``KEEPALIVE_PERIOD``: one sweep for the
        peer every ``KEEPALIVE_SWEEP`` s, rather than a timeout each time a writer goes idle."""
        while True:
            await trio.sleep(KEEPALIVE_SWEEP)
            now = trio.current_time()
            for conn in self.connections.values():
                conn.keep_alive(now)

    # --- tracker ----------------------------------------------------------------------------

    async def _announcer(self) -> None:
        event = "started"
        delay = RETRY_FIRST_DELAY
        while True:
            peers = await self._announce(event)
            if peers is None:
                # Tracker unreachable or refusing: retry soon, with backoff, same event.
                with trio.move_on_after(delay):
                    await self._announce_now.wait()
                delay = min(delay * 2, self.announce_schedule.interval)
                continue
            delay = RETRY_FIRST_DELAY
            event = ""
            self._dial(peers)
            await self._wait_to_announce(since=self.now())
            if self._announce_now.is_set():
                self._announce_now = trio.Event()
                event = "completed" if self.session.complete else ""

    def neighbour_lost(self) -> None:
        """A connection closed: below ``wanted_neighbours`` the next announce comes early."""
        if len(self.session.neighbours) < self.config.protocol.wanted_neighbours:
            self._announcer_wakeup.set()

    async def _wait_to_announce(self, *, since: float) -> None:
        """Until the next periodic announce is due (early while short of neighbours), or the
        download completes."""
        while not self._announce_now.is_set():
            due = self.announce_schedule.next_announce(since, len(self.session.neighbours))
            wait = due - self.now()
            if wait <= 0:
                return
            self._announcer_wakeup = trio.Event()
            with trio.move_on_after(wait):
                await self._announcer_wakeup.wait()

    async def _announce(self, event: str) -> list[Address] | None:
        session = self.session
        request = AnnounceRequest(
            info_hash=session.info_hash, peer_id=session.peer_id, port=self.listen_port,
            uploaded=session.uploaded, downloaded=session.downloaded, left=session.bytes_left,
            numwant=self.config.protocol.numwant, event=event)
        if self.links is None:
            response, record = await self.tracker.announce(request)
        else:  # UDP: one round trip; HTTP: TCP's handshake, then the request
            response, record = await self.links.tracker_exchange(
                partial(self.tracker.announce, request),
                round_trips=1 if self.tracker_url.startswith("udp:") else 2)
        self.log.emit("announce", **record)
        if response is None or response.peers is None:
            return None
        self.announce_schedule.heard(response)
        return response.peers

    # --- connections ------------------------------------------------------------------------

    def _dial(self, peers: list[Address]) -> None:
        assert self._nursery is not None
        if self.config.protocol.dial_rate is not None:
            self._dial_queue = list(peers)  # the pacer takes them from the latest list
            self._dial_wakeup.set()
            return
        own = (self.config.listen_host, self.listen_port)
        for address in self.session.peers_to_dial(peers, own, self.now()):
            self._nursery.start_soon(self._dial_one, address)

    async def _dial_pacer(self) -> None:
        """With ``dial_rate``: one dial every 1 / ``dial_rate`` s while the latest tracker list
        has an address to dial and there is room; the rest of a list is dropped when there is
        none, as unpaced dialling drops what exceeds the room."""
        rate = self.config.protocol.dial_rate
        if rate is None:
            return
        own = (self.config.listen_host, self.listen_port)
        while True:
            if not self._dial_queue:
                self._dial_wakeup = trio.Event()
                await self._dial_wakeup.wait()
                continue
            chosen = self.session.peers_to_dial(self._dial_queue, own, self.now(), at_most=1)
            if not chosen:
                self._dial_queue.clear()
                continue
            self._dial_queue.remove(chosen[0])
            assert self._nursery is not None
            self._nursery.start_soon(self._dial_one, chosen[0])
            await trio.sleep(1 / rate)

    async def _dial_one(self, address: Address) -> None:
        host, port = address
        try:
            with trio.fail_after(DIAL_TIMEOUT):
                stream = await connect_tcp(host, port, local_address=self.config.outgoing_address)
        except (OSError, trio.TooSlowError):
            self.session.dial_failed(address, self.now())
            return
        finally:
            self.session.dial_ended(address)
        await self._run_connection(stream, f"{host}:{port}", "out")

    def _refuses_incoming(self) -> bool:
        return self.session.refuses_incoming(self.now())

    async def _accept(self, stream: trio.SocketStream) -> None:
        host, port = stream.socket.getpeername()[:2]
        await self._run_connection(stream, f"{host}:{port}", "in")

    async def _run_connection(self, stream: trio.SocketStream, addr: str, direction: str) -> None:
        wrapped = stream if self.links is None else self.links.wrap(stream)
        conn = Connection(next(self._cids), wrapped, addr, direction, self.pieces.num_pieces)
        self.connections[conn.cid] = conn
        reasons: list[str] = []

        async def guarded(task: Callable[[], Awaitable[None]]) -> None:
            # Whichever task ends first (a protocol error, the remote closing) ends both.
            try:
                await task()
            except Exception as exc:
                reason = close_reason(exc)
                if reason is None:
                    raise
                reasons.append(reason)
                conn.cancel_scope.cancel()

        try:
            self._act(self.session.connection_opened(conn.cid, addr, direction, self.now()))
            with conn.cancel_scope:
                async with releasing(conn.stream, guarded):  # the delay line's, if any
                    if self.session.is_open(conn.cid):
                        await guarded(partial(self._open, conn))
                    if not reasons and self.session.is_open(conn.cid):
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(guarded, partial(
                                conn.write, self.session, self.up_bucket, self.now))
                            # The reader runs in this task: one task fewer per connection.
                            await guarded(partial(
                                conn.read, self.session, self.down_bucket, self._act, self.now))
        finally:
            reason = reasons[0] if reasons else "shutdown"
            self._act(self.session.connection_closed(conn.cid, reason, self.now()))
            del self.connections[conn.cid]
            self.neighbour_lost()
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _open(self, conn: Connection) -> None:
        # With link delays an accepted connection answers once the handshake names the
        # neighbour, whose delay it then knows (peer/delayed.py).
        answer_later = self.links is not None and conn.direction == "in"
        if not answer_later:
            await conn.send_now(self.session.our_handshake)
        sent = self.now()
        with trio.fail_after(HANDSHAKE_TIMEOUT):
            handshake = await conn.receive_handshake()
        rtt = self.now() - sent if conn.direction == "out" else None
        delay = None
        if self.links is not None:
            delay = await self.links.handshake(
                conn.stream, handshake.peer_id,
                answer=self.session.our_handshake if answer_later else None)
        self.log.emit("handshake", peer=peer_id_text(handshake.peer_id), addr=conn.addr,
                      dir=conn.direction, rtt=None if rtt is None else round(rtt, 4),
                      delay=delay)
        self._act(self.session.handshake_received(conn.cid, handshake, self.now()))
        if self.session.is_open(conn.cid):
            # Messages that came in the same segment as the handshake.
            conn.deliver_buffered(self.session, self._act, self.now())


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
