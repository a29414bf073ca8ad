"""The risk gate: the only path from a market loop to an exchange.

Every order request is checked against the policy and the market's trading state and is either
accepted or denied with a reason code (:class:`Deny`). The gate is pure: it reads the state it is
given and keeps no clock; the caller records denials in the audit store.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cfa.core.types import OrderRequest, Qty, Side, TradingState, contracts
from cfa.risk.policy import Policy


class Deny(enum.StrEnum):
    """Reason codes for a denied order."""

    HALTED = "halted"
    REDUCE_ONLY = "reduce_only"
    ORDER_SIZE = "order_size"
    POSITION_LIMIT = "position_limit"
    NON_POSITIVE_SIZE = "non_positive_size"


@dataclass(frozen=True, slots=True)
class Exposure:
    """What the gate needs to know about one market: position and resting size per side.

    All in count units (0.01 contract). ``resting_bid``/``resting_ask`` exclude the order being
    replaced when the request is an amend.
    """

    position: Qty
    resting_bid: Qty
    resting_ask: Qty


class RiskGate:
    """Checks orders against a :class:`Policy`. Stateless apart from the policy."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.max_order: Qty = contracts(policy.market.max_order_size)
        self.max_position: Qty = contracts(policy.market.max_position)

    def check(self, req: OrderRequest, exposure: Exposure, state: TradingState) -> Deny | None:
        """None when ``req`` may go to the exchange, else the reason it may not."""
        if state is TradingState.HALTED:
            return Deny.HALTED
        if req.count <= 0:
            return Deny.NON_POSITIVE_SIZE
        if req.count > self.max_order:
            return Deny.ORDER_SIZE
        pos = exposure.position
        if state is TradingState.REDUCE_ONLY:
            # Only orders that bring the position towards zero, never past it, resting included.
            if req.side is Side.BID and (pos >= 0 or exposure.resting_bid + req.count > -pos):
                return Deny.REDUCE_ONLY
            if req.side is Side.ASK and (pos <= 0 or exposure.resting_ask + req.count > pos):
                return Deny.REDUCE_ONLY
            return None
        if req.side is Side.BID and pos + exposure.resting_bid + req.count > self.max_position:
            return Deny.POSITION_LIMIT
        if req.side is Side.ASK and pos - exposure.resting_ask - req.count < -self.max_position:
            return Deny.POSITION_LIMIT
        return None
