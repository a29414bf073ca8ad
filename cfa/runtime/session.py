"""A trading session: many market loops over one exchange stream, in one asyncio process.

The session routes each event to its market's :class:`MarketLoop`. A market whose loop raises is
marked FAILED, its orders are cancelled and the other markets go on. Every ending (the stream
ends, ``stop`` is set by Ctrl-C or SIGTERM, or an error escapes) cancels all resting orders,
checks with the exchange that none is left, flushes the audit store and returns the summary.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from cfa.agents.reasoners.base import Reasoner
from cfa.core.types import QTY_SCALE, MarketInfo, TradingState
from cfa.exchange.base import Exchange, ExchangeError
from cfa.risk.gate import RiskGate
from cfa.risk.policy import Policy
from cfa.risk.states import TradingStates
from cfa.runtime.loop import LoopState, MarketLoop
from cfa.runtime.params import ParameterStore
from cfa.runtime.recorder import Recorder, RowSink

if TYPE_CHECKING:
    from cfa.runtime.agents import AgentRuntime


class AuditSink(RowSink, Protocol):
    """What the session needs from the audit store."""

    def maybe_flush(self) -> None: ...

    def flush(self) -> None: ...


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
            )
        self.flush_every = flush_every
        self.now = 0.0
        self.events = 0
        self.stop = asyncio.Event()
        self.on_event: Callable[[Session], None] | None = None
        self.agents: AgentRuntime | None = None
        """The slow path; attach with :meth:`attach_agents` before :meth:`run`."""
        self.leftover_orders: int = 0

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

    async def run(self) -> list[MarketSummary]:
        """Consume the stream; always clean up. Returns one summary per market."""
        stream = self.exchange.stream(list(self.loops))
        try:
            await self._consume(stream)
        finally:
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
        n = 0
        async for ev in stream:
            self.now = ev.ts
            loop = loops.get(ev.ticker)
            if loop is not None and loop.state is not LoopState.FAILED:
                try:
                    await loop.on_event(ev)
                    if agents is not None:
                        await agents.after_event(loop, ev.ts)
                except Exception as exc:  # one market's failure never stops the others
                    loop.fail(exc)
                    with contextlib.suppress(Exception):
                        await loop.cancel_all("loop_failed")
            n += 1
            if n % flush_every == 0:
                self.events = n
                self.recorder.flush_events()
                self.sink.maybe_flush()
                if self.on_event is not None:
                    self.on_event(self)
            if self.stop.is_set():
                break
        self.events = n

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
