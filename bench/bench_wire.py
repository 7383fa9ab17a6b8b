"""Throughput of the peer-wire codec (peer/wire.py) on its hot path: 16 KiB piece messages.

Run: ``.venv/bin/python bench/bench_wire.py [--mib 64] [--repeat 7]``

Prints the median (and min..max) over the repetitions of messages/s and MiB/s of piece payload
for: decoding a stream of Piece messages fed in 64 KiB chunks (as a socket would hand them over),
encoding Piece objects with ``encode``, and the sender's fast path ``encode_piece_header``, with
the block concatenated (one copy) or kept as a separate buffer (no copy: header cost only). Also
messages/s for decoding small Request messages, where per-message overhead dominates. Every
decoded message is checked, so a broken decoder cannot post a good figure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from peer.config import BLOCK_SIZE
from peer.wire import NEED_DATA, Piece, Request, WireReader, encode, encode_piece_header

CHUNK = 64 * 1024


def _stream(num_messages: int) -> tuple[bytes, list[Piece]]:
    block = bytes(range(256)) * (BLOCK_SIZE // 256)
    pieces = [Piece(index=i // 16, begin=(i % 16) * BLOCK_SIZE, block=block)
              for i in range(num_messages)]
    return b"".join(encode(p) for p in pieces), pieces


def bench_decode(stream: bytes, num_messages: int) -> float:
    # Chunks are sliced beforehand: the socket hands us bytes objects, slicing is not our cost.
    chunks = [stream[i:i + CHUNK] for i in range(0, len(stream), CHUNK)]
    reader = WireReader(num_pieces=None, expect_handshake=False)
    count = 0
    payload = 0
    start = time.perf_counter()
    for chunk in chunks:
        reader.receive_data(chunk)
        while (event := reader.next_event()) is not NEED_DATA:
            count += 1
            payload += len(event.block)  # type: ignore[union-attr]
    elapsed = time.perf_counter() - start
    if count != num_messages or payload != num_messages * BLOCK_SIZE:
        raise SystemExit(f"decode check failed: {count} messages, {payload} bytes")
    return elapsed


def bench_encode(pieces: list[Piece]) -> float:
    out = []
    start = time.perf_counter()
    for piece in pieces:
        out.append(encode(piece))
    elapsed = time.perf_counter() - start
    if sum(map(len, out)) != len(pieces) * (13 + BLOCK_SIZE):
        raise SystemExit("encode check failed")
    return elapsed


def bench_header(pieces: list[Piece], concatenate: bool) -> float:
    # The sender's fast path: the 13-byte header for a block it already holds. Without
    # concatenation (header and block written as two buffers) the block is never copied, so
    # that figure measures only the header; with it, one copy of the block per message.
    triples = [(p.index, p.begin, p.block) for p in pieces]
    out = []
    start = time.perf_counter()
    if concatenate:
        for index, begin, block in triples:
            out.append(encode_piece_header(index, begin, len(block)) + block)
    else:
        for index, begin, block in triples:
            out.append(encode_piece_header(index, begin, len(block)))
            out.append(block)
    elapsed = time.perf_counter() - start
    if sum(map(len, out)) != len(pieces) * (13 + BLOCK_SIZE):
        raise SystemExit("header check failed")
    return elapsed


def bench_decode_requests(num_messages: int) -> float:
    # Small messages: per-message overhead, which dominates on the uploader's side.
    stream = b"".join(
        encode(Request(index=i // 16, begin=(i % 16) * BLOCK_SIZE, length=BLOCK_SIZE))
        for i in range(num_messages)
    )
    chunks = [stream[i:i + CHUNK] for i in range(0, len(stream), CHUNK)]
    reader = WireReader(num_pieces=None, expect_handshake=False)
    count = 0
    start = time.perf_counter()
    for chunk in chunks:
        reader.receive_data(chunk)
        while reader.next_event() is not NEED_DATA:
            count += 1
    elapsed = time.perf_counter() - start
    if count != num_messages:
        raise SystemExit(f"request decode check failed: {count} messages")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64, help="payload per repetition (MiB)")
    parser.add_argument("--repeat", type=int, default=7, help="repetitions (median reported)")
    args = parser.parse_args(argv)
    if args.mib < 1 or args.repeat < 1:
        print("bench_wire: --mib and --repeat must be >= 1", file=sys.stderr)
        return 2
    num_messages = args.mib * 1024 * 1024 // BLOCK_SIZE
    stream, pieces = _stream(num_messages)
    mib = num_messages * BLOCK_SIZE / 2**20
    print(f"{num_messages} Piece messages of {BLOCK_SIZE} B ({mib:.0f} MiB payload) "
          f"x {args.repeat} repetitions, Python {sys.version.split()[0]}")
    cases = [
        ("decode (64 KiB chunks)", lambda: bench_decode(stream, num_messages)),
        ("encode(Piece)", lambda: bench_encode(pieces)),
        ("encode_piece_header() + block", lambda: bench_header(pieces, concatenate=True)),
        ("encode_piece_header(), block", lambda: bench_header(pieces, concatenate=False)),
    ]
    for name, run in cases:
        times = [run() for _ in range(args.repeat)]
        med = statistics.median(times)
        print(f"{name:30s} {num_messages / med:12,.0f} msg/s {mib / med:9,.0f} MiB/s "
              f"(range {mib / max(times):,.0f}..{mib / min(times):,.0f} MiB/s)")
    times = [bench_decode_requests(num_messages) for _ in range(args.repeat)]
    print(f"{'decode Request (64 KiB chunks)':30s} "
          f"{num_messages / statistics.median(times):12,.0f} msg/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
