"""Audit rows from cfa's domain records, and market events back from rows (for replay).

These helpers fix ONE layout for what the loop records, so that a replay can rebuild exactly
what the loop saw. Units are those of :mod:`cfa.core.types` (prices in price units, counts in
count units, money in Decimal dollars); ``ts_ms`` is the event time in epoch ms and the payload
keeps the exact float ``ts`` in seconds, so a replay gets the original timestamps bit for bit.

Market event payloads (``market_events.payload``):

* ``snapshot`` — ``{"ts", "yes": [[price, size], ...], "no": [[price, size], ...]}``
  (``exch_seq`` = the snapshot's seq);
* ``delta`` — ``{"ts", "outcome": "yes"|"no", "price", "delta", "client_order_id"?}``;
* ``trade`` — ``{"ts", "trade_id", "price", "count", "taker_side": "bid"|"ask"}``;
* ``settlement`` — ``{"ts", "result": "yes"|"no"}``.
"""

from __future__ import annotations

from typing import Any

from cfa.audit.errors import AuditError
from cfa.audit.store import to_ms
from cfa.core.types import (
    BookDelta,
    BookSnapshot,
    Fill,
    Order,
    OrderRequest,
    Outcome,
    Settlement,
    Side,
    Trade,
)

MarketEvent = BookSnapshot | BookDelta | Trade | Settlement


def market_event_row(ev: MarketEvent) -> dict[str, Any]:
    """The ``market_events`` row of a book snapshot, book delta, public trade or settlement."""
    if isinstance(ev, BookDelta):
        payload: dict[str, Any] = {
            "ts": ev.ts,
            "outcome": ev.outcome.value,
            "price": ev.price,
            "delta": ev.delta,
        }
        if ev.client_order_id is not None:
            payload["client_order_id"] = ev.client_order_id
        return {
            "market": ev.ticker,
            "ts_ms": to_ms(ev.ts),
            "kind": "delta",
            "exch_seq": ev.seq,
            "payload": payload,
        }
    if isinstance(ev, BookSnapshot):
        return {
            "market": ev.ticker,
            "ts_ms": to_ms(ev.ts),
            "kind": "snapshot",
            "exch_seq": ev.seq,
            "payload": {"ts": ev.ts, "yes": ev.yes, "no": ev.no},
        }
    if isinstance(ev, Trade):
        return {
            "market": ev.ticker,
            "ts_ms": to_ms(ev.ts),
            "kind": "trade",
            "payload": {
                "ts": ev.ts,
                "trade_id": ev.trade_id,
                "price": ev.price,
                "count": ev.count,
                "taker_side": ev.taker_side.value,
            },
        }
    if isinstance(ev, Settlement):
        return {
            "market": ev.ticker,
            "ts_ms": to_ms(ev.ts),
            "kind": "settlement",
            "payload": {"ts": ev.ts, "result": ev.result.value},
        }
    raise AuditError(f"not a market event: {type(ev).__name__}")


def market_event_from_row(row: dict[str, Any]) -> MarketEvent:
    """Inverse of :func:`market_event_row` for a decoded row (``AuditReader.rows``)."""
    kind, p, ticker = row["kind"], row["payload"], row["market"]
    ts = float(p["ts"]) if "ts" in p else row["ts_ms"] / 1000
    if kind == "delta":
        return BookDelta(
            ticker,
            row["exch_seq"],
            ts,
            Outcome(p["outcome"]),
            p["price"],
            p["delta"],
            p.get("client_order_id"),
        )
    if kind == "snapshot":
        return BookSnapshot(
            ticker,
            row["exch_seq"],
            ts,
            tuple((int(a), int(b)) for a, b in p["yes"]),
            tuple((int(a), int(b)) for a, b in p["no"]),
        )
    if kind == "trade":
        return Trade(ticker, p["trade_id"], ts, p["price"], p["count"], Side(p["taker_side"]))
    if kind == "settlement":
        return Settlement(ticker, Outcome(p["result"]), ts)
    raise AuditError(f"market event kind {kind!r} has no domain record")


def fill_row(fill: Fill) -> dict[str, Any]:
    """The ``fills`` row of one of our executions (``payload`` keeps the exact ``ts``)."""
    return {
        "market": fill.ticker,
        "ts_ms": to_ms(fill.ts),
        "fill_id": fill.fill_id,
        "order_id": fill.order_id,
        "client_order_id": fill.client_order_id,
        "side": fill.side.value,
        "price": fill.price,
        "count": fill.count,
        "fee": fill.fee,
        "is_taker": fill.is_taker,
        "post_position": fill.post_position,
        "payload": {"ts": fill.ts},
    }


def order_row(
    order: OrderRequest | Order,
    action: str,
    *,
    ts: float,
    status: str | None = None,
    reason: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``orders`` row of an action on ``order`` at ``ts`` (epoch seconds).

    ``action`` is one of :data:`cfa.audit.schema.ORDER_ACTIONS`; for an :class:`Order` the
    exchange's ``order_id`` and remaining count are recorded, for an :class:`OrderRequest` its
    ``post_only``/``reduce_only`` flags. ``extra`` is merged into the payload.
    """
    payload: dict[str, Any] = {"ts": ts}
    if isinstance(order, Order):
        order_id: str | None = order.order_id
        count = order.remaining_count
        payload["initial_count"] = order.initial_count
        payload["fill_count"] = order.fill_count
        status = status if status is not None else order.status.value
    else:
        order_id = None
        count = order.count
        payload["post_only"] = order.post_only
        payload["reduce_only"] = order.reduce_only
    if extra:
        payload.update(extra)
    return {
        "market": order.ticker,
        "ts_ms": to_ms(ts),
        "client_order_id": order.client_order_id,
        "order_id": order_id,
        "side": order.side.value,
        "price": order.price,
        "count": count,
        "action": action,
        "status": status,
        "reason": reason,
        "payload": payload,
    }
