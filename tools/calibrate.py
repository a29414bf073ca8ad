"""Calibration statistics: real Kalshi order-book captures against the embedded simulator.

Usage::

    .venv/bin/python tools/calibrate.py                    # captures + simulator "calm", markdown
    .venv/bin/python tools/calibrate.py --no-sim --per-market
    .venv/bin/python tools/calibrate.py --scenario calm --seed 7 --duration 900 --json out.json

One statistics function, :func:`measure`, takes any iterable of cfa records
(:class:`BookSnapshot`, :class:`BookDelta`, :class:`Trade`, and Kalshi :class:`Ticker` updates),
for any number of markets, and rebuilds each book with :class:`cfa.core.book.OrderBook`. It is
fed the real captures (``../shared/data/kalshi/kxbtc15m_ws_captures``, or ``$CFA_KALSHI_DATA``;
licensed for use inside the project only, so only summary statistics leave this script) and the
simulator's event stream.

What is measured (units in the names; "time-weighted" = each book state weighted by how long it
lasted, in the records' own clock: Kalshi's exchange time, or the simulator's clock):

* book-update rate: deltas per second over the whole span, and the p50/p90/p99 of deltas per
  1-second bucket (empty seconds count as 0);
* |delta| in contracts (median, p90, mean) and the share of deltas that add size;
* spread, time-weighted, in grid ticks and in dollars, plus the share of time the book is
  two-sided at all (spread stats cover the two-sided time only);
* depth, time-weighted: resting contracts at the best level and within the best 5 levels, each
  side (bid = YES bids, ask = NO bids seen as YES asks), and the number of levels per side;
* tick usage: the share of deltas at sub-cent prices and the coarsest Kalshi price structure
  that every price seen (snapshot levels and deltas, each leg in its own prices) fits;
* trade and ticker rates: trades/s and contracts/s from ``Trade`` records when there are any,
  traded contracts/s from the ``ticker`` channel's running volume when there are tickers.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import math
import os
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cfa.core.book import BookSequenceError, OrderBook
from cfa.core.estimators import LogitVolatility
from cfa.core.grid import STRUCTURES, PriceGrid
from cfa.core.types import (
    ONE_DOLLAR,
    PRICE_SCALE,
    QTY_SCALE,
    BookDelta,
    BookSnapshot,
    Price,
    Trade,
)
from cfa.exchange.captures import (
    MarketCapture,
    captures_root,
    list_datasets,
    load_dataset,
)
from cfa.exchange.kalshi.frames import Ticker
from cfa.risk.policy import Warmup

Record: TypeAlias = BookSnapshot | BookDelta | Trade | Ticker
Stats: TypeAlias = dict[str, Any]

CENT = PRICE_SCALE // 100


# -- weighted distributions ----------------------------------------------------------------------


class Weighted:
    """A distribution of values with weights (seconds): mean and quantiles."""

    __slots__ = ("w",)

    def __init__(self) -> None:
        self.w: dict[float, float] = defaultdict(float)

    def add(self, value: float, weight: float = 1.0) -> None:
        if weight > 0:
            self.w[value] += weight

    def merge(self, other: Weighted) -> None:
        for v, w in other.w.items():
            self.w[v] += w

    @property
    def total(self) -> float:
        return sum(self.w.values())

    def mean(self) -> float | None:
        t = self.total
        return None if t <= 0 else sum(v * w for v, w in self.w.items()) / t

    def quantile(self, q: float) -> float | None:
        """The smallest value whose cumulative weight reaches ``q`` of the total."""
        t = self.total
        if t <= 0:
            return None
        target, acc = q * t, 0.0
        items = sorted(self.w.items())
        for v, w in items:
            acc += w
            if acc >= target - 1e-12 * t:
                return v
        return items[-1][0]

    def share(self, pred: Any) -> float | None:
        t = self.total
        return None if t <= 0 else sum(w for v, w in self.w.items() if pred(v)) / t


# -- per-market book tracking --------------------------------------------------------------------


def _loop_volatility() -> LogitVolatility:
    """The two-scale σ estimator with the default policy's warm-up settings and no prior, as the
    quoting loop would run it on this book."""
    w = Warmup()
    return LogitVolatility(
        interval=w.sigma_interval_s,
        horizon=w.sigma_horizon_s,
        half_life=w.sigma_half_life_s,
        min_samples=w.min_samples,
    )


@dataclass
class _Market:
    """One market's rebuilt book, a sorted price index per leg, and its last state's metrics."""

    book: OrderBook
    grid: PriceGrid | None
    yes_idx: list[Price] = field(default_factory=list)
    no_idx: list[Price] = field(default_factory=list)
    last_ts: float | None = None
    first_ts: float | None = None
    state: tuple[Any, ...] | None = None
    buckets: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    last_volume: int | None = None
    tick_cache: dict[tuple[Price, Price], int] = field(default_factory=dict)
    vol: LogitVolatility = field(default_factory=_loop_volatility)
    vol_samples: int = 0


class BookStats:
    """Accumulates the calibration statistics over a stream of records of one or more markets.

    ``grids`` maps tickers to their price grid (or is one grid for every market); the spread in
    ticks is counted on that grid. Without a grid for a market its spread in ticks is left out.
    """

    def __init__(self, grids: Mapping[str, PriceGrid] | PriceGrid | None = None) -> None:
        self.grids = grids
        self.markets: dict[str, _Market] = {}
        self.n_deltas = 0
        self.n_adds = 0
        self.n_snapshots = 0
        self.n_subcent = 0
        self.book_errors = 0
        self.abs_delta = Weighted()
        self.prices_seen: dict[str, set[Price]] = {"yes": set(), "no": set()}
        self.spread_ticks = Weighted()
        self.spread_dollars = Weighted()
        self.two_sided = Weighted()
        self.depth: dict[str, Weighted] = {
            k: Weighted() for k in ("bid1", "ask1", "bid5", "ask5", "bid_levels", "ask_levels")
        }
        self.mid = Weighted()
        self.sigma = Weighted()  # the warm σ estimate, one value per new long-scale return
        self.n_trades = 0
        self.trade_contracts = 0.0
        self.n_tickers = 0
        self.ticker_volume = 0.0
        self.ticker_volume_changes = 0

    # -- feeding -------------------------------------------------------------------------------

    def _market(self, ticker: str) -> _Market:
        m = self.markets.get(ticker)
        if m is None:
            if isinstance(self.grids, PriceGrid):
                grid: PriceGrid | None = self.grids
            elif self.grids is not None:
                grid = self.grids.get(ticker)
            else:
                grid = None
            m = self.markets[ticker] = _Market(OrderBook(ticker), grid)
        return m

    def add(self, rec: Record) -> None:
        """Feed one record. Book records must come in sequence per market (as a venue sends)."""
        if isinstance(rec, BookDelta | BookSnapshot):
            self._book_event(rec)
        elif isinstance(rec, Trade):
            self.n_trades += 1
            self.trade_contracts += rec.count / QTY_SCALE
        elif isinstance(rec, Ticker):
            self.n_tickers += 1
            m = self._market(rec.ticker)
            if rec.volume is not None:
                if m.last_volume is not None and rec.volume > m.last_volume:
                    self.ticker_volume += (rec.volume - m.last_volume) / QTY_SCALE
                    self.ticker_volume_changes += 1
                m.last_volume = rec.volume

    def _book_event(self, rec: BookSnapshot | BookDelta) -> None:
        m = self._market(rec.ticker)
        t = rec.ts
        if m.first_ts is None:
            m.first_ts = t
        if m.last_ts is not None and m.state is not None:
            self._weigh(m.state, max(0.0, t - m.last_ts))
        m.last_ts = t if m.last_ts is None else max(m.last_ts, t)
        book = m.book
        if isinstance(rec, BookSnapshot):
            self.n_snapshots += 1
            book.apply_snapshot(rec)
            m.yes_idx = sorted(book.yes)
            m.no_idx = sorted(book.no)
            self.prices_seen["yes"].update(book.yes)
            self.prices_seen["no"].update(book.no)
        else:
            self.n_deltas += 1
            self.n_adds += rec.delta > 0
            self.n_subcent += rec.price % CENT != 0
            self.abs_delta.add(abs(rec.delta) / QTY_SCALE)
            m.buckets[math.floor(t)] += 1
            leg = "yes" if rec.outcome.value == "yes" else "no"
            self.prices_seen[leg].add(rec.price)
            if not book.synced:
                return  # waiting for the next snapshot
            ladder = book.yes if leg == "yes" else book.no
            before = rec.price in ladder
            try:
                book.apply_delta(rec)
            except BookSequenceError:
                self.book_errors += 1
                m.state = None
                return
            after = rec.price in ladder
            if before != after:
                idx = m.yes_idx if leg == "yes" else m.no_idx
                if after:
                    bisect.insort(idx, rec.price)
                else:
                    del idx[bisect.bisect_left(idx, rec.price)]
        m.state = self._state(m)
        self._observe_mid(m, t)

    def _observe_mid(self, m: _Market, t: float) -> None:
        if m.state is None or m.state[0] is None or m.state[1] is None:
            return
        bid, ask = m.state[0], m.state[1]
        m.vol.update(t, (bid + ask) / (2 * PRICE_SCALE))
        if m.vol.warm and m.vol.samples > m.vol_samples:
            m.vol_samples = m.vol.samples
            self.sigma.add(m.vol.sigma)

    def _state(self, m: _Market) -> tuple[Any, ...]:
        book = m.book
        yes_top, no_top = m.yes_idx[-5:], m.no_idx[-5:]
        bid1 = book.yes[yes_top[-1]] if yes_top else 0
        ask1 = book.no[no_top[-1]] if no_top else 0
        bid5 = sum(book.yes[p] for p in yes_top)
        ask5 = sum(book.no[p] for p in no_top)
        bid, ask = book.best_bid(), book.best_ask()
        ticks: int | None = None
        if bid is not None and ask is not None and m.grid is not None:
            ticks = m.tick_cache.get((bid, ask))
            if ticks is None:
                ticks = m.tick_cache[(bid, ask)] = _ticks_between(m.grid, bid, ask)
        return (bid, ask, ticks, bid1, ask1, bid5, ask5, len(m.yes_idx), len(m.no_idx))

    def _weigh(self, state: tuple[Any, ...], dt: float) -> None:
        if dt <= 0:
            return
        bid, ask, ticks, bid1, ask1, bid5, ask5, nb, na = state
        two = bid is not None and ask is not None
        self.two_sided.add(1.0 if two else 0.0, dt)
        if two:
            self.spread_dollars.add((ask - bid) / PRICE_SCALE, dt)
            self.mid.add((ask + bid) / (2 * PRICE_SCALE), dt)
            if ticks is not None:
                self.spread_ticks.add(ticks, dt)
        d = self.depth
        d["bid1"].add(bid1 / QTY_SCALE, dt)
        d["ask1"].add(ask1 / QTY_SCALE, dt)
        d["bid5"].add(bid5 / QTY_SCALE, dt)
        d["ask5"].add(ask5 / QTY_SCALE, dt)
        d["bid_levels"].add(nb, dt)
        d["ask_levels"].add(na, dt)

    # -- results -------------------------------------------------------------------------------

    def duration(self) -> float:
        return sum(
            (m.last_ts - m.first_ts)
            for m in self.markets.values()
            if m.first_ts is not None and m.last_ts is not None
        )

    def result(self) -> Stats:
        """The statistics as a flat dict (``None`` where a statistic has no data)."""
        dur = self.duration()
        per_second = Weighted()
        for m in self.markets.values():
            if not m.buckets:
                continue
            lo, hi = min(m.buckets), max(m.buckets)
            for s in range(lo, hi + 1):
                per_second.add(m.buckets.get(s, 0))
        r: Stats = {
            "markets": sum(1 for m in self.markets.values() if m.first_ts is not None),
            "duration_s": dur,
            "snapshots": self.n_snapshots,
            "deltas": self.n_deltas,
            "book_errors": self.book_errors,
            "deltas_per_s_mean": self.n_deltas / dur if dur > 0 else None,
            "deltas_per_s_p50": per_second.quantile(0.5),
            "deltas_per_s_p90": per_second.quantile(0.9),
            "deltas_per_s_p99": per_second.quantile(0.99),
            "abs_delta_contracts_median": self.abs_delta.quantile(0.5),
            "abs_delta_contracts_p90": self.abs_delta.quantile(0.9),
            "abs_delta_contracts_mean": self.abs_delta.mean(),
            "delta_add_share": self.n_adds / self.n_deltas if self.n_deltas else None,
            "two_sided_time_share": self.two_sided.mean(),
            "spread_ticks_p10": self.spread_ticks.quantile(0.1),
            "spread_ticks_p50": self.spread_ticks.quantile(0.5),
            "spread_ticks_p90": self.spread_ticks.quantile(0.9),
            "spread_ticks_mean": self.spread_ticks.mean(),
            "spread_one_tick_share": self.spread_ticks.share(lambda v: v <= 1),
            "spread_dollars_p50": self.spread_dollars.quantile(0.5),
            "spread_dollars_p90": self.spread_dollars.quantile(0.9),
            "spread_dollars_mean": self.spread_dollars.mean(),
            "mid_p10": self.mid.quantile(0.1),
            "mid_p90": self.mid.quantile(0.9),
            "sigma_p10": self.sigma.quantile(0.1),
            "sigma_p50": self.sigma.quantile(0.5),
            "sigma_p90": self.sigma.quantile(0.9),
        }
        for k, w in self.depth.items():
            unit = "" if k.endswith("levels") else "_contracts"
            r[f"depth_{k}{unit}_mean"] = w.mean()
            r[f"depth_{k}{unit}_median"] = w.quantile(0.5)
        r["subcent_delta_share"] = self.n_subcent / self.n_deltas if self.n_deltas else None
        r["extreme_price_level_share"] = _extreme_share(self.prices_seen)
        r["implied_structure"] = implied_structure(self.prices_seen)
        r["trades"] = self.n_trades
        r["trades_per_s"] = self.n_trades / dur if dur > 0 and self.n_trades else None
        r["trade_contracts_per_s"] = (
            self.trade_contracts / dur if dur > 0 and self.n_trades else None
        )
        r["tickers_per_s"] = self.n_tickers / dur if dur > 0 and self.n_tickers else None
        r["ticker_volume_contracts_per_s"] = (
            self.ticker_volume / dur if dur > 0 and self.n_tickers else None
        )
        r["ticker_volume_changes_per_s"] = (
            self.ticker_volume_changes / dur if dur > 0 and self.n_tickers else None
        )
        return r


def _ticks_between(grid: PriceGrid, lo: Price, hi: Price) -> int:
    """Grid steps from ``lo`` up to ``hi`` (both book prices, ``lo`` < ``hi``)."""
    n, p = 0, lo
    while p < hi:
        nxt = grid.next_up(p)
        if nxt is None or nxt > hi:
            return n + 1  # off-grid tail: count it as one step
        p, n = nxt, n + 1
    return n


def _extreme_share(prices: Mapping[str, set[Price]]) -> float | None:
    allp = [p for leg in prices.values() for p in leg]
    if not allp:
        return None
    return sum(1 for p in allp if p < ONE_DOLLAR // 10 or p > ONE_DOLLAR - ONE_DOLLAR // 10) / len(
        allp
    )


def implied_structure(prices: Mapping[str, Iterable[Price]]) -> str:
    """The coarsest named Kalshi structure on whose grid every price seen lies.

    Each leg's prices are in its own terms; the named structures are symmetric, so one check
    covers both. Returns ``"none"`` when no named structure fits.
    """
    seen = {p for leg in prices.values() for p in leg if 0 < p < ONE_DOLLAR}
    fits = []
    for name in STRUCTURES:
        grid = PriceGrid.from_structure(name)
        if all(grid.is_valid(p) for p in seen):
            points = sum(1 for p in range(1, ONE_DOLLAR) if grid.is_valid(p))
            fits.append((points, name))
    return min(fits)[1] if fits else "none"


def measure(
    records: Iterable[Record], grids: Mapping[str, PriceGrid] | PriceGrid | None = None
) -> Stats:
    """The calibration statistics of a stream of records (any number of markets).

    With ``grids=None`` the records are read twice: once to find the price structure their
    levels imply (:func:`implied_structure`), then to measure with that grid.
    """
    if grids is None:
        records = list(records)
        seen: dict[str, set[Price]] = {"yes": set(), "no": set()}
        for rec in records:
            if isinstance(rec, BookSnapshot):
                seen["yes"].update(p for p, _ in rec.yes)
                seen["no"].update(p for p, _ in rec.no)
            elif isinstance(rec, BookDelta):
                seen[rec.outcome.value].add(rec.price)
        name = implied_structure(seen)
        grids = PriceGrid.from_structure(name) if name in STRUCTURES else None
    stats = BookStats(grids)
    for rec in records:
        stats.add(rec)
    out = stats.result()
    if isinstance(grids, PriceGrid):
        out["tick_grid"] = _grid_name(grids)
    elif grids:
        out["tick_grid"] = ", ".join(sorted({_grid_name(g) for g in grids.values()}))
    return out


def _grid_name(grid: PriceGrid) -> str:
    for name in STRUCTURES:
        if PriceGrid.from_structure(name) == grid:
            return name
    return repr(grid)


# -- sources -------------------------------------------------------------------------------------


def capture_records(m: MarketCapture, *, until_close: bool = True) -> list[Record]:
    """One capture window's records; by default only those before the market's close time.

    After close Kalshi clears the book and sends an empty snapshot; that is end-of-life, not
    trading, so it is left out of the statistics.
    """
    recs: list[Record] = []
    for e in m.events:
        if until_close and m.close_ts is not None and e.record.ts >= m.close_ts:
            continue
        recs.append(e.record)
    return recs


def _mid_range(stats: Stats) -> bool:
    """A window whose mid stays within $0.10-$0.90 (p10 and p90, time-weighted)."""
    lo, hi = stats.get("mid_p10"), stats.get("mid_p90")
    return lo is not None and hi is not None and lo >= 0.10 and hi <= 0.90


def load_captures(root: Path | None = None) -> list[MarketCapture]:
    root = root if root is not None else captures_root()
    datasets = list_datasets(root)
    if not datasets:
        raise SystemExit(f"real Kalshi captures not found at {root}; see docs/calibration.md")
    return [m for d in datasets for m in load_dataset(d)]


async def _sim_run(
    scenario: str, seed: int, start_ts: float, duration: float
) -> tuple[list[Record], dict[str, PriceGrid]]:
    from cfa.exchange.sim import SimExchange

    ex = SimExchange.from_scenarios([scenario], seed=seed, start_ts=start_ts, duration=duration)
    await ex.start()
    try:
        markets = await ex.get_markets()
        grids = {mi.ticker: PriceGrid(mi.price_ranges) for mi in markets}
        recs: list[Record] = []
        end = start_ts + duration
        async for ev in ex.stream([mi.ticker for mi in markets]):
            if isinstance(ev, BookSnapshot | BookDelta | Trade):
                if ev.ts > end:
                    break
                recs.append(ev)
        return recs, grids
    finally:
        await ex.close()


def sim_records(
    scenario: str = "calm", seed: int = 7, duration: float = 900.0, start_ts: float | None = None
) -> tuple[list[Record], dict[str, PriceGrid]]:
    """Run the embedded simulator (no own orders) and collect its public market data."""
    if start_ts is None:
        start_ts = 1_778_733_000.0  # 2026-05-14T04:30:00Z, like the first capture window
    return asyncio.run(_sim_run(scenario, seed, start_ts, duration))


# -- report --------------------------------------------------------------------------------------

ROWS: Sequence[tuple[str, str, str]] = (
    ("markets", "market windows", "{:.0f}"),
    ("duration_s", "time covered (s)", "{:.0f}"),
    ("deltas", "book deltas", "{:.0f}"),
    ("deltas_per_s_mean", "deltas/s, mean", "{:.1f}"),
    ("deltas_per_s_p50", "deltas per 1-s bucket, p50", "{:.0f}"),
    ("deltas_per_s_p90", "deltas per 1-s bucket, p90", "{:.0f}"),
    ("deltas_per_s_p99", "deltas per 1-s bucket, p99", "{:.0f}"),
    ("abs_delta_contracts_median", "abs(delta), contracts, median", "{:.1f}"),
    ("abs_delta_contracts_p90", "abs(delta), contracts, p90", "{:.0f}"),
    ("abs_delta_contracts_mean", "abs(delta), contracts, mean", "{:.0f}"),
    ("delta_add_share", "share of deltas adding size", "{:.2f}"),
    ("two_sided_time_share", "time two-sided", "{:.3f}"),
    ("spread_ticks_p10", "spread, ticks, p10 (tw)", "{:.0f}"),
    ("spread_ticks_p50", "spread, ticks, p50 (tw)", "{:.0f}"),
    ("spread_ticks_p90", "spread, ticks, p90 (tw)", "{:.0f}"),
    ("spread_ticks_mean", "spread, ticks, mean (tw)", "{:.2f}"),
    ("spread_one_tick_share", "time at a 1-tick spread", "{:.2f}"),
    ("spread_dollars_p50", "spread, $, p50 (tw)", "{:.4f}"),
    ("spread_dollars_p90", "spread, $, p90 (tw)", "{:.4f}"),
    ("spread_dollars_mean", "spread, $, mean (tw)", "{:.4f}"),
    ("depth_bid1_contracts_median", "best bid size, contracts, median (tw)", "{:.0f}"),
    ("depth_ask1_contracts_median", "best ask size, contracts, median (tw)", "{:.0f}"),
    ("depth_bid1_contracts_mean", "best bid size, contracts, mean (tw)", "{:.0f}"),
    ("depth_ask1_contracts_mean", "best ask size, contracts, mean (tw)", "{:.0f}"),
    ("depth_bid5_contracts_median", "top-5 bid levels, contracts, median (tw)", "{:.0f}"),
    ("depth_ask5_contracts_median", "top-5 ask levels, contracts, median (tw)", "{:.0f}"),
    ("depth_bid_levels_mean", "bid price levels, mean (tw)", "{:.0f}"),
    ("depth_ask_levels_mean", "ask price levels, mean (tw)", "{:.0f}"),
    ("mid_p10", "mid, $, p10 (tw)", "{:.3f}"),
    ("mid_p90", "mid, $, p90 (tw)", "{:.3f}"),
    ("sigma_p10", "σ (two-scale, logit/√s, warm), p10", "{:.4f}"),
    ("sigma_p50", "σ (two-scale, logit/√s, warm), p50", "{:.4f}"),
    ("sigma_p90", "σ (two-scale, logit/√s, warm), p90", "{:.4f}"),
    ("subcent_delta_share", "share of deltas at sub-cent prices", "{:.3f}"),
    ("extreme_price_level_share", "distinct price levels < $0.10 or > $0.90", "{:.2f}"),
    ("implied_structure", "price structure the levels fit", "{}"),
    ("tick_grid", "grid used for ticks", "{}"),
    ("trades_per_s", "trades/s", "{:.2f}"),
    ("trade_contracts_per_s", "traded contracts/s (trades)", "{:.1f}"),
    ("ticker_volume_contracts_per_s", "traded contracts/s (ticker volume)", "{:.1f}"),
    ("ticker_volume_changes_per_s", "ticker updates with new volume /s", "{:.2f}"),
    ("tickers_per_s", "ticker updates/s", "{:.2f}"),
    ("book_errors", "book rebuild errors", "{:.0f}"),
)


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    return spec.format(value)


def _range(values: list[Any], spec: str) -> str:
    nums = [v for v in values if isinstance(v, int | float)]
    if not nums:
        strs = sorted({v for v in values if isinstance(v, str)})
        return ", ".join(strs) if strs else "n/a"
    lo, hi = min(nums), max(nums)
    return (
        _fmt(lo, spec) if _fmt(lo, spec) == _fmt(hi, spec) else f"{_fmt(lo, spec)}–{_fmt(hi, spec)}"
    )


def markdown(columns: Sequence[tuple[str, Stats | list[Stats]]]) -> str:
    """A markdown table: one row per statistic, one column per source (a list = a range)."""
    head = "| statistic | " + " | ".join(name for name, _ in columns) + " |"
    sep = "|---|" + "---:|" * len(columns)
    lines = [head, sep]
    for key, label, spec in ROWS:
        cells = []
        for _, stats in columns:
            if isinstance(stats, list):
                cells.append(_range([s.get(key) for s in stats], spec))
            else:
                cells.append(_fmt(stats.get(key), spec))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="captures dir (default: ../shared/...)")
    ap.add_argument("--no-sim", action="store_true", help="captures only")
    ap.add_argument("--scenario", default="calm", help="simulator scenario (default: calm)")
    ap.add_argument("--seed", type=int, default=7, help="simulator seed (default: 7)")
    ap.add_argument("--duration", type=float, default=900.0, help="simulated seconds (900)")
    ap.add_argument("--per-market", action="store_true", help="also one column per capture")
    ap.add_argument("--json", type=Path, default=None, help="write all statistics as JSON here")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    caps = load_captures(args.data)
    per_market = [(f"{m.ticker}", measure(capture_records(m))) for m in caps]
    pooled = measure(r for m in caps for r in capture_records(m))
    central = [m for m, (_, s) in zip(caps, per_market, strict=True) if _mid_range(s)]
    pooled_central = measure(r for m in central for r in capture_records(m))
    t_caps = time.perf_counter() - t0
    columns: list[tuple[str, Stats | list[Stats]]] = [
        (f"captures, pooled ({len(caps)} windows)", pooled),
        ("captures, range over windows", [s for _, s in per_market]),
        (f"captures, mid-range windows ({len(central)})", pooled_central),
    ]
    out: dict[str, Any] = {
        "captures_pooled": pooled,
        "captures_mid_range": {"markets": [m.ticker for m in central], **pooled_central},
        "captures": dict(per_market),
    }
    sim_note = ""
    if not args.no_sim:
        t1 = time.perf_counter()
        try:
            recs, grids = sim_records(args.scenario, args.seed, args.duration)
        except ImportError as exc:
            sim_note = f"simulator not available ({exc}); captures only"
        else:
            sim = measure(recs, grids)
            columns.append((f"simulator '{args.scenario}' (seed {args.seed})", sim))
            out["simulator"] = {"scenario": args.scenario, "seed": args.seed, **sim}
            sim_note = f"simulator: {time.perf_counter() - t1:.1f} s"
    if args.per_market:
        columns.extend(per_market)
    print(markdown(columns))
    print()
    print(f"machine: {machine()}")
    print(f"captures: {len(caps)} windows, {t_caps:.1f} s" + (f"; {sim_note}" if sim_note else ""))
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
