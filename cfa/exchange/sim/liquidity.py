"""Background order flow: the resting ladders' refreshes and the takers, pre-drawn in batches.

Everything random about a market except its outcome is drawn here, vectorised with numpy, into
a :class:`Tape`: one row per event, in time order. The market then only reads the tape, so
the per-event path does no random-number calls, no numpy scalar work and no Decimal.

Events arrive at rate ``(refresh_rate + taker rate) · activity(regime)``: a Poisson process,
or with ``burst_sigma`` > 0 a Cox process whose log-rate wanders (Ornstein–Uhlenbeck) around
that mean, so updates cluster in bursts as they do on Kalshi. Each event is one of:

* **refresh** of one side's ladder (YES bids or YES asks, i.e. NO bids): a price level
  ``d`` ticks behind the reference price is drawn (``d = ⌊Exp · ladder_mean_ticks⌋``, at most
  ``ladder_max_ticks``). The references are the grid points at or below ``f − (h − ½)`` and at
  or above ``f + (h − ½)`` (at least one tick apart), where ``f`` is the latent price as a
  fractional grid index and ``h`` = ``half_spread_ticks``: ``h = 0.5`` makes the background
  touch the two grid points around the latent price (a one-tick spread), ``h = 3`` about six
  ticks. With ``lag`` > 0 the makers centre not on the latent price but on an exponential
  moving average of its logit (time constant ``lag`` seconds): the book trails the truth.
  The event adds size when the level holds less than a random threshold around its target
  depth ``level_size·(1 + depth_slope·d)`` and cancels size otherwise, so each level
  mean-reverts to its target. A share ``far_share`` of refreshes instead picks a level
  uniformly between the reference and the edge of the grid (target depth as at
  ``ladder_max_ticks``), which gives the broad, sparse far book of real markets and, on tapered
  grids, activity at sub-cent prices. Sizes are log-normal (heavy-tailed) around
  ``size_median``. With probability ``stale_cancel_prob`` a refresh first checks for a *stale*
  touch (a bid above the reference, an ask below it) and cancels it instead. An add that would
  cross the other side is a marketable order: it trades first and rests the rest.
* **uninformed taker**: buys or sells (even odds) up to its log-normal size, through every
  level within ``δ ~ Exp(k)`` dollars of the book mid, best price first. The rate of takers
  reaching distance δ is therefore ``A·e^(−kδ)`` with ``A`` = the taker rate per side.
* **informed taker** (``informed_share`` of takers): knows the latent price ``p`` and buys
  every ask below ``p − informed_edge`` (or sells every bid above ``p + informed_edge``) up to
  its size; it does nothing when the book is not mispriced. This is the adverse selection.

Tape columns (numpy arrays, one row per event): ``t`` time; ``kind`` (constants below); ``lvl`` and
``aux`` (grid indices or a price distance, by kind); ``thr`` (add/cancel threshold, count
units); ``size`` (count units); ``pu`` (latent price, float price units).
"""

from __future__ import annotations

import math

import numpy as np

from cfa.core.types import PRICE_SCALE, QTY_SCALE, Price, Qty
from cfa.exchange.sim.latent import Latent
from cfa.exchange.sim.scenarios import BookParams, TakerParams

REFRESH_BID = 0
"""Refresh a YES-bid level: ``lvl`` = level index, ``aux`` = reference bid index."""
REFRESH_BID_STALE = 1
"""As :data:`REFRESH_BID`, but cancel a stale best bid (above ``aux``) first if there is one."""
REFRESH_ASK = 2
"""Refresh a YES-ask level (a NO bid): ``lvl`` = level index, ``aux`` = reference ask index."""
REFRESH_ASK_STALE = 3
"""As :data:`REFRESH_ASK`, but cancel a stale best ask (below ``aux``) first if there is one."""
TAKER_BUY = 4
"""Uninformed taker buying YES: ``aux`` = sweep depth from the mid in price units."""
TAKER_SELL = 5
"""Uninformed taker selling YES: ``aux`` = sweep depth from the mid in price units."""
INFORMED = 6
"""Informed taker: buys asks up to index ``lvl`` or sells bids down to index ``aux``."""
NOOP = 7
"""Nothing happens (a refresh drawn outside the grid)."""


class Tape:
    """One batch of pre-drawn events, in time order (see the module docstring for columns).

    Columns are numpy arrays (8 bytes per event and column; 4 for an integer column whose
    values fit, 1 for ``kind``), not lists of Python scalars (about 30 bytes per value): a
    market holds one batch of up to ``CHUNK`` events at all times, so this is most of a
    simulated market's memory. The market turns
    them into lists a slice at a time (``.tolist()`` gives the same Python values).
    """

    __slots__ = ("aux", "kind", "lvl", "n", "pu", "size", "t", "thr")

    def __init__(self) -> None:
        self.t: np.ndarray = _EMPTY_F
        self.kind: np.ndarray = _EMPTY_I8
        self.lvl: np.ndarray = _EMPTY_I
        self.aux: np.ndarray = _EMPTY_I
        self.thr: np.ndarray = _EMPTY_I
        self.size: np.ndarray = _EMPTY_I
        self.pu: np.ndarray = _EMPTY_F
        self.n = 0


_I32 = np.iinfo(np.int32)


def _narrow(a: np.ndarray) -> np.ndarray:
    """``a`` (int64) as int32 when every value fits (half the memory, the same values)."""
    if a.size and _I32.min <= int(a.min()) and int(a.max()) <= _I32.max:
        return a.astype(np.int32)
    return a


_EMPTY_F = np.empty(0, dtype=np.float64)
_EMPTY_I = np.empty(0, dtype=np.int64)
_EMPTY_I8 = np.empty(0, dtype=np.int8)


class FlowModel:
    """Draws :class:`Tape` batches for one market on one price grid.

    ``prices`` are the market's tradable YES prices, ascending (grid index ``i`` ↔
    ``prices[i]``). Contract: draws come from ``rng`` in a fixed order, so the tapes are a pure
    function of the generator's seed and the latent process.
    """

    def __init__(
        self,
        book: BookParams,
        takers: TakerParams,
        prices: list[Price],
        rng: np.random.Generator,
    ) -> None:
        self.book = book
        self.takers = takers
        self.rng = rng
        self.n = len(prices)
        self._view_x = 0.0
        self._view_t = 0.0
        self._burst_h = 0.0
        self._burst_step = min(1.0, book.burst_time / 4) if book.burst_time > 0 else 1.0
        self._p_ext = np.array([0, *prices, PRICE_SCALE], dtype=np.float64)
        self._i_ext = np.arange(-1, self.n + 1, dtype=np.float64)
        refresh = book.refresh_rate
        uninformed = takers.rate * (1.0 - takers.informed_share)
        informed = takers.rate * takers.informed_share
        self.base_rate = refresh + takers.rate
        weights = np.array(
            [refresh / 2, refresh / 2, uninformed / 2, uninformed / 2, informed], dtype=np.float64
        )
        total = weights.sum()
        self._cum = np.cumsum(weights) / total if total > 0 else np.zeros(5)
        self._lower = np.concatenate(([0.0], self._cum[:-1]))
        self._width = np.maximum(weights / total if total > 0 else weights, 1e-300)

    def frac_index(self, price_units: np.ndarray) -> np.ndarray:
        """Fractional grid index of prices in price units (−1 at $0, ``n`` at $1)."""
        out: np.ndarray = np.interp(price_units, self._p_ext, self._i_ext)
        return out

    def reference(self, p: float) -> tuple[int, int]:
        """The reference (bid, ask) grid indices around latent probability ``p``."""
        f = float(self.frac_index(np.array([p * PRICE_SCALE]))[0])
        hs = self.book.half_spread_ticks - 0.5
        bid = math.floor(f - hs)
        return bid, max(math.ceil(f + hs), bid + 1)

    def initial_ladders(self, p: float, t0: float) -> tuple[list[Qty], list[Qty]]:
        """Background sizes per grid index (YES bids, YES asks) to start from, at ``t0``."""
        self._view_x = math.log(p / (1.0 - p))
        self._view_t = t0
        bids = [0] * self.n
        asks = [0] * self.n
        rb, ra = self.reference(p)
        b = self.book
        levels = b.initial_levels
        noise = self.rng.uniform(0.5, 1.5, size=(2, levels))
        for d in range(levels):
            target = b.level_size * (1.0 + b.depth_slope * d) / QTY_SCALE
            for side, ladder, i in ((0, bids, rb - d), (1, asks, ra + d)):
                if 0 <= i < self.n:
                    ladder[i] = max(1, round(target * noise[side, d])) * QTY_SCALE
        return bids, asks

    def _makers_view(self, times: np.ndarray, x: np.ndarray, pu: np.ndarray) -> np.ndarray:
        """The price (units) background makers centre on: the latent one, or its lagged EWMA."""
        lag = self.book.lag
        if lag <= 0:
            return pu
        # y_k = x_k + e^{-dt_k/lag}·(y_{k-1} - x_k), in closed form with s = (t - t_0)/lag:
        # y_k = e^{-s_k}·(y_0 + Σ_{j≤k} (1 - e^{-dt_j/lag})·x_j·e^{s_j})
        s = (times - self._view_t) / lag
        if s[-1] < 600.0:  # e^{s} stays finite
            a = -np.expm1(-np.diff(s, prepend=0.0))
            y = np.exp(-s) * (self._view_x + np.cumsum(a * x * np.exp(s)))
        else:  # a long quiet stretch: the plain recursion
            keep = np.exp(-np.diff(s, prepend=0.0)).tolist()
            acc, out = self._view_x, []
            for xk, wk in zip(x.tolist(), keep, strict=True):
                acc = xk + wk * (acc - xk)
                out.append(acc)
            y = np.array(out)
        self._view_x = float(y[-1])
        self._view_t = float(times[-1])
        view: np.ndarray = PRICE_SCALE / (1.0 + np.exp(-y))
        return view

    def draw(self, latent: Latent, t0: float, t_stop: float, n_max: int) -> tuple[Tape, bool]:
        """Events after ``t0`` and before ``t_stop``, at most ``n_max`` of them.

        Returns the tape and whether it reached ``t_stop`` (False: it stopped at ``n_max``
        events and the next batch continues from its last event). Advances ``latent``.
        """
        tape = Tape()
        rng = self.rng
        lam = self.base_rate * latent.activity
        if lam <= 0 or t_stop <= t0:
            return tape, True
        times, hgrid = self._event_times(t0, lam, n_max)
        avail = len(times)
        m = int(np.searchsorted(times, t_stop))
        reached = m < avail
        if hgrid is not None:  # remember the activity level where the next batch starts
            end = t_stop if reached else float(times[m - 1])
            self._burst_h = float(hgrid[min(len(hgrid) - 1, int((end - t0) / self._burst_step))])
        if m == 0:
            return tape, True
        times = times[:m]
        x = latent.path(times, rng.standard_normal(m))
        u = rng.random(m)
        dist = rng.standard_exponential(m)
        zsize = rng.standard_normal(m)
        thr_u = rng.random(m)

        b, tk, n = self.book, self.takers, self.n
        pu = PRICE_SCALE / (1.0 + np.exp(-x))
        f = self.frac_index(self._makers_view(times, x, pu))
        # bucket: 0 bid refresh, 1 ask refresh, 2 taker buy, 3 taker sell, 4 informed
        bucket = np.minimum(np.searchsorted(self._cum, u, side="right"), 4)
        within = (u - self._lower[bucket]) / self._width[bucket]  # a fresh U(0,1) in the bucket

        # refresh events
        d = np.floor(dist * b.ladder_mean_ticks)
        ref_bid = np.floor(f - (b.half_spread_ticks - 0.5))
        ref_ask = np.maximum(np.ceil(f + (b.half_spread_ticks - 0.5)), ref_bid + 1)
        is_bid = bucket == 0
        is_ask = bucket == 1
        near = np.ones(m, dtype=bool)
        if b.far_share > 0:  # a share of refreshes lands anywhere behind the reference
            coin, where_u = rng.random((2, m))
            near = coin >= b.far_share
            behind = np.where(is_bid, ref_bid, n - 1 - ref_ask)
            d = np.where(near, d, np.floor(where_u * (np.maximum(behind, 0) + 1)))
        lvl_refresh = np.where(is_bid, ref_bid - d, ref_ask + d)
        depth_d = np.minimum(d, b.ladder_max_ticks)
        thr = b.level_size * (1.0 + b.depth_slope * depth_d) * 2.0 * thr_u
        stale = within < b.stale_cancel_prob

        # informed takers' limits
        inf_buy = np.floor(self.frac_index(pu - tk.informed_edge))
        inf_sell = np.ceil(self.frac_index(pu + tk.informed_edge))

        code = np.select(
            [is_bid, is_ask, bucket == 2, bucket == 3],
            [
                np.where(stale, REFRESH_BID_STALE, REFRESH_BID),
                np.where(stale, REFRESH_ASK_STALE, REFRESH_ASK),
                TAKER_BUY,
                TAKER_SELL,
            ],
            INFORMED,
        )
        refresh = is_bid | is_ask
        too_far = near & (d > b.ladder_max_ticks)
        off_grid = refresh & (too_far | (lvl_refresh < 0) | (lvl_refresh >= n))
        code = np.where(off_grid, NOOP, code)
        lvl = np.where(refresh, lvl_refresh, np.where(bucket == 4, inf_buy, 0))
        depth = np.rint(dist * (PRICE_SCALE / tk.k))
        informed = bucket == 4
        aux = np.where(
            is_bid, ref_bid, np.where(is_ask, ref_ask, np.where(informed, inf_sell, depth))
        )

        med = np.where(refresh, b.size_median, tk.size_median) / QTY_SCALE
        sig = np.where(refresh, b.size_sigma, tk.size_sigma)
        size = np.maximum(1.0, np.rint(med * np.exp(sig * zsize))) * QTY_SCALE

        tape.t = np.ascontiguousarray(times, dtype=np.float64)
        tape.kind = code.astype(np.int8)  # 0..7
        tape.lvl = _narrow(lvl.astype(np.int64))
        tape.aux = _narrow(aux.astype(np.int64))
        tape.thr = _narrow(np.rint(thr).astype(np.int64))
        tape.size = _narrow(size.astype(np.int64))
        tape.pu = np.asarray(pu, dtype=np.float64)
        tape.n = m
        return tape, reached

    def _event_times(self, t0: float, lam: float, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        """``n`` event times after ``t0`` at mean rate ``lam``, and the activity path if bursty.

        Without bursts the events are Poisson. With ``burst_sigma`` > 0 the rate is
        ``lam·exp(h − σ²/2)`` where ``h`` is an Ornstein–Uhlenbeck process (stationary
        deviation σ, time constant ``burst_time``) held constant on steps of
        :attr:`_burst_step` seconds: a Cox process, drawn by mapping unit-rate arrivals
        through the inverse of the integrated rate. The mean rate stays ``lam``.
        """
        ops = np.cumsum(self.rng.standard_exponential(n)) / lam  # "operational" seconds
        sig = self.book.burst_sigma
        if sig <= 0:
            return t0 + ops, None
        step = self._burst_step
        rho = math.exp(-step / self.book.burst_time)
        scale = sig * math.sqrt(1.0 - rho * rho)
        hs: list[float] = []
        h = self._burst_h
        total = 0.0
        need = float(ops[-1])
        while total <= need:  # extend the activity path until it covers every arrival
            k = math.ceil((need - total) * 1.5 / step) + 8
            for e in (self.rng.standard_normal(k) * scale).tolist():
                hs.append(h)
                total += math.exp(h - 0.5 * sig * sig) * step
                h = rho * h + e
        hgrid = np.array(hs)
        cum = np.concatenate(([0.0], np.cumsum(np.exp(hgrid - 0.5 * sig * sig)) * step))
        grid_t = np.arange(len(cum), dtype=np.float64) * step
        return t0 + np.interp(ops, cum, grid_t), hgrid
