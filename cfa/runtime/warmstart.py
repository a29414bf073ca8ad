"""Warm start: seed σ and the intensity fit from a venue's recent history before the first quote.

A live market otherwise quotes only once σ is warm — ``horizon + (min_samples − 1)·interval``
seconds of live book (175 s with the default policy) — or when ``warmup.max_s`` runs out. When
the venue can report the market's past (:class:`cfa.exchange.history.HistorySource`: Kalshi's
1-minute candlesticks and public trades over the last ``HISTORY_S`` seconds), the session calls
:func:`warm_start` before it opens the stream:

* **σ**: the candles' closing mids seed the loop's :class:`~cfa.core.estimators.LogitVolatility`
  (:meth:`~cfa.core.estimators.LogitVolatility.seed`: the same two-scale estimator, its weight
  ageing as live evidence comes). With at least ``warmup.min_samples`` long returns from a
  history whose last two-sided candle is at most ``MAX_STALE_S`` old, σ is warm: the loop goes
  READY on its first two-sided book, and the σ it sets (``source="warmup"``) names the history.
* **k** (and A): the trades' depths from the mid of their minute are fitted as the live
  calibration fits them (:func:`~cfa.core.estimators.fit_intensity` over the span the trades
  cover); k is set at once (``source="warmup"``, within the policy's k bounds). A is not a
  store parameter (the policy's ``quoting.A``, used by GLFT only): it is reported, as the live
  calibration reports it.
* **fallback**: no history, too little, too old, or an error fetching it (REST error, a shape
  that does not parse, no answer within ``FETCH_TIMEOUT_S``) leaves the loop on the cold path
  — today's warm-up — and says why.

Each market gets one ``risk_events`` row of kind ``warm_start`` (code ``seeded`` when σ was
seeded, ``cold`` otherwise) whose detail says what was fetched (window, requests, candles,
two-sided candles, trades, whether the trade cap was hit), what was used, and the history
itself in compact form (``history``: what the run knew; an exact replay seeds from it, see
:meth:`cfa.exchange.replay.AuditReplayExchange.get_history`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from cfa.core.estimators import fit_intensity, trade_depths
from cfa.core.types import PRICE_SCALE, CfaValueError
from cfa.exchange.base import ExchangeError
from cfa.exchange.history import HistorySource, MarketHistory, history_to_dict
from cfa.runtime.loop import MarketLoop

HISTORY_S = 7200.0
"""Seconds of history asked for: the last two hours (120 one-minute candles)."""
MAX_STALE_S = 300.0
"""The last two-sided candle must end at most this many seconds before the fetch."""
CONCURRENCY = 4
"""Markets fetched at once (the venue's rate limiter paces the requests anyway)."""
FETCH_TIMEOUT_S = 10.0
"""Wall seconds one market's fetch may take, retries included; then it starts cold."""


async def warm_start(source: HistorySource, loops: Iterable[MarketLoop], now: float) -> None:
    """Fetch each loop's history from ``source`` and seed it (:func:`seed_loop`); ``now`` is
    the venue's clock (epoch seconds) for the audit rows. Never raises for one market's
    failure: that market starts cold and its audit row says why."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(loop: MarketLoop) -> None:
        async with gate:
            try:
                hist = await asyncio.wait_for(
                    source.get_history(loop.market, HISTORY_S), FETCH_TIMEOUT_S
                )
            except TimeoutError:
                why = f"history fetch timed out after {FETCH_TIMEOUT_S:g}s"
                record(loop, now, "cold", {"used": False, "error": why})
                return
            except (ExchangeError, CfaValueError, ValueError) as exc:
                record(loop, now, "cold", {"used": False, "error": f"{type(exc).__name__}: {exc}"})
                return
        seed_loop(loop, hist)

    await asyncio.gather(*(one(loop) for loop in loops))


def record(loop: MarketLoop, now: float, code: str, detail: dict[str, Any]) -> None:
    """The market's one ``warm_start`` audit row."""
    loop.rec.risk_event(
        loop.ticker, now, "warm_start", code, loop.states.effective(loop.ticker).value, detail
    )


def seed_loop(loop: MarketLoop, hist: MarketHistory) -> bool:
    """Seed ``loop``'s σ estimator and k from ``hist``; record what was fetched (the history
    itself included, so a replay of the run seeds the same way) and what was used. Times are
    the history's: its ``end_ts`` is the fetch's "now". True when σ was seeded (the loop goes
    READY on its first two-sided book). Call before the loop's first event."""
    now = hist.end_ts
    mids = hist.mids()
    w = loop.policy.warmup
    fetched: dict[str, Any] = {
        "source": hist.source,
        "window": [hist.start_ts, hist.end_ts],
        "requests": hist.requests,
        "candles": len(hist.candles),
        "two_sided_candles": len(mids),
        "trades": len(hist.trades),
        "trades_complete": hist.trades_complete,
    }
    # σ
    sigma: dict[str, Any] = {"used": False}
    if not mids:
        sigma["why"] = "no candle with a two-sided book"
    elif now - mids[-1][0] > MAX_STALE_S:
        sigma["why"] = f"last two-sided candle {now - mids[-1][0]:.0f}s old (> {MAX_STALE_S:g}s)"
    else:
        n = loop.vol.seed(mids)
        sigma["long_returns"] = n
        if n < w.min_samples:
            loop.vol.seed([])  # too little: forget it, the cold path decides
            sigma["why"] = f"{n} long returns of history < warmup.min_samples {w.min_samples}"
        else:
            sigma.update(used=True, value=round(loop.vol.sigma, 8))
            first = mids[0][0]
            loop.warm_start = (
                f"REST history: {len(mids)} two-sided 1-min candles over "
                f"{hist.end_ts - first:.0f}s to {hist.end_ts:.0f}"
            )
    # k (and A)
    k_info: dict[str, Any] = {"used": False}
    if mids:
        trades = [(t.ts, t.price / PRICE_SCALE) for t in hist.trades]
        depths = trade_depths(trades, mids)
        span = hist.end_ts - max(hist.trades_since(), mids[0][0])
        k_info.update(depths=len(depths), span_s=round(span, 3))
        it = loop.intensity
        fit = fit_intensity(depths, span, it.step, it.levels, it.min_trades) if span > 0 else None
        if fit is None:
            k_info["why"] = (
                f"{len(depths)} trades with a mid (fit needs >= {it.min_trades} "
                "reaching 3 depth levels)"
            )
        else:
            A, k_raw = fit
            b = loop.policy.params.k
            k = float(f"{min(max(k_raw, b.min), b.max):.4g}")
            k_info.update(used=True, A=round(A, 6), k=k, k_fit=round(k_raw, 4))
            reason = (
                f"warm start: fit of λ(δ)=A·exp(−kδ) to {len(depths)} REST trades over "
                f"{span:.0f}s: A={A:.3g}/s, k={k:.4g}/$"
            )
            loop.params.set(loop.ticker, "k", k, source="warmup", reason=reason, now=now)
    else:
        k_info["why"] = "no candle mid to measure trade depths from"
    record(
        loop,
        now,
        "seeded" if sigma["used"] else "cold",
        {
            **fetched,
            "used": bool(sigma["used"] or k_info["used"]),
            "sigma": sigma,
            "k": k_info,
            "history": history_to_dict(hist),
        },
    )
    return bool(sigma["used"])
