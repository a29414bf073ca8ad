"""Async REST client for Kalshi Trade API v2 (current 2026 shapes), on :class:`httpx.AsyncClient`.

Returns Kalshi's JSON objects as dicts (the adapter turns them into cfa records); raises the
typed errors of :mod:`cfa.exchange.kalshi.errors`. Paths below are relative to the base URL
(``…/trade-api/v2``); the signed path is the full URL path without the query.

Reliability contract:

* every call spends tokens first (:class:`~cfa.exchange.kalshi.ratelimit.RateLimiter`):
  reads from the read bucket, writes from the write bucket, cancels with priority;
* idempotent calls (every GET; cancels; amend, which sets an absolute price and total count;
  ``decrease`` with ``reduce_to``) are retried on 5xx, 429, timeouts and dropped connections
  with exponential backoff, up to ``retries`` extra attempts;
* ``create_order`` is sent once: a client order id is unique among *open* orders only (FIX
  order entry, ClOrdID), so a blind retry of a create that landed and was already filled or
  cancelled would make a second order. The adapter looks the order up by its client order id
  after any failed or ambiguous answer and retries only when it is not there;
* batch creates are not retried (the caller re-sends the failed items with their ids);
* batches are split to fit the write bucket (a batch is billed whole on arrival and one above
  the bucket's capacity is a 429 every time): creates ``RateLimiter.max_batch("write", 10)``
  per call, cancels ``max_batch("cancel", 2)``; the answers are joined in request order.

Exchange shards (Kalshi docs, getting_started/exchange_sharding, "Order routing → REST"): every
order write here names its market (``ticker`` on create/amend, ``market_ticker`` on cancel,
decrease and batch-cancel items) and, when the caller gives one, its ``exchange_index``. Kalshi
routes an explicit index ``>= 0`` straight to that shard, auto-routes by ticker when the index
is omitted (or ``-1``), and falls back to shard 0 when neither is sent — where an order of
another shard is a 404. Order groups and balances are per shard: their calls take the index.

Nothing here logs headers or bodies of authenticated requests.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from cfa.exchange.kalshi.auth import Signer
from cfa.exchange.kalshi.errors import (
    KalshiAuthError,
    KalshiError,
    KalshiRateLimited,
    KalshiServerError,
    error_from_response,
)
from cfa.exchange.kalshi.ratelimit import (
    BATCH_CREATE_COST,
    CANCEL_COST,
    DEFAULT_COST,
    Kind,
    RateLimiter,
)

log = logging.getLogger(__name__)

ORDERS_V2 = "/portfolio/events/orders"
"""The V2 order endpoints (create, amend, decrease, cancel, batched)."""


def _clean(params: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (params or {}).items() if v is not None and v != ""}


def _shard_of(index: Any) -> int | None:
    """The shard an order body's ``exchange_index`` names (None: unscoped)."""
    return index if isinstance(index, int) and not isinstance(index, bool) else None


class KalshiRest:
    """One REST session. ``signer`` None allows only public endpoints.

    ``timeout``: seconds per attempt. ``retries``: extra attempts for idempotent calls.
    ``backoff``: first retry delay in seconds (doubles, with jitter, capped at 2 s).
    ``transport``: an httpx transport for tests.
    """

    def __init__(
        self,
        base_url: str,
        signer: Signer | None,
        *,
        limiter: RateLimiter | None = None,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.05,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._root = urlsplit(self.base_url).path.rstrip("/")
        self.signer = signer
        self.limiter = limiter or RateLimiter()
        self.retries = retries
        self.backoff = backoff
        self.requests = 0
        """Requests sent (attempts, retries included)."""
        self.retried = 0
        """Attempts that were retries."""
        self._client = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, transport=transport
        )

    def __repr__(self) -> str:
        return f"KalshiRest(base_url={self.base_url!r}, signer={self.signer!r})"

    async def aclose(self) -> None:
        """Close the connection pool. Idempotent."""
        await self._client.aclose()

    # -- core ----------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        auth: bool = True,
        kind: Kind = "read",
        cost: float = DEFAULT_COST,
        retry: bool | None = None,
        market: bool = False,
        shard: int | None = None,
    ) -> dict[str, Any]:
        """Send one call (with retries when ``retry``; default: GET only) and return its JSON.

        ``kind``/``cost``: which bucket pays and how much; ``shard``: the ``exchange_index`` a
        single order write names (its shard's own write bucket, see
        :meth:`RateLimiter.write_bucket`). ``market``: a 404 means an unknown market
        (:class:`~errors.KalshiMarketNotFound`) rather than an unknown order.
        """
        method = method.upper()
        if retry is None:
            retry = method == "GET"
        what = f"{method} {path}"
        attempts = 1 + (self.retries if retry else 0)
        delay = self.backoff
        last: KalshiError | None = None
        for attempt in range(attempts):
            if attempt:
                self.retried += 1
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 2.0)
            await self.limiter.acquire(kind, cost, shard)
            try:
                return await self._once(method, path, params, json, auth, what, market)
            except KalshiRateLimited as exc:
                self.limiter.throttled(kind, shard)
                last = exc
            except KalshiServerError as exc:
                last = exc
            log.info("kalshi %s failed (attempt %d/%d): %s", what, attempt + 1, attempts, last)
        assert last is not None
        raise last

    async def _once(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        body: Any,
        auth: bool,
        what: str,
        market: bool,
    ) -> dict[str, Any]:
        headers: dict[str, str] = {}
        if auth:
            if self.signer is None:
                raise KalshiAuthError(
                    f"{what}: needs Kalshi credentials (CFA_KALSHI_KEY_ID, "
                    "CFA_KALSHI_PRIVATE_KEY_PATH)",
                    code="no_credentials",
                )
            headers = self.signer.headers(method, self._root + path)
        self.requests += 1
        try:
            resp = await self._client.request(
                method, self.base_url + path, params=_clean(params), json=body, headers=headers
            )
        except httpx.TimeoutException:
            raise KalshiServerError(f"{what}: timed out", code="timeout") from None
        except httpx.TransportError as exc:
            raise KalshiServerError(
                f"{what}: connection failed: {type(exc).__name__}", code="connection_error"
            ) from None
        try:
            data = resp.json() if resp.content else {}
        except ValueError:
            data = resp.text
        log.debug("kalshi %s -> %d", what, resp.status_code)
        if resp.status_code >= 400:
            raise error_from_response(resp.status_code, data, what=what, market=market)
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            # Kalshi has answered deprecations with a 2xx and an error body
            raise error_from_response(400, data, what=what, market=market)
        if not isinstance(data, dict):
            raise KalshiServerError(f"{what}: expected a JSON object", code="bad_response")
        return data

    async def _pages(
        self,
        path: str,
        key: str,
        params: Mapping[str, Any],
        *,
        max_items: int | None = None,
        max_pages: int = 1000,
        auth: bool = True,
    ) -> list[dict[str, Any]]:
        """Follow ``cursor`` until it comes back empty; concatenate ``key`` lists."""
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(max_pages):
            page = await self.request("GET", path, params={**params, "cursor": cursor}, auth=auth)
            out.extend(page.get(key) or [])
            cursor = page.get("cursor") or None
            if cursor is None or (max_items is not None and len(out) >= max_items):
                break
        return out if max_items is None else out[:max_items]

    # -- markets, books, trades, exchange ------------------------------------------------------

    async def get_markets(
        self,
        *,
        status: str | None = None,
        series_ticker: str | None = None,
        event_ticker: str | None = None,
        tickers: Sequence[str] | None = None,
        limit: int = 1000,
        max_items: int | None = None,
        **filters: Any,
    ) -> list[dict[str, Any]]:
        """``GET /markets``, every page (or up to ``max_items``). ``status`` is a filter value
        (``unopened|open|paused|closed|settled``); ``filters`` pass through
        (``min_close_ts``, ``mve_filter``, ...)."""
        params = {
            "status": status,
            "series_ticker": series_ticker,
            "event_ticker": event_ticker,
            "tickers": ",".join(tickers) if tickers else None,
            "limit": limit,
            **filters,
        }
        return await self._pages("/markets", "markets", params, max_items=max_items, auth=False)

    async def get_market(self, ticker: str) -> dict[str, Any]:
        """``GET /markets/{ticker}`` → the Market object."""
        data = await self.request("GET", f"/markets/{ticker}", auth=False, market=True)
        return dict(data["market"])

    async def get_orderbook(self, ticker: str, depth: int = 0) -> dict[str, Any]:
        """``GET /markets/{ticker}/orderbook`` → ``{"yes_dollars": [...], "no_dollars": [...]}``.

        Reads ``orderbook_fp`` (current) or the legacy ``orderbook`` (cents or dollars, ``null``
        sides); always returns both keys, ``[]`` for an empty side, levels ``[price, count]``
        ascending as Kalshi sends them (only bids; asks are derived by the caller).
        """
        data = await self.request(
            "GET",
            f"/markets/{ticker}/orderbook",
            params={"depth": depth or None},
            market=True,
            auth=self.signer is not None,
        )
        book = data.get("orderbook_fp") or data.get("orderbook") or {}
        out: dict[str, Any] = {}
        for leg in ("yes", "no"):
            for key in (f"{leg}_dollars", f"{leg}_dollars_fp", leg):
                if book.get(key) is not None:
                    out[key if key != f"{leg}_dollars_fp" else f"{leg}_dollars"] = book[key]
                    break
            else:
                out[f"{leg}_dollars"] = []
        return out

    async def get_trades(
        self, ticker: str | None = None, *, limit: int = 100, **filters: Any
    ) -> list[dict[str, Any]]:
        """``GET /markets/trades``: one page of up to ``limit`` trades (newest first)."""
        data = await self.request(
            "GET",
            "/markets/trades",
            params={"ticker": ticker, "limit": limit, **filters},
            auth=False,
        )
        return list(data.get("trades") or [])

    async def get_exchange_status(self) -> dict[str, Any]:
        """``GET /exchange/status``: ``exchange_active``, ``trading_active``, resume time."""
        return await self.request("GET", "/exchange/status", auth=False)

    async def get_exchange_schedule(self) -> dict[str, Any]:
        """``GET /exchange/schedule`` → the ``schedule`` object (times are ET)."""
        data = await self.request("GET", "/exchange/schedule", auth=False)
        return dict(data.get("schedule", data))

    async def get_account_limits(self) -> dict[str, Any]:
        """``GET /account/limits``: ``usage_tier`` and the ``read``/``write`` token buckets
        (``refill_rate`` tokens per second, ``bucket_capacity`` tokens) of this account."""
        return await self.request("GET", "/account/limits")

    # -- V2 orders -----------------------------------------------------------------------------

    async def create_order(self, order: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /portfolio/events/orders`` (CreateOrderV2Request) → 201 body. One attempt.

        ``order`` must carry a ``client_order_id``: after a failed or ambiguous answer the
        caller finds the order by it before deciding to send again (see the module docstring).
        """
        if not order.get("client_order_id"):
            raise ValueError("create_order needs a client_order_id (idempotency relies on it)")
        return await self.request(
            "POST",
            ORDERS_V2,
            json=dict(order),
            kind="write",
            retry=False,
            shard=_shard_of(order.get("exchange_index")),
        )

    async def amend_order(self, order_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST …/{order_id}/amend`` with ``ticker, side, price, count`` (new total) and,
        optionally, ``exchange_index`` (AmendOrderV2Request). ``ticker`` is required: Kalshi
        routes the amend by it."""
        if not body.get("ticker"):
            raise ValueError(f"amend_order {order_id}: needs the market ticker (shard routing)")
        return await self.request(
            "POST",
            f"{ORDERS_V2}/{order_id}/amend",
            json=_clean(body),
            kind="write",
            retry=True,
            shard=_shard_of(body.get("exchange_index")),
        )

    async def decrease_order(
        self,
        order_id: str,
        *,
        reduce_by: str | None = None,
        reduce_to: str | None = None,
        market_ticker: str,
        exchange_index: int | None = None,
    ) -> dict[str, Any]:
        """``POST …/{order_id}/decrease`` with exactly one of ``reduce_by``/``reduce_to``
        (fixed-point count strings). Retried only for ``reduce_to`` (absolute).
        ``market_ticker`` (required) and ``exchange_index`` route it to the order's shard
        (DecreaseOrderV2Request)."""
        if (reduce_by is None) == (reduce_to is None):
            raise ValueError("give exactly one of reduce_by, reduce_to")
        if not market_ticker:
            raise ValueError(f"decrease_order {order_id}: needs market_ticker (shard routing)")
        body = _clean(
            {
                "reduce_by": reduce_by,
                "reduce_to": reduce_to,
                "market_ticker": market_ticker,
                "exchange_index": exchange_index,
            }
        )
        return await self.request(
            "POST",
            f"{ORDERS_V2}/{order_id}/decrease",
            json=body,
            kind="write",
            retry=reduce_to is not None,
            shard=exchange_index,
        )

    async def cancel_order(
        self, order_id: str, market_ticker: str, exchange_index: int | None = None
    ) -> dict[str, Any]:
        """``DELETE …/{order_id}?market_ticker=…&exchange_index=…`` (Cancel Order V2 query
        parameters) → ``{order_id, client_order_id, reduced_by, ts_ms}``.

        ``market_ticker`` is required here: without it (and without an index) Kalshi looks for
        the order on shard 0 only and answers 404 for an order on any other shard."""
        if not market_ticker:
            raise ValueError(f"cancel_order {order_id}: needs market_ticker (shard routing)")
        return await self.request(
            "DELETE",
            f"{ORDERS_V2}/{order_id}",
            params={"market_ticker": market_ticker, "exchange_index": exchange_index},
            kind="cancel",
            cost=CANCEL_COST,
            retry=True,
            shard=exchange_index,
        )

    async def batch_create(self, orders: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``POST …/batched``: per-item results, in request order (``error`` set on the items
        that failed — the HTTP call itself succeeds; callers must check every item). Each
        order needs its ``ticker`` (and should carry its ``exchange_index``)."""
        for o in orders:
            if not o.get("ticker"):
                raise ValueError("batch_create: every order needs its ticker (shard routing)")
        return await self._batched(
            "POST", [dict(o) for o in orders], "write", BATCH_CREATE_COST, retry=False
        )

    async def batch_cancel(self, items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``DELETE …/batched`` (JSON body, BatchCancelOrdersV2Request): per-item results;
        retried (cancels are safe).

        ``items``: ``{"order_id", "market_ticker", "exchange_index"?}`` each — the ticker is
        required (an item without it and without an index is looked up on shard 0 only). The
        answer has one entry per item, ``error`` set (and ``reduced_by`` zero) on the items that
        failed although the HTTP call succeeded: callers must check every item."""
        body = []
        for it in items:
            if not it.get("order_id") or not it.get("market_ticker"):
                raise ValueError(
                    f"batch_cancel: every item needs order_id and market_ticker, got {dict(it)!r}"
                )
            body.append(_clean(dict(it)))
        return await self._batched("DELETE", body, "cancel", CANCEL_COST, retry=True)

    async def _batched(
        self, method: str, items: list[dict[str, Any]], kind: Kind, item_cost: int, *, retry: bool
    ) -> list[dict[str, Any]]:
        """Send ``items`` to ``…/batched`` in chunks the write bucket holds at once (a batch is
        billed whole: a bigger one is a 429 every time); the per-item answers, in order."""
        size = self.limiter.max_batch(kind, item_cost)
        out: list[dict[str, Any]] = []
        for i in range(0, len(items), size):
            chunk = items[i : i + size]
            data = await self.request(
                method,
                f"{ORDERS_V2}/batched",
                json={"orders": chunk},
                kind=kind,
                cost=item_cost * len(chunk),
                retry=retry,
            )
            out.extend(data.get("orders") or [])
        return out

    # -- portfolio reads -----------------------------------------------------------------------

    async def get_orders(
        self, *, ticker: str | None = None, status: str | None = None, **filters: Any
    ) -> list[dict[str, Any]]:
        """``GET /portfolio/orders``, every page. ``status``: ``resting|canceled|executed``.
        Without an ``exchange_index`` filter Kalshi lists the orders of every shard."""
        params = {"ticker": ticker, "status": status, "limit": 1000, **filters}
        return await self._pages("/portfolio/orders", "orders", params)

    async def get_order(self, order_id: str) -> dict[str, Any]:
        """``GET /portfolio/orders/{order_id}`` → the Order object."""
        data = await self.request("GET", f"/portfolio/orders/{order_id}")
        return dict(data["order"])

    async def get_fills(
        self, *, ticker: str | None = None, order_id: str | None = None, **filters: Any
    ) -> list[dict[str, Any]]:
        """``GET /portfolio/fills``, every page (Kalshi returns newest first)."""
        params = {"ticker": ticker, "order_id": order_id, "limit": 1000, **filters}
        return await self._pages("/portfolio/fills", "fills", params)

    async def get_positions(self, *, ticker: str | None = None) -> list[dict[str, Any]]:
        """``GET /portfolio/positions`` → ``market_positions``, every page."""
        params = {"ticker": ticker, "limit": 1000, "count_filter": "position,total_traded"}
        return await self._pages("/portfolio/positions", "market_positions", params)

    async def get_balance(self, exchange_index: int | None = None) -> dict[str, Any]:
        """``GET /portfolio/balance``: ``balance`` (int cents), ``balance_dollars``,
        ``portfolio_value`` and ``balance_breakdown`` (``[{exchange_index, balance}]``, dollar
        strings). Get Balance: without ``exchange_index`` the values cover every shard; with
        it they are scoped to that shard."""
        return await self.request(
            "GET", "/portfolio/balance", params={"exchange_index": exchange_index}
        )

    # -- order groups (exchange-side kill switch) ----------------------------------------------

    async def create_order_group(self, contracts_limit: int, exchange_index: int = 0) -> str:
        """``POST /portfolio/order_groups/create`` on shard ``exchange_index`` → the new
        ``order_group_id``.

        If fills on the group's orders exceed ``contracts_limit`` (whole contracts) within 15 s,
        Kalshi cancels every order of the group and refuses new ones until reset. A group lives
        on one shard ("order groups do not function across exchange instances"): only orders of
        that shard's markets may join it, and reset/delete must name the same index.
        """
        data = await self.request(
            "POST",
            "/portfolio/order_groups/create",
            json={"contracts_limit": int(contracts_limit), "exchange_index": int(exchange_index)},
            kind="write",
        )
        return str(data["order_group_id"])

    async def get_order_groups(self) -> list[dict[str, Any]]:
        """``GET /portfolio/order_groups``."""
        data = await self.request("GET", "/portfolio/order_groups")
        return list(data.get("order_groups") or [])

    async def reset_order_group(self, group_id: str, exchange_index: int = 0) -> None:
        """``PUT /portfolio/order_groups/{id}/reset?exchange_index=…``: allow orders again
        after a trigger (the index defaults to 0 at Kalshi: pass the group's shard)."""
        await self.request(
            "PUT",
            f"/portfolio/order_groups/{group_id}/reset",
            params={"exchange_index": int(exchange_index)},
            json={},
            kind="write",
            retry=True,
        )

    async def delete_order_group(self, group_id: str, exchange_index: int = 0) -> None:
        """``DELETE /portfolio/order_groups/{id}?exchange_index=…``: cancels every order in
        it, then removes it (the index defaults to 0 at Kalshi: pass the group's shard)."""
        await self.request(
            "DELETE",
            f"/portfolio/order_groups/{group_id}",
            params={"exchange_index": int(exchange_index)},
            kind="write",
            retry=True,
        )

    # -- market history (warm start) -----------------------------------------------------------

    async def get_market_candlesticks(
        self,
        series_ticker: str,
        ticker: str,
        *,
        start_ts: int,
        end_ts: int,
        period_interval: int = 1,
    ) -> list[dict[str, Any]]:
        """``GET /series/{series_ticker}/markets/{ticker}/candlesticks`` → ``candlesticks``.

        Candles ending in ``[start_ts, end_ts]`` (epoch seconds, both inclusive) of
        ``period_interval`` minutes (1, 60 or 1440), oldest first, in Kalshi's MarketCandlestick
        shape (``end_period_ts``, ``yes_bid``/``yes_ask``/``price`` OHLC dollar strings,
        ``volume_fp``). One request, no pagination. Markets settled before the historical
        cutoff answer only under ``/historical/markets/{ticker}/candlesticks`` (not used here:
        a market being warmed up is live)."""
        if period_interval not in (1, 60, 1440):
            raise ValueError(
                f"period_interval must be 1, 60 or 1440 minutes, not {period_interval}"
            )
        if not (0 <= start_ts <= end_ts):
            raise ValueError(
                f"candlesticks: need 0 <= start_ts <= end_ts, got {start_ts}, {end_ts}"
            )
        data = await self.request(
            "GET",
            f"/series/{series_ticker}/markets/{ticker}/candlesticks",
            params={"start_ts": start_ts, "end_ts": end_ts, "period_interval": period_interval},
            auth=False,
            market=True,
        )
        return list(data.get("candlesticks") or [])

    async def get_trade_history(
        self,
        ticker: str,
        *,
        min_ts: int,
        max_ts: int,
        max_items: int = 1000,
        page_size: int = 1000,
    ) -> tuple[list[dict[str, Any]], bool, int]:
        """``GET /markets/trades?ticker&min_ts&max_ts``, following ``cursor`` (newest first, as
        Kalshi pages them) until it comes back empty or ``max_items`` trades are read.

        Returns ``(trades, complete, pages)``: ``complete`` is False when the cap stopped the
        paging with pages left (the oldest trades of the window are then missing); ``pages``
        is the number of calls made, at most ``ceil(max_items / page_size)``."""
        if max_items < 1 or not (1 <= page_size <= 1000):
            raise ValueError(
                f"need max_items >= 1 and page_size in 1..1000: {max_items}, {page_size}"
            )
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        pages = 0
        while True:
            pages += 1
            data = await self.request(
                "GET",
                "/markets/trades",
                params={
                    "ticker": ticker,
                    "min_ts": min_ts,
                    "max_ts": max_ts,
                    "limit": min(page_size, max_items - len(out)),
                    "cursor": cursor,
                },
                auth=False,
            )
            out.extend(data.get("trades") or [])
            cursor = data.get("cursor") or None
            if cursor is None:
                return out, True, pages
            if len(out) >= max_items:
                return out[:max_items], False, pages
