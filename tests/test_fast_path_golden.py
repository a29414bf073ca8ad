"""The fast path's order decisions pinned: for three simulator runs, the digest of every order
action (market, time, action, side, price, count, reason) and every fill, recorded on commit
5e8e31b, before the fast path was made synchronous (``MarketLoop.feed``), fed in chunks and
given its shortcut for deltas behind the touch. A speed change must leave these unchanged; a
change meant to alter quoting re-records them and says so in its commit."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from sim_run import trade_log

from cfa.exchange.sim import SimExchange

GOLDEN = [
    (("calm",), 1, 398, 28, "5fb739800dd5f3d50f6b1cbf7823af85c6f0bc48c4ade2dbbe1ea050a90701ca"),
    (
        ("informed-flow",),
        2,
        862,
        249,
        "440decdeb75902c090f28804f2d8f5a6897ea8123d71a302cf2560e506dc3651",
    ),
    (
        ("regime-shift", "close-approach"),
        3,
        2560,
        1833,
        "b23a588de81c0723879dfc51673782799eb6a5736434cf9c5478cbde5bd6a09b",
    ),
]


@pytest.mark.parametrize(("scenarios", "seed", "n_orders", "n_fills", "digest"), GOLDEN)
async def test_orders_and_fills_match_the_recorded_digest(
    tmp_path: Path, scenarios: tuple[str, ...], seed: int, n_orders: int, n_fills: int, digest: str
) -> None:
    ex = SimExchange.from_scenarios(list(scenarios), seed=seed, duration=900.0)
    await ex.start()
    _, orders, fills = await trade_log(ex, tmp_path / "run.db")
    assert (len(orders), len(fills)) == (n_orders, n_fills)
    assert hashlib.sha256(json.dumps([orders, fills]).encode()).hexdigest() == digest
