"""``KalshiExchange``: Kalshi behind cfa's :class:`~cfa.exchange.base.Exchange` interface.

REST (:mod:`~cfa.exchange.kalshi.rest`) for metadata, books, orders and the portfolio;
WebSocket (:mod:`~cfa.exchange.kalshi.ws`) for :meth:`KalshiExchange.stream`. Units are cfa's
(prices in $0.0001 units on the YES leg, counts in 0.01 contract, money in Decimal dollars,
time in epoch seconds); orders go out through the V2 endpoints as ``bid``/``ask`` on the YES
leg with dollar-string prices.

Contracts beyond the interface:

* **Sequence numbers.** Kalshi numbers frames per subscription; the stream renumbers book
  events per market: a snapshot, then deltas at +1 each. A gap or a reconnect never reaches the
  consumer as a gapped delta: the feed drops deltas until Kalshi's fresh snapshot arrives, and
  that snapshot is emitted as a new :class:`BookSnapshot` (which the loop applies directly).
  :meth:`get_orderbook` of a streamed market returns the book exactly as the consumer has
  seen it (same ``seq``), so a consumer-side resync lines up with the next delta.
* **Idempotent creates.** A client order id is unique among *open* orders only (FIX order
  entry: ClOrdID "must not match any open order"): a create resent after its first attempt
  landed and was filled or cancelled would make a second order, and Kalshi documents no 409
  for it. So after ANY failed or ambiguous create (timeout, dropped connection, 5xx, 429, 409,
  an unknown error — anything but a clear refusal: 400 validation, 401/403, 404) the order is
  looked up by its client order id (``GET /portfolio/orders?ticker=…``; only a resting order,
  or one created since this call began, counts) before the create is sent again or the error
  raised — placing twice never makes two orders.
* **Post-only crosses.** Kalshi refuses a crossing post-only create (``invalid_order`` /
  ``post only cross``) or accepts it and cancels it at once (``last_update_reason``
  ``PostOnlyCrossCancel``: the answer has nothing filled and nothing resting); both raise
  :class:`~errors.KalshiInvalidOrder` with code ``post_only_cross``.
* **Amends never cross.** V2 amend has no ``post_only``: an amend priced through the opposite
  best would trade as taker. An amend that moves a price towards the other side is checked
  against the opposite best first (the book of an open stream, else ``GET …/orderbook``) and
  refused, unsent, with the same ``post_only_cross`` error a crossing create gets. (The book
  can still move between the check and the amend; such a taker fill is then reported exactly.)
* **Exchange shards** (Kalshi docs: getting_started/exchange_sharding). Every market has an
  ``exchange_index`` (:attr:`MarketInfo.exchange_index`, from market metadata; learned also
  from order objects). Every create and amend carries ``ticker`` + ``exchange_index``; every
  cancel and batch-cancel item ``market_ticker`` + ``exchange_index`` — a cancel without them
  would go to shard 0 and get a 404 for an order of another shard. The first order on a shard
  reads that shard's balance (collateral is per shard and must be pre-allocated): a shard with
  no collateral is refused with ``no_shard_collateral`` before anything is sent.
* **Exchange-side kill switch.** With ``order_group_limit`` set (contracts per rolling 15 s),
  there is one order group per shard (groups "do not function across exchange instances"):
  :meth:`start` creates shard 0's, the first order on another shard creates that shard's, and
  every order joins its own shard's group; every order is also sent with
  ``cancel_order_on_pause`` so Kalshi pulls it if the exchange pauses. :meth:`kill` deletes
  every group on its shard (Kalshi cancels their orders) and confirms with :meth:`cancel_all`.
* **Start-up reconciliation.** :meth:`start` lists resting orders and positions into
  :attr:`reconciliation`. Orders whose client order id starts with ``order_prefix`` are cfa's
  leftovers from an earlier process: they are cancelled (``cancel_stale``). Any other resting
  order is reported in ``reconciliation.unknown`` and left alone — :meth:`cancel_all` skips
  it too — unless ``cancel_unknown``.
* **cancel_all confirms.** It batch-cancels, lists resting orders again and repeats until none
  of the targeted orders is left (or raises :class:`~errors.KalshiError`). A batch answers
  200 with an ``error`` on each item that failed: every such item is logged, kept in
  :attr:`KalshiExchange.cancel_errors` and named in the error raised if the order is still
  resting at the end — never silently dropped.
* **Reconnects.** After a WebSocket reconnect — and after the ``fill`` or ``user_orders``
  channel was subscribed again following a terminal channel error — the stream fetches fills
  and order states over REST and emits the fills it had not seen (by fill id), so no fill is
  lost to a disconnect or a dead channel.
* **Pauses and price grids** (docs: getting_started/market_lifecycle, maintenance_and_pauses,
  websockets/market-and-event-lifecycle). The stream emits a :class:`MarketStatus` when
  trading in a market stops or starts again: ``deactivated`` / ``activated`` lifecycle events
  (Kalshi cancels every resting order on that reactivation), and an exchange-wide pause seen
  in ``GET /exchange/status`` (``exchange_active`` / ``trading_active``, polled every
  ``status_interval`` seconds and after each reconnect; reasons ``exchange_paused``,
  ``trading_paused``, ``exchange_resumed``). A ``price_level_structure_updated`` event emits a
  :class:`MarketStatus` carrying the market's new :class:`MarketInfo`, read over REST (the
  event's own ``price_ranges`` win if REST still shows the old grid).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from cfa.core.book import BookSequenceError, OrderBook
from cfa.core.grid import PriceGrid
from cfa.core.types import (
    BLIND_BOOK,
    ONE_DOLLAR,
    BookDelta,
    BookSnapshot,
    CfaValueError,
    Fill,
    MarketInfo,
    MarketStatus,
    Order,
    OrderRequest,
    OrderStatus,
    Outcome,
    Position,
    Price,
    Qty,
    Settlement,
    Side,
    Trade,
    format_price,
    format_qty,
    parse_price,
    parse_qty,
)
from cfa.exchange.base import Clock, Event, MarketNotFound, OrderNotFound
from cfa.exchange.clock import WallClock
from cfa.exchange.history import MarketHistory
from cfa.exchange.kalshi import frames, history
from cfa.exchange.kalshi.auth import Signer, load_signer
from cfa.exchange.kalshi.errors import (
    KalshiAuthError,
    KalshiError,
    KalshiExchangePaused,
    KalshiInvalidOrder,
    KalshiMarketNotFound,
    KalshiNotFound,
    KalshiServerError,
)
from cfa.exchange.kalshi.ratelimit import Budget, RateLimiter
from cfa.exchange.kalshi.rest import KalshiRest
from cfa.exchange.kalshi.settings import KalshiSettings
from cfa.exchange.kalshi.ws import KalshiFeed

log = logging.getLogger(__name__)

_STATUS = {"resting": OrderStatus.RESTING, "canceled": OrderStatus.CANCELED}
COID_RECENT_S = 30.0
"""Seconds of clock skew and latency allowed when a failed create's order is looked up: a
finished order with the same client order id counts only if created at most this long before
the create call began (ids are unique among open orders only)."""
FORM_VOTES = 3
"""Ticker frames in a row that must contradict a book's pricing form before it is switched."""


# -- Kalshi JSON → cfa records (orders, fills, positions) -----------------------------------------


def _side(obj: Mapping[str, Any], what: str) -> Side:
    """YES-leg side from ``book_side`` (current) or legacy ``side``/``action``."""
    book = obj.get("book_side")
    if book in ("bid", "ask"):
        return Side(book)
    side, action = obj.get("side"), obj.get("action")
    if side in ("yes", "no") and action in ("buy", "sell"):
        return Side.BID if (side == "yes") == (action == "buy") else Side.ASK
    raise CfaValueError(f"{what}: no book_side (or side/action)")


def _qty(obj: Mapping[str, Any], *keys: str, default: Qty | None = None) -> Qty:
    for k in keys:
        v = obj.get(k)
        if v is not None:
            return parse_qty(str(v), k)
    if default is not None:
        return default
    raise CfaValueError(f"missing {' / '.join(keys)}")


def _ts_of(obj: Mapping[str, Any], default: float) -> float:
    for key in ("last_updated_ts_ms", "ts_ms", "created_ts_ms"):
        if isinstance(obj.get(key), int):
            return int(obj[key]) / 1000.0
    for key in ("last_update_time", "created_time"):
        if obj.get(key):
            return float(frames.parse_rfc3339(obj[key], key))
    if isinstance(obj.get("ts"), int):
        return float(obj["ts"])
    return default


def _created_of(obj: Mapping[str, Any]) -> float | None:
    """An Order object's creation time in epoch seconds (``created_ts_ms`` or
    ``created_time``), None when it names none."""
    if isinstance(obj.get("created_ts_ms"), int):
        return int(obj["created_ts_ms"]) / 1000.0
    if obj.get("created_time"):
        return float(frames.parse_rfc3339(obj["created_time"], "created_time"))
    return None


def parse_order(obj: Mapping[str, Any], *, now: float = 0.0) -> Order:
    """A REST Order object or a ``user_order`` WS message → :class:`Order`."""
    status = str(obj.get("status", "resting"))
    ticker = obj.get("ticker") or obj.get("market_ticker")
    if not isinstance(ticker, str):
        raise CfaValueError("order: missing ticker")
    remaining = _qty(obj, "remaining_count_fp", "remaining_count")
    filled = _qty(obj, "fill_count_fp", "fill_count", default=0)
    initial = _qty(obj, "initial_count_fp", "initial_count", default=remaining + filled)
    price_key = "yes_price_dollars" if obj.get("yes_price_dollars") is not None else None
    if price_key is None:
        price = 10_000 - parse_price(str(obj["no_price_dollars"]), "no_price_dollars")
    else:
        price = parse_price(str(obj[price_key]), price_key)
    return Order(
        order_id=str(obj["order_id"]),
        client_order_id=str(obj.get("client_order_id") or ""),
        ticker=ticker,
        side=_side(obj, "order"),
        price=price,
        initial_count=initial,
        remaining_count=remaining,
        fill_count=filled,
        status=_STATUS.get(status, OrderStatus.EXECUTED),
        ts=_ts_of(obj, now),
    )


def parse_fill(
    obj: Mapping[str, Any], *, client_order_id: str = "", post_position: Qty | None = None
) -> Fill:
    """A ``fill`` WS message or a REST Fill → :class:`Fill` (fee from ``fee_cost`` dollars).

    REST fills carry neither ``client_order_id`` (removed 2026-03) nor ``post_position_fp``:
    pass them in when known."""
    fid = obj.get("trade_id") or obj.get("fill_id")
    if "yes_price_dollars" in obj:
        price = parse_price(str(obj["yes_price_dollars"]), "yes_price_dollars")
    else:
        price = 10_000 - parse_price(str(obj["no_price_dollars"]), "no_price_dollars")
    post = obj.get("post_position_fp")
    return Fill(
        fill_id=str(fid),
        order_id=str(obj["order_id"]),
        client_order_id=str(obj.get("client_order_id") or client_order_id),
        ticker=str(obj.get("market_ticker") or obj.get("ticker")),
        side=_side(obj, "fill"),
        price=price,
        count=_qty(obj, "count_fp", "count"),
        fee=Decimal(str(obj.get("fee_cost") or "0")),
        is_taker=bool(obj.get("is_taker")),
        ts=_ts_of(obj, 0.0),
        post_position=parse_qty(str(post)) if post is not None else (post_position or 0),
    )


def _balance_of(data: Mapping[str, Any]) -> Decimal:
    """Dollars from a Get Balance answer (``balance_dollars``, else ``balance`` in cents)."""
    if data.get("balance_dollars") is not None:
        return Decimal(str(data["balance_dollars"]))
    return Decimal(int(data["balance"])) / 100


@dataclass
class Reconciliation:
    """What :meth:`KalshiExchange.start` found on the account."""

    resting: list[Order] = field(default_factory=list)
    unknown: list[Order] = field(default_factory=list)
    """Resting orders cfa did not place (left alone unless ``cancel_unknown``)."""
    stale_canceled: list[Order] = field(default_factory=list)
    """cfa's own leftovers from an earlier process, cancelled at start."""
    positions: list[Position] = field(default_factory=list)
    exchange_status: dict[str, Any] = field(default_factory=dict)
    balances: dict[int, Decimal] = field(default_factory=dict)
    """Available balance per exchange shard (Get Balance ``balance_breakdown``)."""


@dataclass(frozen=True)
class CancelFailure:
    """One item of a batch cancel that Kalshi answered with an ``error``."""

    order_id: str
    ticker: str
    exchange_index: int | None
    code: str
    message: str

    def __str__(self) -> str:
        shard = "?" if self.exchange_index is None else self.exchange_index
        return f"{self.order_id} ({self.ticker}, shard {shard}): {self.code}: {self.message}"


def _exchange_open(status: Mapping[str, Any]) -> tuple[bool, str]:
    """``(open, reason)`` from a Get Exchange Status answer: open unless the exchange or its
    trading is paused (a missing flag counts as open)."""
    if status.get("exchange_active") is False:
        return False, "exchange_paused"
    if status.get("trading_active") is False:
        return False, "trading_paused"
    return True, "exchange_resumed"


class _StreamState:
    """One open stream: its feed, per-market local seq, the consumer-side book mirrors."""

    def __init__(self, feed: KalshiFeed, tickers: Sequence[str]) -> None:
        self.feed = feed
        self.tickers = set(tickers)
        self.seq: dict[str, int] = dict.fromkeys(tickers, 0)
        self.books: dict[str, OrderBook] = {t: OrderBook(t) for t in tickers}
        self.served: dict[str, int] = {}
        """Per market: seq of a snapshot served by get_orderbook; older deltas are skipped."""
        self.market_open: dict[str, bool] = dict.fromkeys(tickers, True)
        """Per market: not deactivated (lifecycle events)."""
        self.exchange_open = True
        """Neither an exchange pause nor a trading pause (``GET /exchange/status``)."""
        self.exchange_reason = ""
        self.form_votes: dict[str, int] = {}
        """Per market: ticker frames in a row that say the book is in the other form."""
        self.emitted: dict[str, bool] = dict.fromkeys(tickers, True)
        """Per market: the ``active`` last emitted (markets start active)."""
        self.blind: set[str] = set()
        """Markets whose book fell out of sequence (a gap, a resync, a reconnect) after their
        first snapshot: blind, no quote, until the fresh snapshot (:data:`BLIND_BOOK`)."""
        self.epoch = 0
        """The feed's :attr:`~KalshiFeed.unsynced_epoch` at the last scan for blind books."""


class KalshiExchange:
    """Kalshi via REST v2 + WebSocket. Implements :class:`cfa.exchange.base.Exchange`.

    Build with :meth:`from_settings` (environment) or pass URLs and a :class:`Signer`.
    ``order_prefix``: client order ids cfa generates start with it (the session's ``cfa-``).
    ``order_group_limit``: contracts per 15 s for the exchange-side kill switch (None: no group).
    """

    def __init__(
        self,
        base_url: str,
        ws_url: str,
        signer: Signer,
        *,
        budget: Budget | None = None,
        timeout: float = 5.0,
        retries: int = 3,
        order_prefix: str = "cfa-",
        order_group_limit: int | None = 1000,
        cancel_on_pause: bool = True,
        cancel_stale: bool = True,
        cancel_unknown: bool = False,
        ws_backoff: float = 0.05,
        ws_max_backoff: float = 5.0,
        status_interval: float | None = 30.0,
        ws_request_timeout: float = 10.0,
        on_frame: Callable[[dict[str, Any], float], None] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.clock: Clock = clock or WallClock()
        self.signer = signer
        self.ws_url = ws_url
        self.limiter = RateLimiter(budget)
        self._budget_given = budget is not None
        self.rest = KalshiRest(
            base_url, signer, limiter=self.limiter, timeout=timeout, retries=retries
        )
        self.order_prefix = order_prefix
        self.order_group_limit = order_group_limit
        self.cancel_on_pause = cancel_on_pause
        self.cancel_stale = cancel_stale
        self.cancel_unknown = cancel_unknown
        self.ws_backoff = ws_backoff
        self.ws_max_backoff = ws_max_backoff
        self.status_interval = status_interval
        self.ws_request_timeout = ws_request_timeout
        """Seconds the feed waits for a subscribe's answer or a snapshot before asking again."""
        """Seconds between exchange-status polls while a stream is open (None: never)."""
        self.on_frame = on_frame
        self.order_groups: dict[int, str] = {}
        """Order group id per exchange shard (groups are shard-local at Kalshi)."""
        self.cancel_errors: list[CancelFailure] = []
        """Every batch-cancel item Kalshi answered with an error, oldest first."""
        self.reconciliation = Reconciliation()
        self._shard: dict[str, int] = {}
        self._ready_shards: set[int] = set()
        self._started = False
        self._orders: dict[str, Order] = {}
        self._by_coid: dict[str, str] = {}
        self._fills: dict[str, Fill] = {}
        self._protected: set[str] = set()
        self._fees: dict[str, tuple[str, Any]] = {}
        self._exclusive_events: dict[str, bool] = {}
        """Whether each event seen is mutually exclusive (``GET /events/{event_ticker}``)."""
        self._streams: list[_StreamState] = []
        self._infos: dict[str, MarketInfo] = {}

    def __repr__(self) -> str:
        return f"KalshiExchange(base_url={self.rest.base_url!r}, signer={self.signer!r})"

    @property
    def order_group_id(self) -> str | None:
        """Shard 0's order group (the one :meth:`start` creates); see :attr:`order_groups`."""
        return self.order_groups.get(0)

    @classmethod
    def from_settings(cls, settings: KalshiSettings | None = None, **kw: Any) -> KalshiExchange:
        """From ``CFA_KALSHI_*`` settings; :class:`~errors.KalshiAuthError` names what is
        missing."""
        s = settings or KalshiSettings()
        return cls(s.rest_url, s.websocket_url, load_signer(s), **kw)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the exchange, reconcile orders and positions, create the order group.
        Idempotent."""
        if self._started:
            return
        rec = Reconciliation()
        rec.exchange_status = await self.rest.get_exchange_status()
        if not self._budget_given:
            await self._adopt_account_limits()
        for o in await self.get_orders(None, resting_only=True):
            rec.resting.append(o)
            if o.client_order_id.startswith(self.order_prefix):
                if self.cancel_stale:
                    rec.stale_canceled.append(o)
            else:
                rec.unknown.append(o)
        for o in rec.unknown:
            log.warning(
                "kalshi: resting order %s (%s %s %s @ %s) was not placed by cfa; %s",
                o.order_id,
                o.ticker,
                o.side.value,
                format_qty(o.remaining_count),
                format_price(o.price),
                "cancelling it" if self.cancel_unknown else "leaving it alone",
            )
            if not self.cancel_unknown:
                self._protected.add(o.order_id)
        doomed = list(rec.stale_canceled)
        if self.cancel_unknown:
            doomed += rec.unknown
        if doomed:
            failed = await self._cancel_ids(doomed)
            if failed:
                still = {o.order_id for o in await self.get_orders(None, resting_only=True)}
                stuck = [f for f in failed if f.order_id in still]
                if stuck:
                    raise KalshiError(
                        f"start: {len(stuck)} leftover orders could not be cancelled: "
                        + "; ".join(str(f) for f in stuck[:5]),
                        code="cancel_failed",
                    )
        rec.positions = await self.get_positions()
        rec.balances = await self.get_shard_balances()
        if self.order_group_limit is not None:
            self.order_groups[0] = await self.rest.create_order_group(self.order_group_limit, 0)
        self._ready_shards.add(0)
        self.reconciliation = rec
        self._started = True

    async def _adopt_account_limits(self) -> None:
        """Size the rate limiter to the account's own buckets (``GET /account/limits``), so
        batches are split to the tier's real write bucket. On failure the default (Basic, the
        smallest) budget stays, with a warning."""
        try:
            data = await self.rest.get_account_limits()
            budget = Budget.from_limits(data)
        except (KalshiError, ValueError) as exc:
            log.warning("kalshi: account limits unreadable (%s); keeping the Basic budget", exc)
            return
        self.limiter.set_budget(budget)
        log.info("kalshi: API usage tier %s: %s", data.get("usage_tier"), budget)

    async def close(self) -> None:
        """Close feeds and the HTTP pool. Does not cancel orders (the runtime does first)."""
        for st in list(self._streams):
            await st.feed.close()
        await self.rest.aclose()

    async def kill(self) -> list[Order]:
        """Exchange-side kill: delete every shard's order group, each with its
        ``exchange_index`` (Kalshi cancels their orders), then :meth:`cancel_all` to confirm
        nothing is left on any shard. An order placed afterwards gets a fresh group (and a
        fresh collateral check) on its shard."""
        for shard, gid in sorted(self.order_groups.items()):
            with contextlib.suppress(KalshiNotFound):
                await self.rest.delete_order_group(gid, shard)
        self.order_groups.clear()
        self._ready_shards.clear()
        return await self.cancel_all()

    # -- markets -------------------------------------------------------------------------------

    async def _fee_terms(self, series: str) -> tuple[str, Any]:
        terms = self._fees.get(series)
        if terms is None:
            try:
                data = await self.rest.request("GET", f"/series/{series}", auth=False)
                s = data.get("series", data)
                terms = (str(s.get("fee_type") or "quadratic"), s.get("fee_multiplier"))
            except KalshiError:
                terms = ("quadratic", None)
            self._fees[series] = terms
        return terms

    async def _exclusive(self, event: str) -> bool:
        """Whether ``event`` is mutually exclusive (Kalshi keeps the flag on the event object,
        ``GET /events/{event_ticker}``; cached). Unknown (an error): False, which treats its
        markets as independent, the conservative reading for quoting and risk."""
        flag = self._exclusive_events.get(event)
        if flag is None:
            try:
                data = await self.rest.request("GET", f"/events/{event}", auth=False)
                flag = data.get("event", data).get("mutually_exclusive") is True
            except (KalshiError, AttributeError):
                flag = False
            self._exclusive_events[event] = flag
        return flag

    async def _info(self, m: Mapping[str, Any]) -> MarketInfo:
        series = str(m.get("series_ticker") or str(m["event_ticker"]).split("-", 1)[0])
        fee_type, mult = await self._fee_terms(series)
        info = frames.parse_market(m, series_ticker=series, fee_type=fee_type, fee_multiplier=mult)
        if await self._exclusive(info.event_ticker):
            info = dataclasses.replace(info, mutually_exclusive=True)
        self._shard[info.ticker] = info.exchange_index
        self._infos[info.ticker] = info
        return info

    def _learn_shard(self, obj: Mapping[str, Any]) -> None:
        """Record the shard of an order/fill object's market when it names one."""
        ticker = obj.get("ticker") or obj.get("market_ticker")
        idx = obj.get("exchange_index")
        if not isinstance(ticker, str) or not isinstance(idx, int) or isinstance(idx, bool):
            return
        if idx >= 0:
            self._shard[ticker] = idx

    async def exchange_index(self, ticker: str) -> int:
        """The exchange shard of ``ticker``: from metadata already seen, else ``GET
        /markets/{ticker}`` (:class:`MarketNotFound` for an unknown market)."""
        idx = self._shard.get(ticker)
        if idx is None:
            idx = (await self.get_market(ticker)).exchange_index
        return idx

    async def _shard_or_none(self, ticker: str) -> int | None:
        """The shard of ``ticker``, or None (then Kalshi auto-routes by the ticker) when its
        metadata cannot be read."""
        try:
            return await self.exchange_index(ticker)
        except (MarketNotFound, KalshiError, CfaValueError) as exc:
            log.warning("kalshi: shard of %s unknown (%s); auto-routing by ticker", ticker, exc)
            return None

    async def _prepare_shard(self, shard: int) -> None:
        """Before the first order on ``shard``: check it holds collateral, create its order
        group. Raises :class:`KalshiInvalidOrder` (``no_shard_collateral``) for a shard with no
        available balance — nothing is sent then, and the check runs again next time."""
        if shard in self._ready_shards:
            return
        balances = await self.get_shard_balances()
        have = balances.get(shard, Decimal(0))
        if have <= 0:
            raise KalshiInvalidOrder(
                f"exchange shard {shard} has no available balance (${have}); collateral is per "
                f"shard at Kalshi: transfer funds to exchange index {shard} (Intra Account "
                "Transfer) before trading its markets",
                code="no_shard_collateral",
            )
        if self.order_group_limit is not None and shard not in self.order_groups:
            self.order_groups[shard] = await self.rest.create_order_group(
                self.order_group_limit, shard
            )
        self._ready_shards.add(shard)

    async def get_markets(self, tickers: Sequence[str] | None = None) -> list[MarketInfo]:
        if tickers is None:
            return [await self._info(m) for m in await self.rest.get_markets(status="open")]
        wanted = list(dict.fromkeys(tickers))
        found: dict[str, Mapping[str, Any]] = {}
        for i in range(0, len(wanted), 100):
            for m in await self.rest.get_markets(tickers=wanted[i : i + 100]):
                found[m["ticker"]] = m
        missing = [t for t in wanted if t not in found]
        if missing:
            raise MarketNotFound(f"no market {missing[0]!r}", code="market_not_found")
        return [await self._info(found[t]) for t in wanted]

    async def get_market(self, ticker: str) -> MarketInfo:
        return await self._info(await self.rest.get_market(ticker))

    async def get_orderbook(self, ticker: str) -> BookSnapshot:
        """The full book. For a market an open stream carries: the book as its consumer has
        seen it (same ``seq``), older buffered deltas then skipped. Otherwise REST (``seq`` 0)."""
        for st in reversed(self._streams):
            book = st.books.get(ticker)
            if book is not None and book.synced:
                st.served[ticker] = book.seq
                return book.snapshot()
        data = await self.rest.get_orderbook(ticker)
        now = self.clock.now()
        return frames.orderbook_snapshot({"market_ticker": ticker, **data}, seq=0, recv_ts=now)

    async def get_trades(self, ticker: str, limit: int = 100) -> list[Trade]:
        now = self.clock.now()
        out = [
            frames.trade(t, recv_ts=now) for t in await self.rest.get_trades(ticker, limit=limit)
        ]
        return sorted(out, key=lambda t: t.ts)

    async def get_history(
        self, market: MarketInfo, window_s: float = history.WINDOW_S
    ) -> MarketHistory:
        """The last ``window_s`` seconds of ``market`` over REST: 1-minute candlesticks and up
        to ``history.MAX_TRADES`` public trades (:func:`history.fetch_history`; two read
        requests). The warm-start capability (:class:`cfa.exchange.history.HistorySource`)."""
        return await history.fetch_history(self.rest, market, self.clock.now(), window_s)

    # -- orders --------------------------------------------------------------------------------

    def _remember(self, o: Order) -> Order:
        self._orders[o.order_id] = o
        if o.client_order_id:
            self._by_coid[o.client_order_id] = o.order_id
        return o

    async def _find_by_coid(
        self, ticker: str, coid: str, since: float | None = None
    ) -> Order | None:
        """Our order with client order id ``coid`` on ``ticker``, or None.

        Client order ids are unique among open orders only, so an earlier finished order may
        carry the same id: only a resting order counts, or (with ``since``, epoch seconds) one
        created at or after ``since - COID_RECENT_S``. Newest first when several match.

        With ``since``, two short reads rather than the market's whole order history: the
        resting orders, and those since ``min_ts`` (Get Orders filters)."""
        if since is None:
            raw = await self.rest.get_orders(ticker=ticker)
        else:
            raw = await self.rest.get_orders(ticker=ticker, status="resting")
            raw += await self.rest.get_orders(ticker=ticker, min_ts=int(since - COID_RECENT_S))
        hits: list[tuple[float, Mapping[str, Any]]] = []
        for obj in raw:
            if str(obj.get("client_order_id") or "") != coid:
                continue
            created = _created_of(obj)
            fresh = since is not None and created is not None and created >= since - COID_RECENT_S
            if obj.get("status") == "resting" or fresh or since is None:
                hits.append((created or 0.0, obj))
        if not hits:
            return None
        hits.sort(key=lambda h: h[0])
        newest = hits[-1][1]
        self._learn_shard(newest)
        return self._remember(parse_order(newest, now=self.clock.now()))

    async def place_order(self, request: OrderRequest) -> Order:
        """V2 create; idempotent on ``client_order_id`` (see the module docstring)."""
        known = self._by_coid.get(request.client_order_id)
        if known is not None:
            return self._orders[known]
        shard = await self.exchange_index(request.ticker)
        await self._prepare_shard(shard)
        body: dict[str, Any] = {
            "ticker": request.ticker,
            "client_order_id": request.client_order_id,
            "side": Side(request.side).value,
            "count": format_qty(request.count),
            "price": format_price(request.price),
            "time_in_force": "good_till_canceled",
            "self_trade_prevention_type": "taker_at_cross",
            "post_only": bool(request.post_only),
            "reduce_only": bool(request.reduce_only),
            "cancel_order_on_pause": self.cancel_on_pause,
            "exchange_index": shard,
        }
        group = self.order_groups.get(shard)
        if group is not None:
            body["order_group_id"] = group
        resp = await self._create_once_only(request, body, shard)
        if isinstance(resp, Order):
            return resp
        filled = _qty(resp, "fill_count_fp", "fill_count", default=0)
        remaining = _qty(resp, "remaining_count_fp", "remaining_count", default=0)
        if remaining > 0:
            status = OrderStatus.RESTING
        elif filled >= request.count:
            status = OrderStatus.EXECUTED
        else:
            status = OrderStatus.CANCELED
        ts = resp["ts_ms"] / 1000.0 if isinstance(resp.get("ts_ms"), int) else self.clock.now()
        o = self._remember(
            Order(
                order_id=str(resp["order_id"]),
                client_order_id=request.client_order_id,
                ticker=request.ticker,
                side=Side(request.side),
                price=request.price,
                initial_count=request.count,
                remaining_count=remaining,
                fill_count=filled,
                status=status,
                ts=ts,
            )
        )
        if request.post_only and filled == 0 and remaining == 0:
            # accepted, then cancelled by Kalshi for crossing (PostOnlyCrossCancel)
            raise KalshiInvalidOrder(
                f"post-only order {o.order_id} ({request.ticker} {o.side.value} @ "
                f"{format_price(request.price)}) was accepted and cancelled: it would cross",
                code="post_only_cross",
                status=201,
                details="post only cross cancel",
            )
        return o

    async def _create_once_only(
        self, request: OrderRequest, body: Mapping[str, Any], shard: int
    ) -> dict[str, Any] | Order:
        """Send the create until it is answered, never landing it twice: the 201 body, or the
        order found by its client order id after a failed or ambiguous attempt (module
        docstring, "Idempotent creates"). Clear refusals raise at once; the last ambiguous
        error is raised when every attempt failed and no order is found."""
        start = time.time()  # compared with Kalshi's created_time: wall time, not self.clock
        delay = self.rest.backoff
        last: KalshiError | None = None
        for attempt in range(1 + self.rest.retries):
            if attempt:
                self.rest.retried += 1
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(2 * delay, 2.0)
            try:
                return await self.rest.create_order(body)
            except (KalshiAuthError, KalshiNotFound, KalshiMarketNotFound, KalshiExchangePaused):
                raise  # refused before anything was created (a paused exchange's 4xx too)
            except KalshiInvalidOrder as exc:
                if exc.status != 409:
                    if "balance" in str(exc.kalshi_code):  # collateral is per shard: say which
                        raise KalshiInvalidOrder(
                            f"{exc} (collateral on exchange shard {shard} is not enough; funds "
                            "on other shards do not count)",
                            code=exc.code,
                            status=exc.status,
                            details=exc.details,
                            kalshi_code=exc.kalshi_code,
                        ) from exc
                    raise
                last = exc  # a duplicate id: an earlier attempt (or process) placed it
            except KalshiError as exc:  # timeouts, transport, 5xx, 429, anything unknown
                last = exc
            log.info(
                "kalshi: create %s failed (attempt %d): %s; looking it up by client order id",
                request.client_order_id,
                attempt + 1,
                last,
            )
            try:
                found = await self._find_by_coid(request.ticker, request.client_order_id, start)
            except KalshiError as exc:
                raise KalshiServerError(
                    f"create {request.client_order_id}: {last}; and the look-up by client "
                    f"order id failed ({exc}): the order may or may not exist",
                    code="create_unconfirmed",
                ) from exc
            if found is not None:
                return found
            if isinstance(last, KalshiInvalidOrder):
                raise last  # 409 yet no open or recent order with the id: do not resend
        assert last is not None
        raise last

    async def _known(self, order_id: str) -> Order:
        o = self._orders.get(order_id)
        if o is None:
            raw = await self.rest.get_order(order_id)
            self._learn_shard(raw)
            o = self._remember(parse_order(raw))
        return o

    async def amend_order(self, order_id: str, price: Price, count: Qty) -> Order:
        """V2 amend of our resting order ``order_id``: new ``price`` and new total ``count``
        (filled + desired resting, count units). Returns the order as it is after the amend,
        always under ``order_id``.

        * Never crosses: a price moved towards the other side is checked against the opposite
          best first (:meth:`_opposite_best`); at or through it the amend is refused, unsent,
          with :class:`~errors.KalshiInvalidOrder` code ``post_only_cross`` — what a crossing
          post-only create gets. The order then rests unchanged.
        * Counts (Amend Order V2): the answer's ``fill_count`` is what *this amend* filled by
          crossing (not the order's total) and ``remaining_count`` the resting count after it;
          both are "only present when fills occurred or remaining size changed". The total
          filled is the previous total plus the amend's fills; absent fields mean unchanged.
        * Re-read with ``GET /portfolio/orders/{order_id}`` (the answer is then not trusted)
          when: the answer names another order or client order id (changelog 2026-05-21: V2
          amend answers may describe another order; the amend itself hit ours); the amend
          filled anything (the total, fees and status come from Kalshi then); or the counts do
          not add up to ``count`` (our previous total was stale).
        """
        o = await self._known(order_id)
        if o.status is not OrderStatus.RESTING:
            raise OrderNotFound(f"order {order_id} is {o.status}", code="order_not_resting")
        towards = price > o.price if o.side is Side.BID else price < o.price
        if towards:
            best = await self._opposite_best(o.ticker, o.side)
            if best is not None and (price >= best if o.side is Side.BID else price <= best):
                raise KalshiInvalidOrder(
                    f"amend of {order_id} ({o.ticker} {o.side.value}) to "
                    f"{format_price(price)} refused: it would cross the best "
                    f"{'ask' if o.side is Side.BID else 'bid'} {format_price(best)} and trade "
                    "as taker (V2 amend has no post-only)",
                    code="post_only_cross",
                    details="post only cross",
                )
        resp = await self.rest.amend_order(
            order_id,
            {
                "ticker": o.ticker,
                "side": o.side.value,
                "price": format_price(price),
                "count": format_qty(count),
                "client_order_id": o.client_order_id,
                "exchange_index": await self._shard_or_none(o.ticker),
            },
        )
        other = (resp.get("order_id") not in (None, "", order_id)) or (
            resp.get("client_order_id") not in (None, "", o.client_order_id)
        )
        crossed = _qty(resp, "fill_count", "fill_count_fp", default=0)
        filled = o.fill_count + crossed
        remaining = _qty(resp, "remaining_count", "remaining_count_fp", default=o.remaining_count)
        if other or crossed > 0 or filled + remaining != count:
            if other:
                log.warning(
                    "kalshi: amend of %s answered for order %s / %s; re-reading ours",
                    order_id,
                    resp.get("order_id"),
                    resp.get("client_order_id"),
                )
            raw = await self.rest.get_order(order_id)
            self._learn_shard(raw)
            return self._remember(parse_order(raw, now=self.clock.now()))
        ts = resp["ts_ms"] / 1000.0 if isinstance(resp.get("ts_ms"), int) else self.clock.now()
        return self._remember(
            Order(
                order_id=order_id,
                client_order_id=o.client_order_id,
                ticker=o.ticker,
                side=o.side,
                price=price,
                initial_count=count,
                remaining_count=remaining,
                fill_count=filled,
                status=OrderStatus.RESTING if remaining > 0 else OrderStatus.EXECUTED,
                ts=ts,
            )
        )

    async def _opposite_best(self, ticker: str, side: Side) -> Price | None:
        """The best price an order of ``side`` on ``ticker`` would trade against (the best
        ask for a bid, the best bid for an ask; None on an empty side): from the book of an
        open stream (as its consumer has seen it), else ``GET /markets/{ticker}/orderbook``."""
        for st in reversed(self._streams):
            book = st.books.get(ticker)
            if book is not None and book.synced:
                return book.best_ask() if side is Side.BID else book.best_bid()
        snap = await self.get_orderbook(ticker)
        if side is Side.BID:
            return ONE_DOLLAR - snap.no[-1][0] if snap.no else None
        return snap.yes[-1][0] if snap.yes else None

    def _canceled(self, o: Order, ts: float | None = None) -> Order:
        return self._remember(
            Order(
                o.order_id,
                o.client_order_id,
                o.ticker,
                o.side,
                o.price,
                o.initial_count,
                0,
                o.fill_count,
                OrderStatus.CANCELED,
                self.clock.now() if ts is None else ts,
            )
        )

    async def cancel_order(self, order_id: str) -> Order:
        """V2 cancel; :class:`OrderNotFound` for unknown or no longer resting orders."""
        o = self._orders.get(order_id)
        if o is not None and o.status is not OrderStatus.RESTING:
            raise OrderNotFound(f"order {order_id} is {o.status}", code="order_not_resting")
        if o is None:
            o = await self._known(order_id)
            if o.status is not OrderStatus.RESTING:
                raise OrderNotFound(f"order {order_id} is {o.status}", code="order_not_resting")
        try:
            resp = await self.rest.cancel_order(
                order_id, o.ticker, await self._shard_or_none(o.ticker)
            )
        except KalshiNotFound:
            # our view said resting: a retried cancel whose first attempt landed, or Kalshi
            # pulled it (pause, group trigger). Report the truth.
            now = parse_order(await self.rest.get_order(order_id))
            self._remember(now)
            if now.status is OrderStatus.CANCELED:
                return now
            raise
        ts = resp["ts_ms"] / 1000.0 if isinstance(resp.get("ts_ms"), int) else None
        return self._canceled(o, ts)

    async def _cancel_ids(self, orders: Sequence[Order]) -> list[CancelFailure]:
        """Batch-cancel ``orders`` (each routed by its ticker and shard; :meth:`KalshiRest.
        batch_cancel` splits them to what the write bucket holds at once).

        Returns the items Kalshi answered with an ``error`` (or left out of its answer); each
        is logged and appended to :attr:`cancel_errors`. Transport errors raise."""
        failed: list[CancelFailure] = []
        shards: dict[str, int | None] = {}
        items = []
        for o in orders:
            shards[o.order_id] = await self._shard_or_none(o.ticker)
            items.append(
                {
                    "order_id": o.order_id,
                    "market_ticker": o.ticker,
                    "exchange_index": shards[o.order_id],
                }
            )
        results = {str(r.get("order_id")): r for r in await self.rest.batch_cancel(items)}
        for o in orders:
            r = results.get(o.order_id)
            err = None if r is None else r.get("error")
            if r is not None and not err:
                continue
            e = err if isinstance(err, Mapping) else {}
            f = CancelFailure(
                o.order_id,
                o.ticker,
                shards[o.order_id],
                str(e.get("code") or ("missing_result" if r is None else "error")),
                str(
                    e.get("message")
                    or ("no result for this item in the batch answer" if r is None else err)
                ),
            )
            log.warning("kalshi: batch cancel item failed: %s", f)
            failed.append(f)
        self.cancel_errors.extend(failed)
        return failed

    async def cancel_all(self, ticker: str | None = None, rounds: int = 4) -> list[Order]:
        """Cancel every resting order (of ``ticker``) except protected unknown ones, and
        confirm with Kalshi that none is left; returns the cancelled orders."""
        if ticker is not None and ticker not in {o.ticker for o in self._orders.values()}:
            await self.get_market(ticker)  # MarketNotFound for an unknown market
        done: dict[str, Order] = {}
        failures: dict[str, CancelFailure] = {}
        for _ in range(rounds):
            targets = [
                o
                for o in await self.get_orders(ticker, resting_only=True)
                if o.order_id not in self._protected
            ]
            if not targets:
                return list(done.values())
            failed = {f.order_id: f for f in await self._cancel_ids(targets)}
            failures.update(failed)
            for o in targets:
                if o.order_id not in failed:
                    done[o.order_id] = self._canceled(o)
        left = [
            o
            for o in await self.get_orders(ticker, resting_only=True)
            if o.order_id not in self._protected
        ]
        if left:
            why = [str(failures[o.order_id]) for o in left if o.order_id in failures]
            raise KalshiError(
                f"cancel_all: {len(left)} orders still resting after {rounds} rounds"
                + (f"; Kalshi said: {'; '.join(why[:5])}" if why else ""),
                code="cancel_all_incomplete",
            )
        return list(done.values())

    # -- portfolio -----------------------------------------------------------------------------

    async def get_orders(self, ticker: str | None = None, resting_only: bool = True) -> list[Order]:
        raw = await self.rest.get_orders(ticker=ticker, status="resting" if resting_only else None)
        for obj in raw:
            self._learn_shard(obj)
        now = self.clock.now()
        out = [parse_order(o, now=now) for o in raw]
        for o in out:
            self._remember(o)
        return sorted(out, key=lambda o: (o.ts, o.order_id))

    async def get_fills(self, ticker: str | None = None) -> list[Fill]:
        """Our fills, oldest first. Fills seen on the stream are returned as they were
        (with their ``post_position``); others get it from the positions, counting back."""
        raw = await self.rest.get_fills(ticker=ticker)
        raw.sort(key=lambda f: _ts_of(f, 0.0))
        positions = {p.ticker: p.position for p in await self.get_positions()}
        running = dict(positions)
        parsed: list[Fill] = []
        for obj in reversed(raw):
            t = str(obj.get("market_ticker") or obj.get("ticker"))
            coid = self._coid_of(str(obj["order_id"]))
            f = parse_fill(obj, client_order_id=coid, post_position=running.get(t, 0))
            running[t] = running.get(t, 0) - f.side.sign * f.count
            parsed.append(self._fills.get(f.fill_id, f))
        parsed.reverse()
        return parsed

    def _coid_of(self, order_id: str) -> str:
        o = self._orders.get(order_id)
        return o.client_order_id if o is not None else ""

    async def get_positions(self) -> list[Position]:
        out = []
        for p in await self.rest.get_positions():
            out.append(
                Position(
                    ticker=str(p["ticker"]),
                    position=_qty(p, "position_fp", "position"),
                    realized_pnl=Decimal(str(p.get("realized_pnl_dollars") or "0")),
                    fees_paid=Decimal(str(p.get("fees_paid_dollars") or "0")),
                )
            )
        return out

    async def get_balance(self) -> Decimal:
        """Available balance summed over every exchange shard (Get Balance without
        ``exchange_index``). Collateral is per shard: see :meth:`get_shard_balances`."""
        return _balance_of(await self.rest.get_balance())

    async def get_shard_balances(self) -> dict[int, Decimal]:
        """Available balance per exchange shard, from Get Balance's ``balance_breakdown``;
        when Kalshi omits it (subaccount-restricted keys), one scoped read per shard cfa knows
        of (shard 0 and those of the markets seen)."""
        data = await self.rest.get_balance()
        rows = data.get("balance_breakdown")
        if isinstance(rows, list):
            out: dict[int, Decimal] = {}
            for row in rows:
                idx = frames.parse_exchange_index(row.get("exchange_index"), "balance_breakdown")
                out[idx] = Decimal(str(row["balance"]))
            return out
        shards = sorted({0, *self._shard.values()})
        return {k: _balance_of(await self.rest.get_balance(k)) for k in shards}

    # -- stream --------------------------------------------------------------------------------

    async def stream(self, tickers: Sequence[str]) -> AsyncGenerator[Event, None]:
        """Snapshot first per market, then its events; resyncs and reconnects as described in
        the module docstring. Ends when the caller closes it (or on :meth:`close`)."""
        wanted = list(dict.fromkeys(tickers))
        if not wanted:
            return
        feed = KalshiFeed(
            self.ws_url,
            self.signer,
            wanted,
            backoff=self.ws_backoff,
            max_backoff=self.ws_max_backoff,
            request_timeout=self.ws_request_timeout,
            on_frame=self.on_frame,
        )
        st = _StreamState(feed, wanted)
        for t in wanted:  # a market paused already (as the last metadata read said)
            info = self._infos.get(t)
            if info is not None and info.status == "inactive":
                st.market_open[t] = False
        # the exchange as start() found it: a pause in force is emitted before any quote
        feed.put({"type": "cfa_exchange_status", "status": self.reconciliation.exchange_status})
        self._streams.append(st)
        held: dict[str, list[Event]] = {t: [] for t in wanted}
        settled: set[str] = set()
        await feed.start()
        poller = (
            asyncio.create_task(self._poll_status(feed, self.status_interval))
            if self.status_interval is not None
            else None
        )
        try:
            # no wait for the subscriptions: the feed retries them itself, and nothing of a
            # market is yielded before its first snapshot
            while True:
                frame = await feed.get()
                if frame is None:
                    return
                for ev in await self._events(st, frame, settled):
                    t = ev.ticker
                    book = st.books[t]
                    if isinstance(ev, BookSnapshot):
                        book.apply_snapshot(ev)
                        st.served.pop(t, None)
                        yield ev
                        for h in held.pop(t, []):
                            yield h
                        if t in st.blind:
                            st.blind.discard(t)
                            for e in self._status_events(st, t, ev.ts, "book_resynced"):
                                yield e
                        continue
                    if t in held:  # nothing before the market's first snapshot
                        held[t].append(ev)
                        continue
                    if isinstance(ev, BookDelta):
                        served = st.served.get(t)
                        if served is not None and ev.seq <= served:
                            continue  # already inside a snapshot get_orderbook handed out
                        try:
                            book.apply_delta(ev)
                        except BookSequenceError as exc:
                            log.warning("kalshi stream: %s; resyncing", exc)
                            feed.resync(t)
                            continue
                    yield ev
                if feed.unsynced_epoch != st.epoch:
                    st.epoch = feed.unsynced_epoch
                    now = self.clock.now()
                    for t in wanted:
                        if t in held or t in st.blind or t in feed.synced:
                            continue
                        st.blind.add(t)
                        for e in self._status_events(st, t, now, BLIND_BOOK):
                            yield e
        finally:
            if poller is not None:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await poller
            self._streams.remove(st)
            await feed.close()

    async def _poll_status(self, feed: KalshiFeed, interval: float) -> None:
        """Every ``interval`` s, queue the exchange status for :meth:`_events` to compare."""
        while True:
            await asyncio.sleep(interval)
            await self._queue_status(feed)

    async def _queue_status(self, feed: KalshiFeed) -> None:
        try:
            status = await self.rest.get_exchange_status()
        except KalshiError as exc:
            log.warning("kalshi stream: exchange status unreadable: %s", exc)
            return
        feed.put({"type": "cfa_exchange_status", "status": status})

    def _status_events(self, st: _StreamState, t: str, ts: float, reason: str) -> list[Event]:
        """A :class:`MarketStatus` for ``t`` if its effective state differs from what was
        last emitted (``st.market_open`` / ``st.exchange_open`` / ``st.blind`` already
        updated)."""
        active = st.market_open.get(t, True) and st.exchange_open and t not in st.blind
        if st.emitted.get(t, True) == active:
            return []
        st.emitted[t] = active
        return [MarketStatus(t, ts, active, reason)]

    async def _grid_event(self, t: str, msg: Mapping[str, Any], ts: float) -> MarketInfo | None:
        """The new :class:`MarketInfo` of ``t`` after a price-grid change."""
        ranges = msg.get("price_ranges")
        grid = None
        if isinstance(ranges, list) and ranges:
            grid = PriceGrid.from_price_ranges(ranges)
        try:
            info: MarketInfo | None = await self.get_market(t)
        except (KalshiError, MarketNotFound, CfaValueError) as exc:
            log.warning("kalshi stream: %s metadata unreadable after a grid change: %s", t, exc)
            info = self._infos.get(t)
        if info is None:
            return None
        if grid is not None and info.price_ranges != grid.ranges:
            structure = msg.get("price_level_structure")
            info = replace(
                info,
                price_ranges=grid.ranges,
                price_level_structure=str(structure or info.price_level_structure),
            )
        self._infos[t] = info
        return info

    async def _events(
        self, st: _StreamState, frame: dict[str, Any], settled: set[str]
    ) -> list[Event]:
        ftype = frame.get("type")
        now = self.clock.now()
        try:
            if ftype == "orderbook_snapshot":
                yes_price = frame.get("cfa_yes_price") is True
                snap = frames.orderbook_snapshot(frame, seq=0, recv_ts=now, use_yes_price=yes_price)
                if snap.ticker not in st.tickers:
                    return []
                st.seq[snap.ticker] += 1
                return [BookSnapshot(snap.ticker, st.seq[snap.ticker], snap.ts, snap.yes, snap.no)]
            if ftype == "orderbook_delta":
                yes_price = frame.get("cfa_yes_price") is True
                d = frames.orderbook_delta(frame, seq=0, recv_ts=now, use_yes_price=yes_price)
                if d.ticker not in st.tickers or d.ticker not in st.feed.synced:
                    return []
                st.seq[d.ticker] += 1
                return [
                    BookDelta(
                        d.ticker,
                        st.seq[d.ticker],
                        d.ts,
                        d.outcome,
                        d.price,
                        d.delta,
                        d.client_order_id,
                    )
                ]
            if ftype == "trade":
                tr = frames.trade(frame, recv_ts=now)
                return [tr] if tr.ticker in st.tickers else []
            if ftype == "ticker":  # Kalshi's top of book is not an event: a check of the form
                self._check_form(st, frames.ticker(frame, recv_ts=now))
                return []
            msg = frame.get("msg") or {}
            if ftype == "fill":
                coid = self._coid_of(str(msg.get("order_id")))
                f = parse_fill(msg, client_order_id=coid)
                if f.fill_id in self._fills:
                    return []
                self._fills[f.fill_id] = f
                return [f] if f.ticker in st.tickers else []
            if ftype == "user_order":
                o = self._remember(parse_order(msg, now=now))
                return [o] if o.ticker in st.tickers else []
            if ftype == "market_lifecycle_v2":
                t = msg.get("market_ticker")
                result = msg.get("result")
                kind = msg.get("event_type")
                paused = msg.get("is_deactivated")
                if t in st.tickers and (
                    kind in ("activated", "deactivated") or isinstance(paused, bool)
                ):
                    opened = kind == "activated"
                    st.market_open[t] = not paused if isinstance(paused, bool) else opened
                    why = "activated" if st.market_open[t] else "deactivated"
                    return self._status_events(st, t, now, why)
                if t in st.tickers and kind == "price_level_structure_updated":
                    info = await self._grid_event(t, msg, now)
                    if info is None:
                        return []
                    active = st.emitted.get(t, True)
                    return [MarketStatus(t, now, active, "price_level_structure_updated", info)]
                if (
                    msg.get("event_type") in ("determined", "settled")
                    and result in ("yes", "no")
                    and t in st.tickers
                    and t not in settled
                ):
                    settled.add(t)
                    ts = float(msg.get("determination_ts") or msg.get("settled_ts") or now)
                    return [Settlement(t, Outcome(result), ts)]
                return []
            if ftype == "cfa_exchange_status":
                st.exchange_open, st.exchange_reason = _exchange_open(frame.get("status") or {})
                out: list[Event] = []
                for t in sorted(st.tickers):
                    why = st.exchange_reason
                    if st.exchange_open and not st.market_open[t]:
                        why = "deactivated"
                    out += self._status_events(st, t, now, why)
                return out
            if ftype == "cfa_resubscribed" and frame.get("channel") in ("fill", "user_orders"):
                return await self._catch_up(st)  # fills and order changes while it was down
            if ftype == "cfa_reconnected":
                await self._queue_status(st.feed)  # maintenance disconnects come with pauses
                return await self._catch_up(st)
        except (CfaValueError, KeyError, TypeError, ValueError) as exc:
            log.warning("kalshi stream: malformed %s frame skipped: %s", ftype, exc)
        return []

    def _check_form(self, st: _StreamState, tk: frames.Ticker) -> None:
        """Cross-check a book's pricing form against the ``ticker`` channel.

        The ticker's best YES ask does not depend on the book form. The book's NO ladder read
        the other way round has its best ask at the lowest NO level. When the ticker agrees with
        the book's best bid and with that other reading's ask but not with the book's ask,
        ``FORM_VOTES`` ticker frames in a row, the book is read in the wrong form (a snapshot
        that looks sane both ways cannot tell, see :func:`frames.yes_price_form`): the feed
        switches that subscription's form and resyncs the market.
        """
        book = st.books.get(tk.ticker)
        if book is None or not book.synced or not book.no or tk.yes_ask is None:
            return
        other = min(book.no)
        if tk.yes_bid == book.best_bid() and tk.yes_ask == other != book.best_ask():
            votes = st.form_votes.get(tk.ticker, 0) + 1
            if votes >= FORM_VOTES:
                votes = 0
                st.feed.switch_form(tk.ticker)
            st.form_votes[tk.ticker] = votes
        else:
            st.form_votes.pop(tk.ticker, None)

    async def _catch_up(self, st: _StreamState) -> list[Event]:
        """After a reconnect: the fills and order changes the dropped connection missed."""
        out: list[Event] = []
        try:
            for f in await self.get_fills(None):
                if f.fill_id not in self._fills and f.ticker in st.tickers:
                    self._fills[f.fill_id] = f
                    out.append(f)
            before = {k: v for k, v in self._orders.items() if v.status is OrderStatus.RESTING}
            now_resting = {o.order_id for o in await self.get_orders(None, resting_only=True)}
            for oid, o in before.items():
                if oid not in now_resting and o.ticker in st.tickers:
                    out.append(self._remember(parse_order(await self.rest.get_order(oid))))
        except KalshiError as exc:
            log.warning("kalshi stream: catch-up after reconnect failed: %s", exc)
        return out

    # -- health --------------------------------------------------------------------------------

    def feed_stats(self) -> list[Any]:
        """Counters of the open feeds (gaps, resyncs, reconnects, dropped deltas)."""
        return [st.feed.stats for st in self._streams]
