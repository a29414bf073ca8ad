"""Market signals for the agents' context: OFI, trade momentum, VPIN and refills at the touch.

Pure online estimators in the style of :mod:`cfa.core.estimators`: no I/O, no clock, no
randomness; time ``t``/``now`` is always an argument in seconds (the loop's time base).

Units and conventions (:mod:`cfa.core.types`):

* prices are integers in price units of $0.0001 (``PRICE_SCALE``), on the YES leg;
* sizes and trade counts are integers in count units of 0.01 contract (``QTY_SCALE``); every
  value reported "in contracts" is divided by ``QTY_SCALE``;
* a public trade's ``taker_side`` is the taker's YES-leg side: :attr:`Side.BID` means the taker
  *bought* YES, i.e. lifted the **ask** (an aggressive buy, sign +1); :attr:`Side.ASK` means the
  taker sold YES into the **bid** (sign −1). The resting side a trade hits is
  ``taker_side.opposite``;
* a touch is ``(bid, bid_size, ask, ask_size)`` *with our own orders removed*; an empty side is
  given as price ``None`` or size ``0`` (both mean "no resting size on that side").

Shared contract of every estimator here:

* **O(1) amortised per update.** Rolling windows are deques of per-event records, evicted as
  time advances; per-query work is bounded by a small constant (see each class).
* **Bad input is ignored, state unchanged.** An update whose time is not a finite number
  ``> 0``, whose time is earlier than the previous accepted update of the same kind (touches
  and trades are ordered separately, since feeds stamp them with different clocks), or whose
  price or size is NaN, an infinity or negative (a trade count ``<= 0``) does nothing. A query
  whose ``now`` is not finite returns None (or zero counts) and changes nothing.
* **Windows are half-open**, ``(now − window_s, now]``. Evictions are monotone: a query at a
  ``now`` earlier than the latest time the estimator has seen (update or query) is answered as
  of that latest time.
* ``window_s`` is the window (or half-life) in seconds and ``samples`` how many observations
  inform the current value, *as of the latest time seen* (read them after the value query to
  describe it). Each class documents when its value is None (not enough data).
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from dataclasses import dataclass

from cfa.core.types import QTY_SCALE, Price, Qty, Side
from cfa.core.volforecast import GarchForecast

__all__ = [
    "VPIN",
    "OrderFlowImbalance",
    "RefillDetector",
    "RefillSide",
    "RefillView",
    "TradeMomentum",
]


_INF = math.inf
_UNSET = object()


def _good_time(t: float) -> bool:
    """A usable event time: a finite number of seconds, strictly positive."""
    return isinstance(t, (int, float)) and math.isfinite(t) and t > 0.0


def _good_amount(x: float) -> bool:
    """A usable price or size: finite and not negative."""
    return isinstance(x, (int, float)) and math.isfinite(x) and x >= 0


def _touch_side(price: Price | None, size: Qty) -> tuple[bool, Price | None, Qty]:
    """Validate one side of a touch; returns ``(ok, price or None if empty, size)``."""
    if not _good_amount(size):
        return False, None, 0
    if price is None or size == 0:
        return True, None, 0
    if not _good_amount(price):
        return False, None, 0
    return True, price, size


# -- OFI ------------------------------------------------------------------------------------------


class OrderFlowImbalance:
    """Cont, Kukanov & Stoikov (2014) order-flow imbalance at the touch over a rolling window.

    For successive touches ``n−1 → n`` (best bid price/size ``Pb, qb``, best ask ``Pa, qa``)::

        e_n = 1{Pb_n ≥ Pb_{n−1}}·qb_n − 1{Pb_n ≤ Pb_{n−1}}·qb_{n−1}
            − 1{Pa_n ≤ Pa_{n−1}}·qa_n + 1{Pa_n ≥ Pa_{n−1}}·qa_{n−1}

    At unchanged prices this is ``Δqb − Δqa``: size added to the bid (or taken from the ask) is
    buying pressure (+), size added to the ask (or taken from the bid) is selling pressure (−).
    An empty bid counts as a price below every price and an empty ask as a price above every
    price, with size 0: a side that empties subtracts its whole old queue, one that reappears
    adds its new queue.

    * :meth:`value` — ``Σ e_n`` over updates in ``(now − window_s, now]``, in **contracts**.
    * :meth:`normalized` — ``value / D̄`` clipped to ``[−1, 1]``, where ``D̄`` is the mean touch
      depth ``(qb + qa)/2`` over the same updates (event-weighted; the current touch's depth
      when no update falls in the window). Scale-free (sizes ×c leave it unchanged; prices enter
      only through comparisons) and bounded. ±1 means the net flow was at least one average
      touch queue: in CKS's linear model ``ΔP ≈ β·OFI`` with ``β ∝ 1/depth``, the regime where the
      mid is expected to move about a tick. It saturates beyond that; :meth:`value` and
      :meth:`mean_depth` give the raw figures.
    * ``samples`` — number of ``e_n`` terms in the window.

    **None threshold:** both values are None until two valid touches have been seen (the first
    ``e_n`` needs a previous touch). After that a quiet window (no update) gives ``0.0``: the book
    did not change. :meth:`normalized` is also None when ``D̄`` is 0 (both sides empty).
    Updates at an unchanged touch are fine (``e_n = 0``; they still count as samples).
    """

    __slots__ = (
        "_ask",
        "_ask_size",
        "_bid",
        "_bid_size",
        "_events",
        "_head",
        "_horizon",
        "_last_t",
        "_sum_depth",
        "_sum_e",
        "_warm",
        "window_s",
    )

    _COMPACT = 3 * 128
    """Evicted doubles at the front of the buffer before it is compacted (when also half)."""

    def __init__(self, window_s: float = 60.0) -> None:
        if not (math.isfinite(window_s) and window_s > 0):
            raise ValueError("window_s must be a positive number of seconds")
        self.window_s = float(window_s)
        # (t, e_n, qb_n + qa_n) per update, flat, as doubles (exact for |values| < 2**53):
        # 24 bytes an update instead of a tuple of three objects (about 150); records before
        # _head are evicted (the buffer is compacted now and then)
        self._events = array("d")
        self._head = 0
        self._sum_e = 0
        self._sum_depth = 0
        self._bid: Price | None = None
        self._bid_size: Qty = 0
        self._ask: Price | None = None
        self._ask_size: Qty = 0
        self._last_t: float | None = None
        self._horizon = -math.inf
        self._warm = False

    def update(
        self, t: float, bid: Price | None, bid_size: Qty, ask: Price | None, ask_size: Qty
    ) -> None:
        """Observe the touch at time ``t`` (prices in price units, sizes in count units)."""
        if not _good_time(t):
            return
        ok_b, pb, qb = _touch_side(bid, bid_size)
        ok_a, pa, qa = _touch_side(ask, ask_size)
        if ok_b and ok_a:
            self._update(t, pb, qb, pa, qa)

    def _update(self, t: float, pb: Price | None, qb: Qty, pa: Price | None, qa: Qty) -> None:
        """:meth:`update` after validation: ``t`` a good time, each side ``(None, 0)`` when
        empty, else a price and a positive size. Out-of-order times are still ignored here."""
        last_t = self._last_t
        if last_t is not None:
            if t < last_t:
                return
            e = 0
            ob = self._bid
            # bid: None is below every price
            if pb is None or ob is None:
                if pb is not None or ob is None:  # Pb_n >= Pb_{n-1}
                    e += qb
                if pb is None:  # Pb_n <= Pb_{n-1}
                    e -= self._bid_size
            else:
                if pb >= ob:
                    e += qb
                if pb <= ob:
                    e -= self._bid_size
            # ask: None is above every price
            oa = self._ask
            if pa is None or oa is None:
                if pa is not None or oa is None:  # Pa_n <= Pa_{n-1}
                    e -= qa
                if pa is None:  # Pa_n >= Pa_{n-1}
                    e += self._ask_size
            else:
                if pa <= oa:
                    e -= qa
                if pa >= oa:
                    e += self._ask_size
            depth = qb + qa
            ev = self._events
            ev.append(t)
            ev.append(e)
            ev.append(depth)
            self._sum_e += e
            self._sum_depth += depth
            self._warm = True
        self._bid, self._bid_size, self._ask, self._ask_size = pb, qb, pa, qa
        self._last_t = t
        self._advance(t)

    def _advance(self, now: float) -> None:
        if now > self._horizon:
            self._horizon = now
        cutoff = self._horizon - self.window_s
        ev = self._events
        h = self._head
        n = len(ev)
        if h == n or ev[h] > cutoff:
            return
        while h < n and ev[h] <= cutoff:
            self._sum_e -= int(ev[h + 1])
            self._sum_depth -= int(ev[h + 2])
            h += 3
        if h == n:
            del ev[:]
            h = 0
        elif h >= self._COMPACT and 2 * h >= n:
            del ev[:h]
            h = 0
        self._head = h

    def value(self, now: float) -> float | None:
        """Σ e_n over ``(now − window_s, now]`` in contracts; None before two touches."""
        if not self._warm or not math.isfinite(now):
            return None
        self._advance(now)
        return self._sum_e / QTY_SCALE

    def mean_depth(self, now: float) -> float | None:
        """Mean touch depth ``(qb + qa)/2`` over the window in contracts (see class docs)."""
        if not self._warm or not math.isfinite(now):
            return None
        self._advance(now)
        count = (len(self._events) - self._head) // 3
        if count:
            return self._sum_depth / (2 * count * QTY_SCALE)
        return (self._bid_size + self._ask_size) / (2 * QTY_SCALE)

    def normalized(self, now: float) -> float | None:
        """``value / mean_depth`` clipped to [−1, 1]; None before two touches or at zero depth."""
        v = self.value(now)
        d = self.mean_depth(now)
        if v is None or d is None or d <= 0.0:
            return None
        return max(-1.0, min(1.0, v / d))

    @property
    def samples(self) -> int:
        """``e_n`` terms in the window, as of the latest time seen."""
        return (len(self._events) - self._head) // 3


# -- trade momentum -------------------------------------------------------------------------------


class TradeMomentum:
    """Exponentially decayed signed taker volume over decayed total volume, in [−1, 1].

    Each trade of ``count`` with taker side ``s`` adds ``s.sign·count`` to the signed sum ``S``
    and ``count`` to the total ``V``; both decay by half every ``half_life_s`` seconds. So
    :meth:`value` ``= S/V`` is +1 when every recent taker bought YES, −1 when every one sold, and
    weights a trade one half-life old half as much as a new one. The ratio itself does not
    decay while no trade arrives (``S`` and ``V`` decay alike); :meth:`signed_volume` and
    :meth:`volume` (contracts) do, and the value goes None once the flow is stale:

    **None threshold:** None while fewer than ``min_trades`` (default 1) trades lie in the last
    ``memory_s = 4·half_life_s`` seconds (older trades weigh under 1/16). ``samples`` is that
    count; ``window_s`` is the half-life.
    """

    __slots__ = ("_horizon", "_s", "_t", "_times", "_v", "half_life_s", "min_trades")

    MEMORY_HALF_LIVES = 4.0
    """Trades older than this many half-lives no longer count as samples."""

    def __init__(self, half_life_s: float = 30.0, min_trades: int = 1) -> None:
        if not (math.isfinite(half_life_s) and half_life_s > 0) or min_trades < 1:
            raise ValueError("half_life_s must be positive seconds and min_trades >= 1")
        self.half_life_s = float(half_life_s)
        self.min_trades = min_trades
        self._s = 0.0  # decayed signed count units, as of _t
        self._v = 0.0  # decayed count units, as of _t
        self._t: float | None = None
        self._times: deque[float] = deque()
        self._horizon = -math.inf

    @property
    def window_s(self) -> float:
        """The half-life in seconds."""
        return self.half_life_s

    @property
    def memory_s(self) -> float:
        """Seconds over which trades count as samples (``4·half_life_s``)."""
        return self.MEMORY_HALF_LIVES * self.half_life_s

    def on_trade(self, t: float, count: Qty, taker_side: Side) -> None:
        """A public trade of ``count`` count units; ``taker_side`` BID = aggressive buy (+)."""
        if not _good_time(t) or (self._t is not None and t < self._t):
            return
        if not _good_amount(count) or count <= 0 or not isinstance(taker_side, Side):
            return
        f = self._decay(t)
        self._s = self._s * f + taker_side.sign * count
        self._v = self._v * f + count
        self._t = t
        self._times.append(t)
        self._advance(t)

    def _decay(self, now: float) -> float:
        if self._t is None or now <= self._t:
            return 1.0
        return math.exp(-(now - self._t) * math.log(2.0) / self.half_life_s)

    def _advance(self, now: float) -> None:
        if now > self._horizon:
            self._horizon = now
        cutoff = self._horizon - self.memory_s
        times = self._times
        while times and times[0] <= cutoff:
            times.popleft()

    def value(self, now: float) -> float | None:
        """Decayed ``S/V`` in [−1, 1]; None when the flow is stale (see class docs)."""
        if not math.isfinite(now):
            return None
        self._advance(now)
        if len(self._times) < self.min_trades or self._v <= 0.0:
            return None
        return max(-1.0, min(1.0, self._s / self._v))

    def signed_volume(self, now: float) -> float:
        """Decayed signed taker volume ``S`` at ``now`` in contracts (+ = net buying)."""
        if not math.isfinite(now):
            return 0.0
        return self._s * self._decay(now) / QTY_SCALE

    def volume(self, now: float) -> float:
        """Decayed total taker volume ``V`` at ``now`` in contracts."""
        if not math.isfinite(now):
            return 0.0
        return self._v * self._decay(now) / QTY_SCALE

    @property
    def samples(self) -> int:
        """Trades in the last ``memory_s`` seconds, as of the latest time seen."""
        return len(self._times)


# -- VPIN -----------------------------------------------------------------------------------------


class VPIN:
    """Easley, López de Prado & O'Hara (2012) VPIN with exact trade signs.

    Trades fill equal-volume buckets of ``bucket_contracts`` contracts in arrival order; the
    taker side classifies each contract exactly (taker BID = buy volume, taker ASK = sell
    volume), so no bulk classification is needed. A trade larger than the room left in the open
    bucket is split: it completes that bucket and its remainder opens the next (and may fill
    several whole buckets). With the last ``buckets`` full buckets τ::

        VPIN = Σ_τ |V_buy,τ − V_sell,τ| / (buckets · bucket_contracts)   ∈ [0, 1]

    1 for one-sided flow, 0 when every bucket is balanced. Volume-synchronised: time only
    dates buckets. Per trade O(min(buckets filled, ``buckets``)): a huge trade that fills many
    whole buckets only materialises the last ``buckets`` of them.

    **None threshold:** :meth:`value` is None until ``buckets`` buckets are full. ``samples`` is
    the number of full buckets held (≤ ``buckets``); ``window_s`` is the time they span, from the
    first trade of the oldest held bucket to the trade that filled the newest (None before the
    first full bucket). Choose ``bucket_contracts`` per market: EDLO use about 1/50 of daily
    volume; the default, 100 contracts, suits an active Kalshi market.
    """

    __slots__ = (
        "_buy",
        "_full",
        "_open_t",
        "_sell",
        "_sum_imb",
        "bucket_contracts",
        "bucket_size",
        "buckets",
        "buckets_filled",
    )

    def __init__(self, bucket_contracts: float = 100.0, buckets: int = 20) -> None:
        size = round(bucket_contracts * QTY_SCALE) if math.isfinite(bucket_contracts) else 0
        if size < 1 or buckets < 1:
            raise ValueError("bucket_contracts must be >= 0.01 and buckets >= 1")
        self.bucket_contracts = size / QTY_SCALE
        self.bucket_size: Qty = size
        """Bucket volume in count units."""
        self.buckets = buckets
        self.buckets_filled = 0
        """Full buckets since construction (also those no longer held)."""
        self._full: deque[tuple[float, float, int]] = deque()  # (start t, end t, |buy − sell|)
        self._sum_imb = 0
        self._buy = 0  # count units in the open bucket
        self._sell = 0
        self._open_t: float | None = None  # time of the open bucket's first trade

    def on_trade(self, t: float, count: Qty, taker_side: Side) -> None:
        """A public trade of ``count`` count units; ``taker_side`` BID = buy volume."""
        if not _good_time(t) or not _good_amount(count) or count <= 0:
            return
        if not isinstance(taker_side, Side):
            return
        if self._full and t < self._full[-1][1]:
            return
        if self._open_t is not None and t < self._open_t:
            return
        buy = taker_side is Side.BID
        b = self.bucket_size
        remaining = count
        if self._open_t is None:
            self._open_t = t
        room = b - self._buy - self._sell
        take = min(room, remaining)
        if buy:
            self._buy += take
        else:
            self._sell += take
        remaining -= take
        if take == room:
            self._close(self._open_t, t, abs(self._buy - self._sell))
            self._buy = self._sell = 0
            self._open_t = None
            whole = remaining // b
            if whole:
                for _ in range(min(whole, self.buckets)):
                    self._close(t, t, b)
                self.buckets_filled += whole - min(whole, self.buckets)
                remaining -= whole * b
            if remaining:
                self._open_t = t
                if buy:
                    self._buy = remaining
                else:
                    self._sell = remaining

    def _close(self, start: float, end: float, imbalance: int) -> None:
        if len(self._full) == self.buckets:
            self._sum_imb -= self._full.popleft()[2]
        self._full.append((start, end, imbalance))
        self._sum_imb += imbalance
        self.buckets_filled += 1

    def value(self) -> float | None:
        """VPIN in [0, 1]; None until ``buckets`` buckets are full."""
        if len(self._full) < self.buckets:
            return None
        return self._sum_imb / (self.buckets * self.bucket_size)

    @property
    def samples(self) -> int:
        """Full buckets held (≤ ``buckets``)."""
        return len(self._full)

    @property
    def window_s(self) -> float | None:
        """Seconds spanned by the held full buckets; None before the first."""
        if not self._full:
            return None
        return self._full[-1][1] - self._full[0][0]

    @property
    def open_fraction(self) -> float:
        """How full the open bucket is, in [0, 1)."""
        return (self._buy + self._sell) / self.bucket_size


# -- refills --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RefillSide:
    """Refills seen on one side of the book over the last ``window_s`` seconds.

    ``refills``: refill events; ``price``: the price (price units) with the most refills (ties:
    the one refilled most recently), None when there are none; ``touch_trades``: trades that
    hit this side at its touch and opened a candidate (trades joining an open candidate at the
    same price are not counted again). A refill is dated when the level is seen back and its
    trade when it printed, so near the window's edge ``refills`` can exceed ``touch_trades``.
    """

    refills: int
    price: Price | None
    touch_trades: int
    window_s: float


@dataclass(frozen=True, slots=True)
class RefillView:
    """Both sides: ``bid`` (trades by takers selling YES) and ``ask`` (takers buying YES)."""

    bid: RefillSide
    ask: RefillSide

    def side(self, side: Side) -> RefillSide:
        return self.bid if side is Side.BID else self.ask


class _Candidate:
    """A trade at the touch waiting to see whether its level empties and comes back."""

    __slots__ = ("depleted", "pre_size", "price", "t")

    def __init__(self, t: float, price: Price, pre_size: Qty, depleted: bool) -> None:
        self.t = t
        self.price = price
        self.pre_size = pre_size
        self.depleted = depleted


class _RefillSideState:
    __slots__ = (
        "by_price",
        "candidates",
        "cur_change_t",
        "cur_price",
        "cur_size",
        "prev_price",
        "prev_size",
        "refills",
        "trades",
    )

    def __init__(self) -> None:
        self.cur_price: Price | None = None
        self.cur_size: Qty = 0
        self.cur_change_t = -math.inf  # when the touch last changed to (cur_price, cur_size)
        self.prev_price: Price | None = None
        self.prev_size: Qty = 0
        self.candidates: dict[Price, _Candidate] = {}
        self.refills: deque[tuple[float, Price]] = deque()
        self.by_price: dict[Price, list[float]] = {}  # price -> [count, last refill t]
        self.trades: deque[float] = deque()


class RefillDetector:
    """Iceberg / hidden-size heuristic: touch levels that are traded away and come straight back.

    A **refill** on one side at price ``p``:

    1. a public trade hits that side at ``p`` while ``p`` is (or was, just before) its touch
       (taker BID hits the ask side, taker ASK the bid side). Its *pre-trade size* ``q0`` is the
       larger of the side's touch size at ``p`` now and just before the touch's last change,
       the latter only if that change is under ``refill_s`` old (so it does not matter whether
       the feed delivers the trade before or after the book delta it caused). A trade at a
       price that is not the side's touch is ignored;
    2. the level is then seen **depleted** in a touch (or already is at the trade): the side's
       size at ``p`` is at most ``(1 − min_fraction)·q0``, or the touch has moved past ``p``
       (bid below / ask above it), or the side is empty;
    3. and, no later than ``refill_s`` seconds after the trade, a touch shows ``p`` back at that
       side's touch with at least ``min_fraction·q0``.

    Trades at the same side and price while a candidate is open join it. Each candidate counts
    at most once, and is dropped ``refill_s`` after its trade. The view reports, per side, the
    refills in ``(now − window_s, now]`` (dated by the touch that showed the level back), the
    price with the most, and the touch trades in the window. ``samples`` is the touch trades in
    the window over both sides.

    Limits: depletion must be *visible* in some touch, so a feed that coalesces "emptied and
    refilled" into no change (or delivers the refill before the trade) is not counted; that also
    keeps trades against our own resting orders (invisible in a touch without our orders) from
    looking like refills. A level that empties by cancellation right after a small trade counts
    too. On Kalshi, which does not advertise icebergs, a refill is more likely a bot re-quoting:
    read it as persistent liquidity at that price.

    **None threshold:** none: counts start at 0; ``price`` is None while a side has no refill.
    """

    MAX_CANDIDATES = 16
    """Open candidates per side (the oldest goes first); bounds the per-event work."""

    __slots__ = (
        "_ask",
        "_bid",
        "_horizon",
        "_last_touch_t",
        "_last_trade_t",
        "_sides",
        "min_fraction",
        "refill_s",
        "window_s",
    )

    def __init__(
        self, window_s: float = 120.0, refill_s: float = 5.0, min_fraction: float = 0.5
    ) -> None:
        if not (math.isfinite(window_s) and window_s > 0):
            raise ValueError("window_s must be positive seconds")
        if not (math.isfinite(refill_s) and refill_s > 0):
            raise ValueError("refill_s must be positive seconds")
        if not 0.0 < min_fraction <= 1.0:
            raise ValueError("min_fraction must be in (0, 1]")
        self.window_s = float(window_s)
        self.refill_s = float(refill_s)
        self.min_fraction = float(min_fraction)
        self._bid = _RefillSideState()
        self._ask = _RefillSideState()
        self._sides = {Side.BID: self._bid, Side.ASK: self._ask}
        self._last_touch_t: float | None = None
        self._last_trade_t: float | None = None
        self._horizon = -math.inf

    # -- level predicates -------------------------------------------------------------------

    def _is_depleted(
        self, side: Side, price: Price, q0: Qty, obs_price: Price | None, obs_size: Qty
    ) -> bool:
        if obs_price is None:
            return True
        if obs_price == price:
            return obs_size <= (1.0 - self.min_fraction) * q0
        # moved past p (worse for that side): p has no size left at the touch
        return obs_price < price if side is Side.BID else obs_price > price

    def _is_back(self, price: Price, q0: Qty, obs_price: Price | None, obs_size: Qty) -> bool:
        return obs_price == price and obs_size >= self.min_fraction * q0

    # -- inputs ------------------------------------------------------------------------------

    def on_touch(
        self, t: float, bid: Price | None, bid_size: Qty, ask: Price | None, ask_size: Qty
    ) -> None:
        """Observe the touch (our orders removed) at ``t``: price units, count units."""
        if not _good_time(t):
            return
        ok_b, pb, qb = _touch_side(bid, bid_size)
        ok_a, pa, qa = _touch_side(ask, ask_size)
        if ok_b and ok_a:
            self._on_touch(t, pb, qb, pa, qa)

    def _on_touch(self, t: float, pb: Price | None, qb: Qty, pa: Price | None, qa: Qty) -> None:
        """:meth:`on_touch` after validation (each side ``(None, 0)`` when empty)."""
        if self._last_touch_t is not None and t < self._last_touch_t:
            return
        self._last_touch_t = t
        self._touch_side(self._bid, Side.BID, t, pb, qb)
        self._touch_side(self._ask, Side.ASK, t, pa, qa)
        self._advance(t)

    def _touch_side(
        self, st: _RefillSideState, side: Side, t: float, p: Price | None, q: Qty
    ) -> None:
        if p != st.cur_price or q != st.cur_size:
            st.prev_price, st.prev_size = st.cur_price, st.cur_size
            st.cur_price, st.cur_size, st.cur_change_t = p, q, t
        cands = st.candidates
        if not cands:
            return
        self._expire(st, t)
        done: list[Price] | None = None
        for c in cands.values():
            if c.depleted:
                if self._is_back(c.price, c.pre_size, p, q):
                    self._record(st, t, c.price)
                    if done is None:
                        done = []
                    done.append(c.price)
            elif self._is_depleted(side, c.price, c.pre_size, p, q):
                c.depleted = True
        if done is not None:
            for price in done:
                del cands[price]

    def on_trade(self, t: float, price: Price, count: Qty, taker_side: Side) -> None:
        """A public trade at ``price`` (price units) of ``count`` (count units).

        ``taker_side`` BID (taker bought YES) hits the ask side; ASK hits the bid side.
        """
        if not _good_time(t) or (self._last_trade_t is not None and t < self._last_trade_t):
            return
        if not isinstance(taker_side, Side):
            return
        if not _good_amount(price) or not _good_amount(count) or count <= 0:
            return
        self._last_trade_t = t
        side = taker_side.opposite
        st = self._sides[side]
        self._expire(st, t)
        self._advance(t)
        if price in st.candidates:
            return  # joins the open candidate at this level
        q0 = 0
        if st.cur_price == price:
            q0 = st.cur_size
        if st.prev_price == price and st.cur_change_t >= t - self.refill_s:
            q0 = max(q0, st.prev_size)
        if q0 <= 0:
            return  # not at this side's touch: nothing to say about the level
        depleted = self._is_depleted(side, price, q0, st.cur_price, st.cur_size)
        if len(st.candidates) >= self.MAX_CANDIDATES:
            oldest = min(st.candidates.values(), key=lambda c: c.t)
            del st.candidates[oldest.price]
        st.candidates[price] = _Candidate(t, price, q0, depleted)
        st.trades.append(t)

    # -- bookkeeping -------------------------------------------------------------------------

    def _expire(self, st: _RefillSideState, now: float) -> None:
        """Drop the candidates older than ``refill_s``. Candidates are created in trade-time
        order (trade times never go back) and a joined one keeps its place, so the late ones
        are a prefix of the dict: stop at the first that is not late."""
        cands = st.candidates
        late: list[Price] | None = None
        for p, c in cands.items():
            if now > c.t + self.refill_s:
                if late is None:
                    late = []
                late.append(p)
            else:
                break
        if late is not None:
            for p in late:
                del cands[p]

    def _record(self, st: _RefillSideState, t: float, price: Price) -> None:
        st.refills.append((t, price))
        entry = st.by_price.get(price)
        if entry is None:
            st.by_price[price] = [1.0, t]
        else:
            entry[0] += 1.0
            entry[1] = t

    def _advance(self, now: float) -> None:
        if now > self._horizon:
            self._horizon = now
        cutoff = self._horizon - self.window_s
        for st in (self._bid, self._ask):
            refills = st.refills
            while refills and refills[0][0] <= cutoff:
                _, p = refills.popleft()
                entry = st.by_price[p]
                entry[0] -= 1.0
                if entry[0] <= 0.0:
                    del st.by_price[p]
            trades = st.trades
            while trades and trades[0] <= cutoff:
                trades.popleft()

    # -- outputs -----------------------------------------------------------------------------

    def _side_view(self, st: _RefillSideState) -> RefillSide:
        price: Price | None = None
        if st.by_price:
            price = max(st.by_price.items(), key=lambda kv: (kv[1][0], kv[1][1]))[0]
        return RefillSide(len(st.refills), price, len(st.trades), self.window_s)

    def view(self, now: float) -> RefillView:
        """Refills per side over ``(now − window_s, now]`` (zero counts if ``now`` is bad)."""
        if math.isfinite(now):
            self._advance(now)
        else:
            empty = RefillSide(0, None, 0, self.window_s)
            return RefillView(empty, empty)
        bid, ask = self._sides[Side.BID], self._sides[Side.ASK]
        return RefillView(self._side_view(bid), self._side_view(ask))

    @property
    def samples(self) -> int:
        """Touch trades in the window over both sides, as of the latest time seen."""
        return sum(len(st.trades) for st in self._sides.values())


class MarketSignals:
    """The signals of one market, fed from the fast path with our own orders already removed.

    ``on_touch`` takes the others' best bid and ask with their sizes (price and count units),
    ``on_trade`` each public trade (its taker side), ``on_mid`` the mid (dollars) for the σ
    forecast. Reading them (:attr:`ofi`, :attr:`momentum`, :attr:`vpin`, :attr:`refills`,
    :attr:`garch`) is for the slow path; each states its own window and sample count.
    """

    __slots__ = (
        "_ask",
        "_ask_size",
        "_bid",
        "_bid_size",
        "garch",
        "momentum",
        "ofi",
        "refills",
        "vpin",
    )

    def __init__(
        self,
        *,
        ofi_window_s: float = 60.0,
        momentum_half_life_s: float = 30.0,
        vpin_bucket_contracts: float = 100.0,
        vpin_buckets: int = 20,
        refill_window_s: float = 120.0,
        garch_interval_s: float = 10.0,
    ) -> None:
        self.ofi = OrderFlowImbalance(ofi_window_s)
        self.momentum = TradeMomentum(momentum_half_life_s)
        self.vpin = VPIN(vpin_bucket_contracts, vpin_buckets)
        self.refills = RefillDetector(refill_window_s)
        self.garch = GarchForecast(garch_interval_s)
        # the last touch given (any values, valid or not); a sentinel before the first
        self._bid: object = _UNSET
        self._bid_size: object = _UNSET
        self._ask: object = _UNSET
        self._ask_size: object = _UNSET

    def on_touch(
        self, t: float, bid: Price | None, bid_size: Qty, ask: Price | None, ask_size: Qty
    ) -> None:
        """The others' touch at ``t``; repeated unchanged touches are skipped (cheap).

        The common case, a two-sided touch of ``int`` prices and positive ``int`` sizes at a
        finite positive ``float`` time, skips the estimators' input validation; anything else
        goes through their validating public methods (same outputs either way).
        """
        if (
            bid == self._bid
            and bid_size == self._bid_size
            and ask == self._ask
            and ask_size == self._ask_size
        ):
            return
        self._bid, self._bid_size, self._ask, self._ask_size = bid, bid_size, ask, ask_size
        if (
            type(bid) is int
            and type(ask) is int
            and type(bid_size) is int
            and type(ask_size) is int
            and type(t) is float
            and bid_size > 0
            and ask_size > 0
            and bid >= 0
            and ask >= 0
            and 0.0 < t < _INF
        ):
            self.ofi._update(t, bid, bid_size, ask, ask_size)
            self.refills._on_touch(t, bid, bid_size, ask, ask_size)
        else:
            self.ofi.update(t, bid, bid_size, ask, ask_size)
            self.refills.on_touch(t, bid, bid_size, ask, ask_size)

    def on_trade(self, t: float, price: Price, count: Qty, taker_side: Side) -> None:
        self.momentum.on_trade(t, count, taker_side)
        self.vpin.on_trade(t, count, taker_side)
        self.refills.on_trade(t, price, count, taker_side)

    def on_mid(self, t: float, mid: float) -> None:
        self.garch.update(t, mid)
