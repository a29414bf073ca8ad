"""Order book of one binary market: YES and NO bid ladders, with asks derived.

Kalshi publishes only bids: ``yes`` holds bids for YES in YES prices, ``no`` holds bids for NO in
NO prices. A NO bid at ``p`` is a YES ask at ``1 − p``, so the best YES ask is
``ONE_DOLLAR − best NO bid``. Prices are integer units of $0.0001 and sizes integer units of 0.01
contract (:mod:`cfa.core.types`).

Contract: deltas must arrive in sequence (``seq`` = previous + 1); a gap raises
:class:`BookSequenceError` and leaves the book unsynced until the next snapshot. A level
whose size reaches zero disappears; a delta that would drive a level negative is a feed error
and also unsyncs the book.
"""

from __future__ import annotations

from collections.abc import Mapping

from cfa.core.types import (
    ONE_DOLLAR,
    PRICE_SCALE,
    BookDelta,
    BookSnapshot,
    Outcome,
    Price,
    Qty,
)


class BookSequenceError(Exception):
    """A delta arrived out of sequence or was inconsistent: resynchronise from a snapshot."""


class OrderBook:
    """Level-2 book with incremental best-price tracking."""

    __slots__ = ("_best_no", "_best_yes", "no", "seq", "synced", "ticker", "ts", "yes")

    def __init__(self, ticker: str) -> None:
        self.ticker = ticker
        self.yes: dict[Price, Qty] = {}
        self.no: dict[Price, Qty] = {}
        self.seq = 0
        self.ts = 0.0
        self.synced = False
        self._best_yes: Price | None = None
        self._best_no: Price | None = None

    # -- updates -------------------------------------------------------------------------------

    def apply_snapshot(self, snap: BookSnapshot) -> None:
        """Replace the whole book."""
        self.yes = {p: q for p, q in snap.yes if q > 0}
        self.no = {p: q for p, q in snap.no if q > 0}
        self._best_yes = max(self.yes) if self.yes else None
        self._best_no = max(self.no) if self.no else None
        self.seq = snap.seq
        self.ts = snap.ts
        self.synced = True

    def apply_delta(self, d: BookDelta) -> None:
        """Apply one signed size change; raise :class:`BookSequenceError` on a gap."""
        if not self.synced:
            raise BookSequenceError(f"{self.ticker}: delta before snapshot")
        if d.seq != self.seq + 1:
            self.synced = False
            raise BookSequenceError(f"{self.ticker}: expected seq {self.seq + 1}, got {d.seq}")
        self.seq = d.seq
        self.ts = d.ts
        yes_side = d.outcome is Outcome.YES
        ladder = self.yes if yes_side else self.no
        size = ladder.get(d.price, 0) + d.delta
        if size > 0:
            ladder[d.price] = size
            if yes_side:
                if self._best_yes is None or d.price > self._best_yes:
                    self._best_yes = d.price
            elif self._best_no is None or d.price > self._best_no:
                self._best_no = d.price
            return
        if size < 0:
            self.synced = False
            raise BookSequenceError(f"{self.ticker}: level {d.price} would go negative")
        ladder.pop(d.price, None)
        if yes_side:
            if d.price == self._best_yes:
                self._best_yes = max(ladder) if ladder else None
        elif d.price == self._best_no:
            self._best_no = max(ladder) if ladder else None

    # -- reads ---------------------------------------------------------------------------------

    def best_bid(self) -> Price | None:
        """Best YES bid in price units."""
        return self._best_yes

    def best_ask(self) -> Price | None:
        """Best YES ask (``ONE_DOLLAR`` − best NO bid) in price units."""
        return None if self._best_no is None else ONE_DOLLAR - self._best_no

    def bid_size(self, price: Price) -> Qty:
        """Resting YES-bid size at a YES price."""
        return self.yes.get(price, 0)

    def ask_size(self, price: Price) -> Qty:
        """Resting YES-ask size at a YES price (NO bids at ``1 − price``)."""
        return self.no.get(ONE_DOLLAR - price, 0)

    def mid(self) -> float | None:
        """Mid in dollars, or None unless both sides are present."""
        b, a = self._best_yes, self._best_no
        if b is None or a is None:
            return None
        return (b + ONE_DOLLAR - a) / (2 * PRICE_SCALE)

    def microprice(self) -> float | None:
        """Size-weighted mid in dollars: leans towards the side with less size at the touch."""
        b, n = self._best_yes, self._best_no
        if b is None or n is None:
            return None
        a = ONE_DOLLAR - n
        qb, qa = self.yes[b], self.no[n]
        return (b * qa + a * qb) / ((qa + qb) * PRICE_SCALE)

    def bids(self, levels: int) -> list[tuple[Price, Qty]]:
        """Top YES bids, best first."""
        return sorted(self.yes.items(), reverse=True)[:levels]

    def asks(self, levels: int) -> list[tuple[Price, Qty]]:
        """Top YES asks in YES prices, best first."""
        return [(ONE_DOLLAR - p, q) for p, q in sorted(self.no.items(), reverse=True)[:levels]]

    def imbalance(self, levels: int = 1) -> float | None:
        """``(bid size − ask size)/(bid size + ask size)`` over the top ``levels``; in [−1, 1]."""
        if levels == 1:
            b, n = self._best_yes, self._best_no
            if b is None or n is None:
                return None
            qb, qa = self.yes[b], self.no[n]
        else:
            qb = sum(q for _, q in self.bids(levels))
            qa = sum(q for _, q in self.asks(levels))
        total = qb + qa
        return None if total <= 0 else (qb - qa) / total

    def best_bid_excluding(self, own: Mapping[Price, Qty]) -> Price | None:
        """Best YES bid after removing our own resting bid sizes ``own`` (YES price -> size)."""
        return _best_excluding(self.yes, self._best_yes, own)

    def best_ask_excluding(self, own: Mapping[Price, Qty]) -> Price | None:
        """Best YES ask after removing our own resting ask sizes ``own`` (YES price -> size)."""
        own_no = {ONE_DOLLAR - p: q for p, q in own.items()}
        n = _best_excluding(self.no, self._best_no, own_no)
        return None if n is None else ONE_DOLLAR - n

    def others_touch(
        self, bid_price: Price | None, bid_size: Qty, ask_price: Price | None, ask_size: Qty
    ) -> tuple[Price | None, Qty, Price | None, Qty]:
        """Everyone else's touch: ``(best bid, its size, best ask, its size)`` after removing
        one resting bid of ours (``bid_size`` at YES price ``bid_price``; ``None``: no bid)
        and one resting ask (``ask_size`` at YES price ``ask_price``). Prices in price units,
        sizes in count units; an empty side is ``(None, 0)``.

        The same answer as :meth:`best_bid_excluding`/:meth:`best_ask_excluding` and the
        level sizes less ours, in one call that allocates nothing but the result unless our
        order is alone at the best price (then the next level is found by a scan).
        """
        b = self._best_yes
        qb = 0
        if b is not None:
            qb = self.yes[b]
            if b == bid_price:
                qb -= bid_size
                if qb <= 0:
                    b = max((p for p in self.yes if p != bid_price), default=None)
                    qb = 0 if b is None else self.yes[b]
        n = self._best_no
        qa = 0
        a: Price | None = None
        if n is not None:
            qa = self.no[n]
            own_no = None if ask_price is None else ONE_DOLLAR - ask_price
            if n == own_no:
                qa -= ask_size
                if qa <= 0:
                    n = max((p for p in self.no if p != own_no), default=None)
                    qa = 0 if n is None else self.no[n]
            if n is not None:
                a = ONE_DOLLAR - n
        return b, qb, a, qa

    def snapshot(self) -> BookSnapshot:
        """The book as a snapshot record (ascending ladders, Kalshi's order)."""
        return BookSnapshot(
            self.ticker,
            self.seq,
            self.ts,
            tuple(sorted(self.yes.items())),
            tuple(sorted(self.no.items())),
        )


def _best_excluding(
    ladder: dict[Price, Qty], best: Price | None, own: Mapping[Price, Qty]
) -> Price | None:
    if best is None or not own:
        return best
    if ladder[best] > own.get(best, 0):
        return best
    rest = [p for p, q in ladder.items() if q > own.get(p, 0)]
    return max(rest) if rest else None
