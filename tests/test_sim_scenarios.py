"""Scenarios: shipped files load, look like Kalshi markets, cover every grid, produce events."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cfa.core.grid import STRUCTURES, PriceGrid
from cfa.core.types import BookDelta, BookSnapshot, CfaValueError, Trade
from cfa.exchange.sim import DEFAULT_START_TS, SimExchange, known_scenarios, load_scenario

REQUIRED = {"calm", "regime-shift", "informed-flow", "close-approach"}


def test_the_required_scenarios_ship() -> None:
    assert set(known_scenarios()) >= REQUIRED


@pytest.mark.parametrize("name", known_scenarios())
def test_scenario_loads_as_a_kalshi_like_market(name: str) -> None:
    sc = load_scenario(name)
    assert sc.name == name and sc.description
    info = sc.market_info(DEFAULT_START_TS)
    assert info.ticker.startswith(info.event_ticker + "-")
    assert info.event_ticker.startswith(info.series_ticker + "-")
    assert info.ticker == info.ticker.upper()
    assert info.title and info.rules and "{" not in info.rules
    assert info.open_ts < DEFAULT_START_TS < info.close_ts
    assert info.price_level_structure in STRUCTURES
    assert PriceGrid(info.price_ranges) == PriceGrid.from_structure(info.price_level_structure)
    assert info.fee.fee_type.startswith("quadratic")


def test_scenarios_cover_every_grid_and_maker_fees() -> None:
    infos = [load_scenario(n).market_info(DEFAULT_START_TS) for n in known_scenarios()]
    assert {i.price_level_structure for i in infos} >= {
        "linear_cent",
        "deci_cent",
        "tapered_deci_cent",
    }
    assert any(i.fee.fee_type == "quadratic_with_maker_fees" for i in infos)
    assert any(not i.fee.charges_maker for i in infos)
    close_within_hour = [i for i in infos if i.close_ts - DEFAULT_START_TS < 3600]
    assert [i.ticker for i in close_within_hour] == [
        load_scenario("close-approach").market_info(DEFAULT_START_TS).ticker
    ]


def test_unknown_scenario_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown scenario 'nope'") as exc:
        load_scenario("nope")
    for name in REQUIRED:
        assert name in str(exc.value)
    with pytest.raises(ValueError, match="known: "):
        SimExchange.from_scenarios(["calm", "nope"])


def test_repeated_scenarios_get_distinct_tickers() -> None:
    ex = SimExchange.from_scenarios(["calm", "calm", "calm", "regime-shift"])
    assert len(set(ex.tickers)) == 4
    base = ex.tickers[0]
    assert ex.tickers[1:3] == [f"{base}-2", f"{base}-3"]
    # distinct tickers, distinct random streams
    p = [ex.market(t).snapshot(0).yes for t in ex.tickers[:3]]
    assert p[0] != p[1] != p[2]


@pytest.mark.parametrize("name", known_scenarios())
async def test_each_scenario_produces_events(name: str) -> None:
    ex = SimExchange.from_scenarios([name], seed=1, duration=120)
    counts = {BookSnapshot: 0, BookDelta: 0, Trade: 0}
    async for ev in ex.stream(ex.tickers):
        if type(ev) in counts:
            counts[type(ev)] += 1
    assert counts[BookSnapshot] == len(ex.tickers)  # one per market (an event: per leg)
    # about one delta per refresh event (more with trades), and some trades
    assert counts[BookDelta] > 0.7 * load_scenario(name).book.refresh_rate * 120
    assert counts[Trade] >= 5
    assert ex.clock.now() == DEFAULT_START_TS + 120


def test_malformed_scenario_files_are_rejected(tmp_path: Path) -> None:
    good = (Path(__file__).resolve().parents[1] / "cfa/exchange/scenarios/calm.yaml").read_text(
        encoding="utf-8"
    )
    path = tmp_path / "typo.yaml"
    path.write_text(good.replace("refresh_rate:", "refresh_rat:"), encoding="utf-8")
    with pytest.raises(CfaValueError, match=r"book: unknown key\(s\) refresh_rat"):
        load_scenario(str(path))
    path.write_text(good.replace("linear_cent", "half_cent"), encoding="utf-8")
    with pytest.raises(CfaValueError, match="price_level_structure"):
        load_scenario(str(path))
    path.write_text(good.replace("p0: 0.42", "p0: 1.5"), encoding="utf-8")
    with pytest.raises(CfaValueError, match="p0"):
        load_scenario(str(path))
    with pytest.raises(ValueError, match="not found"):
        load_scenario(str(tmp_path / "missing.yaml"))


def test_custom_price_ranges_must_be_symmetric(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[1] / "cfa/exchange/scenarios/calm.yaml").read_text(
        encoding="utf-8"
    )
    ranges = textwrap.indent(
        textwrap.dedent(
            """\
            price_ranges:
              - {start: "0.0000", end: "0.2000", step: "0.0100"}
              - {start: "0.2000", end: "1.0000", step: "0.0500"}
            """
        ),
        "  ",
    )
    path = tmp_path / "lopsided.yaml"
    path.write_text(text.replace("  price_level_structure: linear_cent\n", ranges))
    with pytest.raises(CfaValueError, match="not symmetric"):
        load_scenario(str(path))
