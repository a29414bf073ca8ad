"""The control plane: the one apply path for people, breakers and agents.

:class:`ControlPlane` validates and applies every tool call (:mod:`cfa.control.tools`) against
the policy and in order of precedence (:class:`Actor`: person > breaker > governance agent >
market agent); :class:`ParameterStore` holds the parameters the fast path reads. See
``docs/control.md``. Depends only on :mod:`cfa.core` and :mod:`cfa.risk`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cfa.control.approvals import PendingChange
    from cfa.control.outcomes import Code, ToolOutcome, Verdict
    from cfa.control.params import MarketParams, ParamChange, ParameterStore
    from cfa.control.plane import ControlPlane
    from cfa.control.tools import GOVERNANCE_TOOLS, MARKET_TOOLS, ParsedCall, parse_call
    from cfa.risk.actors import Actor

_LAZY: dict[str, str] = {
    "Actor": "cfa.risk.actors",
    "PendingChange": "cfa.control.approvals",
    "Code": "cfa.control.outcomes",
    "ToolOutcome": "cfa.control.outcomes",
    "Verdict": "cfa.control.outcomes",
    "MarketParams": "cfa.control.params",
    "ParamChange": "cfa.control.params",
    "ParameterStore": "cfa.control.params",
    "ControlPlane": "cfa.control.plane",
    "GOVERNANCE_TOOLS": "cfa.control.tools",
    "MARKET_TOOLS": "cfa.control.tools",
    "ParsedCall": "cfa.control.tools",
    "parse_call": "cfa.control.tools",
}
"""The names below are imported lazily (PEP 562): ``cfa govern`` (the kill switch) imports
:mod:`cfa.control.tools` and :mod:`cfa.control.outcomes` and must not pay for the plane, the
parameter store and the policy (pydantic models, yaml)."""

__all__ = [
    "GOVERNANCE_TOOLS",
    "MARKET_TOOLS",
    "Actor",
    "Code",
    "ControlPlane",
    "MarketParams",
    "ParamChange",
    "ParameterStore",
    "ParsedCall",
    "PendingChange",
    "ToolOutcome",
    "Verdict",
    "parse_call",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cfa.control' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
