"""Simulated events: several markets of one Kalshi event driven by one latent process.

A strike ladder's latent probabilities stay non-increasing in the strike and an exclusive
set's sum to 1 at every event; the event settles in one draw (nested YES sets on a ladder,
exactly one YES in an exclusive set); legs move together (ladder) or against each other
(two outcomes); the driver's grid stays bounded; streams are a pure function of the seed;
malformed ``event:`` sections fail naming what is wrong; the legs' metadata tells
:func:`cfa.core.events.event_structures` what the event is.
"""

from __future__ import annotations

import copy
import hashlib
import math
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cfa.core.events import EventKind, event_structures
from cfa.core.types import BookDelta, BookSnapshot, CfaValueError, Outcome, Settlement, Trade
from cfa.exchange.sim import DEFAULT_START_TS, SimExchange, known_scenarios, load_scenario
from cfa.exchange.sim.event import EventDriver, LegView
from cfa.exchange.sim.market import CHUNK_SECONDS, market_seed
from cfa.exchange.sim.scenarios import EventParams, Scenario, parse_scenario


def _raw(name: str) -> dict[str, Any]:
    text = resources.files("cfa.exchange").joinpath(f"scenarios/{name}.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def _variant(name: str, **changes: Any) -> Scenario:
    """A shipped event scenario with top-level sections (or ``market.*`` keys) changed."""
    data = copy.deepcopy(_raw(name))
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            data[section][field] = value
        else:
            data[section] = value
    return parse_scenario(data, f"{name}-variant")


def _logit(p: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.log(p / (1.0 - p))
    return out


def test_event_scenarios_ship_and_are_listed() -> None:
    assert {"event-ladder", "event-exclusive"} <= set(known_scenarios())
    for name, n in (("event-ladder", 5), ("event-exclusive", 6)):
        sc = load_scenario(name)
        assert sc.event is not None and sc.n_markets == n
        assert sc.market.fee.fee_type == "quadratic"  # as Kalshi charges KXBTCD and KXHIGHNY
        # days from the close (no close taper in a one-hour run), 4-6 legs
        assert sc.market.close_offset >= 2 * 86_400


# -- metadata -------------------------------------------------------------------------------


async def test_legs_metadata_gives_the_event_structures() -> None:
    ex = SimExchange.from_scenarios(
        ["calm", "event-ladder", "event-exclusive", "event-ladder"], seed=3
    )
    infos = await ex.get_markets()
    assert len(infos) == 1 + 5 + 6 + 5
    structures = event_structures(infos)
    ladders = [s for s in structures.values() if s.kind is EventKind.LADDER]
    exclusive = [s for s in structures.values() if s.kind is EventKind.EXCLUSIVE]
    assert len(ladders) == 2 and len(exclusive) == 1
    first, second = sorted(ladders, key=lambda s: s.event_ticker)
    assert first.event_ticker == "KXBTCD-26NOV3017"
    assert second.event_ticker == "KXBTCD-26NOV3017-2"  # a second entry is a second event
    assert first.tickers[2] == "KXBTCD-26NOV3017-T96499.99"
    assert second.tickers[2] == "KXBTCD-26NOV3017-2-T96499.99"
    assert first.strikes == (91499.99, 93999.99, 96499.99, 98999.99, 101499.99)
    for s in ladders:
        assert list(s.strikes) == sorted(s.strikes)
        assert all(t.startswith(s.event_ticker + "-") for t in s.tickers)
    (ex_set,) = exclusive
    assert ex_set.exhaustive and ex_set.n == 6
    assert ex_set.tickers[0] == "KXHIGHNY-26NOV29-T45"
    assert ex_set.tickers[1] == "KXHIGHNY-26NOV29-B45.5"
    assert ex_set.tickers[-1] == "KXHIGHNY-26NOV29-T52"
    by_ticker = {i.ticker: i for i in infos}
    low, mid, high = (by_ticker[ex_set.tickers[i]] for i in (0, 1, -1))
    assert (low.strike_type, low.floor_strike, low.cap_strike) == ("less", None, 45.0)
    assert (mid.strike_type, mid.floor_strike, mid.cap_strike) == ("between", 45.0, 46.0)
    assert (high.strike_type, high.floor_strike, high.cap_strike) == ("greater", 52.0, None)
    assert all(by_ticker[t].mutually_exclusive for t in ex_set.tickers)
    for info in infos:
        assert info.ticker == info.ticker.upper()
        assert "{" not in info.rules
        if info.series_ticker != "KXCPIYOY":
            assert info.subtitle in info.rules
    # the single market is an event of its own, independent
    calm = [s for s in structures.values() if s.kind is EventKind.INDEPENDENT]
    assert len(calm) == 1 and calm[0].n == 1
    # every leg's p0 is where its latent probability starts
    sc = load_scenario("event-ladder")
    assert sc.event is not None
    for leg, t in zip(sc.event.legs, first.tickers, strict=True):
        assert ex.latent_probability(t) == pytest.approx(leg.p0, abs=1e-12)


@pytest.mark.parametrize("name", ["event-ladder", "event-exclusive"])
async def test_every_leg_streams_like_a_market(name: str) -> None:
    ex = SimExchange.from_scenarios([name], seed=1, duration=120)
    counts = {t: {BookSnapshot: 0, BookDelta: 0, Trade: 0} for t in ex.tickers}
    async for ev in ex.stream(ex.tickers):
        if type(ev) in counts[ev.ticker]:
            counts[ev.ticker][type(ev)] += 1
    sc = load_scenario(name)
    assert sc.event is not None
    for leg, t in zip(sc.event.legs, ex.tickers, strict=True):
        c = counts[t]
        assert c[BookSnapshot] == 1
        assert c[BookDelta] > 0.7 * leg.book.refresh_rate * 120, (t, c)
        assert c[Trade] >= 5, (t, c)
    assert ex.clock.now() == DEFAULT_START_TS + 120


def test_copies_of_an_event_are_separate_events() -> None:
    ex = SimExchange.from_scenarios(["event-exclusive", "event-exclusive"], seed=2, duration=600)
    a, b = ex.event_drivers.values()
    assert a is not b
    ex.run_until(DEFAULT_START_TS + 300)
    t = DEFAULT_START_TS + 300
    assert not np.allclose(a.probabilities(t), b.probabilities(t))
    second = [x for x in ex.tickers if x.startswith("KXHIGHNY-26NOV29-2-")]
    assert len(second) == 6
    assert ex.latent_probability(second[0]) == pytest.approx(float(b.probabilities(t)[0]))


# -- instantaneous consistency ----------------------------------------------------------------


async def _run_checking(name: str, seed: int, duration: float) -> tuple[SimExchange, np.ndarray]:
    """Stream ``name``; at every event read every leg's latent probability (the clock's
    instant); return the exchange and the per-second samples (rows: seconds, cols: legs)."""
    ex = SimExchange.from_scenarios([name], seed=seed, duration=duration)
    (driver,) = ex.event_drivers.values()
    tickers = ex.tickers
    kind = driver.kind
    samples: list[list[float]] = []
    next_sample = DEFAULT_START_TS
    n = 0
    async for ev in ex.stream(tickers):
        n += 1
        p = np.array([ex.latent_probability(t) for t in tickers])
        assert np.all((p > 0) & (p < 1))
        if kind == "ladder":
            assert np.all(np.diff(p) <= 0.0), (ev, p)
        else:
            assert abs(float(p.sum()) - 1.0) <= 1e-9, (ev, p)
        if ev.ts >= next_sample:
            samples.append(p.tolist())
            next_sample += 1.0
    assert n > 1000
    return ex, np.array(samples)


async def test_ladder_is_monotone_at_every_event_and_legs_move_together() -> None:
    _, samples = await _run_checking("event-ladder", seed=5, duration=300)
    dx = np.diff(_logit(samples), axis=0)
    corr = np.corrcoef(dx.T)
    # every rung's logit moves by the same dX: correlation 1 (up to the clip at ±30)
    assert corr.min() > 0.999, corr
    assert dx.std(axis=0).min() > 0  # and it does move


async def test_exclusive_set_sums_to_one_at_every_event() -> None:
    _, samples = await _run_checking("event-exclusive", seed=5, duration=300)
    dx = np.diff(_logit(samples), axis=0)
    assert dx.std(axis=0).min() > 0
    corr = np.corrcoef(dx.T)
    off = corr[~np.eye(len(corr), dtype=bool)]
    assert off.mean() < 0  # one bucket's rise is the others' fall, on average


def _two_outcomes() -> Scenario:
    legs = [
        {"code": "KC", "p0": 0.57, "subtitle": "Kansas City"},
        {"code": "DEN", "p0": 0.43, "subtitle": "Denver"},
    ]
    event = {"kind": "exclusive", "legs": legs}
    return _variant("event-exclusive", event=event)


async def test_two_outcome_set_legs_move_against_each_other() -> None:
    _, samples = await _run_checking_sc(_two_outcomes(), seed=2, duration=240)
    dx = np.diff(_logit(samples), axis=0)
    assert np.corrcoef(dx.T)[0, 1] < -0.999
    assert np.allclose(samples.sum(axis=1), 1.0, atol=1e-12)


async def _run_checking_sc(sc: Scenario, seed: int, duration: float) -> tuple[SimExchange, Any]:
    ex = SimExchange([sc], seed=seed, duration=duration)
    samples: list[list[float]] = []
    next_sample = DEFAULT_START_TS
    async for ev in ex.stream(ex.tickers):
        if ev.ts >= next_sample:
            samples.append([ex.latent_probability(t) for t in ex.tickers])
            next_sample += 1.0
    return ex, np.array(samples)


def _driver(sc: Scenario, seed: int, close_after: float) -> EventDriver:
    assert sc.event is not None
    return EventDriver(
        sc.latent,
        sc.event,
        market_seed(seed, "EV"),
        DEFAULT_START_TS,
        DEFAULT_START_TS + close_after,
    )


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(["ladder", "exclusive"]),
    raw=st.lists(st.floats(0.02, 0.98), min_size=2, max_size=7),
    seed=st.integers(0, 2**32),
    times=st.lists(st.floats(0.0, 7200.0), min_size=1, max_size=40),
)
def test_invariants_hold_for_any_legs_and_times(
    kind: str, raw: list[float], seed: int, times: list[float]
) -> None:
    sc = load_scenario("event-ladder" if kind == "ladder" else "event-exclusive")
    p0 = sorted(raw, reverse=True) if kind == "ladder" else [r / sum(raw) for r in raw]
    assert sc.event is not None
    legs = tuple(
        type(sc.event.legs[0])(
            code=f"L{i}",
            p0=p,
            subtitle="",
            strike_type="greater" if kind == "ladder" else "",
            floor_strike=float(i) if kind == "ladder" else None,
            cap_strike=None,
            book=sc.book,
            takers=sc.takers,
        )
        for i, p in enumerate(p0)
    )
    event = EventParams(kind=kind, legs=legs)
    driver = EventDriver(
        sc.latent, event, market_seed(seed, "EV"), DEFAULT_START_TS, DEFAULT_START_TS + 9000
    )
    assert np.allclose(driver.probabilities(DEFAULT_START_TS), p0, atol=1e-12)
    for t in sorted(times):
        p = driver.probabilities(DEFAULT_START_TS + t)
        if kind == "ladder":
            assert np.all(np.diff(p) <= 0.0)
        else:
            assert abs(float(p.sum()) - 1.0) <= 1e-9


# -- the driver -------------------------------------------------------------------------------


def test_path_does_not_depend_on_how_it_is_asked_for() -> None:
    """The grid is drawn in blocks as legs ask; the path is the same whatever the order,
    chunking or extra diagnostic reads (so a test reading it does not change the run)."""
    sc = load_scenario("event-exclusive")
    times = DEFAULT_START_TS + np.sort(np.random.default_rng(0).uniform(0, 3600, 5000))
    a = _driver(sc, 9, 86_400)
    whole = np.stack([a.leg_x(i, times) for i in range(a.n)])
    b = _driver(sc, 9, 86_400)
    parts = [np.empty(0)] * b.n
    for lo in range(0, len(times), 37):
        for i in range(b.n):
            b.probabilities(float(times[lo]))  # a diagnostic read in between
            parts[i] = np.concatenate((parts[i], b.leg_x(i, times[lo : lo + 37])))
    assert np.array_equal(whole, np.stack(parts))
    assert not np.array_equal(
        whole, np.stack([_driver(sc, 10, 86_400).leg_x(i, times) for i in range(a.n)])
    )


def test_switches_and_jumps_belong_to_the_driver() -> None:
    sc = _variant(
        "event-ladder",
        latent={
            "regimes": {
                "calm": {"sigma": 0.003, "mean_duration": 120, "activity": 1.0},
                "volatile": {"sigma": 0.02, "mean_duration": 60, "activity": 3.0},
            },
            "jump_rate": 0.01,
            "jump_sigma": 0.5,
        },
    )
    d = _driver(sc, 4, 86_400)
    views = [d.view(i) for i in range(d.n)]
    t = DEFAULT_START_TS
    kinds: list[bool] = []
    for _ in range(40):
        nxt = {v.next_rare() for v in views}
        assert len(nxt) == 1  # every leg sees the same next rare event
        (r,) = nxt
        assert r > t
        before = [v.p for v in views]
        act_before = views[0].activity
        for v in views:
            v.to(r)
        after = [v.p for v in views]
        is_jump = r in d._jump_t
        if is_jump:  # the jump reprices every rung the same way
            signs = {
                np.sign(_logit(np.array(after)) - _logit(np.array(before)))[i] for i in range(d.n)
            }
            assert len(signs) == 1
        else:
            assert views[0].activity != act_before
            assert all(v.regime == views[0].regime for v in views)
        kinds.append(is_jump)
        t = r
    assert any(kinds) and not all(kinds)  # both kinds came up


async def test_driver_memory_stays_bounded_over_a_long_run() -> None:
    thin = {"refresh_rate": 3, "initial_levels": 5}
    sc = _variant(
        "event-ladder",
        book={**_raw("event-ladder")["book"], **thin},
        takers={**_raw("event-ladder")["takers"], "rate": 0.3},
    )
    hours = 8
    ex = SimExchange([sc], seed=1, duration=hours * 3600.0)
    (driver,) = ex.event_drivers.values()
    held_after_first_hour = 0
    async for ev in ex.stream(ex.tickers):
        if ev.ts - DEFAULT_START_TS < 3600:
            held_after_first_hour = driver.max_points
    total_points = hours * 3600 / driver.step
    # a leg draws at most ~CHUNK_SECONDS (256 events for thin legs) ahead and the driver keeps
    # from the start of the slowest leg's last-but-one batch, plus one block being drawn
    assert driver.max_points < 0.02 * total_points
    assert driver.max_points <= max(held_after_first_hour, 1) * 1.5
    assert driver.points_held <= driver.max_points
    assert driver.floor_ts > DEFAULT_START_TS + (hours - 1) * 3600
    assert CHUNK_SECONDS > 0


# -- settlement -------------------------------------------------------------------------------


def _closing_soon(name: str) -> Scenario:
    return _variant(name, market={**_raw(name)["market"], "close_offset": 90})


@pytest.mark.parametrize("name", ["event-ladder", "event-exclusive"])
async def test_event_settles_in_one_draw(name: str) -> None:
    sc = _closing_soon(name)
    seen_yes: set[tuple[bool, ...]] = set()
    for seed in range(8):
        ex = SimExchange([sc], seed=seed)
        settled: dict[str, Outcome] = {}
        async for ev in ex.stream(ex.tickers):
            if isinstance(ev, Settlement):
                settled[ev.ticker] = ev.result
        assert set(settled) == set(ex.tickers)
        (driver,) = ex.event_drivers.values()
        p_close = driver.probabilities(driver.close_ts)
        assert [ex.latent_probability(t) for t in ex.tickers] == pytest.approx(p_close.tolist())
        yes = tuple(settled[t] is Outcome.YES for t in ex.tickers)
        assert all(ex.result(t) is settled[t] for t in ex.tickers)
        if name == "event-ladder":
            # nested: a lower strike is YES whenever a higher one is (a prefix of the ladder)
            k = sum(yes)
            assert yes == tuple(i < k for i in range(len(yes))), yes
        else:
            assert sum(yes) == 1, yes
        seen_yes.add(yes)
    assert len(seen_yes) >= 2  # not one fixed outcome


@pytest.mark.parametrize("kind", ["ladder", "exclusive"])
def test_settlement_frequencies_match_the_probabilities_at_close(kind: str) -> None:
    sc = load_scenario(f"event-{kind}")
    n_seeds = 1500
    yes = np.zeros(sc.n_markets)
    p_close = np.zeros(sc.n_markets)
    for seed in range(n_seeds):
        d = _driver(sc, seed, 60)
        for i in range(d.n):
            d.view(i).to(d.close_ts)
        out = d.outcome()
        assert d.outcome() is out  # drawn once
        yes += np.array(out, dtype=float)
        p_close += d.probabilities(d.close_ts)
    freq, p = yes / n_seeds, p_close / n_seeds
    se = np.sqrt(p * (1 - p) / n_seeds)
    assert np.all(np.abs(freq - p) < 4 * se + 1e-9), (freq, p)


# -- determinism ----------------------------------------------------------------------------


async def _digest(names: list[str], seed: int, duration: float = 60.0) -> tuple[str, int]:
    ex = SimExchange.from_scenarios(names, seed=seed, duration=duration)
    h = hashlib.sha256()
    n = 0
    async for ev in ex.stream(ex.tickers):
        h.update(repr(ev).encode())
        n += 1
    return h.hexdigest(), n


@pytest.mark.parametrize("name", ["event-ladder", "event-exclusive"])
async def test_same_seed_same_stream_different_seed_different(name: str) -> None:
    a = await _digest([name, "calm"], 21)
    assert a == await _digest([name, "calm"], 21)
    assert a[0] != (await _digest([name, "calm"], 22))[0]
    assert a[1] > 5000


async def test_single_markets_are_untouched_by_an_event_beside_them() -> None:
    """A single market's stream depends on its own ticker and the seed only."""

    async def calm_only(names: list[str]) -> str:
        ex = SimExchange.from_scenarios(names, seed=4, duration=60)
        (calm,) = [t for t in ex.tickers if t.startswith("KXCPIYOY")]
        h = hashlib.sha256()
        async for ev in ex.stream([calm]):
            h.update(repr(ev).encode())
        return h.hexdigest()

    assert await calm_only(["calm"]) == await calm_only(["event-ladder", "calm"])


# -- bad input --------------------------------------------------------------------------------


def _ladder_with(legs: list[dict[str, Any]]) -> dict[str, Any]:
    data = copy.deepcopy(_raw("event-ladder"))
    data["event"]["legs"] = legs
    return data


def _exclusive_with(legs: list[dict[str, Any]]) -> dict[str, Any]:
    data = copy.deepcopy(_raw("event-exclusive"))
    data["event"]["legs"] = legs
    return data


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (
            _ladder_with([{"strike": 1.0, "p0": 0.4}, {"strike": 2.0, "p0": 0.6}]),
            r"event\.legs\[1\]\.p0: 0\.6 is above .* non-increasing",
        ),
        (
            _ladder_with([{"strike": 2.0, "p0": 0.6}, {"strike": 1.0, "p0": 0.4}]),
            r"event\.legs\[1\]\.strike: 1\.0 is not above .* must ascend",
        ),
        (
            _ladder_with([{"strike": 1.0, "p0": 0.6}, {"strike": 1.0, "p0": 0.4}]),
            r"event\.legs\[1\]\.strike",
        ),
        (
            _ladder_with([{"strike": 1.0, "p0": 0.6, "colour": "red"}, {"strike": 2, "p0": 0.4}]),
            r"event\.legs\[0\]: unknown key\(s\) colour",
        ),
        (
            _ladder_with([{"strike": 1.0, "p0": 0.6}, {"strike": 2.0, "p0": float("nan")}]),
            r"event\.legs\[1\]\.p0: not finite",
        ),
        (
            _ladder_with([{"strike": 1.0, "p0": 0.6}, {"p0": 0.4}]),
            r"event\.legs\[1\]\.strike: required",
        ),
        (
            _ladder_with(
                [{"strike": 1.0, "p0": 0.6, "book": {"refresh_rat": 3}}, {"strike": 2, "p0": 0.4}]
            ),
            r"event\.legs\[0\]\.book: unknown key\(s\) refresh_rat",
        ),
        (
            _ladder_with([{"strike": 1.0, "p0": 0.6}]),
            r"event\.legs: expected a list of at least two",
        ),
        (
            _exclusive_with([{"code": "A", "p0": 0.5}, {"code": "B", "p0": 0.4}]),
            r"event\.legs: p0 must sum to 1 .* got 0\.9",
        ),
        (
            _exclusive_with([{"cap": 5, "p0": 0.5}, {"floor": 4, "p0": 0.5}]),
            r"event\.legs\[1\]\.floor: 4\.0 is below the previous bucket's cap 5\.0",
        ),
        (
            _exclusive_with([{"code": "A", "p0": 0.5}, {"code": "a", "p0": 0.5}]),
            r"two legs share the code A",
        ),
        (
            _exclusive_with([{"strike": 3, "p0": 0.5}, {"code": "B", "p0": 0.5}]),
            r"event\.legs\[0\]\.strike: an exclusive leg has floor and/or cap",
        ),
    ],
)
def test_bad_event_sections_are_rejected_naming_what_is_wrong(
    data: dict[str, Any], match: str
) -> None:
    with pytest.raises(CfaValueError, match=match):
        parse_scenario(data, "bad")


def test_bad_event_files_are_rejected(tmp_path: Path) -> None:
    def write(data: dict[str, Any]) -> str:
        path = tmp_path / "ev.yaml"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        return str(path)

    data = copy.deepcopy(_raw("event-ladder"))
    data["event"]["kinds"] = "ladder"
    with pytest.raises(CfaValueError, match=r"^ev\.event: unknown key\(s\) kinds"):
        load_scenario(write(data))
    data = copy.deepcopy(_raw("event-ladder"))
    data["event"]["kind"] = "bracket"
    with pytest.raises(CfaValueError, match=r"event\.kind: 'bracket' is not one of ladder"):
        load_scenario(write(data))
    data = copy.deepcopy(_raw("event-ladder"))
    data["latent"]["p0"] = 0.5
    with pytest.raises(CfaValueError, match=r"latent\.p0: an event scenario gives p0 per leg"):
        load_scenario(write(data))
    data = copy.deepcopy(_raw("event-ladder"))
    data["market"]["ticker"] = "{event_ticker}-T1"
    with pytest.raises(CfaValueError, match=r"market\.ticker: .* must contain \{leg\}"):
        load_scenario(write(data))
    calm = yaml.safe_load(
        resources.files("cfa.exchange").joinpath("scenarios/calm.yaml").read_text("utf-8")
    )
    calm["market"]["ticker"] = "{event_ticker}-{leg}"
    with pytest.raises(CfaValueError, match=r"\{leg\} needs an event section"):
        load_scenario(write(calm))


def test_leg_views_refuse_to_go_back() -> None:
    d = _driver(load_scenario("event-ladder"), 0, 3600)
    v = d.view(0)
    assert isinstance(v, LegView)
    v.to(DEFAULT_START_TS + 10)
    with pytest.raises(ValueError, match="time went back"):
        v.path(np.array([DEFAULT_START_TS + 5.0]), np.zeros(1))
    with pytest.raises(ValueError, match="leg index 9"):
        d.view(9)
    assert math.isfinite(v.p)
