"""Make a .torrent: for synthetic content generated from a seed, or for an existing file.

    python -m peer.maketorrent --size 16MiB --seed 1 --announce URL --out DIR [--name N]
    python -m peer.maketorrent --from-file FILE --announce URL --out X.torrent

Prints the info_hash and the paths written. Bad arguments: one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from peer.cli import OneLineParser, fail
from peer.content import MIN_PIECE_LENGTH, valid_piece_length
from peer.errors import TestbedError
from peer.metainfo import (
    DEFAULT_PIECE_LENGTH,
    MAX_PIECE_LENGTH,
    build_metainfo,
    hash_file,
    make_synthetic_torrent,
    write_torrent,
)
from peer.units import format_size, parse_size

PROG = "python -m peer.maketorrent"


def _fail(message: str) -> NoReturn:
    fail(PROG, message)


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _piece_length(text: str) -> int:
    value = _size(text)
    if not valid_piece_length(value) or value > MAX_PIECE_LENGTH:
        raise argparse.ArgumentTypeError(
            f"piece length {text!r} must be a power of two from {format_size(MIN_PIECE_LENGTH)} "
            f"to {format_size(MAX_PIECE_LENGTH)}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed {text!r} is not a whole number") from None
    if not 0 <= value < 2**64:
        raise argparse.ArgumentTypeError(f"seed {text!r} must be in 0..2**64-1")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--size", type=_size, help="synthetic content of this size (16MiB)")
    source.add_argument("--from-file", type=Path, metavar="FILE",
                        help="make a torrent for this existing file")
    parser.add_argument("--seed", type=_seed, default=None,
                        help="seed of the synthetic content (default 0)")
    parser.add_argument("--piece-length", type=_piece_length, default=DEFAULT_PIECE_LENGTH,
                        help="piece length, a power of two from 16KiB to 256MiB (default 256KiB)")
    parser.add_argument("--announce", required=True, help="tracker announce URL")
    parser.add_argument("--out", type=Path, required=True,
                        help="synthetic: output directory; --from-file: the .torrent to write")
    parser.add_argument("--name", default=None,
                        help="file name in the torrent (default content.bin / the file's name)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.from_file is not None:
            if args.seed is not None:
                parser.error("--seed applies only to synthetic content (--size)")
            length, digests = hash_file(args.from_file, args.piece_length)
            if length == 0:
                _fail(f"{args.from_file}: file is empty")
            metainfo = build_metainfo(announce=args.announce,
                                      name=args.name or args.from_file.name, length=length,
                                      piece_length=args.piece_length, piece_hashes=digests)
            write_torrent(args.out, metainfo)
            content, torrent = args.from_file, args.out
        else:
            content, torrent, metainfo = make_synthetic_torrent(
                args.out, size=args.size, seed=args.seed or 0, piece_length=args.piece_length,
                announce=args.announce, name=args.name or "content.bin")
    except TestbedError as exc:
        _fail(str(exc))
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc}")
    print(f"info_hash {metainfo.info_hash_hex}")
    print(f"content   {content} ({format_size(metainfo.length)}, {metainfo.num_pieces} pieces "
          f"of {format_size(metainfo.piece_length)})")
    print(f"torrent   {torrent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
