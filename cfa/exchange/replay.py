"""Replay a recorded run from its audit store, as an :class:`~cfa.exchange.base.Exchange`.

The stream yields every event the run's loops consumed (``market_events`` batches), merged
across markets by time, with the clock at each event's time. Decisions that changed the quoting
inputs are *controls* replayed at the moment they took effect: parameter changes by agents,
governance and override expiry (not warm-up: the loop recomputes it, from the history the run's
warm start recorded when it made one), and trading-state changes
made by people or agents (automatic ones — breakers, taper — the replayed risk gate recomputes).
A control with time ``t`` for a market is applied after that market's events at ``t``.

Orders never reach a venue: each call is answered as the venue answered the recorded run's
call at that point in that market — the same order id for a placement (so the recorded fills
find their orders), the same failure where the venue refused (a reject, a failed cancel).
Comparing the orders the replay asks for with the recorded ones is the replay runner's job
(:mod:`cfa.runtime.replay`).

A recorded :class:`~cfa.core.types.MarketStatus` is replayed as an event like the others, so
the replayed loop pauses and resumes where the recorded one did; one that reactivated a market
(reason ``activated``: Kalshi cancels every resting order then) also empties the replay's
resting orders of that market, so the loop's ``get_orders`` confirms what the venue did.
"""

from __future__ import annotations

import heapq
import os
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfa.audit.queries import AuditReader
from cfa.audit.records import MarketEvent, decode_event
from cfa.core.types import (
    BookSnapshot,
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
    Trade,
)
from cfa.exchange.base import Clock, Event, ExchangeError, MarketNotFound, OrderNotFound
from cfa.exchange.clock import EventClock
from cfa.exchange.emulator.account import Account
from cfa.exchange.history import MarketHistory, history_from_dict

AUTOMATIC_SOURCES = ("warmup", "calibration", "breaker:", "close_taper", "feed_watchdog")
EXCHANGE_CALLS = ("place", "amend", "cancel", "reject", "cancel_failed")
"""``orders`` actions that were answers of the venue to one of our calls, in call order."""


@dataclass(frozen=True, slots=True)
class Control:
    """A recorded change replayed at time ``ts``: a parameter (``kind="param"``) or a state."""

    ts: float
    market: str
    kind: str
    name: str
    value: Any
    source: str
    reason: str


def _as_answered(o: Order, row: dict[str, Any] | None) -> Order:
    """``o`` as the venue described it in the recorded answer (remaining count and status).

    The venue may know of fills the stream has not delivered yet; echoing its recorded answer
    keeps the replayed loop's view identical to the original's.
    """
    if row is None or row.get("count") is None or row.get("status") is None:
        return o
    remaining = int(row["count"])
    price = row.get("price")
    return replace(
        o,
        price=int(price) if isinstance(price, int) else o.price,
        remaining_count=remaining,
        fill_count=o.initial_count - remaining,
        status=OrderStatus(row["status"]),
    )


def _automatic(source: str) -> bool:
    return any(source.startswith(s) for s in AUTOMATIC_SOURCES)


class AuditReplayExchange:
    """The recorded run ``run_id`` of the audit store at ``db``, replayed offline."""

    def __init__(self, db: str | Path, run_id: str, markets: Sequence[MarketInfo]) -> None:
        self._clock = EventClock()
        self.clock: Clock = self._clock
        """The time of the recorded event (or control) being replayed; before the stream, of
        the first one."""
        self.db = os.fspath(db)  # a SQLite path or a PostgreSQL URL
        self.run_id = run_id
        self._markets = {m.ticker: m for m in markets}
        self.on_control: Callable[[Control], None] | None = None
        self._timeline: list[tuple[float, int, int, MarketEvent | Control]] = []
        self._calls: dict[str, deque[dict[str, Any]]] = defaultdict(deque)
        self._resting: dict[str, Order] = {}
        self._placed: set[str] = set()
        """Ids of every order placed during the replay."""
        self._account = Account(Decimal(0))
        """The recorded fills streamed so far, booked (their recorded fees)."""
        self._next = 0
        self._warm: dict[str, dict[str, Any]] = {}
        """The recorded ``warm_start`` detail per market (:meth:`get_history`)."""
        self._load()
        if self._timeline:  # before the stream, the clock reads the recorded run's first event
            self._clock.t = self._timeline[0][0]

    def _load(self) -> None:
        """Per market, events and controls in recorded (seq) order; markets merged by time.

        A control row is written right after its market's batch of events is closed, so the
        per-market seq order places it after exactly the events that preceded it.
        """
        per_market: dict[str, list[tuple[float, MarketEvent | Control]]] = defaultdict(list)
        with AuditReader.open(self.db) as reader:
            tables = ("market_events", "param_changes", "risk_events", "orders")
            for table, row in reader.timeline(tables, run_id=self.run_id):
                market = row["market"]
                if table == "market_events":
                    for item in row["payload"]["events"]:
                        ev = decode_event(market, item)
                        per_market[market].append((ev.ts, ev))
                elif table == "param_changes" and not _automatic(row["source"]):
                    ts = float((row.get("payload") or {}).get("ts", row["ts_ms"] / 1000))
                    per_market[market].append(
                        (
                            ts,
                            Control(
                                ts,
                                market,
                                "param",
                                row["param"],
                                row["new"],
                                row["source"],
                                row["reason"] or "",
                            ),
                        )
                    )
                elif table == "risk_events" and row["kind"] == "trading_state":
                    detail = row.get("detail") or {}
                    source = str(detail.get("source", ""))
                    if not _automatic(source):
                        ts = float(detail.get("ts", row["ts_ms"] / 1000))
                        c = Control(
                            ts,
                            market,
                            "state",
                            "state",
                            row["state"],
                            source,
                            str(detail.get("reason", "")),
                        )
                        per_market[market].append((ts, c))
                elif table == "risk_events" and row["kind"] == "warm_start":
                    self._warm[market] = row.get("detail") or {}
                elif table == "orders" and row["action"] in EXCHANGE_CALLS:
                    self._calls[market].append(row)
        streams = [
            [(ts, m, i, item) for i, (ts, item) in enumerate(items)]
            for m, items in sorted(per_market.items())
        ]
        self._timeline = [
            (ts, 0, i, item) for ts, _, i, item in heapq.merge(*streams, key=lambda x: (x[0], x[1]))
        ]

    # -- Exchange ------------------------------------------------------------------------------

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def get_markets(self, tickers: Sequence[str] | None = None) -> list[MarketInfo]:
        return [m for t, m in self._markets.items() if tickers is None or t in tickers]

    async def get_market(self, ticker: str) -> MarketInfo:
        try:
            return self._markets[ticker]
        except KeyError:
            raise MarketNotFound(f"unknown market {ticker!r}") from None

    async def get_orderbook(self, ticker: str) -> BookSnapshot:
        raise ExchangeError(
            "a replay cannot fetch a fresh book; the recorded stream carries resyncs"
        )

    async def get_trades(self, ticker: str, limit: int = 100) -> list[Trade]:
        return []

    async def get_history(self, market: MarketInfo, window_s: float) -> MarketHistory:
        """The history the recorded run's warm start fetched for ``market``, from its
        ``warm_start`` row, so the replayed loop is seeded exactly as the recorded one was.
        :class:`ExchangeError` when it fetched none (its fetch failed, or it made no warm
        start: the replayed loop then starts cold, as the recorded one did)."""
        d = self._warm.get(market.ticker)
        if d is None or "history" not in d:
            why = "the recorded run made no warm start" if d is None else str(d.get("error"))
            raise ExchangeError(f"{market.ticker}: {why}", code="no_history")
        return history_from_dict(d["history"])

    async def stream(self, tickers: Sequence[str]) -> AsyncIterator[Event]:
        wanted = set(tickers)
        for ts, _, _, item in self._timeline:
            if isinstance(item, Control):
                self._clock.t = ts
                if self.on_control is not None and (item.market in wanted or item.market == ""):
                    self.on_control(item)
                continue
            if item.ticker not in wanted:
                continue
            self._clock.t = ts
            if isinstance(item, Fill):
                self._on_recorded_fill(item)
            elif isinstance(item, Order) and item.order_id in self._placed:
                # the venue's recorded word on the order is the truth about what rests
                if item.status is OrderStatus.RESTING and item.remaining_count > 0:
                    self._resting[item.order_id] = item
                else:
                    self._resting.pop(item.order_id, None)
            elif isinstance(item, Settlement):
                self._account.settle(item.ticker, item.result is Outcome.YES)
            elif isinstance(item, MarketStatus) and item.active and item.reason == "activated":
                for oid in [k for k, o in self._resting.items() if o.ticker == item.ticker]:
                    del self._resting[oid]
            yield item

    def _on_recorded_fill(self, f: Fill) -> None:
        self._account.record(f)
        o = self._resting.get(f.order_id)
        if o is None:
            return
        left = o.remaining_count - f.count
        if left <= 0:
            self._resting.pop(o.order_id)
        else:
            self._resting[o.order_id] = replace(
                o, remaining_count=left, fill_count=o.fill_count + f.count
            )

    def _answer(self, market: str, failure: str) -> dict[str, Any] | None:
        """The recorded answer to our next call in ``market``; raise it if it was a failure."""
        calls = self._calls[market]
        row = calls.popleft() if calls else None
        if row is not None and row["action"] == failure:
            reason = str(row.get("reason") or "")
            raise ExchangeError(f"recorded failure: {reason}", code=reason.split(":", 1)[0] or None)
        return row

    async def place_order(self, request: OrderRequest) -> Order:
        row = self._answer(request.ticker, "reject")
        recorded = row is not None and row["action"] == "place" and row["order_id"]
        if recorded:
            oid = str(row["order_id"])  # type: ignore[index]
        else:
            self._next += 1
            oid = f"replay-{self._next}"
        o = Order(
            oid,
            request.client_order_id,
            request.ticker,
            request.side,
            request.price,
            request.count,
            request.count,
            0,
            OrderStatus.RESTING,
            self._clock.now(),
        )
        o = _as_answered(o, row if recorded else None)
        self._placed.add(oid)
        if o.status is OrderStatus.RESTING:
            self._resting[oid] = o
        return o

    async def amend_order(self, order_id: str, price: Price, count: Qty) -> Order:
        o = self._resting.get(order_id)
        row = self._answer(o.ticker if o is not None else "", "reject")
        if o is None:
            raise OrderNotFound(f"no resting order {order_id}")
        new = replace(
            o,
            price=price,
            initial_count=count,
            remaining_count=count - o.fill_count,
            ts=self._clock.now(),
        )
        new = _as_answered(new, row if row is not None and row["action"] == "amend" else None)
        if new.status is OrderStatus.RESTING:
            self._resting[order_id] = new
        else:
            self._resting.pop(order_id, None)
        return new

    async def cancel_order(self, order_id: str) -> Order:
        o = self._resting.get(order_id)
        row = None if o is None else self._answer(o.ticker, "cancel_failed")
        o = self._resting.pop(order_id, None)
        if o is None:
            raise OrderNotFound(f"no resting order {order_id}")
        done = replace(o, remaining_count=0, status=OrderStatus.CANCELED, ts=self._clock.now())
        if row is not None and row.get("action") == "cancel" and isinstance(row.get("price"), int):
            done = replace(done, price=int(row["price"]))
        return done

    async def cancel_all(self, ticker: str | None = None) -> list[Order]:
        out = []
        for oid in [k for k, o in self._resting.items() if ticker is None or o.ticker == ticker]:
            o = self._resting.pop(oid)
            out.append(
                replace(o, remaining_count=0, status=OrderStatus.CANCELED, ts=self._clock.now())
            )
        return out

    async def get_orders(self, ticker: str | None = None, resting_only: bool = True) -> list[Order]:
        return [o for o in self._resting.values() if ticker is None or o.ticker == ticker]

    async def get_fills(self, ticker: str | None = None) -> list[Fill]:
        """The recorded fills streamed so far, oldest first."""
        return [f for f in self._account.fills if ticker is None or f.ticker == ticker]

    async def get_positions(self) -> list[Position]:
        """Net positions, realised PnL and fees of the recorded fills streamed so far."""
        acct = self._account
        return [acct.snapshot(t) for t in self._markets if t in acct.positions]

    async def get_balance(self) -> Decimal:
        """The cash the recorded fills streamed so far moved, in dollars. The recorded run's
        opening balance is not in the audit store, so this counts from 0."""
        return self._account.cash


if TYPE_CHECKING:  # mypy proves that AuditReplayExchange is an Exchange
    from cfa.exchange.base import Exchange

    def _is_exchange(ex: AuditReplayExchange) -> Exchange:
        return ex
