"""cfa benchmarks: ``python tools/bench.py <subcommand>``.

Subcommands:

* ``quote``: median µs per :func:`cfa.core.quoting.quote` call (target ≤ 20 µs on 2 cores).
* ``regime``: median and p99 ms per VAR regime refresh, 300-sample window (target ≤ 5 ms).
* ``signals``: µs per update of the OFI, momentum, VPIN and refill estimators and of
  ``GarchForecast.update``; median and p99 ms per GARCH(1,1) fit on 360 and 720 returns.
* ``sim``, ``agents``, ``context``, ``killswitch``: runtime figures (``tools/bench_runtime.py``).
* ``compare``: cfa against hftbacktest on the same generated events (``tools/bench_compare.py``).
* ``callgrind``: instruction counts per event under valgrind, and ``--profile``, the sampled CPU
  share per cfa module group (``tools/bench_callgrind.py``).
* ``replay``: frames/s of a recorded Kalshi feed, feed-only and end to end
  (``tools/bench_replay.py``).
* ``verify``: seconds for :func:`cfa.audit.verify` over a 1,000,000-row audit file (target
  ≤ 10 s).

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

import bench_callgrind
import bench_compare
import bench_replay
import bench_runtime

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


# -- regime ---------------------------------------------------------------------------------------

REGIME_TARGET_MS = 5.0
"""Target: ≤ 5 ms per :meth:`cfa.core.regime.RegimeMonitor.refresh` with a 300-sample window."""


def _regime_rows(n: int, seed: int) -> list[tuple[float, float, float]]:
    """``n`` samples of a stable VAR(1) [logit return, imbalance, flow] where flow leads returns.

    Returns have s.d. 0.01 logit units per interval, imbalance is an AR(1) (0.8) kept in
    [−1, 1], flow (contracts) follows imbalance; a realistic mix for one active market.
    """
    import random

    rng = random.Random(seed)
    r = imb = flow = 0.0
    out: list[tuple[float, float, float]] = []
    for _ in range(n):
        r = 0.05 * r + 0.0006 * flow + 0.01 * rng.gauss(0.0, 1.0)
        imb = max(-1.0, min(1.0, 0.8 * imb + 0.2 * rng.gauss(0.0, 1.0)))
        flow = 0.3 * flow + 5.0 * imb + 5.0 * rng.gauss(0.0, 1.0)
        out.append((r, imb, flow))
    return out


def configure_regime(parser: argparse.ArgumentParser) -> None:
    """Options of ``bench.py regime``."""
    parser.add_argument("--refreshes", type=int, default=500, help="timed refreshes (500)")
    parser.add_argument("--window", type=int, default=300, help="samples per window (300)")
    parser.add_argument("--lags", type=int, default=1, help="VAR lag order (1)")
    parser.add_argument(
        "--events-per-sample", type=int, default=5, help="book events per 1 s sample (5)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic stream (0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")


def cmd_regime(args: argparse.Namespace) -> int:
    """Median and p99 ms per ``RegimeMonitor.refresh`` that refits (one new sample each time).

    A synthetic market emits ``events-per-sample`` book events per 1 s interval (mid, L1
    imbalance, taker flow). After the window fills, each round feeds one interval's events
    (untimed; their per-event cost is reported as ``observe_us``) and times one ``refresh`` at
    the start of the next interval, which closes the interval and refits the VAR on the window.
    """
    import math

    from cfa.core.regime import RegimeMonitor

    if args.refreshes < 1 or args.events_per_sample < 1:
        print("bench regime: --refreshes and --events-per-sample must be positive", file=sys.stderr)
        return 2
    try:
        mon = RegimeMonitor(window=args.window, sample_interval=1.0, lags=args.lags)
    except ValueError as exc:
        print(f"bench regime: {exc}", file=sys.stderr)
        return 2
    n_intervals = args.window + 5 + args.refreshes
    rows = _regime_rows(n_intervals, args.seed)
    e = args.events_per_sample
    x = 0.0
    observe_ns = 0
    refresh_ns: list[float] = []
    statuses: dict[str, int] = {}
    flags = {"regime_shift": 0, "informed_flow": 0, "unstable": 0}
    clock = time.perf_counter_ns
    mon.observe(-0.5, 0.5, 0.0)
    for k, (r, imb, flow) in enumerate(rows):
        x += r
        mid = 1.0 / (1.0 + math.exp(-x))
        t0 = clock()
        for j in range(e):
            mon.observe(k + (j + 0.5) / e, mid, imb, flow / e)
        observe_ns += clock() - t0
        if k < args.window + 5:
            continue
        t0 = clock()
        res = mon.refresh(k + 1.0)
        refresh_ns.append(float(clock() - t0))
        statuses[res.status] = statuses.get(res.status, 0) + 1
        for name in flags:
            flags[name] += bool(getattr(res, name))
    if statuses.get("ok", 0) != args.refreshes:
        print(f"bench regime: not every refresh fitted: {statuses}", file=sys.stderr)
        return 1
    s = summarise(refresh_ns, 1)
    median_ms, p99_ms = s.median_us / 1000.0, s.p99_us / 1000.0
    result = {
        "refreshes": args.refreshes,
        "median_ms": median_ms,
        "p99_ms": p99_ms,
        "min_ms": s.min_us / 1000.0,
        "mean_ms": s.mean_us / 1000.0,
        "max_ms": max(refresh_ns) / 1e6,
        "observe_us": observe_ns / (len(rows) * e) / 1000.0,
        "flags": flags,
        "meets_target": median_ms <= REGIME_TARGET_MS,
    }
    info = machine_info()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    if args.json:
        payload = {
            "bench": "regime",
            "target_ms": REGIME_TARGET_MS,
            "window": args.window,
            "lags": args.lags,
            "sample_interval_s": 1.0,
            "events_per_sample": e,
            "machine": info,
            "load_average_1m": load[0],
            "results": result,
        }
        print(json.dumps(payload, indent=2))
        return 0

    _print_machine(info)
    print(f"load average (1 min): {load[0]:.2f}")
    print(
        f"RegimeMonitor.refresh(): window {args.window} samples of 1 s, VAR({args.lags}), "
        f"{e} events per sample, {args.refreshes} refreshes, each refitting"
    )
    verdict = "ok" if result["meets_target"] else "OVER TARGET"
    print(
        f"  median {median_ms:6.2f} ms   p99 {p99_ms:6.2f} ms   min {result['min_ms']:6.2f} ms   "
        f"max {result['max_ms']:6.2f} ms   target ≤ {REGIME_TARGET_MS:g} ms: {verdict}"
    )
    print(f"  observe(): {result['observe_us']:.2f} µs/event")
    print(f"  flags raised over the run: {flags}")
    return 0


# -- verify ---------------------------------------------------------------------------------------

VERIFY_TARGET_S = 10.0
"""Target: ``cfa audit verify`` of a 1,000,000-row audit file in ≤ 10 s."""


def configure_verify(parser: argparse.ArgumentParser) -> None:
    """Options of ``bench.py verify``."""
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the file (1e6)")
    parser.add_argument(
        "--db", type=Path, default=None, help="file to build and keep (default: a temp file)"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="with --db: verify the existing file, do not build"
    )
    parser.add_argument("--workers", type=int, default=None, help="verify processes (default 2)")
    parser.add_argument("--repeat", type=int, default=3, help="timed verifications (3)")
    parser.add_argument(
        "--writer", choices=("inline", "process"), default="process", help="store writer"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")


def _build_verify_file(path: Path, rows: int, writer: str) -> tuple[float, int]:
    """Append ``rows`` rows (one run row, then compact one-event ``market_events`` batches, the
    shape the recorder writes) through :meth:`AuditStore.append` in 20,000-row flushes.
    Returns (seconds, file bytes)."""
    from cfa.audit import AuditStore

    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    t0 = time.perf_counter()
    store = AuditStore.open(
        path, batch_rows=20_000, writer="process" if writer == "process" else "inline"
    )
    try:
        store.start_run({"bench": "verify", "rows": rows}, ts_ms=1_795_791_600_000)
        append = store.append
        market = "KXBTCD-25DEC3117-T101999.99"
        base = 1_795_791_600.0
        for i in range(rows - 1):
            ts = base + i * 0.003
            append(
                "market_events",
                {
                    "market": market,
                    "ts_ms": round(ts * 1000),
                    "kind": "events",
                    "exch_seq": i + 1,
                    "payload": {
                        "n": 1,
                        "events": [["d", i + 1, ts, "yes", 5600 + i % 40, -300 + i % 7, None]],
                    },
                },
            )
        store.sync()
    finally:
        store.close()
    size = sum(
        Path(f"{path}{s}").stat().st_size for s in ("", "-wal") if Path(f"{path}{s}").exists()
    )
    return time.perf_counter() - t0, size


def cmd_verify(args: argparse.Namespace) -> int:
    """Seconds for :func:`cfa.audit.verify` (what ``cfa audit verify`` runs) over a file of
    ``--rows`` rows, best and median of ``--repeat`` runs; the file is built first."""
    import tempfile

    from cfa.audit import verify

    if args.rows < 2 or args.repeat < 1:
        print("bench verify: need --rows >= 2 and --repeat >= 1", file=sys.stderr)
        return 2
    tmp = None
    path: Path = args.db
    if path is None:
        if args.reuse:
            print("bench verify: --reuse needs --db", file=sys.stderr)
            return 2
        tmp = tempfile.TemporaryDirectory(prefix="cfa-bench-verify-")
        path = Path(tmp.name) / "verify.db"
    try:
        build_s: float | None = None
        if args.reuse:
            if not path.is_file():
                print(f"bench verify: {path} does not exist", file=sys.stderr)
                return 2
            size = path.stat().st_size
        else:
            build_s, size = _build_verify_file(path, args.rows, args.writer)
        times: list[float] = []
        rows = 0
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            res = verify(path, workers=args.workers)
            times.append(time.perf_counter() - t0)
            if not res.ok:
                print(f"bench verify: the file does not verify: {res.reason}", file=sys.stderr)
                return 1
            rows = res.rows
    finally:
        if tmp is not None:
            tmp.cleanup()
    best, median = min(times), statistics.median(times)
    info = machine_info()
    workers = args.workers if args.workers is not None else min(2, os.cpu_count() or 1)
    per_million = median / rows * 1e6
    result = {
        "rows": rows,
        "file_bytes": size,
        "build_seconds": build_s,
        "verify_seconds_best": best,
        "verify_seconds_median": median,
        "verify_rows_per_s": rows / median,
        "seconds_per_million_rows": per_million,
        "workers": workers,
        "meets_target": per_million <= VERIFY_TARGET_S,
    }
    if args.json:
        payload = {
            "bench": "verify",
            "target_s_per_million_rows": VERIFY_TARGET_S,
            "machine": info,
            "results": result,
        }
        print(json.dumps(payload, indent=2))
        return 0
    _print_machine(info)
    built = f", built in {build_s:.1f} s" if build_s is not None else ""
    print(
        f"audit file: {rows:,} rows (compact one-event market_events batches), "
        f"{size / 1e6:.0f} MB{built}"
    )
    verdict = "ok" if result["meets_target"] else "OVER TARGET"
    print(
        f"  verify(): median {median:.2f} s, best {best:.2f} s of {args.repeat} "
        f"({rows / median:,.0f} rows/s, {workers} workers) = {per_million:.2f} s per 1M rows   "
        f"target ≤ {VERIFY_TARGET_S:g} s: {verdict}"
    )
    return 0


# -- signals --------------------------------------------------------------------------------------


def _signal_stream(n: int, seed: int) -> list[tuple[str, tuple[Any, ...]]]:
    """``n`` events of one synthetic market, 20 per second: touches (3 in 4) and trades.

    The touch sits on a cent grid around a random-walk price; sizes are 1–40 contracts with our
    orders already removed. Trades hit the touch with random taker sides; about one in three
    empties its level, which then comes back at the same price a second later half the time,
    so :class:`RefillDetector` keeps real candidates open.
    """
    import random

    from cfa.core.types import QTY_SCALE, Side

    rng = random.Random(seed)
    out: list[tuple[str, tuple[Any, ...]]] = []
    bid, qb, qa = 5000, 2000, 2000
    t = 1_000.0
    refill_at: float | None = None
    while len(out) < n:
        t += 0.05
        if rng.random() < 0.25:
            side = Side.BID if rng.random() < 0.5 else Side.ASK
            resting = qa if side is Side.BID else qb
            count = resting if rng.random() < 0.33 else rng.randint(1, 10) * QTY_SCALE
            price = bid + 100 if side is Side.BID else bid
            out.append(("trade", (t, price, count, side)))
            continue
        if refill_at is not None and t >= refill_at:
            qb, qa, refill_at = 2000, 2000, None
        elif rng.random() < 0.05:
            bid += 100 if rng.random() < 0.5 else -100
            bid = min(max(bid, 200), 9700)
            qb, qa = rng.randint(1, 40) * QTY_SCALE, rng.randint(1, 40) * QTY_SCALE
        else:
            qb = max(0, qb + rng.randint(-3, 3) * QTY_SCALE)
            qa = max(0, qa + rng.randint(-3, 3) * QTY_SCALE)
            if (qb == 0 or qa == 0) and refill_at is None and rng.random() < 0.5:
                refill_at = t + 1.0
        out.append(("touch", (t, bid if qb else None, qb, bid + 100 if qa else None, qa)))
    return out


def _garch_returns(n: int, seed: int) -> list[float]:
    """``n`` GARCH(1,1) logit returns per 10 s (α 0.08, β 0.9, s.d. about 0.01)."""
    import random

    rng = random.Random(seed)
    omega, alpha, beta = 0.02e-4, 0.08, 0.90
    var = omega / (1.0 - alpha - beta)
    out: list[float] = []
    for _ in range(n + 100):
        r = var**0.5 * rng.gauss(0.0, 1.0)
        out.append(r)
        var = omega + alpha * r * r + beta * var
    return out[100:]


def configure_signals(parser: argparse.ArgumentParser) -> None:
    """Options of ``bench.py signals``."""
    parser.add_argument("--batches", type=int, default=200, help="timed batches (200)")
    parser.add_argument("--batch-size", type=int, default=1000, help="updates per batch (1000)")
    parser.add_argument("--fits", type=int, default=50, help="timed GARCH fits per size (50)")
    parser.add_argument(
        "--fit-sizes", default="360,720", help="returns per GARCH fit, comma-separated (360,720)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic streams (0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")


def cmd_signals(args: argparse.Namespace) -> int:
    """µs per update of each :mod:`cfa.core.signals` estimator and ms per GARCH fit.

    Updates: each estimator gets its own stream of ``(5 + batches) × batch_size`` inputs of
    the kind it consumes (touches for OFI, trades for momentum and VPIN, both for the refill
    detector, mids for ``GarchForecast.update``), cut from one synthetic market
    (:func:`_signal_stream`) and fed in order, one batch per timing, interleaved across
    estimators (:func:`time_batches`); the first 5 batches warm up. The figure includes the
    Python call and loop overhead a caller pays (reported as ``loop_overhead_us``).

    GARCH: a :class:`GarchForecast` holding ``size`` returns (its ``max_returns``) of a
    simulated GARCH(1,1) series; each round feeds one new return (untimed) and times the
    ``forecast(600)`` that refits on the full window.
    """
    import math

    from cfa.core.signals import VPIN, OrderFlowImbalance, RefillDetector, TradeMomentum
    from cfa.core.volforecast import GarchForecast

    try:
        sizes = [int(s) for s in str(args.fit_sizes).split(",") if s.strip()]
    except ValueError:
        print("bench signals: --fit-sizes must be comma-separated integers", file=sys.stderr)
        return 2
    if args.batches < 1 or args.batch_size < 1 or args.fits < 2 or not sizes or min(sizes) < 60:
        print(
            "bench signals: need --batches, --batch-size >= 1, --fits >= 2, fit sizes >= 60",
            file=sys.stderr,
        )
        return 2
    warmup = 5
    per = (warmup + args.batches) * args.batch_size
    stream = _signal_stream(4 * per + 1000, args.seed)
    touches = [a for k, a in stream if k == "touch"]
    trades = [a for k, a in stream if k == "trade"]
    mids = [(t, (b + a) / 20_000.0) for t, b, _, a, _ in touches if b is not None and a]
    mixed = stream[:per]
    if min(len(trades), len(touches), len(mids)) < per:
        print("bench signals: synthetic stream too short", file=sys.stderr)
        return 1
    touches, trades, mids = touches[:per], trades[:per], mids[:per]

    ofi = OrderFlowImbalance()
    mom = TradeMomentum()
    vpin = VPIN(bucket_contracts=100.0, buckets=20)
    ref = RefillDetector()
    gf = GarchForecast()
    n = args.batch_size

    def batches_over(rows: list[Any], step: Callable[[Any], None]) -> Callable[[], None]:
        pos = [0]

        def run() -> None:
            i = pos[0]
            for row in rows[i : i + n]:
                step(row)
            pos[0] = i + n

        return run

    def ofi_step(a: tuple[Any, ...]) -> None:
        ofi.update(*a)

    def mom_step(a: tuple[Any, ...]) -> None:
        mom.on_trade(a[0], a[2], a[3])

    def vpin_step(a: tuple[Any, ...]) -> None:
        vpin.on_trade(a[0], a[2], a[3])

    def ref_step(ev: tuple[str, tuple[Any, ...]]) -> None:
        if ev[0] == "touch":
            ref.on_touch(*ev[1])
        else:
            ref.on_trade(*ev[1])

    def garch_step(a: tuple[float, float]) -> None:
        gf.update(a[0], a[1])

    def empty_step(_a: object) -> None:
        pass

    contenders: dict[str, Callable[[], None]] = {
        "loop": batches_over(touches, empty_step),
        "OrderFlowImbalance.update": batches_over(touches, ofi_step),
        "TradeMomentum.on_trade": batches_over(trades, mom_step),
        "VPIN.on_trade": batches_over(trades, vpin_step),
        "RefillDetector (touch+trade)": batches_over(mixed, ref_step),
        "GarchForecast.update": batches_over(mids, garch_step),
    }
    timings = time_batches(contenders, args.batches, warmup=warmup)
    overhead = summarise(timings.pop("loop"), n)
    updates: dict[str, Any] = {name: asdict(summarise(ns, n)) for name, ns in timings.items()}
    reads = {
        "ofi": ofi.normalized(mixed[-1][1][0]),
        "momentum": mom.value(mixed[-1][1][0]),
        "vpin": vpin.value(),
        "refills_ask": ref.view(mixed[-1][1][0]).ask.refills,
    }

    fits: dict[str, Any] = {}
    for size in sizes:
        rets = _garch_returns(size + args.fits + 5, args.seed)
        est = GarchForecast(interval_s=10.0, min_returns=60, max_returns=size)
        x, t = 0.0, 1.0
        est.update(t, 0.5)
        ms: list[float] = []
        ok = 0
        clock = time.perf_counter_ns
        for i, r in enumerate(rets):
            x += r
            t += 10.0
            est.update(t, 1.0 / (1.0 + math.exp(-x)))
            if i + 1 < size:
                continue
            if i + 1 == size:
                est.forecast(600.0)  # first fit: untimed warm-up (imports, caches)
                continue
            t0 = clock()
            f = est.forecast(600.0)
            ms.append((clock() - t0) / 1e6)
            ok += f is not None
            if len(ms) == args.fits:
                break
        ms.sort()
        last = est.last_fit
        fits[str(size)] = {
            "fits": len(ms),
            "succeeded": ok,
            "median_ms": statistics.median(ms),
            "p99_ms": statistics.quantiles(ms, n=100, method="inclusive")[98],
            "min_ms": ms[0],
            "max_ms": ms[-1],
            "persistence": None if last is None else last.persistence,
        }

    info = machine_info()
    if args.json:
        payload = {
            "bench": "signals",
            "batches": args.batches,
            "batch_size": n,
            "loop_overhead_us": overhead.median_us,
            "machine": info,
            "updates": updates,
            "garch": fits,
            "final_values": reads,
        }
        print(json.dumps(payload, indent=2))
        return 0

    _print_machine(info)
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    print(f"load average (1 min): {load[0]:.2f}")
    print(
        f"signal updates: synthetic market, 20 events/s; {args.batches} batches x {n} updates "
        "per estimator (median of batch means)"
    )
    for name, s in updates.items():
        print(
            f"  {name:<30} median {s['median_us']:6.2f} µs/update   p99 {s['p99_us']:6.2f} µs   "
            f"min {s['min_us']:6.2f} µs   ({s['calls']:,} updates)"
        )
    print(f"  (loop overhead included above: {overhead.median_us:.3f} µs/update)")
    print(f"  values at the end: {reads}")
    print("GarchForecast.forecast() refit (arch GARCH(1,1), zero mean, normal), 10 s returns:")
    for size, r in fits.items():
        print(
            f"  {size:>4} returns: median {r['median_ms']:6.2f} ms   p99 {r['p99_ms']:6.2f} ms   "
            f"min {r['min_ms']:6.2f} ms   max {r['max_ms']:6.2f} ms   "
            f"({r['succeeded']}/{r['fits']} fits gave a forecast; persistence "
            f"{r['persistence'] if r['persistence'] is None else round(r['persistence'], 3)})"
        )
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
    "regime": Subcommand(
        "ms per cfa.core.regime.RegimeMonitor.refresh() (VAR refit)", configure_regime, cmd_regime
    ),
    "verify": Subcommand(
        "seconds for cfa.audit.verify() over a 1,000,000-row audit file",
        configure_verify,
        cmd_verify,
    ),
    "signals": Subcommand(
        "µs per update of the cfa.core.signals estimators; ms per GARCH fit (360, 720 returns)",
        configure_signals,
        cmd_signals,
    ),
    "sim": Subcommand(
        "events/s end to end (simulator + loop + audit) for 1, 100 and 1,000 markets",
        bench_runtime.configure_sim,
        bench_runtime.cmd_sim,
    ),
    "agents": Subcommand(
        "fast-path latency with agents on a 2 s reasoner in the background",
        bench_runtime.configure_agents,
        bench_runtime.cmd_agents,
    ),
    "context": Subcommand(
        "size of the market agents' context JSON over a demo run",
        bench_runtime.configure_context,
        bench_runtime.cmd_context,
    ),
    "replay": Subcommand(
        "frames/s of a recorded Kalshi feed replayed, feed-only and end to end",
        bench_replay.configure_replay,
        bench_replay.cmd_replay,
    ),
    "startup": Subcommand(
        "CPU seconds of `cfa --help`, `cfa govern …` and `cfa audit verify` from a cold start",
        bench_runtime.configure_startup,
        bench_runtime.cmd_startup,
    ),
    "killswitch": Subcommand(
        "ms from spawning `cfa govern halt --all` (and from its request) to orders cancelled",
        bench_runtime.configure_killswitch,
        bench_runtime.cmd_killswitch,
    ),
    "compare": Subcommand(
        "cfa vs hftbacktest 2.4.4 (numba and Python AS strategies) on the same generated events",
        bench_compare.configure_compare,
        bench_compare.cmd_compare,
    ),
    "callgrind": Subcommand(
        "instructions (valgrind callgrind) per event of a fixed one-market run; --profile: "
        "sampled CPU share per cfa module group",
        bench_callgrind.configure_callgrind,
        bench_callgrind.cmd_callgrind,
    ),
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
