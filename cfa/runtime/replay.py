"""Offline replays of a recorded run: exact, decisions, counterfactual.

Never touches an exchange; never calls a live LLM unless one is named.

* :func:`replay_exact` re-runs the recorded market events through the same market loops, quoting
  core and risk gate, with the recorded decisions applied when they took effect
  (:class:`cfa.exchange.replay.AuditReplayExchange`), and compares every order action the replay
  takes with the recorded ones, market by market.
* :func:`replay_decisions` re-feeds each recorded market-agent context to another reasoner (or
  prompt) and diffs the tool calls. With :func:`recorded_reasoner` the answers come from the
  run's own recorded LLM answers (keyed like the LLM call cache,
  :mod:`cfa.agents.reasoners.cache`): no endpoint is called, no token is spent, and every
  decision whose request is unchanged (same prompt, context, tools, model and sampling
  settings) is reproduced; a changed one abstains.
* :func:`replay_counterfactual` re-runs a simulated session from its seed with another reasoner
  and compares the outcomes side by side; it runs the agents in lockstep (and with the
  simulated LLM latency) when the recorded run did, unless told otherwise.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfa.agents.reasoners.base import Reasoner, ReasonRequest
from cfa.agents.reasoners.cache import (
    CachedReasoner,
    LLMCache,
    MemoryLLMCache,
    OfflineReasoner,
    import_from_audit,
    recorded_identity,
)
from cfa.audit import AuditError, AuditStore
from cfa.audit.queries import AuditReader
from cfa.audit.records import market_from_dict
from cfa.control.tools import MARKET_TOOLS
from cfa.core.types import MarketInfo, TradingState
from cfa.exchange.replay import AuditReplayExchange, Control
from cfa.risk.policy import Policy
from cfa.runtime.agents import load_prompt
from cfa.runtime.runs import close_run, open_run
from cfa.runtime.session import MarketSummary, Session

ORDER_ACTIONS = ("place", "amend", "cancel", "deny", "reject", "cancel_failed")


class MemorySink:
    """An in-memory row sink (for replays that must not write to the audit store)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, dict[str, Any]]] = []

    def append(self, table: str, row: Mapping[str, Any]) -> None:
        self.rows.append((table, dict(row)))

    def maybe_flush(self) -> None:
        return None

    def flush(self) -> None:
        return None


def _run_config(db: str | Path, run_id: str) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
    with AuditReader.open(db) as reader:
        runs = reader.runs()
        matches = [r for r in runs if r.run_id == run_id or r.run_id.startswith(run_id)]
        if not matches:
            raise AuditError(f"no run {run_id!r} in {db}")
        if len(matches) > 1:
            raise AuditError(f"run id prefix {run_id!r} is ambiguous in {db}")
        r = matches[0]
        return r.run_id, r.config, r.summary


def _order_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        row["action"],
        row["side"],
        row["price"],
        row["count"],
        row.get("reason") if row["action"] == "deny" else None,
    )


@dataclass
class ExactReport:
    """How the replay's order actions compare with the recorded ones."""

    run_id: str
    compared: int = 0
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    per_market: dict[str, tuple[int, int]] = field(default_factory=dict)
    """market -> (recorded actions, replayed actions)."""
    summaries: list[MarketSummary] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches and all(a == b for a, b in self.per_market.values())


def _sessions_of(
    config: Mapping[str, Any], markets: Sequence[MarketInfo], policy: Policy
) -> list[tuple[set[str], Policy, dict[str, int] | None]]:
    """How the recorded run was split into sessions: one over every market, or for a cluster
    run (``config["actors"]``, :mod:`cfa.runtime.cluster`) one per actor, with the actor's
    share of the session-wide limits and the markets' numbers in the whole run (client ids)."""
    actors = config.get("actors")
    if not actors:
        return [({m.ticker for m in markets}, policy, None)]
    from cfa.runtime.cluster import actor_policy

    numbers = {m.ticker: i for i, m in enumerate(markets)}
    return [
        (
            set(a["markets"]),
            actor_policy(policy, len(a["markets"]) / len(markets)),
            {t: numbers[t] for t in a["markets"]},
        )
        for a in actors
    ]


async def _replay_session(
    db: str | Path,
    run_id: str,
    markets: list[MarketInfo],
    policy: Policy,
    sink: MemorySink,
    numbers: dict[str, int] | None,
) -> list[MarketSummary]:
    """Re-run one recorded session of ``run_id`` over ``markets`` into ``sink``."""
    ex = AuditReplayExchange(db, run_id, markets)
    session = Session(ex, markets, policy, sink, f"replay-{run_id}", market_numbers=numbers)

    def control(c: Control) -> None:
        if c.kind == "param":
            session.params.set(
                c.market,
                c.name,
                float(c.value),
                source=f"replay:{c.source}",
                reason=c.reason,
                now=c.ts,
            )
        else:
            session.states.set(
                c.market or None,
                TradingState(c.value),
                source=f"replay:{c.source}",
                reason=c.reason,
            )

    ex.on_control = control
    return await session.run(govern=False)


async def replay_exact(db: str | Path, run_id: str) -> ExactReport:
    """Re-run ``run_id`` from its recorded events and decisions; compare the order actions."""
    run_id, config, _ = _run_config(db, run_id)
    if "markets" not in config or "policy" not in config:
        raise AuditError(
            f"run {run_id} did not record its markets and policy; it cannot be replayed"
        )
    markets = [market_from_dict(m) for m in config["markets"]]
    policy = Policy.model_validate(config["policy"])
    sink = MemorySink()
    summaries: list[MarketSummary] = []
    for tickers, pol, numbers in _sessions_of(config, markets, policy):
        mine = [m for m in markets if m.ticker in tickers]
        summaries += await _replay_session(db, run_id, mine, pol, sink, numbers)
    recorded: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    with AuditReader.open(db) as reader:
        for row in reader.rows("orders", run_id=run_id):
            if row["action"] in ORDER_ACTIONS:
                recorded[row["market"]].append(_order_key(row))
    replayed: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for table, row in sink.rows:
        if table == "orders" and row["action"] in ORDER_ACTIONS:
            replayed[row["market"]].append(_order_key(row))
    report = ExactReport(run_id, summaries=summaries)
    for market in sorted(set(recorded) | set(replayed)):
        a, b = recorded[market], replayed[market]
        report.per_market[market] = (len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            report.compared += 1
            if x != y:
                report.mismatches.append(
                    {"market": market, "index": i, "recorded": list(x), "replayed": list(y)}
                )
                break
    return report


@dataclass(frozen=True)
class DecisionDiff:
    """One recorded decision re-fed: recorded vs replayed tool calls (rationale text aside).

    ``cache`` is ``"hit"``/``"miss"`` when the replay reasoner has an LLM cache (None without);
    ``usage`` the tokens the replay call was charged (None for a hit or a local reasoner).
    """

    decision_id: str
    market: str
    ts_ms: int
    recorded: list[dict[str, Any]]
    replayed: list[dict[str, Any]]
    error: str | None
    cache: str | None = None
    usage: dict[str, int] | None = None

    @property
    def same(self) -> bool:
        return self.recorded == self.replayed


def _calls(calls: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for c in calls:
        try:
            args = json.loads(c["arguments"]) if isinstance(c["arguments"], str) else c["arguments"]
        except json.JSONDecodeError:
            args = {"_raw": c["arguments"]}
        if isinstance(args, dict):
            args = {k: v for k, v in args.items() if k not in ("rationale", "reason")}
        out.append({"name": c["name"], "arguments": args})
    return out


async def replay_decisions(
    db: str | Path, run_id: str, reasoner: Reasoner, prompt: str | None = None
) -> list[DecisionDiff]:
    """Re-feed every recorded market-agent context (first attempt) to ``reasoner``.

    Tool calls are compared by name and arguments, rationale text aside.
    """
    run_id, _, _ = _run_config(db, run_id)
    text = prompt if prompt is not None else load_prompt("market_agent")[0]
    out: list[DecisionDiff] = []
    with AuditReader.open(db) as reader:
        rows = [r for r in reader.rows("decisions", run_id=run_id) if r["agent"] == "market"]
    for row in rows:
        p = row["payload"]
        if p.get("phase", "decision") != "decision" or not p.get("context"):
            continue
        responses = p.get("responses") or []
        recorded = _calls(responses[0]["calls"]) if responses else []
        resp = await reasoner.reason(
            ReasonRequest(
                role="market",
                market=row["market"],
                system_prompt=text,
                context=p["context"],
                tools=MARKET_TOOLS,
            )
        )
        replayed = _calls([{"name": c.name, "arguments": c.arguments} for c in resp.calls])
        cache = resp.extra.get("cache")
        out.append(
            DecisionDiff(
                p["decision_id"],
                row["market"],
                row["ts_ms"],
                recorded,
                replayed,
                resp.error,
                cache=None if cache is None else str(cache),
                usage=dict(resp.usage) if resp.usage else None,
            )
        )
    return out


def recorded_reasoner(
    db: str | Path, run_id: str, inner: Reasoner | None = None, cache: LLMCache | None = None
) -> CachedReasoner:
    """A reasoner answering from the LLM answers recorded in ``run_id``'s decisions.

    The answers are loaded into ``cache`` (a new in-memory cache by default). ``inner`` answers
    the requests nobody recorded; by default an :class:`OfflineReasoner` with the recorded
    reasoner identity, which abstains, so nothing goes over the network. Raises
    :class:`AuditError` when the run recorded no LLM answers (e.g. a heuristic run).
    """
    run_id, _, _ = _run_config(db, run_id)
    identity = recorded_identity(db, run_id)
    if identity is None:
        raise AuditError(
            f"run {run_id} recorded no LLM answers (its reasoner has no cache identity); "
            "replay it with the reasoner it used"
        )
    target: LLMCache = cache if cache is not None else MemoryLLMCache()
    import_from_audit(target, db, run_id)
    return CachedReasoner(inner if inner is not None else OfflineReasoner(identity), target)


_AGENT_OPTIONS = {"near_cap": float, "fill_burst": int, "regime_interval_s": float}


def _agent_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The recorded ``agent_options`` that :func:`replay_counterfactual` passes on (typed)."""
    raw = config.get("agent_options") or {}
    if not isinstance(raw, Mapping):
        return {}
    return {k: conv(raw[k]) for k, conv in _AGENT_OPTIONS.items() if raw.get(k) is not None}


async def replay_counterfactual(
    db: str | Path,
    run_id: str,
    reasoner: Reasoner,
    out_db: Path | None = None,
    *,
    lockstep: bool | None = None,
    latency_s: float | None = None,
) -> dict[str, Any]:
    """Re-run the simulated session of ``run_id`` from its seed with ``reasoner``.

    ``lockstep``/``latency_s`` (simulated seconds) default to what the recorded run used
    (config ``lockstep``, ``llm_latency_s``; off and 0 for runs that did not say). The agents
    are scheduled as the run's config says: ``agent_interval_s`` (default 60),
    ``governance_interval_s`` (default 300) and ``agent_options`` (any other
    :class:`~cfa.runtime.agents.AgentRuntime` scheduling keywords: ``near_cap``,
    ``fill_burst``, ``regime_interval_s``). With the same reasoner answers (e.g.
    :func:`recorded_reasoner`) and lockstep, the re-run is the recorded run again.
    Returns ``{"original": [...], "counterfactual": [...], "run_id": new_run_id, "db": path,
    "llm": {...}}`` with one summary dict per market each and the new run's LLM totals.
    Only simulator runs can be re-run from a seed.
    """
    from cfa.exchange.sim import SimExchange

    run_id, config, summary = _run_config(db, run_id)
    if config.get("exchange") != "sim":
        raise AuditError(
            f"run {run_id} was not on the simulator; replay it with --mode exact or decisions"
        )
    policy = Policy.model_validate(config["policy"])
    ex = SimExchange.from_scenarios(
        config["scenarios"], seed=int(config["seed"]), duration=float(config["duration_s"])
    )
    lock = bool(config.get("lockstep", False)) if lockstep is None else lockstep
    latency = float(config.get("llm_latency_s") or 0.0) if latency_s is None else latency_s
    target = out_db or Path(tempfile.mkdtemp()) / "counterfactual.db"
    store = AuditStore.open(target)
    try:
        new_config = {k: v for k, v in config.items() if k not in ("markets", "argv", "llm_cache")}
        session = await open_run(
            ex,
            store,
            policy,
            {
                **new_config,
                "counterfactual_of": run_id,
                "reasoner": {"name": reasoner.name, "model": reasoner.model},
                "lockstep": lock,
                "llm_latency_s": latency if lock else 0.0,
            },
        )
        session.attach_agents(
            reasoner,
            interval_s=float(config.get("agent_interval_s", 60.0)),
            governance_interval_s=float(config.get("governance_interval_s", 300.0)),
            lockstep=lock,
            latency_s=latency if lock else 0.0,
            **_agent_options(config),
        )
        wall0 = time.perf_counter()
        try:
            rows = await session.run(govern=False)
        finally:
            await ex.close()
        done = close_run(session, store, rows, wall0)
    finally:
        store.close()
    return {
        "run_id": session.run_id,
        "db": str(target),
        "original": (summary or {}).get("markets", []),
        "counterfactual": [r.as_dict() for r in rows],
        "llm": done.get("llm"),
    }
