"""``KalshiFeedExchange``: replay a recorded Kalshi WebSocket feed as an :class:`Exchange`.

Input: a JSON Lines file of Kalshi's own WebSocket frames, one per line, each with the time the
recorder received it: ``{"type", "sid", "seq", "msg", "recv_ts"}`` (``recv_ts`` in epoch
seconds), as :func:`cfa.exchange.captures.write_ws_frames` writes them. ``orderbook_snapshot``,
``orderbook_delta``, ``trade`` and ``ticker`` frames are market data (parsed with
:mod:`cfa.exchange.kalshi.frames`); every other frame (``subscribed``, ``ok``, ...) is control
traffic and is skipped. Nothing here touches a network.

**Stream.** :meth:`KalshiFeedExchange.stream` yields the file's snapshots, deltas and trades in
file order (``ticker`` frames are not cfa events: they are read, kept as
:meth:`~KalshiFeedExchange.last_ticker`, and used by the fill model, but not yielded), with our
own order updates and fills interleaved at the moment they happen. One replay per exchange: the
file is read once, by one stream at a time.

**Clock and timestamps.** The clock is the frame's *receive* time (``recv_ts``), held monotone
(a frame received "earlier" than the one before it, which the recorder's clock occasionally
reports right after a subscription, does not move the clock back). Every yielded event is
re-stamped with that clock (``ev.ts == clock.now()``), Kalshi's ``ts_ms`` is not used, because
(1) snapshots carry no exchange time at all, so the receive time is the only clock every frame
shares; (2) a mix of two clocks (Kalshi's runs about 0.3 s ahead of the recorder's) would make
event times go backwards; and (3) the receive time is when a live loop would have seen the
frame and acted on it, which is what the replay should reproduce.

**Sequence numbers, holes and resyncs.** The exchange keeps its own copy of each recorded book
(:class:`cfa.core.book.OrderBook`, on Kalshi's ``seq``) and, for the stream, numbers book events
per market itself: its book deltas (recorded ones and those of our own orders) count up by one
from the last snapshot's ``seq``. A *data hole* is a stretch where the recorded book cannot be
trusted:

* a *gap*: a recorded delta whose Kalshi ``seq`` is not the previous one plus one, or an
  inconsistent one (a level that would go negative). The stream yields that delta with a
  ``seq`` that skips one, so a consumer's :class:`~cfa.core.book.OrderBook` raises
  :class:`~cfa.core.book.BookSequenceError` and resyncs (the market loop cancels its orders and
  asks :meth:`~KalshiFeedExchange.get_orderbook`), exactly as on a live gap. Until the
  recording's next real snapshot the market is *blind*: :meth:`get_orderbook` shows only our
  own resting orders (the venue's book is unknown, so nothing can be quoted on it), and no
  book delta of that market is streamed (recorded ones, and those of our own orders). The
  exchange itself keeps applying the recorded deltas to its copy (leniently: whatever their
  ``seq``, a level that would go negative is removed), so the fill model goes on with the best
  knowledge there is. The next snapshot in the file ends the hole and is streamed as usual.
* a *jump*: a snapshot (after the market's first, before its close) whose book differs from
  the book rebuilt from the deltas before it, while no gap was open — deltas were lost without
  a sign in ``seq`` (a reconnection, say). The stream already carries the snapshot, which
  corrects the consumer's book; the jump is counted.

:meth:`KalshiFeedExchange.health` reports per market the gaps, jumps, holes (gaps + jumps),
resyncs (snapshots after the first, Kalshi's post-close snapshot included), the seconds spent
blind, and how the replayed book agreed with the recorded ``ticker`` channel (checked only
while the book is trusted). Deltas that come before a market's first snapshot are skipped
(there is no book to apply them to). A snapshot in the file replaces the book.

**Watchdog.** :attr:`KalshiFeedExchange.clock` *is* the replay's event clock (receive time of the
frame being replayed), so a recorded silence is a silence on that clock: the session's dead-feed
breaker (:class:`cfa.risk.breakers.DeadFeed`), which is checked at each event on the exchange's
clock, halts at the first event after a recorded silence longer than its timeout and resumes
as that event flows, without waiting wall time. (The frame that ends the silence has already
been applied, and may have filled a resting order, when the halt is seen.) A hole streams no
book event either, so a blind stretch longer than the timeout with nothing else flowing (one
market, no trades) also halts and resumes at the snapshot, as a live feed that stays unsynced
would.

**Our orders** never reach a venue; they rest in the venue emulator
(:class:`cfa.exchange.emulator.book.BookEmulator`, which this class is; its order checks are
:mod:`cfa.exchange.emulator.orders`, shared with the simulator). The recorded book does not
contain them and the recording does not react to them. Book deltas carrying our
``client_order_id`` show them in the streamed book (as :class:`cfa.exchange.sim.SimExchange`
does), so a consumer's book is "recorded book + our orders" and :meth:`get_orderbook` returns
the same. Prices must be on
the market's grid (``invalid_price``); a post-only order that would cross the recorded book or
our own opposite order is rejected (``post_only_cross``); ``reduce_only`` cuts the size to the
position; orders after the market's close are rejected (``market_closed``) and resting ones are
cancelled when the clock passes the close. Placing again with a known client order id returns
that order as it is now. Order ids are ``feed-o00000001``…, fill ids ``feed-f00000001``….

**The fill assumption** (queue position is unknown in a recording, and nobody in the recording
traded with us). A resting order fills, fully, at its own price, as a maker (the series' maker
fee: zero for ``quadratic`` series such as KXBTC15M), only when the recording shows that a
counterparty would have reached it *through* its price:

* *book trade-through*: our bid at ``p`` fills when the recorded best ask falls strictly below
  ``p`` (our ask at ``p``: when the recorded best bid rises strictly above ``p``) — someone is
  then willing to sell below our bid, so they would have hit us first;
* *trade-through*: a recorded ``trade`` at a price strictly below our bid (above our ask) fills
  ``min(remaining, trade count)``: whoever sold there would have sold to our better bid first;
* *ticker trade-through* (``ticker_trades=True``, the default; the captures have no ``trade``
  channel): when a ``ticker`` update shows the traded volume grew by ``dv`` since the market's
  previous ``ticker`` and its last trade price is strictly through our price, the order fills
  ``min(remaining, dv)`` — but only if it has rested at that price since before that previous
  ``ticker`` (the trade may have happened anywhere in between).

Touching is not enough: a trade or a best price *at* our price leaves us behind an unknown
queue, so we assume we did not fill (pessimistic for fill counts, and so for rebates and
spread capture; optimistic in that nothing that trades through ever misses us and fills have
no adverse price beyond ``p``). That is the ``through`` fill model (the default);
``fill_model="touch"`` turns every "strictly" above into "at or through" (front-of-queue, an
optimistic bound), and ``fill_model="queue"`` adds an estimated queue position so that prints
*at* our price fill us once the size ahead is used up (:mod:`cfa.exchange.emulator.fills`).
Liquidity we take or fill against is not removed
from the recorded book. A non-post-only order that crosses takes the recorded liquidity it
crosses at the recorded prices (taker fee) and rests the rest.

**Accounting** follows :class:`cfa.exchange.emulator.account.Account` (Kalshi collateral rules,
average-cost realised PnL, fees apart). At the end of the file every resting order is cancelled;
a market whose result is known (``results=``, or the metadata file) is settled and a
:class:`Settlement` is yielded; otherwise positions are marked to the last two-sided recorded
mid (:meth:`KalshiFeedExchange.pnl`).

**Market metadata** (:class:`MarketInfo`), first that applies: ``markets=``; the metadata file
beside the frames (:func:`metadata_path`: ``<name>.markets.json``, written by
:func:`write_feed` from the capture's ``watch_market`` events); the ticker itself (Kalshi's
``SERIES-YYMMMDDHHMM-…`` names the close in US Eastern time); else a close one day after the
file's last frame. Unless the metadata file says otherwise: price structure
``tapered_deci_cent`` (what the KXBTC15M captures show: a $0.001 grid below $0.10 and above
$0.90, $0.01 between) and fee type ``quadratic`` with multiplier 1 (takers pay, makers do not).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import mmap
import re
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast
from zoneinfo import ZoneInfo

from cfa.core.book import OrderBook
from cfa.core.grid import PriceGrid
from cfa.core.types import (
    ONE_DOLLAR,
    BookDelta,
    BookSnapshot,
    CfaValueError,
    FeeSchedule,
    MarketInfo,
    Outcome,
    Settlement,
    Trade,
)
from cfa.exchange.base import (
    Clock,
    Event,
    ExchangeError,
    MarketNotFound,
)
from cfa.exchange.clock import EventClock
from cfa.exchange.emulator.account import Account
from cfa.exchange.emulator.book import BookEmulator, EmulatedMarket
from cfa.exchange.emulator.fills import FILL_MODELS
from cfa.exchange.kalshi import frames
from cfa.exchange.kalshi.frames import Ticker

try:  # orjson parses the ~100k lines of a capture window about 3x faster than json
    from orjson import loads as _loads
except ImportError:  # pragma: no cover
    from json import loads as _loads  # type: ignore[assignment]

__all__ = [
    "DEFAULT_CASH",
    "FILL_MODELS",
    "FeedHealth",
    "FeedPnL",
    "KalshiFeedExchange",
    "close_ts_from_ticker",
    "market_info_for",
    "metadata_path",
    "read_metadata",
    "write_feed",
]

DEFAULT_CASH = Decimal(10_000)
"""Starting balance in dollars."""

YIELD_EVERY = 256
"""The stream awaits ``asyncio.sleep(0)`` at least this often, so other tasks run."""

_OUTCOMES = {"yes": Outcome.YES, "no": Outcome.NO}
_DECODED_MAX = 65_536
"""Distinct price and count strings the stream keeps decoded (the cache restarts beyond)."""

DEFAULT_STRUCTURE = "tapered_deci_cent"
DEFAULT_FEE = FeeSchedule(fee_type="quadratic", multiplier=Decimal(1))

_ET = ZoneInfo("America/New_York")
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
    )
}
_TICKER_TIME = re.compile(r"^[A-Z0-9]+-(\d{2})([A-Z]{3})(\d{2})(\d{2})(\d{2})(?:-|$)")


# -- market metadata -----------------------------------------------------------------------------


def close_ts_from_ticker(ticker: str) -> float | None:
    """The close time Kalshi encodes in a ticker (``KXBTC15M-26MAY140045-45`` → 2026-05-14
    00:45 US Eastern = 04:45 UTC), epoch seconds; ``None`` when the ticker has no such part."""
    m = _TICKER_TIME.match(ticker)
    if m is None or m.group(2) not in _MONTHS:
        return None
    yy, mon, dd, hh, mm = m.groups()
    try:
        dt = datetime(2000 + int(yy), _MONTHS[mon], int(dd), int(hh), int(mm), tzinfo=_ET)
    except ValueError:
        return None
    return dt.timestamp()


def market_info_for(
    ticker: str,
    *,
    close_ts: float,
    strike: float | None = None,
    open_ts: float = 0.0,
    structure: str = DEFAULT_STRUCTURE,
    fee: FeeSchedule = DEFAULT_FEE,
) -> MarketInfo:
    """A :class:`MarketInfo` for a recorded market (series and event from the ticker)."""
    parts = ticker.split("-")
    series = parts[0]
    event = "-".join(parts[:2]) if len(parts) > 2 else ticker
    title = f"{series} above {strike:,.2f}" if strike is not None else ticker
    return MarketInfo(
        ticker=ticker,
        event_ticker=event,
        series_ticker=series,
        title=title,
        price_ranges=PriceGrid.from_structure(structure).ranges,
        close_ts=close_ts,
        open_ts=open_ts,
        price_level_structure=structure,
        fee=fee,
        subtitle="" if strike is None else f"strike {strike}",
    )


def metadata_path(frames_path: Path | str) -> Path:
    """Where the metadata of a frames file lives: ``x.jsonl`` → ``x.markets.json``."""
    p = Path(frames_path)
    return p.with_name(p.name.split(".", 1)[0] + ".markets.json")


def read_metadata(path: Path | str) -> tuple[list[MarketInfo], dict[str, Outcome]]:
    """Read a metadata file: ``{"markets": [{"ticker", "close_time" | "close_ts", "strike"?,
    "result"?, "price_level_structure"?, "fee_type"?, "fee_multiplier"?}]}``."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    infos: list[MarketInfo] = []
    results: dict[str, Outcome] = {}
    for i, m in enumerate(data.get("markets", [])):
        ticker = m.get("ticker")
        if not isinstance(ticker, str) or not ticker:
            raise CfaValueError(f"{path}: markets[{i}].ticker missing")
        if m.get("close_ts") is not None:
            close = float(m["close_ts"])
        elif m.get("close_time"):
            close = frames.parse_rfc3339(m["close_time"], f"markets[{i}].close_time")
        else:
            guess = close_ts_from_ticker(ticker)
            if guess is None:
                raise CfaValueError(f"{path}: markets[{i}]: no close_time")
            close = guess
        fee = FeeSchedule(
            fee_type=str(m.get("fee_type") or DEFAULT_FEE.fee_type),
            multiplier=Decimal(str(m.get("fee_multiplier", DEFAULT_FEE.multiplier))),
        )
        infos.append(
            market_info_for(
                ticker,
                close_ts=close,
                strike=float(m["strike"]) if m.get("strike") is not None else None,
                structure=str(m.get("price_level_structure") or DEFAULT_STRUCTURE),
                fee=fee,
            )
        )
        if m.get("result") in ("yes", "no"):
            results[ticker] = Outcome(m["result"])
    return infos, results


def _dataset_markets(dataset: Path) -> list[dict[str, Any]]:
    """``watch_market`` payloads of a capture dataset (ticker, close_time, strike), in order."""
    seen: dict[str, dict[str, Any]] = {}
    root = dataset / "raw_events"
    for path in sorted(root.glob("type=watch_market/**/*.ndjson*")):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                obj = json.loads(line)
                p = obj.get("payload_json") or {}
                t = p.get("market_ticker") or obj.get("market_ticker")
                if not t:
                    continue
                entry = seen.setdefault(t, {"ticker": t})
                if p.get("close_time"):
                    entry["close_time"] = p["close_time"]
                if isinstance(p.get("strike"), int | float):
                    entry["strike"] = p["strike"]
    return list(seen.values())


def _known_results(captures_dir: Path) -> dict[str, str]:
    """Market results from the ``kxbtc15m_market_result_cache_*.json`` files beside the data."""
    out: dict[str, str] = {}
    for p in sorted(captures_dir.glob("*market_result_cache*.json")):
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            for t, v in data.items():
                if isinstance(v, dict) and v.get("result") in ("yes", "no"):
                    out[t] = v["result"]
    return out


def write_feed(dataset: Path | str, out: Path | str) -> tuple[int, Path]:
    """Convert one capture dataset to a frames file ``out`` plus its metadata file.

    Frames come from :func:`cfa.exchange.captures.write_ws_frames`; the metadata file
    (:func:`metadata_path`) lists each recorded market with the ``close_time`` and ``strike`` of
    its ``watch_market`` event, the series' terms (``tapered_deci_cent``, ``quadratic`` fees), and
    its ``result`` when a result cache beside the datasets knows it. Returns (frames written,
    metadata path). Both files hold or describe licensed data: write them outside the repo.
    """
    from cfa.exchange.captures import write_ws_frames

    ds = Path(dataset)
    n = write_ws_frames(ds, out)
    results = _known_results(ds.parent)
    markets = _dataset_markets(ds)
    for m in markets:
        m["price_level_structure"] = DEFAULT_STRUCTURE
        m["fee_type"] = DEFAULT_FEE.fee_type
        m["fee_multiplier"] = str(DEFAULT_FEE.multiplier)
        if m["ticker"] in results:
            m["result"] = results[m["ticker"]]
    meta = metadata_path(out)
    meta.write_text(
        json.dumps({"dataset": ds.name, "markets": markets}, indent=1) + "\n", encoding="utf-8"
    )
    return n, meta


# -- accounting summary --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedPnL:
    """Our result in one market. Money in dollars, sizes in contracts.

    ``marked_pnl`` = realised − fees + the open position valued at ``mark`` (the settlement
    value when settled, else the last two-sided recorded mid; at cost when there is none).
    """

    ticker: str
    fills: int
    volume: float
    fees: Decimal
    realized_pnl: Decimal
    marked_pnl: Decimal
    position: float
    max_abs_position: float
    mark: float | None
    settled: Outcome | None


@dataclass(frozen=True, slots=True)
class FeedHealth:
    """How trustworthy one market's recording was (see the module doc, "holes and resyncs").

    ``gaps``: recorded sequence gaps and inconsistent deltas (each opens a hole); ``jumps``:
    snapshots whose book differed from the one rebuilt from deltas, with no gap open;
    ``holes`` = gaps + jumps; ``resyncs``: snapshots after the market's first; ``blind_s``:
    seconds from a gap to the snapshot that ended it (to the end of the file if none did);
    ``ticker_checked`` / ``ticker_exact`` / ``ticker_near``: ``ticker`` updates compared with the
    trusted replayed book (both two-sided), those whose best bid and ask both equal it, and
    those within $0.01.
    """

    ticker: str
    gaps: int
    jumps: int
    holes: int
    resyncs: int
    blind_s: float
    ticker_checked: int
    ticker_exact: int
    ticker_near: int

    @property
    def ticker_exact_share(self) -> float | None:
        """Share of checked ``ticker`` updates that agreed exactly (None when none was checked)."""
        return self.ticker_exact / self.ticker_checked if self.ticker_checked else None

    @property
    def ticker_near_share(self) -> float | None:
        """Share of checked ``ticker`` updates within $0.01 (None when none was checked)."""
        return self.ticker_near / self.ticker_checked if self.ticker_checked else None


# -- the exchange --------------------------------------------------------------------------------


class _RecordedDelta:
    """A recorded ``orderbook_delta`` as :meth:`BookEmulator._on_delta` reads it: the fields of
    :class:`BookDelta`, in a plain mutable object that the stream refills for each frame
    (cheaper than building a frozen record that nothing keeps: ``_on_delta`` reads the
    recorded delta during the call, applies it to the recorded book and streams a new
    :class:`BookDelta` of its own)."""

    __slots__ = ("client_order_id", "delta", "outcome", "price", "seq", "ticker", "ts")

    def __init__(self) -> None:
        self.ticker = ""
        self.seq = 0
        self.ts = 0.0
        self.outcome = Outcome.YES
        self.price = 0
        self.delta = 0
        self.client_order_id: str | None = None


@dataclass(slots=True)
class _Market(EmulatedMarket):
    last_ticker: Ticker | None = None
    prev_ticker_t: float | None = None
    ticker_checks: list[int] = field(default_factory=lambda: [0, 0, 0])


class KalshiFeedExchange(BookEmulator):
    """Replays a JSONL of Kalshi WebSocket frames; implements :class:`cfa.exchange.base.Exchange`.

    ``path``: the frames file (see the module doc). ``markets``: :class:`MarketInfo` of the
    markets to expose (default: every market with a snapshot in the file, described by the
    metadata file, the ticker, or a fallback; see the module doc). ``fill_model``: ``"through"``
    (default), ``"touch"`` or ``"queue"`` (:data:`FILL_MODELS`). ``ticker_trades``: also infer
    trades from the ``ticker`` channel's volume. ``results``: known outcomes
    (``{"TICKER": "yes"}``), settled at the end of the file. ``cash``: starting balance in dollars.
    """

    _fast = True
    """Decode current-shape ``orderbook_delta`` frames inline in :meth:`stream` (False: every
    line through :meth:`_frame`, the reference the fast path is tested against)."""

    def __init__(
        self,
        path: Path | str,
        *,
        markets: Sequence[MarketInfo] | None = None,
        fill_model: str = "through",
        ticker_trades: bool = True,
        results: Mapping[str, Outcome | str] | None = None,
        cash: Decimal | int | str = DEFAULT_CASH,
    ) -> None:
        if fill_model not in FILL_MODELS:
            raise ValueError(f"fill_model must be one of {FILL_MODELS}, got {fill_model!r}")
        self._clock = EventClock()
        self.clock: Clock = self._clock
        """Receive time of the last frame read (before the stream: of the first frame)."""
        self._init_emulator(
            fill_model_name=fill_model,
            cash=Account(Decimal(cash)),
            order_prefix="feed-o",
            fill_prefix="feed-f",
        )
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no frames file {self.path}")
        self.ticker_trades = ticker_trades
        tickers, first_ts, last_ts = self._prescan()
        self._clock.advance_to(first_ts)
        meta_results: dict[str, Outcome] = {}
        infos: dict[str, MarketInfo] = {}
        if markets is not None:
            infos = {m.ticker: m for m in markets}
        elif (recorded := self._recorded_markets()) is not None:
            infos = {m.ticker: m for m in recorded}
        else:
            meta = metadata_path(self.path)
            if meta.is_file():
                listed, meta_results = read_metadata(meta)
                infos = {m.ticker: m for m in listed}
            for t in tickers:
                if t not in infos:
                    close = close_ts_from_ticker(t)
                    infos[t] = market_info_for(
                        t, close_ts=close if close is not None else last_ts + 86_400.0
                    )
        self._results: dict[str, Outcome] = dict(meta_results)
        for t, r in (results or {}).items():
            self._results[t] = Outcome(r)
        for info in infos.values():
            self._add_market(info)
        self._forms = frames.BookForms(self._recorded_yes_price())
        """Pricing form of each recorded orderbook sid (``use_yes_price``, checked per snapshot)."""
        self._streaming = False
        self._replayed = False
        self._snapshotted = tickers
        self._reader: BinaryIO | None = None
        self.frames_read = 0
        """Frames read from the file so far (control frames included)."""
        self.events_emitted = 0
        """Events the stream has yielded so far."""

    def _new_market(self, info: MarketInfo) -> _Market:
        return _Market(info, PriceGrid(info.price_ranges), OrderBook(info.ticker))

    def _market(self, ticker: str) -> _Market:
        m = self._markets.get(ticker)
        if m is None:
            raise MarketNotFound(
                f"no market {ticker!r} in {self.path.name}", code="market_not_found"
            )
        return cast(_Market, m)

    # -- feed-only helpers ----------------------------------------------------------------------

    @property
    def tickers(self) -> list[str]:
        """The markets this exchange exposes."""
        return list(self._markets)

    @property
    def gaps(self) -> dict[str, int]:
        """Recorded sequence gaps or inconsistent deltas per market (see the module doc)."""
        return {t: m.gaps for t, m in self._markets.items()}

    @property
    def holes(self) -> dict[str, int]:
        """Data holes per market: gaps plus snapshot jumps (see the module doc)."""
        return {t: m.gaps + m.jumps for t, m in self._markets.items()}

    def blind(self, ticker: str) -> bool:
        """True while a gap is open in ``ticker``: no book is streamed until a snapshot."""
        return self._market(ticker).hole

    def health(self, ticker: str) -> FeedHealth:
        """Holes, resyncs and ticker agreement of one market so far (:class:`FeedHealth`)."""
        m = self._market(ticker)
        blind = m.blind_s + (self._clock.now() - m.hole_since if m.hole else 0.0)
        n, exact, near = m.ticker_checks
        return FeedHealth(
            ticker=ticker,
            gaps=m.gaps,
            jumps=m.jumps,
            holes=m.gaps + m.jumps,
            resyncs=m.resyncs,
            blind_s=blind,
            ticker_checked=n,
            ticker_exact=exact,
            ticker_near=near,
        )

    @property
    def finished(self) -> bool:
        """True once the whole file has been replayed."""
        return self._replayed

    def ticker_agreement(self, ticker: str) -> tuple[int, int, int]:
        """How the replayed book agreed with Kalshi's ``ticker`` updates, checked as each
        arrived (both two-sided, the book trusted: not in a hole): (updates checked, best bid
        and ask equal, both within $0.01)."""
        n, exact, near = self._market(ticker).ticker_checks
        return n, exact, near

    def last_ticker(self, ticker: str) -> Ticker | None:
        """The last ``ticker`` update read for a market (Kalshi's own top of book)."""
        return self._market(ticker).last_ticker

    def recorded_book(self, ticker: str) -> OrderBook:
        """The recorded book as replayed so far (without our orders). Do not modify."""
        return self._market(ticker).book

    def result(self, ticker: str) -> Outcome | None:
        """The market's known outcome (settled at the end of the file), else None."""
        return self._results.get(ticker)

    def mark(self, ticker: str) -> float | None:
        """The last two-sided recorded mid, in dollars (None before the book is two-sided)."""
        return self._market(ticker).last_mid

    def pnl(self, ticker: str) -> FeedPnL:
        """Our fills, volume, fees and PnL in one market (see :class:`FeedPnL`)."""
        m = self._market(ticker)
        fills = [f for f in self.account.fills if f.ticker == ticker]
        p = self.account.positions.get(ticker)
        pos = p.position if p is not None else 0
        realized = p.realized if p is not None else Decimal(0)
        fees = p.fees if p is not None else Decimal(0)
        if m.settled is not None:
            mark: float | None = 1.0 if m.settled is Outcome.YES else 0.0
        else:
            mark = m.last_mid
        unreal = Decimal(0)
        if p is not None and pos:
            value = p.basis if mark is None else Decimal(repr(mark)) * pos / 100
            unreal = value - p.basis
        return FeedPnL(
            ticker=ticker,
            fills=len(fills),
            volume=sum(f.count for f in fills) / 100,
            fees=fees,
            realized_pnl=realized,
            marked_pnl=(realized + unreal - fees).quantize(Decimal("0.0001")),
            position=pos / 100,
            max_abs_position=m.max_abs_pos / 100,
            mark=mark,
            settled=m.settled,
        )

    # -- the Exchange interface -----------------------------------------------------------------

    async def start(self) -> None:
        """Nothing to open; idempotent."""

    async def close(self) -> None:
        """Nothing to release; idempotent. Resting orders stay (the runtime cancels first)."""

    async def stream(self, tickers: Sequence[str]) -> AsyncGenerator[Event, None]:
        """Replay the file once (see the module doc); events of ``tickers`` only. After
        :meth:`open_books`, what it read comes first. The events of :meth:`stream_chunks`,
        one at a time."""
        chunks = self.stream_chunks(tickers)
        try:
            async for chunk in chunks:
                for ev in chunk:
                    yield ev
        finally:
            await chunks.aclose()

    async def stream_chunks(self, tickers: Sequence[str]) -> AsyncGenerator[Iterator[Event], None]:
        """:meth:`stream` in chunks (:func:`cfa.exchange.base.event_chunks`): iterators that
        read the file lazily, a frame at a time as the consumer asks for the next event (so an
        order placed while one event is handled acts before the next frame is read, exactly as
        with :meth:`stream`), each ending where the stream awaits (every
        :data:`YIELD_EVERY` events). Exhaust each chunk before asking for the next.

        Hot path: an ``orderbook_delta`` frame in Kalshi's current shape (``price_dollars`` and
        ``delta_fp`` strings, an integer ``ts_ms``, a ``market_ticker``, no
        ``client_order_id``, a float ``recv_ts``, an integer ``seq``; plain or as a ``cfa
        record`` line) is decoded inline into what
        :func:`cfa.exchange.kalshi.frames.orderbook_delta` would return and handed to the
        emulator as :meth:`_frame` would; every other line takes :meth:`_frame`. The two give
        the same events, field for field (``tests/test_feed_fastpath.py``). A subclass or
        instance that replaces :meth:`_frame` gets every line through it."""
        want = {self._market(t).info.ticker for t in tickers}
        if self._streaming or self._replayed:
            raise ExchangeError("the feed is replayed once, by one stream", code="stream_busy")
        self._streaming = True
        every = want >= self._markets.keys()  # the stream wants every market: no filter
        prices: dict[str, int] = {}  # decoded strings: a dict lookup is cheaper than lru_cache's
        counts: dict[str, int] = {}
        done = [False]
        try:
            while True:
                yield self._pull(want, every, prices, counts, done)
                if done[0]:
                    return
                await asyncio.sleep(0)
        finally:
            self._streaming = False
            self._replayed = True
            self.closed = True
            self._close_file()

    def _pull(
        self,
        want: set[str],
        every: bool,
        prices: dict[str, int],
        counts: dict[str, int],
        done: list[bool],
    ) -> Iterator[Event]:
        """One chunk of :meth:`stream_chunks`: what is queued, then frame after frame; ends
        after :data:`YIELD_EVERY` events (queued ones of other markets count) or, with
        ``done[0]`` set, at the end of the file."""
        pending = self._pending
        popleft = pending.popleft
        n = 0
        fast = (
            self._fast
            and "_frame" not in vars(self)
            and (type(self)._frame is KalshiFeedExchange._frame)
        )
        loads = _loads
        clock = self._clock
        markets = self._markets
        forms = self._forms
        by_sid = forms._by_sid
        outcomes = _OUTCOMES
        cached_price = frames._cached_price
        cached_qty = frames._cached_qty
        no = Outcome.NO
        on_delta = self._on_delta
        record = self._record
        as_frame = self._as_frame
        rec: Any = _RecordedDelta()  # read by _on_delta during the call, never kept
        msg: Any
        seq: Any
        recv: Any
        side: Any
        ts_ms: Any
        ticker: Any
        while pending:
            ev = popleft()
            if every or ev.ticker in want:
                self.events_emitted += 1
                yield ev
            n += 1
            if n >= YIELD_EVERY:
                return
        for line in self._lines():
            if line[:1] != b"{" and not line.strip():
                continue
            if not fast:
                self._frame(line)
            else:
                f = loads(line)
                if type(f) is dict and ("frame" in f or "kind" in f):
                    f = as_frame(f)  # a ``cfa record`` line (or its header)
                ok = False
                if type(f) is dict:
                    try:  # reads only: a missing key or a non-object takes _record
                        if f["type"] == "orderbook_delta":
                            msg = f["msg"]
                            seq = f["seq"]
                            recv = f["recv_ts"]
                            side = msg["side"]
                            raw_price = msg["price_dollars"]
                            raw_delta = msg["delta_fp"]
                            ts_ms = msg["ts_ms"]
                            ticker = msg["market_ticker"]
                            ok = (
                                type(msg) is dict
                                and type(seq) is int
                                and seq >= 0
                                and type(recv) is float
                                and type(side) is str
                                and type(raw_price) is str
                                and type(raw_delta) is str
                                and type(ts_ms) is int
                                and ts_ms >= 0
                                and type(ticker) is str
                                and ticker != ""
                                and msg.get("client_order_id") is None
                                and side in outcomes
                            )
                    except (KeyError, TypeError):
                        ok = False
                if not ok:
                    record(f)
                else:
                    self.frames_read += 1
                    if recv > clock.t:
                        clock.t = recv
                    now = clock.t
                    outcome = outcomes[side]
                    price = prices.get(raw_price)
                    if price is None:
                        if len(prices) >= _DECODED_MAX:
                            prices.clear()
                        price = cached_price(raw_price, "orderbook_delta.price_dollars")
                        prices[raw_price] = price
                    if outcome is no and by_sid.get(f.get("sid"), forms.default):
                        price = ONE_DOLLAR - price
                    delta = counts.get(raw_delta)
                    if delta is None:
                        if len(counts) >= _DECODED_MAX:
                            counts.clear()
                        delta = cached_qty(raw_delta, "orderbook_delta.delta_fp")
                        counts[raw_delta] = delta
                    m = markets.get(ticker)
                    if m is not None:
                        if now >= m.info.close_ts and self._resting:
                            self._close_if_due(m, now)
                        rec.ticker = ticker
                        rec.seq = seq
                        rec.ts = ts_ms / 1000.0
                        rec.outcome = outcome
                        rec.price = price
                        rec.delta = delta
                        on_delta(m, rec, now)
            while pending:
                ev = popleft()
                if every or ev.ticker in want:
                    self.events_emitted += 1
                    yield ev
                n += 1
                if n >= YIELD_EVERY:
                    return  # the chunk ends: the stream awaits, the next chunk goes on
        self._finish()
        while pending:
            ev = popleft()
            if every or ev.ticker in want:
                self.events_emitted += 1
                yield ev
        done[0] = True

    def open_books(self) -> None:
        """Read the file up to the first snapshot of every market that has one, so that the
        books are known (:meth:`get_orderbook`, orders checked against them) before the stream
        starts, as on a live venue. The events read are held and the stream yields them first.
        Optional; a no-op once the books are open."""
        if self._streaming or self._replayed:
            raise ExchangeError("open_books: the feed is already replaying", code="stream_busy")
        waiting = [self._markets[t] for t in self._snapshotted if t in self._markets]
        if all(m.started for m in waiting):
            return
        for line in self._lines():
            if not line.strip():
                continue
            self._frame(line)
            if all(m.started for m in waiting):
                return

    def _lines(self) -> Iterator[bytes]:
        """The file's lines (blank ones included: callers skip them), read once, shared by
        :meth:`open_books` and the stream: an open binary file, closed at the end of the
        stream."""
        if self._reader is None:
            self._reader = self.path.open("rb")
        return self._reader

    def _close_file(self) -> None:
        if self._reader is not None:
            self._reader.close()

    # -- reading the file -----------------------------------------------------------------------

    def _recorded_markets(self) -> list[MarketInfo] | None:
        """The Market objects a ``cfa record`` header carries, or None for other files."""
        with self.path.open("rb") as fh:
            head = _loads(fh.readline() or b"{}")
        if not isinstance(head, dict) or head.get("kind") != "cfa-kalshi-recording":
            return None
        return [frames.parse_market(m) for m in head.get("markets", [])]

    def _recorded_yes_price(self) -> bool:
        """The ``use_yes_price`` a ``cfa record`` header says its books were asked for (False
        for other files and older recordings: Kalshi's legacy form)."""
        with self.path.open("rb") as fh:
            head = _loads(fh.readline() or b"{}")
        return isinstance(head, dict) and head.get("use_yes_price") is True

    @staticmethod
    def _as_frame(obj: Any) -> Any:
        """A ``cfa record`` line ``{"recv_ts", "frame"}`` as a plain frame with ``recv_ts``;
        its header line (``kind: cfa-kalshi-recording``) as a control frame that is skipped."""
        if isinstance(obj, dict):
            if obj.get("kind") == "cfa-kalshi-recording":
                return {"type": "cfa_recording_header"}
            inner = obj.get("frame")
            if isinstance(inner, dict) and "recv_ts" in obj:
                return {**inner, "recv_ts": obj["recv_ts"]}
        return obj

    def _prescan(self) -> tuple[list[str], float, float]:
        """Markets with a snapshot (in order of appearance), first and last receive times.

        Not a second pass of Python over every line: the file is memory-mapped, the lines up
        to the first with a ``recv_ts`` are decoded, then only the lines that contain
        ``orderbook_snapshot`` (found with ``bytes.find``, at memory speed) and the last
        non-blank line. Same answer and same errors as decoding every such line in order."""
        tickers: dict[str, None] = {}
        first: float | None = None

        def snapshot_line(line: bytes, frame: Any = None) -> None:
            if frame is None:
                frame = self._as_frame(_loads(line))
                if not isinstance(frame, dict):
                    raise CfaValueError(f"{self.path}: a line is not a JSON object")
            if frame.get("type") == "orderbook_snapshot":
                msg = frame.get("msg") or {}
                t = msg.get("market_ticker") or msg.get("ticker")
                if isinstance(t, str):
                    tickers.setdefault(t)

        with self.path.open("rb") as fh:
            if fh.seek(0, 2) == 0:
                raise CfaValueError(f"{self.path}: no frames with recv_ts")
            fh.seek(0)
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
                size = len(data)
                pos = 0
                while first is None and pos < size:  # decode lines until one has recv_ts
                    end = data.find(b"\n", pos)
                    end = size if end < 0 else end + 1
                    line = data[pos:end]
                    pos = end
                    if not line.strip():
                        continue
                    frame = self._as_frame(_loads(line))
                    if not isinstance(frame, dict):
                        raise CfaValueError(f"{self.path}: a line is not a JSON object")
                    if isinstance(frame.get("recv_ts"), int | float):
                        first = float(frame["recv_ts"])
                    if b"orderbook_snapshot" in line:
                        snapshot_line(line, frame)
                if first is None:
                    raise CfaValueError(f"{self.path}: no frames with recv_ts")
                hit = data.find(b"orderbook_snapshot", pos)
                while hit >= 0:
                    start = data.rfind(b"\n", 0, hit) + 1
                    end = data.find(b"\n", hit)
                    end = size if end < 0 else end + 1
                    snapshot_line(data[start:end])
                    hit = data.find(b"orderbook_snapshot", end)
                end = size  # the last non-blank line
                while end > 0 and data[end - 1 : end].isspace():
                    end -= 1
                last_line = data[data.rfind(b"\n", 0, end) + 1 : end]
        last_end = self._as_frame(_loads(last_line)).get("recv_ts")
        last = float(last_end) if isinstance(last_end, int | float) else first
        return list(tickers), first, max(first, last)

    def _frame(self, line: bytes) -> None:
        """Read one frame: move the clock, update the book, run the fill model, queue events."""
        self._record(self._as_frame(_loads(line)))

    def _record(self, frame: Any) -> None:
        """:meth:`_frame` after decoding: ``frame`` as :meth:`_as_frame` returns it."""
        self.frames_read += 1
        if not isinstance(frame, dict):
            raise CfaValueError(f"{self.path}: a line is not a JSON object")
        ftype = frame.get("type")
        if ftype not in frames.MARKET_DATA_TYPES:
            return
        recv = frame.get("recv_ts")
        if not isinstance(recv, int | float) or isinstance(recv, bool):
            raise CfaValueError(f"{self.path}: {ftype} frame without recv_ts")
        self._clock.advance_to(float(recv))
        now = self._clock.now()
        rec = frames.parse_frame(frame, recv_ts=now, use_yes_price=self._forms.of(frame))
        if rec is None:  # pragma: no cover - MARKET_DATA_TYPES always parse
            return
        m = cast("_Market | None", self._markets.get(rec.ticker))
        if m is None:
            return
        self._close_if_due(m, now)
        if isinstance(rec, BookDelta):
            self._on_delta(m, rec, now)
        elif isinstance(rec, BookSnapshot):
            self._on_snapshot(m, rec, now)
        elif isinstance(rec, Trade):
            tr = replace(rec, ts=now)
            m.trades.append(tr)
            self._pending.append(tr)
            self._on_print(m, tr.price, tr.count, now)
        elif isinstance(rec, Ticker):
            self._on_ticker(m, rec, now)

    def _on_ticker(self, m: _Market, tk: Ticker, now: float) -> None:
        b = m.book
        bb, ba = b.best_bid(), b.best_ask()
        if not m.hole and None not in (tk.yes_bid, tk.yes_ask, bb, ba):
            off = max(abs(bb - tk.yes_bid), abs(ba - tk.yes_ask))  # type: ignore[operator]
            c = m.ticker_checks
            c[0] += 1
            c[1] += off == 0
            c[2] += off <= ONE_DOLLAR // 100
        prev = m.last_ticker
        prev_t = m.prev_ticker_t
        m.last_ticker = tk
        m.prev_ticker_t = now
        if not self.ticker_trades or prev is None or prev_t is None:
            return
        if tk.volume is None or prev.volume is None or tk.last_price is None:
            return
        dv = tk.volume - prev.volume
        if dv > 0:
            self._on_print(m, tk.last_price, dv, now, prev_t)

    def _finish(self) -> None:
        """End of file: cancel what rests, settle markets whose result is known."""
        now = self._clock.now()
        for o in list(self._resting.values()):
            self._cancel(self._markets[o.ticker], o)
        for t, m in self._markets.items():
            r = self._results.get(t)
            if r is None or m.settled is not None:
                continue
            self.account.settle(t, r is Outcome.YES)
            m.settled = r
            self._pending.append(Settlement(t, r, now))


if TYPE_CHECKING:  # mypy proves that KalshiFeedExchange is an Exchange
    from cfa.exchange.base import Exchange

    def _is_exchange(ex: KalshiFeedExchange) -> Exchange:
        return ex
