"""Whom the peer trusts: the peers it banned for sending bad data, and the evidence for a ban.

No I/O and no clock. A piece that fails its SHA-1 says that some block of it is wrong, not
whose; blaming every sender of the piece punishes honest peers that sent other blocks of it.
So, as libtorrent's smart ban does, the evidence is kept per block: when a piece fails, the
digest of each of its blocks is remembered with the peer that sent it; when the same piece
later verifies, each remembered block is compared with the verified one, and exactly the peers
whose blocks differ are banned. A piece that failed with every block from one peer needs no
comparison: that peer sent it all, so it is banned at once (libtorrent does the same).

A ban lasts for the whole run (the life of the peer process) and covers the peer id and every
listening address known for it: the session refuses its handshakes and never dials those
addresses again. Addresses are host and port, never the host alone (every testbed peer is
127.0.0.1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from peer.config import BLOCK_SIZE

Address = tuple[str, int]
"""A listening address, (host, port), as the tracker lists it."""


@dataclass(frozen=True, slots=True)
class Ban:
    """Why a peer is banned: the piece and the blocks of it that it got wrong."""

    peer: str
    piece: int
    blocks: tuple[int, ...]
    reason: str


def block_digests(data: bytes | memoryview) -> list[bytes]:
    """The SHA-1 of every block of a piece's data (the last block may be short)."""
    return [hashlib.sha1(data[begin:begin + BLOCK_SIZE]).digest()
            for begin in range(0, len(data), BLOCK_SIZE)]


class Trust:
    """The bans of one peer process, and the block evidence of pieces that failed."""

    def __init__(self) -> None:
        self.banned: dict[str, Ban] = {}
        """Banned peers (peer ids as text, see peer.eventlog.peer_id_text) and why."""
        self.banned_addresses: set[Address] = set()
        self._suspect_blocks: dict[int, dict[int, dict[str, bytes]]] = {}
        """Piece -> block -> sender -> digest of what it sent, for pieces that failed."""

    def is_banned(self, peer: str) -> bool:
        return peer in self.banned

    def is_banned_address(self, address: Address) -> bool:
        return address in self.banned_addresses

    def ban_addresses(self, addresses: Iterable[Address]) -> None:
        self.banned_addresses.update(addresses)

    def judge(self, index: int, ok: bool, block_senders: Sequence[str],
              piece_data: Callable[[int], bytes | memoryview]) -> list[Ban]:
        """A piece was checked (``ok``: it verified): the bans its evidence calls for."""
        if not ok:
            ban = self.piece_failed(index, block_senders, piece_data(index))
            return [ban] if ban is not None else []
        if index in self._suspect_blocks:
            return self.piece_verified(index, piece_data(index))
        return []

    def piece_failed(self, index: int, block_senders: Sequence[str],
                     data: bytes | memoryview) -> Ban | None:
        """A piece failed its hash; ``block_senders[b]`` sent block b of ``data``. Returns the
        ban when one peer sent every block; otherwise the blocks are kept as evidence."""
        senders = set(block_senders)
        if len(senders) == 1:
            (peer,) = senders
            if peer in self.banned:
                return None
            ban = Ban(peer, index, tuple(range(len(block_senders))),
                      f"sent all of piece {index}, which failed its hash")
            self.banned[peer] = ban
            return ban
        blocks = self._suspect_blocks.setdefault(index, {})
        for block, (sender, digest) in enumerate(zip(block_senders, block_digests(data),
                                                     strict=True)):
            blocks.setdefault(block, {})[sender] = digest
        return None

    def has_evidence(self, index: int) -> bool:
        """A failed copy of this piece waits for the verified one to be compared with."""
        return index in self._suspect_blocks

    def piece_verified(self, index: int, data: bytes | memoryview) -> list[Ban]:
        """The piece verified: ban every peer that had sent a block of it that differs."""
        blocks = self._suspect_blocks.pop(index, None)
        if blocks is None:
            return []
        good = block_digests(data)
        wrong: dict[str, list[int]] = {}
        for block, by_sender in sorted(blocks.items()):
            for sender, digest in by_sender.items():
                if digest != good[block]:
                    wrong.setdefault(sender, []).append(block)
        bans = []
        for peer, bad in wrong.items():
            if peer in self.banned:
                continue
            ban = Ban(peer, index, tuple(bad),
                      f"sent {len(bad)} block(s) of piece {index} that differ from the "
                      f"verified piece")
            self.banned[peer] = ban
            bans.append(ban)
        return bans
