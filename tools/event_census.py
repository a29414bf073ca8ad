"""How common strike ladders and mutually exclusive sets are on Kalshi: a census of its events.

Reads the exchange-wide identifier index of ``YichengYang-Ethan/kalshi-market-structure``
(``../shared/data/kalshi/kalshi_market_structure/``, see ``../shared/data/kalshi/SOURCES.md`` §5;
the data is licence-restricted and stays outside the repo: this tool prints aggregates only):

* ``events_index_<date>.csv.gz``: one row per open event (category, frequency, the index
  authors' ``template``, Kalshi's ``mutually_exclusive``, ``n_markets``, the authors'
  ``partition_tiled`` and ``exhaustiveness`` inferences, the series' fee type);
* ``markets_index_<date>.csv.gz``: one row per market of those events, including markets that
  have already settled (``strike_type``, ``ever_traded``, ``traded_24h``, ``two_sided``);
* ``series_rollup_<date>.csv`` (optional): per-series counts, used only as a cross-check.

The index holds **no prices and no volumes** (by the authors' design); activity is measured by
counting markets traded in the last 24 h, ever traded, and with a two-sided book.

Each event gets one class, from its markets in the index (all of them, settled ones included:
the structure of an event does not change when a rung settles):

* **single-market**: one market;
* **exclusive set**: Kalshi's ``mutually_exclusive`` is set (at most one market pays), split by
  the index's ``exhaustiveness`` (``explicit`` / ``implicit`` / ``none``, assessed only where the
  authors found the buckets to tile the line; ``not assessed`` elsewhere);
* **ladder**: at least two markets, all "above" strikes (``greater`` / ``greater_or_equal``) or
  all "below" strikes (``less`` / ``less_or_equal``), not mutually exclusive;
* **other multi-market**: anything else (several markets with no structure cfa can use).

This is :func:`cfa.core.events.event_structures`'s rule where the index allows: that function
also needs distinct ``floor_strike`` values, which the index does not carry, and it calls
"below" ladders and one-market exclusive events otherwise (``docs/events.md``).

Run ``python tools/event_census.py`` for tables (``--markdown`` or ``--json`` for other output,
``--series REGEX`` to count some series only, ``--data DIR`` for another copy of the index).
Exits 2 with one line when the index is absent, 1 when it is malformed or its files disagree.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

DEFAULT_DATA = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "data"
    / "kalshi"
    / "kalshi_market_structure"
)
"""``../shared/data/kalshi/kalshi_market_structure`` relative to the repo root."""

SINGLE = "single-market"
LADDER = "ladder"
EXCLUSIVE = "exclusive set"
OTHER = "other multi-market"
CLASSES = (SINGLE, LADDER, EXCLUSIVE, OTHER)

ABOVE_TYPES = frozenset({"greater", "greater_or_equal"})
BELOW_TYPES = frozenset({"less", "less_or_equal"})
EXHAUSTIVENESS = ("explicit", "implicit", "none", "not assessed")
LADDER_DETAILS = ("above, one subject", "above, several", "below, one subject", "below, several")

_EVENT_COLUMNS = (
    "event_ticker",
    "series_ticker",
    "event_category",
    "template",
    "mutually_exclusive",
    "n_markets",
    "n_active",
    "partition_tiled",
    "exhaustiveness",
    "fee_type",
    "frequency",
)
_MARKET_COLUMNS = (
    "ticker",
    "event_ticker",
    "status",
    "strike_type",
    "ever_traded",
    "traded_24h",
    "two_sided",
)


class CensusError(ValueError):
    """The index is malformed or inconsistent; the message names the file and row."""


class IndexMissing(CensusError):
    """The index directory or one of its files is absent."""


@dataclass(frozen=True, slots=True)
class EventRow:
    """One event of ``events_index``: the fields the census uses."""

    event_ticker: str
    series_ticker: str
    category: str
    template: str
    mutually_exclusive: bool
    n_markets: int
    n_active: int
    partition_tiled: bool
    exhaustiveness: str
    fee_type: str
    frequency: str


@dataclass(frozen=True, slots=True)
class MarketRow:
    """One market of ``markets_index``: the fields the census uses."""

    ticker: str
    event_ticker: str
    status: str
    strike_type: str
    ever_traded: bool
    traded_24h: bool
    two_sided: bool


@dataclass(frozen=True, slots=True)
class IndexFiles:
    """The index's files in one directory (the latest date when several are present)."""

    events: Path
    markets: Path
    series: Path | None
    date: str


@dataclass(slots=True)
class Tally:
    """Counts over a set of events and their markets."""

    events: int = 0
    markets: int = 0
    active: int = 0
    ever_traded: int = 0
    traded_24h: int = 0
    two_sided: int = 0
    maker_fee_events: int = 0
    sizes: list[int] = field(default_factory=list)

    def add(self, event: EventRow, markets: Sequence[MarketRow]) -> None:
        self.events += 1
        self.markets += len(markets)
        self.active += sum(m.status == "active" for m in markets)
        self.ever_traded += sum(m.ever_traded for m in markets)
        self.traded_24h += sum(m.traded_24h for m in markets)
        self.two_sided += sum(m.two_sided for m in markets)
        self.maker_fee_events += "maker" in event.fee_type
        self.sizes.append(len(markets))

    def as_dict(self) -> dict[str, Any]:
        sizes = np.asarray(self.sizes, dtype=np.int64)
        return {
            "events": self.events,
            "markets": self.markets,
            "active": self.active,
            "ever_traded": self.ever_traded,
            "traded_24h": self.traded_24h,
            "two_sided": self.two_sided,
            "maker_fee_events": self.maker_fee_events,
            "n_markets_median": float(np.median(sizes)) if sizes.size else None,
            "n_markets_p90": float(np.percentile(sizes, 90)) if sizes.size else None,
            "n_markets_max": int(sizes.max()) if sizes.size else None,
        }


# -- reading ------------------------------------------------------------------------------------


def find_index(data: Path) -> IndexFiles:
    """The index files in ``data``; :class:`CensusError` naming what is missing."""
    if not data.is_dir():
        raise IndexMissing(f"no Kalshi market-structure index at {data} (pass --data DIR)")
    events = sorted(data.glob("events_index_*.csv.gz"))
    markets = sorted(data.glob("markets_index_*.csv.gz"))
    if not events or not markets:
        missing = "events_index_*.csv.gz" if not events else "markets_index_*.csv.gz"
        raise IndexMissing(f"no {missing} in {data}")
    date = events[-1].name.removeprefix("events_index_").removesuffix(".csv.gz")
    market_file = data / f"markets_index_{date}.csv.gz"
    if not market_file.is_file():
        raise IndexMissing(f"no markets_index_{date}.csv.gz beside {events[-1].name} in {data}")
    series = data / f"series_rollup_{date}.csv"
    return IndexFiles(events[-1], market_file, series if series.is_file() else None, date)


def _open(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def _rows(path: Path, columns: Sequence[str]) -> Iterable[tuple[int, dict[str, str]]]:
    with _open(path) as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or ())]
        if missing:
            raise CensusError(f"{path.name}: missing column(s) {', '.join(missing)}")
        yield from enumerate(reader, start=2)


def _int(path: Path, line: int, row: Mapping[str, str], column: str) -> int:
    text = row[column]
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise CensusError(f"{path.name}:{line}: {column} is not an integer: {text!r}") from None
    if value < 0:
        raise CensusError(f"{path.name}:{line}: {column} is negative: {text!r}")
    return value


def _flag(path: Path, line: int, row: Mapping[str, str], column: str) -> bool:
    text = row[column]
    if text not in ("0", "1"):
        raise CensusError(f"{path.name}:{line}: {column} must be 0 or 1, got {text!r}")
    return text == "1"


def read_events(path: Path) -> list[EventRow]:
    """Every row of an ``events_index`` file (plain or gzip CSV)."""
    out = []
    for line, r in _rows(path, _EVENT_COLUMNS):
        out.append(
            EventRow(
                event_ticker=r["event_ticker"],
                series_ticker=r["series_ticker"],
                category=r["event_category"] or "(none)",
                template=r["template"] or "(none)",
                mutually_exclusive=_flag(path, line, r, "mutually_exclusive"),
                n_markets=_int(path, line, r, "n_markets"),
                n_active=_int(path, line, r, "n_active"),
                partition_tiled=_flag(path, line, r, "partition_tiled"),
                exhaustiveness=r["exhaustiveness"],
                fee_type=r["fee_type"],
                frequency=r["frequency"] or "(none)",
            )
        )
    return out


def read_markets(path: Path) -> list[MarketRow]:
    """Every row of a ``markets_index`` file (plain or gzip CSV)."""
    out = []
    for line, r in _rows(path, _MARKET_COLUMNS):
        out.append(
            MarketRow(
                ticker=r["ticker"],
                event_ticker=r["event_ticker"],
                status=r["status"],
                strike_type=r["strike_type"],
                ever_traded=_flag(path, line, r, "ever_traded"),
                traded_24h=_flag(path, line, r, "traded_24h"),
                two_sided=_flag(path, line, r, "two_sided"),
            )
        )
    return out


def read_series_markets(path: Path) -> int:
    """Total ``n_markets`` over a ``series_rollup`` file (the cross-check of the market count)."""
    return sum(_int(path, line, r, "n_markets") for line, r in _rows(path, ("n_markets",)))


# -- classifying --------------------------------------------------------------------------------


def classify(event: EventRow, markets: Sequence[MarketRow]) -> tuple[str, str]:
    """``(class, detail)`` of one event from its markets (see the module docstring).

    ``detail`` is, for a ladder, its direction and whether its markets share one
    :func:`subject` (``above, one subject``, ``below, several``, …); for an exclusive set
    its exhaustiveness (one of :data:`EXHAUSTIVENESS`); empty otherwise.
    """
    if len(markets) <= 1:
        return SINGLE, ""
    if event.mutually_exclusive:
        exh = event.exhaustiveness if event.exhaustiveness in EXHAUSTIVENESS else "not assessed"
        return EXCLUSIVE, exh
    types = {m.strike_type for m in markets}
    for direction, allowed in (("above", ABOVE_TYPES), ("below", BELOW_TYPES)):
        if types <= allowed:
            subjects = {subject(m.ticker, event.event_ticker) for m in markets}
            return LADDER, f"{direction}, {'one subject' if len(subjects) == 1 else 'several'}"
    return OTHER, ""


_TRAILING_NUMBER = re.compile(r"-?[0-9.]+$")


def subject(ticker: str, event_ticker: str) -> str:
    """What a market's ticker says it is about, with the strike removed (a heuristic).

    The part of ``ticker`` after ``event_ticker-`` (else after its last ``-``) without a
    trailing number: ``KXBTCD-…-T96499.99`` → ``T``, a team code ``AAA`` from ``…SPREAD-…-AAA7``,
    a city code from ``KXRAIN-…-<city>``. Rungs of one ladder share it; an event whose "above"
    markets do not (a spread per team, rain per city, a price by several dates) is several
    ladders, or none, under one event ticker.
    """
    prefix = event_ticker + "-"
    rest = ticker[len(prefix) :] if ticker.startswith(prefix) else ticker.rsplit("-", 1)[-1]
    return _TRAILING_NUMBER.sub("", rest)


def group_markets(
    events: Sequence[EventRow], markets: Iterable[MarketRow]
) -> dict[str, list[MarketRow]]:
    """Markets by event ticker; :class:`CensusError` when the two files disagree."""
    by_event: dict[str, list[MarketRow]] = {e.event_ticker: [] for e in events}
    if len(by_event) != len(events):
        dup = Counter(e.event_ticker for e in events).most_common(1)[0][0]
        raise CensusError(f"events index lists {dup} twice")
    for m in markets:
        ms = by_event.get(m.event_ticker)
        if ms is None:
            raise CensusError(f"market {m.ticker}: event {m.event_ticker} not in the events index")
        ms.append(m)
    for e in events:
        if len(by_event[e.event_ticker]) != e.n_markets:
            raise CensusError(
                f"event {e.event_ticker}: n_markets {e.n_markets} but "
                f"{len(by_event[e.event_ticker])} rows in the markets index"
            )
    return by_event


def _crosstab(
    events: Sequence[EventRow],
    by_event: Mapping[str, Sequence[MarketRow]],
    classes: Mapping[str, tuple[str, str]],
    key: Callable[[EventRow], str],
) -> dict[str, dict[str, dict[str, Any]]]:
    tallies: dict[str, dict[str, Tally]] = {}
    for e in events:
        row = tallies.setdefault(key(e), {c: Tally() for c in CLASSES})
        row[classes[e.event_ticker][0]].add(e, by_event[e.event_ticker])
    order = sorted(tallies, key=lambda k: (-sum(t.events for t in tallies[k].values()), k))
    return {
        k: {c: {"events": t.events, "traded_24h": t.traded_24h} for c, t in tallies[k].items()}
        for k in order
    }


def census(
    events: Sequence[EventRow], markets: Sequence[MarketRow], *, top_strike_types: int = 8
) -> dict[str, Any]:
    """The census as plain data (what ``--json`` prints): totals, per class and per detail,
    cross-tabulations by category, frequency and template, and the commonest strike-type
    mixes per class. Shares are left to the reader: every count has its total beside it."""
    by_event = group_markets(events, markets)
    classes = {e.event_ticker: classify(e, by_event[e.event_ticker]) for e in events}
    total = Tally()
    per_class = {c: Tally() for c in CLASSES}
    per_detail: dict[str, dict[str, Tally]] = {LADDER: {}, EXCLUSIVE: {}}
    strike_mix: dict[str, Counter[str]] = {c: Counter() for c in CLASSES}
    for e in events:
        ms = by_event[e.event_ticker]
        cls, detail = classes[e.event_ticker]
        total.add(e, ms)
        per_class[cls].add(e, ms)
        if cls in per_detail:
            per_detail[cls].setdefault(detail, Tally()).add(e, ms)
        strike_mix[cls]["+".join(sorted({m.strike_type or "(none)" for m in ms}))] += 1
    detail_order = {LADDER: LADDER_DETAILS, EXCLUSIVE: EXHAUSTIVENESS}
    return {
        "totals": total.as_dict(),
        "classes": {c: per_class[c].as_dict() for c in CLASSES},
        "details": {
            c: {d: per_detail[c][d].as_dict() for d in detail_order[c] if d in per_detail[c]}
            for c in per_detail
        },
        "by_category": _crosstab(events, by_event, classes, lambda e: e.category),
        "by_frequency": _crosstab(events, by_event, classes, lambda e: e.frequency),
        "by_template": _crosstab(events, by_event, classes, lambda e: e.template),
        "strike_types": {c: dict(strike_mix[c].most_common(top_strike_types)) for c in CLASSES},
        "single_marked_exclusive": sum(
            classes[e.event_ticker][0] == SINGLE and e.mutually_exclusive for e in events
        ),
    }


def run(data: Path, *, series: str | None = None) -> dict[str, Any]:
    """Read the index in ``data`` and return :func:`census` with the source files and checks.

    ``series``: a regular expression; only events whose series ticker it matches (``re.search``)
    are counted, after the whole index has been read and cross-checked.
    """
    files = find_index(data)
    events = read_events(files.events)
    markets = read_markets(files.markets)
    group_markets(events, markets)  # the cross-check, on the whole index
    n_events, n_markets = len(events), len(markets)
    if series is not None:
        try:
            pattern = re.compile(series)
        except re.error as exc:
            raise CensusError(f"--series {series!r}: not a regular expression: {exc}") from None
        events = [e for e in events if pattern.search(e.series_ticker)]
        kept = {e.event_ticker for e in events}
        markets = [m for m in markets if m.event_ticker in kept]
        if not events:
            raise CensusError(f"--series {series!r}: no series matches")
    out = census(events, markets)
    out["source"] = {
        "date": files.date,
        "events_file": files.events.name,
        "markets_file": files.markets.name,
        "event_rows": n_events,
        "market_rows": n_markets,
        "series": len({e.series_ticker for e in events}),
        "series_filter": series,
    }
    if files.series is not None:
        rollup = read_series_markets(files.series)
        if rollup != n_markets:
            raise CensusError(
                f"{files.series.name}: n_markets sums to {rollup}, markets index has {n_markets}"
            )
        out["source"]["series_file"] = files.series.name
    return out


# -- printing -----------------------------------------------------------------------------------

TableData = tuple[str, tuple[str, ...], list[tuple[str, ...]]]
"""A table as ``(title, headers, rows)``; the first column is a label, the rest numbers."""


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}" if whole else "—"


def _num(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"


def _class_rows(result: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    rows: list[tuple[str, Mapping[str, Any]]] = []
    for c in CLASSES:
        rows.append((c, result["classes"][c]))
        rows.extend((f"  {d}", s) for d, s in result["details"].get(c, {}).items())
    rows.append(("all", result["totals"]))
    return rows


def tables(result: Mapping[str, Any], *, top: int = 10) -> list[TableData]:
    """The census as tables: classes (events and markets, activity, size), then events and
    markets traded in 24 h by category, frequency and template, then strike-type mixes."""
    tot = result["totals"]
    rows = _class_rows(result)
    out: list[TableData] = [
        (
            "Event classes: events and markets",
            ("class", "events", "% of events", "markets", "% of markets", "maker-fee events"),
            [
                (
                    name,
                    f"{s['events']:,}",
                    _pct(s["events"], tot["events"]),
                    f"{s['markets']:,}",
                    _pct(s["markets"], tot["markets"]),
                    f"{s['maker_fee_events']:,}",
                )
                for name, s in rows
            ],
        ),
        (
            "Event classes: activity (markets)",
            ("class", "traded 24h", "% of all 24h", "% of class", "ever traded %", "two-sided %"),
            [
                (
                    name,
                    f"{s['traded_24h']:,}",
                    _pct(s["traded_24h"], tot["traded_24h"]),
                    _pct(s["traded_24h"], s["markets"]),
                    _pct(s["ever_traded"], s["markets"]),
                    _pct(s["two_sided"], s["markets"]),
                )
                for name, s in rows
            ],
        ),
        (
            "Markets per event",
            ("class", "median", "p90", "max"),
            [
                (
                    name,
                    _num(s["n_markets_median"]),
                    _num(s["n_markets_p90"]),
                    _num(s["n_markets_max"]),
                )
                for name, s in rows
            ],
        ),
    ]
    for key, what in (
        ("by_category", "event category"),
        ("by_frequency", "series frequency"),
        ("by_template", "the index's template"),
    ):
        items = list(result[key].items())
        body = [
            (name, *(f"{per[c]['events']:,} / {per[c]['traded_24h']:,}" for c in CLASSES))
            for name, per in items[:top]
        ]
        if len(items) > top:
            rest = [per for _, per in items[top:]]
            body.append(
                (
                    f"({len(rest)} more)",
                    *(
                        f"{sum(p[c]['events'] for p in rest):,} / "
                        f"{sum(p[c]['traded_24h'] for p in rest):,}"
                        for c in CLASSES
                    ),
                )
            )
        out.append(
            (
                f"By {what}: events / markets traded in 24 h",
                (key.removeprefix("by_"), *CLASSES),
                body,
            )
        )
    out.append(
        (
            "Commonest strike-type mixes per class",
            ("class", "strike types of its markets", "events"),
            [(c, mix, f"{n:,}") for c in CLASSES for mix, n in result["strike_types"][c].items()],
        )
    )
    return out


def _heading(result: Mapping[str, Any]) -> str:
    src = result["source"]
    tot = result["totals"]
    only = ""
    if src.get("series_filter") is not None:
        only = (
            f" Counted here: the {tot['events']:,} events and {tot['markets']:,} markets of the "
            f"{src['series']:,} series matching {src['series_filter']!r}."
        )
    return (
        f"Kalshi events open on {src['date']}: {src['event_rows']:,} events, "
        f"{src['market_rows']:,} markets ({src['events_file']}, {src['markets_file']}).{only} "
        "The index has no prices or volumes: "
        "activity is counted in markets traded in the last 24 h, ever traded, and with a "
        f"two-sided book. {result['single_marked_exclusive']:,} single-market events are marked "
        "mutually exclusive."
    )


def _is_label(column: int, header: str) -> bool:
    return column == 0 or header.startswith("strike types")


def render(result: Mapping[str, Any], *, top: int = 10) -> None:
    """Print ``result`` (from :func:`run`) as rich tables on stdout."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(_heading(result))
    for title, headers, body in tables(result, top=top):
        t = Table(title=title, title_justify="left")
        for i, h in enumerate(headers):
            t.add_column(h, justify="left" if _is_label(i, h) else "right")
        for r in body:
            t.add_row(*r)
        console.print(t)


def markdown(result: Mapping[str, Any], *, top: int = 10) -> str:
    """``result`` (from :func:`run`) as Markdown tables."""
    lines = [_heading(result), ""]
    for title, headers, body in tables(result, top=top):
        lines += [f"**{title}**", ""]
        lines.append("| " + " | ".join(headers) + " |")
        lines.append(
            "|"
            + "|".join("---" if _is_label(i, h) else "---:" for i, h in enumerate(headers))
            + "|"
        )
        for r in body:
            cells = [r[0].replace("  ", "&nbsp;&nbsp;", 1) if r[0].startswith("  ") else r[0]]
            lines.append("| " + " | ".join([*cells, *r[1:]]) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="event_census.py",
        description="Census of Kalshi event structures (ladders, exclusive sets) from the "
        "exchange-wide identifier index (../shared/data/kalshi/SOURCES.md §5).",
    )
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help=f"index directory (default {DEFAULT_DATA})"
    )
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the census as JSON")
    out.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument("--top", type=int, default=10, help="rows per cross-table (default 10)")
    parser.add_argument(
        "--series",
        metavar="REGEX",
        help="count only the events of series whose ticker matches REGEX (e.g. '^KXBTCD$')",
    )
    args = parser.parse_args(argv)
    if args.top < 1:
        parser.error("--top must be at least 1")
    try:
        result = run(args.data, series=args.series)
    except IndexMissing as exc:
        print(f"event_census: {exc}", file=sys.stderr)
        return 2
    except CensusError as exc:
        print(f"event_census: bad index: {exc}", file=sys.stderr)
        return 1
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif args.markdown:
        print(markdown(result, top=args.top))
    else:
        render(result, top=args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
