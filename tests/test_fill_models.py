"""The named fill models (through, touch, queue) of the venue emulator, on a hand-made feed.

Our bid rests at the best bid 0.48 behind 20 contracts of recorded size. Prints *at* 0.48 never
fill it under ``through``, fill it at once under ``touch``, and under ``queue`` only once the
20 contracts ahead are used up (by prints, or by the level shrinking below them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cfa.core.types import Fill, OrderRequest, Side
from cfa.exchange.emulator import FILL_MODELS, OwnOrder, fill_model
from cfa.exchange.feed import KalshiFeedExchange, market_info_for

T0 = 1_800_000_000.0
MKT = "KXFM-26JAN011200-00"


def _snap(t: float) -> dict[str, Any]:
    return {
        "type": "orderbook_snapshot",
        "sid": 1,
        "seq": 1,
        "msg": {
            "market_ticker": MKT,
            "yes_dollars_fp": [["0.4500", "10.00"], ["0.4800", "20.00"]],
            "no_dollars_fp": [["0.4500", "10.00"], ["0.4800", "30.00"]],
        },
        "recv_ts": t,
    }


def _delta(seq: int, t: float, price: str, d: float) -> dict[str, Any]:
    return {
        "type": "orderbook_delta",
        "sid": 1,
        "seq": seq,
        "msg": {
            "market_ticker": MKT,
            "price_dollars": price,
            "delta_fp": f"{d:.2f}",
            "side": "yes",
        },
        "recv_ts": t,
    }


def _print(t: float, price: str, count: float) -> dict[str, Any]:
    return {
        "type": "trade",
        "sid": 2,
        "msg": {
            "market_ticker": MKT,
            "trade_id": f"t{t}",
            "yes_price_dollars": price,
            "count_fp": f"{count:.2f}",
            "taker_side": "no",
            "ts_ms": int(t * 1000),
        },
        "recv_ts": t,
    }


async def _fills(tmp_path: Path, model: str, tape: list[dict[str, Any]]) -> list[Fill]:
    """Rest a 5-contract bid at 0.48 after the snapshot, replay ``tape``, return our fills."""
    path = tmp_path / f"{model}.jsonl"
    path.write_text("\n".join(json.dumps(f) for f in [_snap(T0), *tape]) + "\n", encoding="utf-8")
    info = market_info_for(MKT, close_ts=T0 + 3600, structure="linear_cent")
    ex = KalshiFeedExchange(path, markets=[info], fill_model=model)
    ex.open_books()
    await ex.place_order(OrderRequest(MKT, "c1", Side.BID, 4800, 500))
    return [ev async for ev in ex.stream([MKT]) if isinstance(ev, Fill)]


# a print of 15 at 0.48 (its delta follows), then a print of 10 at 0.48
PRINTS = [
    _print(T0 + 1, "0.4800", 15),
    _delta(2, T0 + 1, "0.4800", -15),
    _print(T0 + 2, "0.4800", 10),
    _delta(3, T0 + 2, "0.4800", -5),
]


@pytest.mark.parametrize(
    ("model", "expected"),
    [("through", []), ("touch", [(T0 + 1, 500)]), ("queue", [(T0 + 2, 500)])],
)
async def test_prints_at_our_price(tmp_path: Path, model: str, expected: list[Any]) -> None:
    fills = await _fills(tmp_path, model, PRINTS)
    assert [(f.ts, f.count) for f in fills] == expected
    assert all(f.price == 4800 and not f.is_taker for f in fills)


async def test_queue_shrinks_with_the_level(tmp_path: Path) -> None:
    # 18 of the 20 ahead cancel: a print of 4 at our price uses the 2 left, fills us with 2
    tape = [_delta(2, T0 + 1, "0.4800", -18), _print(T0 + 2, "0.4800", 4)]
    fills = await _fills(tmp_path, "queue", tape)
    assert [(f.ts, f.count) for f in fills] == [(T0 + 2, 200)]
    assert await _fills(tmp_path, "through", tape) == []


@pytest.mark.parametrize("model", FILL_MODELS)
async def test_every_model_fills_a_print_through_our_price(tmp_path: Path, model: str) -> None:
    fills = await _fills(tmp_path, model, [_print(T0 + 1, "0.4700", 3)])
    assert [(f.ts, f.count) for f in fills] == [(T0 + 1, 300)]


def test_models_by_name() -> None:
    assert FILL_MODELS == ("through", "touch", "queue")
    assert [fill_model(n).name for n in FILL_MODELS] == list(FILL_MODELS)
    with pytest.raises(ValueError, match="fill_model must be one of"):
        fill_model("optimistic")
    o = OwnOrder("o", "c", MKT, Side.ASK, 5200, 0, 100, True, 0.0)
    q = fill_model("queue")
    q.on_rest(o, 300)
    assert o.ahead == 300
    assert q.print_fill(o, 5200, 250) == 0 and o.ahead == 50
    assert q.print_fill(o, 5200, 250) == 100 and o.ahead == 0
    assert q.book_hit(o, 5300, None) and not q.book_hit(o, 5200, None)
