"""Feed-replay benchmark, registered in ``tools/bench.py`` as ``replay``.

Frames per second (wall) and frames per CPU-second of a recorded Kalshi WebSocket feed replayed
by :class:`cfa.exchange.feed.KalshiFeedExchange`, two ways:

* **feed-only**: iterate ``KalshiFeedExchange.stream`` with nothing attached (the feed's own
  cost: opening the file, decoding every frame, keeping the recorded book, re-stamping events);
* **end to end**: a :class:`cfa.runtime.session.Session` with the ``default`` policy over the
  feed, writing a throwaway audit store on disk (as ``tools/replay_captures.py`` does, without
  agents unless ``--agents``), with what it did at the venue (orders placed, amended,
  cancelled, denied, fills) from that store.

The source is the real KXBTC15M captures when they are present (``../shared/data/kalshi`` or
``$CFA_KALSHI_DATA``, see :mod:`cfa.exchange.captures`; converted once with
:func:`cfa.exchange.feed.write_feed` into a temporary directory, conversion not timed), and
otherwise, or with ``--generated``, a feed generated here from a :class:`SimExchange` run
(:func:`generate_feed`), so the benchmark runs on a fresh clone. Each measurement runs in a
fresh subprocess (caches and peak memory are its own). CPU seconds come from
``resource.getrusage``; wall time and the load average are printed beside them because the
machine is shared.

Run: ``.venv/bin/python tools/bench.py replay [--generated] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# -- a Kalshi-shaped feed from the simulator ------------------------------------------------------


def _dollars(p: int) -> str:
    """Price units ($0.0001) as Kalshi's dollar string: 5600 → ``"0.5600"``."""
    return f"{p // 10_000}.{p % 10_000:04d}"


def _count(q: int) -> str:
    """Count units (0.01 contract) as Kalshi's fixed-point string: -1250 → ``"-12.50"``."""
    sign = "-" if q < 0 else ""
    q = abs(q)
    return f"{sign}{q // 100}.{q % 100:02d}"


def _levels(ladder: dict[int, int]) -> list[list[str]]:
    return [[_dollars(p), _count(q)] for p, q in sorted(ladder.items()) if q > 0]


def generate_feed(
    out: Path | str,
    *,
    markets: int = 1,
    seconds: float = 1800.0,
    scenario: str = "calm",
    seed: int = 1,
    ticker_every: int = 40,
    defects: bool = False,
) -> int:
    """Write a simulator run as a Kalshi WebSocket frames file ``out`` plus its metadata file
    (:func:`cfa.exchange.feed.metadata_path`); returns the number of frames written.

    Frames follow Kalshi's documented shapes (``kalshi-docs/websockets``: orderbook-updates,
    public-trades, market-ticker), each with the recorder's ``recv_ts`` (the event time plus a
    5–40 ms latency, seeded): ``subscribed`` replies first, then per market an
    ``orderbook_snapshot`` (its own ``sid``, ``seq`` 1) and its ``orderbook_delta`` frames
    (``seq`` contiguous), ``trade`` frames for the simulator's prints, and every
    ``ticker_every`` book events a ``ticker`` frame with the best bid and ask, last price and
    running volume. ``defects=True`` adds what real recordings show, seeded and at known
    rates: a lost delta with a skipped ``seq`` (a gap) about every 3,000 book events, a lost
    delta with no sign in ``seq`` followed later by a fresh snapshot (a jump) about every
    4,000, mid-stream snapshots, control frames, blank lines and receive times that step back.
    Deterministic for given arguments.
    """
    return asyncio.run(
        agenerate_feed(Path(out), markets, seconds, scenario, seed, ticker_every, defects)
    )


async def agenerate_feed(
    out: Path,
    markets: int = 1,
    seconds: float = 1800.0,
    scenario: str = "calm",
    seed: int = 1,
    ticker_every: int = 40,
    defects: bool = False,
) -> int:
    """:func:`generate_feed` inside a running event loop."""
    from cfa.core.book import OrderBook
    from cfa.core.types import BookDelta, BookSnapshot, Side, Trade
    from cfa.exchange.feed import metadata_path
    from cfa.exchange.sim import SimExchange

    rng = random.Random(seed)
    ex = SimExchange.from_scenarios([scenario] * markets, seed=seed, duration=seconds)
    await ex.start()
    infos = await ex.get_markets()
    sid = {m.ticker: 2 * i + 2 for i, m in enumerate(infos)}
    shift = dict.fromkeys(sid, 1)  # frame seq = simulator seq + shift (Kalshi starts at 1)
    books = {m.ticker: OrderBook(m.ticker) for m in infos}
    volume = dict.fromkeys(sid, 0)
    last_price: dict[str, int] = {}
    since_ticker = dict.fromkeys(sid, 0)
    pending_jump: dict[str, int] = {}
    n = 0
    recv = 0.0

    def dumps(obj: dict[str, Any]) -> str:
        return json.dumps(obj, separators=(",", ":"))

    with open(out, "w", encoding="utf-8") as fh:

        def put(frame: dict[str, Any], ts: float) -> None:
            nonlocal n, recv
            recv = max(recv, ts + rng.uniform(0.005, 0.040))
            t = recv
            if defects and rng.random() < 0.002:
                t = recv - rng.uniform(0.05, 0.3)  # the recorder's clock steps back
            frame["recv_ts"] = round(t, 6)
            fh.write(dumps(frame) + "\n")
            if defects and rng.random() < 0.001:
                fh.write("\n")
            n += 1

        def snapshot(ticker: str, seq: int, ts: float) -> None:
            b = books[ticker]
            msg = {"market_ticker": ticker, "market_id": f"m-{sid[ticker]}"}
            if b.yes:
                msg["yes_dollars_fp"] = _levels(b.yes)  # type: ignore[assignment]
            if b.no:
                msg["no_dollars_fp"] = _levels(b.no)  # type: ignore[assignment]
            put({"type": "orderbook_snapshot", "sid": sid[ticker], "seq": seq, "msg": msg}, ts)

        subscribed = False
        async for ev in ex.stream([m.ticker for m in infos]):
            if not subscribed:
                subscribed = True
                for i, channel in enumerate(("ticker", "orderbook_delta", "trade")):
                    reply = {"channel": channel, "sid": i + 1}
                    put({"type": "subscribed", "id": i + 1, "msg": reply}, ev.ts)
            t = ev.ticker
            b = books[t]
            if isinstance(ev, BookSnapshot):
                b.apply_snapshot(ev)
                snapshot(t, ev.seq + shift[t], ev.ts)
            elif isinstance(ev, BookDelta):
                b.apply_delta(ev)
                seq = ev.seq + shift[t]
                lost = False
                if defects and rng.random() < 1 / 3000:
                    lost = True  # a gap: the next delta's seq skips this one
                elif defects and rng.random() < 1 / 4000:
                    lost = True  # a jump: renumber, then a snapshot corrects the book later
                    shift[t] -= 1
                    pending_jump[t] = rng.randint(5, 200)
                if not lost:
                    msg = {
                        "market_ticker": t,
                        "market_id": f"m-{sid[t]}",
                        "price_dollars": _dollars(ev.price),
                        "delta_fp": _count(ev.delta),
                        "side": ev.outcome.value,
                        "ts_ms": int(ev.ts * 1000),
                    }
                    put({"type": "orderbook_delta", "sid": sid[t], "seq": seq, "msg": msg}, ev.ts)
                if t in pending_jump:
                    pending_jump[t] -= 1
                    if pending_jump[t] <= 0:
                        del pending_jump[t]
                        shift[t] += 1
                        snapshot(t, ev.seq + shift[t], ev.ts)
                elif defects and rng.random() < 1 / 5000:
                    shift[t] += 1
                    snapshot(t, ev.seq + shift[t], ev.ts)  # a resync with the same book
                since_ticker[t] += 1
                if since_ticker[t] >= ticker_every:
                    since_ticker[t] = 0
                    bb, ba = b.best_bid(), b.best_ask()
                    tmsg: dict[str, Any] = {
                        "market_ticker": t,
                        "market_id": f"m-{sid[t]}",
                        "yes_bid_dollars": _dollars(bb or 0),
                        "yes_ask_dollars": _dollars(ba if ba is not None else 10_000),
                        "volume_fp": _count(volume[t]),
                        "ts": int(ev.ts),
                        "ts_ms": int(ev.ts * 1000),
                    }
                    if t in last_price:
                        tmsg["price_dollars"] = _dollars(last_price[t])
                    put({"type": "ticker", "sid": 1, "msg": tmsg}, ev.ts)
            elif isinstance(ev, Trade):
                volume[t] += ev.count
                last_price[t] = ev.price
                put(
                    {
                        "type": "trade",
                        "sid": 3,
                        "msg": {
                            "trade_id": ev.trade_id,
                            "market_ticker": t,
                            "yes_price_dollars": _dollars(ev.price),
                            "no_price_dollars": _dollars(10_000 - ev.price),
                            "count_fp": _count(ev.count),
                            "taker_side": "yes" if ev.taker_side is Side.BID else "no",
                            "ts": int(ev.ts),
                            "ts_ms": int(ev.ts * 1000),
                        },
                    },
                    ev.ts,
                )
        if defects:
            put({"type": "ok", "id": 9, "msg": {}}, recv)
    meta = {
        "dataset": f"generated:{scenario}x{markets}:seed{seed}",
        "markets": [
            {
                "ticker": m.ticker,
                "close_ts": m.close_ts,
                "price_level_structure": m.price_level_structure,
                "fee_type": m.fee.fee_type,
                "fee_multiplier": str(m.fee.multiplier),
            }
            for m in infos
        ],
    }
    metadata_path(out).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return n


# -- measurements (each in a fresh subprocess) ----------------------------------------------------


async def _feed_only(paths: list[Path]) -> dict[str, Any]:
    from cfa.exchange.feed import KalshiFeedExchange

    frames = events = 0
    t0, c0 = time.perf_counter(), _cpu_s()
    for p in paths:
        ex = KalshiFeedExchange(p)
        async for _ev in ex.stream(ex.tickers):
            events += 1
        frames += ex.frames_read
    wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    return {"frames": frames, "events": events, "wall_s": wall, "cpu_s": cpu}


async def _end_to_end(
    paths: list[Path], db: Path, agents: bool, taper: tuple[float, float] | None
) -> dict[str, Any]:
    from bench_runtime import order_traffic  # type: ignore[import-not-found]  # tools/ on path

    from cfa.audit import AuditStore
    from cfa.exchange.feed import KalshiFeedExchange
    from cfa.risk.policy import CloseTaper, load_policy
    from cfa.runtime.session import Session

    policy = load_policy("default")
    if taper is not None:
        close = CloseTaper(reduce_only_s=taper[0], halt_s=taper[1])
        policy = policy.model_copy(update={"close": close})
    frames = events = 0
    traffic: dict[str, int] = {}
    wall = cpu = 0.0
    for i, p in enumerate(paths):
        store_path = db.with_name(f"{db.stem}-{i}.db")
        t0, c0 = time.perf_counter(), _cpu_s()
        ex = KalshiFeedExchange(p)
        await ex.start()
        store = AuditStore.open(store_path)
        run_id = store.start_run({"replay": p.name})
        session = Session(ex, await ex.get_markets(), policy, store, run_id)
        if agents:
            from cfa.agents.reasoners.heuristic import HeuristicReasoner

            session.attach_agents(HeuristicReasoner())
        await session.run(govern=False)
        store.close()
        await ex.close()
        wall += time.perf_counter() - t0
        cpu += _cpu_s() - c0
        frames += ex.frames_read
        events += session.events
        for k, v in order_traffic(store_path).items():
            traffic[k] = traffic.get(k, 0) + v
    return {
        "frames": frames,
        "events": events,
        "wall_s": wall,
        "cpu_s": cpu,
        **traffic,
    }


def _child(argv: list[str]) -> None:
    """``bench_replay.py _feed|_e2e DB AGENTS TAPER PATH...``: one measurement, as JSON."""
    mode, db, agents, taper_arg, *paths = argv
    taper = _taper(taper_arg)
    files = [Path(p) for p in paths]
    if mode == "_feed":
        out = asyncio.run(_feed_only(files))
    else:
        out = asyncio.run(_end_to_end(files, Path(db), agents == "1", taper))
    out["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(out))


def _run_child(mode: str, files: list[Path], db: Path, agents: bool, taper: str) -> dict[str, Any]:
    flag = "1" if agents else "0"
    proc = subprocess.run(
        [sys.executable, __file__, mode, str(db), flag, taper, *map(str, files)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{proc.stderr[-4000:]}")
    r: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    r["frames_per_s"] = round(r["frames"] / r["wall_s"]) if r["wall_s"] else 0
    r["frames_per_cpu_s"] = round(r["frames"] / r["cpu_s"]) if r["cpu_s"] else 0
    r["cpu_us_per_frame"] = round(1e6 * r["cpu_s"] / max(r["frames"], 1), 2)
    r["wall_s"] = round(r["wall_s"], 3)
    r["cpu_s"] = round(r["cpu_s"], 3)
    return r


def _taper(text: str) -> tuple[float, float] | None:
    """``"120,30"`` → (reduce-only s, halt s) before close; ``"none"`` → None."""
    if text.lower() == "none":
        return None
    reduce_s, halt_s = (float(x) for x in text.split(","))
    return reduce_s, halt_s


def _sources(args: argparse.Namespace, tmp: Path) -> tuple[str, list[Path]]:
    """The frames files to replay: converted captures, or a generated feed."""
    from cfa.exchange.captures import list_datasets

    if not args.generated:
        try:
            datasets = list_datasets()
        except (FileNotFoundError, OSError):
            datasets = []
        if datasets:
            from cfa.exchange.feed import write_feed

            files = []
            for ds in datasets:
                out = tmp / f"{ds.name}.jsonl"
                write_feed(ds, out)
                files.append(out)
            return f"real KXBTC15M captures ({len(files)} windows)", files
    out = tmp / "generated.jsonl"
    generate_feed(
        out,
        markets=args.markets,
        seconds=args.seconds,
        scenario=args.scenario,
        seed=args.seed,
        defects=args.defects,
    )
    what = (
        f"generated feed ({args.markets} x {args.scenario}, {args.seconds:.0f} simulated s, "
        f"seed {args.seed}{', with defects' if args.defects else ''})"
    )
    return what, [out]


def configure_replay(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--generated", action="store_true", help="a generated feed even when captures exist"
    )
    p.add_argument("--markets", type=int, default=1, help="generated feed: markets")
    p.add_argument("--seconds", type=float, default=3600.0, help="generated feed: simulated s")
    p.add_argument("--scenario", default="calm", help="generated feed: simulator scenario")
    p.add_argument("--seed", type=int, default=1, help="generated feed: simulator seed")
    p.add_argument("--defects", action="store_true", help="generated feed: gaps, jumps, ...")
    p.add_argument("--agents", action="store_true", help="end to end: heuristic agents too")
    p.add_argument(
        "--close-taper",
        default="120,30",
        metavar="REDUCE_S,HALT_S",
        help="end to end: replace the policy's close taper, as tools/replay_captures.py "
        "--close-taper does (the default policy is reduce-only for a 15-minute market's whole "
        "life, so it would place no order); 'none' keeps the policy's (default 120,30)",
    )
    p.add_argument("--feed-only", action="store_true", help="skip the end-to-end run")
    p.add_argument("--frames", type=Path, nargs="*", help="replay these frames files instead")
    p.add_argument("--json", action="store_true")


def cmd_replay(args: argparse.Namespace) -> int:
    from bench import machine_info  # type: ignore[import-not-found]  # tools/ is on sys.path

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.frames:
            what, files = f"{len(args.frames)} given frames file(s)", list(args.frames)
        else:
            what, files = _sources(args, tmp)
        results = {"feed_only": _run_child("_feed", files, tmp / "none.db", False, "none")}
        if not args.feed_only:
            results["end_to_end"] = _run_child(
                "_e2e", files, tmp / "e2e.db", args.agents, args.close_taper
            )
    load = os.getloadavg()
    if args.json:
        print(
            json.dumps(
                {"machine": machine_info(), "load": load, "source": what, "results": results}
            )
        )
    else:
        m = machine_info()
        print(
            f"machine: {m['cores']} cores, {m['cpu']}, Python {m['python']}, "
            f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        )
        print(f"source: {what}")
        print(
            f"end to end: default policy, close taper {args.close_taper} (reduce-only s, halt s "
            f"before close), {'heuristic agents' if args.agents else 'no agents'}, audit on disk"
        )
        for name, r in results.items():
            print(
                f"  {name:<10} {r['frames']:>9,} frames  {r['events']:>9,} events  "
                f"{r['wall_s']:>7.2f} s wall  {r['cpu_s']:>7.2f} s CPU  "
                f"{r['frames_per_s']:>9,} frames/s  {r['frames_per_cpu_s']:>9,} frames/CPU-s  "
                f"{r['cpu_us_per_frame']:>6.2f} µs CPU/frame  max RSS {r['max_rss_mb']} MB"
            )
            if name == "end_to_end":
                print(
                    f"             orders placed {r['placed']:,}  amended {r['amended']:,}  "
                    f"cancelled {r['cancelled']:,}  denied {r['denied']:,}  fills {r['fills']:,}"
                )
    e2e = results.get("end_to_end")
    if e2e is not None and e2e["placed"] == 0:
        print(
            "FAILED: the end-to-end replay placed no order: the figure measures no order traffic",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("_feed", "_e2e"):
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        _child(sys.argv[1:])
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import bench  # type: ignore[import-not-found]

        sys.exit(bench.main(["replay", *sys.argv[1:]]))
