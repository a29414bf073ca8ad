"""Measure the simulator alone: ``python -m cfa.exchange.sim [--scenario NAME] [--markets N]``.

Streams every market with a consumer that does nothing and prints the events produced per
wall-clock second (best of ``--repeat`` runs) and per simulated second. The whole loop (this
simulator, the quoting loop and the audit store) is measured by ``tools/bench.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass

from cfa.exchange.sim.exchange import SimExchange


@dataclass(frozen=True, slots=True)
class StreamRate:
    """One measurement: events streamed, simulated and wall seconds, events per wall second."""

    events: int
    sim_seconds: float
    wall_seconds: float

    @property
    def per_second(self) -> float:
        return self.events / self.wall_seconds if self.wall_seconds > 0 else float("inf")


async def measure(scenarios: list[str], seconds: float, seed: int = 1) -> StreamRate:
    """Stream ``scenarios`` for ``seconds`` of simulated time with an idle consumer."""
    ex = SimExchange.from_scenarios(scenarios, seed=seed, duration=seconds)
    start = ex.clock.now()
    n = 0
    t0 = time.perf_counter()
    async for _ in ex.stream(ex.tickers):
        n += 1
    wall = time.perf_counter() - t0
    return StreamRate(n, ex.clock.now() - start, wall)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cfa.exchange.sim", description=__doc__)
    ap.add_argument("--scenario", default="close-approach", help="scenario name or .yaml path")
    ap.add_argument("--markets", type=int, default=1, help="markets of that scenario")
    ap.add_argument("--seconds", type=float, default=1800.0, help="simulated seconds")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="runs; the best is reported")
    args = ap.parse_args(argv)
    runs = [
        asyncio.run(measure([args.scenario] * args.markets, args.seconds, args.seed))
        for _ in range(max(1, args.repeat))
    ]
    best = max(runs, key=lambda r: r.per_second)
    print(
        f"{args.scenario} x{args.markets}: {best.events:,} events in {best.sim_seconds:,.0f} "
        f"simulated s ({best.events / max(best.sim_seconds, 1e-9):,.0f}/simulated s); "
        f"best of {len(runs)}: {best.wall_seconds:.3f} s wall = {best.per_second:,.0f} events/s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
