"""Shapes what the runtime consumed and did into audit-store rows.

One place decides how a market event, an order action, a fill, a parameter change or a risk
event becomes a row, so the store's tables can rebuild a run: every market event the loop saw
(in order, with the exchange's sequence number), every order request and its outcome, every
fill. Prices stay integer units of $0.0001 and counts 0.01 contract, as in
:mod:`cfa.core.types`; money is written as a decimal string.
"""

from __future__ import annotations

from typing import Any, Protocol

from cfa.core.types import (
    BookDelta,
    BookSnapshot,
    Fill,
    Order,
    OrderRequest,
    Settlement,
    Trade,
)
from cfa.exchange.base import Event
from cfa.runtime.params import ParamChange


class RowSink(Protocol):
    """Where rows go: :class:`cfa.audit.AuditStore` satisfies it."""

    def append(self, table: str, row: dict[str, Any]) -> None: ...


def ms(ts: float) -> int:
    """Epoch seconds to UTC epoch milliseconds."""
    return round(ts * 1000.0)


def event_row(ev: Event) -> tuple[str, int | None, dict[str, Any]]:
    """``(kind, exchange_seq, payload)`` for one consumed event."""
    t = type(ev)
    if t is BookDelta:
        d: BookDelta = ev  # type: ignore[assignment]
        payload: dict[str, Any] = {"outcome": d.outcome.value, "price": d.price, "delta": d.delta}
        if d.client_order_id is not None:
            payload["client_order_id"] = d.client_order_id
        return "delta", d.seq, payload
    if t is BookSnapshot:
        s: BookSnapshot = ev  # type: ignore[assignment]
        return "snapshot", s.seq, {"yes": [list(x) for x in s.yes], "no": [list(x) for x in s.no]}
    if t is Trade:
        tr: Trade = ev  # type: ignore[assignment]
        return (
            "trade",
            None,
            {
                "trade_id": tr.trade_id,
                "price": tr.price,
                "count": tr.count,
                "taker_side": tr.taker_side.value,
            },
        )
    if t is Fill:
        return "fill", None, {"fill_id": ev.fill_id}  # type: ignore[union-attr]
    if t is Order:
        o: Order = ev  # type: ignore[assignment]
        return (
            "order",
            None,
            {
                "order_id": o.order_id,
                "status": o.status.value,
                "price": o.price,
                "remaining": o.remaining_count,
                "filled": o.fill_count,
            },
        )
    if t is Settlement:
        st: Settlement = ev  # type: ignore[assignment]
        return "settlement", None, {"result": st.result.value}
    raise TypeError(f"unknown event type {t.__name__}")


class Recorder:
    """Appends rows for one run to a :class:`RowSink`."""

    __slots__ = ("run_id", "sink")

    def __init__(self, sink: RowSink, run_id: str) -> None:
        self.sink = sink
        self.run_id = run_id

    def market_event(self, ev: Event) -> None:
        kind, seq, payload = event_row(ev)
        self.sink.append(
            "market_events",
            {
                "run_id": self.run_id,
                "market": ev.ticker,
                "ts_ms": ms(ev.ts),
                "kind": kind,
                "exch_seq": seq,
                "payload": payload,
            },
        )

    def order(
        self,
        ts: float,
        action: str,
        req: OrderRequest | None = None,
        order: Order | None = None,
        reason: str = "",
    ) -> None:
        """``action`` is place / amend / cancel / deny / reject."""
        src = order if order is not None else req
        assert src is not None
        self.sink.append(
            "orders",
            {
                "run_id": self.run_id,
                "market": src.ticker,
                "ts_ms": ms(ts),
                "action": action,
                "client_order_id": src.client_order_id,
                "order_id": order.order_id if order is not None else None,
                "side": src.side.value,
                "price": src.price,
                "count": req.count
                if req is not None
                else (order.remaining_count if order else None),
                "status": order.status.value if order is not None else None,
                "reason": reason,
            },
        )

    def fill(self, f: Fill) -> None:
        self.sink.append(
            "fills",
            {
                "run_id": self.run_id,
                "market": f.ticker,
                "ts_ms": ms(f.ts),
                "fill_id": f.fill_id,
                "order_id": f.order_id,
                "client_order_id": f.client_order_id,
                "side": f.side.value,
                "price": f.price,
                "count": f.count,
                "fee": str(f.fee),
                "is_taker": f.is_taker,
                "post_position": f.post_position,
            },
        )

    def param_change(self, c: ParamChange) -> None:
        self.sink.append(
            "param_changes",
            {
                "run_id": self.run_id,
                "market": c.ticker,
                "ts_ms": ms(c.ts),
                "param": c.param,
                "old": c.old,
                "new": c.new,
                "source": c.source,
                "reason": c.reason,
            },
        )

    def risk_event(
        self, market: str, ts: float, kind: str, code: str, state: str, detail: dict[str, Any]
    ) -> None:
        self.sink.append(
            "risk_events",
            {
                "run_id": self.run_id,
                "market": market,
                "ts_ms": ms(ts),
                "kind": kind,
                "code": code,
                "state": state,
                "detail": detail,
            },
        )
