"""Named simulator scenarios: market metadata and process parameters, defined as YAML data.

A scenario file (``cfa/exchange/scenarios/<name>.yaml``) has four sections, and a fifth,
``event``, for a scenario of several markets of one Kalshi event; every key is checked and
unknown keys are rejected, so a typo never silently falls back to a default.

``market`` — how the market looks, like a Kalshi market:
    ``series_ticker``; ``event_ticker`` and ``ticker`` as format strings (``{series_ticker}``,
    ``{event_ticker}``, ``{close:<strftime>}`` and, in an event scenario, ``{leg}`` — the leg's
    ``code`` — are filled in, the result is upper-cased);
    ``title``, ``subtitle``, ``rules`` (``{close_time}`` becomes the ISO close time);
    ``price_level_structure`` (``linear_cent``, ``deci_cent``, ``tapered_deci_cent``) or explicit
    ``price_ranges`` (list of ``{start, end, step}`` dollar strings); ``fee_type`` and
    ``fee_multiplier``; ``open_offset`` / ``close_offset`` (seconds from the run's start) and
    ``settlement_delay`` (seconds from close to settlement).

``latent`` — the true probability (see :mod:`cfa.exchange.sim.latent`):
    ``p0``; ``regimes.calm`` / ``regimes.volatile`` with ``sigma`` (logit units per √second),
    ``mean_duration`` (seconds) and ``activity`` (multiplier on all event rates);
    ``start_regime``; ``jump_rate`` (jumps per second) and ``jump_sigma`` (logit units);
    ``close_vol_horizon`` (seconds; 0 = off) and ``close_vol_cap`` (σ multiplier cap).

``book`` — background resting liquidity (see :mod:`cfa.exchange.sim.liquidity`):
    ``refresh_rate`` (add/cancel events per second, calm regime); ``half_spread_ticks`` (the
    background touch is about twice this many ticks wide; 0.5 = one tick);
    ``ladder_mean_ticks`` / ``ladder_max_ticks`` (how far from the touch refreshes land);
    ``level_size`` (contracts, target depth at the touch) and ``depth_slope`` (relative growth
    per tick away); ``size_median`` (contracts) and ``size_sigma`` (log-normal σ) of each
    add/cancel; ``stale_cancel_prob``; ``initial_levels``; ``lag`` (seconds: the background
    makers centre on an exponential average of the latent logit with this time constant, so the
    book trails the truth and informed takers have something to take; 0 = no lag);
    ``far_share`` (share of refreshes placed anywhere behind the reference, out to the edge of
    the grid, instead of near the touch: broad books with distant levels); ``burst_sigma`` and
    ``burst_time`` (seconds): the log of the activity rate follows an Ornstein–Uhlenbeck
    process with this stationary deviation and time constant, so updates come in bursts as on
    Kalshi, with the mean rate unchanged (0 = Poisson).

``takers`` — market orders:
    ``rate`` (takers per second, both sides, calm regime); ``k`` (1/dollar: the sweep depth
    from the mid is Exp(k), so takers reach distance δ at rate ``A·e^(−kδ)``); ``size_median``
    (contracts) and ``size_sigma``; ``informed_share`` (0..1) and ``informed_edge`` (dollars).

``event`` — several markets of one event driven by one latent process (see
:mod:`cfa.exchange.sim.event`); the ``market`` section then describes every leg (its ``ticker``
must use ``{leg}``; ``{subtitle}`` in ``rules`` becomes the leg's subtitle), the ``latent``
section gives the event driver's regimes, jumps and close boost (and no ``p0``: each leg has
its own), and ``book`` / ``takers`` are every leg's defaults:
    ``kind``: ``ladder`` (markets "above strike ``K_i``", strike_type ``greater``: nested YES
    sets) or ``exclusive`` (a mutually exclusive, exhaustive set: exactly one market resolves
    YES); ``grid_step`` (seconds, default 0.1: the driver's time grid); ``legs``, a list of at
    least two mappings with
    ``code`` (the ticker's ``{leg}``; default ``T<strike>`` on a ladder, ``T<cap>`` / ``B<mid>`` /
    ``T<floor>`` for a bucket below / between / above), ``p0`` (the leg's probability of YES at
    the start), ``subtitle``, and ``strike`` (ladder: Kalshi's ``floor_strike``, ascending
    along the list; ``p0`` must then be non-increasing) or ``floor`` / ``cap`` (exclusive,
    optional: a range bucket; a first bucket with only ``cap`` is "below", a last with only
    ``floor`` "above", the buckets ascending and not overlapping; ``p0`` must sum to 1), and
    optional ``book`` / ``takers`` mappings that override keys of the top-level sections for
    that leg (thinner books away from the money, say).

Sizes in the files are contracts; the parsed dataclasses hold count units (0.01 contract) and
price units ($0.0001) as in :mod:`cfa.core.types`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from cfa.core.grid import STRUCTURES, PriceGrid
from cfa.core.types import (
    ONE_DOLLAR,
    PRICE_SCALE,
    CfaValueError,
    FeeSchedule,
    MarketInfo,
    Price,
    PriceRange,
    Qty,
    contracts,
)

_SCENARIO_DIR = "scenarios"

FEE_TYPES = ("quadratic", "quadratic_with_maker_fees", "quadratic_with_combo_maker_fees")
"""Kalshi fee types the fee functions of :mod:`cfa.core.grid` model."""


@dataclass(frozen=True, slots=True)
class RegimeParams:
    """One volatility regime: ``sigma`` in logit units per √second, ``mean_duration`` seconds."""

    sigma: float
    mean_duration: float
    activity: float = 1.0


@dataclass(frozen=True, slots=True)
class LatentParams:
    """Parameters of the latent probability process."""

    p0: float
    calm: RegimeParams
    volatile: RegimeParams
    start_regime: str = "calm"
    jump_rate: float = 0.0
    jump_sigma: float = 0.0
    close_vol_horizon: float = 0.0
    close_vol_cap: float = 1.0


@dataclass(frozen=True, slots=True)
class BookParams:
    """Background liquidity. Sizes in count units (0.01 contract)."""

    refresh_rate: float
    half_spread_ticks: float
    ladder_mean_ticks: float
    ladder_max_ticks: int
    level_size: Qty
    depth_slope: float
    size_median: Qty
    size_sigma: float
    stale_cancel_prob: float
    initial_levels: int
    lag: float = 0.0
    far_share: float = 0.0
    burst_sigma: float = 0.0
    burst_time: float = 5.0


@dataclass(frozen=True, slots=True)
class TakerParams:
    """Taker flow. ``k`` in 1/dollar, sizes in count units, ``informed_edge`` in price units."""

    rate: float
    k: float
    size_median: Qty
    size_sigma: float
    informed_share: float
    informed_edge: Price


@dataclass(frozen=True, slots=True)
class MarketTemplate:
    """Kalshi-like metadata of a scenario's market, before the run's start time is known."""

    series_ticker: str
    event_ticker: str
    ticker: str
    title: str
    price_ranges: tuple[PriceRange, ...]
    price_level_structure: str
    fee: FeeSchedule
    close_offset: float
    open_offset: float = -86_400.0
    settlement_delay: float = 0.0
    subtitle: str = ""
    rules: str = ""


EVENT_KINDS = ("ladder", "exclusive")
"""Kinds of an ``event`` section: a strike ladder or a mutually exclusive, exhaustive set."""


@dataclass(frozen=True, slots=True)
class LegParams:
    """One market of an event scenario.

    ``code`` fills the ticker's ``{leg}``; ``p0`` is its probability of YES at the start;
    ``strike_type``, ``floor_strike`` and ``cap_strike`` are Kalshi's fields (``greater`` with
    the strike on a ladder; ``less`` / ``between`` / ``greater`` for range buckets, empty for an
    exclusive set without strikes). ``book`` and ``takers`` are the leg's own flow parameters.
    """

    code: str
    p0: float
    subtitle: str
    strike_type: str
    floor_strike: float | None
    cap_strike: float | None
    book: BookParams
    takers: TakerParams


@dataclass(frozen=True, slots=True)
class EventParams:
    """An event scenario's structure: ``kind`` (:data:`EVENT_KINDS`), its legs in order (a
    ladder by ascending strike), and the driver's ``grid_step`` in seconds."""

    kind: str
    legs: tuple[LegParams, ...]
    grid_step: float = 0.1


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named scenario: one market's metadata plus the processes that drive it.

    With ``event`` set it describes several markets of one event instead (see
    :meth:`market_infos` and :meth:`leg_scenario`); ``latent.p0`` is then the first leg's.
    """

    name: str
    description: str
    market: MarketTemplate
    latent: LatentParams
    book: BookParams
    takers: TakerParams
    event: EventParams | None = None

    @property
    def n_markets(self) -> int:
        """Markets one entry of this scenario makes: 1, or the event's legs."""
        return 1 if self.event is None else len(self.event.legs)

    def leg_scenario(self, i: int) -> Scenario:
        """Leg ``i``'s scenario: this one with the leg's book and taker parameters."""
        if self.event is None:
            raise CfaValueError(f"{self.name}: not an event scenario")
        leg = self.event.legs[i]
        return dataclasses.replace(
            self,
            book=leg.book,
            takers=leg.takers,
            latent=dataclasses.replace(self.latent, p0=leg.p0),
        )

    def event_ticker(self, start_ts: float, copy: int = 0) -> str:
        """The event ticker for a run starting at ``start_ts``.

        An event scenario's copy ``n`` (``n`` ≥ 1) gets ``-<n+1>`` appended, so several
        entries of it make distinct events; a single-market scenario's copies share it.
        """
        m = self.market
        close = datetime.fromtimestamp(start_ts + m.close_offset, tz=UTC)
        event_ticker = m.event_ticker.format(series_ticker=m.series_ticker, close=close).upper()
        if copy and self.event is not None:
            event_ticker = f"{event_ticker}-{copy + 1}"
        return event_ticker

    def market_infos(self, start_ts: float, copy: int = 0) -> list[MarketInfo]:
        """Every market of one entry of this scenario (one, or each leg in the event's order).

        A leg's ticker is ``market.ticker`` with ``{leg}`` and the (copy-suffixed) event ticker
        filled in, so copy ``n`` of ``KXBTCD-26NOV3017-T96499.99`` is
        ``KXBTCD-26NOV3017-2-T96499.99``. Ladder legs say ``strike_type`` ``greater`` with
        their ``floor_strike``; exclusive legs say ``mutually_exclusive`` and ``exhaustive``,
        so :func:`cfa.core.events.event_structures` reads the event's structure off them.
        """
        if self.event is None:
            return [self.market_info(start_ts, copy)]
        m = self.market
        close_ts = start_ts + m.close_offset
        close = datetime.fromtimestamp(close_ts, tz=UTC)
        event_ticker = self.event_ticker(start_ts, copy)
        exclusive = self.event.kind == "exclusive"
        out: list[MarketInfo] = []
        for leg in self.event.legs:
            ticker = m.ticker.format(
                series_ticker=m.series_ticker, event_ticker=event_ticker, close=close, leg=leg.code
            ).upper()
            if copy and "{event_ticker}" not in m.ticker:
                ticker = f"{ticker}-{copy + 1}"
            rules = m.rules.replace("{close_time}", close.strftime("%Y-%m-%dT%H:%M:%SZ"))
            out.append(
                self._info(
                    ticker,
                    event_ticker,
                    start_ts,
                    leg.subtitle,
                    rules.replace("{subtitle}", leg.subtitle),
                    strike_type=leg.strike_type,
                    floor_strike=leg.floor_strike,
                    cap_strike=leg.cap_strike,
                    mutually_exclusive=exclusive,
                    exhaustive=exclusive,
                )
            )
        return out

    def market_info(self, start_ts: float, copy: int = 0) -> MarketInfo:
        """The market as Kalshi would describe it, for a run starting at ``start_ts``.

        ``copy`` numbers several markets of the same scenario in one run: copy 0 gets the
        template's ticker, copy ``n`` gets ``-<n+1>`` appended, so tickers are distinct. For
        an event scenario this is its first leg (:meth:`market_infos` has them all).
        """
        if self.event is not None:
            return self.market_infos(start_ts, copy)[0]
        m = self.market
        close_ts = start_ts + m.close_offset
        close = datetime.fromtimestamp(close_ts, tz=UTC)
        event_ticker = m.event_ticker.format(series_ticker=m.series_ticker, close=close).upper()
        ticker = m.ticker.format(
            series_ticker=m.series_ticker, event_ticker=event_ticker, close=close
        ).upper()
        if copy:
            ticker = f"{ticker}-{copy + 1}"
        rules = m.rules.replace("{close_time}", close.strftime("%Y-%m-%dT%H:%M:%SZ"))
        return self._info(ticker, event_ticker, start_ts, m.subtitle, rules)

    def _info(
        self,
        ticker: str,
        event_ticker: str,
        start_ts: float,
        subtitle: str,
        rules: str,
        **structure: Any,
    ) -> MarketInfo:
        """One market of this scenario as Kalshi would describe it; ``structure`` holds an
        event leg's strike and exclusivity fields."""
        m = self.market
        return MarketInfo(
            ticker=ticker,
            event_ticker=event_ticker,
            series_ticker=m.series_ticker,
            title=m.title,
            price_ranges=m.price_ranges,
            close_ts=start_ts + m.close_offset,
            open_ts=start_ts + m.open_offset,
            price_level_structure=m.price_level_structure,
            fee=m.fee,
            subtitle=subtitle,
            rules=rules,
            status="active",
            **structure,
        )


# -- loading -------------------------------------------------------------------------------------


def _scenario_root() -> Any:
    return resources.files("cfa.exchange").joinpath(_SCENARIO_DIR)


def known_scenarios() -> list[str]:
    """Names of the scenarios shipped with cfa, sorted."""
    root = _scenario_root()
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_scenario(name: str) -> Scenario:
    """Load a shipped scenario by name, or any scenario file by path (ending in ``.yaml``).

    Raises :class:`ValueError` for an unknown name (the message lists the known ones) and
    :class:`cfa.core.types.CfaValueError` (a ``ValueError``) for a malformed file.
    """
    if name.endswith((".yaml", ".yml")):
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"scenario file not found: {name}")
        return parse_scenario(yaml.safe_load(path.read_text(encoding="utf-8")), path.stem)
    known = known_scenarios()
    if name not in known:
        raise ValueError(f"unknown scenario {name!r} (known: {', '.join(known)})")
    text = _scenario_root().joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    return parse_scenario(yaml.safe_load(text), name)


class _Section:
    """Typed, strict access to one mapping of a scenario file."""

    def __init__(self, data: object, where: str, allowed: tuple[str, ...]) -> None:
        if not isinstance(data, Mapping):
            raise CfaValueError(f"{where}: expected a mapping")
        unknown = sorted(str(k) for k in data if k not in allowed)
        if unknown:
            raise CfaValueError(
                f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(allowed)})"
            )
        self.data = data
        self.where = where

    def raw(self, key: str, default: object = ...) -> object:
        if key in self.data:
            return self.data[key]
        if default is ...:
            raise CfaValueError(f"{self.where}.{key}: required")
        return default

    def num(
        self,
        key: str,
        default: float | None = None,
        lo: float | None = None,
        hi: float | None = None,
    ) -> float:
        v = self.raw(key, ... if default is None else default)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise CfaValueError(f"{self.where}.{key}: expected a number, got {v!r}")
        f = float(v)
        if not math.isfinite(f):
            raise CfaValueError(f"{self.where}.{key}: not finite")
        if lo is not None and f < lo:
            raise CfaValueError(f"{self.where}.{key}: {f} is below {lo}")
        if hi is not None and f > hi:
            raise CfaValueError(f"{self.where}.{key}: {f} is above {hi}")
        return f

    def text(self, key: str, default: str | None = None) -> str:
        v = self.raw(key, ... if default is None else default)
        if not isinstance(v, str):
            raise CfaValueError(f"{self.where}.{key}: expected a string, got {v!r}")
        return v

    def section(self, key: str, allowed: tuple[str, ...]) -> _Section:
        return _Section(self.raw(key), f"{self.where}.{key}", allowed)


def _grid_ranges(sec: _Section) -> tuple[tuple[PriceRange, ...], str]:
    structure = sec.text("price_level_structure", "")
    if "price_ranges" in sec.data:
        raw = sec.raw("price_ranges")
        if not isinstance(raw, list):
            raise CfaValueError(f"{sec.where}.price_ranges: expected a list")
        grid = PriceGrid.from_price_ranges(raw)
        return grid.ranges, structure or "custom"
    if structure not in STRUCTURES:
        known = ", ".join(sorted(STRUCTURES))
        raise CfaValueError(
            f"{sec.where}.price_level_structure: {structure!r} is not one of {known} "
            "(or give price_ranges)"
        )
    return PriceGrid.from_structure(structure).ranges, structure


def _check_symmetric(ranges: tuple[PriceRange, ...], where: str) -> None:
    grid = PriceGrid(ranges)
    p: Price | None = grid.lo
    while p is not None:
        if not grid.is_valid(ONE_DOLLAR - p):
            raise CfaValueError(
                f"{where}: grid is not symmetric (YES {p} has no NO price); the simulator "
                "needs every YES price's NO price on the grid, as in Kalshi's structures"
            )
        p = grid.next_up(p)


_MARKET_KEYS = (
    "series_ticker",
    "event_ticker",
    "ticker",
    "title",
    "subtitle",
    "rules",
    "price_level_structure",
    "price_ranges",
    "fee_type",
    "fee_multiplier",
    "open_offset",
    "close_offset",
    "settlement_delay",
)
_LATENT_KEYS = (
    "p0",
    "regimes",
    "start_regime",
    "jump_rate",
    "jump_sigma",
    "close_vol_horizon",
    "close_vol_cap",
)
_REGIME_KEYS = ("sigma", "mean_duration", "activity")
_BOOK_KEYS = (
    "refresh_rate",
    "half_spread_ticks",
    "ladder_mean_ticks",
    "ladder_max_ticks",
    "level_size",
    "depth_slope",
    "size_median",
    "size_sigma",
    "stale_cancel_prob",
    "initial_levels",
    "lag",
    "far_share",
    "burst_sigma",
    "burst_time",
)
_TAKER_KEYS = ("rate", "k", "size_median", "size_sigma", "informed_share", "informed_edge")


_EVENT_KEYS = ("kind", "legs", "grid_step")
_LEG_KEYS = ("code", "p0", "subtitle", "strike", "floor", "cap", "book", "takers")

_P_LO, _P_HI = 1e-4, 1 - 1e-4
"""Bounds of every starting probability (``p0``)."""


def _book(b: _Section) -> BookParams:
    return BookParams(
        refresh_rate=b.num("refresh_rate", lo=0.0),
        half_spread_ticks=b.num("half_spread_ticks", 0.5, lo=0.5),
        ladder_mean_ticks=b.num("ladder_mean_ticks", 4.0, lo=0.0),
        ladder_max_ticks=int(b.num("ladder_max_ticks", 20, lo=0)),
        level_size=contracts(b.num("level_size", lo=0.01)),
        depth_slope=b.num("depth_slope", 0.0, lo=0.0),
        size_median=contracts(b.num("size_median", lo=0.01)),
        size_sigma=b.num("size_sigma", 1.0, lo=0.0),
        stale_cancel_prob=b.num("stale_cancel_prob", 0.5, lo=0.0, hi=1.0),
        initial_levels=int(b.num("initial_levels", 10, lo=0)),
        lag=b.num("lag", 0.0, lo=0.0),
        far_share=b.num("far_share", 0.0, lo=0.0, hi=1.0),
        burst_sigma=b.num("burst_sigma", 0.0, lo=0.0, hi=3.0),
        burst_time=b.num("burst_time", 5.0, lo=0.01),
    )


def _takers(t: _Section) -> TakerParams:
    return TakerParams(
        rate=t.num("rate", lo=0.0),
        k=t.num("k", lo=1e-6),
        size_median=contracts(t.num("size_median", lo=0.01)),
        size_sigma=t.num("size_sigma", 1.0, lo=0.0),
        informed_share=t.num("informed_share", 0.0, lo=0.0, hi=1.0),
        informed_edge=round(t.num("informed_edge", 0.0, lo=0.0, hi=0.5) * PRICE_SCALE),
    )


def _override(base: _Section, leg: _Section, key: str, allowed: tuple[str, ...]) -> _Section:
    """The top-level section ``base`` with the leg's ``key`` mapping (if any) laid over it."""
    if key not in leg.data:
        return base
    own = leg.section(key, allowed)
    return _Section({**base.data, **own.data}, own.where, allowed)


def _strike_text(x: float) -> str:
    """A strike as Kalshi writes it in tickers: ``96499.99``, ``45``, ``45.5``."""
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def _event(ev: _Section, book: _Section, takers: _Section, where: str) -> EventParams:
    kind = ev.text("kind")
    if kind not in EVENT_KINDS:
        raise CfaValueError(f"{where}.kind: {kind!r} is not one of {', '.join(EVENT_KINDS)}")
    raw = ev.raw("legs")
    if not isinstance(raw, list) or len(raw) < 2:
        raise CfaValueError(f"{where}.legs: expected a list of at least two legs")
    legs: list[LegParams] = []
    for i, item in enumerate(raw):
        lw = f"{where}.legs[{i}]"
        leg = _Section(item, lw, _LEG_KEYS)
        p0 = leg.num("p0", lo=_P_LO, hi=_P_HI)
        floor: float | None = None
        cap: float | None = None
        if kind == "ladder":
            for bad in ("floor", "cap"):
                if bad in leg.data:
                    raise CfaValueError(f"{lw}.{bad}: a ladder leg has a strike, not {bad}")
            floor = leg.num("strike")
            strike_type = "greater"
            code = f"T{_strike_text(floor)}"
        else:
            if "strike" in leg.data:
                raise CfaValueError(f"{lw}.strike: an exclusive leg has floor and/or cap")
            floor = leg.num("floor") if "floor" in leg.data else None
            cap = leg.num("cap") if "cap" in leg.data else None
            if floor is not None and cap is not None:
                if not cap > floor:
                    raise CfaValueError(f"{lw}: cap {cap} must be above floor {floor}")
                strike_type, code = "between", f"B{_strike_text((floor + cap) / 2)}"
            elif cap is not None:
                strike_type, code = "less", f"T{_strike_text(cap)}"
            elif floor is not None:
                strike_type, code = "greater", f"T{_strike_text(floor)}"
            else:
                strike_type, code = "", ""
        if "code" in leg.data or not code:
            code = leg.text("code")
        if not code or "{" in code or "}" in code:
            raise CfaValueError(f"{lw}.code: must be a non-empty ticker part, got {code!r}")
        legs.append(
            LegParams(
                code=code,
                p0=p0,
                subtitle=leg.text("subtitle", code),
                strike_type=strike_type,
                floor_strike=floor,
                cap_strike=cap,
                book=_book(_override(book, leg, "book", _BOOK_KEYS)),
                takers=_takers(_override(takers, leg, "takers", _TAKER_KEYS)),
            )
        )
    if kind == "ladder":
        for i in range(1, len(legs)):
            a, b = legs[i - 1], legs[i]
            assert a.floor_strike is not None and b.floor_strike is not None
            if not b.floor_strike > a.floor_strike:
                raise CfaValueError(
                    f"{where}.legs[{i}].strike: {b.floor_strike} is not above the previous "
                    f"leg's {a.floor_strike} (a ladder's strikes must ascend)"
                )
            if b.p0 > a.p0:
                raise CfaValueError(
                    f"{where}.legs[{i}].p0: {b.p0} is above the previous leg's {a.p0} (a "
                    "ladder's probabilities must be non-increasing in the strike)"
                )
    else:
        total = math.fsum(leg.p0 for leg in legs)
        if abs(total - 1.0) > 1e-6:
            raise CfaValueError(
                f"{where}.legs: p0 must sum to 1 over a mutually exclusive, exhaustive set, "
                f"got {total:.6g}"
            )
        _check_buckets(legs, where)
    codes = [leg.code.upper() for leg in legs]
    dup = sorted({c for c in codes if codes.count(c) > 1})
    if dup:
        raise CfaValueError(f"{where}.legs: two legs share the code {dup[0]}")
    return EventParams(
        kind=kind, legs=tuple(legs), grid_step=ev.num("grid_step", 0.1, lo=0.01, hi=10.0)
    )


def _check_buckets(legs: list[LegParams], where: str) -> None:
    """Range buckets: all legs have strikes or none; "below" first, "above" last; ascending."""
    typed = [leg.strike_type != "" for leg in legs]
    if not any(typed):
        return
    if not all(typed):
        i = typed.index(False)
        raise CfaValueError(f"{where}.legs[{i}]: needs floor and/or cap like the other legs")
    last = len(legs) - 1
    for i, leg in enumerate(legs):
        if leg.strike_type == "less" and i != 0:
            raise CfaValueError(f"{where}.legs[{i}]: only the first bucket may have no floor")
        if leg.strike_type == "greater" and i != last:
            raise CfaValueError(f"{where}.legs[{i}]: only the last bucket may have no cap")
        if i:
            prev_cap = legs[i - 1].cap_strike
            assert leg.floor_strike is not None and prev_cap is not None
            if leg.floor_strike < prev_cap:
                raise CfaValueError(
                    f"{where}.legs[{i}].floor: {leg.floor_strike} is below the previous "
                    f"bucket's cap {prev_cap} (buckets must ascend and not overlap)"
                )


def parse_scenario(data: object, name: str) -> Scenario:
    """Build a :class:`Scenario` from parsed YAML; strict about keys, types and ranges."""
    top = _Section(
        data, name, ("name", "description", "market", "latent", "book", "takers", "event")
    )
    where = top.text("name", name)
    is_event = "event" in top.data

    m = top.section("market", _MARKET_KEYS)
    ranges, structure = _grid_ranges(m)
    _check_symmetric(ranges, f"{where}.market")
    fee_type = m.text("fee_type", "quadratic")
    if fee_type not in FEE_TYPES:
        raise CfaValueError(f"{where}.market.fee_type: {fee_type!r} is not one of {FEE_TYPES}")
    mult = m.raw("fee_multiplier", 1)
    if isinstance(mult, bool) or not isinstance(mult, int | float | str):
        raise CfaValueError(f"{where}.market.fee_multiplier: expected a number")
    close_offset = m.num("close_offset", lo=1.0)
    ticker = m.text("ticker")
    if is_event and "{leg}" not in ticker:
        raise CfaValueError(
            f"{where}.market.ticker: an event scenario's ticker must contain {{leg}}, got "
            f"{ticker!r}"
        )
    if not is_event and "{leg}" in ticker:
        raise CfaValueError(f"{where}.market.ticker: {{leg}} needs an event section")
    market = MarketTemplate(
        series_ticker=m.text("series_ticker"),
        event_ticker=m.text("event_ticker", "{series_ticker}-{close:%y%b%d}"),
        ticker=ticker,
        title=m.text("title"),
        subtitle=m.text("subtitle", ""),
        rules=m.text("rules", ""),
        price_ranges=ranges,
        price_level_structure=structure,
        fee=FeeSchedule(fee_type=fee_type, multiplier=Decimal(str(mult))),
        open_offset=m.num("open_offset", -86_400.0, hi=0.0),
        close_offset=close_offset,
        settlement_delay=m.num("settlement_delay", 0.0, lo=0.0),
    )

    la = top.section("latent", _LATENT_KEYS)
    regs = la.section("regimes", ("calm", "volatile"))

    def regime(key: str) -> RegimeParams:
        r = regs.section(key, _REGIME_KEYS)
        return RegimeParams(
            sigma=r.num("sigma", lo=0.0),
            mean_duration=r.num("mean_duration", lo=1e-3),
            activity=r.num("activity", 1.0, lo=0.0),
        )

    start_regime = la.text("start_regime", "calm")
    if start_regime not in ("calm", "volatile"):
        raise CfaValueError(f"{where}.latent.start_regime: must be calm or volatile")
    if is_event and "p0" in la.data:
        raise CfaValueError(
            f"{where}.latent.p0: an event scenario gives p0 per leg (event.legs[i].p0)"
        )
    b = top.section("book", _BOOK_KEYS)
    t = top.section("takers", _TAKER_KEYS)
    event = (
        _event(top.section("event", _EVENT_KEYS), b, t, f"{top.where}.event") if is_event else None
    )
    latent = LatentParams(
        p0=event.legs[0].p0 if event is not None else la.num("p0", lo=_P_LO, hi=_P_HI),
        calm=regime("calm"),
        volatile=regime("volatile"),
        start_regime=start_regime,
        jump_rate=la.num("jump_rate", 0.0, lo=0.0),
        jump_sigma=la.num("jump_sigma", 0.0, lo=0.0),
        close_vol_horizon=la.num("close_vol_horizon", 0.0, lo=0.0),
        close_vol_cap=la.num("close_vol_cap", 1.0, lo=1.0),
    )
    return Scenario(
        name=where,
        description=top.text("description", ""),
        market=market,
        latent=latent,
        book=_book(b),
        takers=_takers(t),
        event=event,
    )
