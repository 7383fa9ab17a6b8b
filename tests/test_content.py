import hashlib
import tracemalloc

import pytest

from peer.content import (
    check_content,
    iter_synthetic_pieces,
    num_pieces,
    piece_size,
    synthetic_piece,
    valid_piece_length,
    write_synthetic_content,
)
from peer.errors import ConfigError

KIB16 = 16 * 1024


def test_piece_is_the_documented_shake128_output():
    # The scheme in docs/torrents.md, spelled out independently of the module.
    expected = hashlib.shake_128(
        b"bt-testbed" + (7).to_bytes(8, "big") + (3).to_bytes(8, "big")
    ).digest(KIB16)
    assert synthetic_piece(7, 3, KIB16, 10 * KIB16) == expected


def test_known_answer_pins_the_scheme():
    # Changing the scheme would silently change every torrent's info_hash: pin real values.
    assert synthetic_piece(1, 0, KIB16, KIB16)[:16].hex() == "be6eaad4a126a7c9668eb7827be40258"
    piece = synthetic_piece(1, 5, 256 * 1024, 16 * 1024 * 1024)
    assert hashlib.sha1(piece).hexdigest() == "2ae23cfcea6e9f95cf012cf119e8b0d06e2d6301"


def test_same_seed_same_bytes_different_seed_different_bytes(tmp_path):
    a = write_synthetic_content(tmp_path / "a", 5 * KIB16 + 3, 1, KIB16)
    b = write_synthetic_content(tmp_path / "b", 5 * KIB16 + 3, 1, KIB16)
    c = write_synthetic_content(tmp_path / "c", 5 * KIB16 + 3, 2, KIB16)
    assert a == b
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    assert (tmp_path / "a").read_bytes() != (tmp_path / "c").read_bytes()
    assert not set(a) & set(c)


def test_pieces_differ_from_each_other():
    pieces = list(iter_synthetic_pieces(8 * KIB16, 0, KIB16))
    assert len(set(pieces)) == 8


@pytest.mark.parametrize(
    ("size", "count", "last"),
    [(1, 1, 1), (KIB16, 1, KIB16), (KIB16 + 1, 2, 1), (5 * KIB16 - 1, 5, KIB16 - 1),
     (3 * KIB16 + 5, 4, 5)],
)
def test_last_piece_is_shorter(tmp_path, size, count, last):
    assert num_pieces(size, KIB16) == count
    assert piece_size(count - 1, KIB16, size) == last
    assert all(piece_size(i, KIB16, size) == KIB16 for i in range(count - 1))
    digests = write_synthetic_content(tmp_path / "c", size, 9, KIB16)
    data = (tmp_path / "c").read_bytes()
    assert len(data) == size
    assert len(digests) == count
    for i, digest in enumerate(digests):
        piece = synthetic_piece(9, i, KIB16, size)
        assert data[i * KIB16:(i + 1) * KIB16] == piece
        assert hashlib.sha1(piece).digest() == digest
    # The short last piece is the prefix of what a full piece would be (SHAKE property).
    full = synthetic_piece(9, count - 1, KIB16, count * KIB16)
    assert full.startswith(synthetic_piece(9, count - 1, KIB16, size))


def test_piece_index_out_of_range():
    with pytest.raises(IndexError, match="out of range"):
        synthetic_piece(0, 2, KIB16, 2 * KIB16)
    with pytest.raises(IndexError):
        piece_size(-1, KIB16, 2 * KIB16)


@pytest.mark.parametrize(
    ("size", "seed", "piece_length", "key"),
    [(0, 0, KIB16, "size"), (-1, 0, KIB16, "size"), (1.5, 0, KIB16, "size"),
     (True, 0, KIB16, "size"), (10, -1, KIB16, "seed"), (10, 2**64, KIB16, "seed"),
     (10, 0, 3 * KIB16, "piece_length"), (10, 0, KIB16 // 2, "piece_length"),
     (10, 0, 0, "piece_length")],
)
def test_bad_content_parameters(size, seed, piece_length, key):
    with pytest.raises(ConfigError) as info:
        check_content(size, seed, piece_length)
    assert info.value.key == key


def test_valid_piece_length():
    assert valid_piece_length(KIB16)
    assert valid_piece_length(4 * 1024 * 1024)
    assert not valid_piece_length(KIB16 + 1)
    assert not valid_piece_length(8192)


def test_seed_uses_all_eight_bytes():
    assert synthetic_piece(2**64 - 1, 0, KIB16, 10) != synthetic_piece(2**63 - 1, 0, KIB16, 10)


def test_write_streams_piece_by_piece(tmp_path):
    size, piece_length = 4 * 1024 * 1024, KIB16 * 4
    tracemalloc.start()
    try:
        write_synthetic_content(tmp_path / "c", size, 3, piece_length)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * piece_length  # a whole-file buffer would be 16 pieces
    assert (tmp_path / "c").stat().st_size == size
    assert not (tmp_path / "c.part").exists()


def test_failed_write_leaves_no_file(tmp_path):
    with pytest.raises(ConfigError):
        write_synthetic_content(tmp_path / "c", 0, 0, KIB16)
    assert list(tmp_path.iterdir()) == []
