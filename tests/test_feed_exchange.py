"""KalshiFeedExchange: replaying a JSONL of Kalshi WS frames as an Exchange.

Hand-written frame files only (nothing copied from the captures), plus one replay of a real
capture window, converted into tmp_path, when ``../shared/data/kalshi`` is present.
"""

from __future__ import annotations

import json
import math
import random
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cfa.agents.reasoners.heuristic import HeuristicReasoner
from cfa.audit import AuditStore
from cfa.core.types import (
    BookDelta,
    BookSnapshot,
    Fill,
    Order,
    OrderRequest,
    OrderStatus,
    Outcome,
    Settlement,
    Side,
    Trade,
)
from cfa.exchange.base import Exchange, OrderRejected
from cfa.exchange.captures import list_datasets
from cfa.exchange.feed import (
    KalshiFeedExchange,
    close_ts_from_ticker,
    market_info_for,
    metadata_path,
    write_feed,
)
from cfa.risk.policy import load_policy
from cfa.runtime.loop import LoopState
from cfa.runtime.session import Session

T0 = 1_800_000_000.0
MKT = "KXTEST-26JAN011200-00"


def _d(p: float) -> str:
    return f"{p:.4f}"


def snap(seq: int, t: float, yes: list[tuple[float, float]], no: list[tuple[float, float]]) -> Any:
    return {
        "type": "orderbook_snapshot",
        "sid": 2,
        "seq": seq,
        "msg": {
            "market_ticker": MKT,
            "market_id": "m",
            "yes_dollars_fp": [[_d(p), f"{q:.2f}"] for p, q in yes],
            "no_dollars_fp": [[_d(p), f"{q:.2f}"] for p, q in no],
        },
        "recv_ts": t,
    }


def delta(seq: int, t: float, side: str, price: float, d: float) -> Any:
    return {
        "type": "orderbook_delta",
        "sid": 2,
        "seq": seq,
        "msg": {
            "market_ticker": MKT,
            "market_id": "m",
            "price_dollars": _d(price),
            "delta_fp": f"{d:.2f}",
            "side": side,
            "ts_ms": int(t * 1000) + 300,  # Kalshi's clock runs ahead of the recorder's
        },
        "recv_ts": t,
    }


def tick(t: float, bid: float, ask: float, volume: float, last: float) -> Any:
    return {
        "type": "ticker",
        "sid": 1,
        "msg": {
            "market_ticker": MKT,
            "yes_bid_dollars": _d(bid),
            "yes_ask_dollars": _d(ask),
            "price_dollars": _d(last),
            "volume_fp": f"{volume:.2f}",
            "ts_ms": int(t * 1000),
        },
        "recv_ts": t,
    }


def trade(t: float, price: float, count: float, taker: str) -> Any:
    return {
        "type": "trade",
        "sid": 3,
        "msg": {
            "market_ticker": MKT,
            "trade_id": f"tr-{t}",
            "yes_price_dollars": _d(price),
            "count_fp": f"{count:.2f}",
            "taker_side": taker,
            "ts_ms": int(t * 1000),
        },
        "recv_ts": t,
    }


def write(path: Path, frames: list[Any]) -> Path:
    subscribed = {"id": 1, "type": "subscribed", "msg": {"channel": "orderbook_delta", "sid": 2}}
    lines = [json.dumps({**subscribed, "recv_ts": T0 - 1})] + [json.dumps(f) for f in frames]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


BOOK = snap(1, T0, [(0.45, 10), (0.48, 20)], [(0.45, 10), (0.48, 30)])  # bid 0.48 / ask 0.52


def _info(close_ts: float = T0 + 3600) -> Any:
    return market_info_for(MKT, close_ts=close_ts, structure="linear_cent")


async def _drain(ex: KalshiFeedExchange) -> list[Any]:
    return [ev async for ev in ex.stream([MKT])]


def _req(coid: str, side: Side, price: int, count: int = 500, post_only: bool = True) -> Any:
    return OrderRequest(MKT, coid, side, price, count, post_only=post_only)


# -- stream --------------------------------------------------------------------------------------


async def test_snapshot_and_deltas_stream_in_order_with_the_receive_clock(tmp_path: Path) -> None:
    frames = [
        BOOK,
        delta(2, T0 + 1, "yes", 0.49, 5),
        tick(T0 + 1.5, 0.49, 0.52, 100, 0.5),
        delta(3, T0 + 2, "no", 0.48, -30),
        trade(T0 + 2.5, 0.49, 3, "no"),
        delta(4, T0 + 2.4, "no", 0.47, 7),  # received "earlier": the clock does not go back
    ]
    ex = KalshiFeedExchange(write(tmp_path / "f.jsonl", frames), markets=[_info()])
    assert isinstance(ex, Exchange)
    evs = await _drain(ex)
    assert [type(e) for e in evs] == [BookSnapshot, BookDelta, BookDelta, Trade, BookDelta]
    assert [e.seq for e in evs if not isinstance(e, Trade)] == [1, 2, 3, 4]
    assert [e.ts for e in evs] == [T0, T0 + 1, T0 + 2, T0 + 2.5, T0 + 2.5]
    assert evs[1].price == 4900 and evs[1].delta == 500 and evs[1].outcome is Outcome.YES
    assert evs[3].price == 4900 and evs[3].taker_side is Side.ASK
    book = await ex.get_orderbook(MKT)
    assert book.seq == 4
    assert ex.recorded_book(MKT).best_bid() == 4900
    assert ex.recorded_book(MKT).best_ask() == 5300  # NO 0.47 (+7) is now the best NO bid
    assert ex.last_ticker(MKT) is not None and ex.last_ticker(MKT).yes_bid == 4900  # type: ignore[union-attr]
    assert ex.gaps == {MKT: 0}
    assert ex.finished and ex.clock.now() == T0 + 2.5


async def test_seq_gap_opens_a_hole_until_the_next_snapshot(tmp_path: Path) -> None:
    frames = [
        delta(7, T0 - 0.5, "yes", 0.40, 1),  # before any snapshot: skipped
        BOOK,
        delta(2, T0 + 1, "yes", 0.49, 5),
        delta(5, T0 + 2, "yes", 0.50, 4),  # seq 3 and 4 are missing: a hole opens
        delta(6, T0 + 3, "yes", 0.48, -20),  # in the hole: applied here, not streamed
        delta(7, T0 + 4, "no", 0.48, -99),  # would go negative: still the same hole
        delta(8, T0 + 5, "no", 0.46, 1),
        snap(1, T0 + 6, [(0.45, 10), (0.50, 4)], [(0.46, 1)]),  # a real snapshot ends it
        delta(2, T0 + 7, "no", 0.46, 2),
        delta(4, T0 + 8, "no", 0.46, 2),  # a second hole
        delta(5, T0 + 9, "no", 0.46, -1),
    ]
    ex = KalshiFeedExchange(write(tmp_path / "f.jsonl", frames), markets=[_info()])
    evs = await _drain(ex)
    kinds = [type(e).__name__ for e in evs]
    assert kinds == [
        "BookSnapshot",
        "BookDelta",
        "BookDelta",
        "BookSnapshot",
        "BookDelta",
        "BookDelta",
    ]
    seqs = [e.seq for e in evs]
    # the delta that found the gap carries a seq that skips one, so the consumer's book
    # raises BookSequenceError and resyncs, as it would live
    assert seqs == [1, 2, 4, 5, 6, 8]
    assert [e.ts for e in evs] == [T0, T0 + 1, T0 + 2, T0 + 6, T0 + 7, T0 + 8]
    assert dict(evs[3].yes) == {4500: 1000, 5000: 400} and dict(evs[3].no) == {4600: 100}
    # the exchange's own copy went on leniently through the hole
    assert ex.gaps == {MKT: 2} and ex.holes == {MKT: 2}
    assert ex.blind(MKT)  # the second hole is still open at the end
    h = ex.health(MKT)
    assert (h.gaps, h.jumps, h.resyncs) == (2, 0, 1)
    assert h.blind_s == pytest.approx(4.0 + 1.0)  # T0+2..T0+6, then T0+8..T0+9
    assert 4800 not in ex.recorded_book(MKT).no


async def test_bid_fills_only_when_the_ask_trades_through(tmp_path: Path) -> None:
    frames = [
        BOOK,
        delta(2, T0 + 1, "no", 0.50, 10),  # ask 0.50: touches our bid, no fill
        tick(T0 + 1.5, 0.50, 0.50, 100, 0.50),
        tick(T0 + 2.0, 0.50, 0.50, 150, 0.50),  # a print at our price: still no fill
        delta(3, T0 + 3, "no", 0.51, 10),  # ask 0.49: through our bid at 0.50
        delta(4, T0 + 4, "no", 0.51, -10),
    ]
    ex = KalshiFeedExchange(write(tmp_path / "f.jsonl", frames), markets=[_info()])
    got: list[Any] = []
    async for ev in ex.stream([MKT]):
        got.append(ev)
        if isinstance(ev, BookSnapshot):
            o = await ex.place_order(_req("b1", Side.BID, 5000))
            assert o.status is OrderStatus.RESTING
        if isinstance(ev, BookDelta) and ev.seq == 3:  # after our own delta, the ask at 0.50
            assert not await ex.get_fills()
    fills = [e for e in got if isinstance(e, Fill)]
    assert len(fills) == 1
    f = fills[0]
    assert (f.side, f.price, f.count, f.is_taker, f.fee) == (Side.BID, 5000, 500, False, 0)
    assert f.ts == T0 + 3 and f.post_position == 500
    # our order's own delta, the fill and the executed order come before the recorded delta
    i = got.index(f)
    assert isinstance(got[i - 1], BookDelta) and got[i - 1].client_order_id == "b1"
    assert isinstance(got[i + 1], Order) and got[i + 1].status is OrderStatus.EXECUTED
    assert isinstance(got[i + 2], BookDelta) and got[i + 2].client_order_id is None
    assert [(p.ticker, p.position) for p in await ex.get_positions()] == [(MKT, 500)]
    assert await ex.get_balance() == Decimal(10_000) - Decimal("2.5")
    pnl = ex.pnl(MKT)
    assert pnl.fills == 1 and pnl.max_abs_position == 5 and pnl.mark == 0.49
    assert pnl.marked_pnl == Decimal("-0.05")  # bought 5 at 0.50, mid now 0.49


async def test_trade_and_ticker_prints_through_our_ask_fill_it(tmp_path: Path) -> None:
    frames = [
        BOOK,
        trade(T0 + 1, 0.51, 2, "yes"),  # at our ask: no fill
        trade(T0 + 2, 0.515, 2, "yes"),  # off-grid for linear_cent, but a print above our ask
        tick(T0 + 3, 0.48, 0.52, 100, 0.50),
        tick(T0 + 4, 0.48, 0.52, 103, 0.52),  # +3 contracts printed at 0.52 > 0.51
    ]
    ex = KalshiFeedExchange(
        write(tmp_path / "f.jsonl", frames), markets=[_info()], results={MKT: "no"}
    )
    fills: list[Fill] = []
    settled: list[Settlement] = []
    async for ev in ex.stream([MKT]):
        if isinstance(ev, BookSnapshot):
            await ex.place_order(_req("a1", Side.ASK, 5100, 1000))
        elif isinstance(ev, Fill):
            fills.append(ev)
        elif isinstance(ev, Settlement):
            settled.append(ev)
    assert [(f.count, f.price, f.ts) for f in fills] == [(200, 5100, T0 + 2), (300, 5100, T0 + 4)]
    assert settled and settled[0].result is Outcome.NO
    assert not await ex.get_orders()  # the rest was cancelled at the end of the file
    pnl = ex.pnl(MKT)
    assert pnl.settled is Outcome.NO and pnl.position == 0 and pnl.max_abs_position == 5
    assert pnl.realized_pnl == pnl.marked_pnl == Decimal("2.55")  # sold 5 at 0.51, settled at 0


async def test_post_only_cross_off_grid_and_idempotent_ids(tmp_path: Path) -> None:
    ex = KalshiFeedExchange(write(tmp_path / "f.jsonl", [BOOK]), markets=[_info()])
    async for ev in ex.stream([MKT]):
        if not isinstance(ev, BookSnapshot):
            continue  # our own order updates
        for side, price in ((Side.BID, 5200), (Side.BID, 5300), (Side.ASK, 4800)):
            with pytest.raises(OrderRejected) as info:
                await ex.place_order(_req(f"x{price}", side, price))
            assert info.value.code == "post_only_cross"
        with pytest.raises(OrderRejected) as info:
            await ex.place_order(_req("odd", Side.BID, 5005))
        assert info.value.code == "invalid_price"
        a = await ex.place_order(_req("a", Side.ASK, 5100))
        with pytest.raises(OrderRejected) as info:  # would cross our own ask
            await ex.place_order(_req("b", Side.BID, 5100))
        assert info.value.code == "post_only_cross"
        again = await ex.place_order(_req("a", Side.ASK, 5000, 900))
        assert again.order_id == a.order_id and again.price == 5100
        assert len(await ex.get_orders()) == 1
        snap_now = await ex.get_orderbook(MKT)
        assert dict(snap_now.no)[4900] == 500  # our ask shows in the streamed book
        # a crossing order that is not post-only takes the recorded ask, as a taker
        t = await ex.place_order(_req("t", Side.BID, 5200, 100, post_only=False))
        assert t.status is OrderStatus.EXECUTED and t.fill_count == 100
        f = (await ex.get_fills())[-1]
        assert (
            f.is_taker and f.price == 5200 and f.fee == Decimal("0.02")
        )  # 0.07·0.52·0.48, rounded up
        cancelled = await ex.cancel_all(MKT)
        assert [o.order_id for o in cancelled] == [a.order_id]


def test_metadata_from_ticker_and_file(tmp_path: Path) -> None:
    assert close_ts_from_ticker("KXBTC15M-26MAY140045-45") == 1_778_733_900.0  # 04:45Z
    assert close_ts_from_ticker("NOPE") is None
    frames = write(tmp_path / "w.jsonl", [BOOK])
    metadata_path(frames).write_text(
        json.dumps({"markets": [{"ticker": MKT, "close_time": "2027-01-01T00:00:00Z"}]})
    )
    ex = KalshiFeedExchange(frames)
    info = ex._markets[MKT].info
    assert info.close_ts == 1_798_761_600.0 and info.price_level_structure == "tapered_deci_cent"
    assert info.fee.fee_type == "quadratic" and not info.fee.charges_maker


# -- a whole session -----------------------------------------------------------------------------


def _synthetic(n: int, seed: int = 5) -> Iterator[Any]:
    """A random-walk book: one YES and one NO level around a wandering mid, a delta a second."""
    rng = random.Random(seed)
    mid = 50
    yield snap(1, T0, [(0.40, 100), ((mid - 1) / 100, 50)], [(0.40, 100), ((99 - mid) / 100, 50)])
    seq, t, vol = 1, T0, 0.0
    bid, ask = mid - 1, mid + 1
    for _ in range(n):
        t += 0.5
        step = rng.choice((-1, 0, 0, 1))
        nb, na = min(max(bid + step, 30), 68), min(max(ask + step, 32), 70)
        if nb >= na:
            continue
        for side, old, new in (("yes", bid, nb), ("no", 100 - ask, 100 - na)):
            if new != old:
                seq += 1
                yield delta(seq, t, side, new / 100, 50)
                seq += 1
                yield delta(seq, t, side, old / 100, -50)
        bid, ask = nb, na
        vol += rng.choice((0, 0, 2, 5))
        yield tick(t + 0.1, bid / 100, ask / 100, vol, rng.choice((bid, ask)) / 100)


async def test_session_runs_over_a_synthetic_feed_and_cancels_everything(tmp_path: Path) -> None:
    frames = write(tmp_path / "s.jsonl", list(_synthetic(2400)))
    ex = KalshiFeedExchange(frames, markets=[_info(close_ts=T0 + 3 * 3600)])
    store = AuditStore.open(tmp_path / "run.db")
    run_id = store.start_run({"test": "feed"})
    session = Session(ex, await ex.get_markets(), load_policy("default"), store, run_id)
    session.attach_agents(HeuristicReasoner())
    rows = await session.run(govern=False)
    store.end_run(run_id, {})
    store.close()
    loop = session.loops[MKT]
    assert loop.state is LoopState.STOPPED and loop.error is None
    assert session.leftover_orders == 0 and not await ex.get_orders()
    assert rows[0].events == ex.events_emitted > 2400
    placed = await ex.get_orders(None, resting_only=False)
    assert placed, "the loop should have quoted"
    assert all(o.status is not OrderStatus.RESTING for o in placed)
    fills = await ex.get_fills()
    assert fills, "a random walk trades through our quotes"
    assert loop.account.inventory == sum(f.count * f.side.sign for f in fills)
    assert ex.pnl(MKT).fills == len(fills) == rows[0].fills


# -- a real capture window -----------------------------------------------------------------------

_DATASETS = list_datasets()


@pytest.mark.skipif(
    not _DATASETS,
    reason="the Kalshi captures (../shared/data/kalshi/kxbtc15m_ws_captures) are not present",
)
async def test_replay_of_a_real_capture_window(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from replay_captures import replay_file

    ds = min(_DATASETS, key=lambda d: sum(f.stat().st_size for f in d.rglob("*") if f.is_file()))
    frames = tmp_path / f"{ds.name}.jsonl"
    n, meta = write_feed(ds, frames)
    assert n > 1000 and meta.is_file()
    rows, ex, session = await replay_file(frames, tmp_path / "run.db", close_taper=(120.0, 30.0))
    assert ex.finished and session.leftover_orders == 0
    assert len(rows) == 2 and all(r.state == "STOPPED" for r in rows)
    assert sum(r.events for r in rows) == ex.events_emitted > 0.9 * n
    for t in ex.tickers:
        info = await ex.get_market(t)
        assert info.price_level_structure == "tapered_deci_cent" and math.isfinite(info.close_ts)
        checked, _, near = ex.ticker_agreement(t)
        assert checked > 100 and near >= 0.95 * checked  # the replayed book is Kalshi's
