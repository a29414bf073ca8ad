"""One simulated market: its latent probability, its background flow, its book, its lifecycle.

The market runs as a generator (:meth:`SimMarket.step` resumes it): each step processes the one
event due at :attr:`SimMarket.next_t` and publishes what changed. Events come from pre-drawn
:class:`~cfa.exchange.sim.liquidity.Tape` batches; a batch ends early at the next regime switch,
jump or the close, which the market applies between batches. At ``close_ts`` our resting orders
are cancelled and the book is emptied (an empty :class:`BookSnapshot`, as Kalshi sends after
close); ``settlement_delay`` seconds later the market resolves — YES with the latent
probability at close — pays out our position and publishes a :class:`Settlement`.

Randomness: one ``numpy.random.Generator(PCG64)`` per market, seeded from
``SeedSequence([seed, hash(ticker)])`` (a stable SHA-256 hash, not Python's ``hash``). Our
orders never draw from it, so the background world is the same whatever we do.

A market of a multi-market event gets its latent probability from outside: a
:class:`~cfa.exchange.sim.event.LegView` of the event's driver instead of its own
:class:`LatentProcess` (its generator then draws only the flow, and the outcome is the
event's single draw).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
from bisect import bisect_left, bisect_right
from collections.abc import Generator

import numpy as np

from cfa.core.grid import PriceGrid
from cfa.core.types import BookDelta, MarketInfo, Outcome, Price, PriceRange, Settlement
from cfa.exchange import records
from cfa.exchange.emulator.account import Account
from cfa.exchange.sim.event import LegView
from cfa.exchange.sim.latent import Latent, LatentProcess
from cfa.exchange.sim.liquidity import (
    INFORMED,
    REFRESH_ASK_STALE,
    REFRESH_BID_STALE,
    TAKER_BUY,
    TAKER_SELL,
    FlowModel,
)
from cfa.exchange.sim.matching import MatchingBook
from cfa.exchange.sim.scenarios import Scenario

CHUNK = 4096
"""Most events drawn per batch (fewer when a rare event or the close comes first)."""
ROWS = 64
"""Tape rows turned into Python lists at a time (the tape itself stays in numpy arrays)."""
CHUNK_SECONDS = 30.0
"""A batch covers about this much simulated time (at least 256 events), so that a thin market
does not hold thousands of pre-drawn events in memory."""


def grid_prices(grid: PriceGrid) -> list[Price]:
    """Every tradable price of ``grid``, ascending."""
    return list(_grid_prices(grid.ranges))


@functools.lru_cache(maxsize=64)
def _grid_prices(ranges: tuple[PriceRange, ...]) -> tuple[Price, ...]:
    grid = PriceGrid(ranges)
    out: list[Price] = []
    p: Price | None = grid.lo
    while p is not None:
        out.append(p)
        p = grid.next_up(p)
    return tuple(out)


def market_seed(seed: int, ticker: str) -> np.random.SeedSequence:
    """The seed sequence of one market: the run's seed and a stable hash of the ticker."""
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    digest = hashlib.sha256(ticker.encode("utf-8")).digest()
    return np.random.SeedSequence([seed, int.from_bytes(digest[:8], "big")])


class SimMarket(MatchingBook):
    """A simulated market. ``next_t`` is the time of its next event (``inf`` once settled)."""

    def __init__(
        self,
        scenario: Scenario,
        info: MarketInfo,
        *,
        seed: int,
        start_ts: float,
        account: Account,
        latent: LegView | None = None,
    ) -> None:
        self.grid = PriceGrid(info.price_ranges)
        super().__init__(info, grid_prices(self.grid), account)
        self.scenario = scenario
        rng = np.random.Generator(np.random.PCG64(market_seed(seed, info.ticker)))
        self.latent: Latent = (
            LatentProcess(scenario.latent, rng, start_ts, info.close_ts)
            if latent is None
            else latent
        )
        self.flow = FlowModel(scenario.book, scenario.takers, self.prices, rng)
        peak = self.flow.base_rate * max(
            scenario.latent.calm.activity, scenario.latent.volatile.activity
        )
        self._chunk = int(min(CHUNK, max(256, math.ceil(peak * CHUNK_SECONDS))))
        bids, asks = self.flow.initial_ladders(self.latent.p, start_ts)
        self.bg_bid[:] = bids
        self.bg_ask[:] = asks
        self._rescan_bid(self.n - 1)
        self._rescan_ask(0)
        self.closed = False
        self.done = False
        self.result: Outcome | None = None
        self.settle_ts = info.close_ts + scenario.market.settlement_delay
        self.next_t = start_ts
        gen = self._run(start_ts)
        next(gen)  # draw the first batch; sets next_t
        self.step = gen.__next__
        """Process the event due at ``next_t`` (the caller has moved the clock there)."""

    @property
    def latent_p(self) -> float:
        """The latent ("true") probability of YES now; for diagnostics and tests."""
        return self.latent.p

    def _run(self, t: float) -> Generator[None, None, None]:
        latent, flow = self.latent, self.flow
        prices, no_prices, n = self.prices, self.no_prices, self.n
        bg_bid, bg_ask, own_bid, own_ask = self.bg_bid, self.bg_ask, self.own_bid, self.own_ask
        ticker = self.ticker
        yes_leg, no_leg = Outcome.YES, Outcome.NO
        close_ts = self.info.close_ts
        bg_cancel, bg_add, sweep = self.bg_cancel, self.bg_add, self.sweep
        new, d_ticker, d_seq, d_ts = records.new, records.d_ticker, records.d_seq, records.d_ts
        d_outcome, d_price, d_delta = records.d_outcome, records.d_price, records.d_delta
        d_coid = records.d_coid
        while True:
            stop = min(latent.next_rare(), close_ts)
            tape, reached = flow.draw(latent, t, stop, self._chunk)
            m = tape.n
            boundary = stop if reached else float(tape.t[m - 1])
            self.next_t = float(tape.t[0]) if m else boundary
            yield
            for lo in range(0, m, ROWS):  # the tape's columns as lists, a slice at a time
                hi = min(lo + ROWS, m)
                T = tape.t[lo:hi].tolist()
                KIND = tape.kind[lo:hi].tolist()
                LVL = tape.lvl[lo:hi].tolist()
                AUX = tape.aux[lo:hi].tolist()
                THR = tape.thr[lo:hi].tolist()
                SIZE = tape.size[lo:hi].tolist()
                PU = tape.pu[lo:hi].tolist()
                next_times = tape.t[lo + 1 : hi + 1].tolist()
                if hi == m:
                    next_times.append(boundary)
                for k in range(hi - lo):
                    ts = T[k]
                    kind = KIND[k]
                    if kind <= REFRESH_BID_STALE:
                        i = LVL[k]
                        if kind == REFRESH_BID_STALE:
                            b = self.bb
                            if b > AUX[k] and bg_bid[b]:
                                bg_cancel(True, b, bg_bid[b], ts)
                                i = -1
                        if i >= 0:
                            level = bg_bid[i]
                            if level < THR[k]:
                                s = SIZE[k]
                                if i >= self.ba:
                                    bg_add(True, i, s, ts)
                                else:
                                    bg_bid[i] = level + s
                                    if i > self.bb:
                                        self.bb = i
                                    self.seq = seq = self.seq + 1
                                    emit = self.emit
                                    if emit is not None:  # make_delta(...), inlined
                                        ev = new(BookDelta)
                                        d_ticker(ev, ticker)
                                        d_seq(ev, seq)
                                        d_ts(ev, ts)
                                        d_outcome(ev, yes_leg)
                                        d_price(ev, prices[i])
                                        d_delta(ev, s)
                                        d_coid(ev, None)
                                        emit(ev)
                            elif level:
                                if own_bid[i]:
                                    bg_cancel(True, i, SIZE[k], ts)
                                else:
                                    c = SIZE[k]
                                    if c >= level:
                                        c = level
                                        bg_bid[i] = 0
                                        if i == self.bb:
                                            self._rescan_bid(i)
                                    else:
                                        bg_bid[i] = level - c
                                    self.seq = seq = self.seq + 1
                                    emit = self.emit
                                    if emit is not None:  # make_delta(...), inlined
                                        ev = new(BookDelta)
                                        d_ticker(ev, ticker)
                                        d_seq(ev, seq)
                                        d_ts(ev, ts)
                                        d_outcome(ev, yes_leg)
                                        d_price(ev, prices[i])
                                        d_delta(ev, -c)
                                        d_coid(ev, None)
                                        emit(ev)
                    elif kind <= REFRESH_ASK_STALE:
                        i = LVL[k]
                        if kind == REFRESH_ASK_STALE:
                            a = self.ba
                            if a < AUX[k] and bg_ask[a]:
                                bg_cancel(False, a, bg_ask[a], ts)
                                i = -1
                        if i >= 0:
                            level = bg_ask[i]
                            if level < THR[k]:
                                s = SIZE[k]
                                if i <= self.bb:
                                    bg_add(False, i, s, ts)
                                else:
                                    bg_ask[i] = level + s
                                    if i < self.ba:
                                        self.ba = i
                                    self.seq = seq = self.seq + 1
                                    emit = self.emit
                                    if emit is not None:  # make_delta(...), inlined
                                        ev = new(BookDelta)
                                        d_ticker(ev, ticker)
                                        d_seq(ev, seq)
                                        d_ts(ev, ts)
                                        d_outcome(ev, no_leg)
                                        d_price(ev, no_prices[i])
                                        d_delta(ev, s)
                                        d_coid(ev, None)
                                        emit(ev)
                            elif level:
                                if own_ask[i]:
                                    bg_cancel(False, i, SIZE[k], ts)
                                else:
                                    c = SIZE[k]
                                    if c >= level:
                                        c = level
                                        bg_ask[i] = 0
                                        if i == self.ba:
                                            self._rescan_ask(i)
                                    else:
                                        bg_ask[i] = level - c
                                    self.seq = seq = self.seq + 1
                                    emit = self.emit
                                    if emit is not None:  # make_delta(...), inlined
                                        ev = new(BookDelta)
                                        d_ticker(ev, ticker)
                                        d_seq(ev, seq)
                                        d_ts(ev, ts)
                                        d_outcome(ev, no_leg)
                                        d_price(ev, no_prices[i])
                                        d_delta(ev, -c)
                                        d_coid(ev, None)
                                        emit(ev)
                    elif kind == TAKER_BUY:
                        a = self.ba
                        if a < n:
                            b = self.bb
                            mid = (prices[b] + prices[a]) * 0.5 if b >= 0 else PU[k]
                            limit = mid + AUX[k]
                            if prices[a] <= limit:
                                sweep(True, bisect_right(prices, limit) - 1, SIZE[k], ts, None)
                    elif kind == TAKER_SELL:
                        b = self.bb
                        if b >= 0:
                            a = self.ba
                            mid = (prices[b] + prices[a]) * 0.5 if a < n else PU[k]
                            limit = mid - AUX[k]
                            if prices[b] >= limit:
                                sweep(False, bisect_left(prices, limit), SIZE[k], ts, None)
                    elif kind == INFORMED:
                        if self.ba <= LVL[k]:
                            sweep(True, LVL[k], SIZE[k], ts, None)
                        elif self.bb >= AUX[k]:
                            sweep(False, AUX[k], SIZE[k], ts, None)
                    self.next_t = next_times[k]
                    yield
            t = boundary
            if not reached:
                continue
            if stop >= close_ts:
                break
            latent.to(stop)
        latent.to(close_ts)
        self._close(close_ts)
        if self.settle_ts > close_ts:
            self.next_t = self.settle_ts
            yield
        self._settle(self.settle_ts)
        self.next_t = math.inf
        while True:  # settled: the engine never steps it again
            yield

    def _close(self, ts: float) -> None:
        for o in self.own_orders():
            self.cancel(o, ts)
        self.clear()
        self.closed = True
        self.info = dataclasses.replace(self.info, status="closed")
        self.seq += 1
        emit = self.emit
        if emit is not None:
            emit(self.snapshot(ts))

    def _settle(self, ts: float) -> None:
        yes = self.latent.resolve()
        self.result = Outcome.YES if yes else Outcome.NO
        self.account.settle(self.ticker, yes)
        self.info = dataclasses.replace(self.info, status="finalized")
        self.done = True
        emit = self.emit
        if emit is not None:
            emit(Settlement(self.ticker, self.result, ts))
