"""Price-time priority matching for one simulated market, with our orders queued inside it.

The book is held per grid index ``i`` (YES price ``prices[i]``), for each side: the background
size (``bg_bid``/``bg_ask``, anonymous liquidity) and our own resting orders, queued per level in
time order (``q_bid``/``q_ask``) with their total in ``own_bid``/``own_ask``. YES asks are NO bids
at ``$1 − price``; the published book (snapshots and deltas) is Kalshi's: a YES ladder in YES
prices and a NO ladder in NO prices, each level the sum of background and our size.

Queue model (documented assumptions):

* An order of ours joins the **back** of its level: ``ahead`` = the background size resting at
  that price when it arrives. Background adds at the level go behind it.
* A taker consumes a level front to back: background ahead of our first order, our first order,
  background between our orders, and so on; our order fills only when a taker reaches it.
  Partial fills leave the rest of our order in place at the front.
* A **background cancel** at a level where we rest removes size spread evenly over the queue:
  each of our orders' ``ahead`` shrinks by the cancelled share ``c/B`` of the background
  ``B`` there (rounded so that ``ahead`` never exceeds what is left). This is the usual
  "proportional" queue model (between the optimistic front-cancel and the pessimistic
  back-cancel assumptions).
* **No self-trade**: background takers trade with our orders, but our own taking order stops
  at a level's first order of ours (Kalshi's ``taker_at_cross``: the incoming order is
  cancelled there and keeps the fills it already has). Post-only orders that would cross any
  resting order (ours included) are refused before they reach this module.

Every change to a level is published as a :class:`BookDelta` with the market's next ``seq``;
the changes that our orders cause carry their ``client_order_id``, as Kalshi's do.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable

from cfa.core.types import (
    ONE_DOLLAR,
    BookSnapshot,
    FeeSchedule,
    MarketInfo,
    OrderStatus,
    Outcome,
    Price,
    Qty,
    Side,
    Trade,
)
from cfa.exchange.base import Event
from cfa.exchange.emulator.account import Account
from cfa.exchange.emulator.orders import OwnOrder
from cfa.exchange.records import make_delta, make_trade

RECENT_TRADES = 1000
"""How many public trades :meth:`MatchingBook.recent_trades` keeps per market."""


class MatchingBook:
    """The order book of one market: background ladders plus our queued orders.

    ``bb`` is the best (highest) bid index or −1, ``ba`` the best (lowest) ask index or ``n``;
    they count our orders too. Contract: the book never crosses (``bb < ba``) and no level
    goes negative; every method that changes a level publishes the delta through ``emit``
    (when someone listens) and advances ``seq`` either way.
    """

    def __init__(self, info: MarketInfo, prices: list[Price], account: Account) -> None:
        self.info = info
        self.ticker = info.ticker
        self.fee: FeeSchedule = info.fee
        self.prices = prices
        self.no_prices = [ONE_DOLLAR - p for p in prices]
        self.n = n = len(prices)
        self.idx_of = {p: i for i, p in enumerate(prices)}
        self.bg_bid = [0] * n
        self.bg_ask = [0] * n
        self.own_bid = [0] * n
        self.own_ask = [0] * n
        self.q_bid: dict[int, list[OwnOrder]] = {}
        self.q_ask: dict[int, list[OwnOrder]] = {}
        self.bb = -1
        self.ba = n
        self.seq = 0
        self.emit: Callable[[Event], None] | None = None
        self.account = account
        # the last RECENT_TRADES public trades as columns (trade k at (k - 1) % RECENT_TRADES,
        # a ring once full): 25 bytes a trade instead of a Trade object and its id string
        # (about 160); recent_trades() rebuilds equal Trade objects
        self._tr_ts = array("d")
        self._tr_price = array("q")
        self._tr_count = array("q")
        self._tr_buy = bytearray()
        self._trade_no = 0
        self._trade_prefix = f"{self.ticker}-t"

    # -- reads -----------------------------------------------------------------------------------

    def snapshot(self, ts: float) -> BookSnapshot:
        """The published book now (ascending ladders, YES in YES prices, NO in NO prices)."""
        p, no = self.prices, self.no_prices
        bb, ob, ba, oa = self.bg_bid, self.own_bid, self.bg_ask, self.own_ask
        yes = tuple((p[i], bb[i] + ob[i]) for i in range(self.n) if bb[i] + ob[i] > 0)
        nos = tuple((no[i], ba[i] + oa[i]) for i in range(self.n - 1, -1, -1) if ba[i] + oa[i] > 0)
        return BookSnapshot(self.ticker, self.seq, ts, yes, nos)

    def recent_trades(self, limit: int) -> list[Trade]:
        """The last ``limit`` public trades, newest last."""
        if limit <= 0:
            return []
        last = self._trade_no
        held = len(self._tr_ts)
        out: list[Trade] = []
        for no in range(last - min(limit, held) + 1, last + 1):
            k = (no - 1) % RECENT_TRADES
            out.append(
                make_trade(
                    self.ticker,
                    self._trade_prefix + str(no),
                    self._tr_ts[k],
                    self._tr_price[k],
                    self._tr_count[k],
                    Side.BID if self._tr_buy[k] else Side.ASK,
                )
            )
        return out

    def best_bid_price(self) -> Price | None:
        return self.prices[self.bb] if self.bb >= 0 else None

    def best_ask_price(self) -> Price | None:
        return self.prices[self.ba] if self.ba < self.n else None

    # -- publishing --------------------------------------------------------------------------

    def _delta(self, is_bid: bool, i: int, delta: Qty, coid: str | None, ts: float) -> None:
        self.seq += 1
        emit = self.emit
        if emit is not None:
            if is_bid:
                emit(
                    make_delta(self.ticker, self.seq, ts, Outcome.YES, self.prices[i], delta, coid)
                )
            else:
                emit(
                    make_delta(
                        self.ticker, self.seq, ts, Outcome.NO, self.no_prices[i], delta, coid
                    )
                )

    def _trade(self, price: Price, count: Qty, taker_side: Side, ts: float) -> None:
        self._trade_no = no = self._trade_no + 1
        tr = make_trade(self.ticker, self._trade_prefix + str(no), ts, price, count, taker_side)
        buy = 1 if taker_side is Side.BID else 0
        if len(self._tr_ts) < RECENT_TRADES:
            self._tr_ts.append(ts)
            self._tr_price.append(price)
            self._tr_count.append(count)
            self._tr_buy.append(buy)
        else:
            k = (no - 1) % RECENT_TRADES
            self._tr_ts[k] = ts
            self._tr_price[k] = price
            self._tr_count[k] = count
            self._tr_buy[k] = buy
        emit = self.emit
        if emit is not None:
            emit(tr)

    def _rescan_bid(self, i: int) -> None:
        bg, own = self.bg_bid, self.own_bid
        while i >= 0 and not (bg[i] or own[i]):
            i -= 1
        self.bb = i

    def _rescan_ask(self, i: int) -> None:
        bg, own, n = self.bg_ask, self.own_ask, self.n
        while i < n and not (bg[i] or own[i]):
            i += 1
        self.ba = i

    # -- background liquidity ------------------------------------------------------------------

    def bg_add(self, is_bid: bool, i: int, size: Qty, ts: float) -> None:
        """A background limit order: trades first if it crosses, then rests what is left."""
        if is_bid:
            if i >= self.ba:
                size -= self.sweep(True, i, size, ts, None)
                if size <= 0:
                    return
            self.bg_bid[i] += size
            if i > self.bb:
                self.bb = i
        else:
            if i <= self.bb:
                size -= self.sweep(False, i, size, ts, None)
                if size <= 0:
                    return
            self.bg_ask[i] += size
            if i < self.ba:
                self.ba = i
        self._delta(is_bid, i, size, None, ts)

    def bg_cancel(self, is_bid: bool, i: int, size: Qty, ts: float) -> None:
        """Cancel up to ``size`` of background liquidity at level ``i`` (proportional queue)."""
        bg = self.bg_bid if is_bid else self.bg_ask
        b = bg[i]
        c = size if size < b else b
        if c <= 0:
            return
        bg[i] = b - c
        oq = (self.q_bid if is_bid else self.q_ask).get(i)
        if oq:
            rest = b - c
            for o in oq:
                a = o.ahead
                if a:
                    a -= c * a // b
                    o.ahead = a if a < rest else rest
        self._delta(is_bid, i, -c, None, ts)
        if c == b:
            if is_bid:
                if i == self.bb and not self.own_bid[i]:
                    self._rescan_bid(i)
            elif i == self.ba and not self.own_ask[i]:
                self._rescan_ask(i)

    # -- matching ------------------------------------------------------------------------------

    def sweep(self, buy: bool, limit: int, size: Qty, ts: float, taker: OwnOrder | None) -> Qty:
        """A taker buying (``buy``) or selling YES through levels up to index ``limit``.

        Consumes the opposite side best price first, each level in queue order, up to ``size``.
        ``taker`` is our order when we are the taker (then fills are taker fills and the sweep
        stops at our own resting orders: no self-trade). Returns the size traded.
        """
        if buy:
            bg, own, q, i, step = self.bg_ask, self.own_ask, self.q_ask, self.ba, 1
        else:
            bg, own, q, i, step = self.bg_bid, self.own_bid, self.q_bid, self.bb, -1
        start = i
        prices, n = self.prices, self.n
        taker_side = Side.BID if buy else Side.ASK
        left = size
        stp = False
        while left > 0 and 0 <= i < n and (i <= limit if buy else i >= limit):
            b = bg[i]
            oq = q.get(i)
            if not b and not oq:
                i += step
                continue
            fills: list[tuple[OwnOrder, Qty]] = []
            if not oq:
                take = b if b < left else left
                bg[i] = b - take
                self._delta(not buy, i, -take, None, ts)
            else:
                take, stp = self._consume_queue(not buy, i, left, ts, taker is not None, fills)
            if take:
                price = prices[i]
                self._trade(price, take, taker_side, ts)
                left -= take
                for o, f in fills:
                    self._own_fill(o, f, False, ts)
                if taker is not None:
                    self._own_fill(taker, take, True, ts, price=price, publish_order=False)
            if stp or bg[i] or own[i]:
                break
            i += step
        if buy:
            self._rescan_ask(start)
        else:
            self._rescan_bid(start)
        if taker is not None and stp and taker.remaining > 0:
            taker.status = OrderStatus.CANCELED
            taker.remaining = 0
        return size - left

    def _consume_queue(
        self,
        is_bid: bool,
        i: int,
        want: Qty,
        ts: float,
        self_trade_stop: bool,
        fills: list[tuple[OwnOrder, Qty]],
    ) -> tuple[Qty, bool]:
        """Take up to ``want`` from level ``i`` in queue order; our fills go to ``fills``."""
        bg = self.bg_bid if is_bid else self.bg_ask
        own = self.own_bid if is_bid else self.own_ask
        q = self.q_bid if is_bid else self.q_ask
        oq = q[i]
        taken_bg = 0
        taken = 0
        stp = False
        for o in oq:
            gap = o.ahead - taken_bg
            if gap > 0:
                t = gap if gap < want - taken else want - taken
                taken_bg += t
                taken += t
                if taken == want:
                    break
            if self_trade_stop:
                stp = True
                break
            f = o.remaining if o.remaining < want - taken else want - taken
            fills.append((o, f))
            taken += f
            if taken == want:
                break
        else:
            t = min(bg[i] - taken_bg, want - taken)
            taken_bg += t
            taken += t
        if taken_bg:
            bg[i] -= taken_bg
            self._delta(is_bid, i, -taken_bg, None, ts)
        for o, f in fills:
            o.remaining -= f
            own[i] -= f
            self._delta(is_bid, i, -f, o.client_order_id, ts)
        if fills or taken_bg:
            keep = [o for o in oq if o.remaining > 0]
            for o in keep:
                a = o.ahead - taken_bg
                o.ahead = a if a > 0 else 0
            if keep:
                q[i] = keep
            else:
                del q[i]
        return taken, stp

    def _own_fill(
        self,
        o: OwnOrder,
        count: Qty,
        is_taker: bool,
        ts: float,
        price: Price | None = None,
        publish_order: bool = True,
    ) -> None:
        """Book a fill of our order ``o`` (``remaining`` already reduced for maker fills)."""
        if is_taker:
            o.remaining -= count
        o.filled += count
        o.ts = ts
        if o.remaining == 0 and o.status is OrderStatus.RESTING:
            o.status = OrderStatus.EXECUTED
        fill = self.account.fill(
            ticker=self.ticker,
            order_id=o.order_id,
            client_order_id=o.client_order_id,
            side=o.side,
            price=o.price if price is None else price,
            count=count,
            is_taker=is_taker,
            fee_schedule=self.fee,
            ts=ts,
        )
        emit = self.emit
        if emit is not None:
            emit(fill)
            if publish_order:
                emit(o.record())

    # -- our orders ----------------------------------------------------------------------------

    def crosses(self, is_bid: bool, i: int) -> bool:
        """Would an order at index ``i`` trade on arrival (any resting order, ours included)?"""
        return i >= self.ba if is_bid else i <= self.bb

    def submit(self, o: OwnOrder, ts: float) -> None:
        """Our new (or re-priced) order: take liquidity if it crosses, rest the rest, publish.

        The caller has validated it (grid, size, post-only). Publishes the order's state.
        """
        o.ts = ts
        if self.crosses(o.is_bid, o.idx):
            self.sweep(o.is_bid, o.idx, o.remaining, ts, o)
            if o.remaining == 0 and o.status is OrderStatus.RESTING:
                o.status = OrderStatus.EXECUTED
        if o.status is OrderStatus.RESTING:
            self._rest(o, ts)
        self._publish(o)

    def _rest(self, o: OwnOrder, ts: float) -> None:
        i = o.idx
        if o.is_bid:
            o.ahead = self.bg_bid[i]
            self.q_bid.setdefault(i, []).append(o)
            self.own_bid[i] += o.remaining
            if i > self.bb:
                self.bb = i
        else:
            o.ahead = self.bg_ask[i]
            self.q_ask.setdefault(i, []).append(o)
            self.own_ask[i] += o.remaining
            if i < self.ba:
                self.ba = i
        self._delta(o.is_bid, i, o.remaining, o.client_order_id, ts)

    def _unrest(self, o: OwnOrder, ts: float) -> None:
        """Take our resting order off its level (publishing the delta)."""
        i = o.idx
        q = self.q_bid if o.is_bid else self.q_ask
        oq = q[i]
        oq.remove(o)
        if not oq:
            del q[i]
        if o.is_bid:
            self.own_bid[i] -= o.remaining
            self._delta(True, i, -o.remaining, o.client_order_id, ts)
            if i == self.bb:
                self._rescan_bid(i)
        else:
            self.own_ask[i] -= o.remaining
            self._delta(False, i, -o.remaining, o.client_order_id, ts)
            if i == self.ba:
                self._rescan_ask(i)

    def cancel(self, o: OwnOrder, ts: float) -> None:
        """Cancel our resting order ``o`` and publish it."""
        self._unrest(o, ts)
        o.remaining = 0
        o.status = OrderStatus.CANCELED
        o.ts = ts
        self._publish(o)

    def reduce(self, o: OwnOrder, by: Qty, ts: float) -> None:
        """Shrink our resting order in place (keeps its queue position) and publish it."""
        o.remaining -= by
        o.initial -= by
        if o.is_bid:
            self.own_bid[o.idx] -= by
        else:
            self.own_ask[o.idx] -= by
        o.ts = ts
        self._delta(o.is_bid, o.idx, -by, o.client_order_id, ts)
        self._publish(o)

    def replace(self, o: OwnOrder, price: Price, idx: int, total: Qty, ts: float) -> None:
        """Move our resting order to a new price and/or a larger size: back of the queue."""
        self._unrest(o, ts)
        o.price = price
        o.idx = idx
        o.initial = total
        o.remaining = total - o.filled
        self.submit(o, ts)

    def _publish(self, o: OwnOrder) -> None:
        emit = self.emit
        if emit is not None:
            emit(o.record())

    def own_orders(self) -> list[OwnOrder]:
        """Our resting orders in this market."""
        out: list[OwnOrder] = []
        for q in (self.q_bid, self.q_ask):
            for oq in q.values():
                out.extend(oq)
        return out

    def clear(self) -> None:
        """Empty the book (the market closed): background and our levels alike."""
        n = self.n
        for ladder in (self.bg_bid, self.bg_ask, self.own_bid, self.own_ask):
            ladder[:] = [0] * n  # in place: the market's event loop holds these lists
        self.q_bid.clear()
        self.q_ask.clear()
        self.bb = -1
        self.ba = n
