"""Named fill models: when does our resting order fill against a book we do not control?

A recording (or a live feed in paper trading) shows the venue's book and its public trades, but
nobody in it ever traded with us, and where we would have stood in a level's queue is unknown.
A fill model turns what the feed shows into fills of our resting orders. Every model fills at
the order's own price, as a maker. Three, by name (:data:`FILL_MODELS`, :func:`fill_model`):

``through`` (the default)
    Fills only when a counterparty would have reached us *through* our price: the recorded best
    ask falls strictly below our bid (fills all that rests; for an ask: the best bid rises
    strictly above it), or a print strictly below our bid (above our ask) fills
    ``min(remaining, print size)``. Touching is not enough: at our price we would be behind an
    unknown queue. Pessimistic for fill counts.
``touch``
    As ``through`` with every "strictly" replaced by "at or through": front of the queue, an
    optimistic bound.
``queue``
    As ``through``, plus an estimated queue position. An order joins the back of its level:
    ``ahead`` = the recorded size at its price when it starts resting there. The level
    shrinking below ``ahead`` pulls ``ahead`` down with it (cancels are assumed to come from
    behind us unless the level says otherwise); a print *at* our price consumes ``ahead``
    first and fills us with the rest. Between the two bounds.

Simplifications shared by all three: liquidity we take or fill against is not removed from the
recorded book, and a print is not split between several of our orders beyond its size (it fills
our orders in the order they were placed, until it is used up).
"""

from __future__ import annotations

from typing import Protocol

from cfa.core.types import Price, Qty, Side
from cfa.exchange.emulator.orders import OwnOrder

FILL_MODELS = ("through", "touch", "queue")
"""The fill models by name; ``through`` is the default everywhere."""


class FillModel(Protocol):
    """How the feed's book and prints fill our resting orders (see the module doc)."""

    name: str
    tracks_queue: bool
    """True when :meth:`on_level` must be called as levels at our prices change."""

    def book_hit(self, o: OwnOrder, best_bid: Price | None, best_ask: Price | None) -> bool:
        """Does the book's new top trade through ``o`` (so all of it fills)?"""
        ...

    def print_fill(self, o: OwnOrder, price: Price, count: Qty) -> Qty:
        """How much of a print of ``count`` at ``price`` reaches ``o`` (0 when none); may update
        ``o.ahead``."""
        ...

    def on_rest(self, o: OwnOrder, level: Qty) -> None:
        """``o`` starts resting at its price, where the feed's book holds ``level``."""
        ...

    def on_level(self, o: OwnOrder, level: Qty) -> None:
        """The feed's size at ``o``'s price is now ``level``."""
        ...


def _through(o: OwnOrder, price: Price, at: bool) -> bool:
    """Is ``price`` through ``o``'s price (or at it, when ``at``) for a counterparty?"""
    if o.side is Side.BID:
        return price < o.price or (at and price == o.price)
    return price > o.price or (at and price == o.price)


class Through:
    """``through``: fills only when the feed trades or quotes through our price."""

    name = "through"
    tracks_queue = False
    at = False

    def book_hit(self, o: OwnOrder, best_bid: Price | None, best_ask: Price | None) -> bool:
        opposite = best_ask if o.side is Side.BID else best_bid
        return opposite is not None and _through(o, opposite, self.at)

    def print_fill(self, o: OwnOrder, price: Price, count: Qty) -> Qty:
        return min(o.remaining, count) if _through(o, price, self.at) else 0

    def on_rest(self, o: OwnOrder, level: Qty) -> None:
        o.ahead = 0

    def on_level(self, o: OwnOrder, level: Qty) -> None:
        return None


class Touch(Through):
    """``touch``: also fills when the feed reaches our price (front of the queue)."""

    name = "touch"
    at = True


class Queue(Through):
    """``queue``: ``through`` plus an estimated place in the level's queue (module doc)."""

    name = "queue"
    tracks_queue = True

    def print_fill(self, o: OwnOrder, price: Price, count: Qty) -> Qty:
        if price != o.price:
            return super().print_fill(o, price, count)
        reach = count - o.ahead
        o.ahead = max(o.ahead - count, 0)
        return min(o.remaining, reach) if reach > 0 else 0

    def on_rest(self, o: OwnOrder, level: Qty) -> None:
        o.ahead = max(level, 0)

    def on_level(self, o: OwnOrder, level: Qty) -> None:
        if level < o.ahead:
            o.ahead = max(level, 0)


def fill_model(name: str) -> FillModel:
    """The fill model called ``name`` (one of :data:`FILL_MODELS`); ``ValueError`` otherwise."""
    models: dict[str, type[Through]] = {"through": Through, "touch": Touch, "queue": Queue}
    cls = models.get(name)
    if cls is None:
        raise ValueError(f"fill_model must be one of {FILL_MODELS}, got {name!r}")
    return cls()
