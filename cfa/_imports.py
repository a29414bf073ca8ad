"""Import plumbing that keeps short commands (``cfa govern``, ``cfa traces``, ``cfa audit``) fast.

``from cfa._imports import sqlite_utils`` gives the :mod:`sqlite_utils` module, imported without
pandas and numpy unless the process has already loaded them. sqlite_utils imports both at import
time whenever they are installed (statsmodels brings pandas): ~0.5 s of CPU, the largest part of
``cfa govern halt``'s start-up, for features cfa never uses (cfa creates tables and indexes and
runs queries through it; it never hands it DataFrames or numpy values). The two imports are made
to fail only while sqlite_utils itself is being imported, so later imports of pandas or numpy
(``cfa run`` needs both) work as usual; sqlite_utils just keeps its pandas and numpy support off
for the rest of that process.
"""

from __future__ import annotations

import importlib
import sys
import threading
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlite_utils

__all__ = ["load_sqlite_utils", "sqlite_utils"]

_OPTIONAL = ("pandas", "numpy")
"""What sqlite_utils imports only to support values cfa never gives it."""


_lock = threading.Lock()
_loaded: list[ModuleType] = []
"""The module once its import has finished (``sys.modules`` holds it while it is still being
imported, by another thread: handing that half-made module out failed concurrent first reads)."""


def load_sqlite_utils() -> ModuleType:
    """:mod:`sqlite_utils`, imported without pandas and numpy if neither is loaded yet; safe to
    call from several threads at once (the first import is made under a lock)."""
    if _loaded:
        return _loaded[0]
    with _lock:
        if _loaded:
            return _loaded[0]
        blocked = [name for name in _OPTIONAL if name not in sys.modules]
        for name in blocked:
            sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError
        try:
            module = importlib.import_module("sqlite_utils")
        finally:
            for name in blocked:
                if name in sys.modules and sys.modules[name] is None:
                    del sys.modules[name]
        _loaded.append(module)
        return module


if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        if name == "sqlite_utils":
            return load_sqlite_utils()
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
