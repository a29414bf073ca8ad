"""The context summary an agent reads: compact, typed, a few hundred tokens.

Built from a market loop's state on the slow path. Numbers are rounded to four significant
digits to keep the JSON small (at most 2,000 characters per decision; measured in the README).
Market text (title, rules) is untrusted data: it is carried in ``market.title`` and
``market.rules`` and the prompts say never to follow instructions found there.

Units: prices and PnL in dollars, σ_logit per √second, σ_price dollars per √second, rates in
fills per quoted minute, times in seconds, inventory in contracts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from cfa.core.types import PRICE_SCALE, QTY_SCALE, Side

if TYPE_CHECKING:
    from cfa.core.regime import RegimeFlags
    from cfa.risk.policy import ParamBounds
    from cfa.risk.states import TradingStates
    from cfa.runtime.loop import MarketLoop
    from cfa.runtime.params import MarketParams

MAX_TEXT = 240


def r4(x: float | None) -> float | None:
    """Round to four significant digits; None and non-finite values become None."""
    if x is None or not math.isfinite(x):
        return None
    if x == 0:
        return 0.0
    return float(f"{x:.4g}")


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MarketText(_M):
    ticker: str
    title: str
    rules: str


class BookView(_M):
    mid: float | None
    microprice: float | None
    spread: float | None
    imbalance_l1: float | None
    imbalance_top5: float | None
    our_bid: float | None
    our_ask: float | None


class FlowView(_M):
    fills_per_min_bid: float | None
    fills_per_min_ask: float | None
    since_last_fill_s: float | None
    markout_5s: float | None
    markout_60s: float | None


class RiskView(_M):
    inventory: float
    position_limit: float
    limit_usage: float
    realized_pnl: float
    marked_pnl: float
    trading_state: str


class ParamView(_M):
    value: float
    min: float
    max: float
    max_step: float
    frozen: bool
    overridden: bool
    cooldown_left_s: float


class RegimeView(_M):
    status: str
    regime_shift: bool
    informed_flow: bool
    unstable: bool


class DecisionView(_M):
    ago_s: float
    tool: str
    verdict: str
    change: str | None
    pnl_after: float | None
    inventory_after: float | None
    fills_after: int | None


class MarketContext(_M):
    """The whole summary for one market agent decision."""

    market: MarketText
    time_to_close_s: float
    book: BookView
    sigma_logit_est: float | None
    sigma_price_est: float | None
    flow: FlowView
    risk: RiskView
    regime: RegimeView
    gamma: ParamView
    sigma: ParamView
    recent: list[DecisionView]

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=False)


def _param(name: str, mp: MarketParams, bounds: ParamBounds, now: float) -> ParamView:
    last = mp.changed_at.get(name)
    left = 0.0 if last is None else max(0.0, bounds.cooldown_s - (now - last))
    expiry = mp.overrides.get(name)
    return ParamView(
        value=r4(getattr(mp, name)) or 0.0,
        min=bounds.min,
        max=bounds.max,
        max_step=bounds.max_step,
        frozen=name in mp.frozen,
        overridden=expiry is not None and expiry > now,
        cooldown_left_s=round(left, 1),
    )


def build_context(
    loop: MarketLoop,
    mp: MarketParams,
    states: TradingStates,
    regime: RegimeFlags | None,
    recent: Sequence[DecisionView],
    now: float,
) -> MarketContext:
    """Summarise ``loop`` at time ``now`` (seconds)."""
    policy = loop.policy
    book = loop.book
    bb, ba = book.best_bid(), book.best_ask()
    bid, ask = loop.resting[Side.BID], loop.resting[Side.ASK]
    mid = loop.mid
    sig = loop.vol.sigma if loop.vol.samples else None
    fr = loop.fill_rates
    last_fills = [t for t in fr.last_fill_t.values() if t is not None]
    limit = policy.market.max_position
    inv = loop.account.inventory / QTY_SCALE
    return MarketContext(
        market=MarketText(
            ticker=loop.ticker,
            title=loop.market.title[:MAX_TEXT],
            rules=loop.market.rules[:MAX_TEXT],
        ),
        time_to_close_s=round(max(0.0, loop.market.close_ts - now), 1),
        book=BookView(
            mid=r4(mid),
            microprice=r4(book.microprice()),
            spread=None if bb is None or ba is None else r4((ba - bb) / PRICE_SCALE),
            imbalance_l1=r4(book.imbalance(1)),
            imbalance_top5=r4(book.imbalance(5)),
            our_bid=None if bid is None else bid.price / PRICE_SCALE,
            our_ask=None if ask is None else ask.price / PRICE_SCALE,
        ),
        sigma_logit_est=r4(sig),
        sigma_price_est=None if sig is None or mid is None else r4(mid * (1 - mid) * sig),
        flow=FlowView(
            fills_per_min_bid=r4(fr.per_minute(Side.BID)),
            fills_per_min_ask=r4(fr.per_minute(Side.ASK)),
            since_last_fill_s=round(now - max(last_fills), 1) if last_fills else None,
            markout_5s=r4(loop.markouts.average(5.0)),
            markout_60s=r4(loop.markouts.average(60.0)),
        ),
        risk=RiskView(
            inventory=inv,
            position_limit=limit,
            limit_usage=r4(abs(inv) / limit) or 0.0,
            realized_pnl=r4(float(loop.account.realized)) or 0.0,
            marked_pnl=r4(float(loop.account.marked(mid))) or 0.0,
            trading_state=states.effective(loop.ticker).value,
        ),
        regime=RegimeView(
            status="insufficient_data" if regime is None else regime.status,
            regime_shift=bool(regime and regime.regime_shift),
            informed_flow=bool(regime and regime.informed_flow),
            unstable=bool(regime and regime.unstable),
        ),
        gamma=_param("gamma", mp, policy.params.gamma, now),
        sigma=_param("sigma", mp, policy.params.sigma, now),
        recent=list(recent)[-3:],
    )


def portfolio_context(
    contexts: Sequence[MarketContext],
    escalations: Sequence[dict[str, Any]],
    pending: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """The governance agent's view: a line per market plus escalations and pending approvals."""
    rows = [
        {
            "ticker": c.market.ticker,
            "title": c.market.title,
            "state": c.risk.trading_state,
            "mid": c.book.mid,
            "inventory": c.risk.inventory,
            "limit_usage": c.risk.limit_usage,
            "marked_pnl": c.risk.marked_pnl,
            "markout_60s": c.flow.markout_60s,
            "gamma": c.gamma.value,
            "sigma": c.sigma.value,
            "frozen": [p for p, v in (("gamma", c.gamma), ("sigma", c.sigma)) if v.frozen],
            "regime_shift": c.regime.regime_shift,
        }
        for c in contexts
    ]
    return {"markets": rows, "escalations": list(escalations), "pending_approvals": list(pending)}
