"""Metainfo (.torrent) files: build, write, read strictly, verify a file against one (BEP 3).

The info_hash is the SHA-1 of the exact bytes of the ``info`` dictionary as they appear in the
file (BEP 3), so the reader hashes that byte span of the original data and never re-encodes:
re-encoding a dictionary with keys we do not know about, or in a form we would write
differently, would name a different swarm. Only single-file torrents are supported; that is all
the testbed distributes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from peer import bencode
from peer.content import (
    MIN_PIECE_LENGTH,
    check_content,
    num_pieces,
    piece_size,
    valid_piece_length,
    write_synthetic_content,
)
from peer.errors import BencodeError, MetainfoError

CREATED_BY = "bt-testbed"
DEFAULT_PIECE_LENGTH = 256 * 1024
HASH_LENGTH = 20  # SHA-1
MAX_LENGTH = 2**63 - 1
"""Largest content length read: no file can be longer (off_t is 64-bit and signed)."""
MAX_PIECE_LENGTH = 2**28
"""Largest piece length read (256 MiB): the largest power of two libtorrent accepts
(file_storage::max_piece_size). A peer holds a piece's block states in memory, so an absurd
piece length in a hostile .torrent must not reach it."""


@dataclass(frozen=True, slots=True)
class Metainfo:
    """A parsed single-file .torrent. ``raw`` is the whole file, byte for byte."""

    announce: str
    name: str
    length: int
    piece_length: int
    piece_hashes: tuple[bytes, ...]
    info_hash: bytes
    raw: bytes

    @property
    def num_pieces(self) -> int:
        return len(self.piece_hashes)

    def piece_size(self, index: int) -> int:
        """Bytes in piece ``index``; the last piece may be shorter. IndexError if out of range."""
        return piece_size(index, self.piece_length, self.length)

    @property
    def info_hash_hex(self) -> str:
        return self.info_hash.hex()


def parse_metainfo(data: bytes, source: str = "<torrent>") -> Metainfo:
    """Read a .torrent strictly; every error is a MetainfoError naming the key and ``source``."""

    def fail(message: str, key: str | None = None) -> MetainfoError:
        return MetainfoError(message, key=key, path=source)

    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("parse_metainfo takes bytes")
    data = bytes(data)
    try:
        top = bencode.decode(data)
    except BencodeError as exc:
        raise fail(f"not valid bencoding: {exc}") from None
    if not isinstance(top, dict):
        raise fail("must be a bencoded dictionary")

    announce = _text(top.get(b"announce"), "announce", fail)
    problem = _announce_problem(announce)
    if problem:
        raise fail(problem, "announce")

    info = top.get(b"info")
    if info is None:
        raise fail("missing", "info")
    if not isinstance(info, dict):
        raise fail(f"must be a dictionary, got {_kind(info)}", "info")
    if b"files" in info:
        raise fail("multi-file torrents are not supported; give a single-file torrent",
                    "info.files")

    name = _text(info.get(b"name"), "info.name", fail)
    problem = _name_problem(name)
    if problem:
        raise fail(problem, "info.name")

    length = _integer(info.get(b"length"), "info.length", fail)
    if not 0 < length <= MAX_LENGTH:
        raise fail(f"must be > 0 and at most 2**63-1, got {length}", "info.length")
    piece_length = _integer(info.get(b"piece length"), "info.piece length", fail)
    if not valid_piece_length(piece_length) or piece_length > MAX_PIECE_LENGTH:
        raise fail(f"must be a power of two from {MIN_PIECE_LENGTH} to {MAX_PIECE_LENGTH}, "
                   f"got {piece_length}", "info.piece length")

    piece_hashes = _piece_hashes(info.get(b"pieces"), length, piece_length, fail)
    start, end = _info_span(data)
    return Metainfo(
        announce=announce,
        name=name,
        length=length,
        piece_length=piece_length,
        piece_hashes=piece_hashes,
        info_hash=hashlib.sha1(data[start:end]).digest(),
        raw=data,
    )


def _piece_hashes(pieces: object, length: int, piece_length: int,
                  fail: _Fail) -> tuple[bytes, ...]:
    """``info.pieces`` split into SHA-1 digests, one for every piece of the content."""
    if pieces is None:
        raise fail("missing", "info.pieces")
    if not isinstance(pieces, bytes):
        raise fail(f"must be a byte string, got {_kind(pieces)}", "info.pieces")
    count = num_pieces(length, piece_length)
    if len(pieces) != HASH_LENGTH * count:
        raise fail(f"must be {HASH_LENGTH} x {count} = {HASH_LENGTH * count} bytes for "
                   f"{length} bytes in pieces of {piece_length}, got {len(pieces)}",
                   "info.pieces")
    return tuple(pieces[i:i + HASH_LENGTH] for i in range(0, len(pieces), HASH_LENGTH))


def _info_span(data: bytes) -> tuple[int, int]:
    """Start and end offsets of the top-level ``info`` value. ``data`` is already validated."""
    pos = 1  # past the top-level 'd'
    while data[pos] != ord("e"):
        key, pos = bencode.decode_prefix(data, pos)
        _, end = bencode.decode_prefix(data, pos)
        if key == b"info":
            return pos, end
        pos = end
    raise AssertionError("no info key in a dictionary that has one")


_Fail = Callable[..., MetainfoError]


def _text(value: object, key: str, fail: _Fail) -> str:
    if value is None:
        raise fail("missing", key)
    if not isinstance(value, bytes):
        raise fail(f"must be a byte string, got {_kind(value)}", key)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise fail("is not valid UTF-8", key) from None


def _integer(value: object, key: str, fail: _Fail) -> int:
    if value is None:
        raise fail("missing", key)
    if not isinstance(value, int):
        raise fail(f"must be an integer, got {_kind(value)}", key)
    return value


def _kind(value: object) -> str:
    return {bytes: "a byte string", int: "an integer", list: "a list",
            dict: "a dictionary"}.get(type(value), type(value).__name__)


TRACKER_SCHEMES = ("http", "https", "udp")
"""What a .torrent we write may announce to: HTTP trackers (BEP 3) and UDP trackers (BEP 15)."""


def _announce_problem(announce: str, schemes: tuple[str, ...] | None = None) -> str | None:
    """Why ``announce`` is not a tracker URL (``scheme://host...``, the scheme one of
    ``schemes`` when given), or None. Reading takes any scheme: a peer told another tracker
    (``--tracker``) never uses the file's, and the peer's tracker client judges its own."""
    try:
        url = urlsplit(announce)
    except ValueError as exc:  # "Invalid IPv6 URL", NFKC-unsafe characters in the host, ...
        return f"must be a tracker URL (http:// or udp://), got {announce!r} ({exc})"
    if not url.scheme or not url.netloc or (schemes is not None and url.scheme not in schemes):
        return f"must be a tracker URL (http:// or udp://), got {announce!r}"
    return None


def _name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a plain file name, or None. A name is joined to a download dir."""
    if not name:
        return "must not be empty"
    if "/" in name or "\\" in name or "\0" in name or name in (".", ".."):
        return f"must be a plain file name, not a path: {name!r}"
    return None


def read_torrent(path: str | Path) -> Metainfo:
    """Read and parse a .torrent file; an unreadable file is a MetainfoError naming it."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise MetainfoError(f"cannot read: {exc.strerror or exc}", path=str(path)) from None
    return parse_metainfo(data, str(path))


def build_metainfo(*, announce: str, name: str, length: int, piece_length: int,
                   piece_hashes: list[bytes] | tuple[bytes, ...]) -> Metainfo:
    """Encode a single-file torrent and read it back with the strict reader.

    No ``creation date``: the same content and announce URL always give the same bytes, so
    runs are reproducible. Going through ``parse_metainfo`` means nothing we build could be
    refused by our own peers.
    """
    for index, digest in enumerate(piece_hashes):
        if not isinstance(digest, bytes) or len(digest) != HASH_LENGTH:
            raise MetainfoError(f"piece hash {index} is not {HASH_LENGTH} bytes", "info.pieces")
    raw = bencode.encode({
        "announce": announce,
        "created by": CREATED_BY,
        "info": {
            "length": length,
            "name": name,
            "piece length": piece_length,
            "pieces": b"".join(piece_hashes),
        },
    })
    return parse_metainfo(raw, "<built torrent>")


def write_torrent(path: str | Path, metainfo: Metainfo) -> None:
    Path(path).write_bytes(metainfo.raw)


def make_synthetic_torrent(out_dir: str | Path, *, size: int, seed: int,
                           piece_length: int = DEFAULT_PIECE_LENGTH, announce: str,
                           name: str = "content.bin") -> tuple[Path, Path, Metainfo]:
    """Write synthetic content ``out_dir/name`` and its torrent ``out_dir/name.torrent``.

    Returns (content path, torrent path, metainfo). Bad parameters raise ConfigError (size,
    seed, piece length) or MetainfoError (name, announce) before anything is written.
    """
    # Refuse bad parameters before writing anything.
    check_content(size, seed, piece_length)
    if piece_length > MAX_PIECE_LENGTH:
        raise MetainfoError(f"must be at most {MAX_PIECE_LENGTH}, got {piece_length}",
                            "info.piece length")
    problem = _name_problem(name) if isinstance(name, str) else "must be a string"
    if problem:
        raise MetainfoError(problem, "info.name")
    problem = (_announce_problem(announce, TRACKER_SCHEMES) if isinstance(announce, str)
               else "must be a string")
    if problem:
        raise MetainfoError(problem, "announce")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    content = out / name
    torrent = out / f"{name}.torrent"
    digests = write_synthetic_content(content, size, seed, piece_length)
    metainfo = build_metainfo(announce=announce, name=name, length=size,
                              piece_length=piece_length, piece_hashes=digests)
    write_torrent(torrent, metainfo)
    return content, torrent, metainfo


def hash_file(path: str | Path, piece_length: int) -> tuple[int, list[bytes]]:
    """(length, SHA-1 digest of every piece) of an existing file, read one piece at a time."""
    length = 0
    digests = []
    with open(path, "rb") as f:
        while piece := f.read(piece_length):
            length += len(piece)
            digests.append(hashlib.sha1(piece).digest())
    return length, digests


def verify_file(path: str | Path, metainfo: Metainfo) -> list[int]:
    """Indices of the pieces of ``path`` whose SHA-1 does not match ``metainfo``.

    A file shorter than the torrent fails every piece it does not fully hold; a longer one fails
    its last piece, because the extra bytes are not the torrent's content. OSError (no such
    file, ...) propagates.
    """
    bad = []
    last = metainfo.num_pieces - 1
    with open(path, "rb") as f:
        for index, expected in enumerate(metainfo.piece_hashes):
            if hashlib.sha1(f.read(metainfo.piece_size(index))).digest() != expected:
                bad.append(index)
        extra = f.read(1)
    if extra and last not in bad:
        bad.append(last)
    return bad
