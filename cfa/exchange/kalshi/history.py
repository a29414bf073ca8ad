"""A Kalshi market's recent past over REST, for the warm start: candlesticks and public trades.

Bounded by construction: one ``GET /series/{s}/markets/{t}/candlesticks`` (1-minute candles over
the window; two hours are 120 candles, far under what one answer carries) and at most
``ceil(max_trades / 1000)`` pages of ``GET /markets/trades`` with ``min_ts``/``max_ts`` — two
requests for the defaults, 20 read tokens of the 200 per second of Kalshi's Basic tier
(getting_started/rate_limits), paid through the client's read bucket like any other read.

Both endpoints are the live tier: data newer than the historical cutoff (about three months,
getting_started/historical_data), which a market open for trading always is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from cfa.core.types import ONE_DOLLAR, CfaValueError, MarketInfo, Price, parse_price, parse_qty
from cfa.exchange.history import Candle, MarketHistory
from cfa.exchange.kalshi import frames
from cfa.exchange.kalshi.rest import KalshiRest

WINDOW_S = 7200.0
"""Default history window, seconds: the last two hours."""
MAX_WINDOW_S = 86_400.0
"""Longest window one candlestick request is asked for (1,440 one-minute candles)."""
MAX_TRADES = 1000
"""Default cap on the public trades read (one page)."""
PERIOD_MIN = 1
"""Candle length, minutes."""


def _close(obj: Any, what: str) -> Price | None:
    """The ``close_dollars`` of an OHLC object, in price units (None when absent or null)."""
    if obj is None:
        return None
    if not isinstance(obj, Mapping):
        raise CfaValueError(f"{what}: expected an object, got {type(obj).__name__}")
    raw = obj.get("close_dollars")
    return None if raw is None else parse_price(raw, f"{what}.close_dollars")


def parse_candle(obj: Mapping[str, Any], period_s: float) -> Candle:
    """One MarketCandlestick (get-market-candlesticks) → :class:`Candle`.

    The closing book is ``yes_bid.close_dollars`` / ``yes_ask.close_dollars``; a bid of $0 or
    an ask of $1 is an empty side (None). Raises :class:`CfaValueError` naming the field for a
    missing ``end_period_ts`` or a malformed price or count.
    """
    end = obj.get("end_period_ts")
    if not isinstance(end, int) or isinstance(end, bool):
        raise CfaValueError(f"candlestick.end_period_ts: expected an integer, got {end!r}")
    bid = _close(obj.get("yes_bid"), "candlestick.yes_bid")
    ask = _close(obj.get("yes_ask"), "candlestick.yes_ask")
    vol = obj.get("volume_fp")
    return Candle(
        end_ts=float(end),
        period_s=period_s,
        bid=None if bid is None or bid <= 0 else bid,
        ask=None if ask is None or ask >= ONE_DOLLAR else ask,
        volume=0 if vol is None else parse_qty(vol, "candlestick.volume_fp"),
    )


async def fetch_history(
    rest: KalshiRest,
    market: MarketInfo,
    now: float,
    window_s: float = WINDOW_S,
    max_trades: int = MAX_TRADES,
) -> MarketHistory:
    """The last ``window_s`` seconds of ``market`` up to ``now`` (epoch seconds).

    Raises ValueError for a window outside ``(0, MAX_WINDOW_S]`` or ``max_trades < 1``; the
    REST errors (:class:`~cfa.exchange.kalshi.errors.KalshiError`) and
    :class:`CfaValueError` for an answer that does not parse pass through.
    """
    if not (0 < window_s <= MAX_WINDOW_S) or not math.isfinite(now):
        raise ValueError(f"window_s must be in (0, {MAX_WINDOW_S:g}] s, got {window_s!r}")
    if max_trades < 1:
        raise ValueError(f"max_trades must be >= 1, got {max_trades}")
    end = int(now)
    start = int(now - window_s)
    raw = await rest.get_market_candlesticks(
        market.series_ticker, market.ticker, start_ts=start, end_ts=end, period_interval=PERIOD_MIN
    )
    candles = sorted((parse_candle(c, 60.0 * PERIOD_MIN) for c in raw), key=lambda c: c.end_ts)
    items, complete, pages = await rest.get_trade_history(
        market.ticker, min_ts=start, max_ts=end, max_items=max_trades
    )
    trades = sorted((frames.trade(t) for t in items), key=lambda t: t.ts)
    source = (
        f"GET /series/{market.series_ticker}/markets/{market.ticker}/candlesticks"
        f"?period_interval={PERIOD_MIN}&start_ts={start}&end_ts={end}; "
        f"GET /markets/trades?ticker={market.ticker}&min_ts={start}&max_ts={end}"
    )
    return MarketHistory(
        ticker=market.ticker,
        start_ts=float(start),
        end_ts=float(end),
        candles=tuple(candles),
        trades=tuple(trades),
        trades_complete=complete,
        requests=1 + pages,
        source=source,
    )
