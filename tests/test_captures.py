"""Rebuild real Kalshi order books from the recorded captures and check them against the data.

Needs the real captures in ``../shared/data/kalshi/kxbtc15m_ws_captures`` (or ``$CFA_KALSHI_DATA``);
they are licensed for use inside the project only and are never copied into the repository, so
these tests skip when the data is absent. What they found is written up in docs/calibration.md.
"""

from __future__ import annotations

import bisect
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from cfa.core.book import OrderBook
from cfa.core.grid import PriceGrid
from cfa.core.types import BookDelta, BookSnapshot, Price, Qty
from cfa.exchange.captures import (
    CaptureEvent,
    Checkpoint,
    MarketCapture,
    captures_root,
    list_datasets,
    load_dataset,
    write_ws_frames,
)
from cfa.exchange.kalshi import frames
from cfa.exchange.kalshi.frames import Ticker

pytestmark = pytest.mark.data

ROOT = captures_root()
GRID = PriceGrid.from_structure("tapered_deci_cent")  # what KXBTC15M's levels imply

# Deltas per market, as listed in the data's SOURCES.md (a check that nothing is dropped).
EXPECTED_DELTAS = {
    "KXBTC15M-26MAY140045-45": 42_634,
    "KXBTC15M-26MAY140100-00": 59_069,
    "KXBTC15M-26MAY140830-30": 29_134,
    "KXBTC15M-26MAY140845-45": 50_931,
    "KXBTC15M-26MAY150145-45": 12_177,
    "KXBTC15M-26MAY150200-00": 39_462,
    "KXBTC15M-26MAY151515-15": 28_699,
    "KXBTC15M-26MAY151530-30": 59_159,
}


def _datasets() -> list[Path]:
    datasets = list_datasets(ROOT)
    if not datasets:
        pytest.skip(f"real Kalshi captures not found at {ROOT}; see docs/calibration.md")
    return datasets


@pytest.fixture(scope="module")
def captures() -> list[MarketCapture]:
    return [m for d in _datasets() for m in load_dataset(d)]


def _replay(capture: MarketCapture) -> Iterator[tuple[CaptureEvent, OrderBook]]:
    """Apply every book event to an OrderBook; yield each event with the book after it."""
    book = OrderBook(capture.ticker)
    for event in capture.events:
        rec = event.record
        if isinstance(rec, BookSnapshot):
            book.apply_snapshot(rec)
        elif isinstance(rec, BookDelta):
            book.apply_delta(rec)  # raises on a seq gap or a level going negative
        yield event, book


def test_every_market_and_delta_is_read(captures: list[MarketCapture]) -> None:
    deltas = Counter(
        m.ticker for m in captures for e in m.events if isinstance(e.record, BookDelta)
    )
    assert dict(deltas) == EXPECTED_DELTAS
    for m in captures:
        assert isinstance(m.events[0].record, BookSnapshot), m.ticker
        assert m.close_ts is not None and m.strike is not None
        assert any(isinstance(e.record, Ticker) for e in m.events)


def test_seq_is_contiguous_within_each_connection(captures: list[MarketCapture]) -> None:
    for m in captures:
        last: dict[int, int] = {}
        conns = []
        for e in m.events:
            rec = e.record
            if isinstance(rec, Ticker):
                continue
            conns.append(e.conn)
            if e.conn not in last:
                assert isinstance(rec, BookSnapshot) and rec.seq == 1, (m.ticker, e.conn)
            else:
                # Kalshi's post-close snapshots arrive mid-sequence and take the next seq too.
                assert rec.seq == last[e.conn] + 1, (m.ticker, e.conn, last[e.conn], rec.seq)
            last[e.conn] = rec.seq
        assert conns == sorted(conns), m.ticker


def _top(levels: list[tuple[Price, Qty]]) -> tuple[tuple[Price, Qty], ...]:
    return tuple(sorted(levels, reverse=True)[:5])


def _recorder_view(ladder: dict[int, int]) -> tuple[tuple[Price, Qty], ...]:
    return tuple((c * 100, q) for c, q in sorted(ladder.items(), reverse=True)[:5])


def _price_cents(price: Price) -> int:
    """Kalshi's legacy ``price_cents`` of a price: whole cents rounded half up."""
    return (price + 50) // 100


def test_rebuilt_book_matches_recorder_checkpoints(captures: list[MarketCapture]) -> None:
    """Top-5 levels of the rebuilt OrderBook against the recorder's own checkpoints.

    The recorder keeps its book keyed by whole cents, so two things are checked:

    1. Wherever a leg's top 5 levels all lie in $0.11-$0.89 (one grid price per cent), the
       OrderBook's top 5 equal the checkpoint exactly, price and size.
    2. Everywhere, an emulation of the recorder's cents book, fed from the same parsed records,
       reproduces every checkpoint exactly: the remaining differences are the recorder's
       rounding of sub-cent levels, not errors in the rebuilt book.
    """
    with_checkpoints = [m for m in captures if m.checkpoints]
    assert with_checkpoints, "the 043808Z dataset should carry book_checkpoints"
    compared = exact = emulated = total = 0
    for m in with_checkpoints:
        pending: dict[tuple[int, int], list[Checkpoint]] = {}
        for cp in m.checkpoints:
            pending.setdefault((cp.conn, cp.seq), []).append(cp)
        cents: dict[str, dict[int, int]] = {"yes": {}, "no": {}}
        for event, book in _replay(m):
            rec = event.record
            if isinstance(rec, Ticker):
                continue
            if isinstance(rec, BookSnapshot):
                cents = {"yes": {}, "no": {}}
                for leg, ladder in (("yes", rec.yes), ("no", rec.no)):
                    for price, size in ladder:  # ascending: a later level overwrites its cent
                        cents[leg][_price_cents(price)] = size
            else:
                leg_book = cents[rec.outcome.value]
                c = _price_cents(rec.price)
                size = leg_book.get(c, 0) + rec.delta
                if size <= 0:
                    leg_book.pop(c, None)
                else:
                    leg_book[c] = size
            for cp in pending.pop((event.conn, rec.seq), []):
                total += 1
                emulated += (_recorder_view(cents["yes"]), _recorder_view(cents["no"])) == (
                    cp.yes,
                    cp.no,
                )
                for ours, theirs in ((book.bids(5), cp.yes), (_top(list(book.no.items())), cp.no)):
                    if all(1100 <= p <= 8900 for p, _ in ours) and len(ours) == 5:
                        compared += 1
                        exact += tuple(ours) == theirs
        assert not pending, f"{m.ticker}: checkpoints never reached: {sorted(pending)[:3]}"
    assert total == sum(len(m.checkpoints) for m in with_checkpoints)
    assert emulated == total, f"recorder emulation reproduced {emulated}/{total} checkpoints"
    assert compared >= total  # at least half of the 2*total leg views are comparable
    assert exact == compared, f"only {exact}/{compared} comparable top-5 legs matched"


def _within_one_tick(ours: Price | None, theirs: Price | None) -> bool:
    if ours is None or theirs is None:
        return ours is theirs
    lo, hi = min(ours, theirs), max(ours, theirs)
    return hi == lo or GRID.next_up(lo) == hi


def test_rebuilt_book_matches_tickers(captures: list[MarketCapture]) -> None:
    """Best bid and ask of the rebuilt book against Kalshi's ``ticker`` channel.

    * In stream (receive) order the two channels race each other, so only most tickers agree
      exactly; the last ticker of every market does, and nearly all are within one grid tick.
    * Aligned on Kalshi's own timestamps (book after every delta with ``ts_ms`` ≤ the ticker's
      ``ts_ms``), they agree exactly apart from the post-close snapshot, which has no timestamp.
    """
    stream = Counter[str]()
    by_exchange_time = Counter[str]()
    for m in captures:
        states: list[tuple[float, Price | None, Price | None]] = []
        tickers: list[Ticker] = []
        last: tuple[Ticker, Price | None, Price | None] | None = None
        running = 0.0
        for event, book in _replay(m):
            rec = event.record
            if isinstance(rec, Ticker):
                ours = (book.best_bid(), book.best_ask())
                stream["exact" if ours == (rec.yes_bid, rec.yes_ask) else "differ"] += 1
                if _within_one_tick(ours[0], rec.yes_bid) and _within_one_tick(
                    ours[1], rec.yes_ask
                ):
                    stream["one_tick"] += 1
                tickers.append(rec)
                last = (rec, *ours)
            else:
                running = max(running, rec.ts)
                states.append((running, book.best_bid(), book.best_ask()))
        assert last is not None
        t, bid, ask = last
        assert (bid, ask) == (t.yes_bid, t.yes_ask), f"{m.ticker}: last ticker differs"
        times = [s[0] for s in states]
        for t in tickers:
            i = bisect.bisect_right(times, t.ts) - 1
            ok = i >= 0 and states[i][1:] == (t.yes_bid, t.yes_ask)
            by_exchange_time["exact" if ok else "differ"] += 1
    n = stream["exact"] + stream["differ"]
    assert n > 3000
    assert stream["exact"] / n > 0.8, stream
    assert stream["one_tick"] / n > 0.9, stream
    assert by_exchange_time["exact"] / n > 0.995, by_exchange_time


def test_ws_frames_round_trip(captures: list[MarketCapture], tmp_path: Path) -> None:
    """The converter writes Kalshi's own frames; parsing them back gives the reader's records."""
    dataset = min(_datasets(), key=lambda d: sum(f.stat().st_size for f in d.rglob("*.ndjson*")))
    markets = [m for m in captures if m.dataset == dataset.name]
    out = tmp_path / "frames.jsonl"
    n = write_ws_frames(dataset, out)
    with out.open() as fh:
        written = [json.loads(line) for line in fh]
    assert len(written) == n
    assert written[0]["type"] == "subscribed"
    parsed: dict[str, list[object]] = {}
    for frame in written:
        assert set(frame) >= {"type", "msg", "recv_ts"}
        rec = frames.parse_frame(frame, recv_ts=frame["recv_ts"])
        if rec is None:
            assert frame["type"] == "subscribed"
            continue
        assert frame["sid"] in (1, 2)
        assert ("seq" in frame) == (frame["type"] != "ticker")  # tickers carry no seq on the wire
        parsed.setdefault(rec.ticker, []).append(rec)
    for m in markets:
        assert parsed[m.ticker] == list(m.records()), m.ticker
    assert sum(len(v) for v in parsed.values()) == sum(len(m.events) for m in markets)
