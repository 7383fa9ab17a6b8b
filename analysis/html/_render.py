"""The Jinja2 environment of the HTML reports, the figure helper and the number formats."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

TEMPLATES = Path(__file__).parent / "templates"


def _number(value: Any, digits: int = 3) -> str:
    """``8.13``, ``0.947``, ``1234``; ``–`` for none/NaN."""
    if value is None or isinstance(value, jinja2.Undefined) or (
            isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:.0f}"
    return str(value)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _number
    return env


_ENV: jinja2.Environment | None = None


def render(template: str, **context: Any) -> str:
    global _ENV
    if _ENV is None:
        _ENV = _environment()
    return _ENV.get_template(template).render(**context)


def figure(name: str, caption: str, make: Callable[[], str]) -> dict[str, Any]:
    """A figure for a template: its inline SVG, or the reason it could not be drawn (a report
    shows what it can rather than failing on one figure)."""
    try:
        return {"name": name, "caption": caption, "svg": Markup(make()), "error": None}
    except Exception as exc:
        return {"name": name, "caption": caption, "svg": None,
                "error": f"{type(exc).__name__}: {exc}"}


def write_page(path: Path, text: str) -> Path:
    """Write atomically: a report being rewritten is never seen half written."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
