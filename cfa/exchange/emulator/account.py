"""Our account at an emulated venue (simulator, feed replay, paper trading): cash, positions,
fills, fees. Money is Decimal dollars.

Cash follows Kalshi's collateral rules, with the position kept as net YES contracts:

* a **bid** fill (buy YES) of ``n`` at ``p`` first closes NO contracts we hold — each YES+NO
  pair pays out $1, so closing one costs ``p`` and returns $1: cash ``+ (1 − p)`` — and opens
  YES with the rest: cash ``− p``;
* an **ask** fill (sell YES = buy NO at ``1 − p``) first closes YES we hold (cash ``+ p``)
  and opens NO with the rest, paying the collateral ``1 − p``;
* every fill pays its fee as Kalshi charges it (:func:`cfa.core.grid.trade_fee`, then
  :func:`~cfa.core.grid.net_fee`): the balance is floored to the cent, and a per-order
  accumulator refunds the rounding, so an order's fills cost about what one fill of the same
  total would;
* at settlement a YES contract pays ``S`` (1 if the market resolved YES, else 0) and a NO
  contract ``1 − S``.

So the balance is always *available* cash, and marked equity is
``cash + max(q, 0)·S + max(−q, 0)·(1 − S)`` for a mark ``S``; after settlement it is just cash.
Equivalently, PnL since the start = Σ realised PnL − Σ fees once every market has settled.

``realized_pnl`` uses average cost in YES terms and excludes fees (reported separately as
``fees_paid``); settlement realises what is left at ``S``.

Simplifications (documented, deliberate): resting orders do not lock collateral; an order is
refused only when the cash needed to open its whole size exceeds the balance at placement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from cfa.core.grid import net_fee, trade_fee
from cfa.core.types import (
    ONE_DOLLAR,
    FeeSchedule,
    Fill,
    Position,
    Price,
    Qty,
    Side,
    notional,
)

_ZERO = Decimal(0)


@dataclass(slots=True)
class _Pos:
    position: Qty = 0
    basis: Decimal = _ZERO
    """YES-terms cost of the open position: Σ price·count of the contracts still open."""
    realized: Decimal = _ZERO
    fees: Decimal = _ZERO


@dataclass(slots=True)
class Account:
    """Cash and per-market positions. ``fills`` holds every fill, oldest first; fill ids are
    ``fill_prefix`` and an 8-digit counter (``sim-f00000001``…)."""

    cash: Decimal
    fill_prefix: str = "sim-f"
    positions: dict[str, _Pos] = field(default_factory=dict)
    fills: list[Fill] = field(default_factory=list)
    _next_fill: int = 1
    _fee_acc: dict[str, Decimal] = field(default_factory=dict)
    """Per-order rounding overpayment (Kalshi's fee accumulator)."""

    def position(self, ticker: str) -> Qty:
        """Net YES position in count units (0 when we never traded the market)."""
        p = self.positions.get(ticker)
        return p.position if p is not None else 0

    def opening_cost(self, ticker: str, side: Side, price: Price, count: Qty) -> Decimal:
        """Cash an order of ``count`` at ``price`` needs, beyond what closing returns."""
        pos = self.position(ticker)
        if side is Side.BID:
            opening = count - min(count, max(-pos, 0))
            return notional(price, opening)
        opening = count - min(count, max(pos, 0))
        return notional(ONE_DOLLAR - price, opening)

    def fill(
        self,
        *,
        ticker: str,
        order_id: str,
        client_order_id: str,
        side: Side,
        price: Price,
        count: Qty,
        is_taker: bool,
        fee_schedule: FeeSchedule,
        ts: float,
    ) -> Fill:
        """Book one execution of our order and return its :class:`Fill` record."""
        p = self.positions.get(ticker)
        if p is None:
            p = self.positions[ticker] = _Pos()
        revenue = self._revenue(p, side, price, count)
        fee, self._fee_acc[order_id] = net_fee(
            revenue,
            trade_fee(fee_schedule, price, count, is_taker=is_taker),
            self._fee_acc.get(order_id, _ZERO),
            fee_schedule.rounding,
        )
        self._book(p, side, price, count, revenue, fee)
        fid = f"{self.fill_prefix}{self._next_fill:08d}"
        self._next_fill += 1
        f = Fill(
            fill_id=fid,
            order_id=order_id,
            client_order_id=client_order_id,
            ticker=ticker,
            side=side,
            price=price,
            count=count,
            fee=fee,
            is_taker=is_taker,
            ts=ts,
            post_position=p.position,
        )
        self.fills.append(f)
        return f

    def record(self, f: Fill) -> None:
        """Book a fill that happened elsewhere (a recorded run's), with the fee it carries."""
        p = self.positions.get(f.ticker)
        if p is None:
            p = self.positions[f.ticker] = _Pos()
        self._book(p, f.side, f.price, f.count, self._revenue(p, f.side, f.price, f.count), f.fee)
        self.fills.append(f)

    @staticmethod
    def _revenue(p: _Pos, side: Side, price: Price, count: Qty) -> Decimal:
        """Cash a fill moves before fees (collateral rules in the module doc)."""
        pos = p.position
        if side is Side.BID:
            closing = min(count, max(-pos, 0))
            return notional(ONE_DOLLAR - price, closing) - notional(price, count - closing)
        closing = min(count, max(pos, 0))
        return notional(price, closing) - notional(ONE_DOLLAR - price, count - closing)

    def _book(
        self, p: _Pos, side: Side, price: Price, count: Qty, revenue: Decimal, fee: Decimal
    ) -> None:
        self.cash += revenue
        self._realise(p, side.sign * count, price)
        self.cash -= fee
        p.fees += fee

    @staticmethod
    def _realise(p: _Pos, signed: Qty, price: Price) -> None:
        """Apply a signed YES trade at ``price`` to ``p`` with average-cost realised PnL."""
        pos = p.position
        if pos == 0 or (pos > 0) == (signed > 0):
            p.basis += notional(price, signed)
            p.position = pos + signed
            return
        closing = min(abs(signed), abs(pos))
        removed = p.basis if closing == abs(pos) else p.basis * closing / abs(pos)
        # long: sold `closing` at price; short: bought back at price
        proceeds = notional(price, closing) if pos > 0 else -notional(price, closing)
        p.realized += proceeds - removed
        p.basis -= removed
        p.position = pos + signed
        rest = abs(signed) - closing
        if rest:
            p.basis = notional(price, rest if signed > 0 else -rest)

    def settle(self, ticker: str, yes: bool) -> None:
        """Pay out the market's contracts: $1 per YES if ``yes``, else $1 per NO."""
        p = self.positions.get(ticker)
        if p is None or p.position == 0:
            return
        value = ONE_DOLLAR if yes else 0
        q = p.position
        if q > 0:
            self.cash += notional(value, q)
        else:
            self.cash += notional(ONE_DOLLAR - value, -q)
        self._realise(p, -q, value)

    def snapshot(self, ticker: str) -> Position:
        p = self.positions.get(ticker) or _Pos()
        return Position(ticker, p.position, p.realized, p.fees)
