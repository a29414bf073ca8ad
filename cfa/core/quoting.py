"""Quoting core: Avellaneda–Stoikov (2008), GLFT (2013), and the Kalshi quote.

Units — stated once here and used everywhere in cfa:

* time in **seconds**; ``tau`` is the horizon in seconds;
* prices in **dollars** inside the models (floats), integer price units of $0.0001 on the grid
  (:mod:`cfa.core.types`);
* inventory ``q`` in **contracts**, net YES (a NO position is negative);
* ``sigma`` passed to :func:`quote` is the volatility of ``logit(mid)`` per √second (``σ_x``);
  the models take the price volatility ``σ_p = p·(1−p)·σ_x`` in dollars per √second;
* ``gamma`` (risk aversion) in 1/dollar; ``k`` (intensity decay) in 1/dollar; ``A`` (intensity
  at zero distance) in fills per second.

:func:`reservation_price` and :func:`optimal_spread` are the paper's formulas, model-pure: no
clamping and no rounding, valid in any consistent units. :func:`quote` turns them into a
two-sided quote on a Kalshi market's grid.

Sign convention (pinned by tests): with ``q > 0`` both quotes move down — the bid away from the
mid, the ask towards it — so the maker sells more readily what it holds too much of.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from cfa.core.grid import PriceGrid, maker_fee_per_contract, maker_fee_rate
from cfa.core.types import PRICE_SCALE, QTY_SCALE, CfaValueError, MarketInfo, Price, Qty

Model = Literal["as", "glft", "naive"]


# -- the models, model-pure ---------------------------------------------------------------------


def reservation_price(
    mid: float, inventory: float, gamma: float, sigma: float, tau: float
) -> float:
    """Avellaneda–Stoikov reservation (indifference) price ``r = s − q·γ·σ²·τ`` (AS 2008 eq. 29)."""
    return mid - inventory * gamma * sigma * sigma * tau


def optimal_spread(gamma: float, sigma: float, k: float, tau: float) -> float:
    """Avellaneda–Stoikov total spread ``γσ²τ + (2/γ)·ln(1 + γ/k)`` around r (AS 2008 eq. 30)."""
    return gamma * sigma * sigma * tau + (2.0 / gamma) * math.log1p(gamma / k)


def fill_intensity(A: float, k: float, delta: float) -> float:
    """Arrival rate of fills at distance ``delta`` from the mid: ``λ(δ) = A·e^(−kδ)``."""
    return A * math.exp(-k * delta)


def glft_coefficients(gamma: float, sigma: float, A: float, k: float) -> tuple[float, float]:
    """GLFT asymptotic terms ``(c1, c2)`` (Guéant–Lehalle–Fernandez-Tapia 2013, §2.2 of the notes).

    ``c1 = (1/γ)·ln(1 + γ/k)`` is the inventory-free half-spread;
    ``c2 = √(σ²γ/(2kA) · (1 + γ/k)^(1 + k/γ))`` is the skew per contract of inventory.
    """
    c1 = math.log1p(gamma / k) / gamma
    c2 = math.sqrt(sigma * sigma * gamma / (2.0 * k * A) * (1.0 + gamma / k) ** (1.0 + k / gamma))
    return c1, c2


def glft_quotes(
    mid: float, inventory: float, gamma: float, sigma: float, A: float, k: float
) -> tuple[float, float]:
    """GLFT infinite-horizon bid and ask, model-pure.

    ``δ_b = c1 + (2q + 1)/2 · c2`` and ``δ_a = c1 − (2q − 1)/2 · c2``; bid = mid − δ_b,
    ask = mid + δ_a. Inventory bounds (no bid at ``q = Q``, no ask at ``q = −Q``) are applied by
    :func:`quote`.
    """
    c1, c2 = glft_coefficients(gamma, sigma, A, k)
    return mid - (c1 + (2.0 * inventory + 1.0) * 0.5 * c2), mid + (
        c1 - (2.0 * inventory - 1.0) * 0.5 * c2
    )


# -- bounded prices -----------------------------------------------------------------------------


def logit(p: float) -> float:
    """``ln(p/(1−p))`` for ``0 < p < 1``."""
    return math.log(p / (1.0 - p))


def sigma_price(p: float, sigma_x: float) -> float:
    """Map logit volatility to price volatility at price ``p``: ``σ_p = p·(1−p)·σ_x``."""
    return p * (1.0 - p) * sigma_x


def horizon_tau(time_to_close: float, horizon: float) -> float:
    """``τ = min(time to close, horizon)`` in seconds, never negative."""
    return max(0.0, min(time_to_close, horizon))


# -- the Kalshi quote ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuoteParams:
    """Everything :func:`quote` needs besides market state. Units as in the module docstring.

    ``size`` and ``inventory_cap`` are count units (0.01 contract); ``horizon`` seconds.
    ``model`` ``naive`` is the baseline a market maker must beat: ``mid ± half_spread``
    (dollars), no inventory skew, no fee floor; it ignores γ, σ, k and A.
    """

    gamma: float
    sigma: float
    k: float
    A: float = 1.0
    size: Qty = 10 * QTY_SCALE
    inventory_cap: Qty = 50 * QTY_SCALE
    horizon: float = 3600.0
    model: Model = "as"
    half_spread: float = 0.01
    improve_queue: Qty = 10 * QTY_SCALE
    """Others' size at their best (count units) from which a side improves on it by a tick
    rather than joins it (when the edge floor allows either)."""

    def __post_init__(self) -> None:
        for name in ("gamma", "k", "A"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0.0):
                raise CfaValueError(
                    f"QuoteParams.{name} must be a positive finite number, got {v!r}"
                )
        for name in ("sigma", "horizon"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0.0):
                raise CfaValueError(f"QuoteParams.{name} must be a finite number >= 0, got {v!r}")
        if self.size <= 0:
            raise CfaValueError(f"QuoteParams.size must be positive, got {self.size}")
        if self.inventory_cap < 0:
            raise CfaValueError(f"QuoteParams.inventory_cap must be >= 0, got {self.inventory_cap}")
        if self.model not in ("as", "glft", "naive"):
            raise CfaValueError(
                f"QuoteParams.model must be 'as', 'glft' or 'naive', got {self.model!r}"
            )
        if not (math.isfinite(self.half_spread) and 0.0 < self.half_spread < 0.5):
            raise CfaValueError(
                f"QuoteParams.half_spread must be in (0, 0.5) dollars, got {self.half_spread!r}"
            )


@dataclass(frozen=True, slots=True)
class QuoteMarket:
    """The per-market constants :func:`quote` needs, precomputed once from :class:`MarketInfo`."""

    grid: PriceGrid
    maker_rate: float = 0.0
    """Per-contract maker fee coefficient of ``P·(1−P)`` (0 when makers pay nothing)."""

    @classmethod
    def from_market(cls, market: MarketInfo) -> QuoteMarket:
        grid = PriceGrid(market.price_ranges)
        return cls(grid, maker_fee_rate(market.fee))


@dataclass(frozen=True, slots=True)
class Quote:
    """A two-sided quote on the grid. A side is ``None`` when it is not quoted.

    ``reservation`` and ``half_spread`` are the model's values in dollars before rounding
    (``half_spread`` after the fee floor); ``sigma_p`` is dollars per √s; ``tau`` seconds.
    """

    bid: Price | None
    ask: Price | None
    bid_size: Qty
    ask_size: Qty
    reservation: float
    half_spread: float
    sigma_p: float
    tau: float


def quote(
    *,
    mid: float,
    inventory: Qty,
    time_to_close: float,
    params: QuoteParams,
    market: QuoteMarket,
    best_bid: Price | None = None,
    best_ask: Price | None = None,
    bid_queue: Qty = 0,
    ask_queue: Qty = 0,
    min_edge: float = 0.0,
    holding_s: float | None = None,
    cross_risk: float = 0.0,
    cross_skew: float = 0.0,
) -> Quote:
    """Two-sided quote for one Kalshi market.

    ``mid`` is the mid in dollars (``0 < mid < 1``), ``inventory`` net YES in count units,
    ``time_to_close`` seconds, ``best_bid``/``best_ask`` the best prices of *other* participants
    in price units (``None`` when that side is empty) and ``bid_queue``/``ask_queue`` their
    sizes there (count units). ``min_edge`` (dollars per contract, ≥ 0) is the measured adverse
    selection the quote must clear beyond the fee; ``holding_s`` the measured time inventory is
    held (seconds): ``τ = min(time_to_close, params.horizon, holding_s)``.

    The other markets of the same event (:mod:`cfa.core.multiasset`): ``cross_risk`` is
    ``Σ_{j≠i} Σ_ij·q_j`` (dollars²/s × contracts, Σ the price covariance per second), which the
    ``as`` model adds to its own ``q·σ_p²``: the multi-asset reservation price
    ``r = s − γ·τ·Σ_j Σ_ij·q_j``; ``cross_skew`` (dollars) is what the ``glft`` model's quotes
    move down by, ``√γ·Σ_{j≠i} Γ_ij·q_j`` from the multi-asset closed form. Both 0 (the
    default): the single-market formulas, exactly. ``naive`` ignores both.

    Contract:

    * bids round down and asks round up onto ``market.grid``; both lie strictly inside the range;
      a side whose model price has no grid point on its side of the range is dropped;
    * ``bid < ask`` whenever both are quoted;
    * post-only: the bid stays below ``best_ask`` and the ask above ``best_bid``;
    * (models ``as`` and ``glft``) each side stands at least ``fee + min_edge`` from the centre of
      the quote (the reservation price) and at least ``fee`` from the mid, where ``fee`` is the
      expected maker fee per contract: no fill is expected to lose money to fees, and an
      inventory skew never sells below the mid or buys above it;
    * queue-aware placement (``as``, ``glft``): a side whose model price lies within one tick
      of the others' best (so that rounding would put it at or behind the touch) *improves* on
      the best by a tick when the others' queue there is at least ``params.improve_queue``, the
      spread leaves room and that price still clears the edge floor, else *joins* the best if
      that clears the floor; a model price further behind is the model's choice and stays;
    * a side's size is cut to the room left under ``inventory_cap`` (the bid adds YES inventory,
      the ask removes it) and the side is dropped when no room is left.
    """
    if not 0.0 < mid < 1.0:
        raise CfaValueError(f"quote: mid must be strictly between 0 and 1 dollars, got {mid!r}")
    p = params
    q = inventory / QTY_SCALE
    sig_p = p.sigma * mid * (1.0 - mid)
    tau = time_to_close if time_to_close < p.horizon else p.horizon
    if holding_s is not None and holding_s < tau:
        tau = holding_s
    if tau < 0.0:
        tau = 0.0
    grid = market.grid
    naive = p.model == "naive"
    if p.model == "glft":
        raw_bid, raw_ask = glft_quotes(mid, q, p.gamma, sig_p, p.A, p.k)
        centre = 0.5 * (raw_bid + raw_ask)
        if cross_skew:
            centre -= _finite(cross_skew, "cross_skew")
        half = 0.5 * (raw_ask - raw_bid)
    elif naive:
        centre, half = mid, p.half_spread
    else:
        centre = mid - q * p.gamma * sig_p * sig_p * tau
        if cross_risk:
            centre -= _finite(cross_risk, "cross_risk") * p.gamma * tau
        half = 0.5 * (p.gamma * sig_p * sig_p * tau + (2.0 / p.gamma) * math.log1p(p.gamma / p.k))
    if naive:
        bid = grid.floor_units((centre - half) * PRICE_SCALE)
        ask = grid.ceil_units((centre + half) * PRICE_SCALE)
    else:
        fee = maker_fee_per_contract(market.maker_rate, mid) if market.maker_rate > 0.0 else 0.0
        floor = fee + (min_edge if min_edge > 0.0 else 0.0)
        if half < floor:
            half = floor
        # the most aggressive prices that still clear the edge floor
        bid_lim = min(centre - floor, mid - fee)
        ask_lim = max(centre + floor, mid + fee)
        raw_bid = min(centre - half, bid_lim) * PRICE_SCALE
        raw_ask = max(centre + half, ask_lim) * PRICE_SCALE
        bid = grid.floor_units(raw_bid)
        ask = grid.ceil_units(raw_ask)
        if bid is not None and best_bid is not None and bid <= best_bid:
            below = grid.next_down(best_bid)
            if below is None or raw_bid > below:  # within a tick of the touch: grid rounding
                lim = grid.floor_units(bid_lim * PRICE_SCALE)
                up = grid.next_up(best_bid)
                if (
                    up is not None
                    and lim is not None
                    and up <= lim
                    and bid_queue >= p.improve_queue
                    and (best_ask is None or up < best_ask)
                ):
                    bid = up
                elif lim is not None and best_bid <= lim:
                    bid = best_bid
        if ask is not None and best_ask is not None and ask >= best_ask:
            above = grid.next_up(best_ask)
            if above is None or raw_ask < above:
                lim = grid.ceil_units(ask_lim * PRICE_SCALE)
                down = grid.next_down(best_ask)
                if (
                    down is not None
                    and lim is not None
                    and down >= lim
                    and ask_queue >= p.improve_queue
                    and (best_bid is None or down > best_bid)
                ):
                    ask = down
                elif lim is not None and best_ask >= lim:
                    ask = best_ask
    if bid is not None and best_ask is not None and bid >= best_ask:
        bid = grid.next_down(best_ask)
    if ask is not None and best_bid is not None and ask <= best_bid:
        ask = grid.next_up(best_bid)
    if bid is not None and ask is not None and bid >= ask:  # a grid too coarse for both sides
        ask = grid.next_up(bid)
    bid_size = p.size
    room = p.inventory_cap - inventory
    if room < bid_size:
        bid_size = room
    if bid_size <= 0:
        bid, bid_size = None, 0
    ask_size = p.size
    room = p.inventory_cap + inventory
    if room < ask_size:
        ask_size = room
    if ask_size <= 0:
        ask, ask_size = None, 0
    if bid is None:
        bid_size = 0
    if ask is None:
        ask_size = 0
    return Quote(bid, ask, bid_size, ask_size, centre, half, sig_p, tau)


def _finite(v: float, name: str) -> float:
    if not math.isfinite(v):
        raise CfaValueError(f"quote: {name} must be a finite number, got {v!r}")
    return v
