"""Rich table helpers shared by the commands: a ticker column that always shows tickers whole.

Rich shrinks a table that is wider than the terminal in two steps: first it narrows the columns
that may wrap (``no_wrap=False``, no fixed width), widest first; if that is not enough it narrows
every column evenly — ``no_wrap`` ones too, which then lose their tail (``KXCPIYO…``). After both
steps each column is clamped back up to its ``min_width``. So a ticker column stays whole when it
is ``no_wrap=True`` (never split across lines, and not narrowed in the first step) with a
``min_width`` of its longest cell (not narrowed by the last step either). ``overflow="fold"``
would not help: on a wrapping column it splits the ticker over lines, on a ``no_wrap`` one it
crops it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.cells import cell_len
from rich.table import Table


def add_ticker_column(table: Table, header: str, tickers: Iterable[str | None], **kw: Any) -> None:
    """Add a column for market tickers that never wraps or truncates, however narrow the
    terminal: the other columns shrink or wrap instead."""
    longest = max((cell_len(t) for t in tickers if t), default=0)
    table.add_column(header, no_wrap=True, min_width=max(longest, cell_len(header), 1), **kw)
