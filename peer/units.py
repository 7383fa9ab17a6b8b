"""Sizes and rates with units, as people write them in topologies and on command lines.

``16MiB``, ``256 KiB``, ``512KiB/s``, ``4Mbit/s``, ``1.5 MB/s``, a bare number of bytes, or
``unlimited``. Binary prefixes (KiB, MiB, GiB) are powers of 1024; decimal prefixes (kB, MB, GB,
kbit, Mbit) powers of 1000, as their SI names say. Bits are divided by 8.
"""

from __future__ import annotations

import math
import re

_PREFIX = {"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
           "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}
_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKMGT]i?)?(B|bit|b)?\s*$")


def parse_size(text: str | int | float) -> int:
    """Bytes in ``text`` (``"16MiB"``, ``"256 KiB"``, ``"1e6"``, ``4096``); ValueError if not."""
    value = _parse_quantity(text, allow_bits=False, what="size")
    if value != int(value):
        raise ValueError(f"size {text!r} is not a whole number of bytes")
    return int(value)


def parse_rate(text: str | int | float | None) -> float | None:
    """Bytes per second in ``text`` (``"512KiB/s"``, ``"4Mbit/s"``); None for ``unlimited``."""
    if text is None:
        return None
    if isinstance(text, str):
        stripped = text.strip()
        if stripped.lower() in ("unlimited", "inf", "none"):
            return None
        if stripped.endswith("/s"):
            stripped = stripped[:-2]
        elif stripped.endswith("ps"):  # 4Mbps
            stripped = stripped[:-2] + ("bit" if stripped[-3:-2] == "b" else "")
            stripped = stripped.replace("bbit", "bit")
        text = stripped
    return _parse_quantity(text, allow_bits=True, what="rate")


def _parse_quantity(text: str | int | float, *, allow_bits: bool, what: str) -> float:
    if isinstance(text, bool):
        raise ValueError(f"{what} must be a number with a unit, not {text!r}")
    if isinstance(text, int | float):
        value = float(text)
    else:
        match = _QUANTITY.match(text)
        if not match:
            examples = "'512KiB/s', '4Mbit/s', 'unlimited'" if allow_bits else "'16MiB', '256KiB'"
            raise ValueError(f"cannot read {what} {text!r}: write it like {examples}")
        number, prefix, unit = match.groups()
        value = float(number) * _PREFIX[prefix or ""]
        if unit in ("bit", "b"):
            if not allow_bits:
                raise ValueError(f"{what} {text!r} is in bits; give bytes (B)")
            value /= 8
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be positive, got {text!r}")
    return value


def format_size(num_bytes: float) -> str:
    """``16.0 MiB``: the largest binary unit that keeps the number at or above 1."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(num_bytes) >= scale:
            return f"{num_bytes / scale:.1f} {unit}"
    return f"{num_bytes:.0f} B"


def format_rate(bytes_per_second: float | None) -> str:
    return "unlimited" if bytes_per_second is None else f"{format_size(bytes_per_second)}/s"
