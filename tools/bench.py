"""cfa benchmarks: ``python tools/bench.py <subcommand>``.

Subcommands:

* ``quote``: median µs per :func:`cfa.core.quoting.quote` call (target ≤ 20 µs on 2 cores).

Adding one (``sim``, ``agents``, ``verify``, …): write ``configure_<name>(parser)`` to add its
options and ``cmd_<name>(args) -> int`` to run it, then add a :class:`Subcommand` to
:data:`SUBCOMMANDS` at the bottom of this file. Shared helpers: :func:`machine_info`,
:func:`time_batches` and :func:`summarise`.

Benchmarks are not timed tests: they print figures (and ``--json`` for machines) and exit 0
unless they cannot run; a figure over its target is reported, not failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cfa.core.quoting import Model

if __package__ in (None, ""):  # run as a script from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


# -- shared helpers -----------------------------------------------------------------------------


def _cpu_model() -> str:
    """CPU model name from ``/proc/cpuinfo`` (Linux), else :func:`platform.processor`."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """The machine a figure was measured on: cores, CPU model, Python and platform."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 0
    return {
        "cores": os.cpu_count() or 0,
        "usable_cores": usable,
        "cpu": _cpu_model(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(terse=True),
    }


def time_batches(
    batches: Mapping[str, Callable[[], object]], n_batches: int, warmup: int = 5
) -> dict[str, list[float]]:
    """Time each named batch ``n_batches`` times; return ns per batch for each name.

    The batches are interleaved (a round runs each once, in turn) so that a change in machine
    load during the run, common on shared machines, affects every contender alike. Each batch
    first runs ``warmup`` times untimed.
    """
    for fn in batches.values():
        for _ in range(warmup):
            fn()
    out: dict[str, list[float]] = {name: [] for name in batches}
    clock = time.perf_counter_ns
    for _ in range(n_batches):
        for name, fn in batches.items():
            t0 = clock()
            fn()
            out[name].append(float(clock() - t0))
    return out


@dataclass(frozen=True, slots=True)
class Summary:
    """Per-call statistics in µs from batch timings (each batch = ``batch_size`` calls)."""

    calls: int
    median_us: float
    """Median over batches of the batch's mean time per call."""
    p99_us: float
    """99th percentile over batches of the batch's mean time per call."""
    min_us: float
    mean_us: float


def summarise(batch_ns: Sequence[float], batch_size: int) -> Summary:
    """Turn ns-per-batch timings into per-call µs statistics."""
    per_call = sorted(ns / batch_size / 1000.0 for ns in batch_ns)
    p99 = statistics.quantiles(per_call, n=100, method="inclusive")[98] if len(per_call) > 1 else 0
    return Summary(
        calls=len(per_call) * batch_size,
        median_us=statistics.median(per_call),
        p99_us=p99 or per_call[-1],
        min_us=per_call[0],
        mean_us=statistics.fmean(per_call),
    )


def _print_machine(info: dict[str, Any]) -> None:
    print(
        f"machine: {info['cores']} cores ({info['usable_cores']} usable), {info['cpu']}, "
        f"{info['python']}, {info['platform']}"
    )


# -- quote ----------------------------------------------------------------------------------------

QUOTE_TARGET_US = 20.0
"""Target: median ≤ 20 µs per :func:`cfa.core.quoting.quote` call on a 2-core machine."""


def _quote_inputs(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` realistic argument sets for :func:`quote` on one maker-fee, tapered-grid market.

    Mids span the whole range (so the deci-cent tails and the cent middle of
    ``tapered_deci_cent`` are both exercised), inventory is non-zero (±1 … ±40 contracts, under
    the 50-contract cap), the book has both bests around the mid, and the close is 10 min to
    2 days away (τ is capped by the one-hour horizon).
    """
    import random

    from cfa.core.grid import PriceGrid
    from cfa.core.types import PRICE_SCALE, QTY_SCALE

    grid = PriceGrid.from_structure("tapered_deci_cent")
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    while len(out) < n:
        mid = rng.uniform(0.02, 0.98)
        half_book = rng.choice((0.001, 0.002, 0.005, 0.01, 0.02))
        best_bid = grid.floor(mid - half_book)
        best_ask = grid.ceil(mid + half_book)
        if best_bid is None or best_ask is None or best_bid >= best_ask:
            continue
        q = rng.randint(1, 40) * rng.choice((-1, 1))
        out.append(
            {
                "mid": (best_bid + best_ask) / (2 * PRICE_SCALE),
                "inventory": q * QTY_SCALE,
                "time_to_close": rng.uniform(600.0, 2 * 86400.0),
                "best_bid": best_bid,
                "best_ask": best_ask,
            }
        )
    return out


def configure_quote(parser: argparse.ArgumentParser) -> None:
    """Options of ``bench.py quote``."""
    parser.add_argument("--batches", type=int, default=100, help="timed batches (100)")
    parser.add_argument("--batch-size", type=int, default=1000, help="calls per batch (1000)")
    parser.add_argument(
        "--model", choices=("as", "glft", "both"), default="both", help="model(s) to time"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the input set (0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")


def cmd_quote(args: argparse.Namespace) -> int:
    """Median µs per ``quote()`` call over ``batches × batch_size`` calls, per model.

    Each batch cycles through the same ``batch_size`` precomputed argument sets, so the figure
    includes the Python call and loop overhead a caller pays (reported separately as
    ``loop_overhead_us``) but not the building of inputs.
    """
    from cfa.core.grid import PriceGrid
    from cfa.core.quoting import QuoteMarket, QuoteParams, quote
    from cfa.core.types import QTY_SCALE, FeeSchedule, MarketInfo

    if args.batches < 1 or args.batch_size < 1:
        print("bench quote: --batches and --batch-size must be positive", file=sys.stderr)
        return 2
    grid = PriceGrid.from_structure("tapered_deci_cent")
    market_info = MarketInfo(
        ticker="BENCH-25DEC31-T50",
        event_ticker="BENCH-25DEC31",
        series_ticker="BENCH",
        title="benchmark market",
        price_ranges=grid.ranges,
        close_ts=0.0,
        price_level_structure="tapered_deci_cent",
        fee=FeeSchedule(fee_type="quadratic_with_maker_fees"),
    )
    market = QuoteMarket.from_market(market_info)
    if market.maker_rate <= 0.0:
        print("bench quote: the benchmark market should charge maker fees", file=sys.stderr)
        return 2
    inputs = _quote_inputs(args.batch_size, args.seed)
    models: tuple[Model, ...] = ("as", "glft") if args.model == "both" else (args.model,)

    def empty_batch() -> None:
        for _kw in inputs:
            pass

    contenders: dict[str, Callable[[], None]] = {"loop": empty_batch}
    for model in models:
        params = QuoteParams(
            gamma=1.0,  # 1/$: half-spread (1/γ)ln(1 + γ/k) ≈ 1.2 ¢ with k = 80/$
            sigma=0.002,  # logit vol per √s
            k=80.0,
            A=0.05,
            size=10 * QTY_SCALE,
            inventory_cap=50 * QTY_SCALE,
            horizon=3600.0,
            model=model,
        )

        def batch(params: QuoteParams = params) -> None:
            for kw in inputs:
                quote(
                    mid=kw["mid"],
                    inventory=kw["inventory"],
                    time_to_close=kw["time_to_close"],
                    params=params,
                    market=market,
                    best_bid=kw["best_bid"],
                    best_ask=kw["best_ask"],
                )

        contenders[model] = batch

    timings = time_batches(contenders, args.batches)
    overhead = summarise(timings.pop("loop"), args.batch_size)
    info = machine_info()
    results: dict[str, Any] = {}
    for name, ns in timings.items():
        s = summarise(ns, args.batch_size)
        results[name] = asdict(s) | {"meets_target": s.median_us <= QUOTE_TARGET_US}

    if args.json:
        payload = {
            "bench": "quote",
            "target_us": QUOTE_TARGET_US,
            "batches": args.batches,
            "batch_size": args.batch_size,
            "loop_overhead_us": overhead.median_us,
            "machine": info,
            "results": results,
        }
        print(json.dumps(payload, indent=2))
        return 0

    _print_machine(info)
    print(
        f"quote(): tapered_deci_cent grid, maker fees, inventory ±1..40 contracts, both bests; "
        f"{args.batches} batches x {args.batch_size} calls per model"
    )
    for name, r in results.items():
        verdict = "ok" if r["meets_target"] else "OVER TARGET"
        print(
            f"  {name:<4} median {r['median_us']:6.2f} µs/call   p99 of batch means "
            f"{r['p99_us']:6.2f} µs   min {r['min_us']:6.2f} µs   ({r['calls']:,} calls)   "
            f"target ≤ {QUOTE_TARGET_US:g} µs: {verdict}"
        )
    print(f"  (loop overhead included above: {overhead.median_us:.3f} µs/call)")
    return 0


# -- registry and dispatch ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subcommand:
    """One ``bench.py`` subcommand: its help line, option setup and runner."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


SUBCOMMANDS: dict[str, Subcommand] = {
    "quote": Subcommand("median µs per cfa.core.quoting.quote() call", configure_quote, cmd_quote),
}
"""Subcommand name -> :class:`Subcommand`. Add ``sim``, ``agents``, ``verify``, … here."""


def build_parser() -> argparse.ArgumentParser:
    """The ``bench.py`` argument parser with one subparser per :data:`SUBCOMMANDS` entry."""
    parser = argparse.ArgumentParser(
        prog="bench.py", description="cfa benchmarks (figures, not timed tests)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, spec in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=spec.help, description=spec.help)
        spec.configure(p)
        p.set_defaults(_run=spec.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; its return value is the exit code."""
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args._run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
