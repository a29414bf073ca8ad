"""The summary of an evaluation suite: per-cell statistics and paired comparisons by seed.

A *cell* is one (scenario, strategy): its successful runs, one per seed. A *pair* compares a
strategy with a baseline strategy on the same scenario **and the same seed** (the same
simulated world): the statistic is the per-seed difference ``strategy − baseline``. Seeds that
ran on one side only (missing, or errored) are dropped from the pair and counted. A pooled
pair (``scenario=None``) pools the per-(scenario, seed) differences of every scenario.

Units: money in **dollars** per run (``marked_pnl`` and its parts), Sharpe unitless (per-minute,
not annualised, see :class:`cfa.eval.models.RunMetrics`), mark-outs in dollars per contract,
``time_quoted_both`` a share in [0, 1].

Everything here is deterministic: :func:`summarize` sorts its input, and the bootstrap uses
``numpy.random.default_rng(seed)`` with a fixed seed, so the same results (in any order) give
the same summary, bit for bit.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict
from rich.table import Table
from rich.text import Text

from cfa.eval.models import RunMetrics, RunResult

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "BOOTSTRAP_SEED",
    "CellStats",
    "EvalSummary",
    "PairStats",
    "PairedStat",
    "dedupe_results",
    "paired_stat",
    "summarize",
    "summary_markdown",
    "summary_rows",
    "summary_table",
]

BOOTSTRAP_RESAMPLES = 10_000
"""Bootstrap resamples per interval."""
BOOTSTRAP_SEED = 20_240_611
"""Seed of ``numpy.random.default_rng`` for every bootstrap (the summary is reproducible)."""
MARKOUT_HORIZON_S = 60.0
"""The mark-out horizon reported per cell, seconds."""

ALL_LABEL = "all"
"""How the pooled (all scenarios) rows are labelled in tables."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CellStats(_Frozen):
    """Statistics of one (scenario, strategy) over its successful runs.

    ``scenario`` None is the pooled row: every run of the strategy in every scenario.
    ``n`` counts successful runs (metrics present); ``n_errors`` the errored runs, which are
    left out of every statistic. ``pnl_se`` is the sample standard deviation (ddof 1) over
    √n; ``pnl_se`` and ``pnl_std`` are None with fewer than two runs, every mean is None with
    none. ``sharpe_mean`` and ``markout_60s_mean`` are means over the runs where the value is
    not None (``sharpe_n`` and ``markout_60s_n`` of them). Money in dollars per run.
    """

    scenario: str | None
    strategy: str
    n: int
    n_errors: int
    pnl_mean: float | None
    pnl_se: float | None
    pnl_std: float | None
    sharpe_mean: float | None
    sharpe_n: int
    fills_mean: float | None
    max_drawdown_mean: float | None
    max_abs_inventory_mean: float | None
    markout_60s_mean: float | None
    markout_60s_n: int
    time_quoted_both_mean: float | None
    fees_mean: float | None
    spread_pnl_mean: float | None
    inventory_pnl_mean: float | None
    worst_loss_mean: float | None = None
    """Mean over the runs of each run's peak worst-case inventory loss (dollars; an event
    scenario: the event's, see :attr:`cfa.eval.models.RunMetrics.worst_case_loss_peak`)."""


class PairedStat(_Frozen):
    """Paired statistics of one metric: ``d_i = strategy_i − baseline_i`` over ``n`` pairs.

    ``mean_strategy`` and ``mean_baseline`` are the two sides' means over the same pairs;
    ``mean_diff`` = mean(d); ``sd_diff`` the sample std of d (ddof 1); ``se`` = sd/√n;
    ``t`` = mean/SE (None when n < 2 or SE is 0; differences equal up to a relative 1e-12
    count as equal, so SE is exactly 0 and the interval is ``[mean, mean]``).
    ``wins``/``losses``/``ties``: pairs with d > 0, < 0, = 0 (exact).
    ``ci_low``/``ci_high``: percentile bootstrap interval of the mean difference
    (``confidence`` of :class:`EvalSummary`; None when n < 2).
    ``rel_diff`` = mean_diff / |mean_baseline| (None when the baseline mean is 0), with a
    percentile bootstrap interval of the ratio of resampled means (resamples whose baseline
    mean is 0 are skipped; None when n < 2 or ``rel_diff`` is None). Everything is None
    (counts 0) when n is 0.
    """

    n: int
    mean_strategy: float | None = None
    mean_baseline: float | None = None
    mean_diff: float | None = None
    sd_diff: float | None = None
    se: float | None = None
    t: float | None = None
    wins: int = 0
    losses: int = 0
    ties: int = 0
    ci_low: float | None = None
    ci_high: float | None = None
    rel_diff: float | None = None
    rel_ci_low: float | None = None
    rel_ci_high: float | None = None

    def reversed(self) -> PairedStat:
        """The same comparison the other way round (baseline − strategy).

        Exact for everything but the relative interval, which is not derivable and is None
        (the reversed ``rel_diff`` is −mean_diff / |mean_strategy|). The percentile interval
        of the mean difference flips exactly, since the resampled means negate.
        """
        if self.n == 0 or self.mean_diff is None:
            return PairedStat(n=self.n)
        ms = self.mean_strategy
        rel = None if ms is None or ms == 0 else -self.mean_diff / abs(ms)
        return PairedStat(
            n=self.n,
            mean_strategy=self.mean_baseline,
            mean_baseline=self.mean_strategy,
            mean_diff=-self.mean_diff,
            sd_diff=self.sd_diff,
            se=self.se,
            t=None if self.t is None else -self.t,
            wins=self.losses,
            losses=self.wins,
            ties=self.ties,
            ci_low=None if self.ci_high is None else -self.ci_high,
            ci_high=None if self.ci_low is None else -self.ci_low,
            rel_diff=rel,
        )


class PairStats(_Frozen):
    """``strategy`` against ``baseline`` on ``scenario`` (None: pooled over every scenario).

    ``pnl`` pairs ``marked_pnl`` by seed (by (scenario, seed) when pooled); ``sharpe`` pairs
    ``sharpe`` over the pairs where both are not None. ``dropped`` counts the successful runs
    (of either side) whose seed has no successful partner run on the other side.
    """

    scenario: str | None
    strategy: str
    baseline: str
    dropped: int
    pnl: PairedStat
    sharpe: PairedStat
    worst_loss: PairedStat = PairedStat(n=0)
    """``worst_case_loss_peak`` paired over the pairs where both runs have it."""


class EvalSummary(_Frozen):
    """The summary of one suite, as :func:`summarize` builds it.

    ``scenarios`` sorted; ``strategies`` with the baseline first (when present), then sorted.
    ``cells`` holds one row per (scenario, strategy) present in the results, then one pooled
    row (``scenario`` None) per strategy. ``pairs`` holds, per scenario and then pooled, each
    other strategy against ``baseline``, followed by any extra comparisons asked for.
    ``n_results`` counts distinct jobs, ``n_errors`` the errored ones.
    """

    baseline: str
    scenarios: list[str]
    strategies: list[str]
    cells: list[CellStats]
    pairs: list[PairStats]
    n_results: int
    n_errors: int
    bootstrap_resamples: int
    bootstrap_seed: int
    confidence: float

    def cell(self, scenario: str | None, strategy: str) -> CellStats | None:
        """The cell of ``strategy`` on ``scenario`` (None: pooled), or None."""
        for c in self.cells:
            if c.scenario == scenario and c.strategy == strategy:
                return c
        return None

    def pair(
        self, scenario: str | None, strategy: str, baseline: str | None = None
    ) -> PairStats | None:
        """``strategy`` vs ``baseline`` (default: the suite's) on ``scenario``, or None.

        Looks for that comparison, then for the reverse one (``baseline`` vs ``strategy``) and
        turns it round (:meth:`PairedStat.reversed`); None if neither was computed.
        """
        base = self.baseline if baseline is None else baseline
        for p in self.pairs:
            if p.scenario == scenario and p.strategy == strategy and p.baseline == base:
                return p
        for p in self.pairs:
            if p.scenario == scenario and p.strategy == base and p.baseline == strategy:
                return PairStats(
                    scenario=scenario,
                    strategy=strategy,
                    baseline=base,
                    dropped=p.dropped,
                    pnl=p.pnl.reversed(),
                    sharpe=p.sharpe.reversed(),
                    worst_loss=p.worst_loss.reversed(),
                )
        return None


# -- statistics --------------------------------------------------------------------------------


def _mean(values: Iterable[float | int | None]) -> tuple[float | None, int]:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None, 0
    return math.fsum(vals) / len(vals), len(vals)


def _bootstrap_means(columns: Sequence[np.ndarray], resamples: int, seed: int) -> list[np.ndarray]:
    """Means of each column over the same ``resamples`` resamples (with replacement) of rows.

    Drawn in chunks of at most about a million indices; the chunking depends only on the
    number of rows, so the draws are reproducible.
    """
    n = len(columns[0])
    rng = np.random.default_rng(seed)
    out = [np.empty(resamples) for _ in columns]
    chunk = max(1, 1_000_000 // n)
    for start in range(0, resamples, chunk):
        m = min(chunk, resamples - start)
        idx = rng.integers(0, n, size=(m, n))
        for col, dest in zip(columns, out, strict=True):
            dest[start : start + m] = col[idx].mean(axis=1)
    return out


def paired_stat(
    strategy: Sequence[float],
    baseline: Sequence[float],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = 0.95,
) -> PairedStat:
    """Paired statistics of ``strategy[i] − baseline[i]`` (see :class:`PairedStat`).

    The two sequences are aligned pairs, in a fixed order (the bootstrap depends on it).
    """
    if len(strategy) != len(baseline):
        raise ValueError("paired_stat needs two sequences of the same length")
    n = len(strategy)
    if n == 0:
        return PairedStat(n=0)
    a = np.asarray(strategy, dtype=float)
    b = np.asarray(baseline, dtype=float)
    d = a - b
    mean_a = math.fsum(a.tolist()) / n
    mean_b = math.fsum(b.tolist()) / n
    mean_d = math.fsum(d.tolist()) / n
    wins = int(np.count_nonzero(d > 0))
    losses = int(np.count_nonzero(d < 0))
    ties = n - wins - losses
    rel = None if mean_b == 0 else mean_d / abs(mean_b)
    if n < 2:
        return PairedStat(
            n=n,
            mean_strategy=mean_a,
            mean_baseline=mean_b,
            mean_diff=mean_d,
            wins=wins,
            losses=losses,
            ties=ties,
            rel_diff=rel,
        )
    sd = float(np.std(d, ddof=1))
    constant = sd <= 1e-12 * float(np.max(np.abs(d)))  # equal differences, up to rounding
    if constant:
        sd = 0.0
    se = sd / math.sqrt(n)
    t = mean_d / se if se > 0 else None
    boot_d, boot_b = _bootstrap_means([d, b], resamples, seed)
    tail = (1.0 - confidence) / 2.0 * 100.0
    q = [tail, 100.0 - tail]
    lo, hi = (float(x) for x in np.percentile(boot_d, q))
    if constant:  # no rounding noise in the interval either
        lo = hi = mean_d
    rel_lo = rel_hi = None
    if rel is not None:
        nz = boot_b != 0
        if np.any(nz):
            ratio = boot_d[nz] / np.abs(boot_b[nz])
            rel_lo, rel_hi = (float(x) for x in np.percentile(ratio, q))
    return PairedStat(
        n=n,
        mean_strategy=mean_a,
        mean_baseline=mean_b,
        mean_diff=mean_d,
        sd_diff=sd,
        se=se,
        t=t,
        wins=wins,
        losses=losses,
        ties=ties,
        ci_low=lo,
        ci_high=hi,
        rel_diff=rel,
        rel_ci_low=rel_lo,
        rel_ci_high=rel_hi,
    )


def _cell(
    scenario: str | None, strategy: str, ok: Sequence[RunMetrics], n_errors: int
) -> CellStats:
    pnl = [m.marked_pnl for m in ok]
    n = len(pnl)
    pnl_mean, _ = _mean(pnl)
    std = float(np.std(pnl, ddof=1)) if n >= 2 else None
    sharpe, sharpe_n = _mean(m.sharpe for m in ok)
    mo, mo_n = _mean(m.markout(MARKOUT_HORIZON_S) for m in ok)

    def mean_of(get: Callable[[RunMetrics], float | int]) -> float | None:
        return _mean(get(m) for m in ok)[0]

    return CellStats(
        scenario=scenario,
        strategy=strategy,
        n=n,
        n_errors=n_errors,
        pnl_mean=pnl_mean,
        pnl_se=None if std is None else std / math.sqrt(n),
        pnl_std=std,
        sharpe_mean=sharpe,
        sharpe_n=sharpe_n,
        fills_mean=mean_of(lambda m: m.fills),
        max_drawdown_mean=mean_of(lambda m: m.max_drawdown),
        max_abs_inventory_mean=mean_of(lambda m: m.max_abs_inventory),
        markout_60s_mean=mo,
        markout_60s_n=mo_n,
        time_quoted_both_mean=mean_of(lambda m: m.time_quoted_both),
        fees_mean=mean_of(lambda m: m.fees),
        spread_pnl_mean=mean_of(lambda m: m.spread_pnl),
        inventory_pnl_mean=mean_of(lambda m: m.inventory_pnl),
        worst_loss_mean=_mean(m.worst_case_loss_peak for m in ok)[0],
    )


_Key = tuple[str, int]  # (scenario, seed)


def _pair(
    scenario: str | None,
    strategy: str,
    baseline: str,
    a: dict[_Key, RunMetrics],
    b: dict[_Key, RunMetrics],
    resamples: int,
    seed: int,
    confidence: float,
) -> PairStats:
    common = sorted(a.keys() & b.keys())
    dropped = len(a.keys() ^ b.keys())
    pnl = paired_stat(
        [a[k].marked_pnl for k in common],
        [b[k].marked_pnl for k in common],
        resamples=resamples,
        seed=seed,
        confidence=confidence,
    )

    def where_both(get: Callable[[RunMetrics], float | None]) -> PairedStat:
        """``get`` paired over the common seeds where both runs have it."""
        xs: list[float] = []
        ys: list[float] = []
        for k in common:
            x, y = get(a[k]), get(b[k])
            if x is not None and y is not None:
                xs.append(x)
                ys.append(y)
        return paired_stat(xs, ys, resamples=resamples, seed=seed, confidence=confidence)

    sharpe = where_both(lambda m: m.sharpe)
    worst = where_both(lambda m: m.worst_case_loss_peak)
    return PairStats(
        scenario=scenario,
        strategy=strategy,
        baseline=baseline,
        dropped=dropped,
        pnl=pnl,
        sharpe=sharpe,
        worst_loss=worst,
    )


def dedupe_results(results: Sequence[RunResult]) -> dict[str, RunResult]:
    """One result per job key: a successful run wins over an errored one (a retried job);
    two different successful results for one key are an error; errored duplicates keep the
    error text that sorts first (deterministic)."""
    by_key: dict[str, RunResult] = {}
    for r in results:
        k = r.job.key
        old = by_key.get(k)
        if old is None or (old.metrics is None and r.metrics is not None):
            by_key[k] = r
        elif old.metrics is not None and r.metrics is not None:
            if old.metrics != r.metrics:
                raise ValueError(f"two different successful results for job {k}")
        elif old.metrics is None and r.metrics is None and (r.error or "") < (old.error or ""):
            by_key[k] = r
    return by_key


def summarize(
    results: Sequence[RunResult],
    baseline: str,
    *,
    extra_pairs: Sequence[tuple[str, str]] = (),
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = 0.95,
) -> EvalSummary:
    """The summary of ``results`` with ``baseline`` as the reference strategy.

    Results are keyed by ``job.key`` (scenario/strategy/seed); duplicates are resolved as in
    a retried suite (a success replaces an error; two different successes raise ValueError).
    ``extra_pairs`` adds (strategy, baseline) comparisons besides those against ``baseline``
    (e.g. ``("static-as", "naive")`` when the baseline is another strategy); they are kept in
    ``pairs`` but the tables show only the comparisons against ``baseline``. A baseline absent
    from the results gives pairs with n = 0. Deterministic for the same input in any order.
    """
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    if resamples < 1:
        raise ValueError("resamples must be at least 1")
    by_key = dedupe_results(results)
    ok: dict[tuple[str, str], dict[_Key, RunMetrics]] = defaultdict(dict)
    errors: dict[tuple[str, str], int] = defaultdict(int)
    for r in by_key.values():
        cell_key = (r.job.scenario, r.job.strategy)
        if r.metrics is None:
            errors[cell_key] += 1
            ok.setdefault(cell_key, {})
        else:
            ok[cell_key][(r.job.scenario, r.job.seed)] = r.metrics
    scenarios = sorted({s for s, _ in ok})
    names = {st for _, st in ok}
    strategies = ([baseline] if baseline in names else []) + sorted(names - {baseline})

    cells: list[CellStats] = []
    for sc in scenarios:
        for st in strategies:
            if (sc, st) in ok:
                runs = [ok[sc, st][k] for k in sorted(ok[sc, st])]
                cells.append(_cell(sc, st, runs, errors[sc, st]))
    pooled: dict[str, dict[_Key, RunMetrics]] = {}
    for st in strategies:
        merged: dict[_Key, RunMetrics] = {}
        for sc in scenarios:
            merged.update(ok.get((sc, st), {}))
        pooled[st] = merged
        n_err = sum(errors[sc, st] for sc in scenarios)
        cells.append(_cell(None, st, [merged[k] for k in sorted(merged)], n_err))

    comparisons = [(st, baseline) for st in strategies if st != baseline]
    comparisons += [c for c in extra_pairs if c not in comparisons and c[0] != c[1]]
    pairs: list[PairStats] = []
    for sc_opt in [*scenarios, None]:
        for st, base in comparisons:
            if sc_opt is None:
                a, b = pooled.get(st, {}), pooled.get(base, {})
                if st not in names:
                    continue
            else:
                if (sc_opt, st) not in ok:
                    continue
                a, b = ok[sc_opt, st], ok.get((sc_opt, base), {})
            pairs.append(_pair(sc_opt, st, base, a, b, resamples, seed, confidence))
    return EvalSummary(
        baseline=baseline,
        scenarios=scenarios,
        strategies=strategies,
        cells=cells,
        pairs=pairs,
        n_results=len(by_key),
        n_errors=sum(1 for r in by_key.values() if r.metrics is None),
        bootstrap_resamples=resamples,
        bootstrap_seed=seed,
        confidence=confidence,
    )


# -- tables ------------------------------------------------------------------------------------

SUMMARY_HEADERS = [
    "scenario",
    "strategy",
    "n",
    "PnL $ (mean ± SE)",
    "PnL sd $",
    "worst loss $",
    "Sharpe",
    "fills",
    "MO 60s $/ct",
    "Δ PnL $ (± SE)",
    "t",
    "wins/n",
    "95% CI Δ",
    "Δ %",
]


def _f(v: float | None, fmt: str, none: str = "—") -> str:
    return none if v is None or not math.isfinite(v) else format(v, fmt)


def _money_pm(mean: float | None, se: float | None) -> str:
    if mean is None:
        return "—"
    return f"{mean:+.2f}" + ("" if se is None else f" ± {se:.2f}")


def summary_rows(summary: EvalSummary) -> list[list[str]]:
    """The summary table as text cells, one row per cell (``SUMMARY_HEADERS`` columns).

    Rows go scenario by scenario, strategies in summary order; the pooled rows (scenario
    ``all``) come last when there is more than one scenario. Baseline rows and rows without
    a comparison show ``—`` in the vs-baseline columns. Text is not escaped here.
    """
    scopes: list[str | None] = list(summary.scenarios)
    if len(summary.scenarios) > 1:
        scopes.append(None)
    rows: list[list[str]] = []
    for sc in scopes:
        for st in summary.strategies:
            c = summary.cell(sc, st)
            if c is None:
                continue
            n = str(c.n) + (f" ({c.n_errors} err)" if c.n_errors else "")
            row = [
                ALL_LABEL if sc is None else sc,
                st,
                n,
                _money_pm(c.pnl_mean, c.pnl_se),
                _f(c.pnl_std, ".2f"),
                _f(c.worst_loss_mean, ".2f"),
                _f(c.sharpe_mean, "+.3f"),
                _f(c.fills_mean, ".1f"),
                _f(c.markout_60s_mean, "+.4f"),
            ]
            p = None if st == summary.baseline else summary.pair(sc, st)
            if p is None or p.pnl.n == 0:
                label = "baseline" if st == summary.baseline else "—"
                row += [label, "—", "—", "—", "—"]
            else:
                d = p.pnl
                ci = (
                    "—"
                    if d.ci_low is None or d.ci_high is None
                    else f"[{d.ci_low:+.2f}, {d.ci_high:+.2f}]"
                )
                row += [
                    _money_pm(d.mean_diff, d.se),
                    _f(d.t, "+.2f"),
                    f"{d.wins}/{d.n}",
                    ci,
                    _f(None if d.rel_diff is None else 100 * d.rel_diff, "+.1f"),
                ]
            rows.append(row)
    return rows


def summary_table(summary: EvalSummary) -> Table:
    """One compact rich table of the summary (see :func:`summary_rows`)."""
    table = Table(
        title=f"eval summary (baseline {summary.baseline}; Δ = strategy − baseline, paired by seed)"
    )
    for i, h in enumerate(SUMMARY_HEADERS):
        table.add_column(h, justify="left" if i < 2 else "right", no_wrap=i >= 2)
    last = None
    for row in summary_rows(summary):
        if last is not None and row[0] != last:
            table.add_section()
        last = row[0]
        table.add_row(*(Text(c) for c in row))  # Text: no rich markup from names
    return table


_MD_SPECIAL = set("\\`*_[]<>|#~")


def md_escape(text: str) -> str:
    """``text`` safe inside a GitHub markdown table cell (no markup, no HTML, one line)."""
    out = []
    for ch in " ".join(text.splitlines()):
        out.append("\\" + ch if ch in _MD_SPECIAL else ch)
    return "".join(out)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table; every cell escaped with :func:`md_escape`."""
    lines = [
        "| " + " | ".join(md_escape(h) for h in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def summary_markdown(summary: EvalSummary) -> str:
    """The summary table as GitHub markdown (the same rows as :func:`summary_table`)."""
    return markdown_table(SUMMARY_HEADERS, summary_rows(summary))
