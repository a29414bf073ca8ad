"""CPU cost of the fast-path estimators alone, on the calls one real market makes.

Records every call the market loop makes to its estimators (``MarketSignals.on_touch``,
``on_trade``, ``on_mid``, ``LogitVolatility.update``, ``RegimeMonitor.observe``,
``Markouts.on_mid``/``on_fill``, ``FillRates.mark``/``on_fill``) during one simulated
``calm`` market (simulator + loop + audit, as ``tools/bench.py sim``), then replays those calls
into fresh estimators ``--repeat`` times and reports CPU µs per recorded call and per book
event of the run. No clock, no I/O in the replay: it measures the estimators only.

    .venv/bin/python tools/bench_estimators.py [--seconds 1800] [--seed 1] [--repeat 5]
    .venv/bin/python tools/bench_estimators.py --save calls.pkl   # then, for instructions:
    valgrind --tool=callgrind .venv/bin/python tools/bench_estimators.py --load calls.pkl \
        --repeat 1   # minus the same with --repeat 0
"""

from __future__ import annotations

import argparse
import asyncio
import pickle
import resource
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

Call = tuple[str, tuple[Any, ...]]

_TARGETS = (
    ("cfa.core.signals", "MarketSignals", ("on_touch", "on_trade", "on_mid")),
    ("cfa.core.estimators", "LogitVolatility", ("update",)),
    ("cfa.core.estimators", "FillRates", ("mark", "on_fill")),
    ("cfa.core.estimators", "Markouts", ("on_mid", "on_fill")),
    ("cfa.core.regime", "RegimeMonitor", ("observe",)),
)


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def record(seconds: float, seed: int) -> tuple[list[Call], int]:
    """The estimator calls of the first market's loop, in order, and the run's event count."""
    import importlib

    import bench_runtime  # type: ignore[import-not-found]

    calls: list[Call] = []
    first: dict[str, int] = {}
    saved = []
    for mod, cls_name, methods in _TARGETS:
        cls = getattr(importlib.import_module(mod), cls_name)
        for meth in methods:
            orig = getattr(cls, meth)
            saved.append((cls, meth, orig))

            def wrapper(
                self: Any, *a: Any, _o: Any = orig, _c: str = cls_name, _m: str = meth
            ) -> Any:
                if first.setdefault(_c, id(self)) == id(self):
                    calls.append((f"{_c}.{_m}", a))
                return _o(self, *a)

            setattr(cls, meth, wrapper)
    try:
        with tempfile.TemporaryDirectory() as d:
            r = asyncio.run(bench_runtime._one(1, seconds, "calm", Path(d) / "e.db", seed))
    finally:
        for cls, meth, orig in saved:
            setattr(cls, meth, orig)
    return calls, int(r["events"])


def replay(calls: list[Call]) -> float:
    """CPU seconds to apply ``calls`` to fresh estimators (as the loop builds them)."""
    from cfa.core.estimators import FillRates, LogitVolatility, Markouts
    from cfa.core.regime import RegimeMonitor
    from cfa.core.signals import MarketSignals
    from cfa.risk.policy import load_policy

    w = load_policy("default").warmup
    objs = {
        "MarketSignals": MarketSignals(),
        "LogitVolatility": LogitVolatility(
            interval=w.sigma_interval_s,
            horizon=w.sigma_horizon_s,
            half_life=w.sigma_half_life_s,
            min_samples=w.min_samples,
            prior=load_policy("default").params.sigma.default,
            prior_weight=w.prior_weight,
        ),
        "FillRates": FillRates(),
        "Markouts": Markouts(),
        "RegimeMonitor": RegimeMonitor(),
    }
    bound = []
    for key, args in calls:
        cls, meth = key.split(".")
        bound.append((getattr(objs[cls], meth), args))
    c0 = _cpu_s()
    for f, a in bound:
        f(*a)
    return _cpu_s() - c0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=1800.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--save", type=Path, help="also write the recorded calls here (pickle)")
    p.add_argument(
        "--load",
        type=Path,
        help="replay calls written by --save instead of recording (one replay per --repeat, "
        "no per-kind figures: for `valgrind --tool=callgrind`, with --repeat 0 as baseline)",
    )
    args = p.parse_args()
    if args.load is not None:
        with args.load.open("rb") as f:
            calls, events = pickle.load(f)
        for _ in range(args.repeat):
            replay(calls)
        print(f"replayed {len(calls):,} calls x {args.repeat} ({events:,} events)")
        return 0
    calls, events = record(args.seconds, args.seed)
    if args.save is not None:
        with args.save.open("wb") as f:
            pickle.dump((calls, events), f)
    best = min(replay(calls) for _ in range(args.repeat))
    kinds = Counter(k for k, _ in calls)
    print(f"calm market, seed {args.seed}, {args.seconds:g} sim s: {events:,} events")
    print("  calls: " + ", ".join(f"{k} {n:,}" for k, n in kinds.most_common()))
    print(
        f"  estimators: {best:.4f} s CPU (best of {args.repeat}) = "
        f"{1e6 * best / len(calls):.3f} µs per call, {1e6 * best / events:.3f} µs per event"
    )
    for key in kinds:
        sub = [c for c in calls if c[0] == key]
        t = min(replay(sub) for _ in range(args.repeat))
        print(f"    {key:<26} {1e6 * t / len(sub):6.3f} µs/call  {1e6 * t / events:6.3f} µs/event")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
