"""The listening addresses a peer knows: whose each is, which dials are under way, and which
of the tracker's peers to dial next. No I/O.

Addresses are (host, port), never the host alone: every testbed peer is 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Container, Iterable

from peer.eventlog import peer_id_text
from peer.trust import Address, Trust

_DNS_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


def decode_compact_peers(data: bytes | memoryview) -> list[Address]:
    """BEP 23 compact peers: 6 bytes each, an IPv4 address and a port in network order (the
    caller checks that the length is a multiple of 6)."""
    return [(".".join(str(b) for b in data[i:i + 4]), int.from_bytes(data[i + 4:i + 6], "big"))
            for i in range(0, len(data) - len(data) % 6, 6)]


def dialable(host: object, port: object) -> Address | None:
    """A tracker's dictionary peer entry (BEP 3: an IP address or a DNS name, and a port) as an
    address to dial, or None if it is not one: a stranger's list must not make a dial raise
    (a port of 10**30 overflows the socket call, a name with a stray byte fails to encode)."""
    if not isinstance(host, bytes) or not isinstance(port, int) or isinstance(port, bool):
        return None
    if not 0 < port < 65536:
        return None
    try:
        text = host.decode("ascii")
    except UnicodeDecodeError:
        return None
    try:
        ipaddress.ip_address(text)
    except ValueError:
        if not _DNS_NAME.fullmatch(text):
            return None
    return text, port


class AddressBook:
    def __init__(self, rng: random.Random, trust: Trust, *, redial_backoff: float = 10.0,
                 max_redial_wait: float = 600.0) -> None:
        self.rng = rng
        """Seeded by the peer's seed: the order in which tracker peers are dialled."""
        self.trust = trust
        self.redial_backoff = redial_backoff
        self.max_redial_wait = max_redial_wait
        self.dialing: set[Address] = set()
        self._failures: dict[Address, tuple[int, float]] = {}
        """Address -> (dials in a row that failed, when the last of them failed)."""
        self.peer_at: dict[Address, bytes] = {}
        """Listening address -> peer id, learnt from the handshakes of connections we dialled
        and from BEP 10 handshakes."""

    def to_dial(self, peers: list[Address], own: Address, *, open_addrs: Iterable[str],
                neighbours: Container[bytes], room: int, now: float) -> list[Address]:
        """Up to ``room`` (less dials under way) of the tracker's ``peers`` to dial now, in a
        seeded random order (``peers`` is shuffled in place), marked as being dialled: not
        ourselves, not an address we are connected to (``open_addrs``: ``host:port``) or that
        a neighbour listens on, never a banned one, none still backing off after failed
        dials."""
        known = set(open_addrs)
        # An accepted connection shows the remote's ephemeral port, not the one it listens on,
        # so the tracker's address of a neighbour we accepted is unknown to us until we dial it
        # once; after that dial's handshake we know whose address it is.
        known.update(f"{host}:{port}" for (host, port), peer_id in self.peer_at.items()
                     if peer_id in neighbours)
        self.rng.shuffle(peers)
        chosen = []
        for host, port in peers:
            if len(self.dialing) >= room:
                break
            if (host, port) == own or (host, port) in self.dialing or \
                    f"{host}:{port}" in known or self.trust.is_banned_address((host, port)) \
                    or self.backing_off((host, port), now):
                continue
            self.dialing.add((host, port))
            chosen.append((host, port))
        return chosen

    def dial_ended(self, address: Address) -> None:
        self.dialing.discard(address)

    def dial_failed(self, address: Address, now: float) -> None:
        """A dial to ``address`` gave no neighbour: no connection, or one closed before its
        handshake (a peer full at its cap refuses that way)."""
        failures, _ = self._failures.get(address, (0, now))
        self._failures[address] = (failures + 1, now)

    def dial_succeeded(self, address: Address) -> None:
        self._failures.pop(address, None)

    def backing_off(self, address: Address, now: float) -> bool:
        """Whether ``address`` failed lately: ``redial_backoff`` after one failure, doubled at
        each failure in a row, at most ``max_redial_wait``."""
        failures, last = self._failures.get(address, (0, 0.0))
        if not failures:
            return False
        wait = min(self.redial_backoff * 2.0 ** (failures - 1), self.max_redial_wait)
        return now < last + wait

    def learn(self, address: Address, peer_id: bytes) -> None:
        self.peer_at[address] = peer_id

    def ban(self, peer: str) -> list[Address]:
        """Ban every listening address known for a banned peer (peer id as text); returns
        them, sorted."""
        addresses = sorted(a for a, peer_id in self.peer_at.items()
                           if peer_id_text(peer_id) == peer)
        self.trust.ban_addresses(addresses)
        return addresses
