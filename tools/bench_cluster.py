"""Markets over a Ray cluster (``cfa run --executor ray``): throughput and kill switch.

Run: ``.venv/bin/python tools/bench_cluster.py [throughput] [killswitch] [realtime]``
(default: throughput and killswitch). Starts a local Ray cluster of ``--cpus`` CPUs (default:
every core) unless ``--address`` names one. Every figure is measured; nothing is extrapolated.

* ``throughput``: ``--markets`` quiet markets (``calm``, the default scenario: a CPI market
  days from its close, about 60 book events per second each) for ``--seconds`` simulated
  seconds as fast as the CPU allows, over 1 and over 2 actors (``--actors 1,2``), one SQLite
  store. The markets are spread over ``--events`` copies of the scenario with their own
  series tickers, so that they form several events (copies of one scenario share an event
  ticker, and an event is never split). Per configuration: events, events per second of the
  driver's wall time (actors' start-up included) and of the slowest actor's wall time, the
  real-time factor (simulated seconds per wall second of the slowest actor: at ≥ 1 these
  markets keep up at ``--speed 1x``), actors' CPU per event, and the orders and fills of the
  run (a run that placed no order measured no order traffic, and says so).
* ``realtime``: the same markets at ``1x`` (``--speed`` paced) for ``--rt-seconds``: the wall
  time the run took against its simulated length (a run that keeps up takes its length).
* ``killswitch``: a real ``cfa govern halt --all`` / ``resume --all`` process, ``--repeat``
  times each, against ``--ks-markets`` markets over 2 actors at ``--ks-speed``; per request
  and per actor, the wall time from the request row written to that actor's result row
  (applied, after the halted markets' orders were cancelled), in ms.

Prints a JSON line per measurement and a Markdown table at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CFA = [sys.executable, "-m", "cfa.cli"]


def variants(base: str, n: int, out: Path) -> list[str]:
    """``n`` copies of the shipped scenario ``base`` as YAML files with their own name and
    series ticker (so their markets form ``n`` distinct events); returns their paths."""
    from importlib.resources import files

    text = files("cfa.exchange").joinpath("scenarios", f"{base}.yaml").read_text("utf-8")
    paths = []
    for i in range(n):
        lines = []
        for line in text.splitlines():
            if line.startswith("name:"):
                line = f"name: {base}-g{i}"
            elif line.strip().startswith("series_ticker:"):
                series = line.split(":", 1)[1].strip()
                line = line.split(":", 1)[0] + f": {series}G{i}"
            lines.append(line)
        p = out / f"{base}-g{i}.yaml"
        p.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(str(p))
    return paths


def start_run(
    db: Path | str,
    names: list[str],
    seconds: float,
    speed: float | None,
    actors: int,
    seed: int = 1,
) -> Any:
    from cfa.audit import AuditStore
    from cfa.exchange.sim import DEFAULT_START_TS
    from cfa.risk.policy import load_policy
    from cfa.runtime import cluster as cl

    store = AuditStore.open(db)
    markets, entries = cl.sim_markets(names, DEFAULT_START_TS)
    run = cl.ClusterRun(
        store,
        str(db),
        load_policy("default"),
        {"exchange": "sim", "scenarios": names, "seed": seed, "bench": "cluster"},
        cl.SimSpec(tuple(names), seed, DEFAULT_START_TS, seconds, speed),
        markets,
        entries=entries,
        actors=actors,
        start_ts=DEFAULT_START_TS,
        duration_s=seconds,
    )
    return run, store


def _q(db: Path | str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of a read of the store (SQLite file or PostgreSQL URL)."""
    from cfa.audit.chain import connect_readonly

    conn = connect_readonly(db)
    try:
        return [tuple(r) for r in conn.execute(sql, args).fetchall()]
    finally:
        conn.close()


def store_for(args: argparse.Namespace, tmp: Path, name: str) -> str:
    """Where one configuration's store goes: ``tmp/<name>.db``, or with ``--pg URL`` a fresh
    schema of that PostgreSQL database."""
    if args.pg is None:
        return str(tmp / f"{name}.db")
    from cfa.audit.bench import fresh_schema

    schema, url = fresh_schema(args.pg, f"cfa_bench_{name.replace('-', '_')}")
    args.pg_schemas.append(schema)  # dropped when the benchmark ends
    return url


def traffic(db: Path | str) -> dict[str, int]:
    actions = dict(_q(db, "select action, count(*) from orders group by action"))
    ((fills,),) = _q(db, "select count(*) from fills")
    return {"placed": int(actions.get("place", 0)), "fills": int(fills)}


def throughput(args: argparse.Namespace, tmp: Path, names: list[str]) -> list[dict[str, Any]]:
    out = []
    for k in args.actors:
        db = store_for(args, tmp, f"tp-{k}")
        t0 = time.perf_counter()
        run, store = start_run(db, names, args.seconds, None, k)
        run.start()
        run.wait()
        summary = run.end()
        wall = time.perf_counter() - t0
        store.close()
        acts = summary["actors"]
        slowest = max(a["wall_s"] for a in acts)
        cpu = sum(a["cpu_s"] for a in acts)
        row = {
            "bench": "throughput",
            "markets": len(names),
            "actors": len(acts),
            "sim_s": args.seconds,
            "events": summary["events"],
            "driver_wall_s": round(wall, 2),
            "slowest_actor_wall_s": slowest,
            "events_per_s_driver": round(summary["events"] / wall),
            "events_per_s_actors": round(summary["events"] / slowest),
            "realtime_factor": round(args.seconds / slowest, 2),
            "actor_cpu_s": round(cpu, 2),
            "cpu_us_per_event": round(cpu / summary["events"] * 1e6, 2),
            "per_actor": [(a["actor"], len(a["markets"]), a["events"], a["wall_s"]) for a in acts],
            **traffic(db),
            "load1": round(os.getloadavg()[0], 2),
        }
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def realtime(args: argparse.Namespace, tmp: Path, names: list[str]) -> list[dict[str, Any]]:
    out = []
    for k in args.actors:
        db = store_for(args, tmp, f"rt-{k}")
        run, store = start_run(db, names, args.rt_seconds, 1.0, k)
        t0 = time.perf_counter()
        run.start()
        run.wait()
        summary = run.end()
        wall = time.perf_counter() - t0
        store.close()
        acts = summary["actors"]
        row = {
            "bench": "realtime",
            "markets": len(names),
            "actors": len(acts),
            "sim_s": args.rt_seconds,
            "driver_wall_s": round(wall, 2),
            "slowest_actor_wall_s": max(a["wall_s"] for a in acts),
            "lag_s": round(max(a["wall_s"] for a in acts) - args.rt_seconds, 2),
            "events": summary["events"],
            **traffic(db),
            "load1": round(os.getloadavg()[0], 2),
        }
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def _results(db: Path | str, seq: int) -> list[dict[str, Any]]:
    rows = _q(db, "select payload from governance_actions where seq > ? order by seq", seq)
    return [json.loads(p) for (p,) in rows]


def _max_seq(db: Path | str) -> int:
    return int(_q(db, "select max(seq) from governance_actions")[0][0] or 0)


def killswitch(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    names = variants("calm", 2, tmp)
    names = [names[i % 2] for i in range(args.ks_markets)]
    db = store_for(args, tmp, "ks")
    run, store = start_run(db, names, 3600, args.ks_speed, 2)
    run_id = run.start()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    latencies: dict[str, list[float]] = {"actor-0": [], "actor-1": []}
    spawned_to_applied: list[float] = []
    placed = "select count(*) from orders where action = 'place'"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait for both actors to quote (after warm-up)
            run.poll(0.25)
            n = _q(db, "select count(distinct market) from orders where action = 'place'")[0][0]
            if n >= min(4, args.ks_markets) and _q(db, placed)[0][0]:
                break
        for i in range(args.repeat * 2):
            action = "halt" if i % 2 == 0 else "resume"
            seq = _max_seq(db)
            t_spawn = time.time()
            subprocess.run(
                [*CFA, "govern", action, "--all", "--reason", "bench", "--db", str(db)],
                check=True,
                env=env,
                capture_output=True,
            )
            got: list[dict[str, Any]] = []
            end = time.monotonic() + 10
            while time.monotonic() < end:
                run.poll(0.02)
                got = [p for p in _results(db, seq) if p.get("status") in ("applied", "rejected")]
                if len(got) >= 2:
                    break
            if len(got) < 2:
                raise SystemExit(f"{action}: only {len(got)} of 2 actors answered within 10 s")
            for p in got:
                latencies[p["worker"]].append((p["applied_wall"] - p["requested_wall"]) * 1000)
            spawned_to_applied.append((max(p["applied_wall"] for p in got) - t_spawn) * 1000)
            time.sleep(0.5)
    finally:
        run.stop()
        run.wait()
        run.end()
        store.close()
    allv = [v for vs in latencies.values() for v in vs]
    row = {
        "bench": "killswitch",
        "run_id": run_id,
        "markets": args.ks_markets,
        "speed": args.ks_speed,
        "requests": args.repeat * 2,
        "per_actor_ms": {
            k: {"median": round(statistics.median(v), 1), "max": round(max(v), 1)}
            for k, v in latencies.items()
        },
        "request_to_applied_ms": {
            "median": round(statistics.median(allv), 1),
            "max": round(max(allv), 1),
        },
        "spawned_to_last_actor_ms": {
            "median": round(statistics.median(spawned_to_applied), 1),
            "max": round(max(spawned_to_applied), 1),
        },
        **traffic(db),
        "load1": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("what", nargs="*", default=["throughput", "killswitch"])
    ap.add_argument("--markets", type=int, default=200)
    ap.add_argument("--events", type=int, default=2, help="distinct events the markets form")
    ap.add_argument("--seconds", type=float, default=240.0, help="simulated s (throughput)")
    ap.add_argument("--rt-seconds", type=float, default=60.0, help="simulated s (realtime)")
    ap.add_argument("--actors", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    ap.add_argument("--ks-markets", type=int, default=40)
    ap.add_argument("--ks-speed", type=float, default=20.0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cpus", type=int, default=None)
    ap.add_argument("--address", default=None)
    ap.add_argument(
        "--pg", default=None, metavar="URL", help="one PostgreSQL store (a fresh schema each)"
    )
    args = ap.parse_args()
    args.pg_schemas = []
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    from cfa.runtime.cluster import init_ray

    started = init_ray(args.address, args.cpus)
    results: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            paths = variants("calm", args.events, tmp)
            names = [paths[i % len(paths)] for i in range(args.markets)]
            if "throughput" in args.what:
                results += throughput(args, tmp, names)
            if "realtime" in args.what:
                results += realtime(args, tmp, names)
            if "killswitch" in args.what:
                results.append(killswitch(args, tmp))
    finally:
        if started:
            import ray

            ray.shutdown()
        if args.pg_schemas:
            from cfa.audit.bench import drop_schema

            for schema in args.pg_schemas:
                drop_schema(args.pg, schema)
    print()
    for r in results:
        if r["bench"] == "throughput":
            print(
                f"| {r['markets']} calm, {r['sim_s']:g} sim s, {r['actors']} actor(s) | "
                f"{r['events']:,} events; {r['events_per_s_actors']:,} ev/s (slowest actor "
                f"{r['slowest_actor_wall_s']} s), {r['events_per_s_driver']:,} ev/s incl. start-up "
                f"({r['driver_wall_s']} s); {r['realtime_factor']}× real time; "
                f"{r['cpu_us_per_event']} µs CPU/event; {r['placed']} placed, {r['fills']} fills; "
                f"load {r['load1']} |"
            )
        elif r["bench"] == "realtime":
            print(
                f"| {r['markets']} calm at 1x, {r['sim_s']:g} sim s, {r['actors']} actor(s) | "
                f"slowest actor {r['slowest_actor_wall_s']} s wall (lag {r['lag_s']} s); "
                f"{r['events']:,} events; {r['placed']} placed; load {r['load1']} |"
            )
        else:
            pa = "; ".join(
                f"{k} median {v['median']} ms, max {v['max']} ms"
                for k, v in r["per_actor_ms"].items()
            )
            print(
                f"| kill switch, {r['markets']} calm over 2 actors at {r['speed']:g}x, "
                f"{r['requests']} requests | request → applied: {pa}; `cfa govern` spawned → "
                f"last actor applied median {r['spawned_to_last_actor_ms']['median']} ms, max "
                f"{r['spawned_to_last_actor_ms']['max']} ms; {r['placed']} placed |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
