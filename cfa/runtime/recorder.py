"""Records what the runtime consumed and did, for one run, in the audit store.

Market events are buffered per market and written as one ``market_events`` row per batch
(:mod:`cfa.audit.records`); a market's batch is closed before any other row about that market
(an order, a fill, a parameter change, a risk event, a decision) is written, so the audit store
holds each market's history in the exact order it happened. :meth:`Recorder.flush_events`
closes every open batch (the session calls it before flushing the store and at the end).
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


class Recorder:
    """Appends the rows of one run to a :class:`RowSink`."""

    __slots__ = ("_pending", "run_id", "sink")

    def __init__(self, sink: RowSink, run_id: str) -> None:
        self.sink = sink
        self.run_id = run_id
        self._pending: dict[str, list[list[Any]]] = {}

    def market_event(self, ev: MarketEvent) -> None:
        """Buffer one consumed event (cheap: no encoding to JSON, no I/O)."""
        items = self._pending.get(ev.ticker)
        if items is None:
            items = self._pending[ev.ticker] = []
        items.append(encode_event(ev))
        if len(items) >= MAX_BATCH:
            self._close(ev.ticker)

    def _close(self, market: str) -> None:
        items = self._pending.pop(market, None)
        if items:
            row = events_row(market, items)
            row["run_id"] = self.run_id
            self.sink.append("market_events", row)

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
