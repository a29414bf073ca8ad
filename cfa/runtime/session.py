"""A trading session: many market loops over one exchange stream, in one asyncio process.

The session routes each event to its market's :class:`MarketLoop`. A market whose loop raises is
marked FAILED, its orders are cancelled and the other markets go on. Every ending (the stream
ends, ``stop`` is set by Ctrl-C or SIGTERM, or an error escapes) cancels all resting orders,
checks with the exchange that none is left, flushes the audit store and returns the summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cfa.agents.reasoners.base import Reasoner
from cfa.agents.tools import ToolApplier, ToolOutcome
from cfa.core.types import QTY_SCALE, Fill, MarketInfo, Settlement, Side, TradingState
from cfa.exchange.base import Exchange, ExchangeError
from cfa.risk.gate import RiskGate
from cfa.risk.policy import Policy
from cfa.risk.portfolio import Portfolio
from cfa.risk.states import TradingStates
from cfa.runtime.governance import GovernancePoller
from cfa.runtime.loop import LoopState, MarketLoop
from cfa.runtime.params import ParameterStore
from cfa.runtime.recorder import Recorder, RowSink

if TYPE_CHECKING:
    from cfa.runtime.agents import AgentRuntime


class Probe(Protocol):
    """Observes a session without changing it (the evaluation's metrics use one).

    ``tick`` runs once a second of exchange time (at the first event of each second);
    ``own`` runs for each of our fills and settlements *before* the market's loop applies it,
    so the loop's mid and inventory are still those the event met.
    """

    def tick(self, t: float) -> None: ...

    def own(self, loop: MarketLoop, ev: Fill | Settlement) -> None: ...


class AuditSink(RowSink, Protocol):
    """What the session needs from the audit store."""

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
    ) -> None:
        self.exchange = exchange
        self.policy = policy
        self.sink = sink
        self.run_id = run_id
        self.recorder = Recorder(sink, run_id)
        self.params = ParameterStore(policy, record=self.recorder.param_change)
        self.gate = RiskGate(policy)
        self.states = TradingStates(on_change=self._on_state_change)
        self.portfolio = Portfolio()
        self.applier = ToolApplier(self.params, self.states)
        """The one apply path for tool calls (agents) and governance actions (people)."""
        self.governance: GovernancePoller | None = None
        self._peak_pnl = 0.0
        self._feed_halted = False
        self._last_event_clock = 0.0
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
                f"cfa-{run_id[:8]}-{len(self.loops)}",
                self.portfolio,
            )
        self.flush_every = flush_every
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

    def attach_agents(self, reasoner: Reasoner, **options: Any) -> AgentRuntime:
        """Run market and governance agents with ``reasoner`` on this session's slow path."""
        from cfa.runtime.agents import AgentRuntime

        self.agents = AgentRuntime(self, reasoner, **options)
        return self.agents

    async def run(self, govern: bool = True) -> list[MarketSummary]:
        """Consume the stream; always clean up. Returns one summary per market.

        With ``govern`` (and a sink that is a file), governance requests from other processes
        are polled and applied every 0.25 s of wall time; a feed watchdog runs alongside.
        """
        stream = self.exchange.stream(list(self.loops))
        background = [asyncio.create_task(self._watchdog())]
        db = getattr(self.sink, "path", None)
        if govern and db is not None:
            self.governance = GovernancePoller(
                Path(db),
                self.applier,
                self.recorder,
                lambda: self.now,
                self._after_governance,
                self._flush,
            )
            background.append(asyncio.create_task(self._poll_governance()))
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
        loops = self.loops
        flush_every = self.flush_every
        agents = self.agents
        probe = self.probe
        next_check = -math.inf
        async for ev in stream:
            self.now = ev.ts
            self._last_event_clock = self.exchange.clock.now()
            if self._feed_halted:
                self._feed_resumed()
            if ev.ts >= next_check:
                next_check = ev.ts + 1.0
                self._portfolio_tick(ev.ts)
                if probe is not None:
                    probe.tick(ev.ts)
            loop = loops.get(ev.ticker)
            if loop is not None and loop.state is not LoopState.FAILED:
                try:
                    if probe is not None and (type(ev) is Fill or type(ev) is Settlement):
                        probe.own(loop, ev)  # type: ignore[arg-type]
                    await loop.on_event(ev)
                    if agents is not None:
                        await agents.after_event(loop, ev.ts)
                except Exception as exc:  # one market's failure never stops the others
                    loop.fail(exc)
                    with contextlib.suppress(Exception):
                        await loop.cancel_all("loop_failed")
            self.events += 1
            if self.events % flush_every == 0:
                self.recorder.flush_events()
                self.sink.maybe_flush()
            if self.stop.is_set():
                break

    # -- portfolio breakers, the feed watchdog, governance from other processes ---------------

    def _portfolio_tick(self, t: float) -> None:
        """Once a second: daily loss and drawdown limits over every market's marked PnL."""
        total = sum(float(lp.account.marked(lp.mid)) for lp in self.loops.values())
        self._peak_pnl = max(self._peak_pnl, total)
        loss = self.policy.loss
        if self.states.global_state is TradingState.HALTED:
            return
        if total < -loss.daily_loss:
            self.states.set(
                None,
                TradingState.HALTED,
                source="breaker:daily_loss",
                reason=f"portfolio marked PnL {total:.2f} below -{loss.daily_loss:g}",
            )
        elif self._peak_pnl - total > loss.max_drawdown:
            self.states.set(
                None,
                TradingState.HALTED,
                source="breaker:drawdown",
                reason=f"portfolio marked PnL {total:.2f} is {self._peak_pnl - total:.2f} "
                f"below its peak {self._peak_pnl:.2f}",
            )

    async def _watchdog(self) -> None:
        """A dead feed (no event at all for ``feed.stale_after_s``) cancels every resting order.

        A quiet market is not a dead feed: the watchdog looks at events from every market, on
        the exchange's clock. Quoting resumes, from fresh books, when events flow again.
        """
        stale = self.policy.feed.stale_after_s
        while True:
            await asyncio.sleep(min(1.0, stale / 4))
            if self._last_event_clock and not self._feed_halted:
                silent = self.exchange.clock.now() - self._last_event_clock
                if silent > stale and self.states.global_state is not TradingState.HALTED:
                    self._feed_halted = True
                    self.states.set(
                        None,
                        TradingState.HALTED,
                        source="feed_watchdog",
                        reason=f"no event for {silent:.1f}s",
                    )
                    await self._cancel_halted()
                    self._flush()

    def _feed_resumed(self) -> None:
        self._feed_halted = False
        if self.states.global_state is TradingState.HALTED:
            self.states.set(
                None, TradingState.ACTIVE, source="feed_watchdog", reason="events flow again"
            )

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
        self.recorder.flush_events()
        self.sink.flush()

    async def shutdown(self) -> None:
        """Cancel everything, confirm with the exchange, flush the audit store."""
        if self.agents is not None:
            with contextlib.suppress(Exception):
                await self.agents.aclose()
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
        self.recorder.flush_events()
        self.sink.flush()
