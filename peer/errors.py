"""One error family for the whole project.

Every error a user or a remote peer can cause derives from ``TestbedError`` and carries the
facts needed to say what went wrong and where, so that command-line front ends can print one
clear line and exit with status 2 instead of a traceback.
"""

from __future__ import annotations


class TestbedError(Exception):
    """Root of every error the testbed raises on bad input."""

    __test__ = False  # not a pytest test class despite the name


class BencodeError(TestbedError, ValueError):
    """Malformed bencoded data; ``offset`` is the byte position where decoding failed."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        self.offset = offset
        where = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"{message}{where}")


class MetainfoError(TestbedError, ValueError):
    """A .torrent file that is not valid BEP 3 metainfo; ``key`` names the offending field."""

    def __init__(self, message: str, key: str | None = None, path: str | None = None) -> None:
        self.key = key
        self.path = path
        self.detail = message
        """The message without the key and path it is prefixed with."""
        parts = [p for p in (path, f"key {key!r}" if key else None) if p]
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class ConfigError(TestbedError, ValueError):
    """A peer or tracker configuration value that cannot be used; names the key."""

    def __init__(self, message: str, key: str | None = None, path: str | None = None) -> None:
        self.key = key
        self.path = path
        self.detail = message
        """The message without the key and path it is prefixed with."""
        parts = [p for p in (path, key) if p]
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class RemoteProtocolError(TestbedError):
    """The remote side broke the wire protocol. Closes that one connection, nothing more."""


class LocalProtocolError(TestbedError):
    """We were asked to send something the protocol forbids: a bug on our side."""
