"""The one codec between cfa's domain records and audit rows (and back, for replay).

**Market events** are stored in batches: one ``market_events`` row of kind ``"events"`` holds,
in order, every event one market's loop consumed since that market's previous audit row (at
most :data:`MAX_BATCH`). The recorder closes a market's batch before it writes any other row
for that market, so within a market the order of events, orders, fills and decisions in the
audit store is exactly the order in which they happened. Batching keeps the hash-chained
store off the fast path's critical cost (one row per few hundred events, not one per event).

Each event is a compact JSON array whose first element names its kind; ``ts`` is the exact
float epoch seconds; prices, counts as in :mod:`cfa.core.types`:

* ``["s", seq, ts, [[price, size], ...] yes, [[price, size], ...] no]`` — book snapshot;
* ``["d", seq, ts, "yes"|"no", price, delta, client_order_id|null]`` — book delta;
* ``["t", ts, trade_id, price, count, "bid"|"ask"]`` — public trade (taker side);
* ``["f", ts, fill_id, order_id, client_order_id, side, price, count, fee, is_taker, post]`` —
  our fill (fee as a decimal string);
* ``["o", ts, order_id, client_order_id, side, price, initial, remaining, filled, status]`` —
  our order's update;
* ``["x", ts, "yes"|"no"]`` — settlement;
* ``["m", ts, active, reason, market|null]`` — the venue paused (``active`` false) or
  reactivated trading, or changed the price grid (``market`` as :func:`market_to_dict`).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from cfa.audit.encoding import EventBatch
from cfa.audit.errors import AuditError
from cfa.audit.store import to_ms
from cfa.core.types import (
    BookDelta,
    BookSnapshot,
    FeeSchedule,
    Fill,
    MarketInfo,
    MarketStatus,
    Order,
    OrderRequest,
    OrderStatus,
    Outcome,
    PriceRange,
    Settlement,
    Side,
    Trade,
)

MarketEvent = BookSnapshot | BookDelta | Trade | Fill | Order | Settlement | MarketStatus
MAX_BATCH = 512
"""Most events in one ``market_events`` row."""
_BOOK_KINDS = frozenset(("d", "s"))
_TEXT: dict[Any, str] = {e: e.value for t in (Outcome, Side, OrderStatus) for e in t}
"""The value of every member of the event enumerations (plain ``str``)."""


def encode_event(ev: MarketEvent) -> list[Any]:
    """The compact array of one event (see the module docstring).

    Enumerations (outcome, side, status) become their values by a dict lookup (:data:`_TEXT`),
    not ``.value``: the enum descriptor costs several times more, and a JSON encoder handed the
    member would call it again."""
    t = type(ev)
    if t is BookDelta:
        d: BookDelta = ev  # type: ignore[assignment]
        return ["d", d.seq, d.ts, _TEXT[d.outcome], d.price, d.delta, d.client_order_id]
    if t is Trade:
        tr: Trade = ev  # type: ignore[assignment]
        return ["t", tr.ts, tr.trade_id, tr.price, tr.count, _TEXT[tr.taker_side]]
    if t is BookSnapshot:
        s: BookSnapshot = ev  # type: ignore[assignment]
        return ["s", s.seq, s.ts, [list(x) for x in s.yes], [list(x) for x in s.no]]
    if t is Fill:
        f: Fill = ev  # type: ignore[assignment]
        return [
            "f",
            f.ts,
            f.fill_id,
            f.order_id,
            f.client_order_id,
            _TEXT[f.side],
            f.price,
            f.count,
            str(f.fee),
            f.is_taker,
            f.post_position,
        ]
    if t is Order:
        o: Order = ev  # type: ignore[assignment]
        return [
            "o",
            o.ts,
            o.order_id,
            o.client_order_id,
            _TEXT[o.side],
            o.price,
            o.initial_count,
            o.remaining_count,
            o.fill_count,
            _TEXT[o.status],
        ]
    if t is Settlement:
        x: Settlement = ev  # type: ignore[assignment]
        return ["x", x.ts, _TEXT[x.result]]
    if t is MarketStatus:
        ms: MarketStatus = ev  # type: ignore[assignment]
        market = None if ms.market is None else market_to_dict(ms.market)
        return ["m", ms.ts, ms.active, ms.reason, market]
    raise AuditError(f"not a market event: {t.__name__}")


def decode_event(ticker: str, item: list[Any]) -> MarketEvent:
    """Inverse of :func:`encode_event`; raises :class:`AuditError` on a malformed item."""
    try:
        kind = item[0]
        if kind == "d":
            _, seq, ts, outcome, price, delta, coid = item
            return BookDelta(ticker, seq, ts, Outcome(outcome), price, delta, coid)
        if kind == "t":
            _, ts, trade_id, price, count, side = item
            return Trade(ticker, trade_id, ts, price, count, Side(side))
        if kind == "s":
            _, seq, ts, yes, no = item
            return BookSnapshot(
                ticker,
                seq,
                ts,
                tuple((int(p), int(q)) for p, q in yes),
                tuple((int(p), int(q)) for p, q in no),
            )
        if kind == "f":
            _, ts, fid, oid, coid, side, price, count, fee, taker, post = item
            return Fill(
                fid,
                oid,
                coid,
                ticker,
                Side(side),
                price,
                count,
                Decimal(fee),
                bool(taker),
                ts,
                post,
            )
        if kind == "o":
            _, ts, oid, coid, side, price, initial, remaining, filled, status = item
            return Order(
                oid,
                coid,
                ticker,
                Side(side),
                price,
                initial,
                remaining,
                filled,
                OrderStatus(status),
                ts,
            )
        if kind == "x":
            _, ts, result = item
            return Settlement(ticker, Outcome(result), ts)
        if kind == "m":
            _, ts, active, reason, market = item
            info = None if market is None else market_from_dict(market)
            return MarketStatus(ticker, ts, bool(active), str(reason), info)
    except (ValueError, TypeError, IndexError) as exc:
        raise AuditError(f"malformed market event {item!r:.120}: {exc}") from exc
    raise AuditError(f"unknown market event kind {item[0]!r}")


def events_row(market: str, items: list[list[Any]]) -> dict[str, Any]:
    """One ``market_events`` row holding a batch of encoded events of one market.

    ``exch_seq`` is the first book event's sequence number (None without one). The payload is
    an :class:`~cfa.audit.encoding.EventBatch` over ``items`` (not copied): reads like
    ``{"n": len, "events": items}`` and is encoded by the typed batch path (no secret scan)."""
    first = items[0]
    ts = first[2] if first[0] in _BOOK_KINDS else first[1]
    seq = next((i[1] for i in items if i[0] in _BOOK_KINDS), None)
    return {
        "market": market,
        "ts_ms": to_ms(ts),
        "kind": "events",
        "exch_seq": seq,
        "payload": EventBatch(items),
    }


def events_from_rows(rows: Iterable[dict[str, Any]]) -> Iterable[MarketEvent]:
    """Decode decoded ``market_events`` rows (``AuditReader.rows``) back into events, in order."""
    for row in rows:
        if row.get("kind") != "events":
            raise AuditError(
                f"market_events row {row.get('seq')}: unknown kind {row.get('kind')!r}"
            )
        market = row["market"]
        for item in row["payload"]["events"]:
            yield decode_event(market, item)


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
    count and ``post_only``/``reduce_only`` flags. ``extra`` is merged into the payload.
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


def market_to_dict(m: MarketInfo) -> dict[str, Any]:
    """A market's metadata as JSON (recorded in the run's config, so replays need no venue)."""
    return {
        "ticker": m.ticker,
        "event_ticker": m.event_ticker,
        "series_ticker": m.series_ticker,
        "title": m.title,
        "price_ranges": [[r.start, r.end, r.step] for r in m.price_ranges],
        "close_ts": m.close_ts,
        "open_ts": m.open_ts,
        "price_level_structure": m.price_level_structure,
        "fee": {
            "fee_type": m.fee.fee_type,
            "multiplier": str(m.fee.multiplier),
            "taker_coeff": str(m.fee.taker_coeff),
            "maker_coeff": str(m.fee.maker_coeff),
            "rounding": str(m.fee.rounding),
        },
        "subtitle": m.subtitle,
        "rules": m.rules,
        "status": m.status,
        "exchange_index": m.exchange_index,
        "strike_type": m.strike_type,
        "floor_strike": m.floor_strike,
        "cap_strike": m.cap_strike,
        "mutually_exclusive": m.mutually_exclusive,
        "exhaustive": m.exhaustive,
    }


def market_from_dict(d: dict[str, Any]) -> MarketInfo:
    """Inverse of :func:`market_to_dict`; raises :class:`AuditError` naming a missing field."""
    try:
        fee = d["fee"]
        return MarketInfo(
            ticker=d["ticker"],
            event_ticker=d["event_ticker"],
            series_ticker=d["series_ticker"],
            title=d["title"],
            price_ranges=tuple(PriceRange(int(a), int(b), int(c)) for a, b, c in d["price_ranges"]),
            close_ts=float(d["close_ts"]),
            open_ts=float(d["open_ts"]),
            price_level_structure=d["price_level_structure"],
            fee=FeeSchedule(
                fee_type=fee["fee_type"],
                multiplier=Decimal(fee["multiplier"]),
                taker_coeff=Decimal(fee["taker_coeff"]),
                maker_coeff=Decimal(fee["maker_coeff"]),
                rounding=Decimal(fee["rounding"]),
            ),
            subtitle=d.get("subtitle", ""),
            rules=d.get("rules", ""),
            status=d.get("status", "active"),
            exchange_index=int(d.get("exchange_index", 0)),
            strike_type=str(d.get("strike_type") or ""),
            floor_strike=_opt_float(d.get("floor_strike")),
            cap_strike=_opt_float(d.get("cap_strike")),
            mutually_exclusive=bool(d.get("mutually_exclusive", False)),
            exhaustive=bool(d.get("exhaustive", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise AuditError(f"recorded market metadata is incomplete: {exc}") from exc


def _opt_float(v: Any) -> float | None:
    """A recorded optional number (None stays None)."""
    return None if v is None else float(v)
