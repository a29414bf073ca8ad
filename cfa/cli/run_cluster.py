"""``cfa run --executor ray``: the driver's command-line side (:mod:`cfa.runtime.cluster`).

Kept out of :mod:`cfa.cli.run` so that ``cfa run`` without the flag neither imports Ray nor
this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from types import FrameType
from typing import Any

import typer
from rich.console import Console

from cfa.agents.reasoners.base import Reasoner
from cfa.agents.reasoners.cache import SqliteLLMCache
from cfa.audit import AuditError, AuditStore
from cfa.audit.anchors import AnchorLog
from cfa.cli.live import print_head, summary_table
from cfa.cli.options import fail
from cfa.exchange.base import Exchange, ExchangeError
from cfa.exchange.sim import DEFAULT_START_TS as SIM_EPOCH
from cfa.risk.policy import Policy


def store_target(db: str | Path) -> str:
    """The ``--db`` target as every actor can open it: a URL as given, a path made absolute
    (an actor's working directory is not the driver's)."""
    text = str(db)
    return text if "://" in text else str(Path(text).resolve())


def run_on_ray(
    exchange: Exchange,
    store: AuditStore,
    anchor_log: AnchorLog | None,
    db: str | Path,
    pol: Policy,
    config: dict[str, object],
    seconds: float,
    console: Console,
    agent: Reasoner | None,
    agent_options: dict[str, Any],
    spec: dict[str, Any],
    address: str | None,
    actors: int | None,
    cache: SqliteLLMCache | None,
) -> None:
    """Run ``cfa run``'s markets over Ray actors, print the summary; exits with one line on a
    problem (Ray missing, the cluster unreachable, the exchange failing)."""
    from cfa.runtime import cluster as cl

    if cache is not None:
        cache.close()  # each actor opens the cache file itself
    try:
        started = cl.init_ray(address)
    except ImportError as exc:
        store.close()
        raise fail(str(exc)) from None
    except Exception as exc:  # ConnectionError and Ray's own when the address is wrong
        store.close()
        raise fail(f"--address {address}: cannot reach the Ray cluster ({exc})") from None
    try:
        ex_spec: cl.ExchangeSpec
        orphans = None
        if config["exchange"] == "sim":
            names = list(config["scenarios"])  # type: ignore[call-overload]
            markets, entries = cl.sim_markets(names, SIM_EPOCH)
            ex_spec = cl.SimSpec(
                tuple(names),
                int(config["seed"]),  # type: ignore[call-overload]
                SIM_EPOCH,
                seconds,
                _speed(config),
            )
            start_ts: float | None = SIM_EPOCH
        else:
            env_file = spec["env_file"]
            ks = cl.KalshiSpec(
                paper=bool(spec["paper"]),
                fill_model=str(spec["fill_model"]),
                poll_interval=float(spec["poll_interval"]),
                env_file=None if env_file is None else str(Path(env_file).resolve()),
            )
            ex_spec = ks
            try:
                markets = asyncio.run(_list_markets(exchange, list(config["tickers"])))  # type: ignore[call-overload]
            except ExchangeError as exc:
                raise fail(f"exchange: {exc}") from None
            entries = None
            start_ts = None
            if not ks.paper:  # paper orders live in the actor's emulator and die with it

                def orphans() -> Exchange:
                    return ks.build((), ())

        agents = None
        if agent is not None:
            llm_cache = spec["llm_cache"]
            agents = cl.AgentSpec(
                reasoner=str(spec["reasoner"]),
                model=spec["model"],
                base_url=spec["base_url"],
                interval_s=float(agent_options["interval_s"]),
                lockstep=bool(agent_options["lockstep"]),
                latency_s=float(agent_options["latency_s"]),
                llm_cache=None if llm_cache is None else str(Path(llm_cache).resolve()),
            )
        run = cl.ClusterRun(
            store,
            store_target(db),
            pol,
            {**config, "address": address},
            ex_spec,
            markets,
            entries=entries,
            actors=actors,
            agents=agents,
            orphans=orphans,
            start_ts=start_ts,
            duration_s=seconds,
        )
        run_id = run.start()
        console.print(
            f"run [bold]{run_id}[/] · {len(markets)} markets in {len(run.units)} events over "
            f"{len(run.actors)} Ray actors"
            + (
                f" (asked for {run.requested_actors}: an event is never split)"
                if len(run.actors) < run.requested_actors
                else ""
            ),
            highlight=False,
        )

        def on_signal(signum: int, frame: FrameType | None) -> None:
            run.stop()

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            run.wait()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        summary = run.end()
        run.kill_actors()
    finally:
        if started:
            import ray

            ray.shutdown()
    try:
        store.close()
    except AuditError as exc:
        raise fail(str(exc), 1) from None
    console.print()
    console.print(summary_table(cl.market_rows(summary), console.width))
    for a in summary["actors"]:
        console.print(
            f"{a['actor']}: {a['status']} · {len(a['markets'])} markets"
            + ("" if a["events"] is None else f" · {a['events']:,} events · {a['wall_s']} s")
            + ("" if a["error"] is None else f" · [red]{a['error']}[/]"),
            highlight=False,
            soft_wrap=True,
        )
    for lost in summary["lost_actors"]:
        console.print(
            f"[red]lost {lost['actor']}[/] with {', '.join(lost['markets'])}: "
            f"{lost['resting_orders_at_loss']} orders were resting per the audit"
            + (
                f", {len(lost['cancelled_by_driver'])} cancelled by the driver"
                if orphans is not None
                else " (gone with its exchange)"
            ),
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"run [bold]{run_id}[/] · {summary['events']:,} events · audit store [bold]{db}[/]"
        + (
            f" · [red]{summary['leftover_orders']} orders left resting[/]"
            if summary["leftover_orders"]
            else ""
        ),
        highlight=False,
    )
    print_head(console, store, anchor_log)
    failed = [a for a in summary["actors"] if a["status"] != "ok"]
    if failed:
        raise typer.Exit(1)


def _speed(config: dict[str, object]) -> float | None:
    from cfa.cli.options import parse_speed

    return parse_speed(str(config["speed"]))


async def _list_markets(exchange: Exchange, tickers: list[str]) -> list[Any]:
    await exchange.start()
    try:
        return await exchange.get_markets(tickers)
    finally:
        with contextlib.suppress(Exception):
            await exchange.close()
