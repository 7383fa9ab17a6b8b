import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from peer import bencode
from peer.errors import ConfigError, MetainfoError
from peer.maketorrent import main
from peer.metainfo import (
    Metainfo,
    build_metainfo,
    hash_file,
    make_synthetic_torrent,
    parse_metainfo,
    read_torrent,
    verify_file,
    write_torrent,
)

KIB16 = 16 * 1024
URL = "http://127.0.0.1:6969/announce"
H = bytes(range(20))


def torrent(**changes) -> bytes:
    """A valid two-piece torrent, with top-level or ``info.``-prefixed keys changed or removed."""
    top: dict = {b"announce": URL.encode(), b"created by": b"test"}
    info: dict = {b"length": KIB16 + 1, b"name": b"c.bin", b"piece length": KIB16,
                  b"pieces": H * 2}
    for key, value in changes.items():
        target, name = (info, key[5:]) if key.startswith("info_") else (top, key)
        name = name.replace("_", " ").encode()
        if value is None:
            target.pop(name, None)
        else:
            target[name] = value
    if "info" not in changes:
        top[b"info"] = info
    return bencode.encode(top)


INVALID = [
    # (torrent bytes, key named, message fragment)
    (b"garbage", None, "not valid bencoding"),
    (torrent() + b"x", None, "trailing data"),
    (b"le", None, "must be a bencoded dictionary"),
    (b"d8:announce1:x4:infod4:name1:a6:lengthi1eee", None, "out of sorted order"),
    (torrent(info_length=b"1"), "info.length", "must be an integer"),
    (torrent(announce=None), "announce", "missing"),
    (torrent(announce=5), "announce", "must be a byte string"),
    (torrent(announce=b"tracker:80"), "announce", "http://"),
    (torrent(announce=b"http:///announce"), "announce", "http://"),
    (torrent(announce=b"\xff\xfe"), "announce", "UTF-8"),
    (torrent(info=None), "info", "missing"),
    (torrent(info=[1]), "info", "must be a dictionary"),
    (torrent(info_files=[{b"length": 1, b"path": [b"a"]}]), "info.files", "multi-file"),
    (torrent(info_name=None), "info.name", "missing"),
    (torrent(info_name=b""), "info.name", "must not be empty"),
    (torrent(info_name=b"a/b"), "info.name", "not a path"),
    (torrent(info_name=b".."), "info.name", "not a path"),
    (torrent(info_name=b"a\\b"), "info.name", "not a path"),
    (torrent(info_name=b"\xc3"), "info.name", "UTF-8"),
    (torrent(info_length=None), "info.length", "missing"),
    (torrent(info_length=0), "info.length", "must be > 0"),
    (torrent(info_length=-5), "info.length", "must be > 0"),
    (torrent(info_piece_length=None), "info.piece length", "missing"),
    (torrent(info_piece_length=b"16384"), "info.piece length", "must be an integer"),
    (torrent(info_piece_length=KIB16 + 1), "info.piece length", "power of two"),
    (torrent(info_piece_length=8192, info_pieces=H * 3), "info.piece length", "power of two"),
    (torrent(info_piece_length=0), "info.piece length", "power of two"),
    (torrent(info_pieces=None), "info.pieces", "missing"),
    (torrent(info_pieces=[H, H]), "info.pieces", "must be a byte string"),
    (torrent(info_pieces=H), "info.pieces", "must be 20 x 2 = 40 bytes"),
    (torrent(info_pieces=H * 3), "info.pieces", "got 60"),
    (torrent(info_pieces=H * 2 + b"x"), "info.pieces", "got 41"),
    # Found by the property tests (tests/test_properties_parsers.py): urlsplit's ValueError
    # escaped as itself, and absurd sizes were accepted when the piece count still matched.
    (torrent(announce=b"http://[::1"), "announce", "Invalid IPv6 URL"),
    (torrent(announce="http://h\u2100/".encode()), "announce", "NFKC"),
    (torrent(info_length=2**63, info_piece_length=2**64, info_pieces=H),
     "info.length", "at most 2**63-1"),
    (torrent(info_length=5, info_piece_length=2**29, info_pieces=H),
     "info.piece length", "power of two from 16384 to 268435456"),
]


@pytest.mark.parametrize(("data", "key", "fragment"), INVALID)
def test_invalid_torrents_are_refused(data, key, fragment):
    with pytest.raises(MetainfoError) as info:
        parse_metainfo(data, "bad.torrent")
    message = str(info.value)
    assert fragment in message
    assert message.startswith("bad.torrent")
    assert info.value.path == "bad.torrent"
    assert info.value.key == key
    if key:
        assert repr(key) in message


def test_valid_base_torrent_parses():
    meta = parse_metainfo(torrent())
    assert (meta.name, meta.length, meta.piece_length, meta.num_pieces) == (
        "c.bin", KIB16 + 1, KIB16, 2)
    assert meta.piece_size(0) == KIB16
    assert meta.piece_size(1) == 1
    with pytest.raises(IndexError):
        meta.piece_size(2)


def test_known_answer_bytes_and_info_hash():
    # Written out by hand (not by our encoder): what a real client reads, and its info_hash.
    info = b"d6:lengthi16385e4:name5:c.bin12:piece lengthi16384e6:pieces40:" + H * 2 + b"e"
    expected = (b"d8:announce" + b"%d:" % len(URL) + URL.encode()
                + b"10:created by10:bt-testbed4:info" + info + b"e")
    meta = build_metainfo(announce=URL, name="c.bin", length=KIB16 + 1, piece_length=KIB16,
                          piece_hashes=[H, H])
    assert meta.raw == expected
    assert meta.info_hash == hashlib.sha1(info).digest()


def test_round_trip_build_parse_write_read(tmp_path):
    hashes = [hashlib.sha1(b"%d" % i).digest() for i in range(5)]
    built = build_metainfo(announce=URL, name="x.bin", length=4 * KIB16 + 7,
                           piece_length=KIB16, piece_hashes=hashes)
    assert built.piece_hashes == tuple(hashes)
    assert parse_metainfo(built.raw) == built
    write_torrent(tmp_path / "x.torrent", built)
    assert read_torrent(tmp_path / "x.torrent") == built
    assert (tmp_path / "x.torrent").read_bytes() == built.raw
    info = bencode.decode(built.raw)[b"info"]
    assert built.info_hash == hashlib.sha1(bencode.encode(info)).digest()


def test_info_hash_is_the_original_span_not_a_reencoding():
    # Unknown keys inside info (BEP 27 'private') count; a nested dict holding an 'info' key
    # before the real one must not be mistaken for it; keys after info are ignored. (The strict
    # decoder makes a re-encoding byte-identical, so this checks the span finder, not that.)
    info = (b"d6:lengthi5e4:name1:a12:piece lengthi16384e6:pieces20:" + H
            + b"7:privatei1ee")
    data = (b"d8:announce" + b"%d:" % len(URL) + URL.encode()
            + b"5:extrad4:infod1:xi1eee4:info" + info + b"8:url-list0:e")
    meta = parse_metainfo(data)
    assert meta.info_hash == hashlib.sha1(info).digest()
    assert meta.raw == data


def test_largest_piece_length_is_accepted():
    meta = parse_metainfo(torrent(info_length=5, info_piece_length=2**28, info_pieces=H))
    assert (meta.piece_length, meta.num_pieces) == (2**28, 1)


def test_https_announce_is_accepted():
    assert parse_metainfo(torrent(announce=b"https://t.example/announce")).announce.startswith(
        "https://")


def test_build_refuses_bad_values():
    with pytest.raises(MetainfoError, match="piece hash 1 is not 20 bytes"):
        build_metainfo(announce=URL, name="a", length=2 * KIB16, piece_length=KIB16,
                       piece_hashes=[H, H[:19] + b"xx"])
    with pytest.raises(MetainfoError, match=r"info\.name"):
        build_metainfo(announce=URL, name="../a", length=1, piece_length=KIB16,
                       piece_hashes=[H])
    with pytest.raises(MetainfoError, match=r"info\.pieces"):
        build_metainfo(announce=URL, name="a", length=3 * KIB16, piece_length=KIB16,
                       piece_hashes=[H])


def test_read_torrent_names_the_missing_file(tmp_path):
    with pytest.raises(MetainfoError, match=r"nope\.torrent: cannot read"):
        read_torrent(tmp_path / "nope.torrent")


def test_read_torrent_names_the_file_on_bad_content(tmp_path):
    path = tmp_path / "bad.torrent"
    path.write_bytes(torrent(info_length=0))
    with pytest.raises(MetainfoError) as info:
        read_torrent(path)
    assert str(info.value).startswith(str(path))


@pytest.fixture
def synthetic(tmp_path) -> tuple[Path, Path, Metainfo]:
    return make_synthetic_torrent(tmp_path, size=5 * KIB16 + 100, seed=4, piece_length=KIB16,
                                  announce=URL)


def test_make_synthetic_torrent(synthetic, tmp_path):
    content, torrent_path, meta = synthetic
    assert content == tmp_path / "content.bin"
    assert torrent_path == tmp_path / "content.bin.torrent"
    assert read_torrent(torrent_path) == meta
    assert (meta.name, meta.length, meta.num_pieces, meta.piece_size(5)) == (
        "content.bin", 5 * KIB16 + 100, 6, 100)
    assert verify_file(content, meta) == []
    assert hash_file(content, KIB16) == (meta.length, list(meta.piece_hashes))


def test_make_synthetic_torrent_is_deterministic(tmp_path):
    a = make_synthetic_torrent(tmp_path / "a", size=KIB16 * 3, seed=1, announce=URL,
                               piece_length=KIB16)
    b = make_synthetic_torrent(tmp_path / "b", size=KIB16 * 3, seed=1, announce=URL,
                               piece_length=KIB16)
    c = make_synthetic_torrent(tmp_path / "c", size=KIB16 * 3, seed=2, announce=URL,
                               piece_length=KIB16)
    assert a[2].raw == b[2].raw
    assert a[2].info_hash != c[2].info_hash


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [({"name": "../x"}, MetainfoError, "info.name"),
     ({"announce": "wss://t:1"}, MetainfoError, "announce"),
     ({"size": 0}, ConfigError, "size"),
     ({"seed": -1}, ConfigError, "seed"),
     ({"piece_length": 1000}, ConfigError, "piece_length"),
     ({"piece_length": 2**29}, MetainfoError, "info.piece length")],
)
def test_make_synthetic_torrent_refuses_before_writing(tmp_path, kwargs, error, fragment):
    args = {"size": KIB16, "seed": 0, "announce": URL, **kwargs}
    with pytest.raises(error) as info:
        make_synthetic_torrent(tmp_path / "out", **args)
    assert info.value.key == fragment
    assert not (tmp_path / "out").exists()


def test_verify_file_catches_a_flipped_byte(synthetic):
    content, _, meta = synthetic
    data = bytearray(content.read_bytes())
    data[3 * KIB16 + 17] ^= 0x01
    content.write_bytes(data)
    assert verify_file(content, meta) == [3]


def test_verify_file_short_and_long_files(synthetic):
    content, _, meta = synthetic
    data = content.read_bytes()
    content.write_bytes(data[:2 * KIB16 + 5])
    assert verify_file(content, meta) == [2, 3, 4, 5]
    content.write_bytes(data + b"\0")
    assert verify_file(content, meta) == [5]
    content.write_bytes(b"")
    assert verify_file(content, meta) == [0, 1, 2, 3, 4, 5]


def test_verify_file_long_file_with_full_last_piece(tmp_path):
    content, _, meta = make_synthetic_torrent(tmp_path, size=2 * KIB16, seed=0,
                                              piece_length=KIB16, announce=URL)
    content.write_bytes(content.read_bytes() + b"extra")
    assert verify_file(content, meta) == [1]


# --- the CLI ---

def test_cli_synthetic_and_from_file_agree(tmp_path, capsys):
    assert main(["--size", "48KiB", "--seed", "1", "--piece-length", "16KiB",
                 "--announce", URL, "--out", str(tmp_path / "d")]) == 0
    first = capsys.readouterr().out
    meta = read_torrent(tmp_path / "d" / "content.bin.torrent")
    assert meta.info_hash_hex in first
    assert (meta.length, meta.piece_length) == (48 * 1024, KIB16)
    assert main(["--from-file", str(tmp_path / "d" / "content.bin"), "--piece-length", "16KiB",
                 "--announce", URL, "--out", str(tmp_path / "f.torrent")]) == 0
    assert meta.info_hash_hex in capsys.readouterr().out
    assert (tmp_path / "f.torrent").read_bytes() == meta.raw


@pytest.mark.parametrize(
    "argv",
    [["--size", "12QB"], ["--size", "-1MiB"], ["--size", "1MiB", "--piece-length", "100KiB"],
     ["--size", "1MiB", "--seed", "x"], ["--size", "1MiB", "--name", "a/b"],
     ["--size", "1MiB", "--from-file", "f"], ["--from-file", "/nonexistent/file"],
     ["--size", "1MiB", "--announce", "ftp://x/"], ["--size", "1MiB", "--piece-length", "512MiB"],
     ["--size", "1MiB", "--announce", "http://[::1/"]],
)
def test_cli_bad_arguments_exit_2_with_one_line(tmp_path, capsys, argv):
    if "--announce" not in argv:
        argv = [*argv, "--announce", URL]
    with pytest.raises(SystemExit) as info:
        main([*argv, "--out", str(tmp_path / "o")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("python -m peer.maketorrent: error: ")
    assert not (tmp_path / "o").exists()


def test_cli_runs_as_a_module(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "peer.maketorrent", "--size", "1ZiB", "--announce", URL,
         "--out", str(tmp_path)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2
    assert "cannot read size '1ZiB'" in result.stderr
    assert "Traceback" not in result.stderr
