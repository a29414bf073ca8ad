"""``BookEmulator``: our orders matched against a book we do not control.

The venue's book comes from a feed — a recording (:class:`cfa.exchange.feed.KalshiFeedExchange`)
or live Kalshi market data (:class:`cfa.exchange.kalshi.paper.PaperExchange`) — and our orders
never reach the venue: they rest here, in the process. The feed's book does not contain them
and does not react to them. The emulator keeps its own copy of each market's book
(:class:`cfa.core.book.OrderBook`), fills our resting orders by a named fill model
(:mod:`cfa.exchange.emulator.fills`), books the fills and fees in an
:class:`~cfa.exchange.emulator.account.Account`, and queues the events a consumer sees in
:attr:`BookEmulator._pending`: the feed's book events re-numbered per market, with our own
order updates, fills and book deltas (carrying our ``client_order_id``, as Kalshi's do)
interleaved at the moment they happen. So a consumer's book is "feed book + our orders", and
:meth:`get_orderbook` returns the same.

Feeding it: a subclass calls :meth:`_on_snapshot`, :meth:`_on_delta` and :meth:`_on_print`
(a public trade, or a trade inferred otherwise) with the time of the event, after moving its
clock there, and :meth:`_close_if_due` before (resting orders are cancelled once the clock
passes the market's close).

Sequence numbers and holes: book deltas streamed count up by one from the last snapshot's
``seq``. A feed delta that does not fit the emulator's copy (a skipped ``seq``, a level that
would go negative) opens a *hole*: the stream gets that delta with a ``seq`` that skips one, so
the consumer's :class:`~cfa.core.book.OrderBook` raises and resyncs, and until the feed's next
snapshot no book delta of that market is streamed and :meth:`get_orderbook` shows only our own
orders. Meanwhile the emulator applies the feed's deltas leniently (a level that would go
negative is removed), so the fill model goes on with the best knowledge there is. A snapshot
after the first that differs from the book rebuilt from deltas, with no hole open, counts as a
*jump* (deltas lost without a sign in ``seq``).

Orders (validation in :mod:`cfa.exchange.emulator.orders`): a crossing order that is not
post-only takes the feed's liquidity it crosses at the feed's prices (taker fee) and rests the
rest; an amendment re-prices in place (a new price resets the queue position and ``since``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cfa.core.book import BookSequenceError, OrderBook
from cfa.core.grid import PriceGrid
from cfa.core.types import (
    ONE_DOLLAR,
    BookDelta,
    BookSnapshot,
    MarketInfo,
    OrderStatus,
    Outcome,
    Price,
    Qty,
    Side,
    Trade,
)
from cfa.exchange.base import Event, MarketNotFound, OrderRejected
from cfa.exchange.emulator.account import Account
from cfa.exchange.emulator.fills import FillModel, fill_model
from cfa.exchange.emulator.orders import OrderDesk, OwnOrder
from cfa.exchange.records import make_delta

RECENT_TRADES = 200
"""Public trades kept per market for :meth:`BookEmulator.get_trades`."""


@dataclass(slots=True)
class EmulatedMarket:
    """One market as the emulator knows it: metadata, the feed's book, health counters."""

    info: MarketInfo
    grid: PriceGrid
    book: OrderBook
    out_seq: int = 0
    """``seq`` of the last book event queued for the consumer."""
    started: bool = False
    """True once the feed's first snapshot arrived (nothing is streamed before)."""
    gaps: int = 0
    jumps: int = 0
    resyncs: int = 0
    hole: bool = False
    """A gap is open: the feed's book is not trusted until its next snapshot."""
    hole_since: float = 0.0
    blind_s: float = 0.0
    last_mid: float | None = None
    """Last two-sided mid of the feed's book, dollars."""
    trades: deque[Trade] = field(default_factory=lambda: deque(maxlen=RECENT_TRADES))
    max_abs_pos: Qty = 0
    settled: Outcome | None = None


class BookEmulator(OrderDesk):
    """The matching engine for our orders against a feed's book (see the module doc).

    Subclasses set ``clock`` (an :class:`~cfa.exchange.clock.EventClock` for replays, a wall
    clock live), call :meth:`_init_emulator`, add markets with :meth:`_add_market`, and feed
    events in. ``fill_model``: a name of :data:`cfa.exchange.emulator.fills.FILL_MODELS`.
    ``closed`` (set by a subclass) refuses every new order once the feed is over.
    """

    def _init_emulator(
        self, *, fill_model_name: str, cash: Account, order_prefix: str, fill_prefix: str
    ) -> None:
        self.model: FillModel = fill_model(fill_model_name)
        self.fill_model = self.model.name
        """The fill model's name."""
        cash.fill_prefix = fill_prefix
        self._init_desk(cash, order_prefix)
        self._markets: dict[str, EmulatedMarket] = {}
        self._pending: deque[Event] = deque()
        self.closed = False

    def _add_market(self, info: MarketInfo) -> EmulatedMarket:
        m = self._markets.get(info.ticker)
        if m is None:
            m = self._markets[info.ticker] = self._new_market(info)
        return m

    def _new_market(self, info: MarketInfo) -> EmulatedMarket:
        """A fresh market record (subclasses may return a richer one)."""
        return EmulatedMarket(info, PriceGrid(info.price_ranges), OrderBook(info.ticker))

    # -- market data out -------------------------------------------------------------------------

    async def get_markets(self, tickers: Sequence[str] | None = None) -> list[MarketInfo]:
        if tickers is None:
            return [m.info for m in self._markets.values()]
        return [self._market(t).info for t in tickers]

    async def get_market(self, ticker: str) -> MarketInfo:
        return self._market(ticker).info

    async def get_orderbook(self, ticker: str) -> BookSnapshot:
        """The feed's book plus our resting orders, with the stream's current ``seq``; in a
        hole only our resting orders (the venue's book is not known)."""
        m = self._market(ticker)
        return self._merged(m, m.out_seq)

    async def get_trades(self, ticker: str, limit: int = 100) -> list[Trade]:
        trades = self._market(ticker).trades
        return list(trades)[-limit:] if limit > 0 else []

    # -- market data in --------------------------------------------------------------------------

    def _on_snapshot(self, m: EmulatedMarket, s: BookSnapshot, now: float) -> None:
        """The feed's full book: replaces the copy, ends a hole, is streamed (with our orders)."""
        if m.started:
            m.resyncs += 1
            if m.hole:
                m.hole = False
                m.blind_s += now - m.hole_since
            elif now < m.info.close_ts and not same_book(m.book, s):
                m.jumps += 1  # deltas were lost with no sign in seq
        m.book.apply_snapshot(s)
        m.started = True
        m.out_seq += 1
        self._pending.append(self._merged(m, m.out_seq, now))
        if self.model.tracks_queue:
            for o in self._orders_in(m):
                self.model.on_level(o, self._level(m, o))
        self._after_book(m, now)

    def _on_delta(self, m: EmulatedMarket, d: BookDelta, now: float) -> None:
        """One change of the feed's book (module doc: holes). ``d`` is read during the call and
        not kept (the feed passes a reused object with :class:`BookDelta`'s fields)."""
        if not m.started:
            return  # no snapshot yet: nothing to apply it to
        try:
            m.book.apply_delta(d)
        except BookSequenceError:
            self._lenient(m, d, now)
            if not m.hole:  # a new hole: show the consumer a gap, then nothing until a snapshot
                m.gaps += 1
                m.hole = True
                m.hole_since = now
                m.out_seq += 2
                self._pending.append(
                    make_delta(d.ticker, m.out_seq, now, d.outcome, d.price, d.delta, None)
                )
            self._level_changed(m, d)
            self._after_book(m, now)
            return
        if self._resting and self.model.tracks_queue:
            self._level_changed(m, d)
        # fills first: the counterparty that moved the book would have reached us first
        self._after_book(m, now)
        if m.hole:
            return
        m.out_seq += 1
        self._pending.append(make_delta(d.ticker, m.out_seq, now, d.outcome, d.price, d.delta))

    def _on_print(
        self,
        m: EmulatedMarket,
        price: Price,
        count: Qty,
        now: float,
        rested_before: float | None = None,
    ) -> None:
        """A trade of ``count`` at ``price``: fill our orders it reaches by the fill model, in
        the order they were placed, until it is used up. ``rested_before``: only orders resting
        at their price since then (for trades known to have happened some time before)."""
        if not self._resting:
            return
        model = self.model
        for o in self._orders_in(m):
            if count <= 0:
                break
            if rested_before is not None and o.since > rested_before:
                continue
            n = model.print_fill(o, price, count)
            if n > 0:
                count -= n
                self._maker_fill(m, o, n, now)

    def _close_if_due(self, m: EmulatedMarket, now: float) -> None:
        """Cancel our resting orders of ``m`` once ``now`` reaches its close."""
        if now >= m.info.close_ts and self._resting:
            for o in self._orders_in(m):
                self._cancel(m, o)

    @staticmethod
    def _lenient(m: EmulatedMarket, d: BookDelta, now: float) -> None:
        """Apply ``d`` whatever its ``seq``; a level that would go negative is removed."""
        b = m.book
        yes, no = dict(b.yes), dict(b.no)
        ladder = yes if d.outcome is Outcome.YES else no
        size = ladder.get(d.price, 0) + d.delta
        if size > 0:
            ladder[d.price] = size
        else:
            ladder.pop(d.price, None)
        b.apply_snapshot(
            BookSnapshot(
                b.ticker, d.seq, now, tuple(sorted(yes.items())), tuple(sorted(no.items()))
            )
        )

    def _level_changed(self, m: EmulatedMarket, d: BookDelta) -> None:
        if not self.model.tracks_queue or not self._resting:
            return
        side = Side.BID if d.outcome is Outcome.YES else Side.ASK
        price = d.price if side is Side.BID else ONE_DOLLAR - d.price
        for o in self._orders_in(m):
            if o.side is side and o.price == price:
                self.model.on_level(o, self._level(m, o))

    def _after_book(self, m: EmulatedMarket, now: float) -> None:
        """Track the mark; fill our orders the feed's book now trades through."""
        b = m.book
        bb, ba = b.best_bid(), b.best_ask()
        if bb is not None and ba is not None and bb < ba:
            m.last_mid = (bb + ba) / (2 * ONE_DOLLAR)
        if not self._resting:
            return
        model = self.model
        for o in self._orders_in(m):
            if model.book_hit(o, bb, ba):
                self._maker_fill(m, o, o.remaining, now)

    # -- the order desk's hooks ------------------------------------------------------------------

    def _market(self, ticker: str) -> EmulatedMarket:
        m = self._markets.get(ticker)
        if m is None:
            raise MarketNotFound(f"no market {ticker!r}", code="market_not_found")
        return m

    def _book(self, ticker: str) -> EmulatedMarket:
        return self._market(ticker)

    def _open_book(self, ticker: str) -> EmulatedMarket:
        m = self._market(ticker)
        if self.clock.now() >= m.info.close_ts or self.closed:
            raise OrderRejected(f"{ticker}: market is closed", code="market_closed")
        return m

    def _tickers(self) -> Iterable[str]:
        return self._markets

    def _price_index(self, book: EmulatedMarket, price: Price) -> int:
        if isinstance(price, bool) or not isinstance(price, int) or not book.grid.is_valid(price):
            raise OrderRejected(
                f"{book.info.ticker}: {price!r} is not a tradable price on "
                f"{book.info.price_level_structure}",
                code="invalid_price",
            )
        return 0

    def _crosses(
        self, book: EmulatedMarket, side: Side, price: Price, idx: int, exclude: OwnOrder | None
    ) -> bool:
        """Would an order at ``price`` trade on arrival (feed book or our own orders)?"""
        b = book.book
        if side is Side.BID:
            ba = b.best_ask()
            if ba is not None and price >= ba:
                return True
        else:
            bb = b.best_bid()
            if bb is not None and price <= bb:
                return True
        for o in self._resting.values():
            if o is exclude or o.ticker != book.info.ticker or o.side is side:
                continue
            if o.status is not OrderStatus.RESTING:
                continue
            if (side is Side.BID and price >= o.price) or (side is Side.ASK and price <= o.price):
                return True
        return False

    def _submit(self, book: EmulatedMarket, o: OwnOrder) -> None:
        if self._crosses(book, o.side, o.price, 0, None):
            self._take(book, o)
        if o.remaining > 0:
            self._rest(book, o)
        self._pending.append(o.record())

    def _amend(self, book: EmulatedMarket, o: OwnOrder, price: Price, idx: int, count: Qty) -> None:
        t = self.clock.now()
        m = book
        self._own_delta(m, o, -o.remaining)
        moved = price != o.price
        o.price = price
        o.initial = count
        o.remaining = count - o.filled
        o.ts = t
        if moved:
            o.since = t
            self.model.on_rest(o, self._level(m, o))
        self._own_delta(m, o, o.remaining)
        if not o.post_only and self._crosses(m, o.side, price, 0, o):
            self._own_delta(m, o, -o.remaining)
            self._take(m, o)
            if o.remaining:
                self._own_delta(m, o, o.remaining)
            else:
                self._resting.pop(o.order_id, None)
        self._pending.append(o.record())

    def _cancel(self, book: EmulatedMarket, o: OwnOrder) -> None:
        self._own_delta(book, o, -o.remaining)
        o.remaining = 0
        o.status = OrderStatus.CANCELED
        o.ts = self.clock.now()
        self._resting.pop(o.order_id, None)
        self._pending.append(o.record())

    # -- matching ------------------------------------------------------------------------------

    def _orders_in(self, m: EmulatedMarket) -> list[OwnOrder]:
        """Our resting orders in ``m``, in placement order (a copy: fills may remove some)."""
        t = m.info.ticker
        return [o for o in self._resting.values() if o.ticker == t]

    @staticmethod
    def _level(m: EmulatedMarket, o: OwnOrder) -> Qty:
        """The feed's size at ``o``'s price on ``o``'s side."""
        if o.side is Side.BID:
            return m.book.yes.get(o.price, 0)
        return m.book.no.get(ONE_DOLLAR - o.price, 0)

    def _take(self, m: EmulatedMarket, o: OwnOrder) -> None:
        """A crossing non-post-only order takes the feed's liquidity up to its price (taker)."""
        b = m.book
        if o.side is Side.BID:
            levels = [(p, q) for p, q in b.asks(len(b.no)) if p <= o.price]
        else:
            levels = [(p, q) for p, q in b.bids(len(b.yes)) if p >= o.price]
        now = self.clock.now()
        for p, q in levels:
            if o.remaining <= 0:
                break
            n = min(o.remaining, q)
            self._book_fill(m, o, n, p, True, now)
        if o.remaining == 0:
            o.status = OrderStatus.EXECUTED

    def _rest(self, m: EmulatedMarket, o: OwnOrder) -> None:
        self._resting[o.order_id] = o
        self.model.on_rest(o, self._level(m, o))
        self._own_delta(m, o, o.remaining)

    def _own_delta(self, m: EmulatedMarket, o: OwnOrder, delta: Qty) -> None:
        if not delta or not m.started or m.hole:
            return  # no book streamed before the first snapshot, nor in a hole
        m.out_seq += 1
        if o.side is Side.BID:
            outcome, price = Outcome.YES, o.price
        else:
            outcome, price = Outcome.NO, ONE_DOLLAR - o.price
        self._pending.append(
            BookDelta(
                o.ticker, m.out_seq, self.clock.now(), outcome, price, delta, o.client_order_id
            )
        )

    def _maker_fill(self, m: EmulatedMarket, o: OwnOrder, count: Qty, now: float) -> None:
        if count <= 0:
            return
        self._own_delta(m, o, -count)
        self._book_fill(m, o, count, o.price, False, now)
        if o.remaining == 0:
            o.status = OrderStatus.EXECUTED
            self._resting.pop(o.order_id, None)
        self._pending.append(o.record())

    def _book_fill(
        self, m: EmulatedMarket, o: OwnOrder, count: Qty, price: Price, is_taker: bool, now: float
    ) -> None:
        o.remaining -= count
        o.filled += count
        o.ts = now
        f = self.account.fill(
            ticker=o.ticker,
            order_id=o.order_id,
            client_order_id=o.client_order_id,
            side=o.side,
            price=price,
            count=count,
            is_taker=is_taker,
            fee_schedule=m.info.fee,
            ts=now,
        )
        m.max_abs_pos = max(m.max_abs_pos, abs(f.post_position))
        self._pending.append(f)

    def _merged(self, m: EmulatedMarket, seq: int, ts: float | None = None) -> BookSnapshot:
        """The feed's book plus our resting orders, as a snapshot with ``seq`` (in a hole: our
        resting orders only)."""
        yes, no = ({}, {}) if m.hole else (dict(m.book.yes), dict(m.book.no))
        for o in self._orders_in(m):
            if o.remaining <= 0:
                continue
            if o.side is Side.BID:
                yes[o.price] = yes.get(o.price, 0) + o.remaining
            else:
                p = ONE_DOLLAR - o.price
                no[p] = no.get(p, 0) + o.remaining
        return BookSnapshot(
            m.info.ticker,
            seq,
            self.clock.now() if ts is None else ts,
            tuple(sorted(yes.items())),
            tuple(sorted(no.items())),
        )


def same_book(book: OrderBook, s: BookSnapshot) -> bool:
    """Does ``book`` hold exactly the levels of ``s`` (sizes > 0)?"""
    return book.yes == {p: q for p, q in s.yes if q > 0} and book.no == {
        p: q for p, q in s.no if q > 0
    }
