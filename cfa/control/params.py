"""The parameter store: the current quoting parameters of every market.

The fast path reads :meth:`ParameterStore.get` on every requote; the value is an immutable
:class:`MarketParams`, replaced whole on every change, so a reader never sees a half-applied
change. Writers are the warm-up (initial σ), the k calibration and the control plane
(:class:`cfa.control.plane.ControlPlane`: people, the governance agent, market agents) and
nothing else; every change is appended to the audit store's ``param_changes`` table by the
caller-supplied ``record`` hook.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from cfa.core.quoting import QuoteParams
from cfa.core.types import contracts
from cfa.risk.policy import Policy

ParamName = Literal["gamma", "sigma"]
TUNABLE: tuple[ParamName, ...] = ("gamma", "sigma")


@dataclass(frozen=True, slots=True)
class ParamChange:
    """One applied change, as recorded in ``param_changes``."""

    ticker: str
    param: str
    old: float
    new: float
    source: str
    reason: str
    ts: float


@dataclass(frozen=True, slots=True)
class MarketParams:
    """Quoting parameters of one market at one moment; ``quote`` is ready for the fast path."""

    gamma: float
    sigma: float
    k: float
    quote: QuoteParams
    frozen: frozenset[str] = field(default_factory=frozenset)
    """Frozen parameters: agents may not change them (who froze them: the control plane)."""
    overrides: dict[str, float] = field(default_factory=dict)
    """Overrides in force: parameter -> when the last one of its stack expires (epoch s)."""
    changed_at: dict[str, float] = field(default_factory=dict)
    """Last change time per parameter (epoch seconds), for cooldowns."""


def _quote_params(policy: Policy, gamma: float, sigma: float, k: float) -> QuoteParams:
    q = policy.quoting
    return QuoteParams(
        gamma=gamma,
        sigma=sigma,
        k=k,
        A=q.A,
        size=contracts(min(q.size, policy.market.max_order_size)),
        inventory_cap=contracts(policy.market.max_position),
        horizon=q.horizon_s,
        model=q.model,
        half_spread=q.half_spread,
        improve_queue=contracts(q.improve_queue),
    )


class ParameterStore:
    """Current :class:`MarketParams` per market, seeded from the policy defaults."""

    def __init__(self, policy: Policy, record: Callable[[ParamChange], None] | None = None) -> None:
        self.policy = policy
        self._record = record
        self._by_market: dict[str, MarketParams] = {}
        self.version = 0
        """Incremented on every change: the fast path compares it to notice changes cheaply."""

    def add_market(self, ticker: str) -> MarketParams:
        p = self.policy.params
        mp = MarketParams(
            gamma=p.gamma.default,
            sigma=p.sigma.default,
            k=p.k.default,
            quote=_quote_params(self.policy, p.gamma.default, p.sigma.default, p.k.default),
        )
        self._by_market[ticker] = mp
        return mp

    def get(self, ticker: str) -> MarketParams:
        return self._by_market[ticker]

    def markets(self) -> list[str]:
        return list(self._by_market)

    def replace(self, ticker: str, new: MarketParams) -> None:
        """Swap in a new value (frozen flags and override views; no quoting change)."""
        self._by_market[ticker] = new
        self.version += 1

    def set(
        self, ticker: str, param: str, value: float, *, source: str, reason: str, now: float
    ) -> ParamChange:
        """Apply one change that the caller has already validated; bounds are re-checked here.

        Raises ValueError when ``value`` is outside the policy bounds or not finite: no code path
        can put a parameter outside the policy.
        """
        bounds = getattr(self.policy.params, param, None)
        if bounds is None or param not in ("gamma", "sigma", "k"):
            raise ValueError(f"unknown parameter {param!r}")
        if not (
            isinstance(value, float | int)
            and math.isfinite(value)
            and bounds.contains(float(value))
        ):
            raise ValueError(
                f"{param}={value!r} outside policy bounds [{bounds.min}, {bounds.max}]"
            )
        old = self._by_market[ticker]
        values = {"gamma": old.gamma, "sigma": old.sigma, "k": old.k}
        before = values[param]
        values[param] = float(value)
        new = replace(
            old,
            gamma=values["gamma"],
            sigma=values["sigma"],
            k=values["k"],
            quote=_quote_params(self.policy, values["gamma"], values["sigma"], values["k"]),
            changed_at={**old.changed_at, param: now},
        )
        self._by_market[ticker] = new
        self.version += 1
        change = ParamChange(ticker, param, before, float(value), source, reason, now)
        if self._record is not None:
            self._record(change)
        return change
