"""Records what the runtime consumed and did, for one run, in the audit store.

Market events are buffered per market and written as one ``market_events`` row per batch
(:mod:`cfa.audit.records`). **When a market's batch is closed** (appended to the sink as one
row):

* when it holds :data:`~cfa.audit.records.MAX_BATCH` events;
* before any other row about that market (an order, a fill, a parameter change, a risk event,
  a decision) is written, so the audit store holds each market's history in the exact order it
  happened;
* by :meth:`Recorder.close_aged` (the session's periodic flush) once its oldest event is
  ``max_age_s`` or more seconds of *event time* older than the event being consumed;
* by :meth:`Recorder.flush_events` (every batch: the wall-time flush, halts, shutdown).

**Durability.** An open batch lives only in this process: a crash loses the open batches (and
what the store had not committed yet, see :mod:`cfa.audit.store`). That is bounded: per market
at most ``MAX_BATCH`` events, and — with ``close_aged`` called at least every ``flush_every``
events and ``flush_events`` on the wall-time flush — at most ``max_age_s`` seconds of event time
plus the events of one flush period, whichever flush comes first. Only market data can be lost
that way, never a decision: a market's batch is closed before each of its order, fill, parameter
and risk rows, so every event a recorded decision followed was appended before it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from cfa.audit.records import MAX_BATCH, MarketEvent, encode_event, events_row, fill_row, order_row
from cfa.audit.store import to_ms as ms
from cfa.control.params import ParamChange
from cfa.core.types import Fill, Order, OrderRequest


class RowSink(Protocol):
    """Where rows go: :class:`cfa.audit.AuditStore` satisfies it."""

    def append(self, table: str, row: Mapping[str, Any]) -> None: ...


DEFAULT_MAX_AGE_S = 2.0
"""Default age limit of an open batch, seconds of event time. A thin market (about 5 events a
second) then writes about 10 events per row instead of one or two, a busy one (above 256 events
a second) still fills :data:`MAX_BATCH` first, and a crash loses at most about 2 s of a market's
data, which is also about the store's own commit horizon for a live run (wall-time flush)."""


class Recorder:
    """Appends the rows of one run to a :class:`RowSink` (see the module doc for batching).

    ``max_age_s``: the age limit of an open batch for :meth:`close_aged`, seconds of event
    time (> 0).
    """

    __slots__ = ("_opened", "_pending", "max_age_s", "run_id", "sink")

    def __init__(self, sink: RowSink, run_id: str, *, max_age_s: float = DEFAULT_MAX_AGE_S) -> None:
        if not max_age_s > 0:
            raise ValueError(f"max_age_s must be > 0, not {max_age_s!r}")
        self.sink = sink
        self.run_id = run_id
        self.max_age_s = max_age_s
        self._pending: dict[str, list[list[Any]]] = {}
        self._opened: dict[str, float] = {}
        """Per market with an open batch: its first event's ts (epoch seconds)."""

    def market_event(self, ev: MarketEvent) -> None:
        """Buffer one consumed event (cheap: no encoding to JSON, no I/O)."""
        items = self._pending.get(ev.ticker)
        if items is None:
            items = self._pending[ev.ticker] = []
            self._opened[ev.ticker] = ev.ts
        items.append(encode_event(ev))
        if len(items) >= MAX_BATCH:
            self._close(ev.ticker)

    def _close(self, market: str) -> None:
        items = self._pending.pop(market, None)
        self._opened.pop(market, None)
        if items:
            row = events_row(market, items)
            row["run_id"] = self.run_id
            self.sink.append("market_events", row)

    @property
    def open_batches(self) -> int:
        """Markets with an open (not yet appended) batch of events."""
        return len(self._pending)

    def close_aged(self, now_ts: float) -> int:
        """Close the batches whose oldest event is ``max_age_s`` or more older than ``now_ts``
        (event time, epoch seconds: the event being consumed); returns how many were closed.

        Cost: one pass over the markets with an open batch (a dict comprehension), then one row
        per closed batch. Closed in the order the batches were opened."""
        limit = now_ts - self.max_age_s
        aged = [m for m, t in self._opened.items() if t <= limit]
        for market in aged:
            self._close(market)
        return len(aged)

    def flush_events(self) -> None:
        """Close every market's open batch of events."""
        for market in list(self._pending):
            self._close(market)

    def row(self, table: str, row: dict[str, Any]) -> None:
        """Write any other row, after closing its market's batch of events."""
        market = row.get("market", "")
        if market in self._pending:
            self._close(market)
        row["run_id"] = self.run_id
        self.sink.append(table, row)

    def order(
        self,
        ts: float,
        action: str,
        req: OrderRequest | None = None,
        order: Order | None = None,
        reason: str = "",
    ) -> None:
        """``action``: place / amend / cancel / cancel_failed / deny / reject."""
        src = order if order is not None else req
        if src is None:
            raise ValueError("order(): give the request or the order")
        extra = {"requested_count": req.count} if req is not None and order is not None else None
        self.row("orders", order_row(src, action, ts=ts, reason=reason or None, extra=extra))

    def fill(self, f: Fill) -> None:
        self.row("fills", fill_row(f))

    def param_change(self, c: ParamChange) -> None:
        self.row(
            "param_changes",
            {
                "market": c.ticker,
                "ts_ms": ms(c.ts),
                "param": c.param,
                "old": c.old,
                "new": c.new,
                "source": c.source,
                "reason": c.reason,
                "payload": {"ts": c.ts},
            },
        )

    def risk_event(
        self, market: str, ts: float, kind: str, code: str, state: str, detail: dict[str, Any]
    ) -> None:
        self.row(
            "risk_events",
            {
                "market": market,
                "ts_ms": ms(ts),
                "kind": kind,
                "code": code,
                "state": state,
                "detail": {"ts": ts, **detail},
            },
        )
