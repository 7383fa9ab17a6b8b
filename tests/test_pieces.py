"""Block bookkeeping and verification (peer/pieces.py) on small synthetic content."""

from __future__ import annotations

import pytest
from peer_helpers import synthetic_content

from peer.config import BLOCK_SIZE
from peer.pieces import DONE, FREE, REQUESTED, BlockResult, PieceState

PIECE = 2 * BLOCK_SIZE
LAST = 20_000  # the last piece: one whole block and a 3616-byte one
LENGTH = 3 * PIECE + LAST
NUM = 4
ALL = [1] * NUM


@pytest.fixture
def content():
    return synthetic_content(LENGTH, PIECE, seed=3)


def leecher(content) -> PieceState:
    _, hashes = content
    return PieceState(piece_length=PIECE, length=LENGTH, piece_hashes=hashes,
                      storage=bytearray(LENGTH), have_all=False)


class Picks:
    """A picker stand-in that records every call and answers from a script (else the lowest)."""

    def __init__(self, *answers: int | None) -> None:
        self.answers = list(answers)
        self.calls: list[list[int]] = []

    def __call__(self, candidates: list[int]) -> int | None:
        self.calls.append(list(candidates))
        return self.answers.pop(0) if self.answers else min(candidates)


def block(data: bytes, index: int, begin: int) -> bytes:
    start = index * PIECE + begin
    return data[start:start + BLOCK_SIZE if index < NUM - 1 or begin == 0 else start + LAST]


def deliver(state: PieceState, data: bytes, requests, requester="A", sender="peerA"):
    """Feed the answers to ``requests``; return the PieceDone results."""
    done = []
    for index, begin, length in requests:
        start = index * PIECE + begin
        result, finished = state.on_block(requester, sender, index, begin,
                                          data[start:start + length])
        assert result == BlockResult.ACCEPTED
        if finished is not None:
            done.append(finished)
    return done


# --- geometry ----------------------------------------------------------------------------------


def test_geometry(content):
    state = leecher(content)
    assert state.num_pieces == NUM
    assert [state.piece_size(i) for i in range(NUM)] == [PIECE, PIECE, PIECE, LAST]
    assert (state.have_count, state.bytes_verified, state.complete) == (0, 0, False)


VALID_BLOCKS = [
    ((0, 0, BLOCK_SIZE), True),
    ((0, BLOCK_SIZE, BLOCK_SIZE), True),
    ((2, 0, 1), True),
    ((0, 0, BLOCK_SIZE + 1), False),  # BEP 3: over 16 KiB is refused
    ((0, 0, 0), False),
    ((0, 0, -1), False),
    ((0, -1, 16), False),
    ((0, PIECE, 1), False),  # begins at the end of the piece
    ((0, BLOCK_SIZE + 1, BLOCK_SIZE), False),  # runs past the end of the piece
    ((NUM, 0, 1), False),  # outside the file
    ((-1, 0, 1), False),
    ((NUM - 1, 0, BLOCK_SIZE), True),
    ((NUM - 1, BLOCK_SIZE, LAST - BLOCK_SIZE), True),  # the short last block exactly
    ((NUM - 1, BLOCK_SIZE, LAST - BLOCK_SIZE + 1), False),  # one byte past the file's end
    ((NUM - 1, BLOCK_SIZE, BLOCK_SIZE), False),  # a whole block where the file ends early
    ((NUM - 1, LAST - 1, 1), True),
    ((NUM - 1, LAST, 1), False),
]


@pytest.mark.parametrize(("request_", "valid"), VALID_BLOCKS, ids=[str(r) for r, _ in VALID_BLOCKS])
def test_valid_block(content, request_, valid):
    assert leecher(content).valid_block(*request_) is valid


def test_seed_has_everything_and_reads_blocks(content):
    data, hashes = content
    state = PieceState(piece_length=PIECE, length=LENGTH, piece_hashes=hashes,
                       storage=bytearray(data), have_all=True)
    assert state.complete and state.have_count == NUM and list(state.have) == ALL
    assert state.next_requests("A", ALL, 10, set(), Picks(), 0.0) == []
    assert not state.end_game
    assert state.read_block(3, BLOCK_SIZE, LAST - BLOCK_SIZE) == data[-(LAST - BLOCK_SIZE):]


def test_availability(content):
    state = leecher(content)
    state.add_availability([1, 0, 1, 1], +1)
    state.add_availability([1, 1, 0, 1], +1)
    state.add_availability([0, 0, 1, 1], -1)
    assert state.availability == [2, 1, 0, 1]


# --- requests: strict priority, picker, end game ------------------------------------------------


def test_started_pieces_come_first_and_the_picker_is_asked_only_for_new_pieces(content):
    state = leecher(content)
    picks = Picks(2)
    assert state.next_requests("A", ALL, 1, set(), picks, 1.0) == [(2, 0, BLOCK_SIZE)]
    assert picks.calls == [[0, 1, 2, 3]]
    # B: the free block of started piece 2 first, without asking the picker.
    assert state.next_requests("B", ALL, 1, set(), picks, 2.0) == [(2, BLOCK_SIZE, BLOCK_SIZE)]
    assert len(picks.calls) == 1
    # C: piece 2 has nothing free; new pieces come from the picker, which sees neither the
    # started piece nor pieces C lacks.
    picks.answers = [3, 0]
    got = state.next_requests("C", [1, 0, 1, 1], 3, set(), picks, 3.0)
    assert got == [(3, 0, BLOCK_SIZE), (3, BLOCK_SIZE, LAST - BLOCK_SIZE), (0, 0, BLOCK_SIZE)]
    assert picks.calls[1:] == [[0, 3], [0]]
    assert state.active[3].started_at == 3.0
    assert (state.unstarted, state.free_in_active) == (1, 1)


def test_oldest_started_piece_first(content):
    state = leecher(content)
    assert state.next_requests("A", ALL, 1, set(), Picks(1), 0.0) == [(1, 0, BLOCK_SIZE)]
    assert state.next_requests("B", [1, 0, 0, 0], 1, set(), Picks(), 0.0) == [(0, 0, BLOCK_SIZE)]
    assert list(state.active) == [1, 0]
    got = state.next_requests("D", ALL, 2, set(), Picks(), 0.0)
    assert got == [(1, BLOCK_SIZE, BLOCK_SIZE), (0, BLOCK_SIZE, BLOCK_SIZE)]


def test_a_seed_is_asked_only_for_pieces_started_from_a_seed_or_new_ones(content):
    state = leecher(content)
    # Piece 1 started from leecher A: a seed does not finish it first (A and others have it);
    # it is only one more candidate for the picker, which prefers rarer pieces...
    assert state.next_requests("A", ALL, 1, set(), Picks(1), 0.0) == [(1, 0, BLOCK_SIZE)]
    picks = Picks(2)
    got = state.next_requests("S", ALL, 1, set(), picks, 1.0, from_seed=True)
    assert got == [(2, 0, BLOCK_SIZE)]
    assert picks.calls == [[0, 1, 2, 3]]
    assert state.active[2].seed_started and not state.active[1].seed_started
    # ...a second seed finishes what a seed started, and a leecher finishes either.
    got = state.next_requests("T", ALL, 1, set(), Picks(), 2.0, from_seed=True)
    assert got == [(2, BLOCK_SIZE, BLOCK_SIZE)]
    assert state.next_requests("B", ALL, 1, set(), Picks(), 3.0) == [(1, BLOCK_SIZE, BLOCK_SIZE)]


def test_a_seed_finishes_a_leecher_started_piece_when_the_picker_takes_it(content):
    # The leecher that had piece 1 left with the piece half done: only the seed has it now.
    state = leecher(content)
    assert state.next_requests("A", ALL, 1, set(), Picks(1), 0.0) == [(1, 0, BLOCK_SIZE)]
    state.release("A", [(1, 0)])
    for index in (0, 2, 3):
        state.have[index] = 1
    state.have_count, state.unstarted = 3, 0
    picks = Picks(1)
    got = state.next_requests("S", ALL, 4, set(), picks, 1.0, from_seed=True)
    assert picks.calls == [[1]]
    assert got == [(1, 0, BLOCK_SIZE), (1, BLOCK_SIZE, BLOCK_SIZE)]
    assert state.active[1].seed_started


def test_picker_none_stops_and_a_bad_pick_is_refused(content):
    state = leecher(content)
    assert state.next_requests("A", ALL, 4, set(), Picks(None), 0.0) == []
    assert state.unstarted == NUM
    with pytest.raises(ValueError, match="not among the candidates"):
        state.next_requests("A", [1, 1, 0, 0], 4, set(), Picks(3), 0.0)


def test_nothing_when_the_remote_has_nothing_we_lack(content):
    state = leecher(content)
    picks = Picks()
    assert state.next_requests("A", [0, 0, 0, 0], 5, set(), picks, 0.0) == []
    assert state.next_requests("A", ALL, 0, set(), picks, 0.0) == []
    assert picks.calls == []


def request_everything(state: PieceState) -> list[tuple[int, int, int]]:
    got = state.next_requests("A", ALL, 100, set(), Picks(), 0.0)
    assert len(got) == 2 * NUM
    return got


def test_end_game_only_once_every_block_is_requested(content):
    state = leecher(content)
    a_requests = state.next_requests("A", ALL, 2 * NUM - 1, set(), Picks(), 0.0)
    assert not state.end_game
    # A free block remains (the last one of piece 3): no duplicates for anyone, not even for a
    # neighbour that cannot take that block.
    assert state.next_requests("B", [1, 1, 1, 0], 5, set(), Picks(), 0.0) == []
    # C takes the last free block first; only then do duplicates start.
    got = state.next_requests("C", ALL, 3, set(), Picks(), 0.0)
    assert got == [(3, BLOCK_SIZE, LAST - BLOCK_SIZE), *a_requests[:2]]
    assert state.end_game


def test_end_game_duplicates_skip_what_the_requester_already_has_out(content):
    state = leecher(content)
    a_requests = request_everything(state)
    assert state.end_game
    first = state.next_requests("B", ALL, 3, set(), Picks(), 0.0)
    assert first == a_requests[:3]
    outstanding_b = {(i, b) for i, b, _ in first}
    second = state.next_requests("B", ALL, 100, outstanding_b, Picks(), 0.0)
    assert second == a_requests[3:]
    # A asking again gets nothing: everything missing is already outstanding on it.
    outstanding_a = {(i, b) for i, b, _ in a_requests}
    assert state.next_requests("A", ALL, 100, outstanding_a, Picks(), 0.0) == []
    # Only pieces the requester has.
    assert state.next_requests("C", [0, 0, 0, 1], 100, set(), Picks(), 0.0) == a_requests[6:]
    assert state.active[3].requesters[1] == {"A", "B", "C"}


def test_idle_end_game_gives_one_least_requested_block_and_only_to_a_requester_with_none_out(
        content):
    state = leecher(content)
    a_requests = request_everything(state)
    assert state.end_game
    # B, with nothing out, gets one duplicate, not a pipeline of them.
    first = state.next_requests("B", ALL, 5, set(), Picks(), 0.0, end_game="idle")
    assert first == a_requests[:1]
    # With that one out, B gets nothing more.
    assert state.next_requests("B", ALL, 5, {first[0][:2]}, Picks(), 0.0, end_game="idle") == []
    # C gets the least requested block: not B's duplicate, which two neighbours now have out.
    assert state.next_requests("C", ALL, 5, set(), Picks(), 0.0, end_game="idle") == \
        a_requests[1:2]
    # Only among the pieces C has, and never a block it has out already.
    assert state.next_requests("C", [0, 0, 0, 1], 5, set(), Picks(), 0.0,
                               end_game="idle") == a_requests[6:7]
    assert state.active[3].requesters[0] == {"A", "C"}


def test_idle_end_game_waits_for_the_end_game(content):
    state = leecher(content)
    state.next_requests("A", ALL, 2 * NUM - 1, set(), Picks(), 0.0)
    assert not state.end_game
    # A free block is left: the requester gets it, and no duplicate besides.
    assert state.next_requests("B", ALL, 5, set(), Picks(), 0.0, end_game="idle") == [
        (3, BLOCK_SIZE, LAST - BLOCK_SIZE)]
    assert state.end_game


# --- release -----------------------------------------------------------------------------------


def test_release_frees_blocks_nobody_else_requested(content):
    state = leecher(content)
    got = state.next_requests("A", ALL, 3, set(), Picks(), 0.0)
    state.release("A", [(i, b) for i, b, _ in got[:2]])
    assert list(state.active[0].block_state) == [FREE, FREE]
    assert list(state.active[1].block_state) == [REQUESTED, FREE]
    assert state.free_in_active == 3
    # The freed blocks are handed out again (strict priority) before anything new.
    assert state.next_requests("B", ALL, 2, set(), Picks(), 0.0) == got[:2]


def test_release_in_end_game_keeps_blocks_another_requester_holds(content):
    state = leecher(content)
    request_everything(state)
    dup = state.next_requests("B", ALL, 1, set(), Picks(), 0.0)
    assert dup == [(0, 0, BLOCK_SIZE)]
    state.release("A", [(0, 0), (0, BLOCK_SIZE)])
    # (0, 0) is still out on B; (0, 16384) nobody has any more.
    assert list(state.active[0].block_state) == [REQUESTED, FREE]
    assert state.active[0].requesters[0] == {"B"}
    assert not state.end_game
    state.release("B", [(0, 0)])
    assert list(state.active[0].block_state) == [FREE, FREE]
    assert state.free_in_active == 2


def test_release_ignores_done_blocks_and_inactive_pieces(content):
    data, _ = content
    state = leecher(content)
    got = state.next_requests("A", ALL, 2, set(), Picks(), 0.0)
    deliver(state, data, got[:1])
    state.release("A", [(0, 0), (0, BLOCK_SIZE), (2, 0)])
    assert list(state.active[0].block_state) == [DONE, FREE]
    assert 2 not in state.active


# --- arrivals and verification -----------------------------------------------------------------


def test_good_piece_is_verified_and_counted(content):
    data, _ = content
    state = leecher(content)
    got = state.next_requests("A", ALL, 2, set(), Picks(3), 5.0)
    result, done = state.on_block("A", "peerA", *got[0][:2], block(data, 3, 0))
    assert (result, done) == (BlockResult.ACCEPTED, None)
    assert state.have_count == 0
    result, done = state.on_block("A", "peerB", 3, BLOCK_SIZE, block(data, 3, BLOCK_SIZE))
    assert result == BlockResult.ACCEPTED
    assert done is not None
    assert (done.index, done.ok, done.size, done.senders, done.started_at) == (
        3, True, LAST, ("peerA", "peerB"), 5.0)
    assert done.duplicate_requesters == ()
    assert state.have[3] == 1 and state.have_count == 1 and state.bytes_verified == LAST
    assert 3 not in state.active
    assert bytes(state.storage)[3 * PIECE:] == data[3 * PIECE:]
    # A late copy of a block of a finished piece is redundant and changes nothing.
    assert state.on_block("B", "peerB", 3, 0, block(data, 3, 0)) == (BlockResult.REDUNDANT, None)
    assert state.have_count == 1


def test_whole_download_completes(content):
    data, _ = content
    state = leecher(content)
    results = deliver(state, data, request_everything(state))
    assert sorted(d.index for d in results) == list(range(NUM))
    assert all(d.ok for d in results)
    assert state.complete and state.bytes_verified == LENGTH and bytes(state.storage) == data
    assert not state.end_game
    assert state.next_requests("A", ALL, 5, set(), Picks(), 0.0) == []


def test_duplicate_block_and_end_game_duplicate_requesters(content):
    data, _ = content
    state = leecher(content)
    request_everything(state)
    state.next_requests("B", ALL, 2, set(), Picks(), 0.0)  # both blocks of piece 0, again
    result, done = state.on_block("A", "peerA", 0, 0, block(data, 0, 0))
    assert (result, done) == (BlockResult.ACCEPTED, None)
    assert state.on_block("B", "peerB", 0, 0, block(data, 0, 0)) == (BlockResult.REDUNDANT, None)
    result, done = state.on_block("A", "peerA", 0, BLOCK_SIZE, block(data, 0, BLOCK_SIZE))
    assert done is not None and done.ok
    # B still has (0, 16384) out: the node cancels it.
    assert done.duplicate_requesters == ("B",)
    assert done.senders == ("peerA",)


def test_block_arriving_after_release_is_still_taken(content):
    data, _ = content
    state = leecher(content)
    state.next_requests("A", ALL, 1, set(), Picks(), 0.0)
    state.release("A", [(0, 0)])
    assert state.free_in_active == 2
    result, _ = state.on_block("A", "peerA", 0, 0, block(data, 0, 0))
    assert result == BlockResult.ACCEPTED
    assert state.free_in_active == 1 and state.active[0].free_blocks == 1
    assert state.next_requests("A", ALL, 5, set(), Picks(None), 0.0) == [(0, BLOCK_SIZE,
                                                                         BLOCK_SIZE)]


def test_corrupt_block_fails_the_piece_which_is_reset_and_fetched_again(content):
    data, _ = content
    state = leecher(content)
    got = state.next_requests("A", ALL, 2, set(), Picks(1), 7.0)
    bad = bytearray(block(data, 1, 0))
    bad[100] ^= 0xFF
    state.on_block("A", "liar", 1, 0, bytes(bad))
    result, done = state.on_block("A", "honest", 1, BLOCK_SIZE, block(data, 1, BLOCK_SIZE))
    assert result == BlockResult.ACCEPTED
    assert done is not None
    assert (done.index, done.ok, done.senders) == (1, False, ("liar", "honest"))
    # Discarded: not had, not counted, every block free again, still a started piece.
    assert state.have[1] == 0 and state.have_count == 0 and state.bytes_verified == 0
    piece = state.active[1]
    assert list(piece.block_state) == [FREE, FREE]
    assert (piece.free_blocks, piece.done_blocks, piece.senders) == (2, 0, [])
    assert all(not r for r in piece.requesters)
    assert state.free_in_active == 2 and state.unstarted == NUM - 1
    # Fetched again by strict priority (no new pick), this time from an honest peer.
    picks = Picks()
    again = state.next_requests("B", ALL, 2, set(), picks, 9.0)
    assert again == got and picks.calls == []
    (redo,) = deliver(state, data, again, requester="B", sender="honest")
    assert redo.ok and redo.senders == ("honest",)
    assert state.have[1] == 1 and state.bytes_verified == PIECE


def fail_piece_one(state, data):
    """Piece 1 arrives with a corrupt first block (from A) and a good second one (from B)."""
    state.next_requests("A", ALL, 1, set(), Picks(1), 1.0)
    state.next_requests("B", ALL, 1, set(), Picks(), 1.0)
    bad = bytearray(block(data, 1, 0))
    bad[0] ^= 0xFF
    state.on_block("A", "liar", 1, 0, bytes(bad))
    _, done = state.on_block("B", "honest", 1, BLOCK_SIZE, block(data, 1, BLOCK_SIZE))
    assert done is not None and not done.ok and done.block_senders == ("liar", "honest")


def test_a_failed_piece_is_fetched_again_from_one_sender_only(content):
    data, _ = content
    state = leecher(content)
    fail_piece_one(state, data)
    first = state.next_requests("C", ALL, 1, set(), Picks(), 2.0)
    assert first == [(1, 0, BLOCK_SIZE)] and state.active[1].owner == "C"
    # The rest of it is C's alone: others start other pieces, and no end-game copies of it.
    other = state.next_requests("D", ALL, 4, set(), Picks(), 2.0)
    assert all(index != 1 for index, _, _ in other)
    assert state.next_requests("C", ALL, 1, set(), Picks(), 2.0) == [(1, BLOCK_SIZE, BLOCK_SIZE)]
    (redo,) = deliver(state, data, [*first, (1, BLOCK_SIZE, BLOCK_SIZE)], requester="C",
                      sender="honest")
    assert redo.ok and redo.block_senders == ("honest", "honest")


def test_a_failed_piece_opens_to_others_when_its_one_sender_is_released(content):
    data, _ = content
    state = leecher(content)
    fail_piece_one(state, data)
    taken = state.next_requests("C", ALL, 1, set(), Picks(), 2.0)
    state.release("C", [(i, b) for i, b, _ in taken])  # C choked us, or left
    assert state.active[1].owner is None
    assert state.next_requests("D", ALL, 2, set(), Picks(), 3.0) == [
        (1, 0, BLOCK_SIZE), (1, BLOCK_SIZE, BLOCK_SIZE)]
    assert state.active[1].owner == "D"
