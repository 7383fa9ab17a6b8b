"""Request pipelines (peer/requests.py): how deep, and what that does against a sender that
answers in batches, as Transmission does (issue 17, item 2). No sockets: a Session is fed the
sender's answers at explicit times."""

from __future__ import annotations

import hashlib
import random
from collections import deque

import pytest
from peer_helpers import peer_id, synthetic_content

from peer import wire
from peer.actions import Send
from peer.config import BLOCK_SIZE, PolicySpec, ProtocolSettings
from peer.pieces import PieceState
from peer.policy import build_choker, build_picker
from peer.requests import pipeline_depth
from peer.session import Session

KIB = 1024
PIECE = 256 * KIB
SIZE = 32 * PIECE
DATA, HASHES = synthetic_content(SIZE, PIECE)
INFO_HASH = hashlib.sha1(b"pipeline test").digest()


@pytest.mark.parametrize(("rate", "queue_time", "expected"), [
    (0.0, 3.0, 5),                     # nothing measured yet: the floor
    (100 * KIB, 0.25, 5),              # a quarter second of 100 KiB/s is 1.6 blocks: the floor
    (100 * KIB, 3.0, 19),              # three seconds of it: 18.75 blocks, rounded up
    (512 * KIB, 3.0, 96),
    (100 * 1024 * KIB, 3.0, 250),      # the cap
])
def test_depth_is_queue_time_of_the_rate_between_floor_and_cap(rate, queue_time, expected):
    assert pipeline_depth(rate, queue_time=queue_time, min_depth=5, max_depth=250) == expected


def leecher(settings: ProtocolSettings) -> Session:
    pieces = PieceState(piece_length=PIECE, length=SIZE, piece_hashes=HASHES,
                        storage=bytearray(SIZE), have_all=False)
    session = Session(peer_id=peer_id(1).encode(), info_hash=INFO_HASH, pieces=pieces,
                      settings=settings, upload_capacity=None,
                      choker=build_choker(PolicySpec(name="tit_for_tat"), 1),
                      picker=build_picker(PolicySpec(name="rarest_first"), 2),
                      rng=random.Random(1))
    session.started(6881, 0.0)
    return session


def requests_in(actions: object) -> list[wire.Request]:
    reader = wire.WireReader(SIZE // PIECE, expect_handshake=False)
    for action in actions:  # type: ignore[attr-defined]
        if isinstance(action, Send):
            reader.receive_data(action.data)
    out = []
    while not isinstance(event := reader.next_event(), wire.Sentinel):
        if isinstance(event, wire.Request):
            out.append(event)
    return out


def batching_sender_rate(queue_time: float, *, capacity: float = 512 * KIB,
                         period: float = 0.5, seconds: float = 10.0) -> float:
    """Bytes/s a leecher gets from a seed that sends, every ``period``, what it was asked for
    up to ``capacity`` x ``period``; measured after the first 3 s."""
    session = leecher(ProtocolSettings(request_queue_time=queue_time))
    cid = 7
    session.connection_opened(cid, "127.0.0.1:7000", "out", 0.0)
    session.handshake_received(cid, wire.Handshake(info_hash=INFO_HASH,
                                                   peer_id=peer_id(2).encode()), 0.0)
    session.message_received(cid, wire.Bitfield(bits=wire.bits_from_flags(
        bytes([1] * (SIZE // PIECE)))), 0.0)
    asked = deque(requests_in(session.message_received(cid, wire.Unchoke(), 0.0)))
    per_batch = int(capacity * period // BLOCK_SIZE)
    t, measured_from = 0.0, None
    while t < seconds and not session.complete:
        t += period
        batch = [asked.popleft() for _ in range(min(per_batch, len(asked)))]
        for r in batch:
            start = r.index * PIECE + r.begin
            asked.extend(requests_in(session.message_received(cid, wire.Piece(
                index=r.index, begin=r.begin, block=DATA[start:start + r.length]), t)))
        asked.extend(requests_in(session.end_of_batch(cid, t)))
        if measured_from is None and t >= 3.0:
            measured_from = session.downloaded
    assert measured_from is not None and not session.complete, "measure inside the download"
    return (session.downloaded - measured_from) / (t - 3.0)


def test_a_quarter_second_queue_never_deepens_against_half_second_batches():
    # Five blocks a batch, two batches a second: 160 KiB/s whatever the sender could do.
    assert batching_sender_rate(0.25) == pytest.approx(160 * KIB)


def test_a_three_second_queue_reaches_the_senders_capacity():
    assert batching_sender_rate(3.0) == pytest.approx(512 * KIB, rel=0.02)
