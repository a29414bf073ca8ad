"""Kalshi: wire formats (WebSocket frames, REST objects) parsed into cfa records.

:mod:`cfa.exchange.kalshi.frames` holds the pure parsers; the REST/WebSocket client builds on them.
"""

from cfa.exchange.kalshi.frames import (
    MARKET_DATA_TYPES,
    Ticker,
    WsRecord,
    orderbook_delta,
    orderbook_snapshot,
    parse_frame,
    parse_market,
    parse_rfc3339,
    ticker,
    trade,
)

__all__ = [
    "MARKET_DATA_TYPES",
    "Ticker",
    "WsRecord",
    "orderbook_delta",
    "orderbook_snapshot",
    "parse_frame",
    "parse_market",
    "parse_rfc3339",
    "ticker",
    "trade",
]
