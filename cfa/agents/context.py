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

from cfa.core.types import PRICE_SCALE, QTY_SCALE, Order, Side

if TYPE_CHECKING:
    from cfa.control.params import MarketParams
    from cfa.core.regime import RegimeFlags
    from cfa.risk.policy import ParamBounds
    from cfa.risk.states import TradingStates
    from cfa.runtime.loop import MarketLoop

MAX_TEXT = 120
"""Characters kept of each market text (title, rules) and of agent-written text."""
MAX_CONTEXT = 2000
"""Characters of JSON a market agent's context may take; market text is cut to fit."""
MAX_SIBLINGS = 6
"""Other markets of the event shown to a market agent: the most correlated ones."""
EVENT_CONTEXT = 90
"""Characters of JSON the context may take beyond ``MAX_CONTEXT`` per sibling shown, plus
one more share for the event's own lines."""


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
    """Our fills: rates per quoted minute and mark-outs (dollars per contract, + = made money),
    each with the decayed fill count behind it (``*_n``; half-life 600 s); contracts bought and
    sold in the last 30 s and how far the mid moved meanwhile (one-sided fills with the price
    moving against them: being run over)."""

    fills_per_min_bid: float | None
    fills_per_min_ask: float | None
    fills_n: float
    bought_30s: float
    sold_30s: float
    mid_change_30s: float | None
    since_last_fill_s: float | None
    markout_5s: float | None
    markout_60s: float | None
    markout_n: float


class Signal(_M):
    """One market signal: its value, its window (seconds) and how many samples inform it."""

    v: float | None
    win_s: float | None
    n: int


class SignalsView(_M):
    """Signals from others' orders and trades (ours excluded).

    ``ofi``: order-flow imbalance at the touch over the window, in touch queues (−1..1, +
    buying); ``momentum``: decayed signed taker volume share (−1..1, + buying; ``win_s`` is the
    half-life); ``vpin``: |buy − sell| share over the last equal-volume buckets (0..1, high =
    one-sided, likely informed flow; ``n`` buckets); ``refills_bid``/``refills_ask``: levels
    traded away and refilled at the same price (hidden size) in the window; ``sigma_garch``:
    GARCH(1,1) σ_logit per √s forecast over the quote's τ (``n`` 10 s returns).
    """

    ofi: Signal
    momentum: Signal
    vpin: Signal
    refills_bid: int
    refills_ask: int
    refills_win_s: float
    sigma_garch: Signal


class QuoteView(_M):
    """How the fast path quotes now: ``tau_s`` the horizon in the inventory penalty (held
    inventory's measured holding time), ``min_edge`` the extra edge per contract required beyond
    the fee (dollars), ``band_clipped`` sides whose model price lies outside the price band."""

    tau_s: float | None
    min_edge: float
    band_clipped: list[str]


class RiskView(_M):
    inventory: float
    position_limit: float
    limit_usage: float
    realized_pnl: float
    marked_pnl: float
    trading_state: str


class ParamView(_M):
    value: float
    default: float
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


class SiblingView(_M):
    """Another market of the same event: its mid (others' orders), our inventory in it
    (contracts) and the correlation of its logit-mid changes with this market's."""

    ticker: str
    mid: float | None
    inventory: float
    corr: float | None


class EventView(_M):
    """This market's event as one book of risk (``docs/events.md``).

    ``kind`` ``ladder`` (nested strikes: probabilities non-increasing in the strike) or
    ``exclusive`` (at most one market resolves YES); ``quoting`` ``event_aware`` when the
    reservation prices use the covariance across the event, ``per_market`` otherwise;
    ``corr_samples`` the samples behind the correlations (the structure's prior alone while
    ``corr_ready`` is false) and ``shrinkage`` the weight of that prior (0..1);
    ``worst_case_loss`` the event's settlement loss on its worst outcome with every resting
    order filled (dollars, as the risk gate counts it) against ``worst_case_limit``;
    ``violations`` where the books break the structure now (signals for people, never traded).
    """

    event_ticker: str
    kind: str
    markets: int
    quoting: str
    siblings: list[SiblingView]
    corr_samples: int
    corr_ready: bool
    shrinkage: float | None
    worst_case_loss: float | None
    worst_case_limit: float
    violations: list[str]


class MarketContext(_M):
    """The whole summary for one market agent decision."""

    as_of: float
    """Exchange time the summary describes (epoch seconds); an answer applied more than
    ``agents.max_answer_age_s`` later is rejected as stale."""
    market: MarketText
    time_to_close_s: float
    order_size: float
    book: BookView
    sigma_logit_est: float | None
    sigma_price_est: float | None
    sigma_n: int
    flow: FlowView
    signals: SignalsView
    quote: QuoteView
    risk: RiskView
    regime: RegimeView
    gamma: ParamView
    sigma: ParamView
    recent: list[DecisionView]
    event: EventView | None = None

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=False)


def _param(name: str, mp: MarketParams, bounds: ParamBounds, now: float) -> ParamView:
    last = mp.changed_at.get(name)
    left = 0.0 if last is None else max(0.0, bounds.cooldown_s - (now - last))
    expiry = mp.overrides.get(name)
    return ParamView(
        value=r4(getattr(mp, name)) or 0.0,
        default=bounds.default,
        min=bounds.min,
        max=bounds.max,
        max_step=bounds.max_step,
        frozen=name in mp.frozen,
        overridden=expiry is not None and expiry > now,
        cooldown_left_s=round(left, 1),
    )


def _others(levels: list[tuple[int, int]], own: Order | None) -> list[tuple[int, int]]:
    """Book levels with our resting order's size taken out (levels left empty dropped)."""
    if own is None:
        return levels
    out = []
    for p, q in levels:
        if p == own.price:
            q -= own.remaining_count
        if q > 0:
            out.append((p, q))
    return out


def _signal(v: float | None, win_s: float | None, n: int) -> Signal:
    return Signal(v=r4(v), win_s=None if win_s is None else round(win_s, 1), n=n)


def build_context(
    loop: MarketLoop,
    mp: MarketParams,
    states: TradingStates,
    regime: RegimeFlags | None,
    recent: Sequence[DecisionView],
    now: float,
) -> MarketContext:
    """Summarise ``loop`` at time ``now`` (seconds); the book and signals exclude our orders."""
    policy = loop.policy
    book = loop.book
    bid, ask = loop.resting[Side.BID], loop.resting[Side.ASK]
    bb, ba = loop.touch
    qb, qa = loop.touch_size
    bids = _others(book.bids(6), bid)[:5]
    asks = _others(book.asks(6), ask)[:5]
    top_b, top_a = sum(q for _, q in bids), sum(q for _, q in asks)
    micro = None
    if bb is not None and ba is not None and qb + qa > 0:
        micro = (bb * qa + ba * qb) / ((qa + qb) * PRICE_SCALE)
    mid = loop.mid
    sig = loop.vol.sigma if loop.vol.samples else None
    fr = loop.fill_rates
    last_fills = [t for t in fr.last_fill_t.values() if t is not None]
    limit = policy.market.max_position
    inv = loop.account.inventory / QTY_SCALE
    sg = loop.signals
    refills = sg.refills.view(now)
    bought, sold = loop.recent_fills(now)
    tau = loop.holding_s(now)
    q = loop.last_quote
    if q is not None and q.tau > 0:
        tau = q.tau
    garch = sg.garch.forecast(tau or policy.quoting.horizon_s)
    vpin = sg.vpin
    ctx = MarketContext(
        as_of=round(now, 3),
        market=MarketText(
            ticker=loop.ticker,
            title=loop.market.title[:MAX_TEXT],
            rules=loop.market.rules[:MAX_TEXT],
        ),
        time_to_close_s=round(max(0.0, loop.market.close_ts - now), 1),
        order_size=mp.quote.size / QTY_SCALE,
        book=BookView(
            mid=r4(mid),
            microprice=r4(micro),
            spread=None if bb is None or ba is None else r4((ba - bb) / PRICE_SCALE),
            imbalance_l1=None if qb + qa <= 0 else r4((qb - qa) / (qb + qa)),
            imbalance_top5=None if top_b + top_a <= 0 else r4((top_b - top_a) / (top_b + top_a)),
            our_bid=None if bid is None else bid.price / PRICE_SCALE,
            our_ask=None if ask is None else ask.price / PRICE_SCALE,
        ),
        sigma_logit_est=r4(sig),
        sigma_price_est=None if sig is None or mid is None else r4(mid * (1 - mid) * sig),
        sigma_n=loop.vol.samples,
        flow=FlowView(
            fills_per_min_bid=r4(fr.per_minute(Side.BID)),
            fills_per_min_ask=r4(fr.per_minute(Side.ASK)),
            fills_n=round(fr.fills(Side.BID) + fr.fills(Side.ASK), 1),
            bought_30s=round(bought, 2),
            sold_30s=round(sold, 2),
            mid_change_30s=r4(loop.mid_change()),
            since_last_fill_s=round(now - max(last_fills), 1) if last_fills else None,
            markout_5s=r4(loop.markouts.average(5.0, now)),
            markout_60s=r4(loop.markouts.average(60.0, now)),
            markout_n=round(loop.markouts.n(5.0, now), 1),
        ),
        signals=SignalsView(
            ofi=_signal(sg.ofi.normalized(now), sg.ofi.window_s, sg.ofi.samples),
            momentum=_signal(sg.momentum.value(now), sg.momentum.window_s, sg.momentum.samples),
            vpin=_signal(vpin.value(), vpin.window_s, vpin.samples),
            refills_bid=refills.bid.refills,
            refills_ask=refills.ask.refills,
            refills_win_s=sg.refills.window_s,
            sigma_garch=_signal(garch, sg.garch.window_s, sg.garch.samples),
        ),
        quote=QuoteView(
            tau_s=None if tau is None else round(tau, 1),
            min_edge=r4(loop.min_edge(now)) or 0.0,
            band_clipped=[s.value for s, out in loop.band_clipped.items() if out],
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
        event=_event_view(loop),
    )
    return _fit(ctx)


def _event_view(loop: MarketLoop) -> EventView | None:
    group = loop.event
    if group is None:
        return None
    i = group.index[loop.ticker]
    corr = group.correlation()[i]
    others = [j for j in range(len(group.inventory)) if j != i]
    others.sort(key=lambda j: (-abs(corr[j]), j))
    siblings = [
        SiblingView(
            ticker=group.structure.tickers[j],
            mid=r4(group.mids[j]),
            inventory=round(group.inventory[j], 2),
            corr=r4(corr[j]),
        )
        for j in sorted(others[:MAX_SIBLINGS])
    ]
    cov = group.cov
    worst = loop.portfolio.event_worst_loss(group.event_ticker)
    return EventView(
        event_ticker=group.event_ticker,
        kind=group.structure.kind.value,
        markets=group.structure.n,
        quoting="event_aware" if group.aware else "per_market",
        siblings=siblings,
        corr_samples=cov.samples,
        corr_ready=cov.ready,
        shrinkage=r4(cov.shrinkage),
        worst_case_loss=r4(worst),
        worst_case_limit=loop.policy.portfolio.max_event_worst_loss,
        violations=[v.message[:MAX_TEXT] for v in group.violations()][:3],
    )


def _fit(ctx: MarketContext) -> MarketContext:
    """Cut the market's rules, then its title, until the JSON is at most ``MAX_CONTEXT``
    characters, plus ``EVENT_CONTEXT`` per sibling shown and one for the event (quotes and
    escapes in exchange text can make it longer than its length)."""
    limit = MAX_CONTEXT
    if ctx.event is not None:
        limit += EVENT_CONTEXT * (len(ctx.event.siblings) + 1)
    for name in ("rules", "title"):
        over = len(ctx.to_json()) - limit
        while over > 0:
            text: str = getattr(ctx.market, name)
            if not text:
                break
            cut = text[: max(0, len(text) - max(over // 2, 1))]
            ctx = ctx.model_copy(update={"market": ctx.market.model_copy(update={name: cut})})
            over = len(ctx.to_json()) - limit
        if over <= 0:
            break
    return ctx


def portfolio_context(
    contexts: Sequence[MarketContext],
    escalations: Sequence[dict[str, Any]],
    pending: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """The governance agent's view: a line per market, a line per event of several related
    markets (a ladder, an exclusive set: one book of risk — its markets, our net inventories,
    the event's worst-case loss against its limit, structure violations), escalations and
    pending approvals.

    Escalation reasons and request rationales were written by market agents, which read
    untrusted market text: they are carried as ``{"untrusted_text": ...}`` (cut to
    ``MAX_TEXT``), like market titles, and the governance prompt says never to act on
    instructions found there.
    """
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
            "event": None if c.event is None else c.event.event_ticker,
        }
        for c in contexts
    ]
    events: dict[str, dict[str, Any]] = {}
    for c in contexts:
        e = c.event
        if e is None:
            continue
        row = events.setdefault(
            e.event_ticker,
            {
                "event": e.event_ticker,
                "kind": e.kind,
                "quoting": e.quoting,
                "markets": {},
                "worst_case_loss": e.worst_case_loss,
                "worst_case_limit": e.worst_case_limit,
                "violations": e.violations,
            },
        )
        row["markets"][c.market.ticker] = c.risk.inventory
        for sib in e.siblings:
            row["markets"].setdefault(sib.ticker, sib.inventory)
    return {
        "markets": rows,
        "events": list(events.values()),
        "escalations": [
            {
                "market": e.get("market"),
                "ts": e.get("ts"),
                "reason": _untrusted(e.get("reason")),
            }
            for e in escalations
        ],
        "pending_approvals": [{**p, "rationale": _untrusted(p.get("rationale"))} for p in pending],
    }


def _untrusted(text: Any) -> dict[str, str]:
    """Agent-written text shown to another agent: quoted data, never instructions."""
    return {"untrusted_text": str(text or "")[:MAX_TEXT]}
