"""A trading session: many market loops over one exchange stream, in one asyncio process.

The session routes each event to its market's :class:`MarketLoop`. A market whose loop raises is
marked FAILED, its orders are cancelled and the other markets go on. Every ending (the stream
ends, ``stop`` is set by Ctrl-C or SIGTERM, or an error escapes) cancels all resting orders,
checks with the exchange that none is left, flushes the audit store and returns the summary.

**Audit durability.** What the session recorded is committed to the audit store at least every
``flush_interval`` (0.25 s) of *wall* time (``time.monotonic``; the exchange's clock is
simulated in a simulation, durability is about real time), by a timer task, and also every
``flush_every`` events; on the hot path the wall clock is read only every 64 events. With a
store that has :meth:`~cfa.audit.AuditStore.heartbeat`, the session also beats at most once a
second of wall time and marks itself stopped at the end (:mod:`cfa.audit.heartbeat`). If a
write to the audit store fails (a full disk, say), the session stops trading: it cancels every
resting order, and :meth:`Session.run` raises :class:`~cfa.audit.AuditError` with one line
saying so; rows committed before the failure stay intact.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Protocol

from cfa.agents.reasoners.base import Reasoner
from cfa.audit.errors import AuditError
from cfa.audit.store import to_ms as ms
from cfa.control.outcomes import ToolOutcome
from cfa.control.params import ParameterStore
from cfa.control.plane import ControlPlane
from cfa.core.consistency import taker_fee_per_contract
from cfa.core.events import EventKind, event_structures
from cfa.core.types import QTY_SCALE, Fill, MarketInfo, Settlement, Side, TradingState
from cfa.exchange.base import Exchange, ExchangeError, event_chunks
from cfa.exchange.history import HistorySource
from cfa.risk.gate import RiskGate
from cfa.risk.policy import Policy
from cfa.risk.portfolio import Portfolio
from cfa.risk.states import TradingStates
from cfa.runtime.event_group import EventGroup
from cfa.runtime.governance import GovernancePoller
from cfa.runtime.loop import LoopState, MarketLoop
from cfa.runtime.recorder import Recorder, RowSink
from cfa.runtime.warmstart import warm_start

if TYPE_CHECKING:
    from cfa.runtime.agents import AgentRuntime

FLUSH_INTERVAL_S: Final = 0.25
"""Recorded rows are committed at least this often, wall seconds."""
HEARTBEAT_INTERVAL_S: Final = 1.0
"""The session's heartbeat is written at most this often, wall seconds."""
_CLOCK_EVERY: Final = 64
"""The hot path reads the wall clock once per this many events (a power of two)."""


class Probe(Protocol):
    """Observes a session without changing it (the evaluation's metrics use one).

    ``tick`` runs once a second of exchange time (at the first event of each second);
    ``own`` runs for each of our fills and settlements *before* the market's loop applies it,
    so the loop's mid and inventory are still those the event met.
    """

    def tick(self, t: float) -> None: ...

    def own(self, loop: MarketLoop, ev: Fill | Settlement) -> None: ...


class AuditSink(RowSink, Protocol):
    """What the session needs from the audit store. A sink that also has
    ``heartbeat(session_id, run_id, state, *, started)`` (:meth:`cfa.audit.AuditStore.heartbeat`)
    gets the session's heartbeats."""

    def maybe_flush(self) -> object: ...

    def flush(self) -> object: ...


@dataclass(frozen=True, slots=True)
class MarketSummary:
    """End-of-run figures of one market. Money in dollars, sizes in contracts."""

    ticker: str
    title: str
    state: str
    events: int
    fills: int
    volume: float
    fees: Decimal
    realized_pnl: Decimal
    marked_pnl: Decimal
    inventory: float
    max_abs_inventory: float
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("fees", "realized_pnl", "marked_pnl"):
            d[key] = str(d[key])
        return d


def summarize(loop: MarketLoop) -> MarketSummary:
    a = loop.account
    return MarketSummary(
        ticker=loop.ticker,
        title=loop.market.title,
        state=loop.state.value,
        events=loop.events,
        fills=a.fills,
        volume=a.volume / QTY_SCALE,
        fees=a.fees,
        realized_pnl=a.realized,
        marked_pnl=a.marked(loop.mid).quantize(Decimal("0.0001")),
        inventory=a.inventory / QTY_SCALE,
        max_abs_inventory=a.max_abs_inventory / QTY_SCALE,
        error=loop.error,
    )


class Session:
    """Runs the market loops of ``markets`` on ``exchange`` until the stream ends or ``stop``."""

    def __init__(
        self,
        exchange: Exchange,
        markets: Sequence[MarketInfo],
        policy: Policy,
        sink: AuditSink,
        run_id: str,
        flush_every: int = 2000,
        flush_interval: float = FLUSH_INTERVAL_S,
        *,
        worker: str | None = None,
        market_numbers: Mapping[str, int] | None = None,
        governance_since: int | None = None,
    ) -> None:
        """``worker`` names this session when it is one of several sessions of one run (an actor
        of a cluster run, :mod:`cfa.runtime.cluster`): its heartbeat is then its own
        (``<run_id>/<worker>``), it applies only the governance requests that concern its
        markets (or all markets) and its result rows say ``"worker"``. ``market_numbers``: each
        market's number in the whole run, used in client order ids (``cfa-<run>-<number>-…``)
        so that sessions of one run never share one (default: the position in ``markets``).
        ``governance_since``: apply governance requests after this audit seq (default: those
        written after the session started polling)."""
        self.exchange = exchange
        self.worker = worker
        self.governance_since = governance_since
        self.policy = policy
        self.sink = sink
        self.run_id = run_id
        self.recorder = Recorder(sink, run_id)
        self.params = ParameterStore(policy, record=self.recorder.param_change)
        self.gate = RiskGate(policy)
        self.states = TradingStates(on_change=self._on_state_change)
        self.portfolio = Portfolio(policy)
        self.control = ControlPlane(self.params, self.states, on_event=self._on_control_event)
        """The one apply path for people, the governance agent and market agents."""
        self.governance: GovernancePoller | None = None
        self.loops: dict[str, MarketLoop] = {}
        for m in markets:
            self.params.add_market(m.ticker)
            self.loops[m.ticker] = MarketLoop(
                m,
                exchange,
                self.params,
                self.gate,
                policy,
                self.recorder,
                self.states,
                f"cfa-{run_id[:8]}-"
                f"{len(self.loops) if market_numbers is None else market_numbers[m.ticker]}",
                self.portfolio,
            )
        self.event_groups: dict[str, EventGroup] = {}
        """The events of two or more related markets (a ladder, an exclusive set), by event
        ticker: their loops quote with covariance-aware reservation prices."""
        fees = {m.event_ticker: m.fee for m in markets}
        for structure in event_structures(markets).values():
            for t in structure.tickers:
                self.states.register(t, structure.event_ticker)
            if structure.kind is not EventKind.INDEPENDENT and structure.n >= 2:
                fee = taker_fee_per_contract(fees[structure.event_ticker])
                group = EventGroup(structure, policy, fee)
                self.event_groups[structure.event_ticker] = group
                for t in structure.tickers:
                    self.loops[t].join_event(group)
        self.portfolio.set_structures(g.structure for g in self.event_groups.values())
        self.flush_every = flush_every
        self.flush_interval = flush_interval
        """Wall seconds between time flushes of the audit store (see the module doc)."""
        self._last_flush_wall = time.monotonic()
        self._last_beat = -math.inf
        self._started_wall = time.time()
        self.audit_error: str | None = None
        """Why the audit store could not be written, when that stopped the session."""
        self.now = 0.0
        self.events = 0
        self.stop = asyncio.Event()
        self.agents: AgentRuntime | None = None
        """The slow path; attach with :meth:`attach_agents` before :meth:`run`."""
        self.leftover_orders: int = 0
        self.probe: Probe | None = None
        """Set before :meth:`run` to observe the session (see :class:`Probe`)."""

    def _on_state_change(
        self, market: str | None, old: TradingState, new: TradingState, source: str, reason: str
    ) -> None:
        self.recorder.risk_event(
            market or "",
            self.now,
            "trading_state",
            new.value,
            new.value,
            {"from": old.value, "source": source, "reason": reason},
        )

    def _on_control_event(self, kind: str, payload: dict[str, Any]) -> None:
        """Approval requests, decisions and expiries, as ``governance_actions`` rows."""
        self.recorder.row(
            "governance_actions",
            {
                "market": payload.get("market") or "",
                "ts_ms": ms(self.now),
                "action": kind,
                "actor": str(payload.get("by") or payload.get("source") or ""),
                "param": payload.get("param"),
                "value": payload.get("value"),
                "reason": payload.get("why") or payload.get("rationale"),
                "payload": payload,
            },
        )

    def attach_agents(self, reasoner: Reasoner, **options: Any) -> AgentRuntime:
        """Run market and governance agents with ``reasoner`` on this session's slow path."""
        from cfa.runtime.agents import AgentRuntime

        self.agents = AgentRuntime(self, reasoner, **options)
        return self.agents

    async def run(self, govern: bool = True) -> list[MarketSummary]:
        """Consume the stream; always clean up. Returns one summary per market.

        On a venue that reports market history (:class:`~cfa.exchange.history.HistorySource`)
        the loops are first seeded from it (:func:`cfa.runtime.warmstart.warm_start`: σ and k
        before the first quote, READY on the first book when the history suffices).

        With ``govern`` (and a sink that is a file), governance requests from other processes
        are polled and applied every 0.25 s of wall time; a feed watchdog runs alongside.

        While it runs, everything allocated before it (modules, markets, loops, policy) is
        frozen out of the cyclic garbage collector (:func:`gc.freeze`; :func:`gc.unfreeze` at
        the end): the collector's full passes then walk only what the run itself allocates,
        which at 1,000 markets saves about a tenth of the CPU per event
        (``docs/performance.md``).
        """
        if isinstance(self.exchange, HistorySource):  # seed σ and k before the first quote
            await warm_start(self.exchange, self.loops.values(), self.exchange.clock.now())
        stream = event_chunks(self.exchange, list(self.loops))
        self._started_wall = time.time()
        self._beat("running")
        background = [
            asyncio.create_task(self._watchdog()),
            asyncio.create_task(self._flush_timer()),
        ]
        db = getattr(self.sink, "target", None)  # the AuditStore's path or PostgreSQL URL
        if govern and db is not None:
            self.governance = GovernancePoller(
                db,
                self.control,
                self.recorder,
                lambda: self.now,
                self._after_governance,
                self._flush,
                worker=self.worker,
                markets=None if self.worker is None else frozenset(self.loops),
                since=self.governance_since,
            )
            background.append(asyncio.create_task(self._poll_governance()))
        gc.freeze()
        try:
            consume = asyncio.create_task(self._consume(stream))
            stopped = asyncio.create_task(self.stop.wait())
            await asyncio.wait({consume, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not consume.done():  # stopped while waiting for the next event
                consume.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await consume
            else:
                consume.result()
        finally:
            gc.unfreeze()
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
            await self.shutdown()
        return [summarize(loop) for loop in self.loops.values()]

    async def _consume(self, stream: Any) -> None:
        """Hand every event of ``stream`` (chunks, :func:`~cfa.exchange.base.event_chunks`)
        to its market's loop, in order: the feed watchdog first, then the loop's fast path
        (:meth:`MarketLoop.feed`, awaited only when it has an order call to make), then the
        agents; a loop that raises fails alone. Flushes the audit store every
        ``flush_every`` events and, on the wall clock, every ``flush_interval`` seconds."""
        loops = self.loops
        flush_every = self.flush_every
        flush_interval = self.flush_interval
        agents = self.agents
        probe = self.probe
        feed = self.portfolio.feed
        stop = self.stop
        failed = LoopState.FAILED
        next_check = -math.inf
        next_flush = self.events + flush_every
        next_clock = self.events + _CLOCK_EVERY
        async for chunk in stream:
            for ev in chunk:
                ts = ev.ts
                self.now = ts
                if feed is not None:
                    clock_now = self.exchange.clock.now()
                    last = feed.last_event
                    if feed.tripped or (last is not None and clock_now - last > feed.stale_after_s):
                        await self._feed_resumed(clock_now)
                    else:
                        feed.last_event = clock_now  # all that check() and on_event() would do
                if probe is not None and ts >= next_check:
                    next_check = ts + 1.0
                    probe.tick(ts)
                loop = loops.get(ev.ticker)
                if loop is not None and loop.state is not failed:
                    try:
                        if probe is not None and (type(ev) is Fill or type(ev) is Settlement):
                            probe.own(loop, ev)  # type: ignore[arg-type]
                        pending = loop.feed(ev)
                        if pending is not None:
                            await pending
                        if agents is not None:
                            pending = agents.poll(loop, ts)
                            if pending is not None:
                                await pending
                    except Exception as exc:  # one market's failure never stops the others
                        loop.fail(exc)
                        with contextlib.suppress(Exception):
                            await loop.cancel_all("loop_failed")
                self.events = n = self.events + 1
                if n >= next_flush:
                    next_flush = n + flush_every
                    self.recorder.close_aged(ts)
                    try:
                        self.sink.maybe_flush()
                    except Exception as exc:
                        self._audit_failed(exc)
                elif n >= next_clock:
                    next_clock = n + _CLOCK_EVERY
                    if time.monotonic() - self._last_flush_wall >= flush_interval:
                        self._time_flush()  # the timer task is starved when the stream never waits
                if stop.is_set():
                    return

    async def _feed_resumed(self, clock_now: float) -> None:
        """An event after a silence on the exchange's clock (or while the dead-feed breaker
        holds): a replay's recorded silence trips here, as the timer task would have live (it
        polls wall time), and the event that ends it lifts the halt."""
        feed = self.portfolio.feed
        assert feed is not None
        states = self.states
        trip = feed.check(clock_now, states.global_state)
        if trip is not None:
            states.set(None, trip.state, source=trip.source, reason=trip.reason)
            await self._cancel_halted()
        trip = feed.on_event(clock_now, states.global_state)
        if trip is not None:
            states.set(None, trip.state, source=trip.source, reason=trip.reason)

    # -- audit durability: time flushes, heartbeat, write failures ----------------------------

    async def _flush_timer(self) -> None:
        """Commit what was recorded once ``flush_interval`` wall seconds have passed since the
        last flush (whoever did it); beat on the way."""
        interval = self.flush_interval
        while self.audit_error is None:
            due = self._last_flush_wall + interval - time.monotonic()
            if due > 0:
                await asyncio.sleep(due)
                continue
            self._time_flush()

    def _time_flush(self) -> None:
        """Close the open event batches, commit every buffered row, and beat if one is due."""
        if self.audit_error is not None:
            return
        t = time.monotonic()
        self._last_flush_wall = t
        try:
            self.recorder.flush_events()
            self.sink.flush()
        except Exception as exc:
            self._audit_failed(exc)
            return
        if t - self._last_beat >= HEARTBEAT_INTERVAL_S:
            self._last_beat = t
            self._beat("running")

    def _beat(self, state: str) -> None:
        """Write the heartbeat (a sink without one: nothing). A failure stops the session
        while it runs; when marking the end it is ignored (the end is recorded anyway)."""
        beat = getattr(self.sink, "heartbeat", None)
        if beat is None:
            return
        session_id = self.run_id if self.worker is None else f"{self.run_id}/{self.worker}"
        try:
            beat(session_id, self.run_id, state, started=self._started_wall)
        except Exception as exc:
            if state == "running":
                self._audit_failed(exc)

    def _audit_failed(self, exc: BaseException) -> None:
        """The audit store cannot be written: remember why and stop the session."""
        if self.audit_error is None:
            self.audit_error = (
                str(exc) if isinstance(exc, AuditError) else f"{type(exc).__name__}: {exc}"
            )
        self.stop.set()

    # -- the feed watchdog, governance from other processes ------------------------------------

    async def _watchdog(self) -> None:
        """A dead feed (no event at all for ``feed.stale_after_s``) halts everything and cancels
        every resting order (:class:`cfa.risk.breakers.DeadFeed`, on the exchange's clock; a
        quiet market is not a dead feed). Quoting resumes, from fresh books, when events flow
        again. Daily loss and drawdown run in the portfolio, fed by every market's loop.
        The breaker is also checked at each event, before it counts (:meth:`_consume`): on a
        replay's event clock a recorded silence trips there, without waiting wall time."""
        feed = self.portfolio.feed
        assert feed is not None
        while True:
            await asyncio.sleep(min(1.0, feed.stale_after_s / 4))
            trip = feed.check(self.exchange.clock.now(), self.states.global_state)
            if trip is not None:
                self.states.set(None, trip.state, source=trip.source, reason=trip.reason)
                await self._cancel_halted()
                self._flush()

    async def _poll_governance(self) -> None:
        assert self.governance is not None
        while True:
            await asyncio.sleep(0.25)
            await self.governance.poll()

    async def _after_governance(self, outcome: ToolOutcome) -> None:
        await self._cancel_halted()

    async def _cancel_halted(self) -> None:
        for ticker, loop in self.loops.items():
            if self.states.effective(ticker) is TradingState.HALTED and (
                loop.resting[Side.BID] is not None or loop.resting[Side.ASK] is not None
            ):
                with contextlib.suppress(Exception):
                    await loop.cancel_all("halted")

    def _flush(self) -> None:
        self._last_flush_wall = time.monotonic()
        try:
            self.recorder.flush_events()
            self.sink.flush()
        except Exception as exc:
            self._audit_failed(exc)

    async def shutdown(self) -> None:
        """Cancel everything, confirm with the exchange, flush the audit store, mark the
        heartbeat stopped.

        Raises :class:`~cfa.audit.AuditError` (after all of that) when the audit store could not
        be written during the session or now: the message names the store's error and how many
        orders were left resting.
        """
        if self.agents is not None:
            with contextlib.suppress(Exception):
                await self.agents.aclose()
        self.control.expire_all_requests("the session ended")
        for loop in self.loops.values():
            with contextlib.suppress(Exception):
                await loop.cancel_all("shutdown")
            if loop.state is LoopState.READY or loop.state is LoopState.WARMING:
                loop.state = LoopState.STOPPED
        try:
            left = await self.exchange.get_orders(None, resting_only=True)
        except ExchangeError:
            left = []
        mine = [o for o in left if o.ticker in self.loops]
        self.leftover_orders = len(mine)
        for o in mine:
            self.recorder.risk_event(
                o.ticker,
                self.now,
                "shutdown",
                "order_left_resting",
                "HALTED",
                {"order_id": o.order_id},
            )
        self._flush()
        self._beat("failed" if self.audit_error is not None else "stopped")
        if self.governance is not None:
            self.governance.close()
        if self.audit_error is not None:
            raise AuditError(
                f"{self.audit_error}; trading stopped and resting orders cancelled "
                f"({self.leftover_orders} left resting); rows committed before the failure are "
                "intact"
            )
