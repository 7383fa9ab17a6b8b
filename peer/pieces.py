"""Which pieces and blocks we have, which are requested from whom, and SHA-1 verification.

Sans-I/O: the node feeds it block arrivals and asks it what to request next; it never touches a
socket or a clock (times are passed in). Block data is written straight into the peer's storage
(peer/storage.py), so a piece is hashed where it lies and nothing is copied twice; the storage
hears when a piece verified (a synthetic one then drops the received bytes).

Request order: blocks of pieces already started come first (strict priority, so pieces finish
and can be traded), then the piece picker chooses a new piece, and once every missing block has
been requested from someone the end game requests the outstanding blocks from other neighbours
too (the ``end_game`` setting: one at a time to a neighbour with nothing out, as libtorrent, or
a whole pipeline of them, as mainline BitTorrent); the node cancels the duplicates when the
first copy arrives.

Requests to a seed are the exception to strict priority, as in mainline BitTorrent 4.x's piece
picker (its ``seedstarted`` list): a seed is asked only for blocks of pieces started from a seed,
or for new pieces. A piece started from a leecher is finished from leechers, since they have it;
otherwise every seed connection would spend the seed's upload completing pieces the swarm already
holds, and the initial seed would inject new pieces at a fraction of its capacity.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Hashable, Iterator, Sequence
from dataclasses import dataclass, field

from peer.config import BLOCK_SIZE
from peer.storage import MemoryStorage, Storage

FREE, REQUESTED, DONE = 0, 1, 2


@dataclass(slots=True)
class ActivePiece:
    index: int
    size: int
    started_at: float
    block_state: bytearray
    requesters: list[set[Hashable]]
    senders: list[str] = field(default_factory=list)
    block_senders: list[str] = field(default_factory=list)
    """Who sent each block that arrived (``""``: not yet)."""
    free_blocks: int = 0
    seed_started: bool = False
    """A block of it was requested from a seed: seeds may be asked for the rest."""
    done_blocks: int = 0
    failed: bool = False
    """A copy of it failed its hash: it is fetched again from a single sender."""
    owner: Hashable | None = None
    """Of a failed piece, the requester its blocks are now fetched from, alone (None: the
    next to take one). If this copy fails too, its one sender is judged alone."""


@dataclass(frozen=True, slots=True)
class PieceDone:
    """A piece whose last block arrived: verified or not, who sent it, when it was started."""

    index: int
    ok: bool
    size: int
    senders: tuple[str, ...]
    started_at: float
    block_senders: tuple[str, ...]
    """Who sent each block, in block order: the evidence when the piece failed."""
    duplicate_requesters: tuple[Hashable, ...]
    """Other connections that still have a request out for a block of it (end game)."""


class BlockResult:
    UNREQUESTED = "unrequested"
    REDUNDANT = "redundant"
    ACCEPTED = "accepted"


class PieceState:
    def __init__(self, *, piece_length: int, length: int, piece_hashes: Sequence[bytes],
                 storage: Storage | bytearray | memoryview, have_all: bool) -> None:
        self.piece_length = piece_length
        self.length = length
        self.num_pieces = len(piece_hashes)
        self.piece_hashes = piece_hashes
        self.storage: Storage = (MemoryStorage(storage)
                                 if isinstance(storage, bytearray | memoryview) else storage)
        self.have = bytearray([1 if have_all else 0]) * self.num_pieces
        self.have_count = self.num_pieces if have_all else 0
        self.availability = [0] * self.num_pieces
        self.active: dict[int, ActivePiece] = {}
        self.unstarted = 0 if have_all else self.num_pieces
        self.free_in_active = 0
        self.bytes_verified = 0

    # --- geometry ---------------------------------------------------------------------------

    def piece_size(self, index: int) -> int:
        if index == self.num_pieces - 1:
            return self.length - index * self.piece_length
        return self.piece_length

    @property
    def complete(self) -> bool:
        return self.have_count == self.num_pieces

    def valid_block(self, index: int, begin: int, length: int) -> bool:
        """A block inside the file, at a block boundary, at most 16 KiB long (BEP 3)."""
        if not (0 <= index < self.num_pieces) or length <= 0 or length > BLOCK_SIZE:
            return False
        size = self.piece_size(index)
        return 0 <= begin < size and begin + length <= size

    def read_block(self, index: int, begin: int, length: int) -> bytes:
        return bytes(self.storage.read(index * self.piece_length + begin, length))

    def piece_data(self, index: int) -> memoryview:
        """The bytes of a piece as the storage holds them (not copied)."""
        return self.storage.read(index * self.piece_length, self.piece_size(index))

    # --- availability -----------------------------------------------------------------------

    def add_availability(self, flags: Sequence[int], delta: int) -> None:
        availability = self.availability
        for i, flag in enumerate(flags):
            if flag:
                availability[i] += delta

    # --- requests ---------------------------------------------------------------------------

    @property
    def end_game(self) -> bool:
        return self.unstarted == 0 and self.free_in_active == 0 and not self.complete

    def next_requests(self, requester: Hashable, remote_has: Sequence[int], count: int,
                      outstanding: Collection[tuple[int, int]],
                      pick: Callable[[list[int]], int | None],
                      now: float, *, from_seed: bool = False,
                      end_game: str = "eager") -> list[tuple[int, int, int]]:
        """Up to ``count`` blocks to request from ``requester``, marked as requested from it.

        ``pick`` chooses a new piece among candidate indices (the node wraps the picker policy
        so this module stays free of snapshots it does not need). ``from_seed``: the requester
        has every piece; strict priority then covers only pieces started from a seed.
        ``end_game`` (the protocol setting): once every block is requested, ``eager`` fills the
        count with blocks requested from others, ``idle`` gives one, the least requested, and
        only to a requester with nothing ``outstanding``.
        """
        requests: list[tuple[int, int, int]] = []
        if count <= 0 or self.complete:
            return requests
        # 1. Strict priority: blocks of started pieces, oldest piece first.
        if self.free_in_active:
            for piece in self.active.values():
                if piece.free_blocks and remote_has[piece.index] and \
                        (piece.seed_started or not from_seed) and _open_to(piece, requester):
                    self._take_free(piece, requester, count - len(requests), requests)
                    if len(requests) >= count:
                        return requests
        # 2. New pieces chosen by the picker. A seed is also offered the pieces started from
        # leechers, as pieces to start rather than to finish first: the picker takes them when
        # they are rarest, e.g. when the leechers that had them left.
        while len(requests) < count and (self.unstarted or (from_seed and self.free_in_active)):
            candidates = self._candidates(remote_has, from_seed, requester)
            if not candidates:
                break
            index = pick(candidates)
            if index is None:
                break
            if index not in candidates:
                raise ValueError(f"piece picker chose piece {index}, not among the candidates")
            piece = self.active.get(index) or self._start(index, now)
            piece.seed_started = from_seed
            self._take_free(piece, requester, count - len(requests), requests)
        # 3. End game: ask for blocks already requested from others.
        if len(requests) < count and self.end_game:
            busy = self._busy_blocks(requester, remote_has, outstanding)
            if end_game == "idle":
                # One block, the least requested (the first among equals), and only to a
                # neighbour with nothing out.
                if not requests and not outstanding and (least := min(
                        busy, key=lambda pb: len(pb[0].requesters[pb[1]]), default=None)):
                    self._ask(*least, requester, requests)
                return requests
            for piece, block in busy:
                self._ask(piece, block, requester, requests)
                if len(requests) >= count:
                    break
        return requests

    def _busy_blocks(self, requester: Hashable, remote_has: Sequence[int],
                     outstanding: Collection[tuple[int, int]]) -> Iterator[tuple[ActivePiece, int]]:
        """End game: (piece, block) of the blocks requested from others that ``requester`` has
        and was not asked for, oldest piece first. Not twice to the same neighbour: neither a
        request it already has (``outstanding``), nor one made a moment ago in this very call
        (already among the block's requesters)."""
        for piece in self.active.values():
            if not remote_has[piece.index] or not _open_to(piece, requester):
                continue
            for block, state in enumerate(piece.block_state):
                if state == REQUESTED and requester not in piece.requesters[block] and \
                        (piece.index, block * BLOCK_SIZE) not in outstanding:
                    yield piece, block

    @staticmethod
    def _ask(piece: ActivePiece, block: int, requester: Hashable,
             out: list[tuple[int, int, int]]) -> None:
        """Record ``requester`` as asked for ``block`` of ``piece`` and add the request."""
        piece.requesters[block].add(requester)
        begin = block * BLOCK_SIZE
        out.append((piece.index, begin, min(BLOCK_SIZE, piece.size - begin)))

    def _candidates(self, remote_has: Sequence[int], from_seed: bool,
                    requester: Hashable) -> list[int]:
        have, active = self.have, self.active
        if not from_seed:
            return [i for i in range(self.num_pieces)
                    if remote_has[i] and not have[i] and i not in active]
        return [i for i in range(self.num_pieces)
                if remote_has[i] and not have[i] and
                (i not in active or (active[i].free_blocks and not active[i].seed_started
                                     and _open_to(active[i], requester)))]

    def _start(self, index: int, now: float) -> ActivePiece:
        size = self.piece_size(index)
        nblocks = -(-size // BLOCK_SIZE)
        piece = ActivePiece(index=index, size=size, started_at=now,
                            block_state=bytearray(nblocks),
                            requesters=[set() for _ in range(nblocks)], free_blocks=nblocks,
                            block_senders=[""] * nblocks)
        self.active[index] = piece
        self.unstarted -= 1
        self.free_in_active += nblocks
        return piece

    def _take_free(self, piece: ActivePiece, requester: Hashable, count: int,
                   out: list[tuple[int, int, int]]) -> None:
        states = piece.block_state
        taken = 0
        for block, state in enumerate(states):
            if taken >= count:
                break
            if state == FREE:
                states[block] = REQUESTED
                self._ask(piece, block, requester, out)
                taken += 1
        piece.free_blocks -= taken
        self.free_in_active -= taken
        if taken and piece.failed and piece.owner is None:
            piece.owner = requester

    def release(self, requester: Hashable, blocks: Sequence[tuple[int, int]]) -> None:
        """Forget ``requester``'s requests (choked us, or gone): blocks nobody else asked for
        become free again, and a failed piece it was fetching alone is open to others."""
        for active in self.active.values():
            if active.owner == requester:
                active.owner = None
        for index, begin in blocks:
            piece = self.active.get(index)
            if piece is None:
                continue
            block = begin // BLOCK_SIZE
            requesters = piece.requesters[block]
            requesters.discard(requester)
            if piece.block_state[block] == REQUESTED and not requesters:
                piece.block_state[block] = FREE
                piece.free_blocks += 1
                self.free_in_active += 1

    # --- arrivals ---------------------------------------------------------------------------

    def on_block(self, requester: Hashable, sender: str, index: int, begin: int,
                 data: bytes | memoryview) -> tuple[str, PieceDone | None]:
        """Store a block that ``requester`` asked for. The caller has checked that it did."""
        piece = self.active.get(index)
        if piece is None:
            # We completed the piece already (an end-game duplicate, or a late answer).
            return BlockResult.REDUNDANT, None
        block = begin // BLOCK_SIZE
        state = piece.block_state[block]
        piece.requesters[block].discard(requester)
        if state == DONE:
            return BlockResult.REDUNDANT, None
        if state == FREE:  # released after a choke, yet it arrived: take it all the same
            piece.free_blocks -= 1
            self.free_in_active -= 1
        piece.block_state[block] = DONE
        piece.done_blocks += 1
        if sender not in piece.senders:
            piece.senders.append(sender)
        piece.block_senders[block] = sender
        self.storage.write(index * self.piece_length + begin, data)
        if piece.done_blocks < len(piece.block_state):
            return BlockResult.ACCEPTED, None
        return BlockResult.ACCEPTED, self._finish(piece)

    def _finish(self, piece: ActivePiece) -> PieceDone:
        digest = hashlib.sha1(self.piece_data(piece.index)).digest()
        ok = digest == self.piece_hashes[piece.index]
        others = {r for requesters in piece.requesters for r in requesters}
        if ok:
            del self.active[piece.index]
            self.have[piece.index] = 1
            self.have_count += 1
            self.bytes_verified += piece.size
            self.storage.piece_verified(piece.index)
        else:
            # Discard and fetch again; the session weighs the evidence (peer/trust.py).
            nblocks = len(piece.block_state)
            piece.block_state[:] = bytes(nblocks)
            piece.requesters = [set() for _ in range(nblocks)]
            piece.free_blocks = nblocks
            self.free_in_active += nblocks
            piece.done_blocks = 0
            piece.failed = True
            piece.owner = None
        done = PieceDone(index=piece.index, ok=ok, size=piece.size,
                         senders=tuple(piece.senders), started_at=piece.started_at,
                         block_senders=tuple(piece.block_senders),
                         duplicate_requesters=tuple(others))
        if not ok:
            piece.senders = []
            piece.block_senders = [""] * len(piece.block_state)
        return done


def _open_to(piece: ActivePiece, requester: Hashable) -> bool:
    """Blocks of ``piece`` may be asked of ``requester``: after a failed copy, only of the one
    requester fetching it again (libtorrent's parole mode is alike: a suspect peer downloads
    only whole pieces by itself), so that a second failure has a single sender to judge."""
    return piece.owner is None or piece.owner == requester
