"""Parse Kalshi WebSocket frames and REST Market objects into cfa records.

Pure functions, no I/O: each takes one message exactly as Kalshi sends it and returns an immutable
record from :mod:`cfa.core.types` (or :class:`Ticker`, defined here). Units are cfa's: prices are
integer units of $0.0001 on the leg the record names, counts integer units of 0.01 contract, times
float seconds since the Unix epoch (UTC).

Accepted input:

* a full frame ``{"type", "sid", "seq", "msg"}`` (the ``type`` must match the parser), or
* the bare ``msg`` object, with ``seq=`` passed as an argument where the record needs one.

Field shapes: the current ``_dollars`` / ``_fp`` era (dollar strings such as ``"0.5600"``, count
strings such as ``"10.00"``, ``ts_ms``) first; where it costs one fallback, the legacy shapes listed
in ``reference/kalshi-api.md`` §5 (integer cents ``price``/``yes_bid``, integer counts ``delta``/
``count``, ``yes``/``no`` cent ladders, ``taker_side``). When both are present the current field
wins.

Timestamps: a record's ``ts`` is the exchange's time when the message carries one (``ts_ms``, then
the deprecated ``ts``/``time``), otherwise the caller's ``recv_ts`` (Kalshi's orderbook snapshots
carry no time at all). A message with neither raises.

Every malformed input (missing key, wrong type, bad number, off-grid price) raises
:class:`cfa.core.types.CfaValueError` whose message names the message type and the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, TypeAlias

from cfa.core.grid import STRUCTURES, PriceGrid
from cfa.core.types import (
    ONE_DOLLAR,
    BookDelta,
    BookSnapshot,
    CfaValueError,
    FeeSchedule,
    MarketInfo,
    Outcome,
    Price,
    Qty,
    Side,
    Trade,
    parse_price,
    parse_qty,
)

__all__ = [
    "MARKET_DATA_TYPES",
    "BookForms",
    "Ticker",
    "WsRecord",
    "orderbook_delta",
    "orderbook_snapshot",
    "parse_frame",
    "parse_market",
    "parse_rfc3339",
    "ticker",
    "trade",
    "yes_price_form",
]


@dataclass(frozen=True, slots=True)
class Ticker:
    """One ``ticker`` channel update: Kalshi's top of book, last trade and running totals.

    ``yes_bid``/``yes_ask`` are YES-leg prices in price units; ``None`` when that side of the book
    is empty (Kalshi sends ``"0.0000"`` for no bid and ``"1.0000"`` for no ask). Sizes, volume and
    open interest are count units (0.01 contract); ``None`` when the message does not carry them
    (legacy shapes). ``last_price`` is the last trade's YES price. ``ts`` is the exchange time.
    """

    ticker: str
    ts: float
    yes_bid: Price | None
    yes_ask: Price | None
    yes_bid_size: Qty | None = None
    yes_ask_size: Qty | None = None
    last_price: Price | None = None
    last_trade_size: Qty | None = None
    volume: Qty | None = None
    open_interest: Qty | None = None


WsRecord: TypeAlias = BookSnapshot | BookDelta | Trade | Ticker
"""What :func:`parse_frame` returns for a market-data frame."""

MARKET_DATA_TYPES = frozenset({"orderbook_snapshot", "orderbook_delta", "trade", "ticker"})
"""Frame types :func:`parse_frame` turns into records; every other type is control traffic."""

_MISSING = object()


# -- small checked readers -----------------------------------------------------------------------


def _split(
    frame: Mapping[str, Any], kind: str, seq: int | None
) -> tuple[Mapping[str, Any], int | None]:
    """Return ``(msg, seq)`` from a full frame or a bare msg; check the frame's type."""
    if type(frame) is not dict and not isinstance(frame, Mapping):
        raise CfaValueError(f"{kind}: frame is not a JSON object: {type(frame).__name__}")
    if "msg" not in frame:
        return frame, seq
    ftype = frame.get("type")
    if ftype is not None and ftype != kind:
        raise CfaValueError(f"{kind}: frame type is {ftype!r}")
    msg = frame["msg"]
    if type(msg) is not dict and not isinstance(msg, Mapping):
        raise CfaValueError(f"{kind}.msg: not a JSON object")
    fseq = frame.get("seq")
    if fseq is not None:
        seq = _int(fseq, f"{kind}.seq")
    return msg, seq


def _get(msg: Mapping[str, Any], kind: str, *keys: str) -> tuple[str, Any]:
    """The first present, non-null key of ``keys``; raise naming them all when none is."""
    for key in keys:
        value = msg.get(key, _MISSING)
        if value is not _MISSING and value is not None:
            return key, value
    raise CfaValueError(f"{kind}: missing {' / '.join(keys)}")


def _opt(msg: Mapping[str, Any], *keys: str) -> tuple[str, Any] | None:
    for key in keys:
        value = msg.get(key)
        if value is not None:
            return key, value
    return None


def _int(value: Any, what: str) -> int:
    if type(value) is not int:  # bool is a subclass of int; reject it and every non-integer
        raise CfaValueError(f"{what}: expected an integer, got {value!r}")
    if value < 0:
        raise CfaValueError(f"{what}: negative: {value!r}")
    return value


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise CfaValueError(f"{what}: expected a non-empty string, got {value!r}")
    return value


def _cents(value: Any, what: str) -> Price:
    """Legacy integer cents (0..100) to price units."""
    cents = _int(value, what)
    if cents > 100:
        raise CfaValueError(f"{what}: {value!r} cents is outside [0, 100]")
    return cents * (ONE_DOLLAR // 100)


# Feeds repeat the same few hundred price and size strings; parsing them through Decimal once
# keeps a 100-delta/s feed (and replays of it) cheap. Errors are not cached (lru_cache re-raises).
_cached_price = lru_cache(maxsize=8192)(parse_price)
_cached_qty = lru_cache(maxsize=65536)(parse_qty)


def _dollars(value: Any, what: str) -> Price:
    """A dollar price (string, or a JSON number in transition-era payloads) to price units."""
    if type(value) is str:
        return _cached_price(value, what)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CfaValueError(f"{what}: expected a dollar string, got {value!r}")
    return parse_price(value, what)


def _count(value: Any, what: str, *, signed: bool = False) -> Qty:
    """A fixed-point count string (or a legacy integer count) to count units."""
    if type(value) is str:
        q = _cached_qty(value, what)
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise CfaValueError(f"{what}: expected a count, got {value!r}")
    else:
        q = parse_qty(value, what)
    if not signed and q < 0:
        raise CfaValueError(f"{what}: negative count {value!r}")
    return q


def _price_field(msg: Mapping[str, Any], kind: str, dollars_key: str, cents_key: str) -> Price:
    key, value = _get(msg, kind, dollars_key, cents_key)
    if key == dollars_key:
        return _dollars(value, f"{kind}.{key}")
    return _cents(value, f"{kind}.{key}")


def _opt_price(msg: Mapping[str, Any], kind: str, dollars_key: str, cents_key: str) -> Price | None:
    hit = _opt(msg, dollars_key, cents_key)
    if hit is None:
        return None
    key, value = hit
    return (
        _dollars(value, f"{kind}.{key}") if key == dollars_key else _cents(value, f"{kind}.{key}")
    )


def _opt_count(msg: Mapping[str, Any], kind: str, *keys: str) -> Qty | None:
    hit = _opt(msg, *keys)
    if hit is None:
        return None
    key, value = hit
    return _count(value, f"{kind}.{key}")


def parse_rfc3339(value: Any, what: str = "time") -> float:
    """An RFC 3339 UTC timestamp (``"2026-05-14T04:45:00Z"``, any fraction digits) to epoch s."""
    if not isinstance(value, str):
        raise CfaValueError(f"{what}: expected an RFC 3339 string, got {value!r}")
    text = value.strip()
    # Python's parser takes at most 6 fraction digits: cut nanoseconds down to microseconds.
    if "." in text:
        head, _, tail = text.partition(".")
        digits = len(tail) - len(tail.lstrip("0123456789"))
        tail = tail[: min(digits, 6)] + tail[digits:]
        text = f"{head}.{tail}"
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise CfaValueError(f"{what}: not an RFC 3339 time: {value!r}") from exc
    if dt.tzinfo is None:
        raise CfaValueError(f"{what}: no UTC offset in {value!r}")
    return dt.timestamp()


def _ts(msg: Mapping[str, Any], kind: str, recv_ts: float | None) -> float:
    """Exchange time from ``ts_ms`` / ``ts`` / ``time`` / ``created_time``, else ``recv_ts``."""
    if msg.get("ts_ms") is not None:
        return _int(msg["ts_ms"], f"{kind}.ts_ms") / 1000.0
    ts = msg.get("ts")
    if ts is not None:
        if isinstance(ts, str):
            return parse_rfc3339(ts, f"{kind}.ts")
        return float(_int(ts, f"{kind}.ts"))
    for key in ("time", "created_time"):
        if msg.get(key) is not None:
            return parse_rfc3339(msg[key], f"{kind}.{key}")
    if recv_ts is None:
        raise CfaValueError(f"{kind}: no timestamp (ts_ms, ts) in the message and no recv_ts given")
    return float(recv_ts)


def _market_ticker(msg: Mapping[str, Any], kind: str) -> str:
    key, value = _get(msg, kind, "market_ticker", "ticker")
    return _str(value, f"{kind}.{key}")


def _require_seq(seq: int | None, kind: str) -> int:
    if seq is None:
        raise CfaValueError(f"{kind}: missing seq (not in the frame and not given)")
    return seq


_OUTCOMES = {"yes": Outcome.YES, "no": Outcome.NO}


def _outcome(value: Any, what: str) -> Outcome:
    try:
        return _OUTCOMES[value]
    except (KeyError, TypeError):
        msg = "missing" if value is None else f"expected 'yes' or 'no', got {value!r}"
        raise CfaValueError(f"{what}: {msg}") from None


# -- order book ----------------------------------------------------------------------------------


def _ladder(
    msg: Mapping[str, Any], kind: str, leg: str, *, yes_terms: bool
) -> tuple[tuple[Price, Qty], ...]:
    """One bid ladder of a snapshot, ascending by price, zero-size levels dropped.

    ``yes_terms`` (``use_yes_price`` subscriptions): the NO ladder's prices are YES-leg prices and
    are converted back to NO-leg prices here.
    """
    hit = _opt(msg, f"{leg}_dollars_fp", f"{leg}_dollars", leg)
    if hit is None:
        return ()  # Kalshi omits the key (or, in old REST shapes, sends null) for an empty side.
    key, levels = hit
    what = f"{kind}.{key}"
    if not isinstance(levels, Sequence) or isinstance(levels, str):
        raise CfaValueError(f"{what}: expected a list of [price, count] levels")
    out: dict[Price, Qty] = {}
    for i, level in enumerate(levels):
        if not isinstance(level, Sequence) or isinstance(level, str) or len(level) != 2:
            raise CfaValueError(f"{what}[{i}]: expected [price, count], got {level!r}")
        raw_price, raw_count = level
        if key == leg:  # legacy integer cents
            price = _cents(raw_price, f"{what}[{i}].price")
        else:
            price = _dollars(raw_price, f"{what}[{i}].price")
        count = _count(raw_count, f"{what}[{i}].count")
        if yes_terms and leg == "no":
            price = ONE_DOLLAR - price
        if price in out:
            raise CfaValueError(f"{what}[{i}]: duplicate price level {raw_price!r}")
        if count > 0:
            out[price] = count
    return tuple(sorted(out.items()))


def orderbook_snapshot(
    frame: Mapping[str, Any],
    *,
    seq: int | None = None,
    recv_ts: float | None = None,
    use_yes_price: bool = False,
) -> BookSnapshot:
    """``orderbook_snapshot`` → :class:`BookSnapshot`.

    Ladders are bids in each leg's own prices, ascending (Kalshi's order); an absent ladder key is
    an empty side. Kalshi's snapshots carry no timestamp, so ``ts`` is ``recv_ts`` unless the
    message has a ``ts_ms``. ``use_yes_price=True`` for subscriptions that asked Kalshi to report
    NO levels in YES prices.
    """
    kind = "orderbook_snapshot"
    msg, seq = _split(frame, kind, seq)
    return BookSnapshot(
        ticker=_market_ticker(msg, kind),
        seq=_require_seq(seq, kind),
        ts=_ts(msg, kind, recv_ts),
        yes=_ladder(msg, kind, "yes", yes_terms=use_yes_price),
        no=_ladder(msg, kind, "no", yes_terms=use_yes_price),
    )


def orderbook_delta(
    frame: Mapping[str, Any],
    *,
    seq: int | None = None,
    recv_ts: float | None = None,
    use_yes_price: bool = False,
) -> BookDelta:
    """``orderbook_delta`` → :class:`BookDelta`.

    ``price`` is in the ``side`` leg's own terms (a ``side: "no"`` delta at ``"0.5600"`` is a NO
    bid level at $0.56, i.e. a YES ask at $0.44); ``delta`` is the signed size change (``delta_fp``,
    or legacy integer ``delta``); ``client_order_id`` only when Kalshi attached one (our own
    order caused the change); ``ts`` from ``ts_ms`` (else ``ts``, else ``recv_ts``).
    """
    kind = "orderbook_delta"
    msg, seq = _split(frame, kind, seq)
    outcome = _outcome(msg.get("side"), "orderbook_delta.side")
    # Fast paths for the current shape (this parser runs once per book update); the checked
    # general readers handle legacy shapes and produce the error messages.
    raw_price = msg.get("price_dollars")
    if type(raw_price) is str:
        price = _cached_price(raw_price, "orderbook_delta.price_dollars")
    else:
        price = _price_field(msg, kind, "price_dollars", "price")
    if use_yes_price and outcome is Outcome.NO:
        price = ONE_DOLLAR - price
    raw_delta = msg.get("delta_fp")
    if type(raw_delta) is str:
        delta = _cached_qty(raw_delta, "orderbook_delta.delta_fp")
    else:
        key, raw = _get(msg, kind, "delta_fp", "delta")
        delta = _count(raw, f"{kind}.{key}", signed=True)
    ts_ms = msg.get("ts_ms")
    ts = ts_ms / 1000.0 if type(ts_ms) is int and ts_ms >= 0 else _ts(msg, kind, recv_ts)
    market = msg.get("market_ticker")
    if type(market) is not str or not market:
        market = _market_ticker(msg, kind)
    coid = msg.get("client_order_id")
    if coid is not None:
        coid = _str(coid, f"{kind}.client_order_id")
    return BookDelta(
        ticker=market,
        seq=_require_seq(seq, kind),
        ts=ts,
        outcome=outcome,
        price=price,
        delta=delta,
        client_order_id=coid,
    )


def _raw_prices(msg: Mapping[str, Any], kind: str, leg: str) -> list[Price]:
    """The prices of one snapshot ladder as sent (no leg conversion), for form detection."""
    hit = _opt(msg, f"{leg}_dollars_fp", f"{leg}_dollars", leg)
    if hit is None:
        return []
    key, levels = hit
    if not isinstance(levels, Sequence) or isinstance(levels, str):
        raise CfaValueError(f"{kind}.{key}: expected a list of [price, count] levels")
    out = []
    for i, level in enumerate(levels):
        if not isinstance(level, Sequence) or isinstance(level, str) or len(level) != 2:
            raise CfaValueError(f"{kind}.{key}[{i}]: expected [price, count], got {level!r}")
        what = f"{kind}.{key}[{i}].price"
        out.append(_cents(level[0], what) if key == leg else _dollars(level[0], what))
    return out


def yes_price_form(frame: Mapping[str, Any], declared: bool) -> bool:
    """Which pricing form an ``orderbook_snapshot`` is in: True for ``use_yes_price`` (NO levels
    at YES-leg prices), False for the legacy form (NO levels at NO-leg prices).

    Kalshi's frames do not say which form they are in (docs: getting_started/order_direction,
    "Orderbook pricing convention"); the form is the one the subscription asked for
    (``declared``). One check is possible on a snapshot: read in the declared form, a book
    whose best YES bid is at or above its best YES ask is crossed, which Kalshi's book never
    is. When the declared reading is crossed and the other is not, the server did not honour
    the parameter (an old server that ignores it, or one past the flag's removal) and the other
    form is returned. A snapshot with an empty side cannot tell: ``declared``.
    """
    kind = "orderbook_snapshot"
    msg, _ = _split(frame, kind, None)
    yes = _raw_prices(msg, kind, "yes")
    no = _raw_prices(msg, kind, "no")
    if not yes or not no:
        return declared
    best_bid = max(yes)
    crossed_as_yes = best_bid >= min(no)  # NO levels are YES asks
    crossed_as_legacy = best_bid >= ONE_DOLLAR - max(no)  # NO bids at NO prices
    if declared and crossed_as_yes and not crossed_as_legacy:
        return False
    if not declared and crossed_as_legacy and not crossed_as_yes:
        return True
    return declared


class BookForms:
    """The pricing form of each orderbook subscription (sid) of one connection or recording.

    ``default`` is the form the subscriptions asked for (``use_yes_price`` as sent). Each
    snapshot is checked with :func:`yes_price_form` and its verdict is kept for the sid, so the
    deltas that follow are read in the same form as their snapshot. :attr:`switches` counts
    snapshots whose form differed from what their sid had been taken to be.
    """

    __slots__ = ("_by_sid", "default", "switches")

    def __init__(self, default: bool) -> None:
        self.default = default
        self.switches = 0
        self._by_sid: dict[Any, bool] = {}

    def switch(self, sid: Any) -> bool:
        """Take ``sid`` to be in the other form from now on (evidence from outside the book,
        see :class:`cfa.exchange.kalshi.ws.KalshiFeed`); returns the new form."""
        form = not self._by_sid.get(sid, self.default)
        self._by_sid[sid] = form
        self.switches += 1
        return form

    def of(self, frame: Mapping[str, Any]) -> bool:
        """The form to read this book frame in (other frame types: the default)."""
        sid = frame.get("sid")
        current = self._by_sid.get(sid, self.default)
        if frame.get("type") == "orderbook_snapshot":
            form = yes_price_form(frame, current)
            if form != current:
                self.switches += 1
            self._by_sid[sid] = form
            return form
        return current


# -- trades and tickers --------------------------------------------------------------------------

_TAKER_BOOK = {"bid": Side.BID, "ask": Side.ASK}
_TAKER_OUTCOME = {"yes": Side.BID, "no": Side.ASK}


def trade(frame: Mapping[str, Any], *, recv_ts: float | None = None) -> Trade:
    """``trade`` (WebSocket, or a REST ``/markets/trades`` item) → :class:`Trade`.

    ``price`` is the YES price (``yes_price_dollars``; else ``1 − no_price_dollars``; else legacy
    cents ``yes_price``). ``taker_side`` is on the YES leg: ``taker_book_side`` as is, else
    ``taker_outcome_side`` / legacy ``taker_side`` with ``yes`` → bid (the taker bought YES) and
    ``no`` → ask.
    """
    kind = "trade"
    msg, _ = _split(frame, kind, None)
    _, trade_id = _get(msg, kind, "trade_id")
    pkey, pvalue = _get(msg, kind, "yes_price_dollars", "yes_price", "no_price_dollars", "no_price")
    if pkey.endswith("_dollars"):
        price = _dollars(pvalue, f"{kind}.{pkey}")
    else:
        price = _cents(pvalue, f"{kind}.{pkey}")
    if pkey.startswith("no_"):
        price = ONE_DOLLAR - price
    key, raw = _get(msg, kind, "count_fp", "count")
    count = _count(raw, f"{kind}.{key}")
    side_key, side_value = _get(msg, kind, "taker_book_side", "taker_outcome_side", "taker_side")
    table = _TAKER_BOOK if side_key == "taker_book_side" else _TAKER_OUTCOME
    if side_value not in table:
        raise CfaValueError(f"{kind}.{side_key}: unexpected value {side_value!r}")
    return Trade(
        ticker=_market_ticker(msg, kind),
        trade_id=_str(trade_id, f"{kind}.trade_id"),
        ts=_ts(msg, kind, recv_ts),
        price=price,
        count=count,
        taker_side=table[side_value],
    )


def ticker(frame: Mapping[str, Any], *, recv_ts: float | None = None) -> Ticker:
    """``ticker`` → :class:`Ticker` (best YES bid/ask with sizes, last trade, volume, OI, ts).

    Requires the best bid and ask (``yes_bid_dollars``/``yes_ask_dollars``, or legacy cents
    ``yes_bid``/``yes_ask``); the other fields are optional. A bid of 0 or an ask of $1 means that
    side is empty and becomes ``None``.
    """
    kind = "ticker"
    msg, _ = _split(frame, kind, None)
    bid = _price_field(msg, kind, "yes_bid_dollars", "yes_bid")
    ask = _price_field(msg, kind, "yes_ask_dollars", "yes_ask")
    return Ticker(
        ticker=_market_ticker(msg, kind),
        ts=_ts(msg, kind, recv_ts),
        yes_bid=bid if bid > 0 else None,
        yes_ask=ask if ask < ONE_DOLLAR else None,
        yes_bid_size=_opt_count(msg, kind, "yes_bid_size_fp"),
        yes_ask_size=_opt_count(msg, kind, "yes_ask_size_fp"),
        last_price=_opt_price(msg, kind, "price_dollars", "price"),
        last_trade_size=_opt_count(msg, kind, "last_trade_size_fp"),
        volume=_opt_count(msg, kind, "volume_fp", "volume"),
        open_interest=_opt_count(msg, kind, "open_interest_fp", "open_interest"),
    )


def parse_frame(
    frame: Mapping[str, Any], *, recv_ts: float | None = None, use_yes_price: bool = False
) -> WsRecord | None:
    """Dispatch a full frame on its ``type``; ``None`` for control frames (subscribed, ok, ...).

    ``error`` frames and unknown types are returned as ``None`` too: the caller decides what a
    subscription error means. Only the four :data:`MARKET_DATA_TYPES` are parsed.
    """
    if not isinstance(frame, Mapping):
        raise CfaValueError(f"frame: not a JSON object: {type(frame).__name__}")
    ftype = frame.get("type")
    if ftype == "orderbook_delta":
        return orderbook_delta(frame, recv_ts=recv_ts, use_yes_price=use_yes_price)
    if ftype == "orderbook_snapshot":
        return orderbook_snapshot(frame, recv_ts=recv_ts, use_yes_price=use_yes_price)
    if ftype == "ticker":
        return ticker(frame, recv_ts=recv_ts)
    if ftype == "trade":
        return trade(frame, recv_ts=recv_ts)
    if ftype is None:
        raise CfaValueError("frame: missing type")
    return None


# -- REST Market object --------------------------------------------------------------------------


def _structure_name(grid: PriceGrid) -> str:
    for name in STRUCTURES:
        if PriceGrid.from_structure(name) == grid:
            return name
    return "custom"


def parse_market(
    market_json: Mapping[str, Any],
    *,
    series_ticker: str | None = None,
    fee_type: str | None = None,
    fee_multiplier: str | int | float | Decimal | None = None,
) -> MarketInfo:
    """A REST Market object (or ``{"market": {...}}``) → :class:`MarketInfo`.

    * grid: ``price_ranges`` (authoritative); else the named ``price_level_structure``; else a
      legacy ``tick_size`` of 1 cent (``linear_cent``); otherwise an error.
    * times: ``close_time`` (required) and ``open_time`` are RFC 3339 UTC.
    * series: Kalshi's Market object has no series ticker; it is ``series_ticker`` if given, else
      the market's own ``series_ticker`` field, else the event ticker's prefix before the first
      ``-`` (``KXBTC15M-26MAY140045`` → ``KXBTC15M``).
    * shard: ``exchange_index`` (Exchange Sharding, "Market Data": the authoritative source of
      the market's matching engine; ticker formats do not tell it) — an integer >= 0; absent or
      null (markets from before sharding) means shard 0.
    * fees live on the Series object (``fee_type``, ``fee_multiplier``): pass them in. A market's
      own ``fee_type``/``fee_multiplier`` fields (event overrides some feeds copy in) are used when
      the arguments are absent; otherwise :class:`FeeSchedule`'s defaults apply.
    """
    kind = "market"
    if "market" in market_json and isinstance(market_json["market"], Mapping):
        market_json = market_json["market"]
    if not isinstance(market_json, Mapping):
        raise CfaValueError("market: not a JSON object")
    m = market_json
    tick = _str(_get(m, kind, "ticker")[1], "market.ticker")
    event = _str(_get(m, kind, "event_ticker")[1], "market.event_ticker")
    series = series_ticker or m.get("series_ticker") or event.split("-", 1)[0]

    structure = m.get("price_level_structure")
    if m.get("price_ranges") is not None:
        ranges = m["price_ranges"]
        if not isinstance(ranges, Sequence) or isinstance(ranges, str):
            raise CfaValueError("market.price_ranges: expected a list of {start, end, step}")
        grid = PriceGrid.from_price_ranges(ranges)
    elif structure is not None:
        grid = PriceGrid.from_structure(_str(structure, "market.price_level_structure"))
    elif m.get("tick_size") == 1:
        grid = PriceGrid.from_structure("linear_cent")
    else:
        raise CfaValueError("market: missing price_ranges (and price_level_structure)")
    if structure is None:
        structure = _structure_name(grid)

    ftype = fee_type if fee_type is not None else m.get("fee_type")
    fmult = fee_multiplier if fee_multiplier is not None else m.get("fee_multiplier")
    fee = FeeSchedule()
    if ftype is not None or fmult is not None:
        mult = fee.multiplier
        if fmult is not None:
            if isinstance(fmult, bool) or not isinstance(fmult, str | int | float | Decimal):
                raise CfaValueError(f"market.fee_multiplier: not a number: {fmult!r}")
            try:
                mult = Decimal(str(fmult))
            except ArithmeticError as exc:
                raise CfaValueError(f"market.fee_multiplier: not a number: {fmult!r}") from exc
            if not mult.is_finite() or mult < 0:
                raise CfaValueError(f"market.fee_multiplier: must be >= 0: {fmult!r}")
        fee = FeeSchedule(
            fee_type=_str(ftype, "market.fee_type") if ftype is not None else fee.fee_type,
            multiplier=mult,
        )

    close_ts = parse_rfc3339(_get(m, kind, "close_time")[1], "market.close_time")
    open_ts = parse_rfc3339(m["open_time"], "market.open_time") if m.get("open_time") else 0.0
    title = m.get("title") or m.get("yes_sub_title") or tick
    subtitle = m.get("subtitle") or m.get("yes_sub_title") or ""
    rules = "\n\n".join(r for r in (m.get("rules_primary"), m.get("rules_secondary")) if r)
    return MarketInfo(
        ticker=tick,
        event_ticker=event,
        series_ticker=str(series),
        title=str(title),
        price_ranges=grid.ranges,
        close_ts=close_ts,
        open_ts=open_ts,
        price_level_structure=str(structure),
        fee=fee,
        subtitle=str(subtitle),
        rules=rules,
        status=str(m.get("status") or "active"),
        exchange_index=parse_exchange_index(m.get("exchange_index"), f"market {tick}"),
        strike_type=str(m.get("strike_type") or ""),
        floor_strike=_strike(m.get("floor_strike"), f"market {tick}: floor_strike"),
        cap_strike=_strike(m.get("cap_strike"), f"market {tick}: cap_strike"),
    )


def _strike(value: Any, what: str) -> float | None:
    """A Kalshi strike (a JSON number; absent or null: None); anything else is an error."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CfaValueError(f"{what}: not a number: {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise CfaValueError(f"{what}: not finite: {value!r}")
    return v


def parse_exchange_index(value: Any, what: str) -> int:
    """A Kalshi ``exchange_index`` field → shard number (>= 0). ``None`` (field absent on
    pre-sharding objects) is shard 0; anything but a non-negative integer is an error."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CfaValueError(f"{what}: exchange_index must be an integer >= 0, got {value!r}")
    return value
