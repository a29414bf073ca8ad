"""The claim cfa must prove, as checks on an :class:`~cfa.eval.stats.EvalSummary`.

The claim, scenario by scenario, all comparisons paired by seed (``Δ = agents − static``):

- ``regime-shift`` and ``informed-flow``: the agents beat static AS by at least 20 % in mean
  marked PnL per run **and** in mean Sharpe, each with paired t ≥ 2 over at least 20 seeds.
  "20 % better" is read as ``Δ ≥ 0.2·|static mean|`` (the static mean over the paired seeds).
  For a positive static mean that is the ordinary ``Δ / static ≥ +20 %``; for a **negative**
  static mean it asks the agents to recover at least a fifth of the static loss (static −10,
  agents −8 or better); for a zero static mean it asks ``Δ ≥ 0`` (and t ≥ 2 makes that
  strictly positive).
- ``calm``: the agents lose at most 5 %: ``Δ ≥ −0.05·|static mean|`` in mean marked PnL, over
  at least 20 seeds (no significance asked: "not worse by more than 5 %").
- every scenario in the suite: static AS beats naive, ``Δ = static − naive > 0`` in mean
  marked PnL, over at least 20 seeds (t is reported, not required).

On the event scenarios (``event-ladder``, ``event-exclusive``; checked only when the suite has
them), event-aware AS against per-market AS (``Δ = static-as − static-as-per-market``):

- the event's peak worst-case inventory loss falls by at least 30 %: paired mean
  ``Δ ≤ −0.3·|per-market mean|``;
- the standard deviation of the event's PnL across seeds falls by at least 30 %:
  ``sd(event-aware) ≤ 0.7·sd(per-market)``;
- at no worse mean PnL: the paired mean ``Δ ≥ 0``, or its 95 % bootstrap interval reaches 0
  (no measurable loss);

each over at least 20 seeds.

A check is ``passed=None`` (not measurable) when a strategy or the scenario is missing, or
fewer than ``min_seeds`` seeds paired. When every paired difference is the same positive number
the standard error is 0 and t is undefined; the t criterion then counts as met (an improvement
on every seed by the same amount), and the measured text says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict
from rich.table import Table
from rich.text import Text

from cfa.eval.stats import EvalSummary, PairedStat, markdown_table

__all__ = [
    "MIN_SEEDS",
    "TargetCheck",
    "check_event_targets",
    "check_targets",
    "overall",
    "targets_markdown",
    "targets_rows",
    "targets_table",
]

MIN_SEEDS = 20
"""Paired seeds a check needs to be measurable."""
BEAT_SCENARIOS = ("regime-shift", "informed-flow")
CALM_SCENARIO = "calm"
BEAT_BY = 0.20
"""Relative improvement the agents need on the beat scenarios (of |static mean|)."""
CALM_LOSS = 0.05
"""Largest relative loss the agents may have on calm (of |static mean|)."""
MIN_T = 2.0
EVENT_SCENARIOS = ("event-ladder", "event-exclusive")
EVENT_CUT = 0.30
"""Share by which event-aware quoting must cut the worst-case loss and the PnL sd."""


class TargetCheck(BaseModel):
    """One checked target: ``passed`` True/False, or None when not measurable.

    ``scenario`` is the scenario checked; ``measured`` and ``required`` are one-line texts
    for people (numbers in dollars per run for PnL).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    scenario: str
    passed: bool | None
    measured: str
    required: str


def _measured(p: PairedStat, money: bool) -> str:
    fmt = "+.2f" if money else "+.4f"
    if p.mean_diff is None or p.mean_baseline is None:
        return f"n={p.n}"
    base = format(p.mean_baseline, fmt)
    rel = "" if p.rel_diff is None else f" ({100 * p.rel_diff:+.1f} % of |{base}|)"
    if p.t is not None:
        t = f"t={p.t:+.2f}"
    elif p.n >= 2:
        t = "t undefined (SE 0: every Δ equal)"
    else:
        t = "t undefined (n<2)"
    return f"n={p.n}, Δ={format(p.mean_diff, fmt)}{rel}, {t}, wins {p.wins}/{p.n}"


def _t_ok(p: PairedStat, min_t: float) -> bool:
    if p.t is not None:
        return p.t >= min_t
    # SE 0 with n ≥ 2: every difference equal; met when that difference is positive
    return p.se == 0 and p.mean_diff is not None and p.mean_diff > 0


def _check(
    summary: EvalSummary,
    name: str,
    scenario: str,
    strategy: str,
    baseline: str,
    metric: str,
    required: str,
    min_seeds: int,
    rule: str,
    rel: float,
) -> TargetCheck:
    """``rule``: ``beat`` (Δ ≥ rel·|base| and t ≥ 2), ``floor`` (Δ ≥ rel·|base|, rel < 0),
    ``positive`` (Δ > 0)."""

    def na(why: str) -> TargetCheck:
        return TargetCheck(
            name=name, scenario=scenario, passed=None, measured=why, required=required
        )

    if scenario not in summary.scenarios:
        return na("scenario not in the suite")
    for st in (strategy, baseline):
        if summary.cell(scenario, st) is None:
            return na(f"no {st} runs on this scenario")
    pair = summary.pair(scenario, strategy, baseline)
    if pair is None:
        return na(f"{strategy} vs {baseline} not compared in this summary")
    p = pair.pnl if metric == "pnl" else pair.sharpe
    text = _measured(p, money=metric == "pnl")
    if p.n < min_seeds or p.mean_diff is None or p.mean_baseline is None:
        return na(f"{text}: fewer than {min_seeds} paired seeds")
    if rule == "positive":
        ok = p.mean_diff > 0
    else:
        ok = p.mean_diff >= rel * abs(p.mean_baseline)
        if rule == "beat":
            ok = ok and _t_ok(p, MIN_T)
    return TargetCheck(
        name=name, scenario=scenario, passed=bool(ok), measured=text, required=required
    )


def check_targets(
    summary: EvalSummary,
    agents: str = "agents:heuristic",
    static: str = "static-as",
    naive: str = "naive",
    *,
    min_seeds: int = MIN_SEEDS,
) -> list[TargetCheck]:
    """The targets of the module doc, checked on ``summary``, in a fixed order.

    The comparisons are read from ``summary.pairs`` (directly, or turned round): with the
    suite's baseline ``static`` both are there; with another baseline, pass
    ``extra_pairs=[(agents, static), (static, naive)]`` to :func:`~cfa.eval.stats.summarize`,
    or the checks that need them are not measurable.
    """
    checks: list[TargetCheck] = []
    for sc in BEAT_SCENARIOS:
        for metric, label in (("pnl", "mean marked PnL"), ("sharpe", "mean Sharpe")):
            checks.append(
                _check(
                    summary,
                    f"{agents} beats {static} by ≥20 % in {label}",
                    sc,
                    agents,
                    static,
                    metric,
                    f"n ≥ {min_seeds}, Δ ≥ {BEAT_BY:g}·|{static} mean|, paired t ≥ {MIN_T:g}",
                    min_seeds,
                    "beat",
                    BEAT_BY,
                )
            )
    checks.append(
        _check(
            summary,
            f"{agents} loses ≤5 % vs {static} in mean marked PnL",
            CALM_SCENARIO,
            agents,
            static,
            "pnl",
            f"n ≥ {min_seeds}, Δ ≥ −{CALM_LOSS:g}·|{static} mean|",
            min_seeds,
            "floor",
            -CALM_LOSS,
        )
    )
    for sc in summary.scenarios or [CALM_SCENARIO]:
        checks.append(
            _check(
                summary,
                f"{static} beats {naive} in mean marked PnL",
                sc,
                static,
                naive,
                "pnl",
                f"n ≥ {min_seeds}, Δ > 0 (t reported)",
                min_seeds,
                "positive",
                0.0,
            )
        )
    return checks + check_event_targets(summary, static, min_seeds=min_seeds)


def check_event_targets(
    summary: EvalSummary,
    aware: str = "static-as",
    per_market: str = "static-as-per-market",
    *,
    min_seeds: int = MIN_SEEDS,
) -> list[TargetCheck]:
    """The event scenarios' targets of the module doc, for those in ``summary``."""
    checks: list[TargetCheck] = []
    cut = f"{100 * EVENT_CUT:.0f} %"
    for sc in (s for s in EVENT_SCENARIOS if s in summary.scenarios):
        names = (
            f"{aware} cuts the worst-case inventory loss by ≥{cut} vs {per_market}",
            f"{aware} cuts the PnL sd by ≥{cut} vs {per_market}",
            f"{aware} mean PnL no worse than {per_market}",
        )
        required = (
            f"n ≥ {min_seeds}, Δ ≤ −{EVENT_CUT:g}·|{per_market} mean|",
            f"n ≥ {min_seeds}, sd ≤ {1 - EVENT_CUT:g}·sd({per_market})",
            f"n ≥ {min_seeds}, Δ ≥ 0 or its 95 % CI reaches 0",
        )
        a, b = summary.cell(sc, aware), summary.cell(sc, per_market)
        pair = summary.pair(sc, aware, per_market)
        if a is None or b is None or pair is None:
            why = "not measurable: a strategy is missing on this scenario"
            checks += [
                TargetCheck(name=n, scenario=sc, passed=None, measured=why, required=r)
                for n, r in zip(names, required, strict=True)
            ]
            continue
        w = pair.worst_loss
        text = _measured(w, money=True)
        ok: bool | None = None
        if w.n >= min_seeds and w.mean_diff is not None and w.mean_baseline is not None:
            ok = w.mean_diff <= -EVENT_CUT * abs(w.mean_baseline)
        checks.append(
            TargetCheck(name=names[0], scenario=sc, passed=ok, measured=text, required=required[0])
        )
        ok = None
        if a.pnl_std is not None and b.pnl_std is not None:
            ratio = a.pnl_std / b.pnl_std if b.pnl_std > 0 else math.inf
            text = f"sd {a.pnl_std:.2f} vs {b.pnl_std:.2f} ({100 * (ratio - 1):+.1f} %)"
            if min(a.n, b.n) >= min_seeds:
                ok = a.pnl_std <= (1 - EVENT_CUT) * b.pnl_std
        else:
            text = "fewer than two runs"
        checks.append(
            TargetCheck(name=names[1], scenario=sc, passed=ok, measured=text, required=required[1])
        )
        p = pair.pnl
        text = _measured(p, money=True)
        if p.ci_low is not None and p.ci_high is not None:
            text += f", 95 % CI [{p.ci_low:+.2f}, {p.ci_high:+.2f}]"
        ok = None
        if p.n >= min_seeds and p.mean_diff is not None:
            ok = p.mean_diff >= 0 or (p.ci_high is not None and p.ci_high >= 0)
        checks.append(
            TargetCheck(name=names[2], scenario=sc, passed=ok, measured=text, required=required[2])
        )
    return checks


def overall(checks: Sequence[TargetCheck]) -> bool | None:
    """False if any check failed, else None if any is not measurable, else True."""
    if any(c.passed is False for c in checks):
        return False
    if any(c.passed is None for c in checks):
        return None
    return True


TARGET_HEADERS = ["target", "scenario", "result", "measured", "required"]


def result_label(passed: bool | None) -> str:
    """``PASS``, ``FAIL`` or ``n/a`` (not measurable)."""
    return "n/a" if passed is None else ("PASS" if passed else "FAIL")


def targets_rows(checks: Sequence[TargetCheck]) -> list[list[str]]:
    """The checks as text cells (``TARGET_HEADERS`` columns), not escaped."""
    return [[c.name, c.scenario, result_label(c.passed), c.measured, c.required] for c in checks]


def targets_table(checks: Sequence[TargetCheck]) -> Table:
    """The checks as a rich table (PASS green, FAIL red, n/a dim)."""
    table = Table(title="targets (Δ paired by seed)")
    for h in TARGET_HEADERS:
        table.add_column(h, overflow="fold")
    styles = {"PASS": "bold green", "FAIL": "bold red", "n/a": "dim"}
    for row in targets_rows(checks):
        # Text, not markup: names come from strategy and scenario strings
        cells = [Text(c) for c in row]
        cells[2].stylize(styles[row[2]])
        table.add_row(*cells)
    return table


def targets_markdown(checks: Sequence[TargetCheck]) -> str:
    """The checks as a GitHub markdown table."""
    return markdown_table(TARGET_HEADERS, targets_rows(checks))
