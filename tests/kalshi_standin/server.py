"""The stand-in's network side: a small HTTP/1.1 server and a WebSocket server on 127.0.0.1.

* REST under ``/trade-api/v2`` (Kalshi's paths and current shapes, V2 order endpoints;
  exchange shards routed as :mod:`.world` describes);
  ``/portfolio/*`` requires a valid ``KALSHI-ACCESS-*`` signature (verified with the test key's
  public half, timestamp within ±30 s); the order book accepts signed and unsigned requests.
* WebSocket at ``/trade-api/ws/v2`` (its upgrade must be signed over ``GET/trade-api/ws/v2``):
  ``subscribe`` (one sid per channel), ``unsubscribe``, ``update_subscription`` with
  ``get_snapshot``; ``seq`` per sid on orderbook and trade frames and on replies to a sid.
  Books honour ``use_yes_price`` (NO levels at YES-leg prices) as :attr:`StandIn.book_form`
  says: ``"honour"`` (Kalshi today: default false), ``"flipped"`` (the announced default
  true), ``"yes"`` (the flag removed: always YES-leg), ``"legacy"`` (a server that ignores
  the flag). ``ticker`` frames (docs' field names) follow every book change of a market;
  ``market_lifecycle_v2`` ignores market filters (as Kalshi's: every market's events reach
  every subscriber). Pings with body ``heartbeat`` every ``ping_interval`` seconds; pongs
  are counted in :attr:`StandIn.pongs`.

Faults (see :class:`Faults`): HTTP 429 with Kalshi's flat body, 5xx, a response held past the
client's timeout (before or after the request took effect), a 5xx or a dropped connection after
the request took effect, an amend/cancel answer that describes another order (changelog
2026-05-21), a dropped WebSocket, a sequence gap (one orderbook delta lost), a paused exchange
(:meth:`World.pause`), and — naturally — post-only crosses (rejected, or accepted and cancelled:
``World.post_only_cross``).

Rate limits (getting_started/rate_limits), when built with ``tier``: a read and a write token
bucket refilled at the tier's budget (capacity: two seconds of budget above Basic for writes,
one second for Basic writes; reads two seconds for Basic/Advanced, else one); a request the
bucket cannot cover is answered 429 ``{"error": "too many requests"}`` and costs nothing. Costs:
10 tokens by default, V2 cancel 2, batch create 10 per order, batch cancel 2 per order (billed
whole: a batch above the bucket's capacity is always refused). Single order writes naming an
``exchange_index >= 1`` bill that shard's own write bucket; batches always the unscoped one.
WebSocket faults: a terminal channel error on any channel (:meth:`StandIn.channel_error`), a
refused subscribe (an error with the command id and no sid, :meth:`StandIn.refuse_subscribe`),
commands left unanswered (:meth:`StandIn.ignore`). Market pause / reactivation / price-grid
change: :meth:`World.deactivate`, :meth:`World.activate`, :meth:`World.set_grid`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from cfa.core.types import ONE_DOLLAR, format_price, format_qty, parse_price
from cfa.exchange.kalshi.auth import (
    KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WS_SIGN_PATH,
    verify,
)

from .world import ApiError, World

ROOT = "/trade-api/v2"
INTERNAL = {"error": {"code": "internal_error", "message": "internal server error"}}
_quiet = logging.getLogger("kalshi_standin.ws")
_quiet.setLevel(logging.INFO)
AUTH_FAILED = {
    "error": {
        "code": "authentication_error",
        "message": "authentication_error",
        "details": "rpc error: code = Unauthenticated desc = INCORRECT_API_KEY_SIGNATURE",
    }
}
REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    409: "Conflict",
    429: "Too Many Requests",
}
TOO_MANY = {"error": "too many requests"}
TIER_BUDGETS = {
    "basic": (200, 100),
    "advanced": (300, 300),
    "expert": (600, 600),
    "premier": (1000, 1000),
    "paragon": (2000, 2000),
    "prime": (4000, 4000),
    "prestige": (10000, 8000),
}
"""Per-second (read, write) token budgets per tier (Rate Limits and Tiers)."""
DROP = -1
"""A status meaning: close the connection without answering."""


class Buckets:
    """Kalshi's token buckets for one tier: ``read``, unscoped ``write`` and one write bucket
    per exchange shard. ``take`` spends a request's cost or returns False (nothing spent)."""

    def __init__(self, tier: str, clock: Callable[[], float] = time.monotonic) -> None:
        read, write = TIER_BUDGETS[tier]
        self.tier = tier
        self.rates = {"read": float(read), "write": float(write)}
        self.caps = {
            "read": read * (2.0 if tier in ("basic", "advanced") else 1.0),
            "write": write * (1.0 if tier == "basic" else 2.0),
        }
        self.clock = clock
        self.tokens: dict[str, tuple[float, float]] = {}
        self.refused = 0

    def take(self, bucket: str, cost: float) -> bool:
        kind = "read" if bucket == "read" else "write"
        now = self.clock()
        tokens, t = self.tokens.get(bucket, (self.caps[kind], now))
        tokens = min(self.caps[kind], tokens + (now - t) * self.rates[kind])
        if tokens < cost:
            self.tokens[bucket] = (tokens, now)
            self.refused += 1
            return False
        self.tokens[bucket] = (tokens - cost, now)
        return True


def request_cost(method: str, path: str, query: dict[str, str], body: Any) -> tuple[str, float]:
    """(bucket, tokens) Kalshi bills for a request: V2 order writes and order groups bill the
    write bucket (a single write with ``exchange_index >= 1`` that shard's), the rest reads."""
    items = body.get("orders") if isinstance(body, dict) else None
    n = len(items) if isinstance(items, list) else 0
    if path == "/portfolio/events/orders/batched":
        return "write", (10.0 if method == "POST" else 2.0) * n
    if path.startswith("/portfolio/events/orders") or path.startswith("/portfolio/order_groups"):
        if method == "GET":
            return "read", 10.0
        idx = query.get("exchange_index")
        if isinstance(body, dict) and body.get("exchange_index") is not None:
            idx = body["exchange_index"]
        try:
            shard = int(idx) if idx not in (None, "") else 0
        except (TypeError, ValueError):
            shard = 0
        bucket = f"write:{shard}" if shard >= 1 and "order_groups" not in path else "write"
        return bucket, 2.0 if method == "DELETE" and "order_groups" not in path else 10.0
    return "read", 10.0


@dataclass
class Fault:
    """One injected HTTP fault for requests matching ``method`` and ``path`` (a regex searched in
    the path after ``/trade-api/v2``). ``kind``: ``"429"``, ``"500"``, ``"503"``,
    ``"timeout"`` (hold the answer ``delay`` s, request not applied), ``"drop"`` (close the
    connection unanswered, request not applied); applied first, then: ``"timeout_after"``
    (hold the answer), ``"500_after"``/``"503_after"`` (answer a 5xx), ``"drop_after"`` (close
    unanswered) or ``"misdescribe"`` (a 2xx whose ids and counts are another order's, as V2
    amend and cancel answers may be). Fires ``times`` times."""

    method: str
    path: str
    kind: str
    times: int = 1
    delay: float = 2.0


@dataclass
class Faults:
    http: list[Fault] = field(default_factory=list)
    gap_next: set[str] = field(default_factory=set)
    """Tickers whose next orderbook delta is lost (its seq is consumed, the frame not sent)."""
    refuse: dict[str, list[int]] = field(default_factory=dict)
    """Per channel: error codes for its next subscribes (answered by command id, no sid);
    under ``"get_snapshot"``: for the next snapshot requests."""
    ignore: dict[str, int] = field(default_factory=dict)
    """Commands to leave unanswered, by kind (``"subscribe:<channel>"``, ``"get_snapshot"``)."""
    fired: list[str] = field(default_factory=list)

    def take(self, method: str, path: str) -> Fault | None:
        for f in self.http:
            if f.method == method and re.search(f.path, path) and f.times > 0:
                f.times -= 1
                self.fired.append(f"{f.kind} {method} {path}")
                return f
        return None


class _WsClient:
    """One WebSocket connection: its subscriptions and an ordered outbox."""

    def __init__(self, conn: ServerConnection) -> None:
        self.conn = conn
        self.subs: dict[int, tuple[str, set[str] | None]] = {}
        self.yes_price: dict[int, bool] = {}
        """Orderbook sids served with NO levels at YES-leg prices."""
        self.seq: dict[int, int] = {}
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.next_sid = 1

    def send(self, frame: dict[str, Any]) -> None:
        self.outbox.put_nowait(frame)

    def next_seq(self, sid: int) -> int:
        self.seq[sid] = self.seq.get(sid, 0) + 1
        return self.seq[sid]


SEQ_CHANNELS = {"orderbook_delta", "trade"}


class StandIn:
    """A Kalshi stand-in on 127.0.0.1: ``await start()``, use ``base_url``/``ws_url``,
    ``await stop()``. ``public_key`` verifies signatures; ``key_id`` is the expected key id.
    ``churn_interval``: seconds between background book refreshes (None: no churn), each of
    ``churn_batch`` changes."""

    def __init__(
        self,
        public_key: rsa.RSAPublicKey,
        key_id: str,
        *,
        world: World | None = None,
        churn_interval: float | None = 0.004,
        churn_batch: int = 1,
        tier: str | None = None,
        ping_interval: float | None = 10.0,
        book_form: str = "honour",
    ) -> None:
        if book_form not in ("honour", "flipped", "yes", "legacy"):
            raise ValueError(f"book_form: unknown {book_form!r}")
        self.public_key = public_key
        self.key_id = key_id
        self.world = world or World()
        self.world.listeners.append(self._on_world)
        self.faults = Faults()
        self.buckets = Buckets(tier) if tier is not None else None
        """Kalshi's token buckets for ``tier`` (None: no rate limits)."""
        self.churn_interval = churn_interval
        self.churn_batch = churn_batch
        self.ping_interval = ping_interval
        self.book_form = book_form
        self.pongs = 0
        self.commands: list[dict[str, Any]] = []
        """Every WebSocket command received, in order."""
        """Pongs received for the server's heartbeat pings."""
        self.requests: list[tuple[str, str]] = []
        self.auth_failures = 0
        self.ws_connections = 0
        self._http: asyncio.Server | None = None
        self._ws: Server | None = None
        self._clients: set[_WsClient] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self.http_port = 0
        self.ws_port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}{ROOT}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/trade-api/ws/v2"

    async def start(self) -> None:
        self._http = await asyncio.start_server(self._serve_http, "127.0.0.1", 0)
        self.http_port = self._http.sockets[0].getsockname()[1]
        self._ws = await serve(
            self._serve_ws,
            "127.0.0.1",
            0,
            process_request=self._ws_auth,
            ping_interval=None,
            compression=None,
            logger=_quiet,
        )
        self.ws_port = next(iter(self._ws.sockets)).getsockname()[1]
        if self.churn_interval is not None:
            self._tasks.append(asyncio.create_task(self._churn()))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self.world.listeners.remove(self._on_world)
        if self._ws is not None:
            self._ws.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.wait_closed(), 2)
        if self._http is not None:
            self._http.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._http.wait_closed(), 2)

    async def _churn(self) -> None:
        while True:
            await asyncio.sleep(self.churn_interval or 0.01)
            for _ in range(self.churn_batch):
                self.world.churn()

    # -- auth ----------------------------------------------------------------------------------

    def _signed(self, headers: Any, method: str, path: str) -> bool | None:
        """True (valid), False (invalid), None (no auth headers at all)."""
        key = headers.get(KEY_HEADER) or headers.get(KEY_HEADER.lower())
        ts = headers.get(TIMESTAMP_HEADER) or headers.get(TIMESTAMP_HEADER.lower())
        sig = headers.get(SIGNATURE_HEADER) or headers.get(SIGNATURE_HEADER.lower())
        if key is None and ts is None and sig is None:
            return None
        if key != self.key_id or not ts or not sig or not ts.isdigit():
            return False
        if abs(int(ts) / 1000 - time.time()) > 30:
            return False
        return verify(self.public_key, sig, ts, method, path)

    # -- HTTP ----------------------------------------------------------------------------------

    async def _serve_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, target, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                n = int(headers.get("content-length", "0") or 0)
                body = await reader.readexactly(n) if n else b""
                status, payload = await self._handle(method.upper(), target, headers, body)
                if status == DROP:
                    return  # the finally closes the connection: no answer at all
                data = json.dumps(payload).encode()
                head = (
                    f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
                )
                writer.write(head.encode() + data)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        except asyncio.CancelledError:  # server shutdown: end quietly
            return
        finally:
            writer.close()

    async def _handle(
        self, method: str, target: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, Any]:
        url = urlsplit(target)
        full = url.path
        if not full.startswith(ROOT):
            return 404, {"error": {"code": "not_found", "message": "not found"}}
        path = full[len(ROOT) :]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.requests.append((method, path))
        ok = self._signed(headers, method, full)
        private = path.startswith("/portfolio")
        if ok is False or (private and ok is None):
            self.auth_failures += 1
            return 401, AUTH_FAILED
        fault = self.faults.take(method, path)
        after: Fault | None = None
        if fault is not None:
            if fault.kind == "429":
                return 429, TOO_MANY
            if fault.kind in ("500", "503"):
                return int(fault.kind), INTERNAL
            if fault.kind == "timeout":
                await asyncio.sleep(fault.delay)
                return 504, {"error": {"code": "gateway_timeout", "message": "timeout"}}
            if fault.kind == "drop":
                return DROP, None
            after = fault
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return 400, {"error": {"code": "bad_request", "message": "invalid JSON body"}}
        if self.buckets is not None and not self.buckets.take(
            *request_cost(method, path, query, body)
        ):
            return 429, TOO_MANY
        try:
            result = self._route(method, path, query, body)
        except ApiError as exc:
            result = (exc.status, exc.body)
        if after is not None:
            if after.kind == "timeout_after":
                await asyncio.sleep(after.delay)
            elif after.kind in ("500_after", "503_after"):
                return int(after.kind[:3]), INTERNAL
            elif after.kind == "drop_after":
                return DROP, None
            elif after.kind == "misdescribe" and result[0] < 300:
                return result[0], self._misdescribe(path, result[1])
        return result

    def _misdescribe(self, path: str, answer: Any) -> Any:
        """``answer`` with the ids and counts of another of our orders (the first one that is
        not the order of ``path``), as the V2 amend/cancel answers may come back."""
        oid = str(answer.get("order_id")) if isinstance(answer, dict) else ""
        other = next((o for o in self.world.orders.values() if o.order_id != oid), None)
        if other is None or not isinstance(answer, dict):
            return answer
        out = dict(answer)
        out["order_id"], out["client_order_id"] = other.order_id, other.client_order_id
        for key in ("remaining_count", "fill_count", "reduced_by"):
            if key in out:
                out[key] = format_qty(other.remaining if key != "fill_count" else other.filled)
        return out

    def _route(
        self, method: str, path: str, q: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, Any]:
        w = self.world
        parts = [p for p in path.split("/") if p]
        if method == "GET" and path == "/exchange/status":
            return 200, {
                "exchange_active": w.exchange_active,
                "trading_active": w.trading_active,
                "exchange_estimated_resume_time": None,
            }
        if method == "GET" and path == "/exchange/schedule":
            day = [{"open_time": "00:00", "close_time": "00:00"}]
            return 200, {
                "schedule": {
                    "standard_hours": [
                        {"start_time": "2026-01-01T00:00:00Z", "end_time": "2027-01-01T00:00:00Z"}
                        | {
                            d: day
                            for d in (
                                "monday",
                                "tuesday",
                                "wednesday",
                                "thursday",
                                "friday",
                                "saturday",
                                "sunday",
                            )
                        }
                    ],
                    "maintenance_windows": [],
                }
            }
        if method == "GET" and path == "/account/limits":
            return 200, self._limits()
        if method == "GET" and path == "/markets":
            return 200, self._markets(q)
        if method == "GET" and path == "/markets/trades":
            return 200, self._trades(q)
        if (
            method == "GET"
            and len(parts) == 5
            and parts[0] == "series"
            and parts[4] == "candlesticks"
        ):
            return 200, self._candlesticks(parts[1], parts[3], q)
        if method == "GET" and len(parts) == 2 and parts[0] == "events":
            ms = [m for m in w.markets.values() if m.event_ticker == parts[1]]
            if not ms:
                raise ApiError(404, "not_found", f"event {parts[1]} not found")
            return 200, {
                "event": {
                    "event_ticker": parts[1],
                    "series_ticker": ms[0].series,
                    "title": parts[1],
                    "sub_title": "",
                    "collateral_return_type": "binary",
                    "mutually_exclusive": parts[1] in w.exclusive_events,
                },
                "markets": [w.market_json(m) for m in ms],
            }
        if method == "GET" and len(parts) == 2 and parts[0] == "series":
            return 200, {
                "series": {"ticker": parts[1], "fee_type": "quadratic", "fee_multiplier": 1}
            }
        if method == "GET" and len(parts) >= 2 and parts[0] == "markets":
            m = w.markets.get(parts[1])
            if m is None:
                raise ApiError(404, "not_found", f"market {parts[1]} not found")
            if len(parts) == 2:
                return 200, {"market": w.market_json(m)}
            if parts[2] == "orderbook":
                yes, no = w.book_levels(m)
                return 200, {"orderbook_fp": {"yes_dollars": yes, "no_dollars": no}}
        if path == "/portfolio/events/orders" and method == "POST":
            return 201, w.create(body)
        if path == "/portfolio/events/orders/batched":
            if method == "POST":
                return 201, {"orders": w.batch_create(list(body.get("orders") or []))}
            if method == "DELETE":
                return 200, {"orders": w.batch_cancel(list(body.get("orders") or []))}
        if parts[:3] == ["portfolio", "events", "orders"] and len(parts) >= 4:
            oid = parts[3]
            if method == "DELETE" and len(parts) == 4:
                return 200, w.cancel(oid, dict(q))
            if method == "POST" and len(parts) == 5 and parts[4] == "amend":
                return 200, w.amend(oid, body)
            if method == "POST" and len(parts) == 5 and parts[4] == "decrease":
                return 200, w.decrease(oid, body)
        if method == "GET" and path == "/portfolio/orders":
            return 200, self._orders(q)
        if method == "GET" and parts[:2] == ["portfolio", "orders"] and len(parts) == 3:
            o = w.orders.get(parts[2])
            if o is None:
                raise ApiError(404, "not_found", f"order {parts[2]} not found")
            return 200, {"order": w.order_json(o)}
        if method == "GET" and path == "/portfolio/fills":
            fills = [
                f
                for f in w.fills
                if (not q.get("ticker") or f["ticker"] == q["ticker"])
                and (not q.get("order_id") or f["order_id"] == q["order_id"])
            ]
            return 200, self._page(list(reversed(fills)), "fills", q)
        if method == "GET" and path == "/portfolio/positions":
            pos = [
                p for p in w.positions_json() if not q.get("ticker") or p["ticker"] == q["ticker"]
            ]
            return 200, {**self._page(pos, "market_positions", q), "event_positions": []}
        if method == "GET" and path == "/portfolio/balance":
            return 200, w.balance_json(q.get("exchange_index"))
        if path == "/portfolio/order_groups/create" and method == "POST":
            return 201, w.create_group(body)
        if method == "GET" and path == "/portfolio/order_groups":
            return 200, {
                "order_groups": [
                    {
                        "id": g.group_id,
                        "is_auto_cancel_enabled": not g.triggered,
                        "exchange_index": g.exchange_index,
                    }
                    for g in w.groups.values()
                ]
            }
        if parts[:2] == ["portfolio", "order_groups"] and len(parts) >= 3:
            if method == "PUT" and parts[-1] == "reset":
                return 200, w.reset_group(parts[2], q.get("exchange_index"))
            if method == "DELETE" and len(parts) == 3:
                return 200, w.delete_group(parts[2], q.get("exchange_index"))
        raise ApiError(404, "not_found", f"no route {method} {path}")

    def _limits(self) -> dict[str, Any]:
        """Get Account API Limits for the stand-in's tier (Basic when it has none)."""
        b = self.buckets or Buckets("basic")
        tier = self.buckets.tier if self.buckets is not None else "basic"
        return {
            "usage_tier": tier,
            "read": {"refill_rate": int(b.rates["read"]), "bucket_capacity": int(b.caps["read"])},
            "write": {
                "refill_rate": int(b.rates["write"]),
                "bucket_capacity": int(b.caps["write"]),
            },
            "grants": [{"exchange_instance": "event_contract", "level": tier, "source": "manual"}],
        }

    @staticmethod
    def _page(items: list[dict[str, Any]], key: str, q: dict[str, str]) -> dict[str, Any]:
        """Cursor pagination: the cursor is the next start offset, as an opaque string."""
        start = int(q.get("cursor") or 0)
        limit = max(1, min(int(q.get("limit", 100)), 1000))
        page = items[start : start + limit]
        nxt = start + limit
        return {key: page, "cursor": str(nxt) if nxt < len(items) else ""}

    def _trades(self, q: dict[str, str]) -> dict[str, Any]:
        """get-trades: newest first, ``ticker``, ``min_ts``/``max_ts`` (epoch seconds, both
        inclusive), ``limit`` 1–1000 (default 100; 0 counts as the default), cursor paging;
        each trade in the documented Trade shape only."""
        try:
            lo = int(q["min_ts"]) if q.get("min_ts") else None
            hi = int(q["max_ts"]) if q.get("max_ts") else None
            limit = int(q.get("limit") or 100) or 100
        except ValueError:
            raise ApiError(
                400, "bad_request", "min_ts, max_ts and limit must be integers"
            ) from None
        if not 0 <= limit <= 1000:
            raise ApiError(400, "bad_request", f"limit must be in 0..1000, got {limit}")
        keep = (
            "trade_id",
            "ticker",
            "count_fp",
            "yes_price_dollars",
            "no_price_dollars",
            "taker_side",
            "taker_outcome_side",
            "taker_book_side",
            "created_time",
            "is_block_trade",
        )
        trades = [
            {k: t[k] for k in keep}
            for t in reversed(self.world.trades)
            if (not q.get("ticker") or t["ticker"] == q["ticker"])
            and (lo is None or t["ts_ms"] >= lo * 1000)
            and (hi is None or t["ts_ms"] <= hi * 1000)
        ]
        return self._page(trades, "trades", {**q, "limit": str(limit)})

    def _candlesticks(self, series: str, ticker: str, q: dict[str, str]) -> dict[str, Any]:
        """get-market-candlesticks: ``start_ts``, ``end_ts`` and ``period_interval`` (1, 60 or
        1440) required; 404 for a market not in ``series``."""
        m = self.world.markets.get(ticker)
        if m is None or m.series != series:
            raise ApiError(404, "not_found", f"market {ticker} not found in series {series}")
        try:
            start, end, period = (int(q[k]) for k in ("start_ts", "end_ts", "period_interval"))
        except (KeyError, ValueError):
            raise ApiError(
                400, "bad_request", "start_ts, end_ts and period_interval are required integers"
            ) from None
        if period not in (1, 60, 1440):
            raise ApiError(400, "bad_request", f"period_interval must be 1, 60 or 1440: {period}")
        return {
            "ticker": ticker,
            "candlesticks": self.world.candlesticks(ticker, start, end, period),
        }

    def _markets(self, q: dict[str, str]) -> dict[str, Any]:
        w = self.world
        ms = list(w.markets.values())
        status_map = {"open": {"active"}, "paused": {"inactive"}, "settled": {"finalized"}}
        if q.get("status"):
            ms = [m for m in ms if m.status in status_map.get(q["status"], {q["status"]})]
        if q.get("tickers"):
            wanted = set(q["tickers"].split(","))
            ms = [m for m in ms if m.ticker in wanted]
        if q.get("event_ticker"):
            ms = [m for m in ms if m.event_ticker == q["event_ticker"]]
        if q.get("series_ticker"):
            ms = [m for m in ms if m.series == q["series_ticker"]]
        return self._page([w.market_json(m) for m in ms], "markets", q)

    def _orders(self, q: dict[str, str]) -> dict[str, Any]:
        w = self.world
        os_ = [
            o
            for o in w.orders.values()
            if (not q.get("ticker") or o.ticker == q["ticker"])
            and (not q.get("status") or o.status == q["status"])
            and (
                not q.get("exchange_index")
                or w.markets[o.ticker].exchange_index == int(q["exchange_index"])
            )
            and (not q.get("min_ts") or o.created >= int(q["min_ts"]))
            and (not q.get("max_ts") or o.created <= int(q["max_ts"]))
        ]
        return self._page([w.order_json(o) for o in reversed(os_)], "orders", q)

    # -- WebSocket -----------------------------------------------------------------------------

    def _ws_auth(self, conn: ServerConnection, request: Request) -> Response | None:
        if urlsplit(request.path).path != WS_SIGN_PATH:
            return conn.respond(404, "not found\n")
        if self._signed(request.headers, "GET", WS_SIGN_PATH) is not True:
            self.auth_failures += 1
            resp = conn.respond(401, json.dumps(AUTH_FAILED))
            resp.headers = Headers({"Content-Type": "application/json", **dict(resp.headers)})
            return resp
        return None

    async def _serve_ws(self, conn: ServerConnection) -> None:
        client = _WsClient(conn)
        self._clients.add(client)
        self.ws_connections += 1
        writer = asyncio.create_task(self._ws_writer(client))
        pinger = asyncio.create_task(self._ws_pinger(conn))
        try:
            async for raw in conn:
                try:
                    cmd = json.loads(raw)
                except ValueError:
                    client.send({"type": "error", "msg": {"code": 1, "msg": "Unable to process"}})
                    continue
                self._command(client, cmd)
        except Exception:
            pass
        finally:
            pinger.cancel()
            self._clients.discard(client)
            client.outbox.put_nowait(None)
            with contextlib.suppress(Exception):
                await writer

    async def _ws_pinger(self, conn: ServerConnection) -> None:
        """Kalshi's keep-alive: a Ping with body ``heartbeat`` every ``ping_interval`` s."""
        while self.ping_interval is not None:
            await asyncio.sleep(self.ping_interval)
            try:
                waiter = await conn.ping(b"heartbeat")
                await asyncio.wait_for(waiter, 5.0)
            except Exception:  # the connection went away, or no pong came
                return
            self.pongs += 1

    def _yes_form(self, params: dict[str, Any]) -> bool:
        """Whether an orderbook subscription with ``params`` is served in YES-leg pricing."""
        asked = params.get("use_yes_price")
        if self.book_form == "yes":
            return True
        if self.book_form == "legacy":
            return False
        if isinstance(asked, bool):
            return asked
        return self.book_form == "flipped"

    async def _ws_writer(self, client: _WsClient) -> None:
        while True:
            frame = await client.outbox.get()
            if frame is None:
                return
            try:
                await client.conn.send(json.dumps(frame))
            except Exception:
                return

    def _command(self, c: _WsClient, cmd: dict[str, Any]) -> None:
        self.commands.append(cmd)
        cid = cmd.get("id")
        params = cmd.get("params") or {}
        name = cmd.get("cmd")
        if name == "subscribe":
            channels = params.get("channels") or []
            if not channels:
                c.send({"id": cid, "type": "error", "msg": {"code": 3, "msg": "Channels required"}})
                return
            tickers = params.get("market_tickers") or (
                [params["market_ticker"]] if params.get("market_ticker") else None
            )
            for ch in channels:
                if self._take_ignore(f"subscribe:{ch}"):
                    continue
                codes = self.faults.refuse.get(ch)
                if codes:
                    code = codes.pop(0)
                    self.faults.fired.append(f"refuse subscribe {ch} code {code}")
                    c.send({"id": cid, "type": "error", "msg": {"code": code, "msg": "refused"}})
                    continue
                sid = c.next_sid
                c.next_sid += 1
                c.subs[sid] = (ch, set(tickers) if tickers else None)
                if ch == "orderbook_delta":
                    c.yes_price[sid] = self._yes_form(params)
                c.send({"id": cid, "type": "subscribed", "msg": {"channel": ch, "sid": sid}})
                if ch == "orderbook_delta":
                    for t in tickers or list(self.world.markets):
                        self._snapshot(c, sid, t)
            return
        if name == "unsubscribe":
            for sid in params.get("sids") or []:
                if c.subs.pop(sid, None) is not None:
                    c.send({"id": cid, "sid": sid, "seq": c.next_seq(sid), "type": "unsubscribed"})
            return
        if name == "update_subscription":
            sids = params.get("sids") or ([params["sid"]] if "sid" in params else [])
            if len(sids) != 1 or sids[0] not in c.subs:
                c.send({"id": cid, "type": "error", "msg": {"code": 12, "msg": "One sid"}})
                return
            sid = sids[0]
            ch, tickers = c.subs[sid]
            if params.get("action") == "get_snapshot" and ch == "orderbook_delta":
                if self._take_ignore("get_snapshot"):
                    return
                codes = self.faults.refuse.get("get_snapshot")
                if codes:
                    code = codes.pop(0)
                    self.faults.fired.append(f"refuse get_snapshot code {code}")
                    c.send({"id": cid, "type": "error", "msg": {"code": code, "msg": "refused"}})
                    return
                wanted = params.get("market_tickers") or sorted(tickers or self.world.markets)
                c.send(
                    {
                        "id": cid,
                        "sid": sid,
                        "seq": c.next_seq(sid),
                        "type": "ok",
                        "msg": {"market_tickers": wanted},
                    }
                )
                for t in wanted:
                    self._snapshot(c, sid, t)
                return
            c.send(
                {
                    "id": cid,
                    "sid": sid,
                    "seq": c.next_seq(sid),
                    "type": "error",
                    "msg": {"code": 13, "msg": "Unsupported action"},
                }
            )
            return
        c.send({"id": cid, "type": "error", "msg": {"code": 5, "msg": "Unknown command"}})

    def _snapshot(self, c: _WsClient, sid: int, ticker: str) -> None:
        m = self.world.markets.get(ticker)
        if m is None:
            return
        yes, no = self.world.book_levels(m)
        if c.yes_price.get(sid):
            no = [[format_price(ONE_DOLLAR - parse_price(p)), q] for p, q in reversed(no)]
        msg: dict[str, Any] = {"market_ticker": ticker, "market_id": f"id-{ticker}"}
        if yes:
            msg["yes_dollars_fp"] = yes
        if no:
            msg["no_dollars_fp"] = no
        c.send({"type": "orderbook_snapshot", "sid": sid, "seq": c.next_seq(sid), "msg": msg})

    def _on_world(self, channel: str, ftype: str, ticker: str, msg: dict[str, Any]) -> None:
        unfiltered = channel == "market_lifecycle_v2"  # Kalshi: no market filter on it
        for c in list(self._clients):
            for sid, (ch, tickers) in c.subs.items():
                if ch != channel or (
                    tickers is not None and ticker not in tickers and not unfiltered
                ):
                    continue
                out = msg
                if channel == "orderbook_delta" and msg["side"] == "no" and c.yes_price.get(sid):
                    yes_leg = ONE_DOLLAR - parse_price(msg["price_dollars"])
                    out = {**msg, "price_dollars": format_price(yes_leg)}
                frame: dict[str, Any] = {"type": ftype, "sid": sid, "msg": out}
                if channel in SEQ_CHANNELS:
                    frame["seq"] = c.next_seq(sid)
                    if channel == "orderbook_delta" and ticker in self.faults.gap_next:
                        self.faults.gap_next.discard(ticker)
                        self.faults.fired.append(f"gap {ticker} sid {sid} seq {frame['seq']}")
                        continue  # lost: the seq is consumed, the frame never sent
                c.send(frame)
        if channel == "orderbook_delta":
            self._ticker(ticker)

    def _ticker(self, ticker: str) -> None:
        """A ``ticker`` frame (docs: websockets/market-ticker) for every subscriber of it."""
        subs = [
            (c, sid)
            for c in list(self._clients)
            for sid, (ch, tickers) in c.subs.items()
            if ch == "ticker" and (tickers is None or ticker in tickers)
        ]
        m = self.world.markets.get(ticker)
        if not subs or m is None:
            return
        bid = max(m.yes) if m.yes else 0
        ask = ONE_DOLLAR - max(m.no) if m.no else ONE_DOLLAR
        ts = time.time()
        msg = {
            "market_ticker": ticker,
            "market_id": f"id-{ticker}",
            "price_dollars": format_price(bid or ask),
            "yes_bid_dollars": format_price(bid),
            "yes_ask_dollars": format_price(ask),
            "volume_fp": format_qty(m.volume),
            "open_interest_fp": "0.00",
            "dollar_volume": m.volume // 100,
            "dollar_open_interest": 0,
            "yes_bid_size_fp": format_qty(self.world._level(m.yes, bid)),
            "yes_ask_size_fp": format_qty(self.world._level(m.no, ONE_DOLLAR - ask)),
            "last_trade_size_fp": "0.00",
            "ts": int(ts),
            "ts_ms": round(ts * 1000),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)),
        }
        for c, sid in subs:
            c.send({"type": "ticker", "sid": sid, "msg": msg})

    def _take_ignore(self, kind: str) -> bool:
        n = self.faults.ignore.get(kind, 0)
        if n <= 0:
            return False
        self.faults.ignore[kind] = n - 1
        self.faults.fired.append(f"ignore {kind}")
        return True

    # -- faults --------------------------------------------------------------------------------

    def inject(self, method: str, path: str, kind: str, times: int = 1, delay: float = 2.0) -> None:
        """Queue an HTTP fault (see :class:`Fault`)."""
        self.faults.http.append(Fault(method, path, kind, times, delay))

    def gap(self, ticker: str) -> None:
        """Lose the next orderbook delta of ``ticker`` (a sequence gap on every connection)."""
        self.faults.gap_next.add(ticker)

    def channel_error(self, channel: str, code: int = 10) -> int:
        """A terminal error (docs: 10 channel error, 17 internal, 25 buffer overflow) on every
        subscription of ``channel``: the error frame names the sid, and the subscription is
        gone (nothing more is sent on it). Returns how many subscriptions died."""
        n = 0
        for c in list(self._clients):
            for sid, (ch, _) in list(c.subs.items()):
                if ch == channel:
                    del c.subs[sid]
                    c.send({"type": "error", "sid": sid, "msg": {"code": code, "msg": "error"}})
                    self.faults.fired.append(f"channel error {channel} sid {sid} code {code}")
                    n += 1
        return n

    def refuse_subscribe(self, channel: str, code: int = 17, times: int = 1) -> None:
        """Answer the next ``times`` subscribes of ``channel`` with error ``code`` (by command
        id, no sid; no subscription is made)."""
        self.faults.refuse.setdefault(channel, []).extend([code] * times)

    def refuse_snapshot(self, code: int = 17, times: int = 1) -> None:
        """Answer the next ``times`` ``get_snapshot`` requests with error ``code`` (by id)."""
        self.faults.refuse.setdefault("get_snapshot", []).extend([code] * times)

    def ignore(self, kind: str, times: int = 1) -> None:
        """Leave the next ``times`` commands of ``kind`` unanswered: ``"get_snapshot"`` or
        ``"subscribe:<channel>"``."""
        self.faults.ignore[kind] = self.faults.ignore.get(kind, 0) + times

    async def drop_websockets(self) -> int:
        """Abruptly close every WebSocket connection; returns how many were dropped."""
        n = 0
        for c in list(self._clients):
            n += 1
            c.conn.transport.abort()
        await asyncio.sleep(0)
        return n


Handler = Callable[[], Awaitable[None]]
