"""The records of an evaluation: one job (a run to make), its metrics, its result.

Pydantic models, frozen and strict about keys, so a results file written by one version of cfa
is read back exactly or refused with the field named. Units everywhere: money in **dollars**
(floats, rounded to $0.0001 when written), sizes in **contracts**, times in **seconds**,
shares in [0, 1].
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Job(_Frozen):
    """One run of an evaluation: a scenario, a seed and a strategy for a simulated duration.

    ``strategy`` is one of ``naive``, ``static-as``, ``static-glft``, ``agents:heuristic``,
    ``agents:openai`` or ``agents:scripted:PATH`` (see :mod:`cfa.eval.strategies`).
    ``db`` is the audit store the run writes (an ordinary cfa run: traces, replay and report
    work on it). ``llm`` holds the options of an ``agents:openai`` strategy (model, base_url,
    latency_s, cache path); it is empty otherwise.
    """

    scenario: str
    seed: int
    strategy: str
    duration_s: float = Field(gt=0)
    policy: str = "default"
    agent_interval_s: float = Field(default=60.0, gt=0)
    naive_half_spread: float = Field(default=0.01, gt=0, lt=0.5)
    db: str
    llm: dict[str, str | float | None] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        """``scenario/strategy/seed``: unique within a suite."""
        return f"{self.scenario}/{self.strategy}/{self.seed}"


class Markout(_Frozen):
    """Volume-weighted mark-out of our fills at one horizon, dollars per contract.

    Positive means the fill made money at that horizon. ``n`` fills had their horizon inside
    the run (later ones are left out); ``value`` is None when ``n`` is 0.
    """

    horizon_s: float
    value: float | None
    n: int


class RunMetrics(_Frozen):
    """What one run did, from its fills and a once-a-second sample of its market.

    PnL decomposition (exact by construction): ``marked_pnl = spread_pnl + inventory_pnl +
    settlement_pnl − fees``. ``spread_pnl`` is the edge captured at each fill against the mid
    (our own orders excluded) at that moment; ``settlement_pnl`` is what the position held at
    settlement made between the last mid and the settlement value; ``inventory_pnl`` is the
    rest: the marked change in value of the inventory we held.

    ``sharpe`` is the mean over the standard deviation of per-minute changes of marked PnL
    (not annualised; None with fewer than two minutes or no variation). ``max_drawdown`` is
    the largest fall of marked PnL from a running peak (dollars, ≥ 0). ``equity`` is marked
    PnL at the end of each simulated minute.
    """

    marked_pnl: float
    realized_pnl: float
    spread_pnl: float
    inventory_pnl: float
    settlement_pnl: float
    fees: float
    sharpe: float | None
    max_drawdown: float
    max_abs_inventory: float
    final_inventory: float
    fills: int
    contracts: float
    offered_contracts: float
    fill_ratio: float | None
    markouts: list[Markout]
    time_quoted_both: float
    time_quoted_any: float
    time_halted: float
    time_reduce_only: float
    our_spread: float | None
    background_spread: float | None
    inside_share: float | None
    events: int
    decisions: dict[str, int] = Field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    llm_cost: float = 0.0
    equity: list[float] = Field(default_factory=list)
    markets: int = 1
    """Markets the run traded: an event scenario's metrics cover the whole event (PnL, fees,
    fills and contracts summed; inventory and quoting shares over its markets)."""
    worst_case_loss_peak: float | None = None
    """The largest, over the run's once-a-second samples, of what the inventory would lose
    against its mid-marked value on the event's worst outcome (dollars; a ladder's ``n + 1``
    strike intervals, an exclusive set's outcomes; one market: its worse side). None in
    results written before it existed."""
    worst_case_loss_mean: float | None = None
    """The same worst-case loss averaged over the samples (dollars)."""

    def markout(self, horizon_s: float) -> float | None:
        for m in self.markouts:
            if m.horizon_s == horizon_s:
                return m.value
        return None


class RunResult(_Frozen):
    """A finished job: its run id in its audit store and its metrics, or the error that ended it.

    A job that raised has ``metrics`` None and ``error`` set to one line naming what failed;
    the rest of the suite goes on.
    """

    job: Job
    run_id: str | None
    metrics: RunMetrics | None
    error: str | None = None
    wall_s: float = 0.0
