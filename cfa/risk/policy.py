"""Risk policy: a validated, frozen model of ``policies/*.yaml``.

A policy sets the bounds of the parameters agents may change (γ, σ) and of the ones they may
not (k, A, size), the hard limits the risk gate enforces, and the breakers. Unknown keys and
invalid values are rejected with a message naming the key and the file; a loop never starts on
a bad policy. Units: contracts for sizes and positions, dollars for money, seconds for time,
γ in 1/dollar, σ in logit units per √second, k in 1/dollar, A in fills per second.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cfa._files import read_named_or_path


class PolicyError(ValueError):
    """The policy file is missing, unreadable or invalid; the message names the file and key."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ParamBounds(_Frozen):
    """Bounds of one quoting parameter and how fast agents may move it."""

    min: float = Field(gt=0)
    max: float = Field(gt=0)
    default: float = Field(gt=0)
    max_step: float = Field(default=0.5, gt=0, le=10)
    """Largest relative change in one tool call: ``|new/old − 1| <= max_step``."""
    cooldown_s: float = Field(default=60.0, ge=0)
    """Least time between two agent changes of this parameter, seconds."""
    approval_step: float | None = Field(default=None, gt=0)
    """A relative change larger than this waits for governance approval (None: never)."""
    window_s: float = Field(default=600.0, gt=0)
    """The window of the cumulative limit, seconds."""
    window_factor: float = Field(default=2.0, gt=1)
    """Within any ``window_s``, agents may move the parameter at most this factor away from
    any value it had in the window (×2: from 1 no higher than 2 and no lower than 0.5); a
    change beyond it waits for approval, however small each step."""

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.min <= self.default <= self.max:
            raise ValueError(
                f"need min <= default <= max, got {self.min}, {self.default}, {self.max}"
            )
        return self

    def contains(self, value: float) -> bool:
        return math.isfinite(value) and self.min <= value <= self.max


class Params(_Frozen):
    gamma: ParamBounds
    sigma: ParamBounds
    k: ParamBounds


class Quoting(_Frozen):
    """Fixed quoting settings (not agent-controlled)."""

    model: Literal["as", "glft", "naive"] = "as"
    """``naive`` quotes ``mid ± half_spread`` (the evaluation's baseline; agents have no say)."""
    half_spread: float = Field(default=0.01, gt=0, lt=0.5)
    """Dollars: the ``naive`` model's fixed half-spread (other models ignore it)."""
    size: float = Field(default=5, gt=0)
    """Contracts per side."""
    A: float = Field(default=1.0, gt=0)
    horizon_s: float = Field(default=3600.0, gt=0)
    """Longest τ, seconds: τ = min(time to close, horizon_s, measured holding time)."""
    horizon_min_s: float = Field(default=30.0, gt=0)
    """The measured holding time of inventory is used as τ no lower than this, seconds."""
    edge_buffer: float = Field(default=0.0, ge=0, lt=0.5)
    """Dollars per contract a quote must earn beyond the expected fee and the measured adverse
    selection (slippage the models do not see: the book moving between quote and fill)."""
    improve_queue: float = Field(default=10.0, ge=0)
    """Contracts: with at least this much of others' size at their best, a side whose model
    price stands behind it improves on it by a tick (when the edge floor allows) instead of
    joining the queue."""
    min_requote_s: float = Field(default=1.0, ge=0)
    """Requote at least this often even when the touch is unchanged (τ moves), seconds."""
    min_order_age_s: float = Field(default=1.0, ge=0)
    """An order is not moved again within this many seconds of its last placement or amend
    (cancels are never delayed): bounds order churn and the order rate, seconds."""
    event_aware: bool = True
    """Quote the markets of one event (a strike ladder, an exclusive set) with covariance-aware
    reservation prices, ``r_i = s_i − γ·τ·Σ_j Σ_ij·q_j`` (``docs/events.md``); off: each market
    as if it were alone (its own inventory only)."""


class Warmup(_Frozen):
    """The loop quotes only after warm-up: a bounded wait for the σ estimate."""

    min_samples: int = Field(default=12, ge=1)
    """Long-scale σ returns required before READY (the first needs ``sigma_horizon_s`` of
    history, then one comes every ``sigma_interval_s``)."""
    max_s: float = Field(default=300.0, gt=0)
    """After this many seconds the loop goes READY on the policy's default σ if still cold."""
    sigma_interval_s: float = Field(default=5.0, gt=0)
    """Seconds between the mid samples of the σ estimator (short scale)."""
    sigma_horizon_s: float = Field(default=120.0, gt=0)
    """Seconds of the σ estimator's long-scale returns (cancels the grid's bid-ask bounce)."""
    sigma_half_life_s: float = Field(default=600.0, gt=0)
    """Half-life of the σ estimator's averages, seconds."""
    prior_weight: float = Field(default=0.0, ge=0)
    """Weight of the policy's default σ in the estimate, in long-scale returns' worth."""

    @model_validator(mode="after")
    def _scales(self) -> Self:
        if self.sigma_horizon_s <= self.sigma_interval_s:
            raise ValueError("sigma_horizon_s must exceed sigma_interval_s")
        return self


class MarketLimits(_Frozen):
    """Per-market hard limits."""

    max_position: float = Field(default=50, gt=0)
    """Contracts, counting resting orders on the side that would add to the position."""
    max_order_size: float = Field(default=25, gt=0)
    """Contracts per order."""
    max_resting_exposure: float = Field(default=100.0, gt=0)
    """Dollars of collateral in resting orders (bid: p·count; ask: (1−p)·count)."""
    max_dollars_at_risk: float = Field(default=200.0, gt=0)
    """Dollars: worst-case settlement loss of the position plus every resting order filled."""


class PortfolioLimits(_Frozen):
    """Limits across markets."""

    max_gross_exposure: float = Field(default=1000.0, gt=0)
    """Dollars at risk summed over all markets."""
    max_event_exposure: float = Field(default=500.0, gt=0)
    """Dollars at risk summed over the markets of one event (each market's worst case added up,
    as if they could all lose at once: a coarse cap that ignores how the markets are tied)."""
    max_event_worst_loss: float = Field(default=300.0, gt=0)
    """Dollars: the event's worst-case settlement loss over its outcomes (a strike ladder's
    intervals, an exclusive set's winners; see :mod:`cfa.risk.event_risk`), positions plus
    resting orders counted where they hurt. An order that would take it above this is denied
    (``event_worst_loss``) unless it does not raise it (a hedge)."""
    event_reduce_only_at: float = Field(default=0.9, gt=0, le=1)
    """Fraction of ``max_event_worst_loss``: at or above it the event's markets go
    ``REDUCE_ONLY`` (the event breaker)."""
    event_resume_below: float = Field(default=0.7, gt=0, lt=1)
    """Fraction of ``max_event_worst_loss``: the event breaker lifts its ``REDUCE_ONLY`` once
    the worst case is below it (hysteresis; less than ``event_reduce_only_at``)."""

    @model_validator(mode="after")
    def _hysteresis(self) -> Self:
        if self.event_resume_below >= self.event_reduce_only_at:
            raise ValueError(
                "event_resume_below must be less than event_reduce_only_at, got "
                f"{self.event_resume_below} and {self.event_reduce_only_at}"
            )
        return self


class LossLimits(_Frozen):
    """Loss limits; breaching one halts the market (``per_market``) or everything."""

    daily_loss: float = Field(default=100.0, gt=0)
    """Dollars: marked PnL of the portfolio below −daily_loss halts everything."""
    market_loss: float = Field(default=40.0, gt=0)
    """Dollars: marked PnL of one market below −market_loss halts that market."""
    max_drawdown: float = Field(default=60.0, gt=0)
    """Dollars: portfolio marked PnL this far below its peak halts everything."""


class Breakers(_Frozen):
    """Rate breakers, per market over a rolling minute."""

    max_orders_per_min: int = Field(default=240, gt=0)
    """Order actions (place, amend, cancel) per minute; beyond it new orders are denied."""
    max_errors_per_min: int = Field(default=10, gt=0)
    """Exchange errors per minute; beyond it the market is halted."""
    error_cooldown_s: float = Field(default=60.0, gt=0)
    """A market halted by the error-rate breaker resumes after this many seconds without a new
    error (a person's or another breaker's halt stays until lifted)."""


class Feed(_Frozen):
    stale_after_s: float = Field(default=15.0, gt=0)
    """No event at all from the exchange for this long (a dead feed, not a quiet market):
    cancel every resting order until data flows again."""


class CloseTaper(_Frozen):
    """Getting flat before close."""

    reduce_only_s: float = Field(default=900.0, ge=0)
    """REDUCE_ONLY this many seconds before the market closes."""
    halt_s: float = Field(default=120.0, ge=0)
    """HALTED this many seconds before close."""

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.halt_s > self.reduce_only_s:
            raise ValueError("halt_s must not exceed reduce_only_s")
        return self


class Agents(_Frozen):
    """How agent answers and approval requests are handled."""

    max_answer_age_s: float = Field(default=120.0, gt=0)
    """An answer applied more than this many seconds after its context was taken is rejected
    as stale (exchange time)."""
    approval_ttl_s: float = Field(default=300.0, gt=0)
    """A change waiting for approval expires after this many seconds (audited)."""
    max_calls_per_answer: int = Field(default=1, ge=1, le=5)
    """Tool calls applied from one answer; the rest are rejected as ``extra_call``."""
    approvals: Literal["governance", "person"] = "governance"
    """Who decides an agent's change that waits for approval: ``governance`` — a market
    agent's by the governance agent or a person, the governance agent's by a person;
    ``person`` — people only (a desk that keeps a person on every such change)."""


class Policy(_Frozen):
    """A whole risk policy. Load with :func:`load_policy`."""

    name: str = "default"
    params: Params
    quoting: Quoting = Quoting()
    warmup: Warmup = Warmup()
    market: MarketLimits = MarketLimits()
    portfolio: PortfolioLimits = PortfolioLimits()
    loss: LossLimits = LossLimits()
    price_band: float = Field(default=0.15, gt=0, le=1)
    """Dollars: every order price within ±price_band of the mid."""
    breakers: Breakers = Breakers()
    feed: Feed = Feed()
    close: CloseTaper = CloseTaper()
    agents: Agents = Agents()


def load_policy(source: str | Path | None = None) -> Policy:
    """Load and validate a policy.

    ``source`` is a path to a YAML file, the name of a packaged policy (``"default"``,
    ``"conservative"``), or None for ``default``. Raises :class:`PolicyError` naming the file and
    the offending key.
    """
    try:
        text, label = read_named_or_path(
            "default" if source is None else source, "cfa.policies", "policies"
        )
    except LookupError as exc:
        raise PolicyError(str(exc).replace("nothing shipped", "no packaged policy")) from None
    except OSError as exc:
        raise PolicyError(str(exc).replace("cannot read file", "cannot read policy file")) from None
    return parse_policy(text, label)


def parse_policy(text: str, label: str = "<policy>") -> Policy:
    """Validate policy YAML text; ``label`` names the file in errors."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{label}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise PolicyError(f"{label}: the top level must be a mapping of keys")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "<top>"
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{key}: {msg}")
        raise PolicyError(f"{label}: invalid policy: " + "; ".join(problems)) from exc
