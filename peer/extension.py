"""The little of BEP 10 (the extension protocol) the peer speaks: its listening port.

Every testbed peer is 127.0.0.1, and a connection accepted from a neighbour shows its ephemeral
port, not the one it listens on; the ``p`` key of the BEP 10 handshake tells it, so the tracker's
address of a neighbour is known and the neighbour is not dialled a second time.
"""

from __future__ import annotations

import functools

from peer import bencode, wire
from peer.errors import BencodeError

EXTENSION_BIT = 0x10
"""BEP 10: reserved byte 5, bit 0x10 announces the extension protocol."""
EXTENDED = 20
"""BEP 10's message id."""
RESERVED = bytes([0, 0, 0, 0, 0, EXTENSION_BIT, 0, 0])
"""The reserved bytes of our handshake."""


def supports_extensions(reserved: bytes) -> bool:
    return bool(reserved[5] & EXTENSION_BIT)


@functools.cache
def extended_handshake(listen_port: int) -> bytes:
    """Our BEP 10 handshake, encoded: only the port we listen on ("p"). The same bytes for
    every connection, so made once."""
    payload = b"\x00" + bencode.encode({"m": {}, "p": listen_port, "v": "bt-testbed"})
    return wire.encode(wire.Unknown(msg_id=EXTENDED, payload=payload))


def listening_port(message: wire.Message) -> int | None:
    """The port a BEP 10 handshake says the remote listens on (None: not one, or no port).
    Liberal in what we accept: extensions are optional, so anything malformed is ignored."""
    if not isinstance(message, wire.Unknown) or message.msg_id != EXTENDED:
        return None
    payload = message.payload
    if not payload or payload[0] != 0:
        return None
    try:
        handshake = bencode.decode(payload[1:])
    except BencodeError:
        return None
    port = handshake.get(b"p") if isinstance(handshake, dict) else None
    return port if isinstance(port, int) and 0 < port < 65536 else None
