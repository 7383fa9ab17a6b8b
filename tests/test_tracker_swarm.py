"""The tracker's bookkeeping, with explicit times and seeded randomness: no sockets, no clock."""

from __future__ import annotations

import random

import pytest

from tracker.swarm import CLIENT_MAX_REANNOUNCE, Announce, AnnounceRefused, Swarm

H1 = b"\x01" * 20
H2 = b"\x02" * 20


def pid(n: int) -> bytes:
    return b"-TB0100-%012d" % n


def ann(n: int, *, info_hash: bytes = H1, left: int = 100, event: str = "",
        numwant: int | None = None, port: int | None = None) -> Announce:
    return Announce(info_hash=info_hash, peer_id=pid(n), port=port or 6000 + n, left=left,
                    event=event, numwant=numwant)


def make(info_hashes=(H1,), seed: int = 0, **kw) -> Swarm:
    return Swarm(info_hashes, rng=random.Random(seed), **kw)


def test_first_peer_gets_empty_list_and_counts_itself():
    swarm = make()
    result = swarm.announce(ann(1, event="started"), ip="127.0.0.1", now=0.0)
    assert result.peers == ()
    assert (result.complete, result.incomplete, result.interval) == (0, 1, 30)


def test_never_returns_the_asker_and_uses_source_address():
    swarm = make()
    for n in range(5):
        swarm.announce(ann(n, event="started"), ip=f"127.0.0.{n + 1}", now=float(n))
    for n in range(5):
        result = swarm.announce(ann(n), ip=f"127.0.0.{n + 1}", now=10.0)
        ids = {p.peer_id for p in result.peers}
        assert pid(n) not in ids
        assert ids == {pid(m) for m in range(5) if m != n}
        for p in result.peers:
            m = int(p.peer_id[-12:])
            assert (p.ip, p.port) == (f"127.0.0.{m + 1}", 6000 + m)


def test_same_ip_different_peer_ids_are_different_peers():
    # Every testbed peer is 127.0.0.1: identity is the peer id, never the address.
    swarm = make()
    swarm.announce(ann(1, port=7000), ip="127.0.0.1", now=0)
    swarm.announce(ann(2, port=7000), ip="127.0.0.1", now=0)
    assert swarm.peer_count(H1) == 2


def test_numwant_bounds_a_random_subset():
    swarm = make(seed=3)
    for n in range(30):
        swarm.announce(ann(n, event="started"), ip="127.0.0.1", now=0)
    seen = set()
    for _ in range(20):
        result = swarm.announce(ann(0, numwant=5), ip="127.0.0.1", now=1)
        assert len(result.peers) == 5
        assert len({p.peer_id for p in result.peers}) == 5
        assert pid(0) not in {p.peer_id for p in result.peers}
        seen |= {p.peer_id for p in result.peers}
    assert len(seen) > 10  # a random subset, not always the same first five
    assert swarm.announce(ann(0, numwant=0), ip="127.0.0.1", now=1).peers == ()


def test_numwant_default_cap_and_negative():
    swarm = make(default_numwant=4, max_numwant=10)
    for n in range(20):
        swarm.announce(ann(n), ip="127.0.0.1", now=0)
    assert len(swarm.announce(ann(0), ip="127.0.0.1", now=0).peers) == 4
    assert len(swarm.announce(ann(0, numwant=1000), ip="127.0.0.1", now=0).peers) == 10
    assert len(swarm.announce(ann(0, numwant=-1), ip="127.0.0.1", now=0).peers) == 4


def test_default_numwant_is_50():
    swarm = make()
    for n in range(80):
        swarm.announce(ann(n), ip="127.0.0.1", now=0)
    assert len(swarm.announce(ann(0), ip="127.0.0.1", now=0).peers) == 50


def test_same_seed_same_sample():
    def run(seed):
        swarm = make(seed=seed)
        for n in range(40):
            swarm.announce(ann(n), ip="127.0.0.1", now=0)
        return [p.peer_id for p in swarm.announce(ann(0, numwant=7), ip="127.0.0.1", now=0).peers]

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_stopped_removes_the_peer():
    swarm = make()
    swarm.announce(ann(1, event="started"), ip="127.0.0.1", now=0)
    swarm.announce(ann(2, event="started"), ip="127.0.0.1", now=0)
    result = swarm.announce(ann(1, event="stopped"), ip="127.0.0.1", now=1)
    assert result.peers == ()
    assert (result.complete, result.incomplete) == (0, 1)
    assert swarm.announce(ann(2), ip="127.0.0.1", now=2).peers == ()


def test_stopped_before_started_is_harmless():
    # Transmission sends event=stopped before event=started (docs/tracker.md).
    swarm = make()
    result = swarm.announce(ann(1, event="stopped"), ip="127.0.0.1", now=0)
    assert (result.peers, result.complete, result.incomplete) == ((), 0, 0)
    swarm.announce(ann(1, event="started"), ip="127.0.0.1", now=0)
    swarm.announce(ann(2, event="started"), ip="127.0.0.1", now=0)
    assert [p.peer_id for p in swarm.announce(ann(2), ip="127.0.0.1", now=1).peers] == [pid(1)]


def test_periodic_announce_from_unknown_peer_registers_it():
    swarm = make()
    swarm.announce(ann(1), ip="127.0.0.1", now=0)
    assert swarm.peer_count(H1) == 1


def test_completed_counts_once_and_moves_peer_to_seeds():
    swarm = make()
    swarm.announce(ann(1, event="started"), ip="127.0.0.1", now=0)
    swarm.announce(ann(2, event="started", left=0), ip="127.0.0.1", now=0)  # a seed from start
    stats = swarm.scrape([H1], now=0)[H1]
    assert (stats.complete, stats.incomplete, stats.downloaded) == (1, 1, 0)
    result = swarm.announce(ann(1, event="completed", left=0), ip="127.0.0.1", now=5)
    assert (result.complete, result.incomplete) == (2, 0)
    swarm.announce(ann(1, event="completed", left=0), ip="127.0.0.1", now=6)  # repeated
    stats = swarm.scrape([H1], now=6)[H1]
    assert (stats.complete, stats.incomplete, stats.downloaded) == (2, 0, 1)
    # Leaving does not undo a completion.
    swarm.announce(ann(1, event="stopped", left=0), ip="127.0.0.1", now=7)
    stats = swarm.scrape([H1], now=7)[H1]
    assert (stats.complete, stats.incomplete, stats.downloaded) == (1, 0, 1)


def test_expiry_after_a_set_peer_timeout():
    swarm = make(interval=30, peer_timeout=70.0)
    assert swarm.expiry == 70.0
    swarm.announce(ann(1), ip="127.0.0.1", now=0.0)
    swarm.announce(ann(2), ip="127.0.0.1", now=50.0)
    assert swarm.expire(70.0) == 0  # exactly at the limit: still there
    assert swarm.peer_count(H1) == 2
    assert swarm.expire(70.5) == 1
    assert swarm.peer_count(H1) == 1
    # Lazy expiry on announce: peer 2 is gone for a peer announcing much later.
    result = swarm.announce(ann(3), ip="127.0.0.1", now=121.0)
    assert result.peers == ()
    assert (result.complete, result.incomplete) == (0, 1)


@pytest.mark.parametrize(("interval", "grace", "expiry"), [
    (30, 10.0, CLIENT_MAX_REANNOUNCE + 10.0),  # libtorrent announces every 300 s at the most
    (1800, 10.0, 3610.0),                      # two intervals when those are longer
])
def test_default_expiry_outlasts_the_slowest_client(interval, grace, expiry):
    assert make(interval=interval, grace=grace).expiry == expiry


def test_a_libtorrent_seed_announcing_every_300_s_is_never_forgotten():
    swarm = make(interval=30)
    for t in range(0, 3001, CLIENT_MAX_REANNOUNCE):
        swarm.announce(ann(1, left=0), ip="127.0.0.1", now=float(t))
        assert swarm.expire(t + CLIENT_MAX_REANNOUNCE - 0.5) == 0
    # A leecher arriving 75 s after the seed's announce still finds it (issue 17, item 3).
    assert swarm.announce(ann(2), ip="127.0.0.1", now=3075.0).peers[0].peer_id == pid(1)


def test_reannounce_refreshes_last_seen():
    swarm = make(interval=10, peer_timeout=20.0)
    swarm.announce(ann(1), ip="127.0.0.1", now=0)
    swarm.announce(ann(1), ip="127.0.0.1", now=15)
    assert swarm.expire(35) == 0
    assert swarm.expire(35.1) == 1


def test_min_interval_is_half_the_interval_unless_set():
    assert make(interval=30).announce(ann(1), ip="127.0.0.1", now=0).min_interval == 15
    assert make(interval=1).announce(ann(1), ip="127.0.0.1", now=0).min_interval == 1
    swarm = make(interval=30, min_interval=30)
    assert swarm.announce(ann(1), ip="127.0.0.1", now=0).min_interval == 30
    assert swarm.announce(ann(1, event="stopped"), ip="127.0.0.1", now=1).min_interval == 30


@pytest.mark.parametrize("settings", [{"min_interval": 0}, {"min_interval": 31},
                                      {"peer_timeout": 0.0}, {"peer_timeout": -5.0}])
def test_bad_min_interval_or_peer_timeout_is_refused(settings):
    with pytest.raises(ValueError):
        make(interval=30, **settings)


def test_unknown_info_hash_is_refused():
    swarm = make()
    with pytest.raises(AnnounceRefused, match="unknown info_hash"):
        swarm.announce(ann(1, info_hash=H2), ip="127.0.0.1", now=0)
    assert swarm.scrape([H2], now=0) == {}


def test_accept_any_starts_swarms_on_demand():
    swarm = make(info_hashes=None)
    assert swarm.info_hashes is None
    swarm.announce(ann(1, info_hash=H2, event="stopped"), ip="127.0.0.1", now=0)
    assert swarm.scrape([], now=0) == {}  # a stop does not create a swarm
    swarm.announce(ann(1, info_hash=H2), ip="127.0.0.1", now=0)
    swarm.announce(ann(2, info_hash=H1), ip="127.0.0.1", now=0)
    assert set(swarm.scrape([], now=0)) == {H1, H2}
    assert swarm.announce(ann(3, info_hash=H2), ip="127.0.0.1", now=0).peers[0].peer_id == pid(1)


def test_swarms_are_separate():
    swarm = make(info_hashes=[H1, H2])
    swarm.announce(ann(1, info_hash=H1), ip="127.0.0.1", now=0)
    assert swarm.announce(ann(2, info_hash=H2), ip="127.0.0.1", now=0).peers == ()


def test_scrape_known_but_empty_and_all():
    swarm = make(info_hashes=[H1, H2])
    stats = swarm.scrape([H2], now=0)
    assert stats[H2].complete == stats[H2].incomplete == stats[H2].downloaded == 0
    assert set(swarm.scrape([], now=0)) == {H1, H2}


def test_port_change_is_followed():
    swarm = make()
    swarm.announce(ann(1, port=7001), ip="127.0.0.1", now=0)
    swarm.announce(ann(1, port=7002), ip="127.0.0.1", now=1)
    [p] = swarm.announce(ann(2), ip="127.0.0.1", now=1).peers
    assert p.port == 7002


@pytest.mark.parametrize("kwargs", [
    {"info_hash": b"x" * 19}, {"peer_id": b"x" * 21}, {"port": 0}, {"port": 65536},
    {"left": -1}, {"event": "paused"},
])
def test_announce_refuses_impossible_values(kwargs):
    base = {"info_hash": H1, "peer_id": pid(1), "port": 1, "left": 0}
    with pytest.raises(ValueError):
        Announce(**{**base, **kwargs})


@pytest.mark.parametrize("kwargs", [{"interval": 0}, {"interval": 1.5}, {"grace": -1},
                                    {"default_numwant": 300}])
def test_swarm_refuses_bad_settings(kwargs):
    with pytest.raises(ValueError):
        make(**kwargs)
