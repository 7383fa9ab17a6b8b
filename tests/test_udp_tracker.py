"""The UDP tracker protocol (BEP 15): peer/udp_tracker.py without sockets, the TrackerClient's
choice of protocol by URL, and (integration) announces to Debian's opentracker over UDP."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from peer_helpers import events, make_node, make_torrent, peer_config

from peer.config import ProtocolSettings
from peer.errors import ConfigError
from peer.metainfo import build_metainfo
from peer.tracker_client import AnnounceRequest, TrackerClient
from peer.udp_tracker import (
    CONNECTION_ID_LIFETIME,
    PROTOCOL_ID,
    AnnounceReply,
    ConnectReply,
    ErrorReply,
    UdpAnnouncer,
    UdpTrackerError,
    decode_reply,
    encode_announce,
    encode_connect,
    retransmit_timeout,
)
from testbed.external import opentracker_argv

INFO_HASH = bytes(range(20))
PEER_ID = b"-TB0100-000000000007"


def request(**fields: object) -> AnnounceRequest:
    defaults: dict[str, object] = dict(info_hash=INFO_HASH, peer_id=PEER_ID, port=6881,
                                       uploaded=10, downloaded=20, left=30, numwant=50)
    defaults.update(fields)
    return AnnounceRequest(**defaults)  # type: ignore[arg-type]


def test_connect_request_layout():
    assert encode_connect(0x01020304) == struct.pack(">QII", 0x41727101980, 0, 0x01020304)


def test_announce_request_layout():
    data = encode_announce(request(event="started", left=-5), connection_id=0xAABB,
                           transaction_id=7, key=99)
    assert len(data) == 98
    assert struct.unpack(">QII", data[:16]) == (0xAABB, 1, 7)
    assert data[16:36] == INFO_HASH and data[36:56] == PEER_ID
    # downloaded, left (never negative), uploaded, event (2: started), IP 0, key, numwant, port
    assert struct.unpack(">QQQIIIiH", data[56:]) == (20, 0, 10, 2, 0, 99, 50, 6881)


def test_replies_decode():
    assert decode_reply(struct.pack(">IIQ", 0, 5, 0x1122334455667788)) == \
        ConnectReply(5, 0x1122334455667788)
    peers = bytes([127, 0, 0, 1, 0x1A, 0xE1, 10, 0, 0, 2, 0, 80])
    assert decode_reply(struct.pack(">IIIII", 1, 6, 1800, 3, 4) + peers) == \
        AnnounceReply(6, 1800, 3, 4, [("127.0.0.1", 6881), ("10.0.0.2", 80)])
    assert decode_reply(struct.pack(">II", 3, 7) + b"not authorized") == \
        ErrorReply(7, "not authorized")


@pytest.mark.parametrize(("data", "problem"), [
    (b"\x00\x00\x00", "shorter than its header"),
    (struct.pack(">II", 0, 1), "connect reply of 8 bytes"),
    (struct.pack(">IIIII", 1, 1, 1, 1, 1) + b"12345", r"not 20 \+ 6n"),
    (struct.pack(">IIIII", 1, 1, 1, 1, 1)[:19], r"not 20 \+ 6n"),
    (struct.pack(">II", 9, 1), "unknown action 9"),
])
def test_malformed_replies_are_refused(data, problem):
    with pytest.raises(UdpTrackerError, match=problem):
        decode_reply(data)


def test_timeouts_are_bep15s_doubling_capped():
    assert [retransmit_timeout(n, cap=float("inf")) for n in (0, 1, 2, 8, 9)] == \
        [15.0, 30.0, 60.0, 3840.0, 3840.0]
    assert [retransmit_timeout(n, cap=40.0) for n in range(4)] == [15.0, 30.0, 40.0, 40.0]


# --- the announcer's exchanges --------------------------------------------------------------


def transaction_id(datagram: bytes) -> int:
    return int(struct.unpack_from(">I", datagram, 12)[0])


def connect_reply(datagram: bytes, connection_id: int = 0xC0FFEE) -> bytes:
    assert struct.unpack_from(">QI", datagram) == (PROTOCOL_ID, 0), "not a connect request"
    return struct.pack(">IIQ", 0, transaction_id(datagram), connection_id)


def announce_reply(datagram: bytes, *peers: bytes) -> bytes:
    assert len(datagram) == 98 and struct.unpack_from(">I", datagram, 8)[0] == 1
    return struct.pack(">IIIII", 1, transaction_id(datagram), 1800, 1, 2) + b"".join(peers)


def announcer(**kw: object) -> UdpAnnouncer:
    settings: dict[str, object] = dict(rng=random.Random(1), timeout_cap=100.0, max_attempts=3)
    settings.update(kw)
    return UdpAnnouncer(**settings)  # type: ignore[arg-type]


def test_connect_then_announce_and_strangers_are_ignored():
    udp = announcer()
    connect = udp.begin(request(), now=0.0)
    assert udp.deadline == 15.0
    wrong = struct.pack(">IIQ", 0, transaction_id(connect) ^ 1, 5)
    assert udp.datagram_received(wrong, now=0.1) is None  # another transaction: not ours
    assert udp.datagram_received(b"garbage", now=0.1) is None
    announce = udp.datagram_received(connect_reply(connect), now=0.2)
    assert isinstance(announce, bytes) and struct.unpack_from(">Q", announce)[0] == 0xC0FFEE
    assert transaction_id(announce) != transaction_id(connect)
    reply = udp.datagram_received(announce_reply(announce, bytes([127, 0, 0, 1, 0, 80])), 0.3)
    assert isinstance(reply, AnnounceReply) and reply.peers == [("127.0.0.1", 80)]
    assert (reply.interval, reply.leechers, reply.seeders) == (1800, 1, 2)


def test_the_connection_id_is_reused_for_a_minute():
    udp = announcer()
    connect = udp.begin(request(), now=0.0)
    udp.datagram_received(announce_reply(udp.datagram_received(connect_reply(connect), 1.0)),
                          1.0)
    second = udp.begin(request(), now=1.0 + CONNECTION_ID_LIFETIME - 0.1)
    assert len(second) == 98 and struct.unpack_from(">Q", second)[0] == 0xC0FFEE
    udp.datagram_received(announce_reply(second), now=61.0)
    assert len(udp.begin(request(), now=1.0 + CONNECTION_ID_LIFETIME)) == 16  # connect again


def test_unanswered_requests_are_resent_then_given_up():
    udp = announcer()
    first = udp.begin(request(), now=0.0)
    again = udp.timed_out(now=15.0)
    assert len(again) == 16 and transaction_id(again) != transaction_id(first)
    assert udp.deadline == 45.0  # 15 s, then 30 s
    udp.timed_out(now=45.0)
    with pytest.raises(UdpTrackerError, match="after 3 tries"):
        udp.timed_out(now=105.0)


def test_an_announce_resent_after_its_connection_id_expired_connects_again():
    udp = announcer(timeout_cap=50.0)
    announce = udp.datagram_received(connect_reply(udp.begin(request(), now=0.0)), now=1.0)
    assert isinstance(announce, bytes) and len(announce) == 98
    assert len(udp.timed_out(now=16.0)) == 98       # id still fresh: the announce again
    assert len(udp.timed_out(now=61.0)) == 16       # expired meanwhile: connect first


def test_an_error_reply_fails_the_announce_with_its_message():
    udp = announcer()
    connect = udp.begin(request(), now=0.0)
    with pytest.raises(UdpTrackerError, match="tracker error: not authorized"):
        udp.datagram_received(struct.pack(">II", 3, transaction_id(connect)) +
                              b"not authorized", now=0.1)


# --- which protocol a URL gets ----------------------------------------------------------------


@pytest.mark.parametrize("url", ["udp://tracker:80", "udp://127.0.0.1:6969/announce",
                                 "http://127.0.0.1:6969/announce", "http://tracker/announce"])
def test_http_and_udp_urls_are_accepted(url):
    TrackerClient(url, rng=random.Random(0))


@pytest.mark.parametrize("url", ["udp://tracker", "https://tracker/announce", "wss://t:1/",
                                 "http:///announce", "udp://[::1:80", "tracker:80"])
def test_other_urls_are_a_config_error_naming_the_url(url):
    with pytest.raises(ConfigError, match="tracker"):
        TrackerClient(url, rng=random.Random(0))


# --- against Debian's opentracker over UDP (integration) ------------------------------------

needs_opentracker = pytest.mark.skipif(
    shutil.which("opentracker") is None,
    reason="opentracker not installed (apt-get install opentracker)")


def free_tcp_and_udp_port() -> int:
    """A port number free for both TCP and UDP on 127.0.0.1 (opentracker takes both)."""
    while True:
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def wait_for_udp_tracker(port: int, tracker: subprocess.Popen[bytes], out: Path) -> None:
    """Until the tracker answers a BEP 15 connect on ``port`` (it binds TCP and UDP one after
    the other, so a TCP connection proves nothing about UDP)."""
    deadline = time.monotonic() + 10
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", port))
        sock.settimeout(0.1)
        while True:
            assert tracker.poll() is None, out.read_text()
            assert time.monotonic() < deadline, "opentracker did not answer over UDP"
            try:
                sock.send(encode_connect(1))
                if isinstance(decode_reply(sock.recv(64)), ConnectReply):
                    return
            except OSError:  # refused (not bound yet) or timed out: try again
                time.sleep(0.05)


@contextlib.contextmanager
def opentracker(tmp_path: Path, info_hash: bytes) -> Iterator[str]:
    """opentracker on a free port (TCP and UDP), serving ``info_hash``: its udp:// URL."""
    port = free_tcp_and_udp_port()
    # It chroots into its directory and drops to nobody: a directory of its own, readable by
    # everyone, holding the whitelist (Debian builds it with one).
    ot_dir = Path(tempfile.mkdtemp(prefix="opentracker-"))
    (ot_dir / "whitelist.txt").write_text(info_hash.hex() + "\n")
    os.chmod(ot_dir, 0o755)
    os.chmod(ot_dir / "whitelist.txt", 0o644)
    with open(tmp_path / "opentracker.out", "wb") as out:
        tracker = subprocess.Popen(opentracker_argv(port=port, directory=ot_dir),
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_udp_tracker(port, tracker, tmp_path / "opentracker.out")
        yield f"udp://127.0.0.1:{port}"
    finally:
        tracker.terminate()
        tracker.wait(timeout=5)
        shutil.rmtree(ot_dir, ignore_errors=True)


@pytest.fixture
def opentracker_udp(tmp_path):
    with opentracker(tmp_path, INFO_HASH) as url:
        yield url


@pytest.mark.integration
@needs_opentracker
async def test_announces_to_opentracker_over_udp(opentracker_udp):
    seed = TrackerClient(opentracker_udp, rng=random.Random(1))
    leecher = TrackerClient(opentracker_udp, rng=random.Random(2))
    response, record = await seed.announce(request(peer_id=b"-TB0100-000000000001", port=7001,
                                                   left=0, event="started"))
    assert record["ok"] and record["error"] is None, record
    assert response is not None and response.usable_interval > 600  # about half an hour
    first_id = leecher_id = None
    for event in ("started", ""):
        response, record = await leecher.announce(request(port=7002, event=event))
        assert record["ok"], record
        # opentracker lists the asker too; the seed is there, with its announced port.
        assert response is not None and ("127.0.0.1", 7001) in response.peers
        assert (response.complete, response.incomplete) == (1, 1)
        leecher_id = leecher._udp.connection_id  # type: ignore[union-attr]
        first_id = first_id or leecher_id
    assert leecher_id == first_id  # the second announce reused the connection id
    response, record = await seed.announce(request(peer_id=b"-TB0100-000000000001", port=7001,
                                                   left=0, event="stopped"))
    assert record["ok"], record
    response, record = await leecher.announce(request(port=7002))
    assert response is not None and ("127.0.0.1", 7001) not in response.peers


@pytest.mark.integration
async def test_a_udp_tracker_that_is_not_there_fails_the_announce_quickly():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = TrackerClient(f"udp://127.0.0.1:{port}", rng=random.Random(0))
    started = time.monotonic()
    response, record = await client.announce(request())  # nothing listens: ICMP unreachable
    assert response is None and not record["ok"] and record["error"]
    assert time.monotonic() - started < 1.0


# --- which tracker a peer uses ----------------------------------------------------------------


def wss_torrent(tmp_path: Path) -> Path:
    """A .torrent announcing to a tracker kind the peer does not speak (WebTorrent's wss://)."""
    _, path, metainfo = make_torrent(tmp_path)
    other = build_metainfo(announce="wss://tracker.example:443/announce", name=metainfo.name,
                           length=metainfo.length, piece_length=metainfo.piece_length,
                           piece_hashes=metainfo.piece_hashes)
    assert other.info_hash == metainfo.info_hash
    path.write_bytes(other.raw)
    return path


def test_tracker_overrides_the_torrents_url_whatever_its_scheme(tmp_path):
    node = make_node(peer_config(name="p1", index=1, torrent=wss_torrent(tmp_path),
                                 role="leecher", log=tmp_path / "p1.jsonl",
                                 tracker="http://127.0.0.1:6969/announce"))
    assert node.tracker.url == "http://127.0.0.1:6969/announce"


def test_a_tracker_url_the_peer_cannot_use_stops_it_before_it_starts(tmp_path):
    config = peer_config(name="p1", index=1, torrent=wss_torrent(tmp_path), role="leecher",
                         log=tmp_path / "p1.jsonl")
    with pytest.raises(ConfigError, match=r"wss://tracker\.example"):
        make_node(config)


def test_a_udp_torrent_announces_over_udp(tmp_path):
    _, path, _ = make_torrent(tmp_path, announce="udp://127.0.0.1:6969")
    node = make_node(peer_config(name="p1", index=1, torrent=path, role="leecher",
                                 log=tmp_path / "p1.jsonl"))
    assert node.tracker.url == "udp://127.0.0.1:6969" and node.tracker._udp is not None


@pytest.mark.integration
@needs_opentracker
async def test_a_swarm_through_opentrackers_udp_port(tmp_path):
    # opentracker's interval is about half an hour, and peers short of neighbours announce at
    # its min interval: the leecher finds the seed in its first answer, as the seed arrived
    # first.
    content, path, metainfo = make_torrent(tmp_path, announce="udp://127.0.0.1:1")
    fast = ProtocolSettings(unchoke_when_free=True, rechoke_period=0.5, optimistic_period=1.5)
    with opentracker(tmp_path, metainfo.info_hash) as url:
        seed = make_node(peer_config(name="p0", index=0, torrent=path, role="seed",
                                     content=content, log=tmp_path / "p0.jsonl", tracker=url,
                                     protocol=fast))
        leecher = make_node(peer_config(name="p1", index=1, torrent=path, role="leecher",
                                        log=tmp_path / "p1.jsonl", tracker=url, protocol=fast))
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                await nursery.start(seed.run)
                while not events(seed.log.records, "announce"):
                    await trio.sleep(0.01)
                await nursery.start(leecher.run)
                await leecher.completed.wait()
                nursery.cancel_scope.cancel()
    assert bytes(leecher.pieces.storage) == content.read_bytes()
    for node in (seed, leecher):
        announces = events(node.log.records, "announce")
        assert announces[0]["event"] == "started" and announces[0]["ok"], announces
        assert announces[0]["interval"] > 600


# --- replies from strangers (property-based, issue 12 item 6) ----------------------------------

_u32 = st.integers(0, 2**32 - 1)
_peers = st.lists(st.tuples(st.tuples(*[st.integers(0, 255)] * 4), st.integers(0, 65535)),
                  max_size=40)


@given(st.binary(max_size=400) | st.builds(
    lambda action, rest: struct.pack(">I", action) + rest, st.integers(0, 4),
    st.binary(max_size=200)))
def test_any_datagram_decodes_or_is_a_udp_tracker_error(data: bytes) -> None:
    with contextlib.suppress(UdpTrackerError):
        decode_reply(data)


@given(_u32, _u32, _u32, _u32, _peers)
def test_announce_replies_decode_to_what_was_sent(transaction: int, interval: int, leechers: int,
                                                  seeders: int,
                                                  peers: list[tuple[tuple[int, ...], int]]
                                                  ) -> None:
    data = struct.pack(">IIIII", 1, transaction, interval, leechers, seeders) + b"".join(
        bytes(ip) + port.to_bytes(2, "big") for ip, port in peers)
    reply = decode_reply(data)
    assert isinstance(reply, AnnounceReply)
    assert (reply.transaction_id, reply.interval, reply.leechers, reply.seeders) == (
        transaction, interval, leechers, seeders)
    assert reply.peers == [(".".join(map(str, ip)), port) for ip, port in peers]
