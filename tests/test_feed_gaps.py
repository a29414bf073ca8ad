"""Feed replay correctness: data holes, snapshot jumps and the dead-feed watchdog on event time.

Synthetic frame files written in each test (nothing from the captures): a random-walk book, a
delta every half second, with a lost delta, a fresh snapshot or a recorded silence where a test
wants one. The market loop runs over them through a whole :class:`Session`.
"""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path
from typing import Any

from cfa.audit import AuditStore
from cfa.core.types import OrderRequest, TradingState
from cfa.exchange.feed import KalshiFeedExchange, market_info_for
from cfa.risk.policy import load_policy
from cfa.runtime.replay import replay_exact
from cfa.runtime.runs import open_run
from cfa.runtime.session import Session

T0 = 1_800_000_000.0
MKT = "KXTEST-26JAN011200-00"
STEP = 0.5


def _levels(ladder: dict[int, int]) -> list[list[str]]:
    return [[f"{p / 100:.4f}", f"{q:.2f}"] for p, q in sorted(ladder.items())]


def _snap(seq: int, t: float, yes: dict[int, int], no: dict[int, int]) -> dict[str, Any]:
    msg = {"market_ticker": MKT, "market_id": "m"}
    msg |= {"yes_dollars_fp": _levels(yes), "no_dollars_fp": _levels(no)}
    return {"type": "orderbook_snapshot", "sid": 2, "seq": seq, "msg": msg, "recv_ts": t}


def _delta(seq: int, t: float, side: str, cents: int, d: int) -> dict[str, Any]:
    msg = {
        "market_ticker": MKT,
        "market_id": "m",
        "price_dollars": f"{cents / 100:.4f}",
        "delta_fp": f"{d:.2f}",
        "side": side,
        "ts_ms": int(t * 1000),
    }
    return {"type": "orderbook_delta", "sid": 2, "seq": seq, "msg": msg, "recv_ts": t}


def walk(
    n: int,
    *,
    seed: int = 3,
    lose_at: int | None = None,
    snapshot_at: int | None = None,
    silence: tuple[int, float] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Frames of a wandering book (bid and ask one cent either side of a mid that moves by at
    most a cent a step), and the times of what was asked for. ``lose_at`` (step): the first
    delta from that step on is lost (its seq is skipped, the true book still changes);
    ``snapshot_at`` (step): a snapshot of the true book; ``silence`` (step, seconds): no frame
    for that long before the step."""
    rng = random.Random(seed)
    yes, no = {40: 100, 49: 50}, {40: 100, 49: 50}
    bid, ask = 49, 51
    t, seq = T0, 1
    frames = [_snap(1, t, yes, no)]
    marks: dict[str, float] = {}
    for i in range(n):
        t += STEP
        if silence is not None and i == silence[0]:
            marks["silence_from"] = t - STEP
            t += silence[1]
            marks["silence_to"] = t
        step = rng.choice((-1, 0, 0, 1))
        nb, na = min(max(bid + step, 30), 68), min(max(ask + step, 32), 70)
        for side, ladder, old, new in (("yes", yes, bid, nb), ("no", no, 100 - ask, 100 - na)):
            if new == old:
                continue
            for price, d in ((new, 50), (old, -50)):
                ladder[price] = ladder.get(price, 0) + d
                if ladder[price] == 0:
                    del ladder[price]
                seq += 1
                if lose_at is not None and i >= lose_at and "lost" not in marks:
                    marks["lost"] = t  # the recording lost this one
                    continue
                if "lost" in marks:
                    marks.setdefault("found", t)  # the first delta after the lost one
                frames.append(_delta(seq, t, side, price, d))
        bid, ask = nb, na
        if i == snapshot_at:
            seq = 1  # a fresh subscription
            marks["snapshot"] = t + 0.25
            frames.append(_snap(seq, t + 0.25, yes, no))
    return frames, marks


def write(path: Path, frames: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(f) + "\n" for f in frames), encoding="utf-8")
    return path


def _policy() -> Any:
    pol = load_policy("default")
    return pol.model_copy(update={"warmup": pol.warmup.model_copy(update={"max_s": 60.0})})


async def _session(tmp_path: Path, ex: KalshiFeedExchange) -> tuple[Session, Path]:
    db = tmp_path / "run.db"
    store = AuditStore.open(db)
    run_id = store.start_run({"test": "feed-gaps"})
    s = Session(ex, await ex.get_markets(), _policy(), store, run_id)
    await s.run(govern=False)
    store.end_run(run_id, {})
    store.close()
    return s, db


def _exchange(tmp_path: Path, frames: list[dict[str, Any]]) -> KalshiFeedExchange:
    info = market_info_for(MKT, close_ts=T0 + 3 * 3600, structure="linear_cent")
    return KalshiFeedExchange(write(tmp_path / "f.jsonl", frames), markets=[info])


def _watch_quotes(ex: KalshiFeedExchange) -> list[float]:
    """Clock times of every place and amend the loop sends."""
    times: list[float] = []
    place, amend = ex.place_order, ex.amend_order

    async def placing(req: OrderRequest) -> Any:
        times.append(ex.clock.now())
        return await place(req)

    async def amending(order_id: str, price: int, count: int) -> Any:
        times.append(ex.clock.now())
        return await amend(order_id, price, count)

    ex.place_order = placing  # type: ignore[method-assign]
    ex.amend_order = amending  # type: ignore[method-assign]
    return times


def _risk(db: Path, kind: str) -> list[tuple[float, str, str | None]]:
    with sqlite3.connect(db) as c:
        return [
            (ts / 1000, st, src)
            for ts, st, src in c.execute(
                "select ts_ms, state, json_extract(detail, '$.source') from risk_events"
                " where kind = ? order by seq",
                (kind,),
            )
        ]


async def test_no_quote_between_a_gap_and_the_next_snapshot(tmp_path: Path) -> None:
    frames, marks = walk(1200, lose_at=400, snapshot_at=600)
    ex = _exchange(tmp_path, frames)
    quotes = _watch_quotes(ex)
    resting_at_snapshot: list[int] = []
    on_frame = ex._frame

    def frame(line: bytes) -> None:
        f = json.loads(line)
        if f["type"] == "orderbook_snapshot" and f["recv_ts"] == marks["snapshot"]:
            resting_at_snapshot.append(len(ex._resting))
        on_frame(line)

    ex._frame = frame  # type: ignore[method-assign]
    s, db = await _session(tmp_path, ex)
    gap, snapshot = marks["found"], marks["snapshot"]  # the delta that shows the gap
    assert [q for q in quotes if q < gap], "the loop should quote before the gap"
    assert not [q for q in quotes if gap <= q < snapshot], "quoted on a book with a hole"
    assert [q for q in quotes if q >= snapshot], "the loop should quote again after the snapshot"
    # the loop's own resync, on the delta that showed the gap
    assert [round(t, 3) for t, _, _ in _risk(db, "resync")] == [round(gap, 3)]
    assert resting_at_snapshot == [0]  # the resync at the gap cancelled what rested
    h = ex.health(MKT)
    assert (h.gaps, h.jumps, h.holes, h.resyncs) == (1, 0, 1, 1)
    assert 0 < h.blind_s <= snapshot - gap
    assert s.loops[MKT].error is None and s.leftover_orders == 0


async def test_a_snapshot_that_differs_from_the_rebuilt_book_is_a_hole(tmp_path: Path) -> None:
    # a delta lost just before a fresh snapshot leaves no sign in seq (the snapshot restarts
    # it), but the snapshot's book is not the one the deltas built
    frames, _ = walk(300, snapshot_at=200)
    i = next(
        k for k, f in enumerate(frames) if f["type"] == "orderbook_snapshot" and f["seq"] == 1 and k
    )
    lost = max(k for k in range(i) if frames[k]["type"] == "orderbook_delta")
    del frames[lost]
    ex = _exchange(tmp_path, frames)
    async for _ in ex.stream([MKT]):
        pass
    h = ex.health(MKT)
    assert (h.gaps, h.jumps, h.holes, h.resyncs) == (0, 1, 1, 1)
    assert ex.holes == {MKT: 1} and ex.gaps == {MKT: 0}


async def test_an_identical_snapshot_is_a_resync_not_a_hole(tmp_path: Path) -> None:
    frames, _ = walk(300, snapshot_at=200)
    ex = _exchange(tmp_path, frames)
    async for _ in ex.stream([MKT]):
        pass
    h = ex.health(MKT)
    assert (h.gaps, h.jumps, h.holes, h.resyncs, h.blind_s) == (0, 0, 0, 1, 0.0)


async def test_a_recorded_silence_halts_through_the_feed_watchdog_and_resumes(
    tmp_path: Path,
) -> None:
    frames, marks = walk(1000, silence=(500, 20.0))
    # the first frame after the silence (a step that moves nothing writes none)
    marks["silence_to"] = min(f["recv_ts"] for f in frames if f["recv_ts"] >= marks["silence_to"])
    ex = _exchange(tmp_path, frames)
    quotes = _watch_quotes(ex)
    resting_after_silence: list[int] = []
    cancel_all = ex.cancel_all

    async def cancelling(ticker: str | None = None) -> Any:
        out = await cancel_all(ticker)
        if ex.clock.now() == marks["silence_to"]:
            resting_after_silence.append(len(ex._resting))
        return out

    ex.cancel_all = cancelling  # type: ignore[method-assign]
    s, db = await _session(tmp_path, ex)
    states = [
        (round(t, 3), st) for t, st, src in _risk(db, "trading_state") if src == "feed_watchdog"
    ]
    end = marks["silence_to"]
    assert states == [(round(end, 3), "HALTED"), (round(end, 3), "ACTIVE")]
    assert resting_after_silence and resting_after_silence[-1] == 0  # the halt cancelled all
    assert [q for q in quotes if q < marks["silence_from"]], "quoted before the silence"
    assert [q for q in quotes if q >= end], "quoting resumes once events flow again"
    assert s.states.global_state is TradingState.ACTIVE


async def test_a_run_with_a_hole_and_a_silence_replays_exactly(tmp_path: Path) -> None:
    # the loop's resync on a recorded run finds no fresh book (the replay has none to give):
    # it waits for the recorded snapshot, so the replayed orders are the recorded ones
    frames, _ = walk(1200, lose_at=400, snapshot_at=600, silence=(800, 20.0))
    ex = _exchange(tmp_path, frames)
    store = AuditStore.open(tmp_path / "run.db")
    pol = _policy()
    s = await open_run(ex, store, pol, {"policy": pol.model_dump(mode="json")})
    await s.run(govern=False)
    store.end_run(s.run_id, {})
    store.close()
    assert ex.health(MKT).gaps == 1
    report = await replay_exact(tmp_path / "run.db", s.run_id)
    assert report.ok and report.compared > 100, report.mismatches[:1]
    assert [r.error for r in report.summaries] == [None]
