"""The per-market loop: the fast path, run on every event of one market.

event → book → estimators → quote(current parameters) → order diff → risk gate → exchange.

The loop never waits on an LLM: it reads the parameter store and nothing else from the slow
path. The same class runs on the simulator, on replays and on Kalshi; time comes from the
events (and so from the exchange's injected clock), never from the wall.

States: ``WARMING`` (estimators filling; no quotes) → ``READY`` (quoting) → ``STOPPED``
(settled, closed, or shut down) or ``FAILED`` (an exception; orders cancelled, other markets go
on). Warm-up is bounded by the policy's ``warmup.max_s``, so it can never stall.

Risk on every event, whatever the shape of the book: the breakers (:mod:`cfa.risk.breakers`:
this market's loss limit, error rate and close taper, and through the portfolio the daily loss
and drawdown) run when due — a float comparison otherwise — and a one-sided book still gets
its orders cancelled when HALTED or closed and cut to the position when REDUCE_ONLY.

Orders: at most one order of ours per side. An order whose cancel the venue has not confirmed
may still rest: it keeps its slot (and its dollars at risk) and no other order is placed on
its side until the venue confirms the cancel or reports the order gone (filled, cancelled,
unknown); the cancel is sent again with a doubling backoff. REDUCE_ONLY quotes only the side
that reduces the position, sized to it (never more, never nothing because the position is
smaller than the quote size; fractional counts included).

Venue pauses (:class:`MarketStatus`): while the venue has trading stopped (a paused market, an
exchange or trading pause) the loop sends no order call at all and keeps everything else —
book, estimators, inventory, parameters, state (it is neither STOPPED nor FAILED). When trading
opens again it asks the venue which of its orders still rest (``get_orders``; Kalshi cancels
every resting order when it reactivates a market), forgets the others, cancels any order of
its own it did not know of, and quotes again; until that answer comes (it is asked again
every ``RECONCILE_RETRY_S``) it stays paused. A new price grid (``MarketStatus.market``)
rebuilds the quoting grid and the intensity step before the next quote. A blind book
(:data:`~cfa.core.types.BLIND_BOOK`: the live feed lost sequence and waits for a fresh
snapshot) pauses the loop the same way, except that it first cancels its resting orders: the
venue still trades, and a quote set from a stale book must not rest there.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

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
    BLIND_BOOK,
    ONE_DOLLAR,
    PRICE_SCALE,
    QTY_SCALE,
    BookDelta,
    BookSnapshot,
    Fill,
    MarketInfo,
    MarketStatus,
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
from cfa.exchange.base import (
    Event,
    Exchange,
    ExchangeError,
    MarketNotFound,
    OrderNotFound,
    OrderRejected,
)
from cfa.risk.breakers import MarketBreakers, Trip
from cfa.risk.event_risk import EVENT_BREAKER_SOURCE, event_breaker, leg_losses
from cfa.risk.gate import Exposure, RiskGate, collateral, dollars_at_risk
from cfa.risk.portfolio import Portfolio
from cfa.runtime.accounting import Book

if TYPE_CHECKING:
    from cfa.control.params import ParameterStore
    from cfa.risk.policy import Policy
    from cfa.risk.states import TradingStates
    from cfa.runtime.event_group import EventGroup
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
MARK_S = 1.0
"""The loss breakers re-mark the market (and report it to the portfolio) this often, seconds."""
CANCEL_RETRY_S = 0.5
"""A failed cancel is sent again after this many seconds, doubling up to ``CANCEL_RETRY_MAX_S``
(each failure also counts towards the error-rate breaker, which halts a market that keeps
failing)."""
CANCEL_RETRY_MAX_S = 8.0
CANCEL_ALL_ATTEMPTS = 2
RECONCILE_RETRY_S = 1.0
"""After a reactivation whose ``get_orders`` failed, seconds until it is asked again."""
"""Venue-wide cancel-all calls one :meth:`MarketLoop.cancel_all` makes before giving up."""

_SIDES = (Side.BID, Side.ASK)


class _PendingCancel:
    """An order of ours the venue was asked to cancel and has not confirmed gone."""

    __slots__ = ("backoff", "due", "order", "reason")

    def __init__(self, order: Order, reason: str, due: float, backoff: float) -> None:
        self.order = order
        self.reason = reason
        self.due = due
        """Event time at which the cancel is sent again, seconds."""
        self.backoff = backoff
        """Seconds waited before this retry (doubles on each failure)."""


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
        self._next_sample = -math.inf
        self.breakers = MarketBreakers(policy, market.close_ts)
        """This market's breakers; the portfolio's (daily loss, drawdown) are on the portfolio."""
        self.portfolio.arm(policy)
        self._risk_due = -math.inf
        """Event time from which a breaker may have something to say (checked on every event)."""
        self._next_mark = -math.inf
        self._last_mid: float | None = None
        """The last mid of a two-sided book (dollars): the loss breakers' mark on an empty one."""
        self._pending: dict[str, _PendingCancel] = {}
        """Orders whose cancel is not confirmed, by order id. They may still rest: those of a
        slot keep it, the others (untracked orders) count at risk from here, and either blocks
        a new order on its side until the venue confirms it gone."""
        self._pending_due = math.inf
        self._awaiting_book = False
        """A resync found no fresh book: the book is unsynced until the stream's next snapshot."""
        self._closed = False
        self._next_calibration = -math.inf
        self._placed_at: dict[Side, float] = {Side.BID: -math.inf, Side.ASK: -math.inf}
        self.touch: tuple[int | None, int | None] = (None, None)
        """Best bid and ask of everyone else (our own resting orders removed), price units."""
        self.touch_size: tuple[Qty, Qty] = (0, 0)
        """Everyone else's size at :attr:`touch` (count units)."""
        self._touch_for: tuple[Order | None, Order | None] | None = None
        """Our resting (bid, ask) that :attr:`touch` was computed without; None once the book
        changed otherwise than by a delta behind that touch (a snapshot, our own order's
        delta, an event not run through the fast path): the touch must be recomputed."""
        self.band_clipped: dict[Side, bool] = {Side.BID: False, Side.ASK: False}
        """Sides whose model price lies outside the policy's price band (not quoted)."""
        self._written_off: dict[str, None] = {}
        """Orders taken out of their slot because our fill arithmetic said they were done; the
        venue's next word on each confirms it or brings the order back (at most ``KEEP_IDS``)."""
        self._unsure_ids: dict[str, None] = {}
        """Client order ids of creates that failed without a clear refusal (timeouts, 5xx, ...):
        the order may rest all the same; the venue's word on one is handled as on a written-off
        order — adopted into an empty slot or cancelled (at most ``KEEP_IDS``)."""
        self.offered: Qty = 0
        """Contracts offered so far (count units): the size of every accepted place or amend."""
        self.warm_start: str | None = None
        """The history σ was seeded from (:mod:`cfa.runtime.warmstart`), named in the READY
        reason; None on the cold path."""
        self.paused: str | None = None
        """Why the venue has trading stopped in this market (None: it has not). While set,
        no order call is made (see the module docstring)."""
        self._reconcile_due = math.inf
        """Event time of the next try at confirming resting orders after a reactivation."""
        self.event: EventGroup | None = None
        """The other markets of this market's event quoted with it (:meth:`join_event`)."""
        self._event_i = -1

    def join_event(self, group: EventGroup) -> None:
        """Quote as one market of ``group``'s event: report the mid and inventory to it and
        take the multi-asset cross term of the reservation price from it."""
        self.event = group
        self._event_i = group.index[self.ticker]

    # -- events --------------------------------------------------------------------------------

    async def on_event(self, ev: Event) -> None:
        """Consume one event of this market (recorded first, then applied).

        Book events and our fills re-run the fast path (:meth:`_update`); every event, of any
        kind, also runs the breakers when due and re-sends failed cancels whose backoff passed.
        The same as running :meth:`feed` and awaiting what it returns.
        """
        pending = self.feed(ev)
        if pending is not None:
            await pending

    def feed(self, ev: Event) -> Coroutine[Any, Any, None] | None:
        """Consume one event synchronously as far as no await is needed; return the coroutine
        that finishes it (an order call, a cancel, a resync, an order update, a settlement, a
        venue status) or None when the event is done.

        The hot path of the session: most book events change nothing the quote depends on,
        and end here without creating a coroutine. The caller must await what is returned
        before it feeds the next event (:meth:`on_event` does both).
        """
        self.rec.market_event(ev)  # type: ignore[arg-type]
        self.events += 1
        ts = ev.ts
        self.now = ts
        if self._start_t is None:
            self._start_t = ts
        t = type(ev)
        if t is Order or t is Settlement or t is MarketStatus:
            return self._on_rare(ev, ts)
        update = True
        if t is BookDelta:
            try:
                self.book.apply_delta(ev)  # type: ignore[arg-type]
            except BookSequenceError as exc:
                if not self._awaiting_book:  # once per gap, not on every delta after it
                    return self._resync(str(exc))
                return None
            d: BookDelta = ev  # type: ignore[assignment]
            if d.client_order_id is not None:
                update = False  # our own order moved the book: nothing new about the market
                self._touch_for = None
            else:
                # A delta strictly behind everyone else's touch changes neither its prices nor
                # its sizes: when nothing else the quote depends on has changed either, the
                # event ends here (the same outcome as the full fast path, sooner). The stored
                # touch is trusted only while our resting orders are the ones it was computed
                # without and the book moved only by such deltas since (``_touch_for``).
                bb, ba = self.touch
                tf = self._touch_for
                if (
                    tf is not None
                    and tf[0] is self.resting[Side.BID]
                    and tf[1] is self.resting[Side.ASK]
                    and bb is not None
                    and ba is not None
                    and bb < ba
                    and (d.price < bb if d.outcome is Outcome.YES else d.price < ONE_DOLLAR - ba)
                    and (self.state is LoopState.READY or self.state is LoopState.WARMING)
                    and self.paused is None
                    and not self._pending
                ):
                    if ts >= self._risk_due:
                        self._check_breakers(ts)
                    if ts < self._next_tick and self._inputs == (
                        bb,
                        ba,
                        self.account.inventory,
                        self.params.version,
                        self.states.version,
                        0 if self.event is None else self.event.version,
                    ):
                        return None
                    return self._update_now(ts)
        elif t is BookSnapshot:
            self.book.apply_snapshot(ev)  # type: ignore[arg-type]
            self._awaiting_book = False
            self._touch_for = None
        elif t is Trade:
            tr: Trade = ev  # type: ignore[assignment]
            if self.mid is not None:
                self.intensity.on_trade(tr.ts, tr.price / PRICE_SCALE, self.mid)
            self._flow += tr.taker_side.sign * tr.count / QTY_SCALE
            self.signals.on_trade(tr.ts, tr.price, tr.count, tr.taker_side)
            update = False
        elif t is Fill:
            self._on_fill(ev)  # type: ignore[arg-type]
        state = self.state
        if state is not LoopState.WARMING and state is not LoopState.READY:
            self._touch_for = None
            return None
        if self.paused is not None or (self._pending and ts >= self._pending_due):
            return self._tail(ts, update, state)
        if update:
            return self._update_now(ts)
        if ts >= self._risk_due and self._check_breakers(ts) and state is LoopState.READY:
            return self._enforce(ts)
        return None

    async def _on_rare(self, ev: Event, ts: float) -> None:
        """The rest of :meth:`feed` for our order updates, settlements and venue status
        changes (recorded and counted already)."""
        t = type(ev)
        if t is Order:
            await self._on_order(ev)  # type: ignore[arg-type]
        elif t is Settlement:
            await self._on_settlement(ev)  # type: ignore[arg-type]
            return
        else:
            await self._on_status(ev)  # type: ignore[arg-type]
        state = self.state
        if state is not LoopState.WARMING and state is not LoopState.READY:
            return
        await self._tail(ts, t is MarketStatus, state)

    async def _tail(self, ts: float, update: bool, state: LoopState) -> None:
        """What follows an event once applied: reconcile after a pause, re-send failed
        cancels that are due, then the fast path (``update``) or the breakers."""
        if self.paused is not None:
            if ts >= self._reconcile_due:
                await self._reconcile(ts)
            if self.paused is not None:
                if update:
                    await self._update(ts)  # estimators go on; no order call is made
                return
        if self._pending and ts >= self._pending_due:
            await self._retry_cancels(ts)
        if update:
            await self._update(ts)
        elif ts >= self._risk_due and self._check_breakers(ts) and state is LoopState.READY:
            await self._enforce(ts)

    async def _update(self, t: float) -> None:
        pending = self._update_now(t)
        if pending is not None:
            await pending

    def _update_now(self, t: float) -> Coroutine[Any, Any, None] | None:
        """The fast path at event time ``t``: touch, estimators, quote; returns the order
        calls to await (None when nothing is to be sent)."""
        book = self.book
        if not book.synced:  # a gap and no fresh book yet: nothing to quote on
            self._touch_for = None
            return self._enforce(t) if self.state is LoopState.READY else None
        ob, oa = self.resting[Side.BID], self.resting[Side.ASK]
        bb, qb, ba, qa = book.others_touch(
            None if ob is None else ob.price,
            0 if ob is None else ob.remaining_count,
            None if oa is None else oa.price,
            0 if oa is None else oa.remaining_count,
        )
        self.touch = (bb, ba)
        self._touch_for = (ob, oa)
        if t >= self._risk_due:
            self._check_breakers(t)
        if bb is None or ba is None or bb >= ba:
            if self.mid is not None:
                self._last_mid = self.mid
                self.mid = None
            return self._enforce(t) if self.state is LoopState.READY else None
        self.touch_size = (qb, qa)
        self.signals.on_touch(t, bb, qb, ba, qa)
        inventory = self.account.inventory
        group = self.event
        inputs = (
            bb,
            ba,
            inventory,
            self.params.version,
            self.states.version,
            0 if group is None else group.version,
        )
        if t < self._next_tick and inputs == self._inputs:
            return None  # nothing the quote depends on has changed since the last tick
        self._inputs = inputs
        self._next_tick = t + TICK_S
        mid = (bb + ba) / (2 * PRICE_SCALE)
        self.mid = mid
        self.vol.update(t, mid)
        self.signals.on_mid(t, mid)
        self.regime.observe(t, mid, (qb - qa) / (qb + qa) if qb + qa > 0 else None, self._flow)
        self._flow = 0.0
        self.markouts.on_mid(t, mid)
        self.fill_rates.mark(t, ob is not None, oa is not None)
        if group is not None:
            group.on_touch(self._event_i, t, bb, ba, mid)
        if self.state is LoopState.WARMING and not self._maybe_ready(t):
            return None
        if self.paused is not None:
            return None  # the venue takes no orders: keep the estimators warm, send nothing
        if t >= self.market.close_ts:
            return self._close()
        if t >= self._next_sample:
            self._next_sample = t + 1.0
            self.holding.update(t, inventory / QTY_SCALE)
            self._mids.append((t, mid))
            while self._mids[0][0] < t - RECENT_FILLS_S:
                self._mids.popleft()
            if t >= self._next_calibration:
                self._next_calibration = t + CALIBRATE_S
                self._calibrate(t)
        tstate = self.states.effective(self.ticker)
        if tstate is TradingState.HALTED:
            if self._orders_to_cancel():
                return self._cancel_halted()
            self._last_key = None
            return None
        mp = self.params.get(self.ticker)
        qp = mp.quote
        cross = skew = 0.0
        if group is not None and group.aware:
            if qp.model == "as":
                cross = group.cross_risk(self._event_i, qp.sigma)
            elif qp.model == "glft":
                skew = group.cross_skew(self._event_i, qp.gamma, qp.sigma, qp.A, qp.k)
        key = (bb, ba, inventory, qp, tstate, cross, skew)
        if key == self._last_key and t - self._last_quote_t < self.policy.quoting.min_requote_s:
            return None
        self._last_key = key
        self._last_quote_t = t
        q = quote(
            mid=mid,
            inventory=inventory,
            time_to_close=self.market.close_ts - t,
            params=qp,
            market=self.qm,
            best_bid=bb,
            best_ask=ba,
            bid_queue=qb,
            ask_queue=qa,
            min_edge=self.min_edge(t),
            holding_s=self.holding_s(t),
            cross_risk=cross,
            cross_skew=skew,
        )
        self.last_quote = q
        q = self._within_band(t, q)
        if tstate is not TradingState.REDUCE_ONLY and (
            self._side_kept(t, Side.BID, q.bid, q.bid_size)
            and self._side_kept(t, Side.ASK, q.ask, q.ask_size)
        ):
            return None  # both orders already rest where the quote wants them
        return self._apply_quote(t, q, tstate)

    async def _cancel_halted(self) -> None:
        await self.cancel_all("halted")
        self._last_key = None

    def _side_kept(self, t: float, side: Side, price: int | None, size: Qty) -> bool:
        """True when :meth:`_set_side` would make no order call for this side (outside
        REDUCE_ONLY): the same early returns, without a coroutine."""
        cur = self.resting[side]
        if self._side_waits(side, cur):
            return True
        if price is None or size <= 0:
            return cur is None
        if cur is None:
            return False
        return cur.price == price or t - self._placed_at[side] < self.policy.quoting.min_order_age_s

    def _side_waits(self, side: Side, cur: Order | None) -> bool:
        """True when an order of ours whose cancel is unconfirmed may rest on ``side`` (the
        slot's ``cur`` or an untracked one): no order call is made there until it is gone."""
        pending = self._pending
        return bool(pending) and (
            (cur is not None and cur.order_id in pending)
            or (cur is None and self._pending_on(side))
        )

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

    def _maybe_ready(self, t: float) -> bool:
        """Go READY once σ is warm or warm-up timed out; True when READY."""
        assert self._start_t is not None
        warm = self.vol.warm
        if not warm and t - self._start_t < self.policy.warmup.max_s:
            return False
        bounds = self.policy.params.sigma
        if warm:
            sigma = min(max(self.vol.sigma, bounds.min), bounds.max)
            reason = f"warm-up estimate {self.vol.sigma:.6g} from {self.vol.samples} samples"
            if self.warm_start is not None:
                reason += f" and {self.vol.seeded_samples} long returns of {self.warm_start}"
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
        return True

    # -- orders --------------------------------------------------------------------------------

    async def _apply_quote(self, t: float, q: Quote, tstate: TradingState) -> None:
        bid, ask, bid_size, ask_size = q.bid, q.ask, q.bid_size, q.ask_size
        if tstate is TradingState.REDUCE_ONLY:
            # Only the side that brings the position towards zero, sized to the position: never
            # more than it, and never nothing because it is smaller than the quote size.
            pos = self.account.inventory
            if pos >= 0:
                bid, bid_size = None, 0
            if pos <= 0:
                ask, ask_size = None, 0
            if pos > 0 and ask_size > pos:
                ask_size = pos
            elif pos < 0 and bid_size > -pos:
                bid_size = -pos
        old_ask = self.resting[Side.ASK]
        # Move the side that goes away from the other first, so our own quotes never cross.
        up = ask is not None and old_ask is not None and ask > old_ask.price
        if up:
            await self._set_side(t, Side.ASK, ask, ask_size, tstate)
            await self._set_side(t, Side.BID, bid, bid_size, tstate)
        else:
            await self._set_side(t, Side.BID, bid, bid_size, tstate)
            await self._set_side(t, Side.ASK, ask, ask_size, tstate)

    async def _set_side(
        self, t: float, side: Side, price: int | None, size: Qty, tstate: TradingState
    ) -> None:
        """Make our order on ``side`` rest at ``price`` for ``size`` count units (``None`` or a
        size of 0: no order). At ``price`` already, the order is kept (queue priority; size
        drift is tolerated) except under REDUCE_ONLY, where its size follows ``size``."""
        cur = self.resting[side]
        if self._side_waits(side, cur):
            return  # an order of ours whose cancel is unconfirmed may rest here: wait for it
        if price is None or size <= 0:
            if cur is not None:
                await self._cancel(t, cur, "side_not_quoted")
            return
        reduce_only = tstate is TradingState.REDUCE_ONLY
        if (
            cur is not None
            and cur.price == price
            and (not reduce_only or cur.remaining_count == size or await self._resize(t, cur, size))
        ):
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
            if (
                cur is not None
                and cur.price == price
                and (
                    not reduce_only
                    or cur.remaining_count == size
                    or await self._resize(t, cur, size)
                )
            ):
                return
        other_coll = (
            0.0 if other is None else collateral(other.side, other.price, other.remaining_count)
        )
        by_outcome, yes_flags = self.portfolio.event_outcome_others(self.ticker)
        exposure = Exposure(
            position=self.account.inventory,
            avg_price=float(self.account.avg_price),
            bid_collateral=other_coll if side is Side.ASK else 0.0,
            ask_collateral=other_coll if side is Side.BID else 0.0,
            mid=self.mid,
            others_at_risk=self.portfolio.others(self.ticker),
            event_others_at_risk=self.portfolio.event_others(self.ticker, self.market.event_ticker),
            orders_last_min=self._recent(self._order_times, t),
            event_others_by_outcome=by_outcome,
            event_yes=yes_flags,
        )
        req = OrderRequest(self.ticker, self._new_id(), side, price, size)
        # the state as of now: an error breaker may have tripped on the other side's order
        deny = self.gate.check(req, exposure, self.states.effective(self.ticker), self.qm.grid)
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
            self.rec.order(t, "reject", req=req, reason=_why(exc))
            self._on_error(t, exc)
            # post_only_cross (the book is across the price): a refused place leaves the slot
            # empty, a refused amend leaves ``cur`` resting unchanged in its slot; either way the
            # side is quoted again when the touch moves (it has, to be across) — no orphan
            if cur is None and not isinstance(exc, (OrderRejected, MarketNotFound)):
                self._unsure_ids[req.client_order_id] = None  # it may have landed all the same
                if len(self._unsure_ids) > KEEP_IDS:
                    del self._unsure_ids[next(iter(self._unsure_ids))]
            if cur is not None and _order_gone(exc):
                self._gone(cur, unsure=True)  # the venue has no such order resting any more
            return
        self.resting[side] = o if o.status is OrderStatus.RESTING else None
        self._placed_at[side] = t
        self.offered += size
        self._update_risk()

    async def _resize(self, t: float, cur: Order, size: Qty) -> bool:
        """REDUCE_ONLY with ``cur`` at the quoted price but not of the quoted ``size``: cut it
        down at once (:meth:`_shrink`) and return True, or return False to move it to ``size``
        through the gate when it is old enough to move (True while too young)."""
        if cur.remaining_count > size:
            await self._shrink(t, cur, size, "reduce_only")
            return True
        return t - self._placed_at[cur.side] < self.policy.quoting.min_order_age_s

    async def _shrink(self, t: float, o: Order, remaining: Qty, reason: str) -> None:
        """Cut resting order ``o`` to ``remaining`` count units (> 0) at its price.

        A partial cancel: it only reduces risk, so like a cancel it needs no gate and no
        minimum order age. A venue that refuses it gets a cancel instead; one that no longer
        has the order frees its slot.
        """
        self._order_times.append(t)
        try:
            done = await self.exchange.amend_order(o.order_id, o.price, o.fill_count + remaining)
        except ExchangeError as exc:
            self.rec.order(t, "reject", order=o, reason=_why(exc))
            self._on_error(t, exc)
            if _order_gone(exc):
                self._gone(o, unsure=True)
            else:
                await self._cancel(t, o, reason)
            return
        self.rec.order(t, "amend", order=done, reason=reason)
        slot = self.resting[o.side]
        if slot is not None and slot.order_id == o.order_id:
            alive = done.status is OrderStatus.RESTING and done.remaining_count > 0
            self.resting[o.side] = done if alive else None
        self._update_risk()

    async def _cancel(self, t: float, o: Order, reason: str) -> bool:
        """Ask the venue to cancel ``o``; True once it is known gone.

        ``o`` keeps its slot — at risk, and no other order on its side — until the venue
        confirms the cancel or reports the order gone (:func:`_order_gone`: filled, already
        cancelled, unknown). After any other failure it may still rest: the cancel is pending
        and sent again after ``CANCEL_RETRY_S`` (doubling up to ``CANCEL_RETRY_MAX_S``) until
        this answer, the venue's order update, a fill or a cancel-all confirms it gone.
        """
        self._order_times.append(t)
        try:
            done = await self.exchange.cancel_order(o.order_id)
        except ExchangeError as exc:
            self.rec.order(t, "cancel_failed", order=o, reason=_why(exc))
            self._on_error(t, exc)
            if _order_gone(exc):
                self._gone(o, unsure=True)
                return True
            self._retry_later(t, o, reason)
            return False
        self.rec.order(t, "cancel", order=done, reason=reason)
        self._gone(o)
        return True

    def _gone(self, o: Order, unsure: bool = False) -> None:
        """``o`` rests no more: free its slot and forget its cancel. ``unsure``: the venue only
        failed to find it; should it report the order resting after all, :meth:`_on_order`
        adopts it or cancels it."""
        oid = o.order_id
        if self._pending and self._pending.pop(oid, None) is not None:
            self._last_key = None  # its side is free again: requote at once
        slot = self.resting[o.side]
        if slot is not None and slot.order_id == oid:
            self.resting[o.side] = None
        if unsure:
            self._write_off(oid)
        self._update_risk()

    def _write_off(self, order_id: str) -> None:
        self._written_off[order_id] = None
        if len(self._written_off) > KEEP_IDS:
            del self._written_off[next(iter(self._written_off))]

    def _retry_later(self, t: float, o: Order, reason: str) -> None:
        """The cancel of ``o`` failed at ``t``: send it again after a doubling backoff."""
        p = self._pending.get(o.order_id)
        if p is None:
            p = _PendingCancel(o, reason, t + CANCEL_RETRY_S, CANCEL_RETRY_S)
            self._pending[o.order_id] = p
        else:
            p.order = o
            p.backoff = min(2.0 * p.backoff, CANCEL_RETRY_MAX_S)
            p.due = t + p.backoff
        if p.due < self._pending_due:
            self._pending_due = p.due
        self._update_risk()

    async def _retry_cancels(self, t: float) -> None:
        """Send again every pending cancel whose backoff has passed at ``t``."""
        for p in list(self._pending.values()):
            o = p.order
            if p.due <= t and self._pending.get(o.order_id) is p:
                slot = self.resting[o.side]
                await self._cancel(
                    t, slot if slot is not None and slot.order_id == o.order_id else o, p.reason
                )
        due = math.inf
        for p in self._pending.values():
            if p.due < due:
                due = p.due
        self._pending_due = due

    def _pending_on(self, side: Side) -> bool:
        """True when an order of ours not in a slot may still rest on ``side``."""
        return any(p.order.side is side for p in self._pending.values())

    def _orders_to_cancel(self) -> bool:
        """True when a slot holds an order whose cancel has not been sent (or has failed and
        waits for its retry: then False, the retry will send it)."""
        p = self._pending
        b, a = self.resting[Side.BID], self.resting[Side.ASK]
        return (b is not None and b.order_id not in p) or (a is not None and a.order_id not in p)

    async def _close(self) -> None:
        """Past close: cancel everything once; later, only what came to rest since."""
        if not self._closed or self._orders_to_cancel():
            self._closed = True
            await self.cancel_all("market_closed")

    async def _enforce(self, t: float) -> None:
        """Bring resting orders in line with the clock and the trading state without quoting:
        past close or HALTED, cancel them; REDUCE_ONLY, cancel what would add to the position
        and cut a reducing order down to the position. For a one-sided book (no mid, so no
        quote) and for a breaker that trips between book updates. Nothing while paused."""
        if self.paused is not None:
            return
        if t >= self.market.close_ts:
            await self._close()
            return
        tstate = self.states.effective(self.ticker)
        if tstate is TradingState.HALTED:
            if self._orders_to_cancel():
                await self.cancel_all("halted")
            self._last_key = None
        elif tstate is TradingState.REDUCE_ONLY:
            pos = self.account.inventory
            for side in _SIDES:
                o = self.resting[side]
                if o is None or o.order_id in self._pending:
                    continue
                room = -pos if side is Side.BID else pos
                if room <= 0:
                    await self._cancel(t, o, "reduce_only")
                elif o.remaining_count > room:
                    await self._shrink(t, o, room, "reduce_only")

    # -- risk ----------------------------------------------------------------------------------

    @staticmethod
    def _recent(times: deque[float], t: float) -> int:
        """Entries of ``times`` within the last 60 s (older ones are dropped)."""
        while times and times[0] <= t - 60.0:
            times.popleft()
        return len(times)

    def _update_risk(self) -> None:
        """Report this market's dollars at risk to the portfolio totals (orders whose cancel
        is unconfirmed included)."""
        bid, ask = self.resting[Side.BID], self.resting[Side.ASK]
        bc = 0.0 if bid is None else collateral(Side.BID, bid.price, bid.remaining_count)
        ac = 0.0 if ask is None else collateral(Side.ASK, ask.price, ask.remaining_count)
        if self._pending:
            for p in self._pending.values():
                o = p.order
                slot = bid if o.side is Side.BID else ask
                if slot is None or slot.order_id != o.order_id:
                    if o.side is Side.BID:
                        bc += collateral(Side.BID, o.price, o.remaining_count)
                    else:
                        ac += collateral(Side.ASK, o.price, o.remaining_count)
        pos, avg = self.account.inventory, float(self.account.avg_price)
        event = self.market.event_ticker
        portfolio = self.portfolio
        portfolio.update(self.ticker, event, dollars_at_risk(pos, avg, bc, ac))
        yes, no = leg_losses(pos, avg, bc, ac)
        portfolio.update_legs(self.ticker, event, yes, no)
        if self.event is not None:
            self.event.on_inventory(self._event_i, pos / QTY_SCALE)
        yes, no = leg_losses(pos, avg, 0.0, 0.0)
        if portfolio.update_position_legs(self.ticker, event, yes, no):
            # The event breaker reads positions only: resting orders, which REDUCE_ONLY
            # cancels, would lift it again at once and it would flap.
            worst = portfolio.event_position_worst_loss(event)
            limit = self.policy.portfolio.max_event_worst_loss
            held = self.states.event_holds(event).get(EVENT_BREAKER_SOURCE, TradingState.ACTIVE)
            change = event_breaker(worst, limit, held, self.policy)
            if change is not None:
                self.states.set_event(
                    event,
                    change,
                    source=EVENT_BREAKER_SOURCE,
                    reason=f"event worst-case loss {worst:.2f} of limit {limit:g} dollars "
                    "(positions)",
                )

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
        eb = self.breakers.error_rate
        trip = eb.on_error(t, exc)
        if trip is not None and self._apply(trip):
            eb.halted(t)
        if eb.halted_at is not None and eb.lift_due < self._risk_due:
            self._risk_due = eb.lift_due

    def _apply(self, trip: Trip) -> bool:
        """Set this market's state as ``trip`` says; True if it changed."""
        return self.states.set(self.ticker, trip.state, source=trip.source, reason=trip.reason)

    def risk_mark(self) -> float | None:
        """The price (dollars) the loss breakers mark the position at: the middle of others'
        touch; on a one-sided book the side that is there (the price the position could trade
        at); on an empty book the last mid; None (at cost) before any."""
        bb, ba = self.touch
        if bb is not None:
            return bb / PRICE_SCALE if ba is None else (bb + ba) / (2 * PRICE_SCALE)
        if ba is not None:
            return ba / PRICE_SCALE
        return self.mid if self.mid is not None else self._last_mid

    def _check_breakers(self, t: float) -> bool:
        """Run the breakers at event time ``t``, whatever the book; True if a state changed.

        The error breaker's lift and the close taper are a comparison each; the loss limits
        (this market's, and through :attr:`portfolio` the daily loss and the drawdown) re-mark
        the market at :meth:`risk_mark` every ``MARK_S`` seconds. Callers skip the call while
        ``t < self._risk_due``, the next time any of them may act.
        """
        b = self.breakers
        states = self.states
        ticker = self.ticker
        version = states.version
        trip = b.error_rate.lift(t, states.market_state(ticker))
        if trip is not None:
            self._apply(trip)
        if t >= self._next_mark:
            self._next_mark = t + MARK_S
            pnl = float(self.account.marked(self.risk_mark()))
            trip = b.market_loss.check(pnl, states.market_state(ticker))
            if trip is not None:
                self._apply(trip)
            portfolio = self.portfolio
            portfolio.report_pnl(ticker, pnl)
            trip = portfolio.check_loss(states.global_state)
            if trip is not None:
                states.set(None, trip.state, source=trip.source, reason=trip.reason)
        trip = b.taper.check(t, states.market_state(ticker))
        if trip is not None:
            self._apply(trip)
        due = b.next_due(t)
        self._risk_due = self._next_mark if self._next_mark < due else due
        return states.version != version

    async def cancel_all(self, reason: str) -> None:
        """Cancel every resting order of this market (also on the exchange's side).

        Each order we know of is cancelled (one that fails stays ours and pending, see
        :meth:`_cancel`), then the venue is asked to cancel whatever of ours rests in the
        market, up to ``CANCEL_ALL_ATTEMPTS`` times; once it answers, every order we held
        before asking is known gone.
        """
        now = self.now
        for side in _SIDES:
            o = self.resting[side]
            if o is not None:
                await self._cancel(now, o, reason)
        for p in list(self._pending.values()):  # untracked ones (those of slots were just sent)
            o = p.order
            slot = self.resting[o.side]
            if (slot is None or slot.order_id != o.order_id) and self._pending.get(o.order_id) is p:
                await self._cancel(now, o, reason)
        held = [o for o in (self.resting[Side.BID], self.resting[Side.ASK]) if o is not None]
        held += [p.order for p in self._pending.values()]
        for _ in range(CANCEL_ALL_ATTEMPTS):
            try:
                leftovers = await self.exchange.cancel_all(self.ticker)
            except ExchangeError as exc:
                self.rec.risk_event(
                    self.ticker,
                    now,
                    "cancel_all_failed",
                    "exchange_error",
                    self.states.effective(self.ticker).value,
                    {"error": str(exc)},
                )
                continue
            for o in leftovers:
                self.rec.order(now, "cancel", order=o, reason=reason)
            for o in held:
                self._gone(o)
            return

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
                self._write_off(cur.order_id)
                if self._pending and self._pending.pop(cur.order_id, None) is not None:
                    self._last_key = None
        elif self._pending:
            p = self._pending.get(f.order_id)
            if p is not None:  # an untracked order whose cancel is unconfirmed filled
                left = p.order.remaining_count - f.count
                if left > 0:
                    p.order = _with_remaining(p.order, left, f.count)
                else:
                    del self._pending[f.order_id]
                    self._write_off(f.order_id)
                    self._last_key = None
                self._update_risk()

    async def _on_order(self, o: Order) -> None:
        """The venue's word on one of our orders (after a fill, an amend, a cancel).

        It is the truth about what rests: a fill can reach us after a later amend of the same
        order, so arithmetic on our side may have written off an order that still rests. Such
        an order is adopted back into its empty slot, or cancelled if the slot holds a newer
        one: no order of ours is left resting unknown to the loop.
        """
        alive = o.status is OrderStatus.RESTING and o.remaining_count > 0
        pending = self._pending
        p = pending.get(o.order_id) if pending else None
        if p is not None:
            if alive:
                p.order = o  # still resting: the cancel's retry goes on
            else:
                del pending[o.order_id]  # the venue confirms it gone
                self._last_key = None
        cur = self.resting[o.side]
        if cur is not None and cur.order_id == o.order_id:
            self.resting[o.side] = o if alive else None
            self._update_risk()
            return
        if p is not None:
            self._update_risk()
            return
        if o.order_id in self._written_off:
            del self._written_off[o.order_id]
        elif o.client_order_id in self._unsure_ids:
            del self._unsure_ids[o.client_order_id]  # a create that failed had landed after all
        else:
            return  # an order we cancelled or replaced ourselves: a late word changes nothing
        if alive:
            if cur is None:
                self.resting[o.side] = o
                self._update_risk()
            else:
                await self._cancel(self.now, o, "untracked")

    async def _on_settlement(self, s: Settlement) -> None:
        await self.cancel_all("settlement")
        self.account.settle(s.result is Outcome.YES)
        self.portfolio.report_pnl(self.ticker, float(self.account.marked(None)))
        self.state = LoopState.STOPPED
        self.rec.risk_event(
            self.ticker,
            s.ts,
            "loop_state",
            "settled",
            self.states.effective(self.ticker).value,
            {"result": s.result.value},
        )

    async def _on_status(self, s: MarketStatus) -> None:
        """The venue paused or reopened trading, or changed the grid (module docstring)."""
        state = self.states.effective(self.ticker).value
        if s.market is not None:
            self._regrid(s.market)
            self.rec.risk_event(
                self.ticker,
                s.ts,
                "market_status",
                "price_grid",
                state,
                {
                    "reason": s.reason,
                    "structure": s.market.price_level_structure,
                    "price_ranges": [[r.start, r.end, r.step] for r in s.market.price_ranges],
                },
            )
        if not s.active:
            if self.paused is None:
                self.rec.risk_event(
                    self.ticker, s.ts, "market_status", "paused", state, {"reason": s.reason}
                )
            if s.reason == BLIND_BOOK:  # trading goes on at the venue: no quote on a stale book
                for side in _SIDES:
                    o = self.resting[side]
                    if o is not None and o.order_id not in self._pending:
                        await self._cancel(s.ts, o, BLIND_BOOK)
            self.paused = s.reason
            self._reconcile_due = math.inf
            self._last_key = None
            return
        if self.paused is not None:
            self.rec.risk_event(
                self.ticker,
                s.ts,
                "market_status",
                "reactivated",
                state,
                {"reason": s.reason, "paused_for": self.paused},
            )
            self.paused = f"reconciling after {s.reason}"
            self._reconcile_due = s.ts  # on_event reconciles right after this

    def _regrid(self, market: MarketInfo) -> None:
        """Rebuild what depends on the price grid from ``market``; requote at the next tick."""
        self.market = market
        self.qm = QuoteMarket.from_market(market)
        self.intensity.step = min(r.step for r in market.price_ranges) / PRICE_SCALE
        self._last_key = None
        self._inputs = ()

    async def _reconcile(self, t: float) -> None:
        """After a reactivation: keep only the orders the venue says still rest, cancel ours it
        has that the loop does not know, and end the pause. A failed ``get_orders`` leaves
        the loop paused and is tried again ``RECONCILE_RETRY_S`` later."""
        try:
            listed = await self.exchange.get_orders(self.ticker)
        except ExchangeError as exc:
            self._on_error(t, exc)
            self._reconcile_due = t + RECONCILE_RETRY_S
            return
        venue = {
            o.order_id: o
            for o in listed
            if o.status is OrderStatus.RESTING and o.remaining_count > 0
        }
        forgotten: list[str] = []
        for side in _SIDES:
            o = self.resting[side]
            if o is None:
                continue
            now = venue.get(o.order_id)
            if now is None:
                forgotten.append(o.order_id)
                self._gone(o)
            else:
                self.resting[side] = now
        for oid in list(self._pending):
            if oid not in venue:
                forgotten.append(oid)
                del self._pending[oid]
        self.paused = None
        self._reconcile_due = math.inf
        self._last_key = None
        self._inputs = ()
        self._update_risk()
        known = {o.order_id for o in self.resting.values() if o is not None} | set(self._pending)
        strays = [
            o
            for oid, o in venue.items()
            if oid not in known and o.client_order_id.startswith(f"{self._prefix}-")
        ]
        for o in strays:
            await self._cancel(t, o, "untracked")
        self.rec.risk_event(
            self.ticker,
            t,
            "market_status",
            "reconciled",
            self.states.effective(self.ticker).value,
            {
                "resting": sorted(venue),
                "forgotten": forgotten,
                "cancelled": [o.order_id for o in strays],
            },
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
        self._last_key = None
        try:
            snap = await self.exchange.get_orderbook(self.ticker)
        except ExchangeError:
            # no fresh book to be had (a replay of a recorded run: the recorded snapshot comes
            # next in the stream): the book stays unsynced and nothing is quoted until one comes
            self._awaiting_book = True
            return
        self.rec.market_event(snap)
        self.book.apply_snapshot(snap)
        self._touch_for = None

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


_GONE_CODES = frozenset({"not_found", "order_not_resting", "OrderNotFound", "KalshiNotFound"})
"""Error codes meaning "no such resting order" (also as a replay re-raises recorded ones)."""


def _order_gone(exc: ExchangeError) -> bool:
    """True when ``exc`` says the order no longer rests (filled, cancelled or unknown)."""
    return isinstance(exc, OrderNotFound) or exc.code in _GONE_CODES


def _why(exc: ExchangeError) -> str:
    """An exchange error as recorded in the audit store: ``code: message``."""
    return f"{exc.code or type(exc).__name__}: {exc}"


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
