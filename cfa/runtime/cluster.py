"""Many markets over a Ray cluster, under one audit store and one governance plane.

``cfa run --executor ray`` runs the markets of one run on several Ray actors. This module is
the driver's side (grouping, actors, crash handling, aggregation) and the actor itself, a thin
shell over the same :class:`~cfa.runtime.session.Session` code a single process runs.

**Grouping.** The run's markets come in *units*: every market of one event (one
``event_ticker``) is one unit, so a strike ladder, an exclusive set, or the markets of an
independent event that share an event-level risk limit are always quoted by one session. Units
go to ``k`` groups, largest first, each to the group with the fewest markets so far (ties: the
lower group); a group that would stay empty is dropped. On the simulator the units come from
the scenario entries (:func:`sim_units`); an actor builds a :class:`SimExchange` of its own
entries only (``only=``), which gives every market the ticker and random stream it has in the
whole run, so a market's simulated events do not depend on the actor it lands in.

**Limits.** A market's and an event's limits hold as in one process (they live in one
actor). The limits over every market of a session — gross exposure, daily loss, drawdown —
are split over the actors in proportion to their markets (:func:`actor_policy`), so the sum
over the actors never exceeds the policy's; each actor's breaker halts its own markets only.

**One run, one store.** The driver writes the run's start row (config: ``executor``,
``actors`` with each actor's markets, every market's metadata) and its end row (the summary
aggregated from every actor, the lost ones named). Each actor opens the same store (``db``:
whatever :meth:`AuditStore.open` takes), joins the run (:func:`cfa.runtime.runs.join_run`: no
``runs`` row of its own) and appends its rows under the run's id. Only the driver signs
anchors (``cfa.db.anchors``): the anchor file is one append-only sequence written by one
signer, and the driver's end anchor, written after every actor has stopped, covers every row
of the run; actors open the store without anchors.

**Governance.** ``cfa govern`` appends request rows to the store; every actor's session polls
it (every 0.25 s, from the run's start row on) and applies a request for all markets, or for a
market it holds; its result row names it (``payload.worker``). So a global halt gets one
result row per actor, a market's request exactly one.

**Crash isolation.** An actor that dies (its process killed, ``os._exit``, a node lost) raises
``RayActorError`` in the driver; the others run to the end. The driver records a
``risk_event`` (kind ``actor_lost``) naming the actor, its markets and the orders that were
resting per the audit (placed, and not cancelled or filled since), and then: on a venue that
outlives the actor (Kalshi) cancels that actor's resting orders through a driver-side exchange
client (by market, only orders whose client id is one of the actor's markets' in this run);
on the embedded simulator, whose book died with the actor, records those orders as gone with
it. The summary names the lost actor and its markets.

Ray itself is imported only when a cluster run starts (``pip install 'cfa[ray]'``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, Protocol

from cfa.audit.records import market_to_dict
from cfa.audit.store import AuditStore
from cfa.core.types import MarketInfo
from cfa.exchange.base import Exchange, ExchangeError
from cfa.risk.policy import Policy
from cfa.runtime.session import MarketSummary

RAY_EXTRA_HINT: Final = "the ray executor needs Ray: pip install 'cfa[ray]'"
ACTOR_LOST: Final = "actor_lost"
"""``risk_events.kind`` of an actor the driver lost."""
POLL_S: Final = 0.25
"""How often the driver checks its actors, wall seconds."""


# -- grouping ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unit:
    """Markets that one session must quote together: every market of one event.

    ``entries``: on the simulator, the scenario entries (indices into the run's scenario list)
    that make these markets; empty on a venue.
    """

    event: str
    tickers: tuple[str, ...]
    entries: tuple[int, ...] = ()

    @property
    def size(self) -> int:
        return len(self.tickers)


def units_of(markets: Iterable[MarketInfo], entries: Mapping[str, int] | None = None) -> list[Unit]:
    """The run's units: the markets of each ``event_ticker``, in order of first appearance.

    ``entries`` maps a simulated market's ticker to its scenario entry.
    """
    by_event: dict[str, list[str]] = {}
    for m in markets:
        by_event.setdefault(m.event_ticker, []).append(m.ticker)
    out = []
    for ev, tickers in by_event.items():
        ent = sorted({entries[t] for t in tickers}) if entries is not None else []
        out.append(Unit(ev, tuple(tickers), tuple(ent)))
    return out


def sim_markets(names: Sequence[str], start_ts: float) -> tuple[list[MarketInfo], dict[str, int]]:
    """Every market the simulator builds for the scenario entries ``names`` (in its order) and
    each one's entry, without building the simulator."""
    from cfa.exchange.sim.scenarios import load_scenario

    loaded = {n: load_scenario(n) for n in dict.fromkeys(names)}
    copies: dict[str, int] = {}
    markets: list[MarketInfo] = []
    entry_of: dict[str, int] = {}
    for i, n in enumerate(names):
        sc = loaded[n]
        copy = copies.get(sc.name, 0)
        copies[sc.name] = copy + 1
        for info in sc.market_infos(start_ts, copy):
            markets.append(info)
            entry_of[info.ticker] = i
    return markets, entry_of


def group_units(units: Sequence[Unit], k: int) -> list[list[Unit]]:
    """Split ``units`` into at most ``k`` non-empty groups of about equal market counts.

    Largest unit first, each to the group with the fewest markets so far (the lower index on a
    tie); deterministic. Every unit lands in exactly one group, so no event is ever split.
    """
    if k < 1:
        raise ValueError(f"need at least one actor, not {k}")
    groups: list[list[Unit]] = [[] for _ in range(k)]
    load = [0] * k
    for u in sorted(units, key=lambda u: -u.size):  # sorted() is stable: ties keep their order
        j = min(range(k), key=lambda i: (load[i], i))
        groups[j].append(u)
        load[j] += u.size
    return [g for g in groups if g]


def actor_policy(policy: Policy, share: float) -> Policy:
    """``policy`` for an actor holding ``share`` (0 < share ≤ 1) of the run's markets: the
    limits that span every market of a session — gross exposure, daily loss, drawdown (all
    dollars) — scaled by ``share``, so that the actors' limits add up to the policy's and the
    run as a whole stays inside them (each actor's breakers still act on its own markets
    only). Per-market and per-event limits stay as they are: a market and an event live in one
    actor."""
    if not 0 < share <= 1:
        raise ValueError(f"an actor's share of the markets must be in (0, 1], not {share}")
    if share == 1:
        return policy
    pf = policy.portfolio.model_copy(
        update={"max_gross_exposure": policy.portfolio.max_gross_exposure * share}
    )
    loss = policy.loss.model_copy(
        update={
            "daily_loss": policy.loss.daily_loss * share,
            "max_drawdown": policy.loss.max_drawdown * share,
        }
    )
    return policy.model_copy(update={"portfolio": pf, "loss": loss})


# -- what an actor is given ----------------------------------------------------------------------


class ExchangeSpec(Protocol):
    """How an actor builds its own exchange (pickled to the actor)."""

    name: str

    def build(self, tickers: Sequence[str], entries: Sequence[int]) -> Exchange: ...


@dataclass(frozen=True, slots=True)
class SimSpec:
    """The embedded simulator: the run's whole scenario list; an actor builds its entries."""

    names: tuple[str, ...]
    seed: int
    start_ts: float
    duration: float
    speed: float | None
    name: str = "sim"

    def build(self, tickers: Sequence[str], entries: Sequence[int]) -> Exchange:
        from cfa.exchange.sim import SimExchange

        return SimExchange.from_scenarios(
            self.names,
            seed=self.seed,
            start_ts=self.start_ts,
            duration=self.duration,
            speed=self.speed,
            only=set(entries),
        )


@dataclass(frozen=True, slots=True)
class KalshiSpec:
    """Kalshi (or paper trading on it): each actor connects with the ``CFA_KALSHI_*``
    settings of its own environment, or ``env_file`` (a path on the actor's host)."""

    paper: bool
    fill_model: str = "through"
    poll_interval: float = 1.0
    env_file: str | None = None
    name: str = "kalshi"

    def build(self, tickers: Sequence[str], entries: Sequence[int]) -> Exchange:
        from cfa.exchange.kalshi.adapter import KalshiExchange
        from cfa.exchange.kalshi.paper import PaperExchange
        from cfa.exchange.kalshi.settings import KalshiSettings, load_settings

        settings = load_settings(Path(self.env_file)) if self.env_file else KalshiSettings()
        if self.paper:
            return PaperExchange.from_settings(
                settings, fill_model=self.fill_model, poll_interval=self.poll_interval
            )
        return KalshiExchange.from_settings(settings)


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """The agents each actor runs (each actor makes its own reasoner: an LLM client does not
    travel). ``interval_s`` and ``latency_s`` in seconds; ``llm_cache`` a SQLite path that
    every actor can reach (a shared file is safe)."""

    reasoner: str
    model: str | None = None
    base_url: str | None = None
    interval_s: float = 60.0
    lockstep: bool = False
    latency_s: float = 0.0
    llm_cache: str | None = None


@dataclass(frozen=True, slots=True)
class ActorJob:
    """Everything one actor needs to run its share of the run (pickled to it).

    ``db``: the audit store target as :meth:`AuditStore.open` takes it (an absolute path or
    URL: an actor's working directory is not the driver's). ``market_numbers``: each market's
    place in the whole run (client order ids). ``governance_since``: the seq of the run's
    start row (requests after it are applied).
    """

    worker: str
    db: str
    run_id: str
    policy: Policy
    exchange: ExchangeSpec
    tickers: tuple[str, ...]
    entries: tuple[int, ...]
    market_numbers: dict[str, int]
    governance_since: int
    duration_s: float
    agents: AgentSpec | None = None


# -- the actor: a thin shell over Session -----------------------------------------------------


async def run_job(job: ActorJob, started: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """Run one actor's session to its end (the same :class:`Session` as ``cfa run``); returns
    :func:`cfa.runtime.runs.session_summary` plus ``worker``.

    ``started(session)`` is called once the session exists (the actor keeps it to stop it).
    ``clock_end`` is the exchange's clock at the end (epoch seconds), ``cpu_s`` the CPU
    seconds (user + system) of this process while the session ran, ``wall_s`` its wall
    seconds. Raises what the session raises (:class:`ExchangeError`, :class:`AuditError`):
    the driver records it as this actor's failure.
    """
    from cfa.runtime.runs import join_run, session_summary

    store = AuditStore.open(job.db)
    cache = None
    try:
        exchange = job.exchange.build(job.tickers, job.entries)
        session = await join_run(
            exchange,
            store,
            job.policy,
            job.run_id,
            job.tickers,
            worker=job.worker,
            market_numbers=job.market_numbers,
            governance_since=job.governance_since,
        )
        if job.agents is not None:
            from cfa.agents.reasoners import make_reasoner

            a = job.agents
            reasoner = make_reasoner(a.reasoner, model=a.model, base_url=a.base_url)
            if a.llm_cache is not None:
                from cfa.agents.reasoners.cache import CachedReasoner, SqliteLLMCache

                cache = SqliteLLMCache(Path(a.llm_cache))
                reasoner = CachedReasoner(reasoner, cache)
            session.attach_agents(
                reasoner, interval_s=a.interval_s, lockstep=a.lockstep, latency_s=a.latency_s
            )
        if started is not None:
            started(session)
        if job.exchange.name != "sim":  # a live feed never ends by itself
            asyncio.get_running_loop().call_later(job.duration_s, session.stop.set)
        wall0 = time.perf_counter()
        cpu0 = time.process_time()
        try:
            rows = await session.run()
        finally:
            await exchange.close()
        return {
            "worker": job.worker,
            "pid": os.getpid(),
            "clock_end": exchange.clock.now(),
            "cpu_s": round(time.process_time() - cpu0, 3),
            **session_summary(session, rows, wall0),
        }
    finally:
        with contextlib.suppress(Exception):
            store.close()
        if cache is not None:
            cache.close()


class ActorShell:
    """The Ray actor: runs one :class:`ActorJob` (:func:`run_job`); ``stop`` ends it early,
    cleanly (orders cancelled, rows flushed). An async actor, so ``stop`` and ``pid`` run while
    ``run`` is awaiting."""

    def __init__(self) -> None:
        self._session: Any = None
        self._stop_early = False

    async def run(self, job: ActorJob) -> dict[str, Any]:
        return await run_job(job, self._started)

    def _started(self, session: Any) -> None:
        self._session = session
        if self._stop_early:
            session.stop.set()

    async def stop(self) -> bool:
        """Ask the running session to end; True if one was running."""
        self._stop_early = True
        if self._session is not None:
            self._session.stop.set()
            return True
        return False

    async def pid(self) -> int:
        """The actor's process id (tests and tools kill it by this)."""
        return os.getpid()


# -- the driver ---------------------------------------------------------------------------------


def init_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Connect to the cluster at ``address`` or start a local one (``num_cpus``; None: every
    core), with :class:`cfa.eval.executors.RayExecutor`'s conventions: no dashboard, usage
    stats off, worker logs kept out of this terminal. Ray already initialised in this process:
    used as is. Returns True when this call started or connected (the caller shuts it down).
    Raises ImportError naming ``pip install 'cfa[ray]'`` when Ray is missing."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(RAY_EXTRA_HINT) from exc
    if ray.is_initialized():
        return False
    opts: dict[str, Any] = {"log_to_driver": False, "logging_level": "error"}
    if address is not None:
        ray.init(address=address, **opts)
    else:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(num_cpus=num_cpus, include_dashboard=False, **opts)
    return True


def cluster_cpus() -> int:
    """CPUs of the connected Ray cluster (at least 1)."""
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


@dataclass
class ActorState:
    """The driver's view of one actor."""

    worker: str
    units: list[Unit]
    handle: Any = None
    ref: Any = None
    result: dict[str, Any] | None = None
    error: str | None = None
    lost: bool = False
    resting_at_loss: list[dict[str, Any]] = field(default_factory=list)
    cancelled_at_loss: list[str] = field(default_factory=list)

    @property
    def tickers(self) -> list[str]:
        return [t for u in self.units for t in u.tickers]

    @property
    def entries(self) -> list[int]:
        return sorted(e for u in self.units for e in u.entries)


class ClusterRun:
    """One run over Ray actors (see the module doc). Use :meth:`start`, then :meth:`wait`.

    ``markets``: every market of the run, in the run's order (their numbers in client order
    ids); ``entries``: on the simulator, each market's scenario entry. ``actors``: how many
    (None: one per CPU of the cluster; never more than there are units). ``orphans``: on a
    venue that outlives an actor, makes a driver-side exchange client that cancels a lost
    actor's resting orders (None: the exchange died with the actor, as the simulator's).
    ``start_ts``: the run's start on the exchange's clock, epoch seconds (the simulator's
    start; None: wall time); the end row is stamped with the latest actor's clock at its end.
    ``duration_s``: how long a live feed runs (the simulator ends by itself).
    """

    def __init__(
        self,
        store: AuditStore,
        db: str,
        policy: Policy,
        config: Mapping[str, Any],
        exchange: ExchangeSpec,
        markets: Sequence[MarketInfo],
        *,
        entries: Mapping[str, int] | None = None,
        actors: int | None = None,
        agents: AgentSpec | None = None,
        orphans: Callable[[], Exchange] | None = None,
        start_ts: float | None = None,
        duration_s: float = 3600.0,
    ) -> None:
        if not markets:
            raise ValueError("a cluster run needs at least one market")
        self.store = store
        self.db = db
        self.policy = policy
        self.config = dict(config)
        self.exchange = exchange
        self.markets = list(markets)
        self.numbers = {m.ticker: i for i, m in enumerate(self.markets)}
        self.agents = agents
        self.orphans = orphans
        self.start_ts = start_ts
        self.duration_s = duration_s
        self.units = units_of(self.markets, entries)
        k = actors if actors is not None else cluster_cpus()
        self.actors = [
            ActorState(f"actor-{i}", g) for i, g in enumerate(group_units(self.units, k))
        ]
        self.run_id: str | None = None
        self.requested_actors = k
        self._stopping = False
        self.wall0 = 0.0

    def start(self) -> str:
        """Write the run's start row and start one actor per group; returns the run id."""
        import ray

        n = len(self.markets)
        policies = {a.worker: actor_policy(self.policy, len(a.tickers) / n) for a in self.actors}
        config = {
            **self.config,
            "executor": "ray",
            "actors": [
                {
                    "actor": a.worker,
                    "markets": a.tickers,
                    "limits": {
                        "max_gross_exposure": policies[a.worker].portfolio.max_gross_exposure,
                        "daily_loss": policies[a.worker].loss.daily_loss,
                        "max_drawdown": policies[a.worker].loss.max_drawdown,
                    },
                }
                for a in self.actors
            ],
            "markets": [market_to_dict(m) for m in self.markets],
        }
        t0 = self.start_ts if self.start_ts is not None else time.time()
        self.run_id = self.store.start_run(config, ts_ms=round(t0 * 1000))
        since = self.store.head.seq
        cpus = cluster_cpus()
        per_actor = min(1.0, cpus / len(self.actors))
        remote = ray.remote(num_cpus=per_actor, max_restarts=0, max_task_retries=0)(ActorShell)
        self.wall0 = time.perf_counter()
        for a in self.actors:
            job = ActorJob(
                worker=a.worker,
                db=self.db,
                run_id=self.run_id,
                policy=policies[a.worker],
                exchange=self.exchange,
                tickers=tuple(a.tickers),
                entries=tuple(a.entries),
                market_numbers={t: self.numbers[t] for t in a.tickers},
                governance_since=since,
                duration_s=self.duration_s,
                agents=self.agents,
            )
            a.handle = remote.options(scheduling_strategy="SPREAD").remote()
            a.ref = a.handle.run.remote(job)
        return self.run_id

    def stop(self) -> None:
        """Ask every actor still running to end cleanly (Ctrl-C, SIGTERM, a test)."""
        self._stopping = True
        for a in self.actors:
            if a.result is None and a.error is None and a.handle is not None:
                with contextlib.suppress(Exception):
                    a.handle.stop.remote()

    def running(self) -> list[ActorState]:
        """Actors whose run has not ended yet."""
        return [a for a in self.actors if a.result is None and a.error is None]

    def poll(self, timeout: float = POLL_S) -> list[ActorState]:
        """Collect the actors that ended within ``timeout`` wall seconds; returns them."""
        import ray

        pending = {a.ref: a for a in self.running()}
        if not pending:
            return []
        done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=timeout)
        ended = []
        for ref in done:
            a = pending[ref]
            self._collect(a)
            ended.append(a)
        return ended

    def _collect(self, a: ActorState) -> None:
        import ray
        from ray.exceptions import RayActorError

        try:
            a.result = ray.get(a.ref)
            with contextlib.suppress(Exception):  # done: free its CPU for the next run now
                ray.kill(a.handle)
        except RayActorError as exc:
            a.lost = True
            a.error = f"actor lost: {_first_line(exc)}"
            self._lost(a)
        except Exception as exc:  # the session itself raised (exchange, audit): not a crash
            cause = getattr(exc, "cause", None) or exc
            a.error = f"{type(cause).__name__}: {_first_line(cause)}"

    def _lost(self, a: ActorState) -> None:
        """Record an actor's loss: what rested per the audit; cancel it where it still rests."""
        a.resting_at_loss = resting_per_audit(self.store, self.run_id or "", a.tickers)
        if self.orphans is not None:
            prefixes = tuple(f"cfa-{(self.run_id or '')[:8]}-{self.numbers[t]}-" for t in a.tickers)
            try:
                a.cancelled_at_loss = asyncio.run(cancel_orphans(self.orphans, a.tickers, prefixes))
                fate = "cancelled by the driver"
            except (ExchangeError, OSError) as exc:
                fate = f"cancel by the driver failed: {_first_line(exc)}"
        else:
            fate = "gone with the actor's embedded exchange"
        detail = {
            "actor": a.worker,
            "markets": a.tickers,
            "error": a.error,
            "resting_orders": a.resting_at_loss,
            "orders": fate,
            "cancelled": a.cancelled_at_loss,
        }
        self.store.append(
            "risk_events",
            {
                "run_id": self.run_id,
                "market": "",
                "ts_ms": round(time.time() * 1000),  # the driver knows no exchange clock
                "kind": ACTOR_LOST,
                "code": ACTOR_LOST,
                "state": "HALTED",
                "detail": {**detail, "ts_is_wall": True},
            },
        )
        self.store.flush()

    def wait(self, on_tick: Callable[[], None] | None = None) -> list[ActorState]:
        """Wait for every actor to end (``on_tick`` every :data:`POLL_S`); returns them all."""
        while self.running():
            self.poll()
            if on_tick is not None:
                on_tick()
        return self.actors

    def summary(self) -> dict[str, Any]:
        """The run's summary, aggregated from every actor: markets (a lost actor's markets
        as ``lost`` rows), events, orders left resting, decisions by verdict, per actor its
        markets, events, wall time and error, and the lost actors with their markets."""
        markets: list[dict[str, Any]] = []
        decisions: dict[str, int] = {}
        events = leftover = 0
        per_actor = []
        for a in self.actors:
            r = a.result
            if r is not None:
                markets.extend(r["markets"])
                events += int(r["events"])
                leftover += int(r["leftover_orders"])
                for k, v in (r.get("decisions") or {}).items():
                    decisions[k] = decisions.get(k, 0) + int(v)
            else:
                markets.extend(lost_row(t, a.worker, a.error or "") for t in a.tickers)
            per_actor.append(
                {
                    "actor": a.worker,
                    "markets": a.tickers,
                    "status": "ok" if r is not None else ("lost" if a.lost else "failed"),
                    "events": None if r is None else r["events"],
                    "wall_s": None if r is None else r["wall_s"],
                    "cpu_s": None if r is None else r.get("cpu_s"),
                    "pid": None if r is None else r.get("pid"),
                    "error": a.error,
                    **({"llm": r["llm"]} if r is not None and "llm" in r else {}),
                }
            )
        order = {t: i for i, t in enumerate(self.numbers)}
        markets.sort(key=lambda m: order.get(m["ticker"], len(order)))
        return {
            "markets": markets,
            "events": events,
            "wall_s": round(time.perf_counter() - self.wall0, 3),
            "leftover_orders": leftover,
            "stopped_by_signal": self._stopping,
            "decisions": decisions,
            "executor": "ray",
            "actors": per_actor,
            "lost_actors": [
                {
                    "actor": a.worker,
                    "markets": a.tickers,
                    "resting_orders_at_loss": len(a.resting_at_loss),
                    "cancelled_by_driver": a.cancelled_at_loss,
                }
                for a in self.actors
                if a.lost
            ],
        }

    def end(self) -> dict[str, Any]:
        """Write the run's end row with :meth:`summary`; returns it."""
        summary = self.summary()
        ends = [float(a.result["clock_end"]) for a in self.actors if a.result is not None]
        t1 = max(ends) if ends else time.time()
        self.store.end_run(self.run_id or "", summary, ts_ms=round(t1 * 1000))
        return summary

    def kill_actors(self) -> None:
        """Kill every actor still alive (after the run, or when the driver gives up)."""
        import ray

        for a in self.actors:
            if a.handle is not None:
                with contextlib.suppress(Exception):
                    ray.kill(a.handle)


def lost_row(ticker: str, worker: str, error: str) -> dict[str, Any]:
    """A summary row for a market whose actor was lost: no figures are known."""
    return MarketSummary(
        ticker=ticker,
        title="",
        state="lost",
        events=0,
        fills=0,
        volume=0.0,
        fees=Decimal(0),
        realized_pnl=Decimal(0),
        marked_pnl=Decimal(0),
        inventory=0.0,
        max_abs_inventory=0.0,
        error=f"{worker}: {error}",
    ).as_dict()


def market_rows(summary: Mapping[str, Any]) -> list[MarketSummary]:
    """The :class:`MarketSummary` rows of an aggregated summary (for the CLI's table)."""
    out = []
    for d in summary["markets"]:
        out.append(
            MarketSummary(
                **{
                    **d,
                    "fees": Decimal(d["fees"]),
                    "realized_pnl": Decimal(d["realized_pnl"]),
                    "marked_pnl": Decimal(d["marked_pnl"]),
                }
            )
        )
    return out


def resting_per_audit(
    store: AuditStore, run_id: str, tickers: Iterable[str]
) -> list[dict[str, Any]]:
    """Orders of ``tickers`` in run ``run_id`` that were resting per the audit store: their
    last ``orders`` row is a place or amend with status ``resting`` and the fills recorded
    after it do not cover its remaining count. Each: market, order_id, client_order_id, side,
    price (price units), remaining count (count units)."""
    out: list[dict[str, Any]] = []
    reader = store.reader()
    try:
        for t in tickers:
            last: dict[str, dict[str, Any]] = {}
            for r in reader.rows("orders", run_id=run_id, market=t):
                if r.get("order_id"):
                    last[r["order_id"]] = r
            filled: dict[str, int] = {}
            for f in reader.rows("fills", run_id=run_id, market=t):
                o = last.get(f.get("order_id") or "")
                if o is not None and f["seq"] > o["seq"]:
                    filled[o["order_id"]] = filled.get(o["order_id"], 0) + int(f["count"])
            for oid, r in last.items():
                left = int(r.get("count") or 0) - filled.get(oid, 0)
                if r["action"] in ("place", "amend") and r.get("status") == "resting" and left > 0:
                    out.append(
                        {
                            "market": t,
                            "order_id": oid,
                            "client_order_id": r.get("client_order_id"),
                            "side": r.get("side"),
                            "price": r.get("price"),
                            "count": left,
                        }
                    )
    finally:
        reader.close()
    return out


async def cancel_orphans(
    make: Callable[[], Exchange], tickers: Sequence[str], prefixes: tuple[str, ...]
) -> list[str]:
    """Cancel, through a fresh exchange client, the resting orders of ``tickers`` whose client
    order id starts with one of ``prefixes``; returns the cancelled order ids."""
    ex = make()
    cancelled: list[str] = []
    await ex.start()
    try:
        for t in tickers:
            for o in await ex.get_orders(t, resting_only=True):
                if o.client_order_id.startswith(prefixes):
                    await ex.cancel_order(o.order_id)
                    cancelled.append(o.order_id)
    finally:
        await ex.close()
    return cancelled


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
