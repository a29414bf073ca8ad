"""Our orders at an emulated venue: the one place that validates, registers and answers them.

:class:`OrderDesk` implements the order and account half of :class:`cfa.exchange.base.Exchange`
(``place_order``, ``amend_order``, ``cancel_order``, ``cancel_all``, ``get_orders``,
``get_fills``, ``get_positions``, ``get_balance``) for every venue whose orders never leave the
process: the simulator (:class:`cfa.exchange.sim.SimExchange`), the recorded-feed replay and
paper trading (both through :class:`cfa.exchange.emulator.book.BookEmulator`). A subclass says
how an order meets its book through a handful of hooks (``_book``, ``_price_index``,
``_crosses``, ``_submit``, ``_amend``, ``_cancel``); the checks and their order are here, once.

Checks, in order, with their reject codes: a known client order id returns that order as it
is now (even cancelled; never a second order); the market must exist (:class:`MarketNotFound`)
and be open (``market_closed``); the price must be on the market's grid and inside its range
(``invalid_price``); the count a positive integer (``invalid_order_size``); a ``reduce_only``
order is cut to the position it reduces (``reduce_only`` when there is none); a post-only order
that would cross any resting order, ours included, is refused (``post_only_cross``); the cash
needed to open its whole size must not exceed the balance (``insufficient_balance``, see
:mod:`cfa.exchange.emulator.account`). ``amend_order`` takes Kalshi's total count (filled +
resting; it must exceed the filled count) and checks price and post-only the same way.
:class:`OrderNotFound` for unknown ids and for orders no longer resting (``order_not_resting``).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from cfa.core.types import (
    Fill,
    Order,
    OrderRequest,
    OrderStatus,
    Position,
    Price,
    Qty,
    Side,
)
from cfa.exchange.base import Clock, OrderNotFound, OrderRejected
from cfa.exchange.emulator.account import Account


class OwnOrder:
    """One of our orders, mutable while it lives; :meth:`record` gives the immutable view.

    ``idx`` is the price's grid index where the venue uses one (the simulator), else 0.
    ``ahead`` is the size queued before the order at its level (queue models). ``since`` is
    when it started resting at its current price.
    """

    __slots__ = (
        "ahead",
        "client_order_id",
        "filled",
        "idx",
        "initial",
        "is_bid",
        "order_id",
        "post_only",
        "price",
        "remaining",
        "side",
        "since",
        "status",
        "ticker",
        "ts",
    )

    def __init__(
        self,
        order_id: str,
        client_order_id: str,
        ticker: str,
        side: Side,
        price: Price,
        idx: int,
        count: Qty,
        post_only: bool,
        ts: float,
    ) -> None:
        self.order_id = order_id
        self.client_order_id = client_order_id
        self.ticker = ticker
        self.side = side
        self.is_bid = side is Side.BID
        self.price = price
        self.idx = idx
        self.initial = count
        self.remaining = count
        self.filled = 0
        self.ahead = 0
        self.status = OrderStatus.RESTING
        self.post_only = post_only
        self.ts = ts
        self.since = ts

    def record(self) -> Order:
        """The order as :class:`cfa.core.types.Order`."""
        return Order(
            order_id=self.order_id,
            client_order_id=self.client_order_id,
            ticker=self.ticker,
            side=self.side,
            price=self.price,
            initial_count=self.initial,
            remaining_count=self.remaining,
            fill_count=self.filled,
            status=self.status,
            ts=self.ts,
        )


def _positive_int(count: object) -> bool:
    return isinstance(count, int) and not isinstance(count, bool) and count > 0


class OrderDesk:
    """The order and account methods of an emulated venue (see the module doc).

    Subclasses call :meth:`_init_desk` in their constructor, keep ``clock`` current, and
    implement the hooks below. ``_book(ticker)`` raises :class:`MarketNotFound` for an unknown
    market; ``_open_book(ticker)`` also refuses a closed one (``market_closed``).
    """

    clock: Clock
    account: Account

    def _init_desk(self, account: Account, order_prefix: str) -> None:
        self.account = account
        self._orders: dict[str, OwnOrder] = {}
        self._resting: dict[str, OwnOrder] = {}
        self._by_coid: dict[str, OwnOrder] = {}
        self._next_order = 1
        self._order_prefix = order_prefix

    # -- hooks -----------------------------------------------------------------------------------

    def _book(self, ticker: str) -> Any:
        """The market's book object; :class:`MarketNotFound` when unknown."""
        raise NotImplementedError

    def _open_book(self, ticker: str) -> Any:
        """The market's book object; also ``market_closed`` when it no longer trades."""
        raise NotImplementedError

    def _tickers(self) -> Iterable[str]:
        """Every market of the venue, in a stable order (for :meth:`get_positions`)."""
        raise NotImplementedError

    def _price_index(self, book: Any, price: Price) -> int:
        """The price's grid index (0 where unused); ``invalid_price`` when not tradable."""
        raise NotImplementedError

    def _crosses(
        self, book: Any, side: Side, price: Price, idx: int, exclude: OwnOrder | None
    ) -> bool:
        """Would an order at ``price`` trade on arrival (with anything resting but ``exclude``)?"""
        raise NotImplementedError

    def _submit(self, book: Any, o: OwnOrder) -> None:
        """A new, validated order: take what it crosses (not post-only), rest the rest, publish
        its state."""
        raise NotImplementedError

    def _amend(self, book: Any, o: OwnOrder, price: Price, idx: int, count: Qty) -> None:
        """Apply a validated amendment (``count`` = filled + resting) and publish it."""
        raise NotImplementedError

    def _cancel(self, book: Any, o: OwnOrder) -> None:
        """Take a resting order off the book (remaining 0, ``canceled``) and publish it."""
        raise NotImplementedError

    # -- the Exchange interface: orders ------------------------------------------------------------

    async def place_order(self, request: OrderRequest) -> Order:
        """Place a limit order (checks in the module doc). Idempotent on the client order id."""
        known = self._by_coid.get(request.client_order_id)
        if known is not None:
            return known.record()
        m = self._open_book(request.ticker)
        idx = self._price_index(m, request.price)
        side = Side(request.side)
        count = request.count
        if not _positive_int(count):
            raise OrderRejected(
                f"count must be a positive integer, got {count!r}", code="invalid_order_size"
            )
        if request.reduce_only:
            pos = self.account.position(request.ticker)
            allowed = max(-pos, 0) if side is Side.BID else max(pos, 0)
            if allowed == 0:
                raise OrderRejected(
                    f"{request.ticker}: reduce-only {side} with position {pos}", code="reduce_only"
                )
            count = min(count, allowed)
        if request.post_only and self._crosses(m, side, request.price, idx, None):
            raise OrderRejected(
                f"{request.ticker}: post-only {side} at {request.price} would cross",
                code="post_only_cross",
            )
        cost = self.account.opening_cost(request.ticker, side, request.price, count)
        if cost > self.account.cash:
            raise OrderRejected(
                f"needs ${cost}, balance is ${self.account.cash}", code="insufficient_balance"
            )
        oid = f"{self._order_prefix}{self._next_order:08d}"
        self._next_order += 1
        o = OwnOrder(
            oid,
            request.client_order_id,
            request.ticker,
            side,
            request.price,
            idx,
            count,
            request.post_only,
            self.clock.now(),
        )
        self._orders[oid] = o
        self._by_coid[request.client_order_id] = o
        self._submit(m, o)
        if o.status is OrderStatus.RESTING:
            self._resting[oid] = o
        return o.record()

    async def amend_order(self, order_id: str, price: Price, count: Qty) -> Order:
        """New price and/or new total ``count`` (= filled + resting); post-only may not cross."""
        o = self._resting_order(order_id)
        m = self._open_book(o.ticker)
        idx = self._price_index(m, price)
        if not _positive_int(count) or count <= o.filled:
            raise OrderRejected(
                f"count {count!r} must exceed the filled {o.filled}", code="invalid_order_size"
            )
        if price != o.price and o.post_only and self._crosses(m, o.side, price, idx, o):
            raise OrderRejected(
                f"{o.ticker}: post-only {o.side} at {price} would cross", code="post_only_cross"
            )
        self._amend(m, o, price, idx, count)
        if o.status is not OrderStatus.RESTING:
            self._resting.pop(o.order_id, None)
        return o.record()

    async def cancel_order(self, order_id: str) -> Order:
        """Cancel one resting order; returns it ``canceled``."""
        o = self._resting_order(order_id)
        self._cancel(self._book(o.ticker), o)
        self._resting.pop(order_id, None)
        return o.record()

    async def cancel_all(self, ticker: str | None = None) -> list[Order]:
        """Cancel every resting order (of one market, or all); returns them, cancelled."""
        if ticker is not None:
            self._book(ticker)
        out: list[Order] = []
        for o in self._resting_orders(ticker):
            self._cancel(self._book(o.ticker), o)
            self._resting.pop(o.order_id, None)
            out.append(o.record())
        return out

    async def get_orders(self, ticker: str | None = None, resting_only: bool = True) -> list[Order]:
        """Our orders (resting ones by default), in the order they were placed."""
        if ticker is not None:
            self._book(ticker)
        if resting_only:
            return [o.record() for o in self._resting_orders(ticker)]
        return [o.record() for o in self._orders.values() if ticker is None or o.ticker == ticker]

    # -- the Exchange interface: account -----------------------------------------------------------

    async def get_fills(self, ticker: str | None = None) -> list[Fill]:
        """Our fills, oldest first."""
        if ticker is None:
            return list(self.account.fills)
        self._book(ticker)
        return [f for f in self.account.fills if f.ticker == ticker]

    async def get_positions(self) -> list[Position]:
        """Every market we have traded (settled ones included, with their realised PnL)."""
        return [self.account.snapshot(t) for t in self._tickers() if t in self.account.positions]

    async def get_balance(self) -> Decimal:
        """Available cash in dollars."""
        return self.account.cash

    # -- registry ----------------------------------------------------------------------------------

    def _resting_order(self, order_id: str) -> OwnOrder:
        o = self._orders.get(order_id)
        if o is None:
            raise OrderNotFound(f"no order {order_id!r}", code="not_found")
        if o.status is not OrderStatus.RESTING:
            self._resting.pop(order_id, None)
            raise OrderNotFound(f"order {order_id} is {o.status}", code="order_not_resting")
        return o

    def _resting_orders(self, ticker: str | None) -> list[OwnOrder]:
        """Resting orders (of one market), placement order; drops those that stopped resting
        behind the desk's back (filled or cancelled inside the matching)."""
        out: list[OwnOrder] = []
        dead: list[str] = []
        for oid, o in self._resting.items():
            if o.status is not OrderStatus.RESTING:
                dead.append(oid)
            elif ticker is None or o.ticker == ticker:
                out.append(o)
        for oid in dead:
            del self._resting[oid]
        return out
