"""The structure of a Kalshi event: how the outcomes of its markets are tied together.

Most of Kalshi's liquidity sits in events of several related markets:

* a **strike ladder** ("BTC above 97k / 98k / 99k at 5 pm"): market ``i`` pays if the underlying
  ends above strike ``K_i``. With the strikes ascending, the YES sets are nested and the fair
  probabilities are non-increasing along the ladder. The event has ``n + 1`` outcomes: the
  interval of the strikes the underlying ends in.
* a **mutually exclusive** set ("which range CPI lands in", "who wins"): at most one market
  pays. When the set is *exhaustive* exactly one does and the fair probabilities sum to 1; when
  it is not, "none of them" is one more outcome.
* **independent** markets: nothing is known; every market is its own YES/NO.

:func:`event_structures` reads the structure off the markets' own metadata (Kalshi's
``strike_type``, ``floor_strike`` and the event's ``mutually_exclusive``; the simulator fills
them in the same way). Everything here is pure: no I/O, no clock.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cfa.core.types import CfaValueError, MarketInfo


class EventKind(enum.StrEnum):
    """How the markets of one event resolve together."""

    LADDER = "ladder"
    EXCLUSIVE = "exclusive"
    INDEPENDENT = "independent"


LADDER_STRIKE_TYPES = ("greater", "greater_or_equal")
"""Kalshi ``strike_type`` values of an "above the strike" market (a ladder's rungs)."""


@dataclass(frozen=True, slots=True)
class EventStructure:
    """One event's markets and how they resolve together.

    ``tickers`` are in the structure's order: for a ladder by ascending strike (so that the
    fair probability of YES is non-increasing along it), for an exclusive set in the order
    given. ``strikes`` holds the ladder's strikes (empty otherwise). ``exhaustive`` (exclusive
    sets only): exactly one market resolves YES; otherwise "none" is one more outcome.
    """

    event_ticker: str
    kind: EventKind
    tickers: tuple[str, ...]
    strikes: tuple[float, ...] = ()
    exhaustive: bool = True

    def __post_init__(self) -> None:
        if not self.tickers:
            raise CfaValueError(f"event {self.event_ticker}: no markets")
        if len(set(self.tickers)) != len(self.tickers):
            raise CfaValueError(f"event {self.event_ticker}: a market is listed twice")
        if self.kind is EventKind.LADDER:
            if len(self.strikes) != len(self.tickers):
                raise CfaValueError(
                    f"event {self.event_ticker}: a ladder needs one strike per market, got "
                    f"{len(self.strikes)} for {len(self.tickers)}"
                )
            if any(b <= a for a, b in zip(self.strikes, self.strikes[1:], strict=False)):
                raise CfaValueError(
                    f"event {self.event_ticker}: ladder strikes must ascend, got {self.strikes}"
                )

    @property
    def n(self) -> int:
        """Number of markets."""
        return len(self.tickers)

    def index(self, ticker: str) -> int:
        """Position of ``ticker`` in :attr:`tickers` (ValueError if it is not one)."""
        return self.tickers.index(ticker)

    def outcomes(self) -> tuple[tuple[bool, ...], ...]:
        """Every way the event can resolve, as a YES flag per market (in :attr:`tickers` order).

        Ladder: ``n + 1`` outcomes, the underlying below every strike, between strikes ``j - 1``
        and ``j``, …, above all (market ``i`` is YES iff ``i < j``). Exclusive: market ``j``
        alone YES for each ``j``, plus all NO when not exhaustive. Independent: raises
        (``2**n`` outcomes: callers treat the markets one by one instead).
        """
        n = self.n
        if self.kind is EventKind.LADDER:
            return tuple(tuple(i < j for i in range(n)) for j in range(n + 1))
        if self.kind is EventKind.EXCLUSIVE:
            rows = [tuple(i == j for i in range(n)) for j in range(n)]
            if not self.exhaustive:
                rows.append((False,) * n)
            return tuple(rows)
        raise CfaValueError(f"event {self.event_ticker}: independent markets have no outcome list")


def event_structures(markets: Iterable[MarketInfo]) -> dict[str, EventStructure]:
    """Group ``markets`` by event and read each event's structure off their metadata.

    An event is a **ladder** when it has at least two markets, all with an "above" strike type
    (:data:`LADDER_STRIKE_TYPES`), distinct ``floor_strike`` values and one subject (their
    tickers, past the event ticker and less the strike, are the same: ``T`` in
    ``KXBTCD-…-T96499.99``; a spread event's ``BOS3`` and ``NYK5`` are two teams, not one
    ladder, see :func:`ticker_subject`), and is not marked mutually exclusive; **exclusive**
    when it has at least two markets that say ``mutually_exclusive`` (exhaustive when they
    also say ``exhaustive``); otherwise **independent**. Markets keep their given
    order within an exclusive or independent event. Only the markets passed in are used: a
    ladder of which we trade three rungs is a ladder of three.
    """
    by_event: dict[str, list[MarketInfo]] = {}
    for m in markets:
        by_event.setdefault(m.event_ticker, []).append(m)
    return {ev: _structure(ev, ms) for ev, ms in by_event.items()}


def _structure(event: str, markets: Sequence[MarketInfo]) -> EventStructure:
    tickers = tuple(m.ticker for m in markets)
    if len(markets) >= 2 and any(m.mutually_exclusive for m in markets):
        return EventStructure(
            event,
            EventKind.EXCLUSIVE,
            tickers,
            exhaustive=all(m.exhaustive for m in markets),
        )
    strikes = [m.floor_strike for m in markets]
    if (
        len(markets) >= 2
        and all(m.strike_type in LADDER_STRIKE_TYPES for m in markets)
        and all(s is not None for s in strikes)
        and len(set(strikes)) == len(strikes)
        and len({ticker_subject(m.ticker, event) for m in markets}) == 1
    ):
        order = sorted(range(len(markets)), key=lambda i: strikes[i])  # type: ignore[arg-type, return-value]
        return EventStructure(
            event,
            EventKind.LADDER,
            tuple(tickers[i] for i in order),
            strikes=tuple(float(strikes[i]) for i in order),  # type: ignore[arg-type]
        )
    return EventStructure(event, EventKind.INDEPENDENT, tickers)


def ticker_subject(ticker: str, event_ticker: str) -> str:
    """What a market's ticker names past its event's ticker, without the strike: ``T`` for
    ``KXBTCD-26DEC0217-T96499.99``, ``BOS`` for a spread event's ``…-BOS3``. Rungs of one
    ladder share it."""
    rest = ticker[len(event_ticker) + 1 :] if ticker.startswith(event_ticker + "-") else ticker
    return rest.rstrip("0123456789.-")
