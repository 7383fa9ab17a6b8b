"""Topology latency: access delays per group add up between peers, links override them, the
tracker's delay adds to each peer's own, and bad delays fail with key and line (exit 2)."""

from __future__ import annotations

import json
import textwrap

import pytest

from peer.config import LinkDelays, PeerConfig
from peer.delayline import DelayTable
from testbed.experiment import peer_id_for
from testbed.topology import TopologyError, expand, parse_topology

BASE = """
    content: {size: 1MiB}
    %s
    groups:
      - {name: seed, role: seed%s}
      - {name: eu, count: 3%s}
      - {name: us, count: 2%s}
"""


def topo(top: str = "", seed: str = "", eu: str = "", us: str = ""):
    return parse_topology(textwrap.dedent(BASE % (top, seed, eu, us)), file="t.yaml")


def delay_between(experiment, a: int, b: int) -> tuple[float, float]:
    """The (delay, jitter) peer ``a`` applies to what it sends to peer ``b``."""
    return DelayTable(experiment.peers[a].delays).lookup(peer_id_for(b).encode())


def test_access_delays_add_up_and_jitters_too():
    experiment = expand(topo(seed=", latency: 40ms, jitter: 2ms", eu=", latency: 10ms",
                             us=", latency: 30ms, jitter: 1ms"))
    assert delay_between(experiment, 0, 1) == pytest.approx((0.05, 0.002))
    assert delay_between(experiment, 1, 0) == pytest.approx((0.05, 0.002))
    assert delay_between(experiment, 1, 2) == pytest.approx((0.02, 0.0))
    assert delay_between(experiment, 3, 5) == pytest.approx((0.04, 0.001))
    assert delay_between(experiment, 4, 5) == pytest.approx((0.06, 0.002))
    assert delay_between(experiment, 0, 0) == pytest.approx((0.08, 0.004))
    # A peer outside the run (a real client): our own access delay only.
    assert DelayTable(experiment.peers[5].delays).lookup(b"-qB4650-abcdefghijkl") == \
        pytest.approx((0.03, 0.001))


def test_network_default_links_and_the_tracker():
    experiment = expand(topo(
        top="network: {latency: 25ms, links: [{between: [us, eu], latency: 80ms, jitter: 5ms}]}"
            "\n    tracker: {latency: 20ms}",
        us=", latency: 30ms"))
    assert delay_between(experiment, 0, 1) == pytest.approx((0.05, 0.0))
    assert delay_between(experiment, 1, 4) == pytest.approx((0.08, 0.005))
    assert delay_between(experiment, 4, 1) == pytest.approx((0.08, 0.005))
    assert delay_between(experiment, 4, 5) == pytest.approx((0.06, 0.0))
    assert experiment.peers[0].delays.tracker == pytest.approx(0.045)
    assert experiment.peers[4].delays.tracker == pytest.approx(0.05)


def test_a_group_range_is_one_entry_and_no_delay_is_no_table():
    experiment = expand(topo(top="network: {latency: 5ms}"))
    delays = experiment.peers[1].delays
    # Every group has the same access delay: one range covers every testbed peer.
    assert delays.peers == ((peer_id_for(0), peer_id_for(5), 0.01, 0.0),)
    assert expand(topo()).peers[1].delays == LinkDelays()
    assert expand(topo(top="network: {latency: 0}")).peers[1].delays == LinkDelays()


def test_the_peer_config_carries_the_delays_through_json(tmp_path):
    plan = expand(topo(top="network: {latency: 25ms, jitter: 3ms}")).peers[2]
    config = plan.peer_config(torrent="t", log="l", tracker="http://x/announce", run_start=0.0,
                              content=None)
    again = PeerConfig.from_json(json.loads(json.dumps(config.to_json())))
    assert again.delays == plan.delays and again.delays.active


@pytest.mark.parametrize(("top", "eu", "line", "message"), [
    ("", ", latency: 40", 6, "groups[1].latency: a delay needs a unit"),
    ("", ", latency: -5ms", 6, "groups[1].latency: must not be negative"),
    ("", ", latency: 4 parsecs", 6, "groups[1].latency: cannot read delay"),
    ("", ", latency: 6s", 6, "groups[1].latency: must be at most 5 s one way"),
    ("", ", latency: 1ms, jitter: 2ms", 6, "groups[1].jitter: jitter 2 ms exceeds"),
    ("network: {latency: 1}", "", 3, "network.latency: a delay needs a unit"),
    ("tracker: {latency: -1ms}", "", 3, "tracker.latency: must not be negative"),
    ("network: {links: [{between: [eu, asia], latency: 5ms}]}", "", 3,
     "network.links[0].between[1]: no group named 'asia'"),
    ("network: {links: [{between: [eu], latency: 5ms}]}", "", 3,
     "network.links[0].between: must be two group names"),
    ("network: {links: [{between: [eu, us], latency: 5ms}, {between: [us, eu], latency: 1ms}]}",
     "", 3, "network.links[1].between: us and eu already have a link"),
    ("network: {links: [{between: [eu, us]}]}", "", 3, "network.links[0].latency: missing"),
    ("network: {latncy: 5ms}", "", 3, "network.latncy: unknown key 'latncy' (did you mean"),
])
def test_bad_delays_name_the_key_and_line(top, eu, line, message):
    with pytest.raises(TopologyError) as caught:
        topo(top=top, eu=eu)
    assert str(caught.value).startswith(f"t.yaml:{line}: {message}")


def test_a_real_client_group_has_no_delay_of_its_own():
    text = """
        content: {size: 1MiB}
        groups:
          - {name: seed, role: seed, latency: 10ms}
          - {name: aria, command: "aria2c {torrent}", latency: 10ms}
    """
    with pytest.raises(TopologyError, match=r"t.yaml:5: groups\[1\]\.latency: a real client"):
        parse_topology(textwrap.dedent(text), file="t.yaml")
