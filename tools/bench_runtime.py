"""Runtime benchmarks, registered in ``tools/bench.py`` as ``sim``, ``agents``, ``context`` and
``killswitch``.

* ``sim``: simulated book events per second end to end (simulator + market loop + audit store
  on disk), for 1 and for 100 ``calm`` markets, 1,000 ``thin`` markets (about 6.6 book events
  per second each), 1,000 ``calm`` markets (the default scenario, about 60 events per second
  each) and 5,000 ``thin`` ones (the quietest scenario): is the throughput at least the rate
  those markets produce, i.e. sustainable in real time (simulated seconds per wall second and
  per CPU second, issue 13's target: above 1 on one core)? Beside events/s: wall and CPU
  seconds, CPU µs per event, memory per market (peak RSS above the interpreter's baseline with
  the statistics libraries loaded, divided by the markets), and what the run did at the venue
  (orders placed, amended, cancelled, denied, fills, from its audit store); ``--only`` picks
  configurations (``1``, ``100``, ``1000``, ``1000-calm``, ``5000``). Exits 1 when a
  configuration placed no order (its figure would measure no order traffic).
  Each configuration runs in a fresh subprocess so its peak memory (max RSS) is its own.
* ``agents``: the fast path's book-event-to-order-decision latency (one ``MarketLoop.feed``
  call and the order calls it returns: book, estimators, quote, diff, risk gate, order calls on
  the simulator) while market
  agents run in the background on a reasoner that takes 2 s per call.
* ``startup``: CPU seconds of short ``cfa`` commands from a cold interpreter (``--help``,
  ``govern status``/``pending``, ``audit verify`` of a small store); exits 1 when a ``--help``
  or ``govern`` command's median exceeds 0.5 s.
* ``killswitch``: a real ``cfa govern halt --all`` process against a ``cfa run`` at 20x: wall
  time from spawning the halt process (interpreter start-up and imports included) to the
  session having cancelled its orders, from the request it wrote to the same point (target
  ≤ 1 s), and the halt process's CPU (target ≤ 0.5 s). Exits 1 if a request took over 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def order_traffic(db: Path) -> dict[str, int]:
    """What the run did at the venue, from its audit store: orders placed, amended and
    cancelled, our fills, and the risk gate's denials (a benchmark that places no order
    measures no order traffic, and must say so)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(db)) as c:
        actions = dict(c.execute("select action, count(*) from orders group by action").fetchall())
        (fills,) = c.execute("select count(*) from fills").fetchone()
    return {
        "placed": int(actions.get("place", 0)),
        "amended": int(actions.get("amend", 0)),
        "cancelled": int(actions.get("cancel", 0)),
        "denied": int(actions.get("deny", 0)),
        "fills": int(fills),
    }


async def _one(markets: int, seconds: float, scenario: str, db: Path, seed: int) -> dict[str, Any]:
    from cfa.audit import AuditStore
    from cfa.core.regime import load_statistics
    from cfa.core.volforecast import load_arch
    from cfa.exchange.sim import SimExchange
    from cfa.risk.policy import load_policy
    from cfa.runtime.session import Session

    load_statistics()  # the heavy libraries every market loads anyway, before the baseline
    load_arch()
    base_rss_mb = _rss_mb()
    ex = SimExchange.from_scenarios([scenario] * markets, seed=seed, duration=seconds)
    await ex.start()
    store = AuditStore.open(db)
    session = Session(
        ex, await ex.get_markets(), load_policy("default"), store, store.start_run({})
    )
    t0, c0 = time.perf_counter(), _cpu_s()
    await session.run()
    wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    store.close()
    max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "markets": markets,
        "scenario": scenario,
        "seed": seed,
        "simulated_s": seconds,
        "events": session.events,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "events_per_s": round(session.events / wall),
        "cpu_us_per_event": round(1e6 * cpu / max(session.events, 1), 2),
        "produced_per_sim_s": round(session.events / seconds, 1),
        "realtime_factor": round(seconds / wall, 2),
        "cpu_realtime_factor": round(seconds / max(cpu, 1e-9), 2),
        "max_rss_mb": round(max_rss_mb, 1),
        "base_rss_mb": round(base_rss_mb, 1),
        "mb_per_market": round((max_rss_mb - base_rss_mb) / markets, 3),
        **order_traffic(db),
    }


def _rss_mb() -> float:
    """Resident set size now, MB (Linux ``/proc``; the peak so far elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


QUIET = "thin"
"""The quietest scenario (about 6.6 book events per second per market): the 5,000-market row."""


def configure_sim(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds-1", type=float, default=1800.0, help="simulated seconds, 1 market")
    p.add_argument(
        "--seconds-100", type=float, default=240.0, help="simulated seconds, 100 markets"
    )
    p.add_argument(
        "--seconds-1000", type=float, default=240.0, help="simulated s, 1000 slow markets"
    )
    p.add_argument(
        "--seconds-1000-calm",
        type=float,
        default=240.0,
        help="simulated s, 1000 calm (default-scenario) markets",
    )
    p.add_argument(
        "--seconds-5000", type=float, default=240.0, help=f"simulated s, 5000 {QUIET} markets"
    )
    p.add_argument(
        "--only",
        default="",
        help="comma-separated market counts to run (e.g. 1,1000-calm,5000); default: all",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=1,
        help="simulator seed (1: every configuration trades; a run that places no order fails)",
    )
    p.add_argument("--json", action="store_true")


def cmd_sim(args: argparse.Namespace) -> int:
    from bench import machine_info  # type: ignore[import-not-found]  # tools/ is on sys.path

    results = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        configs = {
            "1": (1, args.seconds_1, "calm"),
            "100": (100, args.seconds_100, "calm"),
            "1000": (1000, args.seconds_1000, "thin"),
            "1000-calm": (1000, args.seconds_1000_calm, "calm"),
            "5000": (5000, args.seconds_5000, QUIET),
        }
        only = [k for k in args.only.split(",") if k]
        unknown = set(only) - set(configs)
        if unknown:
            raise SystemExit(f"--only: unknown configuration(s) {sorted(unknown)}")
        for key, (markets, seconds, scenario) in configs.items():
            if only and key not in only:
                continue
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "_one",
                    str(markets),
                    str(seconds),
                    scenario,
                    str(tmp / f"{key}.db"),
                    str(args.seed),
                ],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            )
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    idle = [r for r in results if r["placed"] == 0]
    load = os.getloadavg()[0]
    if args.json:
        print(json.dumps({"machine": machine_info(), "load_1m": load, "results": results}))
    else:
        m = machine_info()
        print(f"machine: {m['cores']} cores, {m['cpu']}, Python {m['python']}, load {load:.2f}")
        print(f"simulator + market loop + audit store (SQLite file), no agents, seed {args.seed}:")
        for r in results:
            print(
                f"  {r['markets']:>5} {r['scenario']:<5} markets  {r['simulated_s']:>6.0f} sim s  "
                f"{r['events']:>9,} events  {r['wall_s']:>7.2f} s wall  {r['cpu_s']:>7.2f} s CPU  "
                f"{r['events_per_s']:>8,} events/s  {r['cpu_us_per_event']:>6.2f} µs CPU/event  "
                f"x{r['realtime_factor']} real time  x{r['cpu_realtime_factor']} per CPU s  "
                f"max RSS {r['max_rss_mb']} MB ({r['mb_per_market']} MB/market)\n"
                f"                 orders placed {r['placed']:,}  amended {r['amended']:,}  "
                f"cancelled {r['cancelled']:,}  denied {r['denied']:,}  fills {r['fills']:,}"
            )
    for r in idle:
        print(
            f"FAILED: {r['markets']} market(s) with seed {r['seed']} placed no order: the "
            "figure measures no order traffic (pick a seed that trades)",
            file=sys.stderr,
        )
    return 1 if idle else 0


class _SlowReasoner:
    """The heuristic reasoner behind a fixed delay, like a remote LLM."""

    name = "openai"  # makes the runtime run agents in the background, as for a remote LLM
    model = "slow-heuristic"

    def __init__(self, delay: float) -> None:
        from cfa.agents.reasoners.heuristic import HeuristicReasoner

        self.inner = HeuristicReasoner()
        self.delay = delay

    async def reason(self, request: Any) -> Any:
        await asyncio.sleep(self.delay)
        return await self.inner.reason(request)

    async def aclose(self) -> None:
        return None


async def _agents(seconds: float, speed: float, delay: float) -> dict[str, Any]:
    from cfa.audit import AuditStore
    from cfa.exchange.sim import SimExchange
    from cfa.risk.policy import load_policy
    from cfa.runtime.session import Session

    ex = SimExchange.from_scenarios(
        ["calm", "regime-shift", "informed-flow"], seed=5, duration=seconds, speed=speed
    )
    await ex.start()
    with tempfile.TemporaryDirectory() as d:
        store = AuditStore.open(Path(d) / "a.db")
        session = Session(
            ex, await ex.get_markets(), load_policy("default"), store, store.start_run({})
        )
        agents = session.attach_agents(_SlowReasoner(delay), interval_s=20.0)  # type: ignore[arg-type]
        lat: list[int] = []
        for loop in session.loops.values():
            inner = loop.feed  # what the session calls for each event

            def timed(ev: Any, inner: Any = inner) -> Any:
                t0 = time.perf_counter_ns()
                pending = inner(ev)
                if pending is None:
                    lat.append(time.perf_counter_ns() - t0)
                    return None
                return finish(pending, t0)

            async def finish(pending: Any, t0: int) -> None:
                await pending  # the order calls the event led to
                lat.append(time.perf_counter_ns() - t0)

            loop.feed = timed  # type: ignore[method-assign]
        await session.run()
        store.close()
    lat.sort()
    q = statistics.quantiles(lat, n=1000)
    return {
        "events": len(lat),
        "p50_us": round(q[499] / 1000, 1),
        "p99_us": round(q[989] / 1000, 1),
        "p999_us": round(q[998] / 1000, 1),
        "max_us": round(lat[-1] / 1000, 1),
        "decisions": dict(agents.decisions_by_verdict),
        "reasoner_delay_s": delay,
    }


def configure_agents(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=600.0, help="simulated seconds")
    p.add_argument("--speed", type=float, default=40.0, help="simulated seconds per wall second")
    p.add_argument("--delay", type=float, default=2.0, help="reasoner latency, seconds")
    p.add_argument("--json", action="store_true")


def cmd_agents(args: argparse.Namespace) -> int:
    from bench import machine_info  # type: ignore[import-not-found]  # tools/ is on sys.path

    r = asyncio.run(_agents(args.seconds, args.speed, args.delay))
    if args.json:
        print(json.dumps({"machine": machine_info(), **r}))
        return 0
    m = machine_info()
    print(f"machine: {m['cores']} cores, {m['cpu']}, Python {m['python']}")
    print(
        f"fast path, agents in the background on a {r['reasoner_delay_s']:g} s reasoner, "
        f"3 markets, {r['events']:,} events: p50 {r['p50_us']} µs, p99 {r['p99_us']} µs, "
        f"p99.9 {r['p999_us']} µs, max {r['max_us']} µs (target p99 < 1000 µs); "
        f"decisions {r['decisions']}"
    )
    return 0


def _rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)) as c:
            return c.execute(sql, args).fetchall()
    except sqlite3.Error:  # not created yet, or busy: ask again
        return []


def _cfa_command() -> list[str]:
    """The ``cfa`` console script beside this interpreter (what a person types), or ``-m``."""
    script = Path(sys.executable).with_name("cfa")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cfa.cli"]


def _killswitch_once(tmp: Path, startup_timeout: float, halt_timeout: float) -> dict[str, Any]:
    """One `cfa run` at 20x; once it quotes, one `cfa govern halt --all` process.

    Wall-clock figures, all from the same clock (``time.time()`` in three processes):
    ``spawn_to_cancelled_ms`` from just before the halt process is spawned (interpreter start,
    imports and all) to the moment the session recorded the halt as applied, which it does after
    cancelling every resting order; ``request_to_cancelled_ms`` from the request the halt
    process wrote (``requested_wall``) to that same moment. ``govern_cpu_s`` is the halt
    process's user + sys CPU, ``govern_exit_ms`` its lifetime.
    """
    db = tmp / "k.db"
    log = tmp / "run.log"
    cfa = _cfa_command()
    with log.open("wb") as out:
        run = subprocess.Popen(
            [*cfa, "run", "--speed", "20x", "--duration", "2h", "--db", str(db), "--quiet"],
            stdout=subprocess.DEVNULL,
            stderr=out,
            cwd=ROOT,
        )
    try:
        deadline = time.monotonic() + startup_timeout
        while not _rows(db, "select 1 from orders where action = 'place' limit 1"):
            if run.poll() is not None:
                err = log.read_text(errors="replace").strip()
                raise RuntimeError(f"`cfa run` exited with {run.returncode}: {err}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"`cfa run` placed no order within {startup_timeout:g} s")
            time.sleep(0.1)
        seq0 = _rows(db, "select coalesce(max(seq), 0) from governance_actions")[0][0]
        spawned = time.time()
        halt = subprocess.Popen(
            [*cfa, "govern", "halt", "--all", "--reason", "bench", "--db", str(db)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        _, status, usage = os.wait4(halt.pid, 0)
        exited = time.time()
        halt.returncode = os.waitstatus_to_exitcode(status)
        if halt.returncode:
            err = halt.stderr.read().decode() if halt.stderr else ""
            raise RuntimeError(f"`cfa govern halt` exited with {halt.returncode}: {err.strip()}")
        deadline = time.monotonic() + halt_timeout
        while True:
            done = _rows(
                db,
                "select r.payload, q.seq from governance_actions q join governance_actions r"
                " on json_extract(r.payload, '$.request_seq') = q.seq"
                " where q.seq > ? and q.action = 'halt'"
                " and json_extract(r.payload, '$.status') = 'applied'",
                seq0,
            )
            if done:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the halt was not applied within {halt_timeout:g} s")
            time.sleep(0.02)
        p = json.loads(done[0][0])
        cancelled = _rows(
            db,
            "select count(*) from orders where action in ('cancel', 'cancel_all')"
            " and reason = 'halted'",
        )[0][0]
        return {
            "spawn_to_cancelled_ms": (p["applied_wall"] - spawned) * 1000,
            "request_to_cancelled_ms": (p["applied_wall"] - p["requested_wall"]) * 1000,
            "govern_exit_ms": (exited - spawned) * 1000,
            "govern_cpu_s": usage.ru_utime + usage.ru_stime,
            "orders_cancelled": cancelled,
        }
    finally:
        run.terminate()
        try:
            run.wait(timeout=60)
        except subprocess.TimeoutExpired:
            run.kill()
            run.wait()


def configure_killswitch(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument(
        "--startup-timeout",
        type=float,
        default=180.0,
        help="seconds for `cfa run` to start and place its first order (a loaded machine is slow)",
    )
    p.add_argument(
        "--halt-timeout",
        type=float,
        default=30.0,
        help="seconds, after the halt process exits, for the session to apply the halt",
    )


def cmd_killswitch(args: argparse.Namespace) -> int:
    from bench import machine_info  # type: ignore[import-not-found]  # tools/ is on sys.path

    runs = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as d:
            runs.append(_killswitch_once(Path(d), args.startup_timeout, args.halt_timeout))
    m = machine_info()
    print(f"machine: {m['cores']} cores, {m['cpu']}, Python {m['python']}")

    def fig(key: str, unit: str = "ms", fmt: str = ".0f") -> str:
        v = [r[key] for r in runs]
        return f"median {statistics.median(v):{fmt}} {unit}, max {max(v):{fmt}} {unit}"

    print(
        f"kill switch, {len(runs)} runs (`cfa govern halt --all` against a `cfa run` at 20x; "
        f"orders cancelled per run: {', '.join(str(r['orders_cancelled']) for r in runs)}):\n"
        f"  halt process spawned -> orders cancelled: {fig('spawn_to_cancelled_ms')}\n"
        f"  request written -> orders cancelled: {fig('request_to_cancelled_ms')} "
        f"(target <= 1000 ms)\n"
        f"  halt process lifetime: {fig('govern_exit_ms')}; "
        f"its CPU (user + sys): {fig('govern_cpu_s', 's', '.3f')} (target <= 0.5 s)"
    )
    worst = max(r["request_to_cancelled_ms"] for r in runs)
    return 0 if worst <= 1000 else 1


async def _contexts(seconds: float) -> list[int]:
    from cfa.agents.reasoners.heuristic import HeuristicReasoner
    from cfa.audit import AuditStore
    from cfa.audit.queries import AuditReader
    from cfa.exchange.sim import SimExchange
    from cfa.risk.policy import load_policy
    from cfa.runtime.session import Session

    names = ["calm", "regime-shift", "informed-flow"]
    ex = SimExchange.from_scenarios(names, seed=7, duration=seconds)
    await ex.start()
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "c.db"
        store = AuditStore.open(db)
        session = Session(
            ex, await ex.get_markets(), load_policy("default"), store, store.start_run({})
        )
        session.attach_agents(HeuristicReasoner())
        await session.run()
        store.close()
        with AuditReader.open(db) as reader:
            return [
                len(json.dumps(r["payload"]["context"], separators=(",", ":"), ensure_ascii=False))
                for r in reader.rows("decisions")
                if r["agent"] == "market"
            ]


def configure_context(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=3600.0, help="simulated seconds (3 markets)")


def cmd_context(args: argparse.Namespace) -> int:
    sizes = sorted(asyncio.run(_contexts(args.seconds)))
    print(
        f"market-agent context JSON over {len(sizes)} decisions (the demo's 3 markets, "
        f"{args.seconds:g} simulated s): median {statistics.median(sizes):.0f} chars, "
        f"max {sizes[-1]} chars (limit 2,000)"
    )
    return 0


STARTUP_TARGET_S = 0.5
"""CPU seconds (user + sys) a `cfa --help` or `cfa govern …` may cost (issue 13)."""


def _child_cpu(cmd: list[str], cwd: Path) -> float:
    """User + sys CPU seconds of one run of ``cmd`` (its own, children included); exits when
    ``cmd`` fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:  # a command that failed early would look fast
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr[-500:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def configure_startup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeat", type=int, default=5, help="runs per command (5)")


def cmd_startup(args: argparse.Namespace) -> int:
    """CPU of short `cfa` commands from a cold interpreter (imports included), on a store
    written by a short simulated run; exits 1 when one's median exceeds the target."""
    if args.repeat < 1:
        raise SystemExit("--repeat must be at least 1")
    cfa = _cfa_command()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        db = tmp / "cfa.db"
        subprocess.run(
            [*cfa, "run", "--duration", "2m", "--quiet", "--no-agents", "--db", str(db)],
            cwd=tmp,
            capture_output=True,
            check=True,
        )
        commands = {
            "cfa --help": [*cfa, "--help"],
            "cfa govern --help": [*cfa, "govern", "--help"],
            "cfa govern status": [*cfa, "govern", "status", "--db", str(db)],
            "cfa govern pending": [*cfa, "govern", "pending", "--db", str(db)],
            "cfa audit verify": [*cfa, "audit", "verify", "--db", str(db)],
        }
        over = []
        load = os.getloadavg()[0]
        print(f"CPU (user + sys) per command, {args.repeat} runs each, load {load:.2f}:")
        for name, cmd in commands.items():
            runs = [_child_cpu(cmd, tmp) for _ in range(args.repeat)]
            med = statistics.median(runs)
            gated = not name.startswith("cfa audit")
            flag = ""
            if gated and med > STARTUP_TARGET_S:
                over.append(name)
                flag = f"  over the {STARTUP_TARGET_S} s target"
            print(f"  {name:<20} median {med:.3f} s  max {max(runs):.3f} s{flag}")
    for name in over:
        print(f"FAILED: {name} costs more than {STARTUP_TARGET_S} s of CPU", file=sys.stderr)
    return 1 if over else 0


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "_one":
    sys.path.insert(0, str(ROOT))
    res = asyncio.run(
        _one(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], Path(sys.argv[5]), int(sys.argv[6]))
    )
    print(json.dumps(res))
