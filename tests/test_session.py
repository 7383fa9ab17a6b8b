"""The peer's protocol core (peer/session.py) through its public surface: no sockets, no trio,
explicit times. Each test plays the neighbours by hand and reads what the session asks for."""

from __future__ import annotations

import hashlib
import itertools
import math
import random
import subprocess
import sys
from collections import defaultdict
from typing import Any

import pytest
from peer_helpers import UnchokeAll, peer_id, synthetic_content

from peer import bencode, wire
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
from peer.config import (
    BLOCK_SIZE,
    MAX_QUEUED_REQUESTS,
    REQUEST_TIMEOUT,
    PolicySpec,
    ProtocolSettings,
)
from peer.duplicates import DUPLICATE_GRACE, ESTABLISHED_AGE
from peer.extension import EXTENDED, EXTENSION_BIT
from peer.neighbour import RateMeter
from peer.pieces import PieceState
from peer.policy import ChokeView, Decision, TitForTat, build_choker, build_picker
from peer.session import (
    Session,
)

PIECE = 64 * 1024
NUM = 16
SIZE = NUM * PIECE
BLOCKS_PER_PIECE = PIECE // BLOCK_SIZE
DATA, HASHES = synthetic_content(SIZE, PIECE)
INFO_HASH = hashlib.sha1(b"test torrent").digest()
ME = 5
ALL = bytes([1] * NUM)


class Harness:
    """A session and everything it asked for, sorted by kind and connection."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.sent: dict[int, bytearray] = defaultdict(bytearray)
        self.lazy: dict[int, bytearray] = defaultdict(bytearray)
        self.logs: list[dict[str, Any]] = []
        self.closed: dict[int, str] = {}
        self.other: list[Action] = []
        self.cid_of: dict[int, int] = {}
        """Peer number -> connection id."""
        self._next_cid = 100

    def take(self, actions: Any) -> None:
        for action in actions:
            if isinstance(action, Send):
                (self.lazy if action.lazy else self.sent)[action.cid] += action.data
            elif isinstance(action, Log):
                self.logs.append({"ev": action.ev, **action.fields})
            elif isinstance(action, Close):
                self.closed[action.cid] = action.reason
            else:
                self.other.append(action)

    def open(self, n: int, direction: str = "in", now: float = 0.0) -> int:
        cid = self._next_cid
        self._next_cid += 1
        self.take(self.session.connection_opened(cid, f"127.0.0.1:{7000 + n}", direction, now))
        return cid

    def connect(self, n: int, direction: str = "in", now: float = 0.0,
                reserved: bytes = bytes(8)) -> int:
        """Open a connection to peer ``n`` and complete its handshake."""
        cid = self.open(n, direction, now)
        self.take(self.session.handshake_received(cid, wire.Handshake(
            info_hash=INFO_HASH, peer_id=peer_id(n).encode(), reserved=reserved), now))
        self.cid_of[n] = cid
        return cid

    def deliver(self, cid: int, *messages: wire.Message, now: float = 0.0) -> None:
        """One batch of messages from a connection, as one receive would bring them."""
        for message in messages:
            self.take(self.session.message_received(cid, message, now))
        self.take(self.session.end_of_batch(cid, now))

    def messages(self, cid: int, lazy: bool = False) -> list[wire.Message]:
        """Decode (and drain) what the session queued for a connection."""
        buffer = (self.lazy if lazy else self.sent)[cid]
        reader = wire.WireReader(NUM, expect_handshake=False)
        if buffer:
            reader.receive_data(bytes(buffer))
        buffer.clear()
        out = []
        while not isinstance(event := reader.next_event(), wire.Sentinel):
            out.append(event)
        return out

    def requests(self, cid: int) -> list[wire.Request]:
        return [m for m in self.messages(cid) if isinstance(m, wire.Request)]

    def events(self, ev: str) -> list[dict[str, Any]]:
        return [r for r in self.logs if r["ev"] == ev]

    def answer(self, cid: int, requests: list[wire.Request], now: float,
               data: bytes = DATA) -> None:
        """Send the blocks asked for, with the bytes of ``data``."""
        assert requests, "nothing to answer: the session stopped asking"  # no endless loops
        self.deliver(cid, *[block(r, data) for r in requests], now=now)

    def unchoked_with_everything(self, n: int, now: float = 0.0) -> int:
        cid = self.connect(n, now=now)
        self.deliver(cid, wire.Bitfield(bits=wire.bits_from_flags(ALL)), wire.Unchoke(), now=now)
        return cid


def block(request: wire.Request, data: bytes = DATA) -> wire.Piece:
    start = request.index * PIECE + request.begin
    return wire.Piece(index=request.index, begin=request.begin,
                      block=data[start:start + request.length])


def make_session(*, seed: bool = False, me: int = ME, upload: float | None = None,
                 choker: Any = "tit_for_tat", **settings: Any) -> Harness:
    pieces = PieceState(piece_length=PIECE, length=SIZE, piece_hashes=HASHES,
                        storage=bytearray(DATA) if seed else bytearray(SIZE), have_all=seed)
    policy = build_choker(PolicySpec(name=choker), 1) if isinstance(choker, str) else choker
    session = Session(peer_id=peer_id(me).encode(), info_hash=INFO_HASH, pieces=pieces,
                      settings=ProtocolSettings(**settings), upload_capacity=upload,
                      choker=policy, picker=build_picker(PolicySpec(name="rarest_first"), 2),
                      rng=random.Random(me))
    session.started(6881, 0.0)
    return Harness(session)


# --- RateMeter ---------------------------------------------------------------------------------


def test_rate_meter_early_rate_divides_by_elapsed_time_at_least_one_second():
    meter = RateMeter(window=20, now=0.0)
    meter.add(1000, 0.2)
    assert meter.rate(0.5) == 1000  # not 2000: at least one second
    meter.add(1000, 1.5)
    assert meter.rate(2.0) == 1000
    assert meter.rate(4.0) == 500


def test_rate_meter_steady_rate_over_the_window():
    meter = RateMeter(window=20, now=0.0)
    for second in range(40):
        meter.add(1000, second + 0.5)
    assert meter.rate(40.0) == pytest.approx(1000)
    assert meter.rate(40.0, window=3.0) == pytest.approx(1000)
    # Old bins are dropped as new ones arrive: the window plus one second is kept.
    assert len(meter.bins) <= 22
    assert meter.bins[0][0] >= 40 - 22


def test_rate_meter_forgets_old_bytes_and_sees_new_ones_in_a_short_window():
    meter = RateMeter(window=20, now=0.0)
    meter.add(20_000, 0.5)
    assert meter.rate(10.0) == 2000
    assert meter.rate(30.0) == 0  # long gone
    meter.add(6000, 30.5)
    assert meter.rate(31.0, window=3.0) == 2000
    assert meter.rate(31.0) == 300


# --- handshakes and the neighbour cap ----------------------------------------------------------


def test_a_seed_accepts_a_handshake_and_answers_bitfield_and_listening_port():
    h = make_session(seed=True)
    cid = h.connect(1, reserved=bytes([0, 0, 0, 0, 0, EXTENSION_BIT, 0, 0]))
    bitfield, extended = h.messages(cid)
    assert bitfield == wire.Bitfield(bits=wire.bits_from_flags(ALL))
    assert isinstance(extended, wire.Unknown) and extended.msg_id == EXTENDED
    assert bencode.decode(extended.payload[1:])[b"p"] == 6881
    (opened,) = h.events("conn_open")
    assert opened == {"ev": "conn_open", "peer": peer_id(1), "addr": "127.0.0.1:7001", "dir": "in"}
    assert h.session.is_registered(cid) and h.session.neighbours[peer_id(1).encode()]


def test_a_leecher_with_nothing_sends_nothing_and_no_extension_handshake_unasked():
    h = make_session()
    cid = h.connect(1)
    assert h.messages(cid) == [] and h.session.is_registered(cid)


@pytest.mark.parametrize(("handshake", "reason"), [
    (wire.Handshake(info_hash=bytes(20), peer_id=peer_id(1).encode()), "wrong info_hash"),
    (wire.Handshake(info_hash=INFO_HASH, peer_id=peer_id(ME).encode()), "self"),
])
def test_a_wrong_torrent_or_ourselves_is_closed_without_a_peer_name(handshake, reason):
    h = make_session()
    cid = h.open(1)
    h.take(h.session.handshake_received(cid, handshake, 0.0))
    assert h.closed == {cid: reason} and not h.session.is_open(cid)
    (close,) = h.events("conn_close")
    assert (close["peer"], close["reason"], close["up"], close["down"]) == (None, reason, 0, 0)


def test_over_the_neighbour_cap_an_accepted_connection_is_refused_and_counted():
    h = make_session(max_neighbours=2)
    h.open(1), h.open(2)
    refused = [h.open(n) for n in (3, 4, 5)]
    assert h.closed == {cid: "neighbour cap" for cid in refused}
    assert h.session.connection_count == 2
    assert h.events("conn_close") == []  # counted, not one line each
    h.take(h.session.emit_counters())
    (counters,) = h.events("counters")
    assert counters["refused"] == {"neighbour cap": 3}
    assert list(counters)[-1] == "n"  # the analysis reads the neighbour map last on its line
    h.open(6, direction="out")  # a dial was counted against the cap before it started
    assert h.session.connection_count == 3


IDLE = ProtocolSettings().idle_drop_after


def test_at_the_cap_a_new_peer_takes_the_place_of_the_longest_idle_neighbour():
    h = make_session(max_neighbours=3)
    busy = h.connect(1, now=0.0)
    h.deliver(busy, wire.Interested(), now=0.0)  # interested in us: never idle
    older = h.connect(2, now=0.0)
    newer = h.connect(3, now=5.0)
    too_soon = h.open(4, now=IDLE - 1)  # nobody idle for idle_drop_after yet
    assert h.closed == {too_soon: "neighbour cap"}
    h.connect(4, now=IDLE + 10)
    assert h.closed[older] == "idle at the neighbour cap"
    assert h.session.is_registered(h.cid_of[4]) and h.session.is_registered(newer)
    assert h.session.is_registered(busy) and h.session.connection_count == 3


def test_a_flood_at_the_cap_gets_only_as_many_places_as_there_are_idle_neighbours():
    h = make_session(max_neighbours=3)
    for n in (1, 2):
        h.deliver(h.connect(n), wire.Interested(), now=0.0)
    h.connect(3, now=0.0)  # the only idle one
    now = IDLE + 1
    waiting = h.open(10, now=now)  # may take the idle one's place at its handshake
    flood = [h.open(n, now=now) for n in range(11, 20)]
    assert h.closed == {cid: "neighbour cap" for cid in flood}
    assert h.session.is_open(waiting)
    h.take(h.session.emit_counters())
    assert h.events("counters")[-1]["refused"] == {"neighbour cap": 9}


def test_a_connection_let_in_for_an_idle_neighbour_is_refused_if_none_is_idle_by_then():
    h = make_session(max_neighbours=2)
    h.deliver(h.connect(1), wire.Interested(), now=0.0)
    idle = h.connect(2)
    waiting = h.open(3, now=IDLE + 1)
    h.deliver(idle, wire.Interested(), now=IDLE + 2)  # no longer idle
    h.take(h.session.handshake_received(waiting, wire.Handshake(
        info_hash=INFO_HASH, peer_id=peer_id(3).encode()), IDLE + 3))
    assert h.closed == {waiting: "neighbour cap"} and h.session.is_registered(idle)


# Both sides keep the connection dialled by the smaller peer id, so whichever side decides
# first, exactly one connection survives. The session is peer 5.
DUPLICATES = [
    # (remote peer, existing direction, new direction, which survives)
    (9, "in", "out", "new"),  # we are smaller: keep ours (the new, outgoing one)
    (9, "out", "in", "existing"),
    (2, "out", "in", "new"),  # they are smaller: keep theirs (the new, incoming one)
    (2, "in", "out", "existing"),
    (9, "in", "in", "existing"),  # same direction twice: a second dial, never replace
    (2, "out", "out", "existing"),
]


@pytest.mark.parametrize(("remote", "old_dir", "new_dir", "survivor"), DUPLICATES)
def test_duplicate_connection_tie_break(remote, old_dir, new_dir, survivor):
    h = make_session()
    existing = h.connect(remote, direction=old_dir)
    now = ESTABLISHED_AGE - 0.1
    new = h.connect(remote, direction=new_dir, now=now)
    loser, winner = (new, existing) if survivor == "existing" else (existing, new)
    if old_dir != new_dir:
        # Crossed dials: the loser waits as a spare in case the remote keeps it instead.
        assert h.closed == {} and h.session.is_open(loser)
        h.take(h.session.housekeeping(now + DUPLICATE_GRACE - 0.1))
        assert h.closed == {}
        h.take(h.session.housekeeping(now + DUPLICATE_GRACE))
    assert h.closed == {loser: "duplicate"}
    assert h.session.is_registered(winner) and not h.session.is_open(loser)
    assert h.session.neighbours[peer_id(remote).encode()] is h.session.neighbour(winner)
    (close,) = h.events("conn_close")
    assert (close["peer"], close["reason"]) == (peer_id(remote), "duplicate")


def test_a_remote_that_keeps_the_other_connection_of_a_crossed_pair_keeps_the_neighbour():
    # We (peer 5) dial peer 9 as it dials us. Our rule keeps ours; a remote with another rule
    # keeps its own, sends its bitfield there and closes ours: the spare takes over.
    h = make_session()
    ours = h.connect(9, direction="out")
    theirs = h.connect(9, direction="in", now=0.1)
    h.deliver(theirs, wire.Bitfield(bits=wire.bits_from_flags(ALL)), wire.Unchoke(), now=0.2)
    assert h.messages(theirs) == [] and not h.session.is_registered(theirs)
    h.take(h.session.connection_closed(ours, "remote closed", 0.3))
    assert h.session.is_registered(theirs)
    sent = h.messages(theirs)
    assert sent[0] == wire.Interested() and any(isinstance(m, wire.Request) for m in sent)
    assert h.session.pieces.availability == [1] * NUM
    assert [o["dir"] for o in h.events("conn_open")] == ["out", "in"]
    h.take(h.session.housekeeping(0.3 + DUPLICATE_GRACE))
    assert theirs not in h.closed


def test_a_neighbour_set_aside_for_a_crossed_duplicate_comes_back_if_the_other_closes():
    # Peer 2 is smaller: both ends keep the connection it dialled, so our established one is set
    # aside (logged as closed); the remote closes the new one instead: ours comes back.
    h = make_session()
    ours = h.connect(2, direction="out", now=0.0)
    h.deliver(ours, wire.Bitfield(bits=wire.bits_from_flags(ALL)), wire.Unchoke(), now=0.0)
    first = h.requests(ours)
    theirs = h.connect(2, direction="in", now=0.5)
    assert h.closed == {} and h.session.is_registered(theirs)
    assert h.events("conn_close")[-1]["reason"] == "duplicate"
    assert h.session.neighbour(ours).outstanding == {}  # its requests went back to the pool
    h.answer(ours, first[:1], now=0.6)  # an answer crossing the set-aside is held
    h.take(h.session.connection_closed(theirs, "remote closed", 0.7))
    assert h.session.is_registered(ours) and ours not in h.closed
    assert h.session.pieces.availability == [1] * NUM
    again = h.requests(ours)
    assert again and {(r.index, r.begin) for r in again} >= {(r.index, r.begin) for r in first[1:]}
    h.take(h.session.housekeeping(0.7 + DUPLICATE_GRACE))
    assert ours not in h.closed


def test_a_spare_closed_while_its_held_messages_are_replayed_takes_no_more_of_them():
    h = make_session(seed=True)
    ours = h.connect(9, direction="out")
    theirs = h.connect(9, direction="in", now=0.1)
    everything = wire.Bitfield(bits=wire.bits_from_flags(ALL))
    h.deliver(theirs, everything, everything, now=0.2)  # aria2 repeats its bitfield
    h.take(h.session.connection_closed(ours, "remote closed", 0.3))
    assert h.closed == {theirs: "both seeds"}
    assert h.session.pieces.availability == [0] * NUM


@pytest.mark.parametrize("remote", [2, 9])
@pytest.mark.parametrize("grace_over", [False, True])
def test_each_connection_of_a_crossed_pair_is_logged_closed_once(remote, grace_over):
    h = make_session()
    h.connect(remote, direction="out", now=0.0)
    h.connect(remote, direction="in", now=0.5)
    if grace_over:
        h.take(h.session.housekeeping(0.5 + DUPLICATE_GRACE))
    h.take(h.session.close_all("shutdown", 10.0))
    reasons = sorted(c["reason"] for c in h.events("conn_close"))
    assert reasons == ["duplicate", "shutdown"] and h.session.connection_count == 0


def test_an_established_connection_is_never_replaced_by_a_duplicate():
    h = make_session()
    existing = h.connect(9, direction="in")
    new = h.connect(9, direction="out", now=ESTABLISHED_AGE)  # would win were it not for age
    assert h.closed == {new: "duplicate"} and h.session.is_registered(existing)


# --- interest and the request pipeline ---------------------------------------------------------


def test_requests_pipeline_deepen_with_the_measured_rate_and_a_choke_voids_them():
    h = make_session(request_queue_time=0.25)  # a quarter second of the rate stays requested
    cid = h.connect(1)
    h.deliver(cid, wire.Bitfield(bits=wire.bits_from_flags(ALL)))
    assert h.messages(cid) == [wire.Interested()]  # interested at once; no requests while choked
    h.deliver(cid, wire.Unchoke())
    requests = h.requests(cid)
    assert len(requests) == ProtocolSettings().pipeline_depth
    assert all(r.length == BLOCK_SIZE for r in requests)
    # Strict priority: whole pieces, one after another.
    assert len({r.index for r in requests}) == -(-len(requests) // BLOCKS_PER_PIECE)
    # Half the file in the first second: a quarter second of that rate is 8 blocks in flight.
    while h.session.downloaded < SIZE // 2:
        h.answer(cid, requests, now=0.5)
        requests = h.requests(cid)
    depth = math.ceil(h.session.downloaded / BLOCK_SIZE / 4)
    assert depth > ProtocolSettings().pipeline_depth
    assert len(requests) == len(h.session.neighbour(cid).outstanding) == depth
    h.deliver(cid, wire.Choke(), now=0.6)
    assert h.session.neighbour(cid).outstanding == {}
    assert h.session.pieces.free_in_active == depth  # back in the pool
    h.answer(cid, requests, now=0.7)  # late answers to voided requests are harmless
    assert not h.closed


def test_blocks_verify_a_piece_and_only_neighbours_without_it_hear_of_it():
    h = make_session()
    sender = h.unchoked_with_everything(1)
    requests = h.requests(sender)
    index = requests[0].index
    lacks = h.connect(2)
    holds = h.connect(3)  # holds only the piece being fetched: we want it until we have it
    h.deliver(holds, wire.Bitfield(bits=wire.bits_from_indices([index], NUM)))
    assert h.messages(holds) == [wire.Interested()]
    while not h.events("piece"):
        h.answer(sender, [r for r in requests if r.index == index], now=1.0)
        requests = h.requests(sender) + [r for r in requests if r.index != index]
    (piece,) = h.events("piece")
    assert (piece["index"], piece["ok"], piece["from"], piece["size"], piece["blame"]) == (
        index, True, [peer_id(1)], PIECE, [])
    assert h.session.pieces.have[index]
    assert h.messages(lacks, lazy=True) == [wire.Have(index=index)]  # waits for a flush
    assert h.messages(lacks) == []
    # Have suppression: the holder learns nothing it would act on, but we lose interest in it.
    assert h.messages(holds, lazy=True) == []
    assert h.messages(holds) == [wire.NotInterested()]
    assert h.session.counters.per_peer[peer_id(1)] == [0, PIECE]


def test_a_block_nobody_asked_for_or_of_the_wrong_size_closes_the_connection():
    h = make_session()
    cid = h.unchoked_with_everything(1)
    request = h.requests(cid)[0]
    h.deliver(cid, wire.Piece(index=request.index, begin=request.begin, block=b"x"))
    assert h.closed == {cid: f"protocol error: block {(request.index, request.begin)} of 1 "
                              f"bytes, asked for {BLOCK_SIZE}"}
    other = h.unchoked_with_everything(2)
    h.deliver(other, wire.Piece(index=NUM - 1, begin=BLOCK_SIZE, block=b"x"))
    assert h.closed[other] == f"protocol error: piece {(NUM - 1, BLOCK_SIZE)} that nobody asked for"
    assert h.session.downloaded == 0
    assert h.session.pieces.availability == [0] * NUM  # both forgotten


def test_messages_after_a_fatal_one_in_the_same_batch_are_ignored():
    h = make_session()
    cid = h.connect(1)
    h.deliver(cid, wire.Piece(index=0, begin=0, block=b"x"), wire.Have(index=3))
    assert cid in h.closed and h.session.pieces.availability[3] == 0


@pytest.mark.parametrize("end_game", ["idle", "eager"])
def test_end_game_cancels_the_duplicate_and_does_not_ask_for_it_again(end_game):
    h = make_session(end_game=end_game)
    a = h.unchoked_with_everything(1)
    # Answer A until every block of the file has been requested from someone: the end game.
    requests = h.requests(a)
    while not h.session.pieces.end_game:
        h.answer(a, requests[:-1], now=0.5)
        requests = requests[-1:] + h.requests(a)
    b = h.unchoked_with_everything(2, now=0.5)
    duplicates = h.requests(b)
    assert duplicates and all((r.index, r.begin) in h.session.neighbour(a).outstanding
                              for r in duplicates)
    # idle: one duplicate at a time (libtorrent); eager: B's whole pipeline (mainline).
    assert (len(duplicates) == 1) == (end_game == "idle")
    first = duplicates[0]
    h.answer(a, [first], now=0.6)
    after = h.messages(b)
    assert wire.Cancel(index=first.index, begin=first.begin, length=first.length) in after
    assert (first.index, first.begin) not in h.session.neighbour(b).outstanding
    refill = [(m.index, m.begin) for m in after if isinstance(m, wire.Request)]
    assert (first.index, first.begin) not in refill
    if end_game == "idle":  # its one duplicate cancelled, B is idle again: the next one
        assert len(refill) == 1
    h.answer(b, [first], now=0.7)  # its answer crossed our cancel: harmless
    assert b not in h.closed


def lie(data: bytes = DATA) -> bytes:
    """The content with one byte flipped in every block: what a lying peer sends."""
    wrong = bytearray(data)
    for begin in range(0, len(wrong), BLOCK_SIZE):
        wrong[begin] ^= 0xFF
    return bytes(wrong)


def test_a_peer_that_sent_all_of_a_failed_piece_is_banned_for_the_rest_of_the_run():
    h = make_session()
    liar = h.connect(1, direction="out")  # dialled: we know the address it listens on
    h.deliver(liar, wire.Bitfield(bits=wire.bits_from_flags(ALL)), wire.Unchoke(), now=0.0)
    requests = h.requests(liar)
    whole = [r for r in requests if r.index == requests[0].index]
    assert len(whole) == BLOCKS_PER_PIECE
    h.answer(liar, whole, now=1.0, data=lie())
    (piece,) = h.events("piece")
    assert (piece["ok"], piece["blame"], piece["from"]) == (False, [peer_id(1)], [peer_id(1)])
    (ban,) = h.events("ban")
    assert ban == {"ev": "ban", "peer": peer_id(1), "addrs": ["127.0.0.1:7001"],
                   "reason": f"sent all of piece {whole[0].index}, which failed its hash",
                   "piece": whole[0].index, "blocks": [0, 1, 2, 3]}
    assert h.closed == {liar: "banned"} and h.session.pieces.availability == [0] * NUM
    # Never again: not dialled, its handshakes refused (counted), from any address.
    tracker_list = [("127.0.0.1", 7001), ("127.0.0.1", 7002)]
    assert h.session.peers_to_dial(list(tracker_list), own=("127.0.0.1", 6881), now=0.0) == [
        ("127.0.0.1", 7002)]
    again = h.connect(1, direction="in", now=50.0)
    assert h.closed[again] == "banned" and not h.session.neighbours
    assert [c["reason"] for c in h.events("conn_close")] == ["banned"]
    h.take(h.session.emit_counters())
    assert h.events("counters")[-1]["refused"] == {"banned": 1}


def fail_a_shared_piece(h: Harness) -> tuple[int, int, int, list[int]]:
    """Peers 1 (a liar) and 2 (honest) each send some blocks of one piece, which fails.
    Returns the two connections, the piece and the liar's blocks of it."""
    liar = h.unchoked_with_everything(1)
    honest = h.unchoked_with_everything(2)
    to_liar, to_honest = h.requests(liar), h.requests(honest)
    (shared,) = {r.index for r in to_liar} & {r.index for r in to_honest}
    h.answer(liar, [r for r in to_liar if r.index == shared], now=1.0, data=lie())
    h.answer(honest, [r for r in to_honest if r.index == shared], now=1.0)
    return liar, honest, shared, sorted(r.begin // BLOCK_SIZE for r in to_liar
                                        if r.index == shared)


def fetch_until_verified(h: Harness, cid: int, index: int) -> None:
    while not any(p["index"] == index and p["ok"] for p in h.events("piece")):
        h.answer(cid, h.requests(cid), now=2.0)


def test_smart_ban_strikes_exactly_the_senders_of_the_blocks_that_were_wrong():
    h = make_session()
    liar, honest, shared, liar_blocks = fail_a_shared_piece(h)
    (failed,) = h.events("piece")
    assert (failed["index"], failed["ok"], failed["blame"]) == (shared, False, [])
    assert sorted(failed["from"]) == [peer_id(1), peer_id(2)]
    assert h.closed == {} and h.events("ban") == []  # no evidence yet of who lied
    # Fetched again, from the honest peer alone this time, it verifies: compare the blocks.
    fetch_until_verified(h, honest, shared)
    (ban,) = h.events("ban")
    assert (ban["peer"], ban["piece"], ban["blocks"]) == (peer_id(1), shared, liar_blocks)
    assert h.closed == {liar: "banned"} and h.session.is_registered(honest)
    assert all(peer_id(2) not in p["blame"] for p in h.events("piece"))


def test_a_liar_is_banned_even_after_it_left():
    h = make_session()
    liar, honest, shared, _ = fail_a_shared_piece(h)
    h.take(h.session.connection_closed(liar, "remote closed", 1.5))
    fetch_until_verified(h, honest, shared)
    assert [b["peer"] for b in h.events("ban")] == [peer_id(1)]
    assert h.session.is_registered(honest)
    back = h.connect(1, now=3.0)
    assert h.closed == {back: "banned"}


def test_a_neighbour_sitting_on_requests_loses_them_to_the_others():
    h = make_session()
    slow = h.unchoked_with_everything(1, now=0.0)
    taken = {(r.index, r.begin) for r in h.requests(slow)}
    fast = h.unchoked_with_everything(2, now=0.0)
    h.answer(fast, h.requests(fast), now=10.0)
    h.take(h.session.housekeeping(REQUEST_TIMEOUT))
    assert len(h.session.neighbour(slow).outstanding) == len(taken)  # exactly the timeout: not yet
    h.take(h.session.housekeeping(REQUEST_TIMEOUT + 0.5))
    assert h.session.neighbour(slow).outstanding == {}
    assert h.session.neighbour(fast).outstanding  # it sent 10 s ago: keeps its requests
    # Blocks of started pieces come first, so the next refill of the fast one takes them.
    h.answer(fast, h.requests(fast), now=16.0)
    assert taken <= {(r.index, r.begin) for r in h.requests(fast)}
    assert not h.closed


def test_a_silent_connection_is_closed_as_stalled():
    h = make_session(seed=True, stall_timeout=30.0)
    quiet = h.connect(1)
    talker = h.connect(2)
    h.session.bytes_received(talker, 20.0)
    h.take(h.session.housekeeping(30.5))
    assert h.closed == {quiet: "stalled"}


# --- uploads -----------------------------------------------------------------------------------


def test_requests_are_checked_dropped_while_choked_and_queued_while_unchoked():
    h = make_session(seed=True, choker=UnchokeAll())
    cid = h.connect(1)
    request = wire.Request(index=0, begin=0, length=BLOCK_SIZE)
    h.deliver(cid, request)
    assert h.session.next_upload(cid) is None  # BEP 3: a choked peer's requests are dropped
    h.deliver(cid, wire.Interested())
    h.take(h.session.rechoke("timer", 0.0))
    assert h.messages(cid)[-1] == wire.Unchoke()
    h.deliver(cid, request, wire.Request(index=0, begin=BLOCK_SIZE, length=BLOCK_SIZE),
              wire.Cancel(index=0, begin=BLOCK_SIZE, length=BLOCK_SIZE))
    assert UploadQueued(cid) in h.other
    assert h.session.next_upload(cid) == (0, 0, BLOCK_SIZE)
    assert h.session.next_upload(cid) is None  # the second was cancelled
    h.session.block_sent(cid, BLOCK_SIZE, 1.0)
    assert h.session.uploaded == BLOCK_SIZE
    assert h.session.counters.per_peer[peer_id(1)] == [BLOCK_SIZE, 0]
    h.deliver(cid, wire.Request(index=0, begin=PIECE, length=BLOCK_SIZE))
    assert h.closed == {cid: "protocol error: request outside the file (0, 65536, 16384)"}


def test_a_request_for_a_piece_we_lack_closes_and_the_queue_is_bounded():
    h = make_session(choker=UnchokeAll())
    cid = h.connect(1)
    h.deliver(cid, wire.Interested())
    h.take(h.session.rechoke("timer", 0.0))
    h.deliver(cid, wire.Request(index=0, begin=0, length=BLOCK_SIZE))
    assert h.closed == {cid: "protocol error: request for piece 0, which we do not have"}
    seed = make_session(seed=True, choker=UnchokeAll())
    cid = seed.connect(1)
    seed.deliver(cid, wire.Interested())
    seed.take(seed.session.rechoke("timer", 0.0))
    request = wire.Request(index=0, begin=0, length=BLOCK_SIZE)
    seed.deliver(cid, *[request] * (MAX_QUEUED_REQUESTS + 10))
    assert len(seed.other) == MAX_QUEUED_REQUESTS  # one UploadQueued per queued request


# --- choking -----------------------------------------------------------------------------------


def test_timer_rechokes_rotate_the_optimistic_unchoke_every_30_s_and_act_once():
    # Four neighbours we want nothing from hold the regular slots (they are never snubbing);
    # four that unchoked us and never sent are snubbing, so only an optimistic unchoke is left
    # for them, and it must change only every optimistic_period.
    h = make_session(snub_time=5.0)
    steady = [h.connect(n) for n in range(10, 14)]
    snubbing = [h.unchoked_with_everything(n) for n in range(20, 24)]
    bored = h.connect(30)
    for cid in steady + snubbing:
        h.deliver(cid, wire.Interested())
    times = [10.0 * k for k in range(1, 11)]
    for t in times:
        h.take(h.session.rechoke("timer", t))
    rechokes = h.events("rechoke")
    assert [r["round"] for r in rechokes] == list(range(10))
    assert [t for t, r in zip(times, rechokes, strict=True) if r["optimistic_rotated"]] == [
        10.0, 40.0, 70.0, 100.0]
    optimistic = []
    for r in rechokes:
        decisions = {n["peer"]: n for n in r["nbrs"]}
        assert decisions[peer_id(30)]["reason"] == "not interested"
        assert {p for p, n in decisions.items() if n["decision"] == "regular"} == {
            peer_id(n) for n in range(10, 14)}
        (opt,) = [p for p, n in decisions.items() if n["decision"] == "optimistic"]
        optimistic.append(opt)
    assert [len(set(optimistic[k:k + 3])) for k in (0, 3, 6)] == [1, 1, 1]
    assert h.messages(bored) == []
    for cid in steady:  # unchoked once and never choked
        assert h.messages(cid) == [wire.Unchoke()]
    for cid in snubbing:  # every change of decision is sent once
        states = [m for m in h.messages(cid) if not isinstance(m, wire.Request)]
        assert all(type(a) is not type(b) for a, b in itertools.pairwise(states))


def test_the_fastest_senders_get_the_regular_slots():
    h = make_session()
    rates = {}
    for n in range(10, 16):
        cid = h.unchoked_with_everything(n)
        h.deliver(cid, wire.Interested())
        requests = h.requests(cid)
        if n > 10:
            h.answer(cid, requests[:n - 10], now=0.5)  # peer n sends n - 10 blocks
        rates[peer_id(n)] = (n - 10) * BLOCK_SIZE
    h.take(h.session.rechoke("timer", 1.0))
    (rechoke,) = h.events("rechoke")
    decisions = {n["peer"]: n for n in rechoke["nbrs"]}
    assert {p for p, n in decisions.items() if n["decision"] == "regular"} == {
        peer_id(n) for n in (12, 13, 14, 15)}
    assert decisions[peer_id(15)]["reason"] == "download rate rank 1"
    assert [decisions[peer_id(n)]["down_rate"] for n in range(10, 16)] == [
        rates[peer_id(n)] for n in range(10, 16)]
    assert decisions[peer_id(10)]["choking_us"] is False


def test_snubbing_after_snub_time_without_a_block():
    h = make_session(snub_time=60.0, optimistic_slots=0)
    cid = h.unchoked_with_everything(1)  # it unchoked us at t = 0, and never sends
    h.deliver(cid, wire.Interested())
    h.take(h.session.rechoke("timer", 60.0))  # exactly snub_time is not yet snubbing
    h.take(h.session.rechoke("timer", 60.5))
    first, second = (r["nbrs"][0] for r in h.events("rechoke"))
    assert (first["snubbed"], first["decision"]) == (False, "regular")
    assert (second["snubbed"], second["decision"], second["reason"]) == (True, "choke", "snubbed")


def test_interest_asks_for_a_rechoke_that_logs_only_what_changed():
    h = make_session(seed=True, unchoke_when_free=True)
    idle = h.connect(1)
    h.take(h.session.rechoke("timer", 0.0))
    keen = h.connect(2)
    h.deliver(keen, wire.Interested(), now=1.0)
    assert h.other == [RechokeSoon("interest")]
    h.take(h.session.rechoke("interest", 1.0))
    triggered = h.events("rechoke")[-1]
    assert triggered["trigger"] == "interest"
    assert [(n["peer"], n["decision"], n["reason"]) for n in triggered["nbrs"]] == [
        (peer_id(2), "regular", "free slot")]
    assert h.messages(keen)[-1] == wire.Unchoke() and not h.messages(idle)[1:]
    lines = len(h.events("rechoke"))
    h.take(h.session.rechoke("interest", 1.5))  # nothing changes: no line
    assert len(h.events("rechoke")) == lines
    # An unchoked neighbour leaving asks for a rechoke too.
    h.take(h.session.connection_closed(keen, "remote closed", 2.0))
    assert h.other[-1] == RechokeSoon("disconnect")


class CappedUnchoke:
    """Unchokes everyone interested at a per-neighbour upload cap that it changes each call."""

    def __init__(self) -> None:
        self.rates = iter([1000.0, 1000.0, 2000.0])

    def rechoke(self, view: ChokeView) -> dict[str, Decision]:
        rate = next(self.rates, None)
        return {n.peer: Decision("regular" if rate else "choke", "capped", rate)
                for n in view.neighbours}


def test_a_choker_rate_caps_the_upload_only_when_it_changes():
    h = make_session(seed=True, choker=CappedUnchoke())
    cid = h.connect(1)
    for t in range(4):
        h.take(h.session.rechoke("timer", float(t)))
    assert [a for a in h.other if isinstance(a, SetUploadCap)] == [
        SetUploadCap(cid, 1000.0), SetUploadCap(cid, 2000.0), SetUploadCap(cid, None)]
    assert [r["nbrs"][0]["rate"] for r in h.events("rechoke")] == [1000.0, 1000.0, 2000.0, None]


def test_a_decision_marked_rotated_sets_optimistic_rotated():
    class Rotates:
        def rechoke(self, view: ChokeView) -> dict[str, Decision]:
            return {n.peer: Decision("optimistic", "no word of it here", rotated=True)
                    for n in view.neighbours}

    h = make_session(choker=Rotates())
    h.connect(1)
    h.take(h.session.rechoke("timer", 0.0))
    (rechoke,) = h.events("rechoke")
    assert rechoke["optimistic_rotated"] is True


# --- counters, completion, closing, dialling, announcing ---------------------------------------


def test_counters_list_only_neighbours_whose_counts_moved():
    h = make_session()
    a = h.unchoked_with_everything(1)
    h.unchoked_with_everything(2)
    h.take(h.session.housekeeping(1.0))
    h.answer(a, h.requests(a)[:1], now=1.5)
    h.take(h.session.housekeeping(2.0))
    h.take(h.session.housekeeping(3.0))  # nothing moved: no line
    first, second = h.events("counters")
    assert first["n"] == {peer_id(1): [0, 0], peer_id(2): [0, 0]}
    assert second == {"ev": "counters", "up": 0, "down": BLOCK_SIZE,
                      "n": {peer_id(1): [0, BLOCK_SIZE]}}
    h.take(h.session.emit_counters(force=True))
    assert h.events("counters")[-1]["n"] == {}


def test_the_last_piece_completes_the_download_and_seeds_part():
    h = make_session()
    h.session.started(6881, 2.0)
    cid = h.unchoked_with_everything(1)
    other_seed = h.connect(2)
    h.deliver(other_seed, wire.Bitfield(bits=wire.bits_from_flags(ALL)))
    requests = h.requests(cid)
    t = 2.0
    while requests:
        t += 0.25
        h.answer(cid, requests, now=t)
        requests = h.requests(cid)
    assert h.session.complete and bytes(h.session.pieces.storage) == DATA
    (complete,) = h.events("complete")
    assert complete["downloaded"] == SIZE and complete["elapsed"] == t - 2.0
    assert Completed() in h.other
    assert h.closed == {cid: "both seeds", other_seed: "both seeds"}
    assert h.session.bytes_left == 0


def test_a_closed_neighbour_is_forgotten_and_its_blocks_go_to_others():
    h = make_session()
    gone = h.unchoked_with_everything(1)
    asked = {(r.index, r.begin) for r in h.requests(gone)}
    stays = h.unchoked_with_everything(2)
    h.answer(gone, [wire.Request(index=i, begin=b, length=BLOCK_SIZE)
                    for i, b in sorted(asked)[:1]], now=0.5)
    h.take(h.session.connection_closed(gone, "remote closed", 1.0))
    (close,) = h.events("conn_close")
    assert close == {"ev": "conn_close", "peer": peer_id(1), "addr": "127.0.0.1:7001",
                     "reason": "remote closed", "up": 0, "down": BLOCK_SIZE}
    assert h.session.pieces.availability == [1] * NUM
    h.answer(stays, h.requests(stays), now=1.5)
    assert asked - {sorted(asked)[0]} <= {(r.index, r.begin) for r in h.requests(stays)}
    h.take(h.session.connection_closed(gone, "shutdown", 2.0))  # again: nothing happens
    assert len(h.events("conn_close")) == 1


def test_peers_to_dial_skip_ourselves_known_neighbours_and_stop_at_the_cap():
    h = make_session(max_neighbours=4, max_initiate=4)
    h.connect(1, direction="out")  # dialled 127.0.0.1:7001
    accepted = h.connect(2)  # accepted from an ephemeral port; tells us it listens on 7102
    payload = b"\x00" + bencode.encode({"m": {}, "p": 7102})
    h.deliver(accepted, wire.Unknown(msg_id=EXTENDED, payload=payload))
    tracker_list = [("127.0.0.1", port) for port in (6881, 7001, 7102, 7201, 7202, 7203)]
    chosen = h.session.peers_to_dial(list(tracker_list), own=("127.0.0.1", 6881), now=0.0)
    assert len(chosen) == 2 and set(chosen) <= {("127.0.0.1", p) for p in (7201, 7202, 7203)}
    assert h.session.peers_to_dial(list(tracker_list), own=("127.0.0.1", 6881), now=0.0) == []
    h.session.dial_ended(chosen[0])
    assert len(h.session.peers_to_dial(list(tracker_list), own=("127.0.0.1", 6881), now=0.0)) == 1


def test_a_peer_stops_dialling_at_max_initiate_and_keeps_the_rest_for_incoming():
    h = make_session(max_initiate=3, max_neighbours=5)
    own = ("127.0.0.1", 6881)
    tracker_list = [("127.0.0.1", port) for port in range(7201, 7211)]
    h.connect(1)
    assert len(h.session.peers_to_dial(list(tracker_list), own, now=0.0)) == 2
    for n in (2, 3, 4):
        h.connect(n)  # 4 open: above max_initiate, below the cap
    h.session.addresses.dialing.clear()
    assert h.session.peers_to_dial(list(tracker_list), own, now=0.0) == []
    h.connect(6)  # incoming still welcome up to max_neighbours
    assert len(h.session.neighbours) == 5


def test_an_address_whose_dials_fail_is_dialled_again_only_after_a_doubling_wait():
    # A swarm larger than the neighbour cap: peers full at their cap refuse our dials (they
    # close before a handshake); dialling them at every announce is most of an idle swarm's CPU.
    h = make_session(redial_backoff=10.0)
    own, full = ("127.0.0.1", 6881), ("127.0.0.1", 7001)

    def dial(now: float) -> bool:
        chosen = h.session.peers_to_dial([full], own, now=now)
        for address in chosen:
            h.session.dial_ended(address)
        return bool(chosen)

    assert dial(0.0)
    cid = h.open(1, direction="out", now=0.0)
    h.take(h.session.connection_closed(cid, "remote closed", 0.1))  # refused: no handshake
    assert not dial(10.0) and dial(10.2)  # 10 s after the failure
    h.session.dial_failed(full, 10.3)  # the second dial did not even connect
    assert not dial(30.2) and dial(30.4)  # 20 s
    h.session.dial_failed(full, 30.4)
    assert not dial(70.3) and dial(70.5)  # 40 s
    # An answered dial clears the record: the next one is not held back.
    h.connect(1, direction="out", now=70.6)
    h.take(h.session.connection_closed(h.cid_of[1], "remote closed", 71.0))
    assert dial(71.0)


def test_what_an_announce_reports_moves_with_the_download():
    h = make_session()
    assert (h.session.uploaded, h.session.downloaded, h.session.bytes_left) == (0, 0, SIZE)
    cid = h.unchoked_with_everything(1)
    requests = h.requests(cid)
    piece_zero = [r for r in requests if r.index == requests[0].index]
    while not h.events("piece"):
        h.answer(cid, piece_zero, now=1.0)
        piece_zero = [r for r in h.requests(cid) if r.index == requests[0].index]
    assert h.session.downloaded >= PIECE and h.session.bytes_left == SIZE - PIECE


def test_the_session_needs_no_trio_and_no_sockets():
    code = ("import sys, peer.session; "
            "print(sorted(m for m in ('trio', 'socket', 'h11') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


def test_a_late_answer_to_a_request_asked_again_is_harmless():
    # Choked with a request out (voided), unchoked, the same block asked again: the answer to
    # the first request can still arrive after the second is sent, and then the second's.
    h = make_session()
    cid = h.unchoked_with_everything(1)
    first = h.requests(cid)[0]
    h.deliver(cid, wire.Choke())
    h.deliver(cid, wire.Unchoke())
    assert first in h.requests(cid)
    h.deliver(cid, block(first))
    h.deliver(cid, block(first))
    assert cid not in h.closed
    assert h.session.downloaded == BLOCK_SIZE  # counted once


def test_late_answers_to_a_block_asked_and_withdrawn_twice_are_harmless():
    # Asked, voided by a choke, asked again, voided again: both requests may have been served
    # before the sender saw the chokes' effect, so two late answers can come. Seen in a 300-peer
    # crowd as "piece ... that nobody asked for" closing a connection between honest peers.
    h = make_session()
    cid = h.unchoked_with_everything(1)
    first = h.requests(cid)[0]
    for _ in range(2):
        h.deliver(cid, wire.Choke())
        h.deliver(cid, wire.Unchoke())
        assert first in h.requests(cid)
    h.deliver(cid, wire.Choke())
    for _ in range(3):
        h.deliver(cid, block(first))
    assert cid not in h.closed
    assert h.session.downloaded == 0  # every answer was to a withdrawn request
    h.deliver(cid, block(first))  # a fourth: nobody asked for it
    assert cid in h.closed


def test_a_triggered_rechoke_the_choker_rules_out_is_not_asked_for():
    # Tit-for-tat's pre-check (trigger_may_change): with every regular slot in use a trigger
    # changes nothing, so the choker is not asked and no views are built (most of the cost).
    calls: list[str] = []

    class Counting(TitForTat):
        def rechoke(self, view: ChokeView) -> dict[str, Decision]:
            calls.append(view.trigger)
            return super().rechoke(view)

    h = make_session(seed=True, choker=Counting(seed=1), unchoke_when_free=True)
    cids = [h.connect(n) for n in range(11, 16)]
    for cid in cids[:4]:
        h.deliver(cid, wire.Interested(), now=1.0)
    h.take(h.session.rechoke("interest", 1.0))
    assert calls == ["interest"]
    assert all(h.session.neighbour(cid).decision == "regular" for cid in cids[:4])
    h.deliver(cids[4], wire.Interested(), now=2.0)
    h.take(h.session.rechoke("interest", 2.0))
    assert calls == ["interest"]  # no free slot: not asked
    h.deliver(cids[0], wire.NotInterested(), now=3.0)
    h.take(h.session.rechoke("interest", 3.0))
    assert calls == ["interest", "interest"]  # a slot came free
    assert h.session.neighbour(cids[4]).decision == "regular"
