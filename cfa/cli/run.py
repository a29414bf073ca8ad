"""``cfa run``: the main job — one agent loop per market, on the simulator by default."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live

from cfa.agents.reasoners import make_reasoner
from cfa.agents.reasoners.base import Reasoner
from cfa.agents.reasoners.cache import CachedReasoner, SqliteLLMCache
from cfa.audit import AuditError, AuditStore
from cfa.audit.anchors import AnchorLog, default_anchor_path
from cfa.audit.chain import store_name
from cfa.audit.integrity import quick_check
from cfa.audit.postgres import is_url, redact_args
from cfa.cli.live import LiveView, print_head, summary_table
from cfa.cli.options import fail, parse_duration, parse_speed
from cfa.core.types import CfaValueError
from cfa.exchange.base import Exchange, ExchangeError
from cfa.exchange.emulator.fills import FILL_MODELS
from cfa.exchange.sim import DEFAULT_START_TS as SIM_EPOCH
from cfa.exchange.sim import SimExchange, known_scenarios
from cfa.risk.policy import Policy, PolicyError, load_policy
from cfa.runtime.runs import close_run, open_run
from cfa.runtime.session import MarketSummary, Session

DEFAULT_SCENARIOS = ("calm", "regime-shift", "informed-flow")


def run(
    markets: Annotated[
        int,
        typer.Option(
            "--markets",
            "-n",
            min=1,
            max=5000,
            help="Number of simulated markets; an event scenario (event-ladder, event-exclusive) "
            "counts once and brings every market of its event.",
        ),
    ] = 3,
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            "--scenario",
            "-s",
            help="Scenario per market; repeat to mix (cycled over markets).",
        ),
    ] = None,
    duration: Annotated[str, typer.Option(help="Simulated time to run: 90s, 15m, 1h.")] = "1h",
    seed: Annotated[int, typer.Option(help="Simulator seed: same seed, same run.")] = 7,
    speed: Annotated[
        str, typer.Option(help="max (as fast as the CPU allows) or a factor of real time: 1x, 10x.")
    ] = "max",
    db: Annotated[
        str,
        typer.Option(
            help="Audit store to append to: a SQLite file, or a PostgreSQL URL "
            "(postgresql://user@host:5432/db[?options=-csearch_path%3Dschema]).",
        ),
    ] = "cfa.db",
    anchors: Annotated[
        Path | None,
        typer.Option(
            help="Append-only file of Ed25519-signed anchors of the audit chain head "
            "(default: <db>.anchors). Check with `cfa audit verify --anchors`.",
        ),
    ] = None,
    anchor_key: Annotated[
        Path | None,
        typer.Option(
            help="Ed25519 signing key of the anchors, created (mode 0600) on first use "
            "(default: $CFA_ANCHOR_KEY or ~/.config/cfa/anchor.key).",
        ),
    ] = None,
    no_anchors: Annotated[
        bool, typer.Option("--no-anchors", help="Do not write signed anchors.")
    ] = False,
    policy: Annotated[
        str,
        typer.Option(help="Risk policy: a packaged name (default, conservative) or a YAML path."),
    ] = "default",
    approvals: Annotated[
        str | None,
        typer.Option(
            help="Who decides agent changes that wait for approval: governance (the governance "
            "agent or a person) or person (people only, e.g. from `cfa console`). Default: the "
            "policy's agents.approvals.",
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No live table; print only the summary.")
    ] = False,
    reasoner: Annotated[
        str, typer.Option(help="Agent reasoner: heuristic (offline), openai, or scripted:PATH.")
    ] = "heuristic",
    model: Annotated[str | None, typer.Option(help="LLM model for --reasoner openai.")] = None,
    base_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.")
    ] = None,
    agent_interval: Annotated[
        str, typer.Option(help="Market agents run this often (and on triggers).")
    ] = "60s",
    no_agents: Annotated[
        bool, typer.Option("--no-agents", help="Quote with the policy defaults only.")
    ] = False,
    exchange_name: Annotated[
        str,
        typer.Option(
            "--exchange",
            help="sim (embedded simulator) or kalshi (CFA_KALSHI_* keys; with --paper, "
            "paper trading on live data).",
        ),
    ] = "sim",
    market: Annotated[
        list[str] | None, typer.Option("--market", "-m", help="Kalshi ticker to trade (repeat).")
    ] = None,
    env_file: Annotated[
        Path | None, typer.Option(help="KEY=value file with the CFA_KALSHI_* settings.")
    ] = None,
    paper: Annotated[
        bool,
        typer.Option(
            "--paper",
            help="With --exchange kalshi: paper trading. Live Kalshi market data, fills "
            "simulated by the venue emulator, no order ever sent to Kalshi. REST market data "
            "needs no key; Kalshi's WebSocket needs one even for public data, so without "
            "CFA_KALSHI_KEY_ID and CFA_KALSHI_PRIVATE_KEY_PATH the book is polled over public "
            "REST (coarser fills).",
        ),
    ] = False,
    fill_model: Annotated[
        str,
        typer.Option(
            "--fill-model",
            help="With --paper: when a paper order fills — through (the book or a trade goes "
            "through its price; default), touch (reaching it is enough), queue (an estimated "
            "queue position at its price).",
        ),
    ] = "through",
    poll_interval: Annotated[
        str,
        typer.Option(
            "--poll-interval",
            help="With --paper and no key: how often to poll each market's public REST book "
            "(raised so that polling uses at most half of Kalshi's Basic read budget).",
        ),
    ] = "1s",
    lockstep: Annotated[
        bool,
        typer.Option(
            "--lockstep",
            help="Simulator only: the simulated clock waits for each agent decision, so no "
            "answer is late or lost and a seed reproduces the run (backtests; the eval harness "
            "turns it on for LLM strategies). Off by default.",
        ),
    ] = False,
    llm_latency: Annotated[
        str,
        typer.Option(
            "--llm-latency",
            help="With --lockstep: simulated seconds between a decision's context and its "
            "tool calls taking effect (0, 500ms, 2s).",
        ),
    ] = "0s",
    llm_cache: Annotated[
        Path | None,
        typer.Option(
            "--llm-cache",
            help="SQLite LLM call cache: identical requests are answered from it (no tokens); "
            "new answers are stored. Safe to share between runs and processes.",
        ),
    ] = None,
    executor: Annotated[
        str,
        typer.Option(
            help="local (every market in this process) or ray (groups of markets on Ray actors, "
            "one audit store; pip install 'cfa[ray]'; docs/cluster.md).",
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            help="With --executor ray: the cluster (auto, ray://head:10001); default a local one."
        ),
    ] = None,
    actors: Annotated[
        int | None,
        typer.Option(min=1, help="With --executor ray: how many actors (default: one per CPU)."),
    ] = None,
) -> None:
    """Run one quoting loop per market (simulator by default, or Kalshi), then the summary."""
    if exchange_name not in ("sim", "kalshi"):
        raise fail(f"--exchange: use sim or kalshi, not {exchange_name!r}")
    if executor not in ("local", "ray"):
        raise fail(f"--executor: use local or ray, not {executor!r}")
    if executor == "local" and (address is not None or actors is not None):
        raise fail("--address and --actors need --executor ray")
    seconds = parse_duration(duration)
    factor = parse_speed(speed)
    names = list(scenario) if scenario else list(DEFAULT_SCENARIOS)
    unknown = [n for n in names if n not in known_scenarios()]
    if unknown:
        raise fail(f"unknown scenario {unknown[0]!r}; known: {', '.join(known_scenarios())}")
    try:
        pol = load_policy(policy)
    except PolicyError as exc:
        raise fail(str(exc)) from None
    if approvals is not None:
        if approvals not in ("governance", "person"):
            raise fail(f"--approvals: expected governance or person, got {approvals!r}")
        pol = pol.model_copy(
            update={"agents": pol.agents.model_copy(update={"approvals": approvals})}
        )
    chosen = [names[i % len(names)] for i in range(markets)]
    interval = parse_duration(agent_interval, "--agent-interval")
    latency = parse_latency(llm_latency)
    if latency and not lockstep:
        raise fail("--llm-latency needs --lockstep (the background mode has real latency)")
    if lockstep and exchange_name != "sim":
        raise fail("--lockstep works on the simulator only: a live exchange does not wait")
    if paper and exchange_name != "kalshi":
        raise fail("--paper needs --exchange kalshi (the simulator's fills are simulated anyway)")
    if fill_model not in FILL_MODELS:
        raise fail(f"--fill-model: use one of {', '.join(FILL_MODELS)}, not {fill_model!r}")
    if fill_model != "through" and not paper:
        raise fail("--fill-model applies to --paper only")
    poll_s = parse_duration(poll_interval, "--poll-interval")
    agent: Reasoner | None = None
    cache: SqliteLLMCache | None = None
    if not no_agents:
        try:
            agent = make_reasoner(reasoner, model=model, base_url=base_url)
        except (ValueError, OSError) as exc:
            raise fail(str(exc)) from None
        if llm_cache is not None:
            try:
                cache = SqliteLLMCache(llm_cache)
            except (sqlite3.Error, OSError) as exc:
                raise fail(f"--llm-cache {llm_cache}: {exc}") from None
            agent = CachedReasoner(agent, cache)
    exchange: Exchange
    if exchange_name == "kalshi":
        if not market:
            raise fail("--exchange kalshi needs at least one --market TICKER (see `cfa markets`)")
        from cfa.exchange.kalshi.adapter import KalshiExchange
        from cfa.exchange.kalshi.paper import PaperExchange, poll_floor
        from cfa.exchange.kalshi.settings import KalshiSettings, load_settings

        try:
            settings = load_settings(env_file) if env_file else KalshiSettings()
            if paper:
                exchange = PaperExchange.from_settings(
                    settings,
                    fill_model=fill_model,
                    poll_interval=poll_s,
                )
            else:
                exchange = KalshiExchange.from_settings(settings)
        except (ExchangeError, ValueError, OSError) as exc:
            hint = ""
            if not paper and getattr(exc, "code", None) == "no_credentials":
                hint = " (or add --paper: paper trading on public market data needs no key)"
            raise fail(f"{exc}{hint}") from None
        chosen = list(market)
        if isinstance(exchange, PaperExchange) and not exchange.websocket:
            missing = ", ".join(settings.missing())
            typer.echo(
                f"paper: no Kalshi key ({missing} not set): Kalshi's WebSocket needs one even "
                "for public data, so the book is polled over public REST every "
                f"{max(exchange.poll_interval, poll_floor(len(chosen))):g}s instead "
                "(coarser fills); set the key to stream it",
                err=True,
            )
    else:
        try:
            exchange = SimExchange.from_scenarios(
                chosen, seed=seed, start_ts=SIM_EPOCH, duration=seconds, speed=factor
            )
        except (CfaValueError, ValueError) as exc:
            raise fail(str(exc)) from None
    store, anchor_log = _open_store(db, anchors, anchor_key, no_anchors)
    console = Console(stderr=False)
    config: dict[str, object] = {
        "exchange": exchange_name,
        "scenarios" if exchange_name == "sim" else "tickers": chosen,
        "seed": seed,
        "duration_s": seconds,
        "speed": speed,
        "policy": pol.model_dump(mode="json"),
        "argv": redact_args(sys.argv[1:]),  # a PostgreSQL URL's password stays out
        "reasoner": None if agent is None else {"name": agent.name, "model": agent.model},
        "agent_interval_s": interval,
        "lockstep": lockstep,
        "llm_latency_s": latency,
        "llm_cache": None if cache is None else str(llm_cache),
    }
    if exchange_name == "kalshi":
        config["paper"] = paper
        if paper:
            config["fill_model"] = fill_model
            config["paper_feed"] = "websocket" if getattr(exchange, "websocket", False) else "rest"
    agent_options = {"interval_s": interval, "lockstep": lockstep, "latency_s": latency}
    if executor == "ray":
        from cfa.cli.run_cluster import run_on_ray  # lazy: Ray is imported only here

        spec = {
            "paper": paper,
            "fill_model": fill_model,
            "poll_interval": poll_s,
            "env_file": env_file,
            "reasoner": reasoner,
            "model": model,
            "base_url": base_url,
            "llm_cache": llm_cache,
        }
        return run_on_ray(
            exchange,
            store,
            anchor_log,
            db,
            pol,
            config,
            seconds,
            console,
            agent,
            agent_options,
            spec,
            address,
            actors,
            cache,
        )
    failure: tuple[str, int] | None = None
    try:
        rows, session = asyncio.run(
            _run(exchange, store, pol, config, seconds, quiet, console, agent, agent_options)
        )
    except ExchangeError as exc:
        failure = (f"exchange: {exc}", 2)
    except AuditError as exc:  # e.g. a full disk: the session stopped and cancelled its orders
        failure = (f"{exc} (check them: cfa audit verify --db {store_name(db)})", 1)
    except BaseException:
        with contextlib.suppress(AuditError):
            store.close()
        if cache is not None:
            cache.close()
        raise
    try:
        store.close()
    except AuditError as exc:
        failure = failure or (str(exc), 1)
    if cache is not None:
        cache.close()
    if failure is not None:
        raise fail(*failure)
    console.print()
    console.print(summary_table(rows, console.width))
    if config.get("paper"):
        console.print(
            f"paper trading: fills simulated (fill model {fill_model}, Kalshi book over "
            f"{config['paper_feed']}); no order was sent to Kalshi",
            highlight=False,
            soft_wrap=True,
        )
    if session.agents is not None:
        verdicts = ", ".join(
            f"{k} {v}" for k, v in sorted(session.agents.decisions_by_verdict.items())
        )
        console.print(f"agent decisions ({session.agents.reasoner.name}): {verdicts or 'none'}")
        console.print(llm_line(session.agents.llm_summary()))
    console.print(
        f"run [bold]{session.run_id}[/] · {session.events:,} events · audit store "
        f"[bold]{store_name(db)}[/]"
        + (
            f" · [red]{session.leftover_orders} orders left resting[/]"
            if session.leftover_orders
            else ""
        )
    )
    print_head(console, store, anchor_log)


def _open_store(
    db: str, anchors: Path | None, anchor_key: Path | None, no_anchors: bool
) -> tuple[AuditStore, AnchorLog | None]:
    """Open the audit store for the run: refuse a file failing ``PRAGMA quick_check``; sign
    anchors unless ``no_anchors``. Every problem is one clear line (``fail``)."""
    if no_anchors and (anchors is not None or anchor_key is not None):
        raise fail("--no-anchors excludes --anchors and --anchor-key")
    if not is_url(db) and Path(db).is_file():
        problems = quick_check(db)
        if problems:
            raise fail(
                f"{db} fails PRAGMA quick_check ({problems[0]}): refusing to append to a damaged "
                "audit store; keep it for inspection and run with another --db"
            )
    log: AnchorLog | None = None
    try:
        if not no_anchors:
            log = AnchorLog.open(anchors or default_anchor_path(db), anchor_key)
        return AuditStore.open(db, anchors=log), log
    except AuditError as exc:
        if log is not None:
            log.close()
        raise fail(str(exc)) from None


def parse_latency(text: str) -> float:
    """``--llm-latency``: ``0`` (or ``0s``, ``0ms``) or a positive duration; seconds."""
    if text.strip().lower() in ("0", "0s", "0ms", "0.0", "none"):
        return 0.0
    return parse_duration(text, "--llm-latency")


def llm_line(llm: dict[str, Any]) -> str:
    """The one summary line of reasoner calls, tokens, cache hits and cost."""
    cached = ""
    if llm["cache_hits"] or llm["cache_misses"]:
        cached = f" ({llm['cache_hits']:,} from the cache)"
    if llm["cost_usd"] is not None:
        cost = f"cost ${llm['cost_usd']:.4f}"
    elif llm["tokens_in"] or llm["tokens_out"]:
        cost = "cost unknown (set CFA_LLM_PRICE_INPUT / CFA_LLM_PRICE_OUTPUT, $ per 1M tokens)"
    else:
        cost = "no tokens charged"
    mode = f"lockstep, latency {llm['latency_s']:g}s" if llm["lockstep"] else "no lockstep"
    lost = ""
    if llm["cancelled"] or llm["expired"]:
        lost = f" · {llm['cancelled']} lost at the end, {llm['expired']} expired"
    return (
        f"LLM ({llm['reasoner']}, {mode}): {llm['calls']:,} calls{cached} · tokens "
        f"{llm['tokens_in']:,} in / {llm['tokens_out']:,} out · {cost}{lost}"
    )


async def _run(
    exchange: Exchange,
    store: AuditStore,
    pol: Policy,
    config: dict[str, object],
    seconds: float,
    quiet: bool,
    console: Console,
    agent: Reasoner | None,
    agent_options: dict[str, Any],
) -> tuple[list[MarketSummary], Session]:
    tickers = config.get("tickers")
    session = await open_run(
        exchange, store, pol, config, tickers if isinstance(tickers, list) else None
    )
    start_ts = exchange.clock.now()
    if agent is not None:
        session.attach_agents(agent, **agent_options)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, session.stop.set)
    if config.get("exchange") != "sim":
        loop.call_later(seconds, session.stop.set)  # a live feed never ends by itself
    wall0 = time.perf_counter()
    try:
        if quiet:
            rows = await session.run()
        else:
            view = LiveView(session, start_ts, seconds, console.width)
            with Live(view.render(), console=console, auto_refresh=False, transient=False) as live:
                task = asyncio.create_task(session.run())
                while not task.done():
                    live.update(view.render(), refresh=True)
                    await asyncio.wait({task}, timeout=0.25)
                live.update(view.render(), refresh=True)
                rows = task.result()
    finally:
        await exchange.close()
    close_run(session, store, rows, wall0)
    return rows, session
