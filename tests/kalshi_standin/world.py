"""The stand-in's exchange world: markets, books with price-time queues, orders, fills, account.

Everything is in cfa units internally (prices in $0.0001, counts in 0.01 contract, money as
Decimal dollars) and rendered to Kalshi's current JSON shapes (dollar strings, ``_fp`` counts,
V2 order responses) at the edges. One user (the API key holder) trades against background
liquidity that the world refreshes on its own ("churn") and against test-driven takers.

Exchange shards (Kalshi docs: getting_started/exchange_sharding). Every market lives on one
``exchange_index`` (a matching engine). Order writes are routed as Kalshi documents: an explicit
index ``>= 0`` goes to that shard; an omitted index (or ``-1``) with a market ticker auto-routes
to the ticker's shard; with neither, shard 0. An engine only knows its own orders and order
groups, so a cancel/amend/decrease of a shard-2 order that lands on shard 0 is a 404, as is a
group referenced from another shard. Collateral is per shard: each shard has its own cash
(:meth:`World.fund`), and Get Balance reports the total plus a ``balance_breakdown``.

Emitted events go to ``listeners`` as ``(channel, frame_type, ticker, msg)``; the WebSocket
side turns them into frames with sids and seqs. Order of emission for one action: book deltas,
then the public trade, then our fills, then our order update.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from cfa.core.grid import PriceGrid
from cfa.core.types import (
    ONE_DOLLAR,
    FeeSchedule,
    Side,
    format_price,
    format_qty,
    parse_price,
    parse_qty,
)
from cfa.exchange.sim.account import Account

Listener = Callable[[str, str, str, dict[str, Any]], None]


class ApiError(Exception):
    """An error answer: HTTP status and Kalshi's error body."""

    def __init__(self, status: int, code: str, message: str, details: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"error": {"code": code, "message": message}}
        if details:
            self.body["error"]["details"] = details


def rfc3339(ts: float) -> str:
    """Epoch seconds to RFC 3339 UTC with milliseconds."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Maker:
    """One resting entry in a level's queue: background (``order`` None) or one of our orders."""

    size: int
    order: UserOrder | None = None


@dataclass
class UserOrder:
    order_id: str
    client_order_id: str
    ticker: str
    side: Side
    price: int
    initial: int
    remaining: int
    filled: int = 0
    status: str = "resting"
    post_only: bool = False
    cancel_on_pause: bool = False
    group: str | None = None
    created: float = 0.0
    updated: float = 0.0
    taker_cost: Decimal = Decimal(0)
    maker_cost: Decimal = Decimal(0)
    taker_fees: Decimal = Decimal(0)
    maker_fees: Decimal = Decimal(0)
    last_update_reason: str | None = None
    fill_cost: Decimal = Decimal(0)
    """Dollars paid for the filled contracts (fees not included)."""


@dataclass
class Market:
    ticker: str
    event_ticker: str
    title: str
    structure: str
    grid: PriceGrid
    fee: FeeSchedule
    open_ts: float
    close_ts: float
    yes: dict[int, list[Maker]] = field(default_factory=dict)
    """YES bids at YES prices."""
    no: dict[int, list[Maker]] = field(default_factory=dict)
    """NO bids at NO prices."""
    status: str = "active"
    result: str = ""
    yes_band: tuple[int, int] = (4000, 4700)
    no_band: tuple[int, int] = (4200, 5100)
    volume: int = 0
    exchange_index: int = 0

    @property
    def series(self) -> str:
        return self.event_ticker.split("-", 1)[0]


@dataclass
class Group:
    group_id: str
    limit: int
    """Contracts (count units) matched within 15 s that trigger the group."""
    matched: list[tuple[float, int]] = field(default_factory=list)
    triggered: bool = False
    exchange_index: int = 0


class World:
    """The exchange state. ``seed`` fixes the background churn; ``cash`` in dollars."""

    def __init__(self, *, seed: int = 5, cash: Decimal = Decimal(10_000)) -> None:
        self.rng = random.Random(seed)
        self.markets: dict[str, Market] = {}
        self.exclusive_events: set[str] = set()
        """Event tickers whose event object says ``mutually_exclusive: true``."""
        self.orders: dict[str, UserOrder] = {}
        self.by_coid: dict[str, UserOrder] = {}
        self.accounts: dict[int, Account] = {0: Account(cash)}
        """Cash and positions per exchange shard (collateral is shard-local at Kalshi)."""
        self.fills: list[dict[str, Any]] = []
        self.trades: list[dict[str, Any]] = []
        self.groups: dict[str, Group] = {}
        self.listeners: list[Listener] = []
        self.exchange_active = True
        self.trading_active = True
        self._ids = itertools.count(1)
        self.creates = 0
        """Orders created (a retried create that landed twice would show here)."""
        self.post_only_cross = "reject"
        """What a crossing post-only create gets: ``"reject"`` (400 ``invalid_order`` /
        ``post only cross``, nothing created) or ``"cancel"`` (accepted, 201 with nothing
        filled or resting, the order ``canceled`` with ``last_update_reason``
        ``PostOnlyCrossCancel`` — changelog 2026-06-04)."""
        self.candles: dict[str, list[dict[str, Any]]] = {}
        """1-minute MarketCandlesticks per market, oldest first (:meth:`add_history`)."""

    @property
    def account(self) -> Account:
        """Shard 0's account (the only one before sharding)."""
        return self.accounts[0]

    def acct(self, m: Market) -> Account:
        """The account of ``m``'s shard (an unfunded shard has $0)."""
        return self.accounts.setdefault(m.exchange_index, Account(Decimal(0)))

    def fund(self, exchange_index: int, cash: Decimal) -> None:
        """Add ``cash`` dollars of collateral on shard ``exchange_index`` (an intra-account
        transfer, as far as the stand-in cares)."""
        a = self.accounts.setdefault(exchange_index, Account(Decimal(0)))
        a.cash += Decimal(cash)

    # -- setup ---------------------------------------------------------------------------------

    def add_market(
        self,
        ticker: str,
        *,
        structure: str = "linear_cent",
        title: str | None = None,
        close_in: float = 86_400.0,
        fee_type: str = "quadratic",
        yes_band: tuple[int, int] = (4000, 4700),
        no_band: tuple[int, int] = (4200, 5100),
        depth: int = 2_000,
        exchange_index: int = 0,
    ) -> Market:
        """A market with background bids on each step of ``yes_band`` / ``no_band`` (prices in
        units; the band tops are the touch: best bid ``yes_band[1]``, best ask
        ``1 − no_band[1]``), ``depth`` count units per level."""
        now = time.time()
        grid = PriceGrid.from_structure(structure)
        event = ticker.rsplit("-", 1)[0]
        m = Market(
            ticker,
            event,
            title or f"Stand-in market {ticker}",
            structure,
            grid,
            FeeSchedule(fee_type=fee_type),
            now - 3600,
            now + close_in,
            yes_band=yes_band,
            no_band=no_band,
            exchange_index=exchange_index,
        )
        for lo, hi, ladder in ((*yes_band, m.yes), (*no_band, m.no)):
            p = hi
            while p >= lo:
                ladder[p] = [Maker(depth)]
                p -= 100
        self.markets[ticker] = m
        return m

    def _emit(self, channel: str, ftype: str, ticker: str, msg: dict[str, Any]) -> None:
        for fn in list(self.listeners):
            fn(channel, ftype, ticker, msg)

    def _id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids):08d}"

    # -- renderings ----------------------------------------------------------------------------

    def market_json(self, m: Market) -> dict[str, Any]:
        bid = max(m.yes) if m.yes else 0
        ask = ONE_DOLLAR - max(m.no) if m.no else ONE_DOLLAR
        return {
            "ticker": m.ticker,
            "event_ticker": m.event_ticker,
            "market_type": "binary",
            "title": m.title,
            "yes_sub_title": m.title,
            "no_sub_title": m.title,
            "rules_primary": "Resolves YES if the stand-in says so.",
            "rules_secondary": "",
            "created_time": rfc3339(m.open_ts - 60),
            "updated_time": rfc3339(time.time()),
            "open_time": rfc3339(m.open_ts),
            "close_time": rfc3339(m.close_ts),
            "latest_expiration_time": rfc3339(m.close_ts + 3600),
            "settlement_timer_seconds": 60,
            "status": m.status,
            "notional_value_dollars": "1.0000",
            "yes_bid_dollars": format_price(bid),
            "yes_ask_dollars": format_price(ask),
            "no_bid_dollars": format_price(ONE_DOLLAR - ask),
            "no_ask_dollars": format_price(ONE_DOLLAR - bid),
            "last_price_dollars": "0.0000",
            "previous_yes_bid_dollars": "0.0000",
            "previous_yes_ask_dollars": "0.0000",
            "previous_price_dollars": "0.0000",
            "yes_bid_size_fp": format_qty(self._level(m.yes, bid)),
            "yes_ask_size_fp": format_qty(self._level(m.no, ONE_DOLLAR - ask)),
            "volume_fp": format_qty(m.volume),
            "volume_24h_fp": format_qty(m.volume),
            "open_interest_fp": "0.00",
            "result": m.result,
            "can_close_early": False,
            "expiration_value": "",
            "price_level_structure": m.structure,
            "price_ranges": m.grid.as_price_ranges(),
            "liquidity_dollars": "0.0000",
            "exchange_index": m.exchange_index,
        }

    @staticmethod
    def _level(ladder: dict[int, list[Maker]], price: int) -> int:
        return sum(mk.size for mk in ladder.get(price, ()))

    def book_levels(self, m: Market) -> tuple[list[list[str]], list[list[str]]]:
        """``(yes_dollars, no_dollars)``: ascending ``[price, count]`` string pairs."""
        out = []
        for ladder in (m.yes, m.no):
            out.append(
                [
                    [format_price(p), format_qty(self._level(ladder, p))]
                    for p in sorted(ladder)
                    if self._level(ladder, p) > 0
                ]
            )
        return out[0], out[1]

    def order_json(self, o: UserOrder) -> dict[str, Any]:
        yes = o.side is Side.BID
        return {
            "order_id": o.order_id,
            "user_id": "standin-user",
            "client_order_id": o.client_order_id,
            "ticker": o.ticker,
            "outcome_side": "yes" if yes else "no",
            "book_side": o.side.value,
            "side": "yes",
            "action": "buy" if yes else "sell",
            "type": "limit",
            "status": o.status,
            "yes_price_dollars": format_price(o.price),
            "no_price_dollars": format_price(ONE_DOLLAR - o.price),
            "fill_count_fp": format_qty(o.filled),
            "remaining_count_fp": format_qty(o.remaining),
            "initial_count_fp": format_qty(o.initial),
            "taker_fill_cost_dollars": str(o.taker_cost),
            "maker_fill_cost_dollars": str(o.maker_cost),
            "taker_fees_dollars": str(o.taker_fees),
            "maker_fees_dollars": str(o.maker_fees),
            "created_time": rfc3339(o.created),
            "last_update_time": rfc3339(o.updated),
            "self_trade_prevention_type": "taker_at_cross",
            "order_group_id": o.group,
            "cancel_order_on_pause": o.cancel_on_pause,
            "subaccount_number": 0,
            "exchange_index": self.markets[o.ticker].exchange_index,
            **({"last_update_reason": o.last_update_reason} if o.last_update_reason else {}),
        }

    def _user_order_msg(self, o: UserOrder) -> dict[str, Any]:
        j = self.order_json(o)
        return {
            **{k: j[k] for k in ("order_id", "user_id", "ticker", "status", "outcome_side")},
            "book_side": j["book_side"],
            "side": "yes",
            "is_yes": o.side is Side.BID,
            "yes_price_dollars": j["yes_price_dollars"],
            "fill_count_fp": j["fill_count_fp"],
            "remaining_count_fp": j["remaining_count_fp"],
            "initial_count_fp": j["initial_count_fp"],
            "taker_fill_cost_dollars": j["taker_fill_cost_dollars"],
            "maker_fill_cost_dollars": j["maker_fill_cost_dollars"],
            "taker_fees_dollars": j["taker_fees_dollars"],
            "maker_fees_dollars": j["maker_fees_dollars"],
            "client_order_id": o.client_order_id,
            "order_group_id": o.group,
            "self_trade_prevention_type": "taker_at_cross",
            "created_ts_ms": round(o.created * 1000),
            "last_updated_ts_ms": round(o.updated * 1000),
            "subaccount_number": 0,
        }

    # -- book changes --------------------------------------------------------------------------

    def _delta(self, m: Market, leg: str, price: int, delta: int, coid: str | None) -> None:
        ts = time.time()
        msg: dict[str, Any] = {
            "market_ticker": m.ticker,
            "market_id": f"id-{m.ticker}",
            "price_dollars": format_price(price),
            "delta_fp": format_qty(delta),
            "side": leg,
            "ts": rfc3339(ts),
            "ts_ms": round(ts * 1000),
        }
        if coid is not None:
            msg["client_order_id"] = coid
        self._emit("orderbook_delta", "orderbook_delta", m.ticker, msg)

    def _rest(self, m: Market, o: UserOrder) -> None:
        if o.side is Side.BID:
            leg, ladder, p = "yes", m.yes, o.price
        else:
            leg, ladder, p = "no", m.no, ONE_DOLLAR - o.price
        ladder.setdefault(p, []).append(Maker(o.remaining, o))
        self._delta(m, leg, p, o.remaining, o.client_order_id)

    def _unrest(self, m: Market, o: UserOrder, amount: int | None = None) -> int:
        """Take ``amount`` (all by default) of ``o`` off its level; returns what was removed."""
        if o.side is Side.BID:
            leg, ladder, p = "yes", m.yes, o.price
        else:
            leg, ladder, p = "no", m.no, ONE_DOLLAR - o.price
        queue = ladder.get(p, [])
        for i, mk in enumerate(queue):
            if mk.order is o:
                take = mk.size if amount is None else min(amount, mk.size)
                mk.size -= take
                if mk.size <= 0:
                    queue.pop(i)
                if not queue:
                    ladder.pop(p, None)
                if take:
                    self._delta(m, leg, p, -take, o.client_order_id)
                return take
        return 0

    def crosses(self, m: Market, side: Side, price: int) -> bool:
        if side is Side.BID:
            return bool(m.no) and ONE_DOLLAR - max(m.no) <= price
        return bool(m.yes) and max(m.yes) >= price

    # -- matching ------------------------------------------------------------------------------

    def _match(self, m: Market, taker: UserOrder | None, side: Side, price: int, count: int) -> int:
        """Trade an incoming order against the opposite ladder; return the count filled.

        ``taker`` None: a background taker. Our own resting order met by our own incoming order
        stops the match (``taker_at_cross``: the rest of the incoming order is cancelled).
        """
        if side is Side.BID:
            leg, ladder = "no", m.no
            prices = sorted((p for p in ladder if ONE_DOLLAR - p <= price), reverse=True)
        else:
            leg, ladder = "yes", m.yes
            prices = sorted((p for p in ladder if p >= price), reverse=True)
        filled = 0
        stopped = False
        for p in prices:
            queue = ladder[p]
            yes_price = ONE_DOLLAR - p if leg == "no" else p
            while queue and filled < count:
                mk = queue[0]
                if mk.order is not None and taker is not None:
                    stopped = True
                    break
                q = min(mk.size, count - filled)
                mk.size -= q
                filled += q
                if mk.size <= 0:
                    queue.pop(0)
                self._delta(m, leg, p, -q, mk.order.client_order_id if mk.order else None)
                self._trade(m, side, yes_price, q, taker, mk.order)
            if not queue:
                ladder.pop(p, None)
            if stopped or filled >= count:
                break
        if stopped and taker is not None:
            taker.status = "canceled"
        return filled

    def _trade(
        self,
        m: Market,
        taker_side: Side,
        yes_price: int,
        q: int,
        taker: UserOrder | None,
        maker: UserOrder | None,
    ) -> None:
        ts = time.time()
        tid = self._id("trade")
        m.volume += q
        trade = {
            "trade_id": tid,
            "ticker": m.ticker,
            "market_ticker": m.ticker,
            "count_fp": format_qty(q),
            "yes_price_dollars": format_price(yes_price),
            "no_price_dollars": format_price(ONE_DOLLAR - yes_price),
            "taker_outcome_side": "yes" if taker_side is Side.BID else "no",
            "taker_book_side": taker_side.value,
            "taker_side": "yes" if taker_side is Side.BID else "no",
            "created_time": rfc3339(ts),
            "is_block_trade": False,
            "ts": int(ts),
            "ts_ms": round(ts * 1000),
        }
        self.trades.append(trade)
        self._emit("trade", "trade", m.ticker, {k: v for k, v in trade.items() if k != "ticker"})
        for o, is_taker in ((taker, True), (maker, False)):
            if o is not None:
                self._fill(m, o, yes_price, q, is_taker, tid, ts)

    def _fill(
        self, m: Market, o: UserOrder, price: int, q: int, is_taker: bool, tid: str, ts: float
    ) -> None:
        f = self.acct(m).fill(
            ticker=m.ticker,
            order_id=o.order_id,
            client_order_id=o.client_order_id,
            side=o.side,
            price=price,
            count=q,
            is_taker=is_taker,
            fee_schedule=m.fee,
            ts=round(ts * 1000) / 1000,
        )
        o.filled += q
        o.fill_cost += Decimal(price * q) / Decimal(ONE_DOLLAR * 100)
        if not is_taker:
            o.remaining -= q
            if o.remaining <= 0:
                o.status = "executed"
        cost = f.fee
        if is_taker:
            o.taker_fees += cost
        else:
            o.maker_fees += cost
        ts_ms = round(ts * 1000)
        rest_fill = {
            "fill_id": tid,
            "trade_id": tid,
            "order_id": o.order_id,
            "ticker": m.ticker,
            "market_ticker": m.ticker,
            "exchange_index": m.exchange_index,
            "outcome_side": "yes" if o.side is Side.BID else "no",
            "book_side": o.side.value,
            "side": "yes",
            "action": "buy" if o.side is Side.BID else "sell",
            "count_fp": format_qty(q),
            "yes_price_dollars": format_price(price),
            "no_price_dollars": format_price(ONE_DOLLAR - price),
            "is_taker": is_taker,
            "fee_cost": str(f.fee),
            "created_time": rfc3339(ts_ms / 1000),
            "ts": ts_ms // 1000,
            "subaccount_number": 0,
        }
        self.fills.append(rest_fill)
        ws = {
            "trade_id": tid,
            "order_id": o.order_id,
            "market_ticker": m.ticker,
            "exchange_index": m.exchange_index,
            "is_taker": is_taker,
            "side": "yes",
            "action": rest_fill["action"],
            "yes_price_dollars": format_price(price),
            "count_fp": format_qty(q),
            "fee_cost": str(f.fee),
            "outcome_side": rest_fill["outcome_side"],
            "book_side": o.side.value,
            "ts": ts_ms // 1000,
            "ts_ms": ts_ms,
            "post_position_fp": format_qty(f.post_position),
            "purchased_side": rest_fill["outcome_side"],
            "client_order_id": o.client_order_id,
        }
        self._emit("fill", "fill", m.ticker, ws)
        if o.group is not None:
            self._group_matched(o.group, q, ts)
        if not is_taker:
            o.updated = ts
            self._emit("user_orders", "user_order", m.ticker, self._user_order_msg(o))

    def _group_matched(self, gid: str, q: int, ts: float) -> None:
        g = self.groups.get(gid)
        if g is None or g.triggered:
            return
        g.matched = [(t, n) for t, n in g.matched if t > ts - 15.0] + [(ts, q)]
        if sum(n for _, n in g.matched) > g.limit:
            g.triggered = True
            for o in list(self.orders.values()):
                if o.group == gid and o.status == "resting":
                    self._cancel(o)

    # -- order API -----------------------------------------------------------------------------

    def shard_for(self, exchange_index: Any, ticker: Any) -> int:
        """The shard a write goes to (Exchange Sharding, "Order routing → REST"): an explicit
        index ``>= 0``; else (omitted or ``-1``) the shard of ``ticker``; else 0."""
        if exchange_index is not None and exchange_index != "":
            try:
                idx = int(exchange_index)
            except (TypeError, ValueError):
                raise ApiError(
                    400, "invalid_parameters", f"bad exchange_index {exchange_index!r}"
                ) from None
            if idx >= 0:
                return idx
            if idx != -1:
                raise ApiError(400, "invalid_parameters", f"bad exchange_index {idx}")
            if not ticker:
                raise ApiError(400, "invalid_parameters", "exchange_index -1 needs a ticker")
        if ticker:
            return self._market(str(ticker)).exchange_index
        return 0

    def _market(self, ticker: str) -> Market:
        m = self.markets.get(ticker)
        if m is None:
            raise ApiError(404, "market_not_found", f"market {ticker} not found")
        return m

    def _check_trading(self, m: Market) -> None:
        if not self.exchange_active:
            raise ApiError(503, "exchange_paused", "exchange is paused")
        if not self.trading_active:
            raise ApiError(400, "trading_paused", "trading is paused")
        if m.status != "active":
            raise ApiError(400, "market_inactive", f"market {m.ticker} is not active")

    def _price(self, m: Market, raw: Any) -> int:
        try:
            p = parse_price(str(raw), "price")
        except Exception:
            raise ApiError(400, "invalid_price", f"invalid price {raw!r}") from None
        if not (0 < p < ONE_DOLLAR) or not m.grid.is_valid(p):
            raise ApiError(400, "invalid_price", f"price {raw} is not on the market's grid")
        return p

    @staticmethod
    def _count(raw: Any) -> int:
        try:
            q = parse_qty(str(raw), "count")
        except Exception:
            raise ApiError(400, "invalid_order_size", f"invalid count {raw!r}") from None
        if q <= 0:
            raise ApiError(400, "invalid_order_size", "count must be positive")
        return q

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /portfolio/events/orders`` → the 201 body."""
        for key in ("ticker", "side", "count", "price", "time_in_force"):
            if key not in body:
                raise ApiError(400, "invalid_parameters", f"missing {key}")
        coid = body.get("client_order_id") or ""
        same = self.by_coid.get(coid) if coid else None
        if same is not None and same.status == "resting":
            # unique among open orders only (FIX ClOrdID "must not match any open order"): the
            # id of a filled or cancelled order may be used again
            raise ApiError(409, "order_already_exists", "an open order has this client_order_id")
        shard = self.shard_for(body.get("exchange_index"), body["ticker"])
        m = self._market(body["ticker"])
        if m.exchange_index != shard:
            raise ApiError(404, "market_not_found", f"market {m.ticker} not found")
        self._check_trading(m)
        side = Side(body["side"]) if body["side"] in ("bid", "ask") else None
        if side is None:
            raise ApiError(400, "invalid_parameters", f"bad side {body['side']!r}")
        price = self._price(m, body["price"])
        count = self._count(body["count"])
        group = body.get("order_group_id")
        if group is not None:
            g = self.groups.get(group)
            if g is None or g.exchange_index != shard:
                raise ApiError(404, "order_group_not_found", "no such order group")
            if g.triggered:
                raise ApiError(400, "order_group_triggered", "order group limit was hit")
        post_only = bool(body.get("post_only"))
        cross_cancel = post_only and self.crosses(m, side, price)
        if cross_cancel and self.post_only_cross != "cancel":
            raise ApiError(400, "invalid_order", "invalid order", "post only cross")
        account = self.acct(m)
        if body.get("reduce_only"):
            pos = account.position(m.ticker)
            allowed = max(-pos, 0) if side is Side.BID else max(pos, 0)
            if allowed <= 0:
                raise ApiError(400, "invalid_order", "invalid order", "reduce only")
            count = min(count, allowed)
        need = account.opening_cost(m.ticker, side, price, count)
        if need > account.cash:
            raise ApiError(400, "available_balance_too_low", "insufficient balance")
        now = time.time()
        o = UserOrder(
            self._id("order"),
            coid or self._id("coid"),
            m.ticker,
            side,
            price,
            count,
            count,
            post_only=post_only,
            cancel_on_pause=bool(body.get("cancel_order_on_pause")),
            group=group,
            created=now,
            updated=now,
        )
        self.orders[o.order_id] = o
        self.by_coid[o.client_order_id] = o
        self.creates += 1
        if cross_cancel:  # accepted, then cancelled by the engine before it could take
            o.remaining = 0
            o.status = "canceled"
            o.last_update_reason = "PostOnlyCrossCancel"
            self._emit("user_orders", "user_order", m.ticker, self._user_order_msg(o))
            return {
                "order_id": o.order_id,
                "client_order_id": o.client_order_id,
                "fill_count": "0.00",
                "remaining_count": "0.00",
                "ts_ms": round(now * 1000),
            }
        filled = self._match(m, o, side, price, count)
        o.remaining = count - filled
        tif = body["time_in_force"]
        if o.status == "canceled" or tif in ("immediate_or_cancel", "fill_or_kill"):
            o.status = "canceled" if o.remaining else "executed"
            o.remaining = 0
        elif o.remaining > 0:
            self._rest(m, o)
        else:
            o.status = "executed"
        self._emit("user_orders", "user_order", m.ticker, self._user_order_msg(o))
        return {
            "order_id": o.order_id,
            "client_order_id": o.client_order_id,
            "fill_count": format_qty(o.filled),
            "remaining_count": format_qty(o.remaining),
            "ts_ms": round(now * 1000),
        }

    def _order(self, order_id: str, shard: int, *, resting: bool = True) -> UserOrder:
        """Order ``order_id`` as the engine of ``shard`` sees it: 404 if it is another
        shard's."""
        o = self.orders.get(order_id)
        if o is None or (resting and o.status != "resting"):
            raise ApiError(404, "not_found", f"order {order_id} not found")
        if self.markets[o.ticker].exchange_index != shard:
            raise ApiError(404, "not_found", f"order {order_id} not found")
        return o

    def _cancel(self, o: UserOrder) -> int:
        m = self.markets[o.ticker]
        removed = self._unrest(m, o)
        o.remaining = 0
        o.status = "canceled"
        o.updated = time.time()
        self._emit("user_orders", "user_order", m.ticker, self._user_order_msg(o))
        return removed

    def cancel(self, order_id: str, route: dict[str, Any] | None = None) -> dict[str, Any]:
        """Cancel; ``route``: the request's ``exchange_index``/``market_ticker``."""
        r = route or {}
        o = self._order(order_id, self.shard_for(r.get("exchange_index"), r.get("market_ticker")))
        if not self.exchange_active:
            raise ApiError(503, "exchange_paused", "exchange is paused")
        reduced = self._cancel(o)
        return {
            "order_id": o.order_id,
            "client_order_id": o.client_order_id,
            "reduced_by": format_qty(reduced),
            "ts_ms": round(time.time() * 1000),
        }

    def amend(self, order_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST …/{order_id}/amend`` (Amend Order V2) → its 200 body.

        ``count`` is the new total (filled + resting). V2 amend has no post-only: an amend
        priced through the opposite best trades as taker (taker fees) like a new order, even
        for a post-only order. The answer's ``fill_count`` is what this amend filled and
        ``remaining_count`` the resting count after it, both null unless the amend filled
        something or changed the resting size; ``average_fill_price``/``average_fee_paid``
        only with fills."""
        if not body.get("ticker"):
            raise ApiError(400, "invalid_parameters", "missing ticker")
        o = self._order(order_id, self.shard_for(body.get("exchange_index"), body["ticker"]))
        m = self.markets[o.ticker]
        self._check_trading(m)
        if body.get("ticker") != o.ticker or body.get("side") != o.side.value:
            raise ApiError(400, "order_side_mismatch", "ticker/side do not match the order")
        coid = body.get("client_order_id")
        if coid and coid != o.client_order_id:
            raise ApiError(
                400, "order_id_and_client_order_id_mismatch", "client_order_id is not the order's"
            )
        price = self._price(m, body.get("price"))
        total = self._count(body.get("count"))
        if total <= o.filled:
            raise ApiError(400, "invalid_order_size", "count must exceed the filled count")
        new_remaining = total - o.filled
        before_remaining, before_filled = o.remaining, o.filled
        before_cost = o.fill_cost
        before_fees = o.taker_fees
        if price == o.price and new_remaining <= o.remaining:
            if new_remaining < o.remaining:
                self._unrest(m, o, o.remaining - new_remaining)
                o.remaining = new_remaining
        else:
            self._unrest(m, o)
            o.price = price
            filled = self._match(m, o, o.side, price, new_remaining)
            o.remaining = new_remaining - filled
            if o.status == "canceled":
                o.remaining = 0
            elif o.remaining > 0:
                self._rest(m, o)
            else:
                o.status = "executed"
        o.initial = total
        o.updated = time.time()
        if updated := body.get("updated_client_order_id"):
            self.by_coid[updated] = o
            o.client_order_id = str(updated)
        self._emit("user_orders", "user_order", m.ticker, self._user_order_msg(o))
        crossed = o.filled - before_filled
        changed = crossed > 0 or o.remaining != before_remaining
        out: dict[str, Any] = {
            "order_id": o.order_id,
            "client_order_id": o.client_order_id,
            "remaining_count": format_qty(o.remaining) if changed else None,
            "fill_count": format_qty(crossed) if changed else None,
            "average_fill_price": None,
            "average_fee_paid": None,
            "ts_ms": round(o.updated * 1000),
        }
        if crossed:
            n = Decimal(crossed) / 100
            avg = (o.fill_cost - before_cost) / n
            out["average_fill_price"] = f"{avg:.4f}"
            out["average_fee_paid"] = f"{(o.taker_fees - before_fees) / n:.6f}"
        return out

    def decrease(self, order_id: str, body: dict[str, Any]) -> dict[str, Any]:
        shard = self.shard_for(body.get("exchange_index"), body.get("market_ticker"))
        o = self._order(order_id, shard)
        m = self.markets[o.ticker]
        if body.get("reduce_to") is not None:
            target = parse_qty(str(body["reduce_to"]))
        elif body.get("reduce_by") is not None:
            target = o.remaining - parse_qty(str(body["reduce_by"]))
        else:
            raise ApiError(400, "invalid_parameters", "reduce_by or reduce_to required")
        target = max(target, 0)
        if target < o.remaining:
            self._unrest(m, o, o.remaining - target)
            o.remaining = target
            if target == 0:
                o.status = "canceled"
        o.updated = time.time()
        self._emit("user_orders", "user_order", m.ticker, self._user_order_msg(o))
        return {
            "order_id": o.order_id,
            "client_order_id": o.client_order_id,
            "remaining_count": format_qty(o.remaining),
            "ts_ms": round(o.updated * 1000),
        }

    def batch_create(self, orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for body in orders:
            try:
                out.append(self.create(body))
            except ApiError as exc:
                out.append(
                    {"client_order_id": body.get("client_order_id"), "error": exc.body["error"]}
                )
        return out

    def batch_cancel(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for item in items:
            try:
                out.append(self.cancel(str(item.get("order_id")), item))
            except ApiError as exc:
                out.append(
                    {
                        "order_id": item.get("order_id"),
                        "reduced_by": "0.00",
                        "ts_ms": None,
                        "error": exc.body["error"],
                    }
                )
        return out

    # -- portfolio reads -----------------------------------------------------------------------

    def positions_json(self) -> list[dict[str, Any]]:
        out = []
        for idx, account in sorted(self.accounts.items()):
            out += self._positions_of(idx, account)
        return out

    @staticmethod
    def _positions_of(idx: int, account: Account) -> list[dict[str, Any]]:
        out = []
        for ticker, p in account.positions.items():
            out.append(
                {
                    "ticker": ticker,
                    "exchange_index": idx,
                    "total_traded_dollars": "0.0000",
                    "position_fp": format_qty(p.position),
                    "market_exposure_dollars": str(abs(p.basis)),
                    "realized_pnl_dollars": str(p.realized),
                    "fees_paid_dollars": str(p.fees),
                    "last_updated_ts": rfc3339(time.time()),
                }
            )
        return out

    def balance_json(self, exchange_index: Any = None) -> dict[str, Any]:
        """Get Balance: totals over every shard, or scoped to ``exchange_index``; always with
        the per-shard ``balance_breakdown`` (dollar strings)."""
        if exchange_index is None or exchange_index == "":
            cash = sum((a.cash for a in self.accounts.values()), Decimal(0))
        else:
            a = self.accounts.get(self.shard_for(exchange_index, None))
            cash = a.cash if a is not None else Decimal(0)
        return {
            "balance": int(cash * 100),
            "balance_dollars": str(cash),
            "portfolio_value": int(cash * 100),
            "updated_ts": int(time.time()),
            "balance_breakdown": [
                {"exchange_index": k, "balance": str(a.cash)}
                for k, a in sorted(self.accounts.items())
            ],
        }

    # -- order groups --------------------------------------------------------------------------

    def create_group(self, body: dict[str, Any]) -> dict[str, Any]:
        limit = body.get("contracts_limit")
        if limit is None and body.get("contracts_limit_fp") is not None:
            limit = int(Decimal(str(body["contracts_limit_fp"])))
        if not isinstance(limit, int) or limit < 1:
            raise ApiError(400, "invalid_parameters", "contracts_limit must be >= 1")
        shard = self.shard_for(body.get("exchange_index", 0), None)
        gid = self._id("group")
        self.groups[gid] = Group(gid, limit * 100, exchange_index=shard)
        return {"order_group_id": gid}

    def _group(self, gid: str, exchange_index: Any) -> Group:
        """Group ``gid`` on the shard named (default 0, as Kalshi's query parameter)."""
        g = self.groups.get(gid)
        shard = self.shard_for(exchange_index if exchange_index not in (None, "") else 0, None)
        if g is None or g.exchange_index != shard:
            raise ApiError(404, "not_found", "no such order group")
        return g

    def reset_group(self, gid: str, exchange_index: Any = None) -> dict[str, Any]:
        g = self._group(gid, exchange_index)
        g.triggered = False
        g.matched.clear()
        return {}

    def delete_group(self, gid: str, exchange_index: Any = None) -> dict[str, Any]:
        self._group(gid, exchange_index)
        for o in list(self.orders.values()):
            if o.group == gid and o.status == "resting":
                self._cancel(o)
        del self.groups[gid]
        return {}

    # -- test hooks ----------------------------------------------------------------------------

    def taker(self, ticker: str, side: Side, price: int, count: int) -> int:
        """A background taker trades against the book (our resting orders included)."""
        m = self._market(ticker)
        return self._match(m, None, side, price, count)

    def pause(self, *, exchange: bool = False) -> None:
        """Pause trading (or the whole exchange); orders with ``cancel_order_on_pause`` go."""
        self.trading_active = False
        if exchange:
            self.exchange_active = False
        for o in list(self.orders.values()):
            if o.status == "resting" and o.cancel_on_pause:
                self._cancel(o)

    def resume(self) -> None:
        self.trading_active = True
        self.exchange_active = True

    def _lifecycle(self, ticker: str, event_type: str, **fields: Any) -> None:
        msg = {"market_ticker": ticker, "event_type": event_type, **fields}
        self._emit("market_lifecycle_v2", "market_lifecycle_v2", ticker, msg)

    def deactivate(self, ticker: str) -> None:
        """The exchange pauses one market (status ``inactive``; lifecycle ``deactivated``).
        Orders are refused (``market_inactive``); resting ones stay until reactivation."""
        m = self._market(ticker)
        m.status = "inactive"
        self._lifecycle(ticker, "deactivated", is_deactivated=True)

    def activate(self, ticker: str) -> None:
        """The exchange reactivates a paused market: as Kalshi documents
        (getting_started/market_lifecycle), every resting order is cancelled — ours (with
        their order updates) and the background's — then the background book refills."""
        m = self._market(ticker)
        for o in list(self.orders.values()):
            if o.ticker == ticker and o.status == "resting":
                self._cancel(o)
        for leg, ladder in (("yes", m.yes), ("no", m.no)):
            for p in sorted(ladder):
                size = sum(mk.size for mk in ladder[p])
                if size:
                    self._delta(m, leg, p, -size, None)
            ladder.clear()
        for (lo, hi), leg, ladder in ((m.yes_band, "yes", m.yes), (m.no_band, "no", m.no)):
            p = hi
            while p >= lo:
                ladder[p] = [Maker(2_000)]
                self._delta(m, leg, p, 2_000, None)
                p -= 100
        m.status = "active"
        self._lifecycle(ticker, "activated", is_deactivated=False)

    def pull(self, ticker: str, leg: str, price: int) -> int:
        """The background makers at ``price`` of the ``leg`` ladder cancel (cancels are taken
        during pauses too); returns the count removed."""
        m = self._market(ticker)
        ladder = m.yes if leg == "yes" else m.no
        queue = ladder.get(price, [])
        size = sum(mk.size for mk in queue if mk.order is None)
        queue[:] = [mk for mk in queue if mk.order is not None]
        if not queue:
            ladder.pop(price, None)
        if size:
            self._delta(m, leg, price, -size, None)
        return size

    def set_grid(self, ticker: str, structure: str) -> None:
        """Move a market to another ``price_level_structure`` (lifecycle
        ``price_level_structure_updated`` with the new ``price_ranges``; resting orders stay)."""
        m = self._market(ticker)
        m.structure = structure
        m.grid = PriceGrid.from_structure(structure)
        self._lifecycle(
            ticker,
            "price_level_structure_updated",
            price_level_structure=structure,
            price_ranges=m.grid.as_price_ranges(),
        )

    def settle(self, ticker: str, result: str) -> None:
        """Determine and settle a market: cancel its orders, pay out, announce lifecycle."""
        m = self._market(ticker)
        for o in list(self.orders.values()):
            if o.ticker == ticker and o.status == "resting":
                self._cancel(o)
        m.status = "finalized"
        m.result = result
        self.acct(m).settle(ticker, result == "yes")
        now = time.time()
        for event_type in ("determined", "settled"):
            self._emit(
                "market_lifecycle_v2",
                "market_lifecycle_v2",
                ticker,
                {
                    "market_ticker": ticker,
                    "event_type": event_type,
                    "result": result,
                    "determination_ts": int(now),
                    "settled_ts": int(now),
                },
            )

    def churn(self) -> None:
        """One background refresh: add or remove background size at a level inside a band.

        Bands never cross and the band tops (the touch) keep at least 5 contracts, so the book
        always has two sides and depth for a one-contract trade.
        """
        m = self.rng.choice(list(self.markets.values()))
        if m.status != "active":
            return
        leg = self.rng.choice(("yes", "no"))
        ladder, (lo, hi) = (m.yes, m.yes_band) if leg == "yes" else (m.no, m.no_band)
        p = lo + 100 * self.rng.randrange((hi - lo) // 100 + 1)
        queue = ladder.setdefault(p, [])
        bg = [mk for mk in queue if mk.order is None]
        total = sum(mk.size for mk in bg)
        floor = 500 if p == hi else 0
        if self.rng.random() < 0.5 and total - 100 >= floor and bg:
            q = min(bg[-1].size, 100 * self.rng.randint(1, 5), total - floor)
            bg[-1].size -= q
            if bg[-1].size <= 0:
                queue.remove(bg[-1])
            if not queue:
                ladder.pop(p, None)
            if q:
                self._delta(m, leg, p, -q, None)
        else:
            q = 100 * self.rng.randint(1, 5)
            queue.append(Maker(q))
            self._delta(m, leg, p, q, None)

    # -- history (candlesticks and past trades, for warm starts) --------------------------------

    def add_history(
        self,
        ticker: str,
        *,
        minutes: int = 120,
        sigma: float = 0.004,
        trades_per_min: float = 6.0,
        k: float = 60.0,
        seed: int = 1,
        end: float | None = None,
    ) -> None:
        """Give ``ticker`` a past: ``minutes`` of 1-minute candlesticks and public trades that
        end at ``end`` (default now) on the market's current mid.

        The logit of the mid is a random walk with ``sigma`` per √second, sampled every second
        and pinned to the current mid at the end; the book around it is a two-cent spread on
        the cent grid (so the closing mid bounces by up to half a cent). Trades arrive at
        ``trades_per_min`` (Poisson) at a depth from the mid drawn from an exponential law of
        rate ``k`` per dollar, rounded to the cent: ``λ(δ) ∝ e^(−kδ)`` as the intensity fit
        assumes. Candles follow get-market-candlesticks exactly (``end_period_ts``,
        ``yes_bid``/``yes_ask``/``price`` OHLC dollar strings, ``volume_fp``,
        ``open_interest_fp``); trades follow get-trades.
        """
        m = self._market(ticker)
        rng = random.Random(seed)
        now = time.time() if end is None else end
        last_end = int(now) // 60 * 60
        first = last_end - 60 * minutes
        bid0 = max(m.yes) if m.yes else 4700
        ask0 = ONE_DOLLAR - max(m.no) if m.no else 4900
        mid_end = (bid0 + ask0) / (2 * ONE_DOLLAR)
        n = last_end - first
        steps = [rng.gauss(0.0, sigma) for _ in range(n)]
        x = [0.0] * (n + 1)
        for i in range(n - 1, -1, -1):  # walk back from the current mid
            x[i] = x[i + 1] - steps[i]
        x0 = math.log(mid_end / (1 - mid_end))
        mids = [1 / (1 + math.exp(-(x0 + v))) for v in x]

        def book(mid: float) -> tuple[int, int]:
            bid = max(100, min(9700, int((mid - 0.01) * 100) * 100))
            return bid, bid + 200

        trades: list[dict[str, Any]] = []
        t = float(first)
        rate = trades_per_min / 60.0
        while True:
            t += rng.expovariate(rate)
            if t >= last_end:
                break
            mid = mids[int(t) - first]
            side = Side.BID if rng.random() < 0.5 else Side.ASK
            depth = rng.expovariate(k)
            raw = mid + depth if side is Side.BID else mid - depth
            price = max(100, min(9900, round(raw * 100) * 100))
            q = 100 * rng.randint(1, 10)
            trades.append(self._trade_json(m, side, price, q, t))
        candles: list[dict[str, Any]] = []
        prev: str | None = None
        oi = 0
        ti = 0
        for c in range(minutes):
            lo, hi = first + 60 * c, first + 60 * (c + 1)
            books = [book(mids[i - first]) for i in range(lo, hi + 1)]
            bids = [b for b, _ in books]
            asks = [a for _, a in books]
            inside: list[dict[str, Any]] = []
            while ti < len(trades) and trades[ti]["ts_ms"] <= hi * 1000:
                inside.append(trades[ti])
                ti += 1
            vol = sum(parse_qty(tr["count_fp"]) for tr in inside)
            oi += vol // 2
            prices = [parse_price(tr["yes_price_dollars"]) for tr in inside]
            candle: dict[str, Any] = {
                "end_period_ts": hi,
                "yes_bid": _ohlc(bids),
                "yes_ask": _ohlc(asks),
                "price": {
                    **(
                        {**_ohlc(prices), "mean_dollars": format_price(sum(prices) // len(prices))}
                        if prices
                        else dict.fromkeys(
                            (
                                "open_dollars",
                                "low_dollars",
                                "high_dollars",
                                "close_dollars",
                                "mean_dollars",
                            )
                        )
                    ),
                    "previous_dollars": prev,
                },
                "volume_fp": format_qty(vol),
                "open_interest_fp": format_qty(oi),
            }
            if prices:
                prev = format_price(prices[-1])
            candles.append(candle)
        self.candles[ticker] = candles
        self.trades[:0] = trades  # the past comes before anything traded live
        m.volume += sum(parse_qty(tr["count_fp"]) for tr in trades)

    def _trade_json(
        self, m: Market, taker_side: Side, yes_price: int, q: int, ts: float
    ) -> dict[str, Any]:
        """A public trade as the world keeps it (get-trades fields plus the WebSocket's)."""
        return {
            "trade_id": self._id("trade"),
            "ticker": m.ticker,
            "market_ticker": m.ticker,
            "count_fp": format_qty(q),
            "yes_price_dollars": format_price(yes_price),
            "no_price_dollars": format_price(ONE_DOLLAR - yes_price),
            "taker_outcome_side": "yes" if taker_side is Side.BID else "no",
            "taker_book_side": taker_side.value,
            "taker_side": "yes" if taker_side is Side.BID else "no",
            "created_time": rfc3339(ts),
            "is_block_trade": False,
            "ts": int(ts),
            "ts_ms": round(ts * 1000),
        }

    def candlesticks(
        self, ticker: str, start_ts: int, end_ts: int, period_interval: int
    ) -> list[dict[str, Any]]:
        """Candles of ``period_interval`` minutes ending in ``[start_ts, end_ts]`` (1-minute
        candles merged for 60 and 1440)."""
        ones = self.candles.get(ticker, [])
        if period_interval == 1:
            return [c for c in ones if start_ts <= c["end_period_ts"] <= end_ts]
        span = 60 * period_interval
        groups: dict[int, list[dict[str, Any]]] = {}
        for c in ones:
            groups.setdefault(-(-c["end_period_ts"] // span) * span, []).append(c)
        out = []
        for end, cs in sorted(groups.items()):
            if not start_ts <= end <= end_ts:
                continue
            out.append(
                {
                    "end_period_ts": end,
                    "yes_bid": _merge([c["yes_bid"] for c in cs]),
                    "yes_ask": _merge([c["yes_ask"] for c in cs]),
                    "price": {
                        **_merge([c["price"] for c in cs if c["price"]["close_dollars"]]),
                        "previous_dollars": cs[0]["price"]["previous_dollars"],
                    },
                    "volume_fp": format_qty(sum(parse_qty(c["volume_fp"]) for c in cs)),
                    "open_interest_fp": cs[-1]["open_interest_fp"],
                }
            )
        return out


def _ohlc(values: list[int]) -> dict[str, str]:
    return {
        "open_dollars": format_price(values[0]),
        "low_dollars": format_price(min(values)),
        "high_dollars": format_price(max(values)),
        "close_dollars": format_price(values[-1]),
    }


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """OHLC of consecutive OHLC objects (all-null when there are none)."""
    keys = ("open_dollars", "low_dollars", "high_dollars", "close_dollars")
    if not parts:
        return dict.fromkeys(keys)
    return {
        "open_dollars": parts[0]["open_dollars"],
        "low_dollars": min(parts, key=lambda p: parse_price(p["low_dollars"]))["low_dollars"],
        "high_dollars": max(parts, key=lambda p: parse_price(p["high_dollars"]))["high_dollars"],
        "close_dollars": parts[-1]["close_dollars"],
    }
