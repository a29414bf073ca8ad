"""The recorder's batch policy: closed at MAX_BATCH, before another row of the market, by age
(event time) through ``close_aged``, and all at once by ``flush_events``."""

from __future__ import annotations

from typing import Any

import pytest

from cfa.audit.records import MAX_BATCH, decode_event
from cfa.core.types import BookDelta, Outcome, Side, Trade
from cfa.runtime.recorder import DEFAULT_MAX_AGE_S, Recorder

T0 = 1_767_225_600.0


class ListSink:
    def __init__(self) -> None:
        self.rows: list[tuple[str, dict[str, Any]]] = []

    def append(self, table: str, row: Any) -> None:
        self.rows.append((table, dict(row)))


def thin_markets(markets: int, per_s: int, seconds: int) -> list[BookDelta]:
    """``per_s`` deltas a second in each of ``markets`` markets, interleaved in time order."""
    out = []
    for k in range(seconds * per_s):
        for m in range(markets):
            ts = T0 + (k + m / markets) / per_s
            out.append(BookDelta(f"M{m:04d}", k + 1, ts, Outcome.YES, 50, 1))
    return out


def run(events: list[BookDelta], *, aged: bool, flush_every: int = 2000) -> ListSink:
    sink = ListSink()
    rec = Recorder(sink, "run")
    for n, ev in enumerate(events, 1):
        rec.market_event(ev)
        if n % flush_every == 0:
            if aged:
                rec.close_aged(ev.ts)
            else:
                rec.flush_events()
    rec.flush_events()
    return sink


def test_thousand_thin_markets_write_many_events_per_row() -> None:
    events = thin_markets(1000, 3, 20)
    old = run(events, aged=False)
    new = run(events, aged=True)
    per_row_old = len(events) / len(old.rows)
    per_row_new = len(events) / len(new.rows)
    assert per_row_old < 2.5  # every batch closed every 2,000 events
    assert per_row_new >= 5.0  # about 3 events/s x 2 s
    # nothing lost, nothing reordered: per market, the same events in the same order
    for sink in (old, new):
        got: dict[str, list[Any]] = {}
        for table, row in sink.rows:
            assert table == "market_events" and row["run_id"] == "run"
            got.setdefault(row["market"], []).extend(
                decode_event(row["market"], it) for it in row["payload"]["events"]
            )
        want: dict[str, list[Any]] = {}
        for ev in events:
            want.setdefault(ev.ticker, []).append(ev)
        assert got == want
    # the age bound: a batch spans at most max_age plus one close period of event time
    period = 2000 / (1000 * 3)
    for _, row in new.rows:
        ts = [it[2] for it in row["payload"]["events"]]
        assert ts[-1] - ts[0] <= DEFAULT_MAX_AGE_S + period + 1e-9


def test_close_aged_closes_only_old_batches() -> None:
    sink = ListSink()
    rec = Recorder(sink, "r", max_age_s=1.0)
    rec.market_event(BookDelta("A", 1, T0, Outcome.YES, 50, 1))
    rec.market_event(BookDelta("B", 1, T0 + 0.5, Outcome.YES, 50, 1))
    rec.market_event(BookDelta("A", 2, T0 + 0.9, Outcome.NO, 40, -1))
    assert rec.close_aged(T0 + 0.99) == 0 and rec.open_batches == 2
    assert rec.close_aged(T0 + 1.0) == 1
    assert [r["market"] for _, r in sink.rows] == ["A"]
    assert sink.rows[0][1]["payload"]["n"] == 2
    assert rec.open_batches == 1
    rec.market_event(BookDelta("A", 3, T0 + 1.2, Outcome.YES, 50, 1))  # a new batch of A
    assert rec.close_aged(T0 + 1.6) == 1  # B (opened at T0 + 0.5)
    assert [r["market"] for _, r in sink.rows] == ["A", "B"]
    rec.flush_events()
    assert [r["market"] for _, r in sink.rows] == ["A", "B", "A"] and rec.open_batches == 0


def test_other_rows_still_close_their_market_first_and_max_batch_holds() -> None:
    sink = ListSink()
    rec = Recorder(sink, "r")
    rec.market_event(BookDelta("A", 1, T0, Outcome.YES, 50, 1))
    rec.market_event(Trade("B", "t1", T0, 50, 1, Side.BID))
    rec.risk_event("A", T0 + 0.1, "breaker", "x", "ok", {})
    assert [(t, r["market"]) for t, r in sink.rows] == [
        ("market_events", "A"),
        ("risk_events", "A"),
    ]
    for k in range(MAX_BATCH):
        rec.market_event(BookDelta("C", k + 2, T0 + k / 1e4, Outcome.YES, 50, 1))
    assert sink.rows[-1][1]["market"] == "C" and sink.rows[-1][1]["payload"]["n"] == MAX_BATCH
    assert rec.open_batches == 1  # B's trade is still open (younger than the age limit)


def test_max_age_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Recorder(ListSink(), "r", max_age_s=0)
