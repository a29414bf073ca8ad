"""What an operator reads: sessions, markets, traces, one decision, approvals, risk, requests.

Every function reads through an :class:`cfa.audit.AuditReader` (a SQLite file or a PostgreSQL
URL, read-only) and returns JSON-friendly dicts: the terminal, the browser console and the MCP
server render the same records. Times are UTC epoch milliseconds (``ts_ms``) unless a key says
otherwise; prices are dollars, sizes contracts, money exact decimal strings.
:class:`DeskError` names what is wrong (no such store, run, market or decision).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfa.desk.errors import DeskError

if TYPE_CHECKING:
    from cfa.audit import AuditReader


@contextlib.contextmanager
def open_reader(db: str) -> Iterator[AuditReader]:
    """A read-only :class:`AuditReader` on ``db`` (closed afterwards); :class:`DeskError` when
    there is no store there or it cannot be opened."""
    from cfa.audit import AuditError, AuditReader
    from cfa.audit.postgres import is_url

    if not is_url(db) and not Path(db).exists():
        raise DeskError(f"{db}: no audit store here (start `cfa run --db {db}` first)")
    try:
        reader = AuditReader.open(db)
    except AuditError as exc:
        raise DeskError(str(exc)) from None
    try:
        yield reader
    finally:
        reader.close()


def _loads(text: str | None) -> dict[str, Any]:
    try:
        v = json.loads(text or "{}")
    except ValueError:
        return {}
    return v if isinstance(v, dict) else {}


def parse_time(text: str, name: str) -> int:
    """An ISO 8601 time (UTC unless it says otherwise) or epoch seconds (epoch ms when above
    1e11) -> UTC epoch milliseconds; :class:`DeskError` naming ``name`` (the filter or option)
    otherwise."""
    import math
    import re
    from datetime import UTC, datetime

    t = text.strip()
    if re.fullmatch(r"[+-]?\d+(\.\d+)?", t):
        v = float(t)
        if not math.isfinite(v):
            raise DeskError(f"{name}: {text!r} is not a time")
        return round(v if abs(v) > 1e11 else v * 1000)
    try:
        dt = datetime.fromisoformat(t[:-1] + "+00:00" if t.endswith(("Z", "z")) else t)
    except ValueError:
        raise DeskError(
            f"{name}: cannot read {text!r}; use an ISO time (2026-11-27T19:55:00Z) or epoch seconds"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return round(dt.timestamp() * 1000)


# -- runs -------------------------------------------------------------------------------------


def latest_run(db: str) -> tuple[str, dict[str, Any], list[str]]:
    """``(run_id, config, markets)`` of the latest run in ``db`` (the run a governance request
    goes to); :class:`DeskError` when the store has none."""
    with open_reader(db) as reader:
        return latest_run_of(reader)


def latest_run_of(reader: AuditReader) -> tuple[str, dict[str, Any], list[str]]:
    """:func:`latest_run` on an open reader."""
    from cfa.audit.errors import DB_ERRORS

    try:
        rows = list(
            reader.db.query(
                "select run_id, payload, seq from runs where kind = 'start'"
                " order by seq desc limit 1"
            )
        )
        if not rows:
            raise DeskError(f"{reader.name}: no run recorded yet")
        row = rows[0]
        markets = [
            r["market"]
            for r in reader.db.query(
                "select distinct market from param_changes where run_id = ? and market != ''"
                " union select distinct market from market_events where seq > ? and market != ''",
                [row["run_id"], row["seq"]],
            )
        ]
    except DB_ERRORS as exc:
        raise DeskError(f"{reader.name}: cannot read the audit store ({exc})") from None
    return row["run_id"], _loads(row["payload"]), sorted(set(markets))


def resolve_run(reader: AuditReader, run: str | None) -> str | None:
    """The run id ``run`` names: None or ``latest`` -> the latest run, ``all`` -> None (every
    run), else an exact id or a unique prefix; :class:`DeskError` otherwise."""
    runs = reader.runs()
    if run == "all":
        return None
    if not runs:
        raise DeskError(f"no runs in {reader.name!r}")
    if run is None or run == "latest":
        return runs[-1].run_id
    exact = [r.run_id for r in runs if r.run_id == run]
    if exact:
        return exact[0]
    matches = [r.run_id for r in runs if r.run_id.startswith(run)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise DeskError(f"no run {run!r} in {reader.name!r}; latest is {runs[-1].run_id}")
    raise DeskError(f"run prefix {run!r} is ambiguous: {', '.join(matches[:5])}")


def _heartbeats(reader: AuditReader) -> dict[str, dict[str, Any]]:
    """The freshest heartbeat row per run (wall-clock times), {} when there is none."""
    from cfa.audit import heartbeat
    from cfa.audit.errors import DB_ERRORS

    out: dict[str, dict[str, Any]] = {}
    with contextlib.suppress(*DB_ERRORS):
        for r in reader.db.query(
            f"select run_id, pid, host, beat, stopped, state from {heartbeat.TABLE} order by beat"
        ):
            out[r["run_id"]] = r
    return out


def sessions(reader: AuditReader, *, now: float | None = None) -> list[dict[str, Any]]:
    """Every run of the store, newest first: id, start and end (``ts_ms``, None while it runs),
    venue, markets, and ``live``: whether a session still beats for it (wall clock ``now``)."""
    from cfa.audit.heartbeat import STALE_AFTER_S
    from cfa.reports.history import run_markets

    t = time.time() if now is None else now
    beats = _heartbeats(reader)
    out = []
    for run in reversed(reader.runs()):
        b = beats.get(run.run_id)
        live = bool(
            b is not None
            and b["state"] == "running"
            and b["stopped"] is None
            and t - float(b["beat"]) <= STALE_AFTER_S
        )
        cfg = run.config or {}
        markets = run_markets(reader, run) or [
            str(m["ticker"]) for m in cfg.get("markets") or [] if isinstance(m, dict)
        ]  # a run that has only just started has no rows naming its markets yet
        out.append(
            {
                "run_id": run.run_id,
                "started_ms": run.started_ms,
                "ended_ms": run.ended_ms,
                "live": live and run.ended_ms is None,
                "venue": cfg.get("exchange"),
                "markets": markets,
                "heartbeat": None
                if b is None
                else {"pid": b["pid"], "host": b["host"], "state": b["state"], "beat": b["beat"]},
            }
        )
    return out


# -- governance -------------------------------------------------------------------------------


def pending_requests(db: str, run_id: str) -> list[dict[str, Any]]:
    """Approval requests of ``run_id`` still pending, oldest first (from the audit trail)."""
    with open_reader(db) as reader:
        return pending_of(reader, run_id)


def pending_of(reader: AuditReader, run_id: str) -> list[dict[str, Any]]:
    """:func:`pending_requests` on an open reader. Each: ``request_id``, ``market``, ``param``,
    ``base`` (the value in force), ``value`` (asked for), ``source`` (who asked), ``why``,
    ``rationale``, ``expires`` (session clock, epoch s)."""
    last: dict[str, dict[str, Any]] = {}
    for r in reader.db.query(
        "select payload from governance_actions where run_id = ? and action in"
        " ('approval_requested', 'approval_decided', 'approval_expired',"
        " 'approval_superseded') order by seq",
        [run_id],
    ):
        p = _loads(r["payload"])
        rid = p.get("request_id")
        if isinstance(rid, str):
            last[rid] = p
    return [p for p in last.values() if p.get("status") == "pending"]


def applied_freezes(reader: AuditReader, run_id: str) -> dict[str, set[str]]:
    """Frozen parameters per market, from the applied freeze/unfreeze results in order."""
    out: dict[str, set[str]] = {}
    for r in reader.db.query(
        "select market, action, payload from governance_actions where run_id = ? and action in"
        " ('freeze', 'unfreeze') order by seq",
        [run_id],
    ):
        p = _loads(r["payload"])
        if p.get("status") != "applied":
            continue
        args = p.get("outcome", {}).get("arguments", {})
        names = {"gamma", "sigma"} if args.get("param") == "all" else {args.get("param")}
        cur = out.setdefault(r["market"], set())
        if r["action"] == "freeze":
            cur |= names
        else:
            cur -= names
    return out


def requests(reader: AuditReader, *, limit: int = 50) -> list[dict[str, Any]]:
    """The latest governance rows (requests, their results, approvals), newest first: seq,
    ts_ms, run, market, action, actor, reason, status, and the outcome's message when there is
    one."""
    out = []
    for r in reader.db.query(
        "select seq, run_id, market, ts_ms, action, actor, reason, payload"
        " from governance_actions order by seq desc limit ?",
        [int(limit)],
    ):
        p = _loads(r.pop("payload"))
        outcome = p.get("outcome") or {}
        r.update(
            status=p.get("status"),
            request_seq=p.get("request_seq"),
            message=outcome.get("message") if isinstance(outcome, dict) else None,
        )
        out.append(r)
    return out


def market_params(reader: AuditReader, run_id: str) -> dict[str, dict[str, float]]:
    """The γ and σ in force per market (the last recorded change of each)."""
    params: dict[str, dict[str, float]] = {}
    for r in reader.db.query(
        "select market, param, new from param_changes where run_id = ? order by seq", [run_id]
    ):
        params.setdefault(r["market"], {})[r["param"]] = r["new"]
    return params


def trading_states(reader: AuditReader, run_id: str) -> dict[str, str]:
    """The trading state per market (``*``: the portfolio-wide state) from the audit trail."""
    states: dict[str, str] = {}
    for r in reader.db.query(
        "select market, state from risk_events where run_id = ? and kind = 'trading_state'"
        " order by seq",
        [run_id],
    ):
        states[r["market"] or "*"] = r["state"]
    return states


# -- decisions --------------------------------------------------------------------------------


def decisions(
    reader: AuditReader,
    *,
    run_id: str | None,
    market: str | None = None,
    agent: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    outcomes: Iterable[str] | None = None,
    limit: int = 50,
) -> tuple[list[Any], int]:
    """The latest ``limit`` decisions (0: all) matching the filters of ``cfa traces``, oldest
    first, as :class:`cfa.reports.decisions.DecisionRecord`; and how many matched in all.
    :class:`DeskError` for an unknown agent or outcome (the message starts with the filter's
    name)."""
    from cfa.audit.schema import DECISION_OUTCOMES
    from cfa.reports.decisions import load_decisions

    if agent is not None and agent not in ("market", "governance"):
        raise DeskError(f"agent: expected market or governance, got {agent!r}")
    wanted = [o for o in outcomes or [] if o]
    bad = [o for o in wanted if o not in DECISION_OUTCOMES]
    if bad:
        raise DeskError(f"outcome: unknown {bad[0]!r}; known: {', '.join(DECISION_OUTCOMES)}")
    rows = load_decisions(
        reader,
        run_id=run_id,
        market=market,
        agent=agent,
        since_ms=since_ms,
        until_ms=until_ms,
        outcomes=wanted or None,
    )
    total = len(rows)
    return (rows[-limit:] if limit else rows), total


def traces(reader: AuditReader, **filters: Any) -> tuple[list[dict[str, Any]], int]:
    """:func:`decisions` as summaries (the rows of ``cfa traces --json``), and the total."""
    rows, total = decisions(reader, **filters)
    return [d.summary() for d in rows], total


def find_decisions(reader: AuditReader, ident: str, run_id: str | None = None) -> list[Any]:
    """:class:`cfa.reports.decisions.DecisionRecord` rows of decision ``ident``: an audit seq,
    or a decision_id (all its phases, of ``run_id`` when given)."""
    from cfa.reports.decisions import DecisionRecord

    ident = ident.strip()
    if ident.isdigit():
        rows = list(reader.db.query("SELECT * FROM decisions WHERE seq = ?", [int(ident)]))
    else:
        sql = "SELECT * FROM decisions WHERE decision_id = ?"
        params: list[Any] = [ident]
        if run_id is not None:
            sql += " AND run_id = ?"
            params.append(run_id)
        rows = list(reader.db.query(sql + " ORDER BY seq", params))
    decode = reader._decoder("decisions")  # the reader's own typed decoding of the row
    return [DecisionRecord.from_row(decode(r) if decode else r) for r in rows]


def decision(
    reader: AuditReader, ident: str, *, run_id: str | None = None, after_s: float = 600.0
) -> tuple[Any, list[Any], list[dict[str, Any]]]:
    """One decision: ``(record, phases, followed)`` — its final phase (the whole record and
    verdict), every phase of its decision id, and what followed over ``after_s`` seconds in
    each market it concerns (:func:`cfa.reports.history.follow`). :class:`DeskError` when no
    decision has that id or seq, or a decision id is in several runs and ``run_id`` is None."""
    from cfa.reports.history import follow, run_markets

    found = find_decisions(reader, ident, run_id)
    if not found:
        raise DeskError(f"no decision {ident!r} in {reader.name!r} (use a decision_id or a seq)")
    runs = sorted({r.run_id for r in found})
    if len(runs) > 1:
        raise DeskError(
            f"decision id {ident!r} is in several runs ({', '.join(runs)}); give the run or the seq"
        )
    d = found[-1]
    related = found
    if ident.strip().isdigit() and d.decision_id:
        related = find_decisions(reader, d.decision_id, d.run_id)
    markets = [d.market] if d.market else []
    if not markets:  # governance: the markets it changed, else every market of the run
        markets = sorted({str(c["market"]) for c in d.changes if c.get("market")})
        if not markets:
            markets = run_markets(reader, reader.run(d.run_id))
    start = d.ts_ms / 1000.0
    ts = d.payload.get("ts")
    if isinstance(ts, int | float):
        start = float(ts)
    followed = [follow(reader, d.run_id, m, d.seq, start, after_s) for m in markets]
    return d, related, followed


def decision_json(d: Any, related: list[Any], followed: list[dict[str, Any]]) -> dict[str, Any]:
    """What :func:`decision` returned as one JSON object (``cfa traces show --json``)."""
    return {
        "decision": d.detail(),
        "phases": [{"seq": r.seq, "phase": r.phase, "outcome": r.outcome} for r in related],
        "followed": followed,
    }


# -- risk -------------------------------------------------------------------------------------


def risk_events(
    reader: AuditReader, *, run_id: str | None, market: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The latest ``limit`` risk events (denials, breaker trips, trading-state changes), newest
    first: seq, ts_ms, market, kind, code, state, detail."""
    where, params = ["1 = 1"], []
    if run_id is not None:
        where.append("run_id = ?")
        params.append(run_id)
    if market is not None:
        where.append("market = ?")
        params.append(market)
    out = []
    for r in reader.db.query(
        "select seq, run_id, ts_ms, market, kind, code, state, detail from risk_events where "
        + " and ".join(where)
        + " order by seq desc limit ?",
        [*params, int(limit)],
    ):
        r["detail"] = _loads(r["detail"])
        out.append(r)
    return out
