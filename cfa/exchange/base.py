"""The Exchange interface every venue implements: simulator, Kalshi, replay.

One async interface, Kalshi-shaped: YES/NO bid ladders, orders on the YES leg as bid/ask,
prices in integer units of $0.0001 and counts in units of 0.01 contract (see
:mod:`cfa.core.types`). The same market loop runs on every implementation; every
implementation passes the contract suite in ``tests/exchange_contract.py``.

Events arrive through :meth:`Exchange.stream` as immutable records (:data:`Event`), in the order
the venue produced them. For each market the stream starts with a :class:`BookSnapshot`; book
deltas carry a per-market sequence number that increases by one per delta, and a new snapshot
(for example after a resync) restarts the count at its own ``seq``.

Client order ids make ``place_order`` idempotent: placing again with a client order id the venue
has already seen returns that order and never creates a second one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from decimal import Decimal
from typing import Protocol, TypeAlias, runtime_checkable

from cfa.core.types import (
    BookDelta,
    BookSnapshot,
    Fill,
    MarketInfo,
    MarketStatus,
    Order,
    OrderRequest,
    Position,
    Price,
    Qty,
    Settlement,
    Trade,
)

Event: TypeAlias = BookSnapshot | BookDelta | Trade | Fill | Order | Settlement | MarketStatus
"""What :meth:`Exchange.stream` yields: book updates, public trades, own fills, own order
updates, settlements and market status changes (pause, reactivation, new price grid)."""


class ExchangeError(Exception):
    """Base of every error an exchange raises. ``code`` is the venue's code when it gave one."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class OrderRejected(ExchangeError):
    """The venue refused an order (invalid price, post-only cross, market closed, ...)."""


class OrderNotFound(ExchangeError):
    """No such order (or it is no longer resting where that matters)."""


class MarketNotFound(ExchangeError):
    """No such market."""


class Clock(Protocol):
    """Injected time. ``now()`` is seconds since the Unix epoch (UTC)."""

    def now(self) -> float: ...


@runtime_checkable
class Exchange(Protocol):
    """An async venue. All methods may raise :class:`ExchangeError` subclasses."""

    clock: Clock

    async def start(self) -> None:
        """Open connections. Idempotent."""

    async def close(self) -> None:
        """Release connections. Does not cancel orders (the runtime does that first)."""

    async def get_markets(self, tickers: Sequence[str] | None = None) -> list[MarketInfo]:
        """Markets by ticker (all open markets when ``tickers`` is None)."""

    async def get_market(self, ticker: str) -> MarketInfo:
        """One market; :class:`MarketNotFound` when unknown."""

    async def get_orderbook(self, ticker: str) -> BookSnapshot:
        """The current full book of one market."""

    async def get_trades(self, ticker: str, limit: int = 100) -> list[Trade]:
        """Recent public trades, newest last."""

    def stream(self, tickers: Sequence[str]) -> AsyncIterator[Event]:
        """Events for these markets until the venue or the caller stops."""

    async def place_order(self, request: OrderRequest) -> Order:
        """Place a limit order. Idempotent on ``request.client_order_id``."""

    async def amend_order(self, order_id: str, price: Price, count: Qty) -> Order:
        """Change price and/or total count (Kalshi semantics: ``count`` = filled + resting)."""

    async def cancel_order(self, order_id: str) -> Order:
        """Cancel one resting order; returns it in state ``canceled``."""

    async def cancel_all(self, ticker: str | None = None) -> list[Order]:
        """Cancel every resting order (of one market, or of all); returns the cancelled orders."""

    async def get_orders(self, ticker: str | None = None, resting_only: bool = True) -> list[Order]:
        """Our orders, resting ones by default."""

    async def get_fills(self, ticker: str | None = None) -> list[Fill]:
        """Our fills, oldest first."""

    async def get_positions(self) -> list[Position]:
        """Our net YES position per market."""

    async def get_balance(self) -> Decimal:
        """Available cash in dollars."""


def event_chunks(exchange: Exchange, tickers: Sequence[str]) -> AsyncIterator[Iterable[Event]]:
    """The events of :meth:`Exchange.stream` handed over in chunks, with one await per chunk.

    Each chunk is an iterable of events; the consumer must exhaust it (handling each event in
    turn, awaiting what it must) before it asks for the next. An exchange that can deliver
    many events without suspending defines ``stream_chunks(tickers)`` with this contract (the
    simulator does: a chunk steps the world lazily, so an order placed while one event is
    handled acts before the next one is made, exactly as with :meth:`Exchange.stream`); any
    other exchange's stream is wrapped one event per chunk. The method is looked up on the
    exchange's class, never forwarded by a wrapper's ``__getattr__``.
    """
    # looked up on the class: a wrapper that forwards attributes to another exchange (one that
    # paces or filters its stream, say) must be streamed through its own ``stream``
    chunks = getattr(type(exchange), "stream_chunks", None)
    if chunks is not None:
        return chunks(exchange, tickers)  # type: ignore[no-any-return]
    return _single_events(exchange.stream(tickers))


async def _single_events(stream: AsyncIterator[Event]) -> AsyncIterator[Iterable[Event]]:
    try:
        async for ev in stream:
            yield (ev,)
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
