"""Every market's live state, folded incrementally from the rows a running session writes.

:class:`SessionTail` follows one run of an audit store. Each :meth:`SessionTail.refresh` reads
only the rows committed since the last one (``seq`` greater than what it has seen) and folds
them: market events, orders and fills into one :class:`cfa.reports.history.MarketWalker` per
market (book mid, our resting quotes, inventory, PnL — exactly as the report rebuilds them),
``param_changes`` into γ and σ, ``risk_events`` into trading states, ``decisions`` into each
market's last decision, and governance rows into frozen parameters and pending approvals. The
first refresh replays the run from its start; later ones cost what was written in between.

Prices are dollars, sizes contracts, money decimal strings, times UTC epoch ms unless named.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from cfa.desk.errors import DeskError

if TYPE_CHECKING:
    from cfa.audit import AuditReader
    from cfa.reports.history import MarketWalker


class SessionTail:
    """The live state of run ``run_id`` (the latest run when None) of an open reader.

    Not thread-safe: one tail per reader, refreshed from one task. ``version`` grows whenever a
    refresh found new rows, so a pusher sends a state only when it changed."""

    def __init__(self, reader: AuditReader, run_id: str | None = None) -> None:
        from cfa.desk.reads import resolve_run

        self.reader = reader
        self.run_id: str = resolve_run(reader, run_id) or ""
        if not self.run_id:
            raise DeskError("a live tail follows one run, not 'all'")
        run = reader.run(self.run_id)
        self.first_seq = run.first_seq
        self.seq = run.first_seq
        self.version = 0
        self.ended_ms: int | None = run.ended_ms
        self.walkers: dict[str, MarketWalker] = {}
        self.params: dict[str, dict[str, float]] = {}
        self.states: dict[str, str] = {}
        self.last_decision: dict[str, dict[str, Any]] = {}
        self.frozen: dict[str, set[str]] = {}
        self.pending: list[dict[str, Any]] = []
        self.decisions = 0
        cfg = run.config or {}
        pol = (cfg.get("policy") or {}).get("params") or {}
        self.defaults = {
            p: float(pol[p]["default"])
            for p in ("gamma", "sigma")
            if isinstance(pol.get(p), dict) and isinstance(pol[p].get("default"), int | float)
        }
        """γ and σ a market quotes with before any change is recorded (the run's policy)."""
        self.titles: dict[str, str] = {}
        for m in cfg.get("markets") or []:
            if isinstance(m, dict) and m.get("ticker"):
                self._walker(str(m["ticker"]))
                self.titles[str(m["ticker"])] = str(m.get("title") or "")

    def _walker(self, market: str) -> MarketWalker:
        from cfa.reports.history import MarketWalker

        w = self.walkers.get(market)
        if w is None:
            w = self.walkers[market] = MarketWalker(market, record=False)
        return w

    def refresh(self) -> bool:
        """Fold every row committed since the last refresh; returns whether there were any.

        It first takes the chain's head, then folds each table only up to it: rows are
        committed in seq order (one writer at a time holds the store's write lock), so every
        row up to the head is there to read, and one committed while this reads the later
        tables is past the head and waits for the next refresh instead of being skipped."""
        from cfa.desk.reads import applied_freezes, pending_of
        from cfa.reports.decisions import DecisionRecord
        from cfa.reports.history import timeline_items

        r, after = self.reader, self.seq
        top = r.head().seq
        if top <= after:
            return False

        def upto(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
            for row in rows:
                if row["seq"] > top:
                    return
                yield row

        found = False
        for seq, table, market, item in timeline_items(r, self.run_id, after_seq=after):
            if seq > top:
                break
            found = True
            if market:  # portfolio-wide rows move no market's book
                self._walker(market).feed(seq, table, item)
        for row in upto(r.rows("param_changes", run_id=self.run_id, after_seq=after)):
            found = True
            self.params.setdefault(row["market"], {})[row["param"]] = row["new"]
            if row["market"]:
                self._walker(row["market"])
        for row in upto(r.rows("risk_events", run_id=self.run_id, after_seq=after)):
            found = True
            if row["kind"] == "trading_state" and row.get("state"):
                self.states[row["market"] or "*"] = row["state"]
        for row in upto(r.rows("decisions", run_id=self.run_id, after_seq=after)):
            found = True
            d = DecisionRecord.from_row(row)
            self.decisions += 1
            self.last_decision[d.market or "*"] = {
                "seq": d.seq,
                "decision_id": d.decision_id,
                "ts_ms": d.ts_ms,
                "agent": d.agent,
                "outcome": d.outcome,
                "change": d.change_text(),
                "rationale": d.rationale[:200],
            }
        if any(True for _ in upto(r.rows("governance_actions", after_seq=after, decode=False))):
            found = True
            self.frozen = applied_freezes(r, self.run_id)
            self.pending = pending_of(r, self.run_id)
        for row in upto(r.rows("runs", run_id=self.run_id, after_seq=after, decode=False)):
            found = True
            if row["kind"] == "end":
                self.ended_ms = row["ts_ms"]
        self.seq = top
        if found:
            self.version += 1
        return found

    def state(self) -> dict[str, Any]:
        """The run's state now: ``run_id``, ``seq`` (the last row folded), ``version``,
        ``ended_ms``, ``global_state``, ``markets`` (one dict per market, by ticker), the
        portfolio's ``realized_pnl``/``marked_pnl``, ``pending`` approvals, and the
        ``wall_ms`` it was taken at."""
        from decimal import Decimal

        glob = self.states.get("*", "ACTIVE")
        markets = []
        realized = marked = Decimal(0)
        for m in sorted(self.walkers):
            s = self.walkers[m].snapshot()
            realized += s.realized
            marked += s.marked
            p = {**self.defaults, **self.params.get(m, {})}
            markets.append(
                {
                    "market": m,
                    "title": self.titles.get(m, ""),
                    "state": self.states.get(m, glob),
                    "mid": s.mid,
                    "our_bid": s.our_bid,
                    "our_ask": s.our_ask,
                    "inventory": s.inventory,
                    "fills": s.fills,
                    "realized_pnl": str(s.realized),
                    "marked_pnl": str(s.marked.quantize(Decimal("0.0001"))),
                    "gamma": p.get("gamma"),
                    "sigma": p.get("sigma"),
                    "frozen": sorted(self.frozen.get(m, set())),
                    "ts": s.ts,
                    "last_decision": self.last_decision.get(m),
                }
            )
        return {
            "run_id": self.run_id,
            "seq": self.seq,
            "version": self.version,
            "ended_ms": self.ended_ms,
            "global_state": glob,
            "markets": markets,
            "realized_pnl": str(realized),
            "marked_pnl": str(marked.quantize(Decimal("0.0001"))),
            "decisions": self.decisions,
            "last_governance_decision": self.last_decision.get("*"),
            "pending": self.pending,
            "wall_ms": round(time.time() * 1000),
        }
