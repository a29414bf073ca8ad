"""Rebuild a market's history from the audit store: book mid, our quotes, fills, inventory, PnL.

Within one market every row the runtime writes is in the order it happened (the recorder closes
a market's batch of events before any other row about it, :mod:`cfa.audit.records`), so walking
``market_events``, ``orders`` and ``fills`` merged by ``seq`` replays the market exactly:

* **mid** — the order book is rebuilt from the recorded snapshots and deltas; our own resting
  size (deltas that carry one of our ``client_order_id``) is taken out, and the mid is the
  middle of the best *other* bid and ask, exactly as the market loop computes it (None when a
  side is empty or the rest of the book is crossed);
* **our quotes** — the resting bid and ask from the ``orders`` rows (place/amend set a side,
  cancel clears it), reduced by our fills and cleared by the exchange's order updates;
* **inventory and PnL** — every ``fills`` row through :class:`cfa.runtime.accounting.Book`
  (average cost, fees, settlement), marked at the rebuilt mid.

A sequence gap in the recorded deltas makes the book unknown until the next recorded snapshot
(mid None; counted in :attr:`MarketWalker.gaps`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from cfa.audit import AuditReader, RunInfo
from cfa.audit.records import decode_event
from cfa.core.book import BookSequenceError, OrderBook
from cfa.core.types import (
    ONE_DOLLAR,
    PRICE_SCALE,
    QTY_SCALE,
    BookDelta,
    BookSnapshot,
    Fill,
    Order,
    OrderStatus,
    Outcome,
    Settlement,
    Side,
)
from cfa.runtime.accounting import Book

__all__ = [
    "FillPoint",
    "MarketWalker",
    "Snapshot",
    "follow",
    "run_markets",
    "run_span_ms",
    "timeline_items",
    "walk",
]

_TABLES = ("market_events", "orders", "fills")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state of one market at a point of its history. Prices in dollars, sizes in
    contracts, money in exact dollars."""

    ts: float
    mid: float | None
    our_bid: float | None
    our_ask: float | None
    inventory: float
    fills: int
    realized: Decimal
    marked: Decimal

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (money as strings)."""
        return {
            "ts": self.ts,
            "mid": self.mid,
            "our_bid": self.our_bid,
            "our_ask": self.our_ask,
            "inventory": self.inventory,
            "fills": self.fills,
            "realized_pnl": str(self.realized),
            "marked_pnl": str(self.marked.quantize(Decimal("0.0001"))),
        }


@dataclass(frozen=True, slots=True)
class FillPoint:
    """One of our fills as the walker applied it."""

    seq: int
    ts: float
    fill_id: str
    side: str
    price: float
    count: float
    fee: Decimal
    is_taker: bool
    inventory_after: float
    mid: float | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "seq": self.seq,
            "ts": self.ts,
            "fill_id": self.fill_id,
            "side": self.side,
            "price": self.price,
            "count": self.count,
            "fee": str(self.fee),
            "is_taker": self.is_taker,
            "inventory_after": self.inventory_after,
            "mid_at_fill": self.mid,
        }


def _best(ladder: dict[int, int], best: int | None, own: dict[int, int]) -> int | None:
    """Best price of ``ladder`` once our own sizes ``own`` are taken out."""
    if best is None or not own or ladder[best] > own.get(best, 0):
        return best
    rest = [p for p, q in ladder.items() if q > own.get(p, 0)]
    return max(rest) if rest else None


@dataclass(slots=True)
class _Resting:
    order_id: str | None
    price: int
    remaining: int


@dataclass(slots=True)
class MarketWalker:
    """Replays one market item by item (see the module doc).

    Feed it with :meth:`feed` in seq order (``timeline_items``). With ``record=True`` it keeps
    the series the report plots: ``mids``, ``bids``, ``asks`` (ts, dollars or None) at every
    change, ``pnl`` (ts, marked dollars) at every mid change and fill, ``inventory`` (ts,
    contracts) and ``realized`` (ts, dollars) at every fill and the settlement, and ``fills``.
    """

    market: str
    record: bool = False
    book: OrderBook = field(init=False)
    account: Book = field(default_factory=Book)
    own_yes: dict[int, int] = field(default_factory=dict)
    own_no: dict[int, int] = field(default_factory=dict)
    resting: dict[str, _Resting | None] = field(default_factory=lambda: {"bid": None, "ask": None})
    ts: float = 0.0
    mid: float | None = None
    gaps: int = 0
    settled: str | None = None
    mids: list[tuple[float, float | None]] = field(default_factory=list)
    bids: list[tuple[float, float | None]] = field(default_factory=list)
    asks: list[tuple[float, float | None]] = field(default_factory=list)
    pnl: list[tuple[float, float]] = field(default_factory=list)
    inventory: list[tuple[float, float]] = field(default_factory=list)
    realized: list[tuple[float, float]] = field(default_factory=list)
    fills: list[FillPoint] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.book = OrderBook(self.market)

    # -- state ---------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The market's state after everything fed so far."""
        b, a = self.resting["bid"], self.resting["ask"]
        return Snapshot(
            ts=self.ts,
            mid=self.mid,
            our_bid=None if b is None else b.price / PRICE_SCALE,
            our_ask=None if a is None else a.price / PRICE_SCALE,
            inventory=self.account.inventory / QTY_SCALE,
            fills=self.account.fills,
            realized=self.account.realized,
            marked=self.account.marked(self.mid),
        )

    def _marked_f(self) -> float:
        acc = self.account
        mark = float(acc.avg_price) if self.mid is None else self.mid
        return float(acc.cash - acc.fees) + mark * acc.inventory / QTY_SCALE

    # -- feeding -------------------------------------------------------------------------------

    def feed(self, seq: int, table: str, item: Any) -> None:
        """Apply one item: a decoded market event (``market_events``) or a row (``orders``,
        ``fills``)."""
        if table == "market_events":
            self._event(item)
        elif table == "orders":
            self._order_row(item)
        elif table == "fills":
            self._fill_row(seq, item)

    def _event(self, ev: Any) -> None:
        t = type(ev)
        self.ts = max(self.ts, ev.ts)
        if t is BookDelta:
            if ev.client_order_id is not None:
                own = self.own_yes if ev.outcome is Outcome.YES else self.own_no
                q = own.get(ev.price, 0) + ev.delta
                if q > 0:
                    own[ev.price] = q
                else:
                    own.pop(ev.price, None)
            try:
                self.book.apply_delta(ev)
            except BookSequenceError:
                self.gaps += 1
            self._update_mid()
        elif t is BookSnapshot:
            self.book.apply_snapshot(ev)
            self.own_yes.clear()
            self.own_no.clear()
            self._update_mid()
        elif t is Order:
            self._order_update(ev)
        elif t is Settlement:
            self.account.settle(ev.result is Outcome.YES)
            self.settled = ev.result.value
            self._set_side("bid", None)
            self._set_side("ask", None)
            if self.record:
                self.inventory.append((self.ts, 0.0))
                self.realized.append((self.ts, float(self.account.realized)))
                self.pnl.append((self.ts, self._marked_f()))
        # Fill events duplicate the ``fills`` rows, which are applied instead; trades do not
        # move the book (their effect arrives as deltas).

    def _update_mid(self) -> None:
        book = self.book
        mid: float | None = None
        if book.synced:
            bb = _best(book.yes, book.best_bid(), self.own_yes)
            ba_yes = book.best_ask()
            bn = _best(book.no, None if ba_yes is None else ONE_DOLLAR - ba_yes, self.own_no)
            if bb is not None and bn is not None and bb < ONE_DOLLAR - bn:
                mid = (bb + ONE_DOLLAR - bn) / (2 * PRICE_SCALE)
        if mid != self.mid:
            self.mid = mid
            if self.record:
                self.mids.append((self.ts, mid))
                self.pnl.append((self.ts, self._marked_f()))

    def _set_side(self, side: str, r: _Resting | None) -> None:
        old = self.resting[side]
        self.resting[side] = r
        if self.record and (None if old is None else old.price) != (None if r is None else r.price):
            series = self.bids if side == "bid" else self.asks
            series.append((self.ts, None if r is None else r.price / PRICE_SCALE))

    def _order_row(self, row: dict[str, Any]) -> None:
        ts = (row.get("payload") or {}).get("ts")
        self.ts = max(self.ts, float(ts) if ts is not None else row["ts_ms"] / 1000.0)
        side, action = row.get("side"), row["action"]
        if side not in ("bid", "ask"):
            return
        cur = self.resting[side]
        if action in ("place", "amend"):
            if row.get("status") in (None, OrderStatus.RESTING.value) and (row["count"] or 0) > 0:
                self._set_side(side, _Resting(row.get("order_id"), row["price"], row["count"]))
            else:
                self._set_side(side, None)
        elif action == "cancel" and (
            cur is None or row.get("order_id") is None or cur.order_id == row.get("order_id")
        ):
            self._set_side(side, None)

    def _order_update(self, o: Order) -> None:
        cur = self.resting[o.side.value]
        if cur is not None and cur.order_id == o.order_id:
            if o.status is not OrderStatus.RESTING or o.remaining_count <= 0:
                self._set_side(o.side.value, None)
            else:
                cur.remaining = o.remaining_count

    def _fill_row(self, seq: int, row: dict[str, Any]) -> None:
        ts = (row.get("payload") or {}).get("ts")
        ts = float(ts) if ts is not None else row["ts_ms"] / 1000.0
        self.ts = max(self.ts, ts)
        fill = Fill(
            row["fill_id"],
            row.get("order_id") or "",
            row.get("client_order_id") or "",
            self.market,
            Side(row["side"]),
            row["price"],
            row["count"],
            Decimal(row["fee"]),
            bool(row["is_taker"]),
            ts,
            row.get("post_position") or 0,
        )
        self.account.on_fill(fill)
        cur = self.resting[fill.side.value]
        if cur is not None and (cur.order_id is None or cur.order_id == fill.order_id):
            cur.remaining -= fill.count
            if cur.remaining <= 0:
                self._set_side(fill.side.value, None)
        if self.record:
            inv = self.account.inventory / QTY_SCALE
            self.inventory.append((ts, inv))
            self.realized.append((ts, float(self.account.realized)))
            self.pnl.append((ts, self._marked_f()))
            self.fills.append(
                FillPoint(
                    seq,
                    ts,
                    fill.fill_id,
                    fill.side.value,
                    fill.price / PRICE_SCALE,
                    fill.count / QTY_SCALE,
                    fill.fee,
                    fill.is_taker,
                    inv,
                    self.mid,
                )
            )


def timeline_items(
    reader: AuditReader,
    run_id: str,
    market: str | None = None,
    *,
    until_ms: int | None = None,
    after_seq: int | None = None,
) -> Iterator[tuple[int, str, str, Any]]:
    """``(seq, table, market, item)`` in seq order: market events decoded one by one, orders and
    fills rows as dicts. ``until_ms`` stops after the first row past that time; ``after_seq``
    starts after that seq (a live tail's next read)."""
    for table, row in reader.timeline(_TABLES, run_id=run_id, market=market, after_seq=after_seq):
        if until_ms is not None and row["ts_ms"] > until_ms:
            return
        m = row["market"]
        if table == "market_events":
            if row.get("kind") != "events":
                continue  # rows of other shapes (older writers) carry no replayable events
            for it in row["payload"]["events"]:
                if it[0] != "f":
                    yield row["seq"], table, m, decode_event(m, it)
        else:
            yield row["seq"], table, m, row


def run_markets(reader: AuditReader, run: RunInfo) -> list[str]:
    """The markets of a run: from its end summary, else from the markets its rows name."""
    summary = run.summary or {}
    names = [m.get("ticker") for m in summary.get("markets") or [] if isinstance(m, dict)]
    found = [n for n in names if n]
    if found:
        return found
    seen: dict[str, None] = {}
    for t in ("decisions", "orders", "param_changes", "risk_events"):
        for r in reader.db.query(
            f"SELECT DISTINCT market FROM {t} WHERE run_id = ? AND market != ''", [run.run_id]
        ):
            seen.setdefault(r["market"], None)
    return sorted(seen)


def run_span_ms(reader: AuditReader, run: RunInfo) -> tuple[int, int]:
    """First and last ``ts_ms`` of a run (its end row, or its last row of any table)."""
    start = run.started_ms or 0
    if run.ended_ms is not None:
        return start, run.ended_ms
    last = start
    for t in ("market_events", "orders", "decisions"):
        row = reader.last(t, run_id=run.run_id, decode=False)
        if row is not None:
            last = max(last, row["ts_ms"])
    return start, last


def walk(
    reader: AuditReader,
    run_id: str,
    markets: Iterable[str] | None = None,
    *,
    record: bool = True,
) -> dict[str, MarketWalker]:
    """Replay whole markets of a run (all of them by default) and return their walkers."""
    wanted = None if markets is None else set(markets)
    walkers: dict[str, MarketWalker] = {}
    market = next(iter(wanted)) if wanted is not None and len(wanted) == 1 else None
    for seq, table, m, item in timeline_items(reader, run_id, market):
        if wanted is not None and m not in wanted:
            continue
        w = walkers.get(m)
        if w is None:
            w = walkers[m] = MarketWalker(m, record=record)
        w.feed(seq, table, item)
    return walkers


def _item_ts(table: str, item: Any) -> float:
    if table == "market_events":
        return float(item.ts)
    ts = (item.get("payload") or {}).get("ts")
    return float(ts) if ts is not None else item["ts_ms"] / 1000.0


def follow(
    reader: AuditReader, run_id: str, market: str, after_seq: int, start: float, seconds: float
) -> dict[str, Any]:
    """What followed in ``market`` over ``seconds`` from ``start`` (epoch s), counting rows
    after ``after_seq`` (a decision's seq): the state before and after, the fills in between,
    the largest inventory, the change of realised and marked PnL.

    ``before`` is the state when the row ``after_seq`` was written (everything recorded before
    it); ``after`` the state at ``start + seconds``, or at the market's last recorded item when
    the run ended sooner (``truncated``).
    """
    end = start + seconds
    w = MarketWalker(market, record=False)
    before: Snapshot | None = None
    fills: list[FillPoint] = []
    max_abs = 0.0
    reached_end = False
    for seq, table, _m, item in timeline_items(
        reader, run_id, market, until_ms=int(end * 1000) + 1
    ):
        if before is None and seq > after_seq:
            before = w.snapshot()
            max_abs = abs(before.inventory)
        if before is not None and _item_ts(table, item) > end:
            reached_end = True
            break
        w.feed(seq, table, item)
        if before is not None and table == "fills":
            inv = w.account.inventory / QTY_SCALE
            max_abs = max(max_abs, abs(inv))
            fills.append(
                FillPoint(
                    seq,
                    w.ts,
                    item["fill_id"],
                    item["side"],
                    item["price"] / PRICE_SCALE,
                    item["count"] / QTY_SCALE,
                    Decimal(item["fee"]),
                    bool(item["is_taker"]),
                    inv,
                    w.mid,
                )
            )
    if before is None:
        before = w.snapshot()
        max_abs = abs(before.inventory)
    after = w.snapshot()
    if not reached_end:
        # The stream stopped before the window's end: did the run end, or is it still going?
        reached_end = w.ts >= end
    return {
        "market": market,
        "window_s": seconds,
        "from_ts": start,
        "to_ts": end if reached_end else max(after.ts, start),
        "truncated": not reached_end,
        "before": before.as_dict(),
        "after": after.as_dict(),
        "fills": [f.as_dict() for f in fills],
        "bought": sum(f.count for f in fills if f.side == "bid"),
        "sold": sum(f.count for f in fills if f.side == "ask"),
        "max_abs_inventory": max_abs,
        "inventory_change": after.inventory - before.inventory,
        "realized_pnl_change": str(after.realized - before.realized),
        "marked_pnl_change": str((after.marked - before.marked).quantize(Decimal("0.0001"))),
    }
