"""The per-market loop: the fast path, run on every event of one market.

event → book → estimators → quote(current parameters) → order diff → risk gate → exchange.

The loop never waits on an LLM: it reads the parameter store and nothing else from the slow
path. The same class runs on the simulator, on replays and on Kalshi; time comes from the
events (and so from the exchange's injected clock), never from the wall.

States: ``WARMING`` (estimators filling; no quotes) → ``READY`` (quoting) → ``STOPPED``
(settled, closed, or shut down) or ``FAILED`` (an exception; orders cancelled, other markets go
on). Warm-up is bounded by the policy's ``warmup.max_s``, so it can never stall.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from typing import TYPE_CHECKING

from cfa.core.book import BookSequenceError, OrderBook
from cfa.core.estimators import (
    DecayedMean,
    FillRates,
    HoldingTime,
    LogitVolatility,
    Markouts,
    TradingIntensity,
)
from cfa.core.quoting import Quote, QuoteMarket, quote
from cfa.core.regime import RegimeFlags, RegimeMonitor
from cfa.core.signals import MarketSignals
from cfa.core.types import (
    PRICE_SCALE,
    QTY_SCALE,
    BookDelta,
    BookSnapshot,
    Fill,
    MarketInfo,
    Order,
    OrderRequest,
    OrderStatus,
    Outcome,
    Qty,
    Settlement,
    Side,
    Trade,
    TradingState,
)
from cfa.exchange.base import Event, Exchange, ExchangeError
from cfa.risk.gate import Exposure, RiskGate, collateral, dollars_at_risk
from cfa.risk.portfolio import Portfolio
from cfa.runtime.accounting import Book

if TYPE_CHECKING:
    from cfa.risk.policy import Policy
    from cfa.risk.states import TradingStates
    from cfa.runtime.params import ParameterStore
    from cfa.runtime.recorder import Recorder


CALIBRATE_S = 60.0
"""How often k is re-fitted from public trades, seconds."""
RECENT_FILLS_S = 30.0
"""Seconds of our own fills kept for :meth:`MarketLoop.recent_fills`."""
TICK_S = 0.1
"""Estimators and the requote check run on a change of the touch (ours excluded), inventory,
parameters or trading state, and otherwise at most every ``TICK_S`` seconds."""


KEEP_IDS = 1_000
"""How many written-off order ids a loop remembers until the venue confirms them."""


class LoopState(enum.StrEnum):
    WARMING = "WARMING"
    READY = "READY"
    STOPPED = "STOPPED"
    FAILED = "FAILED"


class MarketLoop:
    """Fast path of one market. ``await on_event(ev)`` for each of its events, in order."""

    def __init__(
        self,
        market: MarketInfo,
        exchange: Exchange,
        params: ParameterStore,
        gate: RiskGate,
        policy: Policy,
        recorder: Recorder,
        states: TradingStates,
        order_prefix: str,
        portfolio: Portfolio | None = None,
    ) -> None:
        self.market = market
        self.ticker = market.ticker
        self.exchange = exchange
        self.params = params
        self.gate = gate
        self.policy = policy
        self.rec = recorder
        self.qm = QuoteMarket.from_market(market)
        self.book = OrderBook(market.ticker)
        w = policy.warmup
        self.vol = LogitVolatility(
            interval=w.sigma_interval_s,
            horizon=w.sigma_horizon_s,
            half_life=w.sigma_half_life_s,
            min_samples=w.min_samples,
            prior=policy.params.sigma.default,
            prior_weight=w.prior_weight,
        )
        self.fill_rates = FillRates()
        self.markouts = Markouts()
        self.holding = HoldingTime()
        self._recent_fills: deque[tuple[float, Side, float]] = deque()
        self._mids: deque[tuple[float, float]] = deque()
        """(time, mid) once a second over the last ``RECENT_FILLS_S`` seconds."""
        self.fee_per_contract = DecayedMean(half_life=1800.0)
        """Fees paid per contract on our fills (dollars), decayed: what rounding really costs."""
        self.intensity = TradingIntensity(
            step=min(r.step for r in market.price_ranges) / PRICE_SCALE
        )
        self.regime = RegimeMonitor()
        self.signals = MarketSignals()
        """Order-flow imbalance, momentum, VPIN, refills and a GARCH σ, our orders excluded."""
        self._flow = 0.0
        self.account = Book()
        self.state = LoopState.WARMING
        self.states = states
        self.resting: dict[Side, Order | None] = {Side.BID: None, Side.ASK: None}
        self.last_quote: Quote | None = None
        self.error: str | None = None
        self.mid: float | None = None
        self.now = 0.0
        self.events = 0
        self._prefix = order_prefix
        self._next_id = 0
        self._start_t: float | None = None
        self._last_key: tuple[object, ...] | None = None
        self._last_quote_t = -math.inf
        self._inputs: tuple[object, ...] = ()
        self._next_tick = -math.inf
        self._last_deny: dict[Side, str | None] = {Side.BID: None, Side.ASK: None}
        self.portfolio = portfolio if portfolio is not None else Portfolio()
        self._order_times: deque[float] = deque()
        self._error_times: deque[float] = deque()
        self._next_risk_check = -math.inf
        self._next_calibration = -math.inf
        self._placed_at: dict[Side, float] = {Side.BID: -math.inf, Side.ASK: -math.inf}
        self.touch: tuple[int | None, int | None] = (None, None)
        """Best bid and ask of everyone else (our own resting orders removed), price units."""
        self.touch_size: tuple[Qty, Qty] = (0, 0)
        """Everyone else's size at :attr:`touch` (count units)."""
        self.band_clipped: dict[Side, bool] = {Side.BID: False, Side.ASK: False}
        """Sides whose model price lies outside the policy's price band (not quoted)."""
        self._error_halt_at: float | None = None
        self._written_off: dict[str, None] = {}
        """Orders taken out of their slot because our fill arithmetic said they were done; the
        venue's next word on each confirms it or brings the order back (at most ``KEEP_IDS``)."""
        self._last_error_t = -math.inf
        self.offered: Qty = 0
        """Contracts offered so far (count units): the size of every accepted place or amend."""

    # -- events --------------------------------------------------------------------------------

    async def on_event(self, ev: Event) -> None:
        """Consume one event of this market (recorded first, then applied)."""
        self.rec.market_event(ev)
        self.events += 1
        self.now = ev.ts
        if self._start_t is None:
            self._start_t = ev.ts
        t = type(ev)
        if t is BookDelta:
            try:
                self.book.apply_delta(ev)  # type: ignore[arg-type]
            except BookSequenceError as exc:
                await self._resync(str(exc))
                return
            if ev.client_order_id is not None:  # type: ignore[union-attr]
                return  # our own order moved the book: nothing new about the market
        elif t is BookSnapshot:
            self.book.apply_snapshot(ev)  # type: ignore[arg-type]
        elif t is Trade:
            tr: Trade = ev  # type: ignore[assignment]
            if self.mid is not None:
                self.intensity.on_trade(tr.ts, tr.price / PRICE_SCALE, self.mid)
            self._flow += tr.taker_side.sign * tr.count / QTY_SCALE
            self.signals.on_trade(tr.ts, tr.price, tr.count, tr.taker_side)
            return
        elif t is Fill:
            self._on_fill(ev)  # type: ignore[arg-type]
        elif t is Order:
            await self._on_order(ev)  # type: ignore[arg-type]
            return
        elif t is Settlement:
            await self._on_settlement(ev)  # type: ignore[arg-type]
            return
        if self.state is LoopState.WARMING or self.state is LoopState.READY:
            await self._update(ev.ts)

    async def _update(self, t: float) -> None:
        book = self.book
        ob, oa = self.resting[Side.BID], self.resting[Side.ASK]
        bb = (
            book.best_bid()
            if ob is None
            else book.best_bid_excluding({ob.price: ob.remaining_count})
        )
        ba = (
            book.best_ask()
            if oa is None
            else book.best_ask_excluding({oa.price: oa.remaining_count})
        )
        self.touch = (bb, ba)
        if bb is None or ba is None or bb >= ba:
            self.mid = None
            return
        qb = book.bid_size(bb) - (ob.remaining_count if ob is not None and ob.price == bb else 0)
        qa = book.ask_size(ba) - (oa.remaining_count if oa is not None and oa.price == ba else 0)
        self.touch_size = (qb, qa)
        self.signals.on_touch(t, bb, qb, ba, qa)
        inputs = (bb, ba, self.account.inventory, self.params.version, self.states.version)
        if inputs == self._inputs and t < self._next_tick:
            return  # nothing the quote depends on has changed since the last tick
        self._inputs = inputs
        self._next_tick = t + TICK_S
        mid = (bb + ba) / (2 * PRICE_SCALE)
        self.mid = mid
        self.vol.update(t, mid)
        self.signals.on_mid(t, mid)
        self.regime.observe(t, mid, (qb - qa) / (qb + qa) if qb + qa > 0 else None, self._flow)
        self._flow = 0.0
        self.markouts.on_mid(t, mid)
        self.fill_rates.mark(
            t, self.resting[Side.BID] is not None, self.resting[Side.ASK] is not None
        )
        if self.state is LoopState.WARMING:
            self._maybe_ready(t)
            if self.state is not LoopState.READY:
                return
        if t >= self.market.close_ts:
            await self.cancel_all("market_closed")
            return
        if t >= self._next_risk_check:
            self._next_risk_check = t + 1.0
            self._risk_tick(t)
            self.holding.update(t, self.account.inventory / QTY_SCALE)
            self._mids.append((t, mid))
            while self._mids[0][0] < t - RECENT_FILLS_S:
                self._mids.popleft()
            if t >= self._next_calibration:
                self._next_calibration = t + CALIBRATE_S
                self._calibrate(t)
        tstate = self.states.effective(self.ticker)
        if tstate is TradingState.HALTED:
            if self.resting[Side.BID] is not None or self.resting[Side.ASK] is not None:
                await self.cancel_all("halted")
            self._last_key = None
            return
        mp = self.params.get(self.ticker)
        key = (bb, ba, self.account.inventory, mp.quote, tstate)
        if key == self._last_key and t - self._last_quote_t < self.policy.quoting.min_requote_s:
            return
        self._last_key = key
        self._last_quote_t = t
        q = quote(
            mid=mid,
            inventory=self.account.inventory,
            time_to_close=self.market.close_ts - t,
            params=mp.quote,
            market=self.qm,
            best_bid=bb,
            best_ask=ba,
            bid_queue=qb,
            ask_queue=qa,
            min_edge=self.min_edge(t),
            holding_s=self.holding_s(t),
        )
        self.last_quote = q
        await self._apply_quote(t, self._within_band(t, q), tstate)

    def min_edge(self, t: float) -> float:
        """Dollars per contract the quote must clear beyond the fee model: the policy's edge
        buffer, the measured adverse selection (the 5 s mark-out of our fills, when negative)
        and what fees have really cost per contract above the model (Kalshi's rounding)."""
        m = self.markouts.average(5.0, t)
        edge = self.policy.quoting.edge_buffer + (0.0 if m is None or m >= 0.0 else -m)
        paid = self.fee_per_contract.mean if self.fee_per_contract.weight >= 10.0 else None
        if paid is not None and self.mid is not None:
            model = self.qm.maker_rate * self.mid * (1.0 - self.mid)
            edge += max(0.0, paid - model)
        return edge

    def recent_fills(self, t: float, window: float = RECENT_FILLS_S) -> tuple[float, float]:
        """Contracts we bought and sold in the last ``window`` seconds (≤ ``RECENT_FILLS_S``):
        a one-sided burst is the first sign of being run over by informed flow."""
        q = self._recent_fills
        while q and q[0][0] <= t - RECENT_FILLS_S:
            q.popleft()
        bought = sold = 0.0
        for ts, side, n in q:
            if ts > t - window:
                if side is Side.BID:
                    bought += n
                else:
                    sold += n
        return bought, sold

    def mid_change(self) -> float | None:
        """Dollars the mid (others' orders) moved over about the last ``RECENT_FILLS_S``."""
        if len(self._mids) < 2:
            return None
        return self._mids[-1][1] - self._mids[0][1]

    def holding_s(self, t: float) -> float | None:
        """τ from how long inventory is held (seconds, within the policy's horizon bounds)."""
        w = self.holding.seconds(t)
        return None if w is None else max(w, self.policy.quoting.horizon_min_s)

    def _within_band(self, t: float, q: Quote) -> Quote:
        """Drop a side whose model price lies outside the policy's price band around the mid.

        The risk gate would deny it; dropping it here keeps the loop aware of why the side is
        not quoted (recorded once per change, and shown to the agent as ``band_clipped``).
        """
        assert self.mid is not None
        band = self.policy.price_band * PRICE_SCALE
        m = self.mid * PRICE_SCALE
        out_bid = q.bid is not None and q.bid < m - band - 1e-9
        out_ask = q.ask is not None and q.ask > m + band + 1e-9
        for side, out in ((Side.BID, out_bid), (Side.ASK, out_ask)):
            if out != self.band_clipped[side]:
                self.band_clipped[side] = out
                price = q.bid if side is Side.BID else q.ask
                self.rec.risk_event(
                    self.ticker,
                    t,
                    "quote",
                    "outside_band" if out else "inside_band",
                    self.states.effective(self.ticker).value,
                    {"side": side.value, "price": price, "mid": round(self.mid, 6)},
                )
        if not (out_bid or out_ask):
            return q
        return Quote(
            None if out_bid else q.bid,
            None if out_ask else q.ask,
            0 if out_bid else q.bid_size,
            0 if out_ask else q.ask_size,
            q.reservation,
            q.half_spread,
            q.sigma_p,
            q.tau,
        )

    def _maybe_ready(self, t: float) -> None:
        assert self._start_t is not None
        warm = self.vol.warm
        if not warm and t - self._start_t < self.policy.warmup.max_s:
            return
        bounds = self.policy.params.sigma
        if warm:
            sigma = min(max(self.vol.sigma, bounds.min), bounds.max)
            reason = f"warm-up estimate {self.vol.sigma:.6g} from {self.vol.samples} samples"
        else:
            sigma = bounds.default
            reason = f"warm-up timed out after {self.policy.warmup.max_s:g}s; policy default"
        self.params.set(self.ticker, "sigma", sigma, source="warmup", reason=reason, now=t)
        self.state = LoopState.READY
        self.rec.risk_event(
            self.ticker,
            t,
            "loop_state",
            "ready",
            self.states.effective(self.ticker).value,
            {"reason": reason},
        )

    # -- orders --------------------------------------------------------------------------------

    async def _apply_quote(self, t: float, q: Quote, tstate: TradingState) -> None:
        old_ask = self.resting[Side.ASK]
        # Move the side that goes away from the other first, so our own quotes never cross.
        up = q.ask is not None and old_ask is not None and q.ask > old_ask.price
        order = (Side.ASK, Side.BID) if up else (Side.BID, Side.ASK)
        for side in order:
            price = q.bid if side is Side.BID else q.ask
            size = q.bid_size if side is Side.BID else q.ask_size
            await self._set_side(t, side, price, size, tstate)

    async def _set_side(
        self, t: float, side: Side, price: int | None, size: Qty, tstate: TradingState
    ) -> None:
        cur = self.resting[side]
        if price is None or size <= 0:
            if cur is not None:
                await self._cancel(t, cur, "side_not_quoted")
            return
        if cur is not None and cur.price == price:
            return  # keep queue priority; size drift is tolerated
        if cur is not None and t - self._placed_at[side] < self.policy.quoting.min_order_age_s:
            return  # too soon to move it again
        other = self.resting[side.opposite]
        if other is not None and (
            (side is Side.BID and price >= other.price)
            or (side is Side.ASK and price <= other.price)
        ):
            # our own resting order on the other side has not moved yet (minimum order age):
            # stay a tick away from it rather than cross ourselves
            grid = self.qm.grid
            price_or_none = (
                grid.next_down(other.price) if side is Side.BID else grid.next_up(other.price)
            )
            if price_or_none is None:
                if cur is not None:
                    await self._cancel(t, cur, "would_self_cross")
                return
            price = price_or_none
            if cur is not None and cur.price == price:
                return
        other_coll = (
            0.0 if other is None else collateral(other.side, other.price, other.remaining_count)
        )
        exposure = Exposure(
            position=self.account.inventory,
            avg_price=float(self.account.avg_price),
            bid_collateral=other_coll if side is Side.ASK else 0.0,
            ask_collateral=other_coll if side is Side.BID else 0.0,
            mid=self.mid,
            others_at_risk=self.portfolio.others(self.ticker),
            event_others_at_risk=self.portfolio.event_others(self.ticker, self.market.event_ticker),
            orders_last_min=self._recent(self._order_times, t),
        )
        req = OrderRequest(self.ticker, self._new_id(), side, price, size)
        deny = self.gate.check(req, exposure, tstate)
        if deny is not None:
            if self._last_deny[side] != deny.value:
                self._last_deny[side] = deny.value
                self.rec.order(t, "deny", req=req, reason=deny.value)
                self.rec.risk_event(
                    self.ticker,
                    t,
                    "deny",
                    deny.value,
                    self.states.effective(self.ticker).value,
                    {"side": side.value, "price": price},
                )
            if cur is not None:
                await self._cancel(t, cur, f"denied:{deny.value}")
            return
        self._last_deny[side] = None
        self._order_times.append(t)
        try:
            if cur is None:
                o = await self.exchange.place_order(req)
                self.rec.order(t, "place", req=req, order=o)
            else:
                o = await self.exchange.amend_order(cur.order_id, price, cur.fill_count + size)
                self.rec.order(t, "amend", req=req, order=o)
        except ExchangeError as exc:
            self.rec.order(t, "reject", req=req, reason=f"{exc.code or type(exc).__name__}: {exc}")
            self.resting[side] = None if cur is None else cur
            self._on_error(t, exc)
            return
        self.resting[side] = o if o.status is OrderStatus.RESTING else None
        self._placed_at[side] = t
        self.offered += size
        self._update_risk()

    async def _cancel(self, t: float, o: Order, reason: str) -> None:
        slot = self.resting[o.side]
        if slot is not None and slot.order_id == o.order_id:
            self.resting[o.side] = None
        self._update_risk()
        self._order_times.append(t)
        try:
            done = await self.exchange.cancel_order(o.order_id)
        except ExchangeError as exc:
            self.rec.order(
                t, "cancel_failed", order=o, reason=f"{exc.code or type(exc).__name__}: {exc}"
            )
            self._on_error(t, exc)
            return
        self.rec.order(t, "cancel", order=done, reason=reason)

    # -- risk ----------------------------------------------------------------------------------

    @staticmethod
    def _recent(times: deque[float], t: float) -> int:
        """Entries of ``times`` within the last 60 s (older ones are dropped)."""
        while times and times[0] <= t - 60.0:
            times.popleft()
        return len(times)

    def _update_risk(self) -> None:
        """Report this market's dollars at risk to the portfolio totals."""
        bid, ask = self.resting[Side.BID], self.resting[Side.ASK]
        risk = dollars_at_risk(
            self.account.inventory,
            float(self.account.avg_price),
            0.0 if bid is None else collateral(Side.BID, bid.price, bid.remaining_count),
            0.0 if ask is None else collateral(Side.ASK, ask.price, ask.remaining_count),
        )
        self.portfolio.update(self.ticker, self.market.event_ticker, risk)

    def _calibrate(self, t: float) -> None:
        """Re-fit the intensity decay k from public trades (within the policy's k bounds).

        k is not an agent parameter: it is measured. A change smaller than 10 % is ignored so
        the quote does not jitter with estimation noise.
        """
        fit = self.intensity.fit(t)
        if fit is None:
            return
        A, k = fit
        b = self.policy.params.k
        k = min(max(k, b.min), b.max)
        current = self.params.get(self.ticker).k
        if abs(k / current - 1.0) > 0.1:
            reason = f"fit of λ(δ)=A·exp(−kδ) to public trades: A={A:.3g}/s, k={k:.4g}/$"
            self.params.set(
                self.ticker, "k", float(f"{k:.4g}"), source="calibration", reason=reason, now=t
            )

    def _on_error(self, t: float, exc: ExchangeError) -> None:
        """Count an exchange error towards the error-rate breaker.

        A post-only order refused because the book moved across its price is the venue doing
        what was asked, not a fault: it does not count (the next tick re-quotes).
        """
        if exc.code == "post_only_cross":
            return
        self._error_times.append(t)
        self._last_error_t = t
        limit = self.policy.breakers.max_errors_per_min
        if self._recent(self._error_times, t) > limit and self.states.set(
            self.ticker,
            TradingState.HALTED,
            source="breaker:error_rate",
            reason=f"more than {limit} exchange errors in a minute; last: {exc}",
        ):
            self._error_halt_at = t

    def _lift_error_halt(self, t: float) -> None:
        """Resume a market the error-rate breaker halted, once it has been quiet long enough."""
        if self._error_halt_at is None:
            return
        if self.states.market_state(self.ticker) is not TradingState.HALTED:
            self._error_halt_at = None  # someone else changed it meanwhile
            return
        cool = self.policy.breakers.error_cooldown_s
        if t - max(self._error_halt_at, self._last_error_t) >= cool:
            self._error_halt_at = None
            self.states.set(
                self.ticker,
                TradingState.ACTIVE,
                source="breaker:error_rate",
                reason=f"no exchange error for {cool:g}s",
            )

    def _risk_tick(self, t: float) -> None:
        """Once a second: the market loss limit, the close-time taper, the error breaker's end."""
        self._lift_error_halt(t)
        pol = self.policy
        marked = float(self.account.marked(self.mid))
        current = self.states.market_state(self.ticker)
        if marked < -pol.loss.market_loss and current is not TradingState.HALTED:
            self.states.set(
                self.ticker,
                TradingState.HALTED,
                source="breaker:market_loss",
                reason=f"marked PnL {marked:.2f} below -{pol.loss.market_loss:g}",
            )
            return
        left = self.market.close_ts - t
        if left <= pol.close.halt_s and current is not TradingState.HALTED:
            self.states.set(
                self.ticker,
                TradingState.HALTED,
                source="close_taper",
                reason=f"{left:.0f}s to close <= {pol.close.halt_s:g}s",
            )
        elif left <= pol.close.reduce_only_s and current is TradingState.ACTIVE:
            self.states.set(
                self.ticker,
                TradingState.REDUCE_ONLY,
                source="close_taper",
                reason=f"{left:.0f}s to close <= {pol.close.reduce_only_s:g}s",
            )

    async def cancel_all(self, reason: str) -> None:
        """Cancel every resting order of this market (also on the exchange's side)."""
        for side in (Side.BID, Side.ASK):
            o = self.resting[side]
            if o is not None:
                await self._cancel(self.now, o, reason)
        try:
            leftovers = await self.exchange.cancel_all(self.ticker)
        except ExchangeError as exc:
            self.rec.risk_event(
                self.ticker,
                self.now,
                "cancel_all_failed",
                "exchange_error",
                self.states.effective(self.ticker).value,
                {"error": str(exc)},
            )
            return
        for o in leftovers:
            self.rec.order(self.now, "cancel", order=o, reason=reason)

    def _new_id(self) -> str:
        self._next_id += 1
        return f"{self._prefix}-{self._next_id}"

    # -- own fills, order updates, settlement --------------------------------------------------

    def _on_fill(self, f: Fill) -> None:
        self.rec.fill(f)
        self.account.on_fill(f)
        self._update_risk()
        self.fill_rates.on_fill(f.ts, f.side)
        self.markouts.on_fill(f.ts, f.side, f.price / PRICE_SCALE, f.count / QTY_SCALE)
        self.holding.update(f.ts, self.account.inventory / QTY_SCALE)
        self._recent_fills.append((f.ts, f.side, f.count / QTY_SCALE))
        if not f.is_taker and f.count > 0:
            n = f.count / QTY_SCALE
            self.fee_per_contract.add(f.ts, float(f.fee) / n, n)
        cur = self.resting[f.side]
        if cur is not None and cur.order_id == f.order_id:
            remaining = cur.remaining_count - f.count
            if remaining > 0:
                self.resting[f.side] = _with_remaining(cur, remaining, f.count)
            else:
                self.resting[f.side] = None
                self._written_off[cur.order_id] = None
                if len(self._written_off) > KEEP_IDS:
                    del self._written_off[next(iter(self._written_off))]

    async def _on_order(self, o: Order) -> None:
        """The venue's word on one of our orders (after a fill, an amend, a cancel).

        It is the truth about what rests: a fill can reach us after a later amend of the same
        order, so arithmetic on our side may have written off an order that still rests. Such
        an order is adopted back into its empty slot, or cancelled if the slot holds a newer
        one: no order of ours is left resting unknown to the loop.
        """
        cur = self.resting[o.side]
        if cur is not None and cur.order_id == o.order_id:
            self.resting[o.side] = (
                o if o.status is OrderStatus.RESTING and o.remaining_count > 0 else None
            )
            self._update_risk()
            return
        if o.order_id not in self._written_off:
            return  # an order we cancelled or replaced ourselves: a late word changes nothing
        del self._written_off[o.order_id]
        if o.status is OrderStatus.RESTING and o.remaining_count > 0:
            if cur is None:
                self.resting[o.side] = o
                self._update_risk()
            else:
                await self._cancel(self.now, o, "untracked")

    async def _on_settlement(self, s: Settlement) -> None:
        await self.cancel_all("settlement")
        self.account.settle(s.result is Outcome.YES)
        self.state = LoopState.STOPPED
        self.rec.risk_event(
            self.ticker,
            s.ts,
            "loop_state",
            "settled",
            self.states.effective(self.ticker).value,
            {"result": s.result.value},
        )

    async def _resync(self, why: str) -> None:
        self.rec.risk_event(
            self.ticker,
            self.now,
            "resync",
            "sequence_gap",
            self.states.effective(self.ticker).value,
            {"error": why},
        )
        await self.cancel_all("resync")
        snap = await self.exchange.get_orderbook(self.ticker)
        self.rec.market_event(snap)
        self.book.apply_snapshot(snap)
        self._last_key = None

    def regime_flags(self) -> RegimeFlags:
        """VAR regime flags as of now (refits only when a new sample arrived: a few ms)."""
        return self.regime.refresh(self.now)

    def fail(self, exc: BaseException) -> None:
        """Mark the loop failed (the caller cancels its orders)."""
        self.state = LoopState.FAILED
        self.error = f"{type(exc).__name__}: {exc}"
        self.rec.risk_event(
            self.ticker,
            self.now,
            "loop_state",
            "failed",
            self.states.effective(self.ticker).value,
            {"error": self.error},
        )


def _with_remaining(o: Order, remaining: Qty, filled: Qty) -> Order:
    return Order(
        o.order_id,
        o.client_order_id,
        o.ticker,
        o.side,
        o.price,
        o.initial_count,
        remaining,
        o.fill_count + filled,
        o.status,
        o.ts,
    )
