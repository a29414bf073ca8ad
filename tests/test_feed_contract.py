"""The Exchange contract suite, run against the recorded-feed replay (KalshiFeedExchange).

The feed is a hand-made file of Kalshi WebSocket frames (nothing from the captures): one market,
a two-sided book, then a few thousand deltas that never cross it. The factory opens the books
(:meth:`KalshiFeedExchange.open_books`) so the market has a book before the stream starts, as
on a live venue; everything else is the contract unchanged, for each fill model.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from exchange_contract import ExchangeContract, ExchangeFactory

from cfa.exchange.base import Exchange
from cfa.exchange.emulator import FILL_MODELS
from cfa.exchange.feed import KalshiFeedExchange

T0 = 1_795_791_600.0
"""2026-11-27T15:00:00Z, well before the market's close."""
MKT = "KXSYN-26DEC311200-50"
"""Closes 2026-12-31 12:00 US Eastern (from the ticker)."""

_files = itertools.count(1)


def frames(n_deltas: int = 3000, seed: int = 3) -> list[dict[str, Any]]:
    """A snapshot (YES bids 0.40–0.45, NO bids 0.50–0.54: asks 0.46–0.50), then deltas that
    add or remove size away from the touch, 0.05 s apart; the book never crosses or empties."""
    rng = random.Random(seed)
    yes = {round(0.40 + 0.01 * i, 2): 50.0 + 10 * i for i in range(6)}
    no = {round(0.50 + 0.01 * i, 2): 50.0 + 10 * i for i in range(5)}
    out: list[dict[str, Any]] = [
        {"type": "subscribed", "id": 1, "msg": {"channel": "orderbook_delta", "sid": 1}},
        {
            "type": "orderbook_snapshot",
            "sid": 1,
            "seq": 1,
            "msg": {
                "market_ticker": MKT,
                "market_id": "m",
                "yes_dollars_fp": [[f"{p:.4f}", f"{q:.2f}"] for p, q in sorted(yes.items())],
                "no_dollars_fp": [[f"{p:.4f}", f"{q:.2f}"] for p, q in sorted(no.items())],
            },
        },
    ]
    for k in range(n_deltas):
        side, ladder = ("yes", yes) if rng.random() < 0.5 else ("no", no)
        price = rng.choice(sorted(ladder)[:-1])  # never the touch: it cannot cross or vanish
        size = ladder[price]
        d = rng.choice([-1.0, 1.0, 2.0]) if size > 5 else 2.0
        ladder[price] = size + d
        out.append(
            {
                "type": "orderbook_delta",
                "sid": 1,
                "seq": k + 2,
                "msg": {
                    "market_ticker": MKT,
                    "market_id": "m",
                    "price_dollars": f"{price:.4f}",
                    "delta_fp": f"{d:.2f}",
                    "side": side,
                },
            }
        )
    for i, f in enumerate(out):
        f["recv_ts"] = T0 + 0.05 * i
    return out


@pytest.fixture(params=FILL_MODELS)
async def exchange_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ExchangeFactory]:
    lines = "\n".join(json.dumps(f) for f in frames()) + "\n"

    async def make() -> Exchange:
        path = tmp_path / f"feed-{next(_files)}.jsonl"
        path.write_text(lines, encoding="utf-8")
        ex = KalshiFeedExchange(path, fill_model=request.param)
        ex.open_books()
        await ex.start()
        return ex

    yield make


def test_open_books_reads_only_up_to_the_first_snapshots(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_text("\n".join(json.dumps(f) for f in frames(50)) + "\n", encoding="utf-8")
    ex = KalshiFeedExchange(path)
    ex.open_books()
    assert ex.frames_read == 2  # the control frame and the snapshot
    assert ex.recorded_book(MKT).best_bid() == 4500
    ex.open_books()  # a no-op once the books are open
    assert ex.frames_read == 2


class TestFeedContract(ExchangeContract):
    pass
