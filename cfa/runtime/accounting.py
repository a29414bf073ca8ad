"""Per-market position accounting: inventory, cash, fees, realised and marked PnL.

Inventory is net YES in count units (0.01 contract). A bid fill buys YES at ``p``; an ask fill
sells YES at ``p`` (on Kalshi: buys NO at ``1 − p``; the economics are the same for a net-YES
book). Realised PnL uses the average-cost method; fees are subtracted from realised PnL when paid.
Money is exact ``Decimal`` dollars.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from cfa.core.types import PRICE_SCALE, QTY_SCALE, Fill, Qty, Side

_ZERO = Decimal(0)
_UNIT = Decimal(PRICE_SCALE * QTY_SCALE)


@dataclass(slots=True)
class Book:
    """Running account of one market. ``avg_price`` is dollars per contract of the open position."""

    inventory: Qty = 0
    cash: Decimal = _ZERO
    fees: Decimal = _ZERO
    realized: Decimal = _ZERO
    avg_price: Decimal = _ZERO
    fills: int = 0
    volume: Qty = 0
    max_abs_inventory: Qty = 0
    by_side: dict[Side, int] = field(default_factory=lambda: {Side.BID: 0, Side.ASK: 0})

    def on_fill(self, fill: Fill) -> None:
        """Apply one of our fills."""
        sign = fill.side.sign
        price = Decimal(fill.price) / PRICE_SCALE
        count = fill.count
        self.cash -= sign * Decimal(fill.price * count) / _UNIT
        self.fees += fill.fee
        self.realized -= fill.fee
        self.fills += 1
        self.volume += count
        self.by_side[fill.side] += 1
        old = self.inventory
        new = old + sign * count
        if old == 0 or (old > 0) == (sign > 0):
            # Opening or adding: new average price.
            self.avg_price = (self.avg_price * abs(old) + price * count) / abs(new)
        else:
            closed = min(abs(old), count)
            direction = 1 if old > 0 else -1
            self.realized += direction * (price - self.avg_price) * closed / QTY_SCALE
            if abs(new) > 0 and (new > 0) != (old > 0):
                self.avg_price = price  # flipped through zero: the remainder opened at price
            elif new == 0:
                self.avg_price = _ZERO
        self.inventory = new
        self.max_abs_inventory = max(self.max_abs_inventory, abs(new))

    def settle(self, yes_wins: bool) -> Decimal:
        """Settle the open position at $1 (YES) or $0 per YES contract; returns the payout."""
        value = Decimal(1) if yes_wins else _ZERO
        payout = value * self.inventory / QTY_SCALE
        self.cash += payout
        self.realized += (value - self.avg_price) * self.inventory / QTY_SCALE
        self.inventory = 0
        self.avg_price = _ZERO
        return payout

    def marked(self, mid: float | None) -> Decimal:
        """Cash minus fees plus the position marked at ``mid`` dollars (at cost when no mid)."""
        mark = self.avg_price if mid is None else Decimal(repr(mid))
        return self.cash - self.fees + mark * self.inventory / QTY_SCALE
