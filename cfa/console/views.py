"""How the console shows values: the Jinja environment (autoescaped) and its filters.

The filters here and the formatters in ``static/console.js`` print the same value the same way
(the server renders the first state, the script every later one): prices in dollars with three
decimals, inventory signed, money signed with four decimals, γ and σ with four significant
digits, times UTC.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import jinja2

TEMPLATES: Final = Path(__file__).with_name("templates")
STATIC: Final = Path(__file__).with_name("static")
DASH: Final = "—"


def price(v: Any) -> str:
    """A price in dollars: ``0.523``; ``—`` when there is none."""
    if v is None or isinstance(v, bool):
        return DASH
    try:
        return f"{float(v):.3f}"
    except (TypeError, ValueError):
        return str(v)


def signed(v: Any) -> str:
    """A signed count: ``+3``, ``-2``, ``0``."""
    if v is None:
        return DASH
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    text = f"{f:g}"
    return f"+{text}" if f > 0 else text


def money(v: Any) -> str:
    """Dollars, signed, four decimals: ``+0.1234`` (decimal strings accepted)."""
    if v is None:
        return DASH
    try:
        return f"{float(v):+.4f}"
    except (TypeError, ValueError):
        return str(v)


def num(v: Any) -> str:
    """A parameter such as γ or σ: four significant digits, ``—`` when unknown."""
    if v is None or isinstance(v, bool):
        return DASH if v is None else str(v)
    if isinstance(v, int | float):
        if not math.isfinite(v):
            return str(v)
        return f"{float(v):.4g}"
    return str(v)


def ts(v: Any, *, date: bool = True) -> str:
    """UTC time of epoch milliseconds: ``2026-12-03 16:44:05`` (``—`` when none)."""
    if v is None:
        return DASH
    try:
        dt = datetime.fromtimestamp(float(v) / 1000.0, tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return str(v)
    return dt.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")


def pretty(v: Any) -> str:
    """A JSON payload, indented for people (escaped by the template like any text)."""
    return json.dumps(v, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def short(text: Any, n: int = 120) -> str:
    """``text`` on one line, cut at ``n`` characters with an ellipsis."""
    t = " ".join(str(text or "").split())
    return t if len(t) <= n else t[: n - 1] + "…"


def environment() -> jinja2.Environment:
    """The console's template environment: autoescape on for every template, strict
    undefined names, the filters of this module."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        price=price, signed=signed, money=money, num=num, ts=ts, pretty=pretty, short=short
    )
    return env
