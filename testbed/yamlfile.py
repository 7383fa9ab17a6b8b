"""YAML input files (topologies, expectations): read with the line of every key and value, and
checked field by field, every complaint one line ``file:line: key.path: message``.

The YAML is composed (not loaded) so that every value keeps the line it came from; the node tree
is then turned into plain Python plus maps from key path (``groups[1].upload``) to line. Keys
PyYAML would silently resolve (a duplicate key keeps the last value, ``<<`` merges) are refused.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import yaml

from peer.config import RateLimit
from peer.errors import ConfigError, TestbedError
from peer.units import parse_rate, parse_size
from testbed.limits import MAX_FILE_BYTES, MAX_NESTING, MAX_SECONDS, MAX_VALUES

__all__ = [
    "FieldChecker",
    "InputFileError",
    "YamlDocument",
    "closest_match",
    "describe",
    "did_you_mean",
    "is_number",
    "read_text_file",
    "read_yaml",
]

T = TypeVar("T")


class InputFileError(TestbedError, ValueError):
    """An input file that cannot be used: ``file``, ``key`` (a path like ``groups[1].upload``),
    ``line`` (1-based) and ``message`` say what and where."""

    unnamed = "<input>"
    """How ``str()`` names the file when ``file`` is not known."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None,
                 line: int | None = None) -> None:
        self.message = message
        self.file = file
        self.key = key
        self.line = line
        super().__init__(message)

    def __str__(self) -> str:
        where = self.file or self.unnamed
        if self.line is not None:
            where = f"{where}:{self.line}"
        text = f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"
        return text.translate(_ONE_LINE)  # a key or value quoted from the file may hold "\n"


_ONE_LINE = {c: f"\\x{c:02x}" for c in [*range(32), 127] if chr(c) != "\t"} | {
    10: "\\n", 13: "\\r"}


def read_text_file(path: str | Path, what: str, error: type[InputFileError]) -> str:
    """The text of an input file, or ``error`` naming the file and what is wrong with it;
    ``what`` is what the file should be (``a topology file``). Files over ``MAX_FILE_BYTES``
    are refused unread (reading stops there, so ``/dev/zero`` is refused too)."""
    file = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise error("no such file", file=file) from None
    except IsADirectoryError:
        raise error(f"is a directory, not {what}", file=file) from None
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror}", file=file) from None
    if len(data) > MAX_FILE_BYTES:
        raise error(f"larger than {MAX_FILE_BYTES // 1024} KiB: too large for {what}",
                    file=file)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"not UTF-8 text (byte {exc.start})", file=file) from None


# ---------------------------------------------------------------------------------------------
# YAML with lines

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_STR_TAG = "tag:yaml.org,2002:str"


@dataclass(frozen=True, slots=True)
class YamlDocument:
    """A YAML document as plain Python, with the 1-based line of everything in it."""

    value: Any
    lines: dict[str, int]
    """The line where the value at each key path starts (``""``: the whole document)."""
    key_lines: dict[str, int]
    """The line of each mapping key and each list item, by key path."""


def read_yaml(text: str, file: str, *, error: type[InputFileError], empty: str) -> YamlDocument:
    """Plain Python from YAML text, with lines; ``error`` for what cannot be read, with the
    message ``empty`` for a document with nothing in it. Bounded (testbed.limits): at most
    ``MAX_FILE_BYTES`` of text, ``MAX_NESTING`` levels, ``MAX_VALUES`` values with aliases
    expanded."""
    if len(text) > MAX_FILE_BYTES:
        raise error(f"larger than {MAX_FILE_BYTES // 1024} KiB: too large to read", file=file)
    loader = None
    try:
        loader = _BoundedLoader(text)  # reads the text: may raise a ReaderError
        root = loader.get_single_node()
    except _TooDeep as exc:
        raise error(f"nested more than {MAX_NESTING} levels deep (mappings and lists)",
                    file=file, line=_mark_line(exc.mark)) from None
    except yaml.MarkedYAMLError as exc:
        raise error(f"YAML syntax: {_syntax_problem(exc)}", file=file,
                    line=_mark_line(exc.problem_mark or exc.context_mark)) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise error(f"character U+{exc.character:04X} is not allowed in YAML (control "
                    "characters are not)", file=file, line=line) from None
    except yaml.YAMLError as exc:
        raise error(f"YAML: {' '.join(str(exc).split())}", file=file) from None
    finally:
        if loader is not None:
            loader.dispose()
    if root is None:
        raise error(empty, file=file, line=1)
    return _Converter(file, error, aliases=loader.aliases).document(root)


class _TooDeep(Exception):
    def __init__(self, mark: yaml.Mark | None) -> None:
        super().__init__("too deep")
        self.mark = mark


class _BoundedLoader(yaml.SafeLoader):  # type: ignore[misc]  # yaml has no types
    """PyYAML's composer recurses once per nesting level: 10,000 brackets exhaust Python's
    stack. This one stops at ``MAX_NESTING`` and counts aliases (for the messages)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
        self.depth += 1
        try:
            if self.depth > MAX_NESTING:
                raise _TooDeep(self.peek_event().start_mark)
            node: yaml.Node = super().compose_node(parent, index)
            return node
        finally:
            self.depth -= 1


def _mark_line(mark: yaml.Mark | None) -> int | None:
    return mark.line + 1 if mark is not None else None


def _syntax_problem(exc: yaml.MarkedYAMLError) -> str:
    problem: str = exc.problem or exc.context or "cannot parse"
    if exc.context and exc.problem and exc.context_mark is not None:
        problem = f"{problem} ({exc.context} at line {exc.context_mark.line + 1})"
    if "block end" in problem or "not allowed here" in problem:
        # PyYAML's words for the commonest mistake are cryptic: say it plainly.
        problem += "; check the indentation of this line and the one before"
    return problem


class _Converter:
    """Walks a composed node tree into plain Python, recording the lines. Aliases make the
    tree a graph whose expansion can be exponential in its size: the walk counts every value
    it produces and its depth, and stops at the limits."""

    def __init__(self, file: str, error: type[InputFileError], *, aliases: int = 0) -> None:
        self.file = file
        self.error = error
        self.aliases = aliases
        self.values = 0
        self.depth = 0
        self.lines: dict[str, int] = {}
        self.key_lines: dict[str, int] = {}
        self.scalars = yaml.SafeLoader("")  # only its scalar constructors are used

    def document(self, root: yaml.Node) -> YamlDocument:
        return YamlDocument(self.convert(root, ""), self.lines, self.key_lines)

    def fail(self, path: str, node: yaml.Node, message: str) -> NoReturn:
        raise self.error(message, file=self.file, key=path or None,
                         line=node.start_mark.line + 1)

    def convert(self, node: yaml.Node, path: str) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:
            expanded = " once its aliases (*name) are expanded" if self.aliases else ""
            self.fail(path, node, f"the document holds more than {MAX_VALUES:,} values"
                                  f"{expanded}; no input file needs that many")
        if self.depth >= MAX_NESTING:
            self.fail(path, node, f"nested more than {MAX_NESTING} levels deep "
                                  "(with aliases expanded)")
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            return self.nested(self.mapping, node, path)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ_TAG:
                self.fail(path, node, f"unsupported YAML tag {node.tag}")
            return self.nested(self.sequence, node, path)
        try:
            return self.scalars.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.fail(path, node, f"cannot read value: {getattr(exc, 'problem', exc)}")
        except ValueError as exc:  # e.g. an integer of more digits than Python converts
            self.fail(path, node, f"cannot read value: {exc}")

    def nested(self, convert: Callable[[Any, str], T], node: yaml.Node, path: str) -> T:
        self.depth += 1
        try:
            return convert(node, path)
        finally:
            self.depth -= 1

    def sequence(self, node: yaml.SequenceNode, path: str) -> list[Any]:
        items = []
        for i, item in enumerate(node.value):
            child = f"{path}[{i}]"
            self.key_lines[child] = item.start_mark.line + 1
            items.append(self.convert(item, child))
        return items

    def key_kind(self, node: yaml.Node) -> str:
        """What a key that is not a name is, without building it (it may be an alias bomb)."""
        if isinstance(node, yaml.MappingNode):
            return "a mapping"
        if isinstance(node, yaml.SequenceNode):
            return "a list"
        try:
            return describe(self.scalars.construct_object(node))
        except (yaml.YAMLError, ValueError):
            return f"a value tagged {node.tag}"

    def mapping(self, node: yaml.MappingNode, path: str) -> dict[str, Any]:
        if node.tag != _MAP_TAG:
            self.fail(path, node, f"unsupported YAML tag {node.tag}")
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == _STR_TAG):
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == "<<":
                    self.fail(path, key_node,
                              "YAML merge keys (<<) are not supported: write the keys out")
                self.fail(path, key_node,
                          f"keys must be names (text), got {self.key_kind(key_node)}")
            key = key_node.value
            child = f"{path}.{key}" if path else key
            if key in result:
                self.fail(child, key_node,
                          f"duplicate key '{key}' (first at line {self.key_lines[child]}); "
                          "YAML would silently keep only the last one")
            self.key_lines[child] = key_node.start_mark.line + 1
            result[key] = self.convert(value_node, child)
        return result


# ---------------------------------------------------------------------------------------------
# Words for messages


def describe(value: Any) -> str:
    """A value as a message shows it: ``null``, ``true``, ``a mapping``, ``'text'``, ``3``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        # One line, and short: a message quotes what it refuses, not a whole stray document.
        text = value if value.isprintable() else repr(value)[1:-1]
        return f"'{text[:77]}...'" if len(text) > 80 else f"'{text}'"
    if isinstance(value, int | float):
        return f"{value!r}"
    return f"{value!r} ({type(value).__name__})"


def is_number(value: Any) -> bool:
    """An int or float, and not a bool (YAML's true is an int to Python)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def closest_match(word: str, choices: Sequence[str]) -> str | None:
    """The choice ``word`` was most likely meant to be, if any is close enough."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or nothing."""
    close = closest_match(word, choices)
    return f" (did you mean '{close}'?)" if close else ""


def _parent(path: str) -> str:
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else ""


# ---------------------------------------------------------------------------------------------
# Field checks

_DURATION = re.compile(
    r"^\s*([+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(ms|s|sec|min|h)?\s*$")
_DURATION_UNITS = {None: 1.0, "s": 1.0, "sec": 1.0, "ms": 0.001, "min": 60.0, "h": 3600.0}
_RATE_KEYS = ("rate", "burst")


class FieldChecker:
    """Checks the fields of one YAML document: each check returns the typed value or raises
    ``error`` at the line of the field (or of its nearest ancestor in the file)."""

    def __init__(self, document: YamlDocument, file: str, error: type[InputFileError], *,
                 whole: str = "the file") -> None:
        self.file = file
        self.lines = document.lines
        self.key_lines = document.key_lines
        self.error = error
        self.whole = whole
        """What the document is, for messages about its top level (``the topology``)."""

    # -- reporting ------------------------------------------------------------------------

    def line(self, path: str, *, key: bool = False) -> int | None:
        """The line of ``path`` (its key's line with ``key``), else of its nearest ancestor."""
        while True:
            found = (self.key_lines if key else self.lines).get(path)
            if found is None and key:
                found = self.lines.get(path)
            if found is not None or not path:
                return found
            path = _parent(path)

    def fail(self, path: str, message: str, *, key: bool = False) -> NoReturn:
        """Raise the error at ``path``'s value (``key``: at its key, for unknown keys)."""
        raise self.error(message, file=self.file, key=path or None,
                         line=self.line(path, key=key))

    # -- shapes ---------------------------------------------------------------------------

    def mapping(self, value: Any, path: str, valid: Sequence[str],
                required: Sequence[str] = ()) -> dict[str, Any]:
        """A mapping whose keys are all ``valid`` and include every ``required`` one."""
        if not isinstance(value, dict):
            self.fail(path, f"must be a mapping of {', '.join(valid)}; got {describe(value)}")
        for key in value:
            if key not in valid:
                child = f"{path}.{key}" if path else key
                self.fail(child, f"unknown key '{key}'{did_you_mean(key, valid)}; "
                                 f"valid keys: {', '.join(valid)}", key=True)
        for key in required:
            if key not in value:
                self.fail(f"{path}.{key}" if path else key,
                          f"missing; {path or self.whole} needs '{key}'")
        return value

    def one_form(self, value: dict[str, Any], path: str, forms: dict[str, Callable[[], T]],
                 described: str) -> T:
        """A one-key mapping choosing a form, e.g. ``{poisson: {...}}``: that form's value."""
        if len(value) != 1:
            self.fail(path, f"takes exactly one form, got keys {', '.join(value) or 'none'}; "
                            f"write {described}")
        (form,) = value
        if form not in forms:
            self.fail(f"{path}.{form}", f"unknown form '{form}'{did_you_mean(form, list(forms))}"
                                        f"; write {described}", key=True)
        return forms[form]()

    # -- scalars --------------------------------------------------------------------------

    def integer(self, value: Any, path: str, minimum: int, maximum: int | None = None) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(path, f"must be a whole number, got {describe(value)}")
        if value < minimum:
            self.fail(path, f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            self.fail(path, f"must be at most {maximum}, got {value}")
        return value

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            self.fail(path, f"must be true or false, got {describe(value)}")
        return value

    def text(self, value: Any, path: str, pattern: re.Pattern[str] | None = None,
             what: str = "") -> str:
        """Text; with ``pattern``, a name it matches (``what`` says which names are valid)."""
        if not isinstance(value, str):
            self.fail(path, f"must be text, got {describe(value)}")
        if pattern is not None and not pattern.match(value):
            self.fail(path, f"{describe(value)} is not a valid name: {what}")
        return value

    def duration(self, value: Any, path: str, *, positive: bool = False,
                 check_sign: bool = True) -> float:
        """Seconds: a number, or text with a unit (``500ms``, ``10s``, ``2min``, ``1h``)."""
        if is_number(value):
            seconds = float(value)
        elif isinstance(value, str) and (match := _DURATION.match(value)):
            seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        else:
            self.fail(path, f"cannot read time {describe(value)}: write seconds like 30, "
                            "'30s', '500ms', '2min'")
        if not math.isfinite(seconds):
            self.fail(path, f"must be a finite time, got {describe(value)}")
        if check_sign and seconds < 0:
            self.fail(path, f"must not be negative, got {describe(value)}")
        if check_sign and positive and seconds == 0:
            self.fail(path, "must be more than 0 seconds")
        if abs(seconds) > MAX_SECONDS:
            self.fail(path, f"must be at most a week ({MAX_SECONDS:g} s), got {describe(value)}")
        return seconds

    def size(self, value: Any, path: str) -> int:
        """Bytes: ``16MiB``, ``256 KiB``, ``1MB`` or a number."""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.fail(path, f"must be a size like '16MiB', got {describe(value)}")
        try:
            return parse_size(value)
        except ValueError as exc:
            self.fail(path, str(exc))

    def rate(self, value: Any, path: str) -> RateLimit:
        """``512KiB/s``, ``unlimited``, a number of bytes/s, or ``{rate: ..., burst: ...}``."""
        burst: int | None = None
        if isinstance(value, dict):
            self.mapping(value, path, _RATE_KEYS, required=("rate",))
            if value.get("burst") is not None:
                burst = self.size(value["burst"], f"{path}.burst")
            rate_path, value = f"{path}.rate", value["rate"]
        else:
            rate_path = path
        if value is not None and (isinstance(value, bool)
                                  or not isinstance(value, str | int | float)):
            self.fail(rate_path, f"must be a rate like '512KiB/s' or 'unlimited', "
                                 f"got {describe(value)}")
        try:
            limit = RateLimit(rate=parse_rate(value), burst=burst)
        except ValueError as exc:
            self.fail(rate_path, str(exc))
        try:
            limit.validate(path)
        except ConfigError as exc:
            self.fail(f"{path}.burst" if burst is not None else path,
                      str(exc).removeprefix(f"{path}: "))
        return limit
