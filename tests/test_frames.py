"""Kalshi WebSocket frame and REST Market parsing (cfa.exchange.kalshi.frames).

Every frame here is written by hand from the documented shapes in reference/kalshi-api.md §4-5
and kalshi-asyncapi.yaml (their doc examples included); no recorded data is used.
"""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest

from cfa.core.book import OrderBook
from cfa.core.grid import PriceGrid
from cfa.core.types import BookDelta, BookSnapshot, CfaValueError, Outcome, Side, Trade
from cfa.exchange.kalshi import frames
from cfa.exchange.kalshi.frames import Ticker

SNAPSHOT = {
    "type": "orderbook_snapshot",
    "sid": 2,
    "seq": 2,
    "msg": {
        "market_ticker": "FED-23DEC-T3.00",
        "market_id": "9b0f6b43-5b68-4f9f-9f02-9a2d1b8ac1a1",
        "yes_dollars_fp": [["0.0800", "300.00"], ["0.2200", "333.00"]],
        "no_dollars_fp": [["0.5400", "20.00"], ["0.5600", "146.00"]],
    },
}
DELTA = {
    "type": "orderbook_delta",
    "sid": 2,
    "seq": 3,
    "msg": {
        "market_ticker": "FED-23DEC-T3.00",
        "market_id": "9b0f6b43-5b68-4f9f-9f02-9a2d1b8ac1a1",
        "price_dollars": "0.960",
        "delta_fp": "-54.00",
        "side": "yes",
        "ts": "2022-11-22T20:44:01Z",
        "ts_ms": 1669149841000,
    },
}
TRADE = {
    "type": "trade",
    "sid": 3,
    "seq": 1,
    "msg": {
        "count_fp": "2.00",
        "market_ticker": "KXMAXSHARDINGTEST-26AUG2818-T57399.99",
        "no_price_dollars": "0.2000",
        "taker_book_side": "ask",
        "taker_outcome_side": "no",
        "taker_side": "no",
        "trade_id": "879217f6-553e-7222-2304-fb05558d63d0",
        "ts": 1786956599,
        "ts_ms": 1786956599391,
        "yes_price_dollars": "0.8000",
    },
}
TICKER = {
    "type": "ticker",
    "sid": 11,
    "msg": {
        "market_ticker": "FED-23DEC-T3.00",
        "market_id": "9b0f6b43-5b68-4f9f-9f02-9a2d1b8ac1a1",
        "price_dollars": "0.480",
        "yes_bid_dollars": "0.450",
        "yes_ask_dollars": "0.530",
        "volume_fp": "33896.00",
        "open_interest_fp": "20422.00",
        "dollar_volume": 16948,
        "dollar_open_interest": 10211,
        "yes_bid_size_fp": "300.00",
        "yes_ask_size_fp": "150.00",
        "last_trade_size_fp": "25.00",
        "ts": 1669149841,
        "ts_ms": 1669149841000,
        "time": "2022-11-22T20:44:01Z",
    },
}


def edited(frame: dict, **msg_changes: object) -> dict:
    """A deep copy of ``frame`` with msg keys set (value ``...`` deletes the key)."""
    out = copy.deepcopy(frame)
    for key, value in msg_changes.items():
        if value is ...:
            out["msg"].pop(key, None)
        else:
            out["msg"][key] = value
    return out


# -- orderbook_snapshot --------------------------------------------------------------------------


def test_snapshot_doc_example() -> None:
    snap = frames.orderbook_snapshot(SNAPSHOT, recv_ts=1700000000.25)
    assert snap == BookSnapshot(
        ticker="FED-23DEC-T3.00",
        seq=2,
        ts=1700000000.25,
        yes=((800, 30000), (2200, 33300)),
        no=((5400, 2000), (5600, 14600)),
    )


def test_snapshot_bare_msg_with_seq_and_unsorted_fractional_levels() -> None:
    msg = {
        "market_ticker": "KXBTC15M-X",
        "market_id": "m",
        "yes_dollars_fp": [["0.6400", "58.30"], ["0.0010", "1602.00"], ["0.5000", "0.00"]],
    }
    snap = frames.orderbook_snapshot(msg, seq=1, recv_ts=5.0)
    assert snap.seq == 1
    assert snap.yes == ((10, 160200), (6400, 5830))  # ascending; zero-size level dropped
    assert snap.no == ()  # absent key: empty side


def test_snapshot_of_empty_book_has_no_ladder_keys() -> None:
    frame = edited(SNAPSHOT, yes_dollars_fp=..., no_dollars_fp=...)
    snap = frames.orderbook_snapshot(frame, recv_ts=1.0)
    assert snap.yes == () and snap.no == ()


def test_snapshot_legacy_shapes() -> None:
    cents = {"market_ticker": "T", "yes": [[8, 300]], "no": [[54, 20]]}
    snap = frames.orderbook_snapshot(cents, seq=4, recv_ts=1.0)
    assert snap.yes == ((800, 30000),) and snap.no == ((5400, 2000),)
    dollars = {"market_ticker": "T", "yes_dollars": [["0.080", 300]], "no_dollars": None}
    snap = frames.orderbook_snapshot(dollars, seq=4, recv_ts=1.0)
    assert snap.yes == ((800, 30000),) and snap.no == ()


def test_snapshot_use_yes_price_converts_no_levels_back_to_no_terms() -> None:
    frame = edited(SNAPSHOT, no_dollars_fp=[["0.4400", "17.00"]])
    snap = frames.orderbook_snapshot(frame, recv_ts=1.0, use_yes_price=True)
    assert snap.no == ((5600, 1700),)


# The doc example's book (YES bids $0.08/$0.22, NO bids $0.54/$0.56) as a use_yes_price
# subscription receives it: NO levels at YES-leg prices ($1 − NO price), ascending.
SNAPSHOT_YES = edited(SNAPSHOT, no_dollars_fp=[["0.4400", "146.00"], ["0.4600", "20.00"]])
# A book around 45¢ (YES bids 40-47¢, NO bids 42-51¢: YES asks 49-58¢) in both forms.
NEAR_MID_LEGACY = edited(
    SNAPSHOT,
    yes_dollars_fp=[["0.4000", "5.00"], ["0.4700", "9.00"]],
    no_dollars_fp=[["0.4200", "3.00"], ["0.5100", "7.00"]],
)
NEAR_MID_YES = edited(NEAR_MID_LEGACY, no_dollars_fp=[["0.4900", "7.00"], ["0.5800", "3.00"]])


def test_both_book_forms_parse_to_the_same_book() -> None:
    legacy = frames.orderbook_snapshot(SNAPSHOT, recv_ts=1.0)
    assert legacy.no == ((5400, 2000), (5600, 14600))
    assert frames.orderbook_snapshot(SNAPSHOT_YES, recv_ts=1.0, use_yes_price=True) == legacy
    # a NO delta in each form lands on the same NO level, and the book is never crossed
    for snap, delta, yes_price in (
        (SNAPSHOT, edited(DELTA, side="no", price_dollars="0.5600"), False),
        (SNAPSHOT_YES, edited(DELTA, side="no", price_dollars="0.4400"), True),
    ):
        book = OrderBook("FED-23DEC-T3.00")
        book.apply_snapshot(frames.orderbook_snapshot(snap, recv_ts=1.0, use_yes_price=yes_price))
        book.apply_delta(frames.orderbook_delta(delta, use_yes_price=yes_price))
        assert book.snapshot().no == ((5400, 2000), (5600, 9200))
        assert book.best_bid() == 2200 and book.best_ask() == 4400


def test_yes_price_form_trusts_what_was_asked_unless_the_book_would_cross() -> None:
    # read in the form asked for, each is a sane book: the asked-for form stands
    assert frames.yes_price_form(NEAR_MID_YES, True) is True
    assert frames.yes_price_form(NEAR_MID_LEGACY, False) is False
    # a server that ignored the parameter: read in the asked-for form the book is crossed
    # (best YES bid 47¢ >= a "YES ask" of 42¢ / of 1 − 58¢), read in the other it is not
    assert frames.yes_price_form(NEAR_MID_LEGACY, True) is False
    assert frames.yes_price_form(NEAR_MID_YES, False) is True
    # the doc example is a sane book in both readings: nothing tells, the asked-for form stands
    assert frames.yes_price_form(SNAPSHOT, True) is True
    assert frames.yes_price_form(SNAPSHOT_YES, False) is False
    # an empty side cannot tell either
    one_sided = edited(NEAR_MID_LEGACY, no_dollars_fp=...)
    assert frames.yes_price_form(one_sided, True) is True
    with pytest.raises(CfaValueError, match="no_dollars_fp"):
        frames.yes_price_form(edited(SNAPSHOT, no_dollars_fp="0.54"), True)


def test_book_forms_follow_each_sid_from_its_snapshot() -> None:
    forms = frames.BookForms(True)
    assert forms.of(NEAR_MID_YES) is True and forms.switches == 0
    other_sid = {**NEAR_MID_LEGACY, "sid": 7}
    assert forms.of(other_sid) is False and forms.switches == 1  # legacy although asked for
    # the deltas of each sid are read in their snapshot's form
    assert forms.of({**DELTA, "sid": 7}) is False
    assert forms.of({**DELTA, "sid": 2}) is True
    book = OrderBook("FED-23DEC-T3.00")
    book.apply_snapshot(frames.orderbook_snapshot(other_sid, recv_ts=1.0, use_yes_price=False))
    assert book.best_bid() == 4700 and book.best_ask() == 4900  # not crossed


@pytest.mark.parametrize(
    ("frame", "kwargs", "needle"),
    [
        (edited(SNAPSHOT, market_ticker=...), {"recv_ts": 1.0}, "market_ticker"),
        (edited(SNAPSHOT, yes_dollars_fp=[["abc", "1.00"]]), {"recv_ts": 1.0}, "yes_dollars_fp[0]"),
        (edited(SNAPSHOT, yes_dollars_fp=[["0.12345", "1.00"]]), {"recv_ts": 1.0}, "$0.0001"),
        (edited(SNAPSHOT, no_dollars_fp=[["0.5400"]]), {"recv_ts": 1.0}, "no_dollars_fp[0]"),
        (edited(SNAPSHOT, no_dollars_fp=[["0.54", "-1.00"]]), {"recv_ts": 1.0}, "negative"),
        (edited(SNAPSHOT, no_dollars_fp="0.54"), {"recv_ts": 1.0}, "no_dollars_fp"),
        (
            edited(SNAPSHOT, yes_dollars_fp=[["0.08", "1.00"], ["0.0800", "2.00"]]),
            {"recv_ts": 1.0},
            "duplicate",
        ),
        (edited(SNAPSHOT, yes_dollars_fp=[["1.5000", "1.00"]]), {"recv_ts": 1.0}, "outside"),
        (SNAPSHOT, {}, "recv_ts"),  # Kalshi snapshots carry no time: the caller must give one
        ({**SNAPSHOT, "seq": None}, {"recv_ts": 1.0}, "seq"),
        ({**SNAPSHOT, "seq": "2"}, {"recv_ts": 1.0}, "orderbook_snapshot.seq"),
        ({**SNAPSHOT, "type": "orderbook_delta"}, {"recv_ts": 1.0}, "frame type"),
        ({**SNAPSHOT, "msg": [1, 2]}, {"recv_ts": 1.0}, "msg"),
        ([1, 2], {"recv_ts": 1.0}, "not a JSON object"),
    ],
)
def test_snapshot_malformed(frame: object, kwargs: dict, needle: str) -> None:
    with pytest.raises(CfaValueError, match="orderbook_snapshot") as err:
        frames.orderbook_snapshot(frame, **kwargs)  # type: ignore[arg-type]
    assert needle in str(err.value)


# -- orderbook_delta -----------------------------------------------------------------------------


def test_delta_doc_example() -> None:
    d = frames.orderbook_delta(DELTA)
    assert d == BookDelta(
        ticker="FED-23DEC-T3.00",
        seq=3,
        ts=1669149841.0,
        outcome=Outcome.YES,
        price=9600,
        delta=-5400,
        client_order_id=None,
    )


def test_delta_no_side_stays_in_no_terms_and_carries_client_order_id() -> None:
    frame = edited(
        DELTA, side="no", price_dollars="0.5600", delta_fp="12.50", client_order_id="cfa-1"
    )
    d = frames.orderbook_delta(frame)
    assert (d.outcome, d.price, d.delta, d.client_order_id) == (Outcome.NO, 5600, 1250, "cfa-1")
    yes_terms = frames.orderbook_delta(edited(frame, price_dollars="0.4400"), use_yes_price=True)
    assert yes_terms.price == 5600


def test_delta_timestamp_fallbacks() -> None:
    assert frames.orderbook_delta(edited(DELTA, ts_ms=...)).ts == 1669149841.0  # RFC 3339 ts
    bare = edited(DELTA, ts_ms=..., ts=...)
    assert frames.orderbook_delta(bare, recv_ts=42.5).ts == 42.5
    assert frames.orderbook_delta(edited(DELTA, ts_ms=1669149841123)).ts == 1669149841.123


def test_delta_legacy_shape_with_seq_argument() -> None:
    msg = {"market_ticker": "T", "price": 96, "delta": -54, "side": "yes"}
    d = frames.orderbook_delta(msg, seq=9, recv_ts=3.0)
    assert (d.seq, d.ts, d.price, d.delta) == (9, 3.0, 9600, -5400)
    # When both shapes are present the current one wins.
    both = {**msg, "price_dollars": "0.9500", "delta_fp": "-1.00"}
    assert frames.orderbook_delta(both, seq=9, recv_ts=3.0).price == 9500
    # A JSON-number dollar price (transition-era payloads) is accepted when it is exact.
    assert frames.orderbook_delta(edited(DELTA, price_dollars=0.5)).price == 5000


@pytest.mark.parametrize(
    ("frame", "needle"),
    [
        (edited(DELTA, delta_fp=...), "delta_fp"),
        (edited(DELTA, price_dollars=...), "price_dollars"),
        (edited(DELTA, side="maybe"), "side"),
        (edited(DELTA, side=...), "side"),
        (edited(DELTA, delta_fp="1.234"), "0.01 contract"),
        (edited(DELTA, delta_fp="NaN"), "delta_fp"),
        (edited(DELTA, price_dollars=0.00005), "price_dollars"),
        (edited(DELTA, ts_ms="1669149841000"), "ts_ms"),
        (edited(DELTA, ts_ms=..., ts="yesterday"), "ts"),
        (edited(DELTA, client_order_id=7), "client_order_id"),
        ({**DELTA, "seq": True}, "seq"),
        ({**DELTA, "seq": -1}, "seq"),
    ],
)
def test_delta_malformed(frame: dict, needle: str) -> None:
    with pytest.raises(CfaValueError, match="orderbook_delta") as err:
        frames.orderbook_delta(frame)
    assert needle in str(err.value)


# -- trade ---------------------------------------------------------------------------------------


def test_trade_doc_example() -> None:
    t = frames.trade(TRADE)
    assert t == Trade(
        ticker="KXMAXSHARDINGTEST-26AUG2818-T57399.99",
        trade_id="879217f6-553e-7222-2304-fb05558d63d0",
        ts=1786956599.391,
        price=8000,
        count=200,
        taker_side=Side.ASK,  # the taker bought NO = sold YES
    )


@pytest.mark.parametrize(
    ("fields", "side"),
    [
        ({"taker_book_side": "bid"}, Side.BID),
        ({"taker_book_side": ..., "taker_outcome_side": "yes"}, Side.BID),
        ({"taker_book_side": ..., "taker_outcome_side": "no"}, Side.ASK),
        ({"taker_book_side": ..., "taker_outcome_side": ..., "taker_side": "yes"}, Side.BID),
        ({"taker_book_side": ..., "taker_outcome_side": ..., "taker_side": "no"}, Side.ASK),
    ],
)
def test_trade_taker_side_on_the_yes_leg(fields: dict, side: Side) -> None:
    assert frames.trade(edited(TRADE, **fields)).taker_side is side


def test_trade_price_fallbacks_and_legacy_shape() -> None:
    assert frames.trade(edited(TRADE, yes_price_dollars=...)).price == 8000  # 1 - no price
    legacy = {
        "trade_id": "t1",
        "market_ticker": "T",
        "yes_price": 35,
        "no_price": 65,
        "count": 10,
        "taker_side": "yes",
        "ts": 1700000000,
    }
    t = frames.trade(legacy)
    assert (t.price, t.count, t.taker_side, t.ts) == (3500, 1000, Side.BID, 1700000000.0)
    rest = {**legacy, "ticker": "T2", "ts": None, "created_time": "2026-01-12T10:00:00.5Z"}
    rest.pop("market_ticker")
    assert frames.trade(rest).ts == pytest.approx(1768212000.5)


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"trade_id": ...}, "trade_id"),
        ({"yes_price_dollars": ..., "no_price_dollars": ...}, "yes_price_dollars"),
        ({"taker_book_side": "buy"}, "taker_book_side"),
        (
            {"taker_book_side": ..., "taker_outcome_side": ..., "taker_side": ...},
            "taker_book_side",
        ),
        ({"count_fp": "-2.00"}, "count_fp"),
        ({"trade_id": ""}, "trade_id"),
    ],
)
def test_trade_malformed(fields: dict, needle: str) -> None:
    with pytest.raises(CfaValueError, match="trade") as err:
        frames.trade(edited(TRADE, **fields))
    assert needle in str(err.value)


# -- ticker --------------------------------------------------------------------------------------


def test_ticker_doc_example() -> None:
    assert frames.ticker(TICKER) == Ticker(
        ticker="FED-23DEC-T3.00",
        ts=1669149841.0,
        yes_bid=4500,
        yes_ask=5300,
        yes_bid_size=30000,
        yes_ask_size=15000,
        last_price=4800,
        last_trade_size=2500,
        volume=3389600,
        open_interest=2042200,
    )


def test_ticker_empty_book_and_legacy_cents() -> None:
    empty = frames.ticker(edited(TICKER, yes_bid_dollars="0.0000", yes_ask_dollars="1.0000"))
    assert empty.yes_bid is None and empty.yes_ask is None
    legacy = {"market_ticker": "T", "yes_bid": 10, "yes_ask": 11, "price": 10, "volume": 5}
    t = frames.ticker(legacy, recv_ts=9.0)
    assert (t.yes_bid, t.yes_ask, t.last_price, t.volume, t.ts) == (1000, 1100, 1000, 500, 9.0)
    assert t.yes_bid_size is None


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"yes_bid_dollars": ...}, "yes_bid_dollars"),
        ({"yes_ask_dollars": "1.2"}, "yes_ask_dollars"),
        ({"volume_fp": "lots"}, "volume_fp"),
        ({"ts_ms": ..., "ts": ..., "time": ...}, "recv_ts"),
        ({"ts_ms": ..., "ts": ..., "time": "2022-11-22T20:44:01"}, "UTC"),
    ],
)
def test_ticker_malformed(fields: dict, needle: str) -> None:
    frame = edited(TICKER, **fields)
    with pytest.raises(CfaValueError, match="ticker") as err:
        frames.ticker(frame)
    assert needle in str(err.value)


# -- dispatch ------------------------------------------------------------------------------------


def test_parse_frame_dispatches_and_skips_control_frames() -> None:
    assert isinstance(frames.parse_frame(SNAPSHOT, recv_ts=1.0), BookSnapshot)
    assert isinstance(frames.parse_frame(DELTA), BookDelta)
    assert isinstance(frames.parse_frame(TRADE), Trade)
    assert isinstance(frames.parse_frame(TICKER), Ticker)
    subscribed = {"id": 1, "type": "subscribed", "msg": {"channel": "orderbook_delta", "sid": 1}}
    ok = {"id": 123, "sid": 456, "seq": 222, "type": "ok", "msg": {"market_tickers": ["A"]}}
    error = {"type": "error", "sid": 3, "seq": 2, "msg": {"code": 13, "msg": "Unsupported action"}}
    for control in (subscribed, ok, error):
        assert frames.parse_frame(control) is None
    with pytest.raises(CfaValueError, match="type"):
        frames.parse_frame({"msg": {}})


def test_parsed_frames_drive_the_order_book() -> None:
    book = OrderBook("FED-23DEC-T3.00")
    book.apply_snapshot(frames.orderbook_snapshot(SNAPSHOT, recv_ts=1.0))
    assert (book.best_bid(), book.best_ask()) == (2200, 4400)
    add = edited(DELTA, price_dollars="0.2500", delta_fp="10.00")
    book.apply_delta(frames.orderbook_delta(add))
    take = {**edited(DELTA, side="no", price_dollars="0.5600", delta_fp="-146.00"), "seq": 4}
    book.apply_delta(frames.orderbook_delta(take))
    assert (book.best_bid(), book.best_ask()) == (2500, 4600)


# -- REST Market ---------------------------------------------------------------------------------

MARKET = {
    "ticker": "KXBTC15M-26MAY140045-45",
    "event_ticker": "KXBTC15M-26MAY140045",
    "market_type": "binary",
    "title": "BTC price up in next 15 mins?",
    "yes_sub_title": "Target Price: $79,291.54",
    "no_sub_title": "Target Price: $79,291.54",
    "rules_primary": "If the price is above the target at close, the market resolves to Yes.",
    "rules_secondary": "",
    "open_time": "2026-05-14T04:30:00Z",
    "close_time": "2026-05-14T04:45:00Z",
    "status": "active",
    "price_level_structure": "tapered_deci_cent",
    "price_ranges": [
        {"start": "0.0000", "end": "0.1000", "step": "0.0010"},
        {"start": "0.1000", "end": "0.9000", "step": "0.0100"},
        {"start": "0.9000", "end": "1.0000", "step": "0.0010"},
    ],
    "yes_bid_dollars": "0.6400",
    "yes_ask_dollars": "0.6600",
    "volume_fp": "441314.98",
}


def test_parse_market_current_shape_with_series_fees() -> None:
    info = frames.parse_market(MARKET, fee_type="quadratic_with_maker_fees", fee_multiplier=0.5)
    assert info.ticker == "KXBTC15M-26MAY140045-45"
    assert info.event_ticker == "KXBTC15M-26MAY140045"
    assert info.series_ticker == "KXBTC15M"  # derived: the Market object has no series field
    assert info.close_ts == 1778733900.0
    assert info.open_ts == 1778733000.0
    assert info.price_level_structure == "tapered_deci_cent"
    assert PriceGrid(info.price_ranges) == PriceGrid.from_structure("tapered_deci_cent")
    assert info.fee.fee_type == "quadratic_with_maker_fees"
    assert info.fee.multiplier == Decimal("0.5")
    assert info.fee.charges_maker
    assert info.title == "BTC price up in next 15 mins?"
    assert info.rules.startswith("If the price")
    # GET /markets/{ticker} wraps the object; an explicit series ticker wins.
    wrapped = frames.parse_market({"market": MARKET}, series_ticker="BTC")
    assert wrapped.series_ticker == "BTC"
    assert wrapped.fee.fee_type == "quadratic" and wrapped.fee.multiplier == 1


def test_parse_market_grid_fallbacks() -> None:
    only_name = {k: v for k, v in MARKET.items() if k != "price_ranges"}
    only_name["price_level_structure"] = "deci_cent"
    assert PriceGrid(frames.parse_market(only_name).price_ranges).tick_above(5000) == 10
    ranges_only = {k: v for k, v in MARKET.items() if k != "price_level_structure"}
    assert frames.parse_market(ranges_only).price_level_structure == "tapered_deci_cent"
    legacy = {k: v for k, v in only_name.items() if k != "price_level_structure"}
    legacy["tick_size"] = 1
    assert frames.parse_market(legacy).price_level_structure == "linear_cent"


@pytest.mark.parametrize(
    ("changes", "kwargs", "needle"),
    [
        ({"close_time": ...}, {}, "close_time"),
        ({"close_time": "soon"}, {}, "close_time"),
        ({"ticker": ...}, {}, "ticker"),
        ({"price_ranges": [{"start": "0.0000", "end": "1.0000"}]}, {}, "price_ranges[0]"),
        ({"price_ranges": ..., "price_level_structure": ...}, {}, "price_ranges"),
        ({"price_ranges": ..., "price_level_structure": "quarter_cent"}, {}, "quarter_cent"),
        ({}, {"fee_multiplier": "half"}, "fee_multiplier"),
        ({}, {"fee_multiplier": -1}, "fee_multiplier"),
    ],
)
def test_parse_market_malformed(changes: dict, kwargs: dict, needle: str) -> None:
    market = dict(MARKET)
    for key, value in changes.items():
        if value is ...:
            market.pop(key)
        else:
            market[key] = value
    with pytest.raises(CfaValueError) as err:
        frames.parse_market(market, **kwargs)
    assert needle in str(err.value)


def test_rfc3339_fractions_and_offsets() -> None:
    assert frames.parse_rfc3339("2026-05-14T04:38:13.06829Z") == pytest.approx(1778733493.06829)
    assert frames.parse_rfc3339("2026-05-14T04:38:13.123456789Z") == pytest.approx(
        1778733493.123456
    )
    assert frames.parse_rfc3339("2026-05-14T06:38:13+02:00") == 1778733493.0
    with pytest.raises(CfaValueError, match="when"):
        frames.parse_rfc3339("2026-05-14", "when")
