"""The strategies an evaluation compares, by name.

Every strategy runs the same loop, risk gate and audit trail on the same policy; they differ
only in the quoting model and in who may change γ and σ:

* ``naive`` — ``mid ± half_spread`` (the suite's ``naive_half_spread``, dollars), no inventory
  skew; same size, inventory cap and limits. The bar any market maker must clear.
* ``static-as`` / ``static-glft`` — Avellaneda–Stoikov / GLFT on the policy's γ and the warm-up
  σ estimate, never changed. On an event of several related markets (a strike ladder, an
  exclusive set) their reservation prices are covariance-aware across the event's markets
  (``quoting.event_aware``, ``docs/events.md``).
* ``static-as-per-market`` — ``static-as`` with each market quoted as if it were alone (its
  own inventory only): the baseline the event-aware quote must beat on the event scenarios.
* ``agents:heuristic``, ``agents:openai``, ``agents:scripted:PATH`` — Avellaneda–Stoikov with
  market and governance agents tuning γ and σ through the tools (the reasoner named after
  ``agents:``).
"""

from __future__ import annotations

from dataclasses import dataclass

from cfa.core.quoting import Model
from cfa.risk.policy import Policy

NAMES = (
    "naive",
    "static-as",
    "static-as-per-market",
    "static-glft",
    "agents:heuristic",
    "agents:openai",
)
"""The strategy names (plus ``agents:scripted:PATH``)."""


@dataclass(frozen=True, slots=True)
class Strategy:
    """A parsed strategy: its quoting model and its reasoner spec (None: no agents)."""

    spec: str
    model: Model
    reasoner: str | None
    event_aware: bool = True
    """Covariance-aware quoting across an event's markets (off: each market alone)."""

    @property
    def slug(self) -> str:
        """A file-name-safe form of the spec."""
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in self.spec)


def parse_strategy(spec: str) -> Strategy:
    """Parse a strategy name; raises ValueError naming the spec and the known names."""
    if spec == "naive":
        return Strategy(spec, "naive", None)
    if spec == "static-as":
        return Strategy(spec, "as", None)
    if spec == "static-as-per-market":
        return Strategy(spec, "as", None, event_aware=False)
    if spec == "static-glft":
        return Strategy(spec, "glft", None)
    if spec in ("agents:heuristic", "agents:openai"):
        return Strategy(spec, "as", spec.removeprefix("agents:"))
    if spec.startswith("agents:scripted:") and len(spec) > len("agents:scripted:"):
        return Strategy(spec, "as", spec.removeprefix("agents:"))
    raise ValueError(
        f"unknown strategy {spec!r}: use one of {', '.join(NAMES)} or agents:scripted:PATH"
    )


def strategy_policy(policy: Policy, strategy: Strategy, naive_half_spread: float) -> Policy:
    """``policy`` with the strategy's quoting model, event awareness (and the naive
    half-spread) set."""
    update: dict[str, object] = {"model": strategy.model, "event_aware": strategy.event_aware}
    if strategy.model == "naive":
        update["half_spread"] = naive_half_spread
    return policy.model_copy(update={"quoting": policy.quoting.model_copy(update=update)})
