"""Per-run metrics: what a strategy earned, how, and at what risk.

:class:`MetricsProbe` watches a running session (a :class:`cfa.runtime.session.Probe`): once a
second of simulated time it samples each market (mid with our own orders removed, inventory,
marked PnL, our quotes, the background touch, the trading state), and it notes each of our fills
with the mid it met, and the settlement. :func:`compute_metrics` turns one market's
:class:`Trace` into :class:`~cfa.eval.models.RunMetrics`; it is a pure function, tested against
hand-computed runs.

Units: prices and money in dollars, sizes in contracts, times in seconds.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cfa.core.events import EventKind, EventStructure
from cfa.core.types import PRICE_SCALE, QTY_SCALE, Fill, Outcome, Settlement, Side, TradingState
from cfa.eval.models import Markout, RunMetrics
from cfa.risk.event_risk import worst_case_loss

if TYPE_CHECKING:
    from cfa.runtime.loop import MarketLoop
    from cfa.runtime.session import Session

MARKOUT_HORIZONS = (5.0, 60.0, 300.0)
"""Seconds after a fill at which its mark-out is taken."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One market once a second. ``mid`` None when the book (others' orders) had no two sides."""

    t: float
    mid: float | None
    inventory: float
    marked: float
    bid: float | None
    ask: float | None
    touch_bid: float | None
    touch_ask: float | None
    state: TradingState


@dataclass(frozen=True, slots=True)
class FillPoint:
    """One of our fills: ``sign`` +1 bought YES, −1 sold; ``mid`` the mid it met (or None)."""

    t: float
    sign: int
    price: float
    count: float
    fee: float
    mid: float | None


@dataclass(frozen=True, slots=True)
class SettlementPoint:
    """The market settled at ``value`` ($1 YES, $0 NO) holding ``inventory`` at last ``mid``."""

    t: float
    value: float
    inventory: float
    mid: float | None


@dataclass(slots=True)
class Trace:
    """Everything :func:`compute_metrics` needs about one market's run."""

    start: float
    end: float
    samples: list[Sample] = field(default_factory=list)
    fills: list[FillPoint] = field(default_factory=list)
    settlement: SettlementPoint | None = None
    marked_pnl: float = 0.0
    realized_pnl: float = 0.0
    fees: float = 0.0
    max_abs_inventory: float = 0.0
    final_inventory: float = 0.0
    offered: float = 0.0
    events: int = 0


def _price(p: int | None) -> float | None:
    return None if p is None else p / PRICE_SCALE


class MetricsProbe:
    """Collects a :class:`Trace` per market of ``session``; attach as ``session.probe``."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.traces: dict[str, Trace] = {}

    def _trace(self, loop: MarketLoop, t: float) -> Trace:
        tr = self.traces.get(loop.ticker)
        if tr is None:
            tr = self.traces[loop.ticker] = Trace(start=t, end=t)
        return tr

    def tick(self, t: float) -> None:
        states = self.session.states
        for loop in self.session.loops.values():
            tr = self._trace(loop, t)
            if tr.settlement is not None:
                continue
            acc = loop.account
            bid, ask = loop.resting[Side.BID], loop.resting[Side.ASK]
            tb, ta = loop.touch
            tr.samples.append(
                Sample(
                    t,
                    loop.mid,
                    acc.inventory / QTY_SCALE,
                    float(acc.marked(loop.mid)),
                    None if bid is None else bid.price / PRICE_SCALE,
                    None if ask is None else ask.price / PRICE_SCALE,
                    _price(tb),
                    _price(ta),
                    states.effective(loop.ticker),
                )
            )

    def own(self, loop: MarketLoop, ev: Fill | Settlement) -> None:
        tr = self._trace(loop, ev.ts)
        if type(ev) is Fill:
            tr.fills.append(
                FillPoint(
                    ev.ts,
                    ev.side.sign,
                    ev.price / PRICE_SCALE,
                    ev.count / QTY_SCALE,
                    float(ev.fee),
                    loop.mid,
                )
            )
        elif type(ev) is Settlement:
            tr.settlement = SettlementPoint(
                ev.ts,
                1.0 if ev.result is Outcome.YES else 0.0,
                loop.account.inventory / QTY_SCALE,
                loop.mid,
            )

    def finish(self, end: float) -> dict[str, Trace]:
        """Close every trace at ``end`` with the loops' final accounts; returns them by ticker."""
        for loop in self.session.loops.values():
            tr = self._trace(loop, end)
            acc = loop.account
            tr.end = end
            tr.marked_pnl = float(acc.marked(loop.mid))
            tr.realized_pnl = float(acc.realized)
            tr.fees = float(acc.fees)
            tr.max_abs_inventory = acc.max_abs_inventory / QTY_SCALE
            tr.final_inventory = acc.inventory / QTY_SCALE
            tr.offered = loop.offered / QTY_SCALE
            tr.events = loop.events
        return self.traces


# -- the pure part ------------------------------------------------------------------------------


def _mid_at_or_after(
    times: Sequence[float], mids: Sequence[float | None], t: float
) -> float | None:
    i = bisect.bisect_left(times, t)
    while i < len(times):
        if mids[i] is not None:
            return mids[i]
        i += 1
    return None


def _markouts(tr: Trace) -> list[Markout]:
    times = [s.t for s in tr.samples]
    mids = [s.mid for s in tr.samples]
    out = []
    for h in MARKOUT_HORIZONS:
        total = weight = 0.0
        n = 0
        for f in tr.fills:
            due = f.t + h
            later: float | None
            if tr.settlement is not None and due >= tr.settlement.t:
                later = tr.settlement.value
            elif due > tr.end:
                continue
            else:
                later = _mid_at_or_after(times, mids, due)
            if later is None:
                continue
            total += f.sign * (later - f.price) * f.count
            weight += f.count
            n += 1
        out.append(Markout(horizon_s=h, value=None if n == 0 else total / weight, n=n))
    return out


def _equity(tr: Trace) -> list[float]:
    """Marked PnL at the end of each whole minute since the start (the last known value)."""
    minutes = int((tr.end - tr.start) // 60.0)
    out: list[float] = []
    i = 0
    last = 0.0
    for m in range(1, minutes + 1):
        cut = tr.start + 60.0 * m
        while i < len(tr.samples) and tr.samples[i].t <= cut:
            last = tr.samples[i].marked
            i += 1
        out.append(last)
    if tr.settlement is not None and out:
        # after settlement the PnL is final
        k = int((tr.settlement.t - tr.start) // 60.0)
        for j in range(max(k, 0), len(out)):
            out[j] = tr.marked_pnl
    return out


def _sharpe(equity: Sequence[float]) -> float | None:
    if len(equity) < 2:
        return None
    steps = [b - a for a, b in zip([0.0, *equity[:-1]], equity, strict=True)]
    mean = sum(steps) / len(steps)
    var = sum((x - mean) ** 2 for x in steps) / (len(steps) - 1)
    if var <= 1e-18:
        return None
    return mean / math.sqrt(var)


def _max_drawdown(tr: Trace) -> float:
    peak = 0.0
    worst = 0.0
    for v in [*(s.marked for s in tr.samples), tr.marked_pnl]:
        peak = max(peak, v)
        worst = max(worst, peak - v)
    return worst


def _r(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(x, digits)


def worst_case_losses(
    traces: Mapping[str, Trace], structure: EventStructure | None = None
) -> list[float]:
    """The worst-case loss of the inventory at each sample time (dollars, ≥ 0).

    At a sample, market ``i`` holds ``q_i`` contracts marked at its mid ``m_i`` (the last known
    one when its book is empty; a market not yet with a mid, or settled, counts 0): on outcome
    ``o`` the inventory loses ``Σ_i q_i·(m_i − 1_i(o))``, and the worst-case loss is the
    largest over the structure's outcomes (:meth:`EventStructure.outcomes`), floored at 0.
    Without a structure, or an independent one, each market's worse side is summed.
    """
    if structure is None:
        tickers = tuple(traces)
        structure = EventStructure("+".join(tickers), EventKind.INDEPENDENT, tickers)
    by_t: dict[float, dict[str, tuple[float, float]]] = {}
    for ticker, tr in traces.items():
        last: float | None = None
        for smp in tr.samples:
            if smp.mid is not None:
                last = smp.mid
            if last is not None:
                q = smp.inventory
                # (loss if YES, loss if NO) against the mid-marked value
                by_t.setdefault(smp.t, {})[ticker] = (-q * (1.0 - last), q * last)
    return [max(0.0, worst_case_loss(structure, by_t[t])) for t in sorted(by_t)]


def _with_worst_case(metrics: RunMetrics, series: Sequence[float], markets: int) -> RunMetrics:
    return metrics.model_copy(
        update={
            "markets": markets,
            "worst_case_loss_peak": round(max(series), 6) if series else 0.0,
            "worst_case_loss_mean": round(math.fsum(series) / len(series), 6) if series else 0.0,
        }
    )


def compute_metrics(tr: Trace) -> RunMetrics:
    """The metrics of one market's run (see :class:`~cfa.eval.models.RunMetrics`)."""
    return _with_worst_case(_market_metrics(tr), worst_case_losses({"market": tr}), 1)


def compute_event_metrics(traces: Mapping[str, Trace], structure: EventStructure) -> RunMetrics:
    """The metrics of one event's run: its markets taken together.

    Money (PnL and its parts, fees), fills, contracts, offered contracts and events are
    summed; the equity curve, Sharpe and drawdown are those of the summed marked PnL;
    ``max_abs_inventory`` is the largest of any market, ``final_inventory`` the sum;
    quoting shares and spreads are means over the markets; mark-outs are weighted by their
    fill counts; the worst-case loss is the event's (:func:`worst_case_losses`).
    """
    ms = [_market_metrics(traces[t]) for t in structure.tickers if t in traces]
    if not ms:
        raise ValueError(f"event {structure.event_ticker}: no market traced")
    trs = [traces[t] for t in structure.tickers if t in traces]

    def total(get: Callable[[RunMetrics], float]) -> float:
        return round(math.fsum(get(m) for m in ms), 6)

    def mean(values: Sequence[float | None]) -> float | None:
        vals = [v for v in values if v is not None]
        return round(math.fsum(vals) / len(vals), 6) if vals else None

    width = max(len(m.equity) for m in ms)
    equity = [
        round(math.fsum(m.equity[i] if i < len(m.equity) else m.marked_pnl for m in ms), 4)
        for i in range(width)
    ]
    marked_by_t: dict[float, float] = {}
    for tr in trs:
        for smp in tr.samples:
            marked_by_t[smp.t] = marked_by_t.get(smp.t, 0.0) + smp.marked
    peak = worst = 0.0
    for v in [*(marked_by_t[t] for t in sorted(marked_by_t)), math.fsum(m.marked_pnl for m in ms)]:
        peak = max(peak, v)
        worst = max(worst, peak - v)
    markouts = []
    for h in MARKOUT_HORIZONS:
        got = [(mo.value, mo.n) for m in ms for mo in m.markouts if mo.horizon_s == h]
        n = sum(k for v, k in got if v is not None)
        value = None if n == 0 else math.fsum(v * k for v, k in got if v is not None) / n
        markouts.append(Markout(horizon_s=h, value=_r(value), n=n))
    contracts = total(lambda m: m.contracts)
    offered = total(lambda m: m.offered_contracts)
    event = RunMetrics(
        marked_pnl=total(lambda m: m.marked_pnl),
        realized_pnl=total(lambda m: m.realized_pnl),
        spread_pnl=total(lambda m: m.spread_pnl),
        inventory_pnl=total(lambda m: m.inventory_pnl),
        settlement_pnl=total(lambda m: m.settlement_pnl),
        fees=total(lambda m: m.fees),
        sharpe=_r(_sharpe(equity)),
        max_drawdown=round(worst, 6),
        max_abs_inventory=max(m.max_abs_inventory for m in ms),
        final_inventory=total(lambda m: m.final_inventory),
        fills=sum(m.fills for m in ms),
        contracts=round(contracts, 2),
        offered_contracts=round(offered, 2),
        fill_ratio=None if offered <= 0 else round(contracts / offered, 6),
        markouts=markouts,
        time_quoted_both=mean([m.time_quoted_both for m in ms]) or 0.0,
        time_quoted_any=mean([m.time_quoted_any for m in ms]) or 0.0,
        time_halted=mean([m.time_halted for m in ms]) or 0.0,
        time_reduce_only=mean([m.time_reduce_only for m in ms]) or 0.0,
        our_spread=mean([m.our_spread for m in ms]),
        background_spread=mean([m.background_spread for m in ms]),
        inside_share=mean([m.inside_share for m in ms]),
        events=sum(m.events for m in ms),
        equity=equity,
    )
    return _with_worst_case(event, worst_case_losses(traces, structure), len(ms))


def _market_metrics(tr: Trace) -> RunMetrics:
    spread = sum(f.sign * (f.mid - f.price) * f.count for f in tr.fills if f.mid is not None)
    settle = 0.0
    st = tr.settlement
    if st is not None and st.inventory != 0.0:
        last = st.mid
        if last is None:  # no mid to mark from: the whole move is the settlement's
            last = next((s.mid for s in reversed(tr.samples) if s.mid is not None), st.value)
        settle = st.inventory * (st.value - last)
    inventory_pnl = tr.marked_pnl - spread - settle + tr.fees
    n = len(tr.samples)
    both = sum(1 for s in tr.samples if s.bid is not None and s.ask is not None)
    anyq = sum(1 for s in tr.samples if s.bid is not None or s.ask is not None)
    halted = sum(1 for s in tr.samples if s.state is TradingState.HALTED)
    reduce_only = sum(1 for s in tr.samples if s.state is TradingState.REDUCE_ONLY)
    ours: list[float] = []
    theirs: list[float] = []
    at_touch = sides = 0
    for s in tr.samples:
        if s.bid is not None and s.ask is not None:
            ours.append(s.ask - s.bid)
            if s.touch_bid is not None and s.touch_ask is not None:
                theirs.append(s.touch_ask - s.touch_bid)
        if s.bid is not None and s.touch_bid is not None:
            sides += 1
            at_touch += s.bid >= s.touch_bid
        if s.ask is not None and s.touch_ask is not None:
            sides += 1
            at_touch += s.ask <= s.touch_ask
    contracts = sum(f.count for f in tr.fills)
    equity = _equity(tr)
    return RunMetrics(
        marked_pnl=round(tr.marked_pnl, 6),
        realized_pnl=round(tr.realized_pnl, 6),
        spread_pnl=round(spread, 6),
        inventory_pnl=round(inventory_pnl, 6),
        settlement_pnl=round(settle, 6),
        fees=round(tr.fees, 6),
        sharpe=_r(_sharpe(equity)),
        max_drawdown=round(_max_drawdown(tr), 6),
        max_abs_inventory=tr.max_abs_inventory,
        final_inventory=tr.final_inventory,
        fills=len(tr.fills),
        contracts=round(contracts, 2),
        offered_contracts=round(tr.offered, 2),
        fill_ratio=None if tr.offered <= 0 else round(contracts / tr.offered, 6),
        markouts=[Markout(horizon_s=m.horizon_s, value=_r(m.value), n=m.n) for m in _markouts(tr)],
        time_quoted_both=0.0 if n == 0 else round(both / n, 6),
        time_quoted_any=0.0 if n == 0 else round(anyq / n, 6),
        time_halted=0.0 if n == 0 else round(halted / n, 6),
        time_reduce_only=0.0 if n == 0 else round(reduce_only / n, 6),
        our_spread=_r(sum(ours) / len(ours)) if ours else None,
        background_spread=_r(sum(theirs) / len(theirs)) if theirs else None,
        inside_share=None if sides == 0 else round(at_touch / sides, 6),
        events=tr.events,
        equity=[round(v, 4) for v in equity],
    )
