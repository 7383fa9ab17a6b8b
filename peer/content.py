"""Deterministic synthetic content: any size, from a seed, any piece regenerable on its own.

Piece ``i`` of the content with seed ``s`` is the first ``size_i`` bytes of the SHAKE-128 output
for ``b"bt-testbed" + s.to_bytes(8, "big") + i.to_bytes(8, "big")`` (``size_i`` is the piece
length, less for the last piece). An extendable-output hash is used because it is fast (C speed,
well over 100 MiB/s), needs no state between pieces and looks random, so no compression or
dedup can flatter a transfer. Since SHAKE output of n bytes is a prefix of its output of m > n
bytes, the short last piece is also the prefix of a full one.

Piece geometry (how many pieces, how big each one is) lives here too: the metainfo module and
the peer use the same two functions.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from peer.config import BLOCK_SIZE, MAX_CONTENT_SEED
from peer.errors import ConfigError

DOMAIN = b"bt-testbed"
"""Prefix of every piece's SHAKE-128 input: keeps our content apart from any other scheme's."""
MIN_PIECE_LENGTH = BLOCK_SIZE
"""A piece holds at least one 16 KiB block (BEP 3 requests are for 2^14 bytes)."""
MAX_SEED = MAX_CONTENT_SEED


def valid_piece_length(piece_length: int) -> bool:
    """BEP 3 piece lengths are powers of two; we also require at least one whole block."""
    return (isinstance(piece_length, int) and not isinstance(piece_length, bool)
            and piece_length >= MIN_PIECE_LENGTH and piece_length & (piece_length - 1) == 0)


def num_pieces(total_size: int, piece_length: int) -> int:
    """ceil(total_size / piece_length)."""
    return -(-total_size // piece_length)


def piece_size(index: int, piece_length: int, total_size: int) -> int:
    """Bytes in piece ``index``: ``piece_length``, except the last piece, which may be shorter."""
    count = num_pieces(total_size, piece_length)
    if not 0 <= index < count:
        raise IndexError(f"piece index {index} out of range 0..{count - 1}")
    return min(piece_length, total_size - index * piece_length)


def check_content(size: int, seed: int, piece_length: int) -> None:
    """Raise ConfigError naming the first unusable parameter of synthetic content."""
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise ConfigError(f"must be a whole number of bytes > 0, got {size!r}", "size")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"must be a whole number in 0..2**64-1, got {seed!r}", "seed")
    if not valid_piece_length(piece_length):
        raise ConfigError(
            f"must be a power of two >= {MIN_PIECE_LENGTH} bytes, got {piece_length!r}",
            "piece_length",
        )


def synthetic_piece(seed: int, index: int, piece_length: int, total_size: int) -> bytes:
    """The bytes of piece ``index`` of the ``total_size``-byte content generated from ``seed``."""
    check_content(total_size, seed, piece_length)
    size = piece_size(index, piece_length, total_size)
    return _piece(seed, index, size)


def _piece(seed: int, index: int, size: int) -> bytes:
    return hashlib.shake_128(
        DOMAIN + seed.to_bytes(8, "big") + index.to_bytes(8, "big")
    ).digest(size)


def iter_synthetic_pieces(size: int, seed: int, piece_length: int) -> Iterator[bytes]:
    """Every piece of the content, in order, one at a time (never the whole file in memory)."""
    check_content(size, seed, piece_length)
    for index in range(num_pieces(size, piece_length)):
        yield _piece(seed, index, piece_size(index, piece_length, size))


def synthetic_piece_hashes(size: int, seed: int, piece_length: int) -> list[bytes]:
    """The SHA-1 digest of every piece, for a .torrent made without writing the content."""
    return [hashlib.sha1(piece).digest()
            for piece in iter_synthetic_pieces(size, seed, piece_length)]


def write_synthetic_content(path: str | Path, size: int, seed: int,
                            piece_length: int) -> list[bytes]:
    """Write the content to ``path``; return the SHA-1 digest of every piece.

    The digests come back so the torrent maker need not read the file again. The file is written
    under a temporary name and renamed at the end, so an interrupted write never leaves a file
    that looks like finished content.
    """
    path = Path(path)
    check_content(size, seed, piece_length)
    partial = path.with_name(path.name + ".part")
    digests: list[bytes] = []
    try:
        with open(partial, "wb") as out:
            for piece in iter_synthetic_pieces(size, seed, piece_length):
                digests.append(hashlib.sha1(piece).digest())
                out.write(piece)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return digests
