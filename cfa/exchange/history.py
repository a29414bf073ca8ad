"""A market's recent past from a venue: the optional warm-start capability.

A venue that can tell what a market did over the last hours (Kalshi over REST: 1-minute
candlesticks and public trades) implements :class:`HistorySource`; the runtime checks for it and
seeds σ and the intensity fit from the :class:`MarketHistory` before the first quote
(:mod:`cfa.runtime.warmstart`). Venues without it (the simulator, replays) start cold. Units are
cfa's: prices in $0.0001 on the YES leg, counts in 0.01 contract, time in epoch seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from cfa.core.types import PRICE_SCALE, CfaValueError, MarketInfo, Price, Qty, Side, Trade


@dataclass(frozen=True, slots=True)
class Candle:
    """One period of a market: the best YES bid and ask at its end, and the volume in it.

    ``bid`` / ``ask`` are None when that side of the book was empty at the end of the period.
    """

    end_ts: float
    """Inclusive end of the period, epoch seconds."""
    period_s: float
    """Length of the period, seconds."""
    bid: Price | None
    ask: Price | None
    volume: Qty

    @property
    def mid(self) -> float | None:
        """Mid of the closing book in dollars, None unless both sides were there uncrossed."""
        if self.bid is None or self.ask is None or self.bid >= self.ask:
            return None
        return (self.bid + self.ask) / (2 * PRICE_SCALE)


@dataclass(frozen=True, slots=True)
class MarketHistory:
    """What a venue reported of one market over ``[start_ts, end_ts]``.

    ``trades_complete`` is False when the trade fetch stopped at its cap with older trades of
    the window left unread: the trades then cover only ``[trades[0].ts, end_ts]``.
    """

    ticker: str
    start_ts: float
    end_ts: float
    candles: tuple[Candle, ...]
    """Oldest first."""
    trades: tuple[Trade, ...]
    """Public trades, oldest first."""
    trades_complete: bool
    requests: int
    """Requests the fetch made (its cost in the venue's read budget)."""
    source: str
    """Where the history came from, for the audit (endpoints and parameters)."""

    def mids(self) -> list[tuple[float, float]]:
        """``(end_ts, mid)`` of every candle with a two-sided closing book, oldest first."""
        return [(c.end_ts, m) for c in self.candles if (m := c.mid) is not None]

    def trades_since(self) -> float:
        """Start of the span the trades cover, epoch seconds (see ``trades_complete``)."""
        if self.trades_complete or not self.trades:
            return self.start_ts
        return max(self.start_ts, self.trades[0].ts)


def history_to_dict(h: MarketHistory) -> dict[str, Any]:
    """``h`` as compact JSON-able data (the audit keeps what a warm start knew):
    candles as ``[end_ts, period_s, bid, ask, volume]``, trades as
    ``[ts, price, count, taker_side, trade_id]``, in cfa units."""
    return {
        "ticker": h.ticker,
        "start_ts": h.start_ts,
        "end_ts": h.end_ts,
        "candles": [[c.end_ts, c.period_s, c.bid, c.ask, c.volume] for c in h.candles],
        "trades": [[t.ts, t.price, t.count, t.taker_side.value, t.trade_id] for t in h.trades],
        "trades_complete": h.trades_complete,
        "requests": h.requests,
        "source": h.source,
    }


def history_from_dict(d: Mapping[str, Any]) -> MarketHistory:
    """Inverse of :func:`history_to_dict`; :class:`CfaValueError` names a malformed part."""
    try:
        ticker = str(d["ticker"])
        return MarketHistory(
            ticker=ticker,
            start_ts=float(d["start_ts"]),
            end_ts=float(d["end_ts"]),
            candles=tuple(
                Candle(
                    float(e),
                    float(p),
                    None if b is None else int(b),
                    None if a is None else int(a),
                    int(v),
                )
                for e, p, b, a, v in d["candles"]
            ),
            trades=tuple(
                Trade(ticker, str(i), float(ts), int(px), int(n), Side(side))
                for ts, px, n, side, i in d["trades"]
            ),
            trades_complete=bool(d["trades_complete"]),
            requests=int(d["requests"]),
            source=str(d["source"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CfaValueError(f"recorded history: malformed ({type(exc).__name__}: {exc})") from None


@runtime_checkable
class HistorySource(Protocol):
    """A venue that can report a market's recent past (optional; the runtime checks)."""

    async def get_history(self, market: MarketInfo, window_s: float) -> MarketHistory:
        """The last ``window_s`` seconds of ``market`` up to now. Raises
        :class:`~cfa.exchange.base.ExchangeError` when the venue cannot say."""
        ...
