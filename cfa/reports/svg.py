"""Time-series charts as inline SVG, generated here (no plotting library, nothing fetched).

A :class:`Chart` has one time axis (epoch seconds, labelled in UTC) and one value axis; add
lines (plain or step), point markers, vertical event markers and bars, then :meth:`Chart.render`
returns one ``<svg>`` element. Every series is drawn as ``<path>`` elements; markers carry a
``<title>`` that browsers show as a tooltip. Long series are reduced with :func:`downsample`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any

__all__ = ["Chart", "downsample"]

Point = tuple[float, float | None]


def downsample(points: Sequence[Point], t0: float, t1: float, buckets: int) -> list[Point]:
    """At most about ``4 * buckets`` points that draw like ``points``.

    Time is cut into ``buckets`` equal buckets; each keeps its first, lowest, highest and last
    point in time order (so spikes survive), and a gap (a None value) inside a bucket is kept
    as one None, which breaks the line. Series shorter than ``4 * buckets`` are returned as is.
    """
    if len(points) <= 4 * buckets or t1 <= t0:
        return list(points)
    out: list[Point] = []
    width = (t1 - t0) / buckets
    cur: list[Point] = []
    cur_b: int | None = None

    def close(items: list[Point]) -> None:
        vals = [p for p in items if p[1] is not None]
        gap = next((p for p in items if p[1] is None), None)
        if not vals:
            if gap is not None:
                out.append(gap)
            return
        lo = min(vals, key=lambda p: p[1])  # type: ignore[arg-type,return-value]
        hi = max(vals, key=lambda p: p[1])  # type: ignore[arg-type,return-value]
        keep = {id(vals[0]): vals[0], id(lo): lo, id(hi): hi, id(vals[-1]): vals[-1]}
        if gap is not None:
            keep[id(gap)] = gap
        out.extend(sorted(keep.values(), key=lambda p: p[0]))

    for p in points:
        b = min(int((p[0] - t0) / width), buckets - 1)
        if b != cur_b and cur:
            close(cur)
            cur = []
        cur_b = b
        cur.append(p)
    if cur:
        close(cur)
    return out


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering ``[lo, hi]``."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    ticks = []
    v = first
    while v <= hi + step * 1e-9:
        ticks.append(0.0 if abs(v) < step * 1e-9 else v)
        v += step
    return ticks


def _time_ticks(t0: float, t1: float, n: int = 6) -> list[float]:
    span = max(t1 - t0, 1e-9)
    step = next(
        (
            s
            for s in (1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)
            if span / s <= n
        ),
        86400 * math.ceil(span / (86400 * n)),
    )
    first = math.ceil(t0 / step) * step
    return [first + i * step for i in range(int((t1 - first) // step) + 1)]


def _fmt_time(t: float, span: float) -> str:
    dt = datetime.fromtimestamp(t, tz=UTC)
    return dt.strftime("%H:%M:%S" if span < 600 else "%H:%M")


def _fmt_val(v: float, step: float) -> str:
    if step >= 1:
        return f"{v:,.0f}"
    digits = min(max(0, -math.floor(math.log10(step)) + 1), 8)
    return f"{v:.{digits}f}".rstrip("0").rstrip(".") if "." in f"{v:.{digits}f}" else f"{v}"


@dataclass(slots=True)
class _Series:
    kind: str  # line | step | markers | vlines | bars
    points: list[Point]
    color: str
    label: str
    width: float = 1.5
    dash: str | None = None
    shape: str = "circle"
    titles: list[str] | None = None
    links: list[str | None] | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (``points`` as ``[t, v]`` pairs, None for a gap)."""
        return {
            "kind": self.kind,
            "color": self.color,
            "label": self.label,
            "width": self.width,
            "dash": self.dash,
            "shape": self.shape,
            "points": [[t, v if v is None or math.isfinite(v) else None] for t, v in self.points],
            "titles": self.titles,
            "links": self.links,
        }


@dataclass(slots=True)
class Chart:
    """One SVG chart over ``[t0, t1]`` (epoch seconds). See the module doc."""

    title: str
    t0: float
    t1: float
    plot_id: str = ""
    width: int = 960
    height: int = 190
    y_unit: str = ""
    series: list[_Series] = field(default_factory=list)
    y_min: float | None = None
    y_max: float | None = None

    _ML = 64
    _MR = 12
    _MT = 24
    _MB = 22

    def line(
        self,
        points: Sequence[Point],
        color: str,
        label: str,
        *,
        step: bool = False,
        width: float = 1.5,
        dash: str | None = None,
    ) -> Chart:
        """A line through ``points`` (None values break it); ``step`` holds each value until
        the next point (and to the end of the chart)."""
        self.series.append(
            _Series("step" if step else "line", list(points), color, label, width, dash)
        )
        return self

    def markers(
        self,
        points: Sequence[Point],
        color: str,
        label: str,
        *,
        shape: str = "circle",
        titles: Sequence[str] | None = None,
        links: Sequence[str | None] | None = None,
    ) -> Chart:
        """Point markers (``circle``, ``up``, ``down`` triangles, ``diamond``) with tooltips and,
        where ``links`` gives one, a link (``href``) each."""
        self.series.append(
            _Series(
                "markers",
                list(points),
                color,
                label,
                shape=shape,
                titles=list(titles) if titles is not None else None,
                links=list(links) if links is not None else None,
            )
        )
        return self

    def vlines(
        self,
        times: Sequence[float],
        color: str,
        label: str,
        titles: Sequence[str] | None = None,
        links: Sequence[str | None] | None = None,
    ) -> Chart:
        """Vertical lines across the plot at ``times`` (events such as decisions), each with a
        tooltip and, where ``links`` gives one, a link (a decision's page)."""
        self.series.append(
            _Series(
                "vlines",
                [(t, None) for t in times],
                color,
                label,
                width=1.0,
                dash="3,2",
                titles=list(titles) if titles is not None else None,
                links=list(links) if links is not None else None,
            )
        )
        return self

    def bars(self, points: Sequence[Point], color: str, label: str) -> Chart:
        """Thin bars from zero to each value."""
        self.series.append(_Series("bars", list(points), color, label, width=2.0))
        return self

    # -- rendering -----------------------------------------------------------------------------

    def as_dict(self) -> dict[str, Any]:
        """The chart as data (what ``cfa console`` draws interactively, ``static/plots.js``):
        ``id``, ``title``, ``t0``/``t1`` (epoch s), ``y_min``/``y_max`` and every series."""
        return {
            "id": self.plot_id,
            "title": self.title,
            "t0": self.t0,
            "t1": self.t1,
            "y_min": self.y_min,
            "y_max": self.y_max,
            "series": [s.as_dict() for s in self.series],
        }

    def _y_range(self) -> tuple[float, float]:
        vals = [
            v
            for s in self.series
            if s.kind != "vlines"
            for _, v in s.points
            if v is not None and math.isfinite(v)
        ]
        if any(s.kind == "bars" for s in self.series):
            vals.append(0.0)
        lo = self.y_min if self.y_min is not None else (min(vals) if vals else 0.0)
        hi = self.y_max if self.y_max is not None else (max(vals) if vals else 1.0)
        if hi - lo < 1e-12:
            pad = abs(hi) * 0.05 or 1.0
            lo, hi = lo - pad, hi + pad
        else:
            pad = (hi - lo) * 0.06
            lo, hi = lo - pad, hi + pad
        return lo, hi

    def render(self) -> str:
        """The chart as one ``<svg>`` element (a string)."""
        w, h = self.width, self.height
        x0, x1 = self._ML, w - self._MR
        y0, y1 = self._MT, h - self._MB
        t0, t1 = self.t0, max(self.t1, self.t0 + 1e-6)
        lo, hi = self._y_range()

        def sx(t: float) -> float:
            return x0 + (min(max(t, t0), t1) - t0) / (t1 - t0) * (x1 - x0)

        def sy(v: float) -> float:
            return y1 - (v - lo) / (hi - lo) * (y1 - y0)

        parts: list[str] = [
            f'<svg class="chart" data-plot="{escape(self.plot_id)}" viewBox="0 0 {w} {h}" '
            'width="100%" preserveAspectRatio="xMidYMid meet" role="img">',
            f"<title>{escape(self.title)}</title>",
            f'<rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" class="bg"/>',
        ]
        # grid and axes
        yt = _nice_ticks(lo, hi)
        ystep = yt[1] - yt[0] if len(yt) > 1 else max(abs(hi), 1e-9)
        grid = []
        for v in yt:
            if lo <= v <= hi:
                y = sy(v)
                grid.append(f"M{x0},{y:.1f}H{x1}")
                parts.append(
                    f'<text x="{x0 - 4}" y="{y + 3:.1f}" class="yl">{_fmt_val(v, ystep)}</text>'
                )
        span = t1 - t0
        for t in _time_ticks(t0, t1):
            x = sx(t)
            grid.append(f"M{x:.1f},{y0}V{y1}")
            parts.append(f'<text x="{x:.1f}" y="{h - 6}" class="xl">{_fmt_time(t, span)}</text>')
        if grid:
            parts.append(f'<path class="grid" d="{"".join(grid)}"/>')
        parts.append(f'<text x="{x0}" y="{y0 - 8}" class="ct">{escape(self.title)}</text>')
        # series
        legend_x = x1
        legend: list[str] = []
        for s in self.series:
            style = f'stroke="{s.color}" stroke-width="{s.width}" fill="none"'
            if s.dash:
                style += f' stroke-dasharray="{s.dash}"'
            if s.kind in ("line", "step"):
                d = self._path(s, sx, sy, x1)
                if d:
                    parts.append(f'<path {style} d="{d}"/>')
            elif s.kind == "bars":
                y_zero = sy(0.0)
                d = "".join(
                    f"M{sx(t):.1f},{y_zero:.1f}V{sy(v):.1f}" for t, v in s.points if v is not None
                )
                if d:
                    parts.append(f'<path {style} d="{d}"/>')
            elif s.kind == "vlines":
                for i, (t, _) in enumerate(s.points):
                    x = sx(t)
                    title = s.titles[i] if s.titles else ""
                    parts.append(
                        _linked(
                            f'<path {style} d="M{x:.1f},{y0}V{y1}">'
                            f"<title>{escape(title)}</title></path>",
                            s.links[i] if s.links else None,
                        )
                    )
            else:
                for i, (t, val) in enumerate(s.points):
                    if val is None:
                        continue
                    title = s.titles[i] if s.titles else ""
                    d = _shape(s.shape, sx(t), sy(val))
                    parts.append(
                        _linked(
                            f'<path fill="{s.color}" stroke="none" d="{d}">'
                            f"<title>{escape(title)}</title></path>",
                            s.links[i] if s.links else None,
                        )
                    )
            legend.append(f'<tspan fill="{s.color}">■</tspan> {escape(s.label)}')
        if legend:
            parts.append(f'<text x="{legend_x}" y="{y0 - 8}" class="lg">{"  ".join(legend)}</text>')
        parts.append("</svg>")
        return "".join(parts)

    @staticmethod
    def _path(
        s: _Series, sx: Callable[[float], float], sy: Callable[[float], float], x_end: float
    ) -> str:
        out: list[str] = []
        pen = False
        last_y: float | None = None
        for t, v in s.points:
            if v is None or not math.isfinite(v):
                if s.kind == "step" and pen:
                    out.append(f"H{sx(t):.1f}")
                pen = False
                last_y = None
                continue
            x, y = sx(t), sy(v)
            if not pen:
                out.append(f"M{x:.1f},{y:.1f}")
                pen = True
            elif s.kind == "step":
                out.append(f"H{x:.1f}V{y:.1f}" if y != last_y else f"H{x:.1f}")
            else:
                out.append(f"L{x:.1f},{y:.1f}")
            last_y = y
        if s.kind == "step" and pen:
            out.append(f"H{x_end:.1f}")
        return "".join(out)


def _linked(element: str, href: str | None) -> str:
    return element if not href else f'<a href="{escape(href)}">{element}</a>'


def _shape(shape: str, x: float, y: float, r: float = 3.5) -> str:
    if shape == "up":
        return f"M{x:.1f},{y - r:.1f}L{x + r:.1f},{y + r:.1f}L{x - r:.1f},{y + r:.1f}Z"
    if shape == "down":
        return f"M{x:.1f},{y + r:.1f}L{x + r:.1f},{y - r:.1f}L{x - r:.1f},{y - r:.1f}Z"
    if shape == "diamond":
        return f"M{x:.1f},{y - r:.1f}L{x + r:.1f},{y:.1f}L{x:.1f},{y + r:.1f}L{x - r:.1f},{y:.1f}Z"
    return f"M{x - r:.1f},{y:.1f}a{r},{r} 0 1,0 {2 * r:.1f},0a{r},{r} 0 1,0 {-2 * r:.1f},0Z"
