"""Reviewing runs from the audit store: decisions, rebuilt market history, the HTML report.

* :mod:`cfa.reports.decisions` — decisions normalised for review (``cfa traces``);
* :mod:`cfa.reports.history` — a market's mid, our quotes, fills, inventory and PnL rebuilt
  from the recorded events, orders and fills;
* :mod:`cfa.reports.svg` — inline SVG time-series charts;
* :mod:`cfa.reports.html` — the self-contained run report (``cfa report``).
"""

from cfa.reports.decisions import DecisionRecord, load_decisions
from cfa.reports.history import MarketWalker, Snapshot, walk
from cfa.reports.html import build_report

__all__ = ["DecisionRecord", "MarketWalker", "Snapshot", "build_report", "load_decisions", "walk"]
