"""Reading JSON files and JSON-lines logs: whole-file decoding, line numbers for errors, the
schema check, and the tracker's and the resource sampler's logs (docs/run-directory.md)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from analysis._tables import TRACKER, problem
from peer.errors import TestbedError

loads: Callable[[bytes], Any]
try:  # optional: about three times faster than the standard library on these logs
    import orjson

    loads = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    loads = json.loads

KNOWN_SCHEMAS = frozenset({1})


class AnalysisError(TestbedError, ValueError):
    """A run directory or log the analysis cannot read; the message names the file (and line)."""


def read_json(path: Path, *, required: bool, warnings: list[str] | None = None) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise AnalysisError(f"{path}: missing") from None
        return None
    except OSError as exc:
        raise AnalysisError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        message = f"{path}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        if required:
            raise AnalysisError(message) from None
        assert warnings is not None
        warnings.append(message + "; ignored")
        return None


def read_lines(path: Path) -> list[bytes]:
    """The file's lines, without trailing blank ones."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AnalysisError(f"{path}: cannot read: {exc.strerror}") from None
    raw_lines = data.split(b"\n")
    last = len(raw_lines)
    while last > 0 and not raw_lines[last - 1].strip():
        last -= 1
    del raw_lines[last:]
    return raw_lines


def records(path: Path, warnings: list[str],
            raw_lines: list[bytes] | None = None) -> tuple[list[Any], list[int] | None]:
    """Every object of a JSON-lines file, and their 1-based line numbers (None: record k is on
    line k + 1). A malformed last line is dropped with a warning.

    Fast path: the lines joined into one JSON array and decoded in a single call, which spares
    a million calls' overhead. Anything unusual (a truncated or malformed line, blank lines in
    the middle) falls back to decoding line by line, which names the bad line.
    """
    if raw_lines is None:
        raw_lines = read_lines(path)
    if not raw_lines:
        return [], None
    numbers: list[int] | None
    try:
        found = loads(b"[" + b",".join(raw_lines) + b"]")
        numbers = None
    except ValueError:
        found, numbers = _records_by_line(path, raw_lines, warnings)
    for k, rec in enumerate(found):
        if type(rec) is not dict:
            raise AnalysisError(f"{path}:{line_number(k, numbers)}: expected a JSON object, "
                                f"got {type(rec).__name__}")
    return found, numbers


def line_number(k: int, numbers: list[int] | None) -> int:
    """The line of record k (``records``' numbering)."""
    return k + 1 if numbers is None else numbers[k]


def _records_by_line(path: Path, raw_lines: list[bytes],
                     warnings: list[str]) -> tuple[list[Any], list[int]]:
    """Line-by-line decoding: a peer killed with SIGKILL may leave its last line half written
    (docs/log-schema.md); any other malformed line means a damaged file, an error naming it."""
    found: list[Any] = []
    numbers: list[int] = []
    last = len(raw_lines)
    for i, raw in enumerate(raw_lines):
        if not raw.strip():
            continue
        try:
            rec = loads(raw)
        except ValueError as exc:
            if i == last - 1:
                warnings.append(f"{path}:{i + 1}: truncated last line skipped "
                                f"({len(raw)} bytes: {_short(exc)})")
                break
            raise AnalysisError(f"{path}:{i + 1}: malformed JSON line: {_short(exc)}") from None
        found.append(rec)
        numbers.append(i + 1)
    return found, numbers


def _short(exc: Exception) -> str:
    return str(exc).split(":")[0]


def check_schema(path: Path, lineno: int, rec: dict[str, Any]) -> None:
    schema = rec.get("schema")
    if schema not in KNOWN_SCHEMAS:
        known = ", ".join(str(s) for s in sorted(KNOWN_SCHEMAS))
        raise AnalysisError(
            f"{path}:{lineno}: event log schema {schema!r} is not one this analysis reads "
            f"(known: {known}); use a testbed version that matches the run")


def locate(path: Path, found: list[dict[str, Any]], numbers: list[int] | None,
           exc: Exception) -> AnalysisError:
    """The error naming the first line whose event lacks a field or has one of a bad type."""
    for k, rec in enumerate(found):
        line = line_number(k, numbers)
        ev = rec.get("ev")
        if ev is None:
            return AnalysisError(f"{path}:{line}: event without 'ev'")
        fault = problem(rec, ev)
        if fault:
            return AnalysisError(f"{path}:{line}: {ev!r} event: {fault}")
    return AnalysisError(f"{path}: bad event: {exc!r}")


def read_tracker_log(path: Path, warnings: list[str]) -> list[tuple[Any, ...]]:
    """The tracker's ``announce`` lines as rows of ``TRACKER``."""
    if not path.is_file():
        return []
    rows = []
    keys = [c.field for c in TRACKER.columns]
    found, numbers = records(path, warnings)
    for k, rec in enumerate(found):
        ev = rec.get("ev")
        if ev == "start":
            check_schema(path, line_number(k, numbers), rec)
        elif ev in TRACKER.events:
            rows.append(tuple(rec.get(key) for key in keys))
    return rows


def read_resources(path: Path, warnings: list[str]) -> list[tuple[Any, ...]]:
    """One row per process per sample, in the order of ``RESOURCES``' columns."""
    if not path.is_file():
        return []
    rows = []
    found, numbers = records(path, warnings)
    for k, rec in enumerate(found):
        try:
            t, host = rec["t"], rec.get("host_cpu")
            for proc, p in (rec.get("procs") or {}).items():
                rows.append((t, proc, p.get("pid"), p.get("cpu"), p.get("rss"), host))
        except (KeyError, AttributeError, TypeError) as exc:
            raise AnalysisError(f"{path}:{line_number(k, numbers)}: bad resource sample: "
                                f"{exc}") from None
    return rows
