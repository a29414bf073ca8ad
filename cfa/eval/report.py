"""The evaluation report: one self-contained HTML file (inline CSS and SVG, nothing fetched).

:func:`render_report` lays out, for a suite: the summary table (:mod:`cfa.eval.stats`), the
target checks (:mod:`cfa.eval.targets`), then per scenario three plots, each one ``<svg>``:

1. **marked PnL per run** by strategy: every seed as a dot, a box from the first to the third
   quartile with the median, whiskers to the extremes, the mean as a diamond;
2. **paired differences vs the baseline** (strategy − baseline, same seed) per strategy: every
   seed's difference as a faint dot, the mean as a diamond, the bootstrap interval of the mean
   as whiskers, zero dashed;
3. **equity curves**: marked PnL at the end of each simulated minute (``RunMetrics.equity``,
   from 0 at minute 0), every seed faint, the mean over seeds per strategy bold (at each minute,
   the mean of the runs that reached it).

Errored runs are listed with their error at the end. All text — titles, scenario and strategy
names, errors — is HTML-escaped; the document has no scripts and no external references.
Money in dollars per run.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

import numpy as np

from cfa.eval.models import RunMetrics, RunResult
from cfa.eval.stats import (
    ALL_LABEL,
    SUMMARY_HEADERS,
    EvalSummary,
    dedupe_results,
    summary_rows,
)
from cfa.eval.targets import TARGET_HEADERS, TargetCheck, check_targets, result_label

__all__ = ["render_report"]

PALETTE = (
    "#1f6feb",
    "#d1242f",
    "#1a7f37",
    "#8250df",
    "#e16f24",
    "#0a7ea4",
    "#bf8700",
    "#6e7781",
)

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1f2328;
max-width:1180px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:18px;margin:28px 0 6px;border-bottom:1px solid #d0d7de}
h3{font-size:15px;margin:16px 0 4px}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0}
th,td{border:1px solid #d0d7de;padding:3px 6px;vertical-align:top;text-align:left}
th{background:#f6f8fa}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.pooled td{background:#f6f8fa;font-weight:600}
.muted{color:#57606a}.ok{color:#1a7f37;font-weight:600}.bad{color:#d1242f;font-weight:600}
.na{color:#6e7781}
svg.plot{display:block;margin:4px 0 12px;max-width:980px}
svg .bg{fill:#fbfcfd;stroke:#d0d7de}svg .grid{stroke:#e6e9ec;stroke-width:1;fill:none}
svg .zero{stroke:#57606a;stroke-width:1;stroke-dasharray:4,3;fill:none}
svg text{font:10px system-ui,sans-serif;fill:#57606a}svg .yl{text-anchor:end}
svg .xl{text-anchor:middle}svg .ct{font-size:12px;font-weight:600;fill:#1f2328}
svg .cat{text-anchor:end;font-size:11px;fill:#1f2328}svg .lg{text-anchor:end;font-size:11px}
svg .empty{font-size:12px;text-anchor:middle}
"""

_W = 960
_ML = 170  # left margin: category labels
_MR = 16
_MT = 26
_MB = 30


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _short(name: str, limit: int = 26) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """About ``n`` round ticks (steps 1, 2 or 5 × 10^k) covering ``[lo, hi]``."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step)
    return [0.0 if k == 0 else k * step for k in range(first, math.floor(hi / step + 1e-9) + 1)]


def _tick_label(v: float, step: float) -> str:
    """``v`` with as many decimals as the tick ``step`` needs."""
    digits = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    return f"{v:,.{digits}f}"


def _range(values: Sequence[float], include_zero: bool = True) -> tuple[float, float]:
    vals = [v for v in values if math.isfinite(v)]
    if include_zero:
        vals.append(0.0)
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    pad = (abs(hi) * 0.05 or 1.0) if hi - lo < 1e-12 else (hi - lo) * 0.06
    return lo - pad, hi + pad


class _Frame:
    """A plot area with a numeric x axis and either a numeric y axis or category rows."""

    def __init__(
        self,
        plot_id: str,
        title: str,
        x: tuple[float, float],
        height: int,
        x_label: str,
        *,
        legend_row: bool = False,
    ) -> None:
        self.plot_id, self.title, self.height, self.x_label = plot_id, title, height, x_label
        self.x_lo, self.x_hi = x
        self.x0, self.x1 = _ML, _W - _MR
        self.y0, self.y1 = _MT + (16 if legend_row else 0), height - _MB
        self.parts: list[str] = []

    def sx(self, v: float) -> float:
        v = min(max(v, self.x_lo), self.x_hi)
        return self.x0 + (v - self.x_lo) / (self.x_hi - self.x_lo) * (self.x1 - self.x0)

    def x_axis(self) -> None:
        ticks = _ticks(self.x_lo, self.x_hi, 8)
        step = ticks[1] - ticks[0] if len(ticks) > 1 else max(abs(self.x_hi), 1e-9)
        grid = []
        for v in ticks:
            if self.x_lo <= v <= self.x_hi:
                x = self.sx(v)
                grid.append(f"M{x:.1f},{self.y0}V{self.y1}")
                self.parts.append(
                    f'<text x="{x:.1f}" y="{self.y1 + 13}" class="xl">{_tick_label(v, step)}</text>'
                )
        if grid:
            self.parts.append(f'<path class="grid" d="{"".join(grid)}"/>')
        self.parts.append(
            f'<text x="{(self.x0 + self.x1) / 2:.1f}" y="{self.height - 4}" class="xl">'
            f"{_e(self.x_label)}</text>"
        )

    def zero_x(self) -> None:
        if self.x_lo < 0 < self.x_hi:
            x = self.sx(0.0)
            self.parts.append(f'<path class="zero" d="M{x:.1f},{self.y0}V{self.y1}"/>')

    def empty(self, text: str) -> None:
        self.parts.append(
            f'<text x="{(self.x0 + self.x1) / 2:.1f}" y="{(self.y0 + self.y1) / 2:.1f}" '
            f'class="empty">{_e(text)}</text>'
        )

    def render(self, legend: Sequence[tuple[str, str]] = ()) -> str:
        head = [
            f'<svg class="plot" data-plot="{_e(self.plot_id)}" viewBox="0 0 {_W} {self.height}" '
            'width="100%" preserveAspectRatio="xMidYMid meet" role="img">',
            f"<title>{_e(self.title)}</title>",
            f'<rect x="{self.x0}" y="{self.y0}" width="{self.x1 - self.x0}" '
            f'height="{self.y1 - self.y0}" class="bg"/>',
            f'<text x="{self.x0}" y="{_MT - 9}" class="ct">{_e(self.title)}</text>',
        ]
        tail = []
        if legend:
            items = "  ".join(
                f'<tspan fill="{c}">■</tspan> {_e(_short(name, 20))}' for name, c in legend
            )
            tail.append(f'<text x="{self.x1}" y="{self.y0 - 9}" class="lg">{items}</text>')
        return "".join([*head, *self.parts, *tail, "</svg>"])


def _jitter(i: int) -> float:
    """A deterministic spread in [-0.5, 0.5) (golden-ratio sequence)."""
    return (i * 0.6180339887498949) % 1.0 - 0.5


def _diamond(x: float, y: float, r: float, color: str, title: str) -> str:
    return (
        f'<path fill="{color}" stroke="#1f2328" stroke-width="0.8" '
        f'd="M{x:.1f},{y - r:.1f}L{x + r:.1f},{y:.1f}L{x:.1f},{y + r:.1f}L{x - r:.1f},{y:.1f}Z">'
        f"<title>{_e(title)}</title></path>"
    )


def _dot(x: float, y: float, color: str, opacity: float, title: str) -> str:
    return (
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.6" fill="{color}" fill-opacity="{opacity}">'
        f"<title>{_e(title)}</title></circle>"
    )


def _rows_layout(n: int) -> tuple[int, float]:
    row_h = 30.0
    return int(_MT + _MB + max(n, 1) * row_h), row_h


def _category_label(frame: _Frame, y: float, name: str) -> None:
    frame.parts.append(
        f'<text x="{frame.x0 - 8}" y="{y + 4:.1f}" class="cat">{_e(_short(name))}'
        f"<title>{_e(name)}</title></text>"
    )


def _distribution_svg(
    scenario: str,
    strategies: Sequence[str],
    runs: dict[str, list[tuple[int, RunMetrics]]],
    colors: dict[str, str],
) -> str:
    shown = [st for st in strategies if runs.get(st)]
    values = [m.marked_pnl for st in shown for _, m in runs[st]]
    height, row_h = _rows_layout(len(shown))
    f = _Frame(
        f"pnl-{scenario}",
        f"{scenario}: marked PnL per run",
        _range(values),
        height,
        "marked PnL per run ($)",
    )
    f.x_axis()
    f.zero_x()
    if not shown:
        f.empty("no successful runs")
        return f.render()
    for row, st in enumerate(shown):
        yc = f.y0 + (row + 0.5) * row_h
        color = colors[st]
        vals = np.array([m.marked_pnl for _, m in runs[st]])
        _category_label(f, yc, st)
        q1, med, q3 = (float(v) for v in np.percentile(vals, [25, 50, 75]))
        lo, hi = float(vals.min()), float(vals.max())
        half = row_h * 0.32
        f.parts.append(
            f'<path stroke="{color}" stroke-width="1" fill="none" '
            f'd="M{f.sx(lo):.1f},{yc:.1f}H{f.sx(q1):.1f}M{f.sx(q3):.1f},{yc:.1f}H{f.sx(hi):.1f}'
            f"M{f.sx(lo):.1f},{yc - half / 2:.1f}V{yc + half / 2:.1f}"
            f'M{f.sx(hi):.1f},{yc - half / 2:.1f}V{yc + half / 2:.1f}"/>'
        )
        f.parts.append(
            f'<rect x="{f.sx(q1):.1f}" y="{yc - half:.1f}" '
            f'width="{max(f.sx(q3) - f.sx(q1), 0.5):.1f}" height="{2 * half:.1f}" '
            f'fill="{color}" fill-opacity="0.12" stroke="{color}" stroke-width="1">'
            f"<title>{_e(f'{st}: quartiles {q1:+.2f} / {med:+.2f} / {q3:+.2f}')}</title></rect>"
        )
        f.parts.append(
            f'<path stroke="{color}" stroke-width="2" '
            f'd="M{f.sx(med):.1f},{yc - half:.1f}V{yc + half:.1f}"/>'
        )
        for i, (seed, m) in enumerate(runs[st]):
            f.parts.append(
                _dot(
                    f.sx(m.marked_pnl),
                    yc + _jitter(i) * half * 1.6,
                    color,
                    0.55,
                    f"{st} seed {seed}: {m.marked_pnl:+.4f}",
                )
            )
        mean = float(np.mean(vals))
        f.parts.append(
            _diamond(f.sx(mean), yc, 5.0, color, f"{st} mean {mean:+.4f} (n={len(vals)})")
        )
    return f.render()


def _pairs_svg(
    scenario: str,
    summary: EvalSummary,
    runs: dict[str, list[tuple[int, RunMetrics]]],
    colors: dict[str, str],
) -> str:
    base = summary.baseline
    base_runs = {seed: m for seed, m in runs.get(base, [])}
    rows: list[tuple[str, list[tuple[int, float]], float | None, float | None, float | None]] = []
    for st in summary.strategies:
        if st == base or not runs.get(st):
            continue
        diffs = [
            (seed, m.marked_pnl - base_runs[seed].marked_pnl)
            for seed, m in runs[st]
            if seed in base_runs
        ]
        p = summary.pair(scenario, st)
        mean = None if p is None else p.pnl.mean_diff
        lo = None if p is None else p.pnl.ci_low
        hi = None if p is None else p.pnl.ci_high
        rows.append((st, diffs, mean, lo, hi))
    values = [d for _, ds, *_ in rows for _, d in ds]
    values += [v for *_, m, lo, hi in rows for v in (m, lo, hi) if v is not None]
    height, row_h = _rows_layout(len(rows))
    pct = round(summary.confidence * 100)
    f = _Frame(
        f"pairs-{scenario}",
        f"{scenario}: paired Δ marked PnL vs {base} (mean, {pct}% bootstrap CI)",
        _range(values),
        height,
        f"strategy − {base}, same seed ($ per run)",
    )
    f.x_axis()
    f.zero_x()
    if not rows or not values:
        f.empty(f"no paired runs against {base}")
        return f.render()
    for row, (st, diffs, mean, lo, hi) in enumerate(rows):
        yc = f.y0 + (row + 0.5) * row_h
        color = colors[st]
        _category_label(f, yc, st)
        half = row_h * 0.3
        for i, (seed, d) in enumerate(diffs):
            f.parts.append(
                _dot(f.sx(d), yc + _jitter(i) * half * 1.6, color, 0.3, f"seed {seed}: Δ {d:+.4f}")
            )
        if lo is not None and hi is not None:
            a, b = f.sx(lo), f.sx(hi)
            f.parts.append(
                f'<path stroke="{color}" stroke-width="2" fill="none" '
                f'd="M{a:.1f},{yc:.1f}H{b:.1f}M{a:.1f},{yc - half:.1f}V{yc + half:.1f}'
                f'M{b:.1f},{yc - half:.1f}V{yc + half:.1f}">'
                f"<title>{_e(f'{st}: {pct}% CI [{lo:+.4f}, {hi:+.4f}]')}</title></path>"
            )
        if mean is not None:
            f.parts.append(
                _diamond(f.sx(mean), yc, 5.5, color, f"{st}: mean Δ {mean:+.4f} (n={len(diffs)})")
            )
    return f.render()


def _equity_svg(
    scenario: str,
    strategies: Sequence[str],
    runs: dict[str, list[tuple[int, RunMetrics]]],
    colors: dict[str, str],
) -> str:
    curves = {
        st: [(seed, [0.0, *m.equity]) for seed, m in runs.get(st, []) if m.equity]
        for st in strategies
    }
    curves = {st: c for st, c in curves.items() if c}
    all_vals = [v for c in curves.values() for _, ys in c for v in ys]
    last_minute = max((len(ys) for c in curves.values() for _, ys in c), default=1) - 1
    height = 260
    f = _Frame(
        f"equity-{scenario}",
        f"{scenario}: equity (marked PnL at the end of each minute; mean bold, seeds faint)",
        (0.0, float(max(last_minute, 1))),
        height,
        "simulated minutes",
        legend_row=True,
    )
    y_lo, y_hi = _range(all_vals)
    y_ticks = _ticks(y_lo, y_hi)
    y_step = y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else max(abs(y_hi), 1e-9)

    def sy(v: float) -> float:
        return f.y1 - (v - y_lo) / (y_hi - y_lo) * (f.y1 - f.y0)

    grid = []
    for v in y_ticks:
        if y_lo <= v <= y_hi:
            grid.append(f"M{f.x0},{sy(v):.1f}H{f.x1}")
            label = _tick_label(v, y_step)
            f.parts.append(f'<text x="{f.x0 - 4}" y="{sy(v) + 3:.1f}" class="yl">{label}</text>')
    f.parts.append(f'<path class="grid" d="{"".join(grid)}"/>')
    f.x_axis()
    if y_lo < 0 < y_hi:
        f.parts.append(f'<path class="zero" d="M{f.x0},{sy(0.0):.1f}H{f.x1}"/>')
    if not curves:
        f.empty("no equity curves (no successful runs)")
        return f.render()

    def path(ys: Sequence[float]) -> str:
        return "".join(
            f"{'M' if i == 0 else 'L'}{f.sx(float(i)):.1f},{sy(v):.1f}" for i, v in enumerate(ys)
        )

    legend: list[tuple[str, str]] = []
    for st, cs in curves.items():
        color = colors[st]
        for seed, ys in cs:
            f.parts.append(
                f'<path stroke="{color}" stroke-opacity="0.22" stroke-width="1" fill="none" '
                f'd="{path(ys)}"><title>{_e(f"{st} seed {seed}")}</title></path>'
            )
    for st, cs in curves.items():
        color = colors[st]
        longest = max(len(ys) for _, ys in cs)
        mean = [
            math.fsum(ys[i] for _, ys in cs if len(ys) > i) / sum(1 for _, ys in cs if len(ys) > i)
            for i in range(longest)
        ]
        f.parts.append(
            f'<path stroke="{color}" stroke-width="2.6" fill="none" d="{path(mean)}">'
            f"<title>{_e(f'{st}: mean of {len(cs)} seeds, final {mean[-1]:+.4f}')}</title></path>"
        )
        legend.append((st, color))
    return f.render(legend)


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], cls: str, numeric: set[int]
) -> str:
    out = [f'<table class="{cls}"><thead><tr>']
    out += [f"<th>{_e(h)}</th>" for h in headers]
    out.append("</tr></thead><tbody>")
    for row in rows:
        pooled = bool(row) and row[0] == ALL_LABEL and cls == "summary"
        out.append('<tr class="pooled">' if pooled else "<tr>")
        for i, c in enumerate(row):
            out.append(f'<td class="n">{_e(c)}</td>' if i in numeric else f"<td>{_e(c)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _targets_html(checks: Sequence[TargetCheck]) -> str:
    if not checks:
        return '<p class="muted">no target checks</p>'
    cls = {True: "ok", False: "bad", None: "na"}
    out = ["<table><thead><tr>", *(f"<th>{_e(h)}</th>" for h in TARGET_HEADERS), "</tr></thead>"]
    out.append("<tbody>")
    for c in checks:
        out.append(
            f"<tr><td>{_e(c.name)}</td><td>{_e(c.scenario)}</td>"
            f'<td class="{cls[c.passed]}">{_e(result_label(c.passed))}</td>'
            f"<td>{_e(c.measured)}</td><td>{_e(c.required)}</td></tr>"
        )
    out.append("</tbody></table>")
    return "".join(out)


def render_report(
    summary: EvalSummary,
    results: Sequence[RunResult],
    title: str,
    *,
    checks: Sequence[TargetCheck] | None = None,
) -> str:
    """The report of a suite as one HTML document (a string; see the module doc).

    ``results`` are the runs ``summary`` was built from (duplicates resolved as in
    :func:`~cfa.eval.stats.summarize`); ``checks`` default to
    :func:`~cfa.eval.targets.check_targets` with its default strategy names. One ``<svg>`` per
    plot, three plots per scenario of the summary.
    """
    if checks is None:
        checks = check_targets(summary)
    by_key = dedupe_results(results)
    runs: dict[str, dict[str, list[tuple[int, RunMetrics]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    errors: list[RunResult] = []
    for key in sorted(by_key):
        r = by_key[key]
        if r.metrics is None:
            errors.append(r)
        else:
            runs[r.job.scenario][r.job.strategy].append((r.job.seed, r.metrics))
    for per in runs.values():
        for lst in per.values():
            lst.sort(key=lambda sm: sm[0])
    strategies = list(summary.strategies)
    extra = sorted({st for per in runs.values() for st in per} - set(strategies))
    strategies += extra
    colors = {st: PALETTE[i % len(PALETTE)] for i, st in enumerate(strategies)}
    durations = sorted({r.job.duration_s for r in by_key.values()})
    generated = datetime.now(tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    pct = round(summary.confidence * 100)

    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        '<p class="muted">',
        _e(
            f"{summary.n_results} runs ({summary.n_errors} errored) over "
            f"{len(summary.scenarios)} scenarios × {len(summary.strategies)} strategies; "
            f"baseline {summary.baseline}; Δ = strategy − baseline paired by seed; "
            f"{pct}% percentile bootstrap intervals ({summary.bootstrap_resamples} resamples, "
            f"seed {summary.bootstrap_seed}); simulated duration "
            f"{', '.join(f'{d:g}' for d in durations) or '—'} s; generated {generated}."
        ),
        "</p>",
        "<h2>Summary</h2>",
        _table(
            SUMMARY_HEADERS, summary_rows(summary), "summary", set(range(2, len(SUMMARY_HEADERS)))
        ),
        '<p class="muted">PnL and Δ in dollars per run (mean ± standard error); Sharpe of '
        "per-minute PnL changes, not annualised; MO 60s: volume-weighted 60-second mark-out, "
        "dollars per contract; wins/n: seeds where the strategy beat the baseline.</p>",
        "<h2>Targets</h2>",
        _targets_html(checks),
    ]
    for sc in summary.scenarios:
        per = runs.get(sc, {})
        parts.append(f'<h2 id="{_e("scenario-" + sc)}">Scenario {_e(sc)}</h2>')
        parts.append(_distribution_svg(sc, strategies, per, colors))
        parts.append(_pairs_svg(sc, summary, per, colors))
        parts.append(_equity_svg(sc, strategies, per, colors))
    if errors:
        parts.append(f"<h2>Errored runs ({len(errors)})</h2>")
        parts.append(
            _table(
                ["scenario", "strategy", "seed", "error"],
                [[r.job.scenario, r.job.strategy, str(r.job.seed), r.error or ""] for r in errors],
                "errors",
                {2},
            )
        )
    parts.append("</body></html>\n")
    return "".join(parts)
