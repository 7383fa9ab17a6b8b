"""Bans and their evidence (peer/trust.py), without a session; and the new log lines (``ban``,
``counters.refused``) through the analysis loader."""

from __future__ import annotations

import hashlib

import pytest
from analysis_fixtures import counters, make_run, plan, start, stop

from analysis import load_run
from peer.config import BLOCK_SIZE
from peer.trust import Trust, block_digests

PIECE = bytes(range(256)) * (3 * BLOCK_SIZE // 256) + b"tail"  # 3 whole blocks and 4 bytes


def flipped(data: bytes, *blocks: int) -> bytes:
    wrong = bytearray(data)
    for block in blocks:
        wrong[block * BLOCK_SIZE] ^= 0x01
    return bytes(wrong)


def test_block_digests_cover_every_block_and_the_short_last_one():
    digests = block_digests(PIECE)
    assert len(digests) == 4
    assert digests[3] == hashlib.sha1(b"tail").digest()


def test_the_sole_sender_of_a_failed_piece_is_banned_at_once():
    trust = Trust()
    ban = trust.piece_failed(7, ["L"] * 4, flipped(PIECE, 2))
    assert ban is not None and (ban.peer, ban.piece, ban.blocks) == ("L", 7, (0, 1, 2, 3))
    assert trust.is_banned("L") and not trust.has_evidence(7)
    assert trust.piece_failed(8, ["L"] * 4, PIECE) is None  # banned once only


def test_mixed_senders_are_judged_block_by_block_when_the_piece_verifies():
    trust = Trust()
    assert trust.piece_failed(3, ["L", "H", "L", "H"], flipped(PIECE, 2)) is None
    assert trust.has_evidence(3) and not trust.banned
    # A second failure of the same piece adds evidence: K's block 1 is wrong this time.
    assert trust.piece_failed(3, ["H", "K", "H", "H"], flipped(PIECE, 1)) is None
    bans = trust.piece_verified(3, PIECE)
    assert sorted((b.peer, b.blocks) for b in bans) == [("K", (1,)), ("L", (2,))]
    assert not trust.is_banned("H") and not trust.has_evidence(3)
    assert trust.piece_verified(3, PIECE) == []


def test_a_peer_whose_blocks_were_right_is_not_banned_even_if_the_piece_failed():
    trust = Trust()
    trust.piece_failed(0, ["A", "B", "A", "B"], flipped(PIECE))  # nothing flipped: all match
    assert trust.piece_verified(0, PIECE) == [] and not trust.banned


def test_addresses_are_host_and_port():
    trust = Trust()
    trust.ban_addresses([("127.0.0.1", 7001)])
    assert trust.is_banned_address(("127.0.0.1", 7001))
    assert not trust.is_banned_address(("127.0.0.1", 7002))


@pytest.mark.parametrize("fast", [True, False])
def test_the_analysis_loads_logs_with_bans_and_refused_counts(tmp_path, monkeypatch, fast):
    import analysis._fastpath as fastpath

    taken = []
    real = fastpath.split_lists

    def spy(raw_lines, form, parse):
        frame = real(raw_lines, form, parse) if fast else None
        taken.append(frame is not None)
        return frame

    monkeypatch.setattr(fastpath, "split_lists", spy)
    s, a = plan("s", 0, role="seed", group="seed"), plan("a", 1)
    with_refused = counters(2, {0: (0, 300)})
    with_refused = {**{k: v for k, v in with_refused.items() if k != "n"},
                    "refused": {"neighbour cap": 4, "banned": 1}, "n": with_refused["n"]}
    logs = {
        "s": [start(s), stop(9, 300, 0)],
        "a": [start(a), counters(1, {0: (0, 100)}),
              {"t": 1.5, "ev": "ban", "peer": "-XX0000-liar00000000", "addrs": ["127.0.0.1:9"],
               "reason": "sent all of piece 2, which failed its hash", "piece": 2,
               "blocks": [0]},
              with_refused, stop(9, 0, 300)],
    }
    run = load_run(make_run(tmp_path / "r", [s, a], logs))
    assert list(run.transfers["d_down"]) == [100, 200]
    assert list(run.totals["down"]) == [100, 300] and not run.warnings
    assert any(taken) == fast  # the column-wise reading still takes such counters lines
