"""``tools/event_census.py``: the classes, counts and exit codes, on a tiny synthetic index
written here, and on Kalshi's real index when it is present beside the repo (never copied)."""

from __future__ import annotations

import csv
import gzip
import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import event_census as ec  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "kalshi" / "kalshi_market_structure"

EVENT_HEADER = [
    *("event_ticker", "series_ticker", "event_category", "series_category", "template"),
    *("mutually_exclusive", "collateral_return_type", "n_markets", "n_active", "n_traded"),
    *("partition_tiled", "exhaustiveness", "fee_multiplier", "fee_type", "frequency"),
]
MARKET_HEADER = [
    *("ticker", "event_ticker", "series_ticker", "status", "strike_type", "template"),
    *("ever_traded", "traded_24h", "two_sided", "can_close_early"),
]

Market = tuple[str, str, str, int, int, int]
"""(ticker suffix, status, strike_type, ever_traded, traded_24h, two_sided)"""


def event(
    ticker: str,
    category: str,
    template: str,
    frequency: str,
    markets: list[Market],
    *,
    exclusive: int = 0,
    tiled: int = 0,
    exhaustiveness: str = "",
    fee: str = "quadratic",
) -> tuple[Any, ...]:
    return (ticker, category, template, exclusive, tiled, exhaustiveness, fee, frequency, markets)


ACTIVE = "active"
EVENTS: list[tuple[Any, ...]] = [
    event("ONE-1", "Politics", "binary", "one_off", [("", ACTIVE, "", 1, 1, 1)]),
    event(
        "BTCD-1",
        "Crypto",
        "threshold",
        "hourly",
        [
            ("T100", ACTIVE, "greater", 1, 1, 1),
            ("T200", ACTIVE, "greater_or_equal", 1, 0, 1),
            ("T300", "finalized", "greater", 0, 0, 0),
        ],
    ),
    event(
        "ICE-1",
        "Climate",
        "threshold",
        "annual",
        [("4", ACTIVE, "less", 0, 0, 1), ("5", ACTIVE, "less_or_equal", 1, 0, 0)],
    ),
    event(
        "NFLSPREAD-1",
        "Sports",
        "entity_menu",
        "custom",
        [("AAA3", ACTIVE, "greater", 1, 1, 1), ("BBB7", ACTIVE, "greater", 1, 1, 1)],
        fee="quadratic_with_maker_fees",
    ),
    event(
        "HIGHNY-1",
        "Climate",
        "bucket",
        "daily",
        [
            ("T48", ACTIVE, "less", 1, 1, 1),
            ("B48.5", ACTIVE, "between", 1, 1, 1),
            ("T49", ACTIVE, "greater", 1, 0, 0),
        ],
        exclusive=1,
        tiled=1,
        exhaustiveness="explicit",
    ),
    event(
        "GAME-1",
        "Sports",
        "entity_menu",
        "custom",
        [("NYY", ACTIVE, "structured", 1, 1, 1), ("BOS", ACTIVE, "structured", 1, 1, 0)],
        exclusive=1,
        fee="quadratic_with_maker_fees",
    ),
    event(
        "MENTION-1",
        "Mentions",
        "entity_menu",
        "custom",
        [("A", ACTIVE, "custom", 0, 0, 0), ("B", ACTIVE, "custom", 0, 0, 1)],
    ),
    event(
        "MIX-1",
        "Economics",
        "threshold",
        "monthly",
        [("T1", ACTIVE, "greater", 1, 0, 1), ("B1", ACTIVE, "between", 1, 0, 1)],
    ),
    event(
        "LONE-1",
        "Politics",
        "entity_menu",
        "one_off",
        [("X", ACTIVE, "structured", 1, 0, 1)],
        exclusive=1,
    ),
]
N_MARKETS = sum(len(e[-1]) for e in EVENTS)


def write_index(
    d: Path, *, date: str = "2026-01-02", events: list[tuple[Any, ...]] = EVENTS
) -> None:
    d.mkdir(parents=True, exist_ok=True)
    with gzip.open(d / f"events_index_{date}.csv.gz", "wt", newline="") as f:
        w = csv.writer(f)
        w.writerow(EVENT_HEADER)
        for ev, cat, tmpl, me, tiled, exh, fee, freq, ms in events:
            n_active = sum(m[1] == "active" for m in ms)
            n_traded = sum(m[1] == "active" and m[3] for m in ms)
            counts = (len(ms), n_active, n_traded)
            w.writerow(
                [ev, ev.split("-")[0], cat, cat, tmpl, me, "", *counts, tiled, exh, 1, fee, freq]
            )
    with gzip.open(d / f"markets_index_{date}.csv.gz", "wt", newline="") as f:
        w = csv.writer(f)
        w.writerow(MARKET_HEADER)
        for ev, _, tmpl, _, _, _, _, _, ms in events:
            for suffix, status, strike, ever, h24, two in ms:
                ticker = f"{ev}-{suffix}" if suffix else ev
                w.writerow([ticker, ev, ev.split("-")[0], status, strike, tmpl, ever, h24, two, 1])
    with (d / f"series_rollup_{date}.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["series_ticker", "n_markets"])
        for ev, *_, ms in events:
            w.writerow([ev.split("-")[0], len(ms)])


@pytest.fixture
def index(tmp_path: Path) -> Path:
    write_index(tmp_path / "idx")
    return tmp_path / "idx"


def test_each_synthetic_event_gets_the_expected_class(index: Path) -> None:
    files = ec.find_index(index)
    events = ec.read_events(files.events)
    by_event = ec.group_markets(events, ec.read_markets(files.markets))
    got = {e.event_ticker: ec.classify(e, by_event[e.event_ticker]) for e in events}
    assert got == {
        "ONE-1": (ec.SINGLE, ""),
        "BTCD-1": (ec.LADDER, "above, one subject"),  # a settled rung still counts
        "ICE-1": (ec.LADDER, "below, one subject"),
        "NFLSPREAD-1": (ec.LADDER, "above, several"),  # one ladder per team
        "HIGHNY-1": (ec.EXCLUSIVE, "explicit"),
        "GAME-1": (ec.EXCLUSIVE, "not assessed"),
        "MENTION-1": (ec.OTHER, ""),
        "MIX-1": (ec.OTHER, ""),
        "LONE-1": (ec.SINGLE, ""),  # mutually exclusive, but nothing to be exclusive with
    }


def test_the_census_counts_add_up_on_the_synthetic_index(index: Path) -> None:
    r = ec.run(index)
    assert r["source"]["event_rows"] == len(EVENTS)
    assert r["source"]["market_rows"] == N_MARKETS
    assert r["source"]["date"] == "2026-01-02"
    assert r["source"]["series_file"] == "series_rollup_2026-01-02.csv"
    tot = r["totals"]
    assert (tot["events"], tot["markets"]) == (len(EVENTS), N_MARKETS)
    assert tot["traded_24h"] == 8 and tot["two_sided"] == 13 and tot["active"] == 17
    assert tot["maker_fee_events"] == 2
    for key in ("events", "markets", "traded_24h", "two_sided", "ever_traded"):
        assert sum(c[key] for c in r["classes"].values()) == tot[key]
        for cls, details in r["details"].items():
            assert sum(d[key] for d in details.values()) == r["classes"][cls][key]
    lad = r["classes"][ec.LADDER]
    assert (lad["events"], lad["markets"], lad["traded_24h"], lad["two_sided"]) == (3, 7, 3, 5)
    assert (lad["n_markets_median"], lad["n_markets_max"]) == (2.0, 3)
    assert lad["n_markets_p90"] == pytest.approx(2.8)  # numpy's linear interpolation
    exc = r["classes"][ec.EXCLUSIVE]
    assert (exc["events"], exc["markets"], exc["traded_24h"]) == (2, 5, 4)
    assert r["by_frequency"]["hourly"][ec.LADDER] == {"events": 1, "traded_24h": 1}
    assert list(r["by_category"])[:3] == ["Climate", "Politics", "Sports"]  # 2 each, by name
    assert r["single_marked_exclusive"] == 1  # LONE-1
    assert r["strike_types"][ec.LADDER] == {
        "greater": 1,
        "greater+greater_or_equal": 1,
        "less+less_or_equal": 1,
    }


def test_the_cli_prints_json_markdown_and_tables(
    index: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ec.main(["--data", str(index), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["totals"]["markets"] == N_MARKETS
    assert ec.main(["--data", str(index), "--markdown", "--top", "2"]) == 0
    md = capsys.readouterr().out
    assert "| ladder | 3 |" in md and "(4 more)" in md
    assert ec.main(["--data", str(index)]) == 0
    assert "Event classes" in capsys.readouterr().out


def test_an_absent_index_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ec.main(["--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no Kalshi market-structure index" in err
    (tmp_path / "empty").mkdir()
    assert ec.main(["--data", str(tmp_path / "empty")]) == 2
    assert "events_index_" in capsys.readouterr().err


def test_a_malformed_or_inconsistent_index_is_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = [list(e) for e in EVENTS]
    bad[1][3] = "yes"  # mutually_exclusive
    write_index(tmp_path / "a", events=[tuple(e) for e in bad])
    assert ec.main(["--data", str(tmp_path / "a")]) == 1
    assert "mutually_exclusive must be 0 or 1" in capsys.readouterr().err

    write_index(tmp_path / "b")  # the events index claims one market too many
    path = tmp_path / "b" / "events_index_2026-01-02.csv.gz"
    with gzip.open(path, "rt", newline="") as f:
        rows = list(csv.reader(f))
    rows[1][7] = "2"
    with gzip.open(path, "wt", newline="") as f:
        csv.writer(f).writerows(rows)
    with pytest.raises(ec.CensusError, match="ONE-1: n_markets 2 but 1 rows"):
        ec.run(tmp_path / "b")

    write_index(tmp_path / "c")
    (tmp_path / "c" / "series_rollup_2026-01-02.csv").write_text("series_ticker,n_markets\nX,1\n")
    with pytest.raises(ec.CensusError, match="n_markets sums to 1"):
        ec.run(tmp_path / "c")


def test_the_subject_heuristic_strips_the_strike() -> None:
    assert ec.subject("KXBTCD-26DEC0217-T96499.99", "KXBTCD-26DEC0217") == "T"
    assert ec.subject("KXSYN-26JAN-T-0.1", "KXSYN-26JAN") == "T"
    assert ec.subject("KXSPREAD-26JAN01AAABBB-AAA17", "KXSPREAD-26JAN01AAABBB") == "AAA"
    assert ec.subject("EUCLIMATE-2030", "EUCLIMATE") == ""
    assert ec.subject("OTHER-NYC", "SOMETHING-ELSE") == "NYC"


@pytest.mark.data
@pytest.mark.skipif(
    not REAL.is_dir(),
    reason=f"Kalshi's market-structure index is not at {REAL} (it stays outside the repo; "
    "see ../shared/data/kalshi/SOURCES.md §5)",
)
def test_the_real_index_totals_match_the_files() -> None:
    files = ec.find_index(REAL)

    def rows(path: Path) -> int:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", newline="") as f:
            return sum(1 for _ in csv.reader(f)) - 1  # minus the header

    n_events, n_markets = rows(files.events), rows(files.markets)
    r = ec.run(REAL)
    assert r["source"]["event_rows"] == r["totals"]["events"] == n_events
    assert r["source"]["market_rows"] == r["totals"]["markets"] == n_markets
    for key in ("events", "markets", "traded_24h", "two_sided"):
        assert sum(c[key] for c in r["classes"].values()) == r["totals"][key]
    if files.date == "2026-08-03":  # the copy SOURCES.md describes
        assert (n_events, n_markets) == (9_410, 72_482)
