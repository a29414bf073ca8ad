"""Parsing of human-friendly option values, with one-line errors."""

from __future__ import annotations

import math
import re

import typer

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def duration_seconds(text: str) -> float:
    """``"1h"``, ``"15m"``, ``"90s"``, ``"3600"`` -> seconds; ValueError unless positive, finite."""
    m = _DURATION.match(str(text))
    if not m:
        raise ValueError(f"cannot read {text!r}; use e.g. 90s, 15m, 1h")
    value = float(m.group(1)) * _UNITS[m.group(2)]
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"must be positive, got {text!r}")
    return value


def parse_duration(text: str, option: str = "--duration") -> float:
    """:func:`duration_seconds` for an option: a bad value exits with one line naming it."""
    try:
        return duration_seconds(text)
    except ValueError as exc:
        raise fail(f"{option}: {exc}") from None


def parse_speed(text: str) -> float | None:
    """``"max"`` -> None (as fast as the CPU allows); ``"1x"``, ``"10x"``, ``"0.5"`` -> factor."""
    t = text.strip().lower()
    if t in ("max", "fast", "0"):
        return None
    try:
        value = float(t.removesuffix("x"))
    except ValueError:
        raise fail(f"--speed: cannot read {text!r}; use max, 1x, 10x") from None
    if not (math.isfinite(value) and value > 0):
        raise fail(f"--speed: must be positive, got {text!r}")
    return value
