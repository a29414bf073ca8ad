"""Background order flow: the resting ladders' refreshes and the takers, pre-drawn in batches.

Everything random about a market except its outcome is drawn here, vectorised with numpy, into
a :class:`Tape`: one row per event, in time order. The market then only reads the tape, so
the per-event path does no random-number calls, no numpy scalar work and no Decimal.

Events form a Poisson process of rate ``(refresh_rate + taker rate) · activity(regime)``; each
event is one of:

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
  mean-reverts to its target. Sizes are log-normal (heavy-tailed) around ``size_median``. With
  probability ``stale_cancel_prob`` a refresh first checks for a *stale* touch (a bid above the
  reference, an ask below it) and cancels it instead. An add that would cross the other side
  is a marketable order: it trades first and rests the rest.
* **uninformed taker**: buys or sells (even odds) up to its log-normal size, through every
  level within ``δ ~ Exp(k)`` dollars of the book mid, best price first. The rate of takers
  reaching distance δ is therefore ``A·e^(−kδ)`` with ``A`` = the taker rate per side.
* **informed taker** (``informed_share`` of takers): knows the latent price ``p`` and buys
  every ask below ``p − informed_edge`` (or sells every bid above ``p + informed_edge``) up to
  its size; it does nothing when the book is not mispriced. This is the adverse selection.

Tape columns (lists of Python scalars): ``t`` time; ``kind`` (constants below); ``lvl`` and
``aux`` (grid indices or a price distance, by kind); ``thr`` (add/cancel threshold, count
units); ``size`` (count units); ``pu`` (latent price, float price units).
"""

from __future__ import annotations

import math

import numpy as np

from cfa.core.types import PRICE_SCALE, QTY_SCALE, Price, Qty
from cfa.exchange.sim.latent import LatentProcess
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
    """One batch of pre-drawn events, in time order (see the module docstring for columns)."""

    __slots__ = ("aux", "kind", "lvl", "n", "pu", "size", "t", "thr")

    def __init__(self) -> None:
        self.t: list[float] = []
        self.kind: list[int] = []
        self.lvl: list[int] = []
        self.aux: list[int] = []
        self.thr: list[int] = []
        self.size: list[int] = []
        self.pu: list[float] = []
        self.n = 0


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
        keep = np.exp(-np.diff(times, prepend=self._view_t) / lag).tolist()
        y = self._view_x
        out = []
        for xk, wk in zip(x.tolist(), keep, strict=True):
            y = xk + wk * (y - xk)
            out.append(y)
        self._view_x = y
        self._view_t = float(times[-1])
        view: np.ndarray = PRICE_SCALE / (1.0 + np.exp(-np.array(out)))
        return view

    def draw(
        self, latent: LatentProcess, t0: float, t_stop: float, n_max: int
    ) -> tuple[Tape, bool]:
        """Events after ``t0`` and before ``t_stop``, at most ``n_max`` of them.

        Returns the tape and whether it reached ``t_stop`` (False: it stopped at ``n_max``
        events and the next batch continues from its last event). Advances ``latent``.
        """
        tape = Tape()
        rng = self.rng
        lam = self.base_rate * latent.activity
        if lam <= 0 or t_stop <= t0:
            return tape, True
        times = t0 + np.cumsum(rng.standard_exponential(n_max)) / lam
        m = int(np.searchsorted(times, t_stop))
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
        lvl_refresh = np.where(is_bid, ref_bid - d, ref_ask + d)
        thr = b.level_size * (1.0 + b.depth_slope * d) * 2.0 * thr_u
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
        off_grid = refresh & ((d > b.ladder_max_ticks) | (lvl_refresh < 0) | (lvl_refresh >= n))
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

        tape.t = times.tolist()
        tape.kind = code.astype(np.int64).tolist()
        tape.lvl = lvl.astype(np.int64).tolist()
        tape.aux = aux.astype(np.int64).tolist()
        tape.thr = np.rint(thr).astype(np.int64).tolist()
        tape.size = size.astype(np.int64).tolist()
        tape.pu = pu.tolist()
        tape.n = m
        return tape, m < n_max
