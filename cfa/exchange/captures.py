"""Reader for the recorded Kalshi WebSocket captures (``kxbtc15m_ws_captures``).

The captures are real Kalshi production data recorded by a passive recorder
("native-passive-ws-v1") on the ``ticker`` and ``orderbook_delta`` channels of the active
KXBTC15M market. Their licence forbids redistribution: they live outside the repository, in
``../shared/data/kalshi`` next to the repo (or wherever ``$CFA_KALSHI_DATA`` points), and nothing
here copies them anywhere. See ``docs/calibration.md``.

Layout of one dataset (a ~15-minute recording window, usually two consecutive markets)::

    <dataset>/metadata/dataset_manifest.json
    <dataset>/raw_events/type=<event_type>/day=.../hour=.../*.ndjson[.gz]
    <dataset>/book_checkpoints/day=.../market=<ticker>/*.ndjson     (one dataset only)

Each raw line is an envelope ``{event_type, market_ticker, local_recv_ns, local_recv_ts,
exchange_ts, sequence_number, payload_json, ...}``: ``payload_json`` is Kalshi's ``msg`` unchanged
(for ``ws_subscribed`` the whole reply frame) and ``sequence_number`` Kalshi's per-subscription
``seq``. Facts the reader relies on (checked by ``tests/test_captures.py``):

* Each market is watched over one or more WebSocket connections (``ws_connected`` events). A new
  connection restarts Kalshi's ``seq`` at 1 with a snapshot; within a connection ``seq`` is
  contiguous over snapshots and deltas (Kalshi sends a fresh snapshot after close, mid-sequence).
* The recorder's receive clock is not a total order for the book: a few deltas right after
  subscribing carry an earlier ``local_recv_ns`` than the snapshot they follow. Book events are
  therefore ordered by ``(connection, seq)``, and ticker updates are merged in by receive time
  against the running maximum of the book events' receive times.
* ``book_checkpoints`` are the recorder's own top-5 views. They are built from a book keyed by
  whole cents (Kalshi's legacy ``price_cents``, rounded half up; snapshot levels overwrite one
  another within a cent; a cent level is dropped when it falls to zero or below), so at sub-cent
  levels (below $0.10 and above $0.90) they are a lossy view of the real book.

Times: ``recv_ts`` is the recorder's local clock (about 0.3 s behind Kalshi's in these files);
records carry Kalshi's exchange time where the message has one (deltas and tickers: ``ts_ms``)
and ``recv_ts`` otherwise (snapshots).
"""

from __future__ import annotations

import bisect
import gzip
import heapq
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import IO, Any, TypeAlias

try:  # orjson (a dependency of langgraph) parses the ~400k capture lines about 3x faster.
    from orjson import JSONDecodeError as _JSONDecodeError
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - plain json works, only slower
    from json import JSONDecodeError as _JSONDecodeError  # type: ignore[assignment]
    from json import loads as _loads  # type: ignore[assignment]

from cfa.core.types import (
    BookDelta,
    BookSnapshot,
    CfaValueError,
    Price,
    Qty,
    contracts,
)
from cfa.exchange.kalshi import frames
from cfa.exchange.kalshi.frames import Ticker

__all__ = [
    "CAPTURES_DIRNAME",
    "DATA_ENV_VAR",
    "CaptureEvent",
    "CaptureRecord",
    "Checkpoint",
    "MarketCapture",
    "captures_root",
    "iter_ws_frames",
    "kalshi_data_dir",
    "list_datasets",
    "load_dataset",
    "write_ws_frames",
]

DATA_ENV_VAR = "CFA_KALSHI_DATA"
"""Environment variable that overrides where the Kalshi data directory is."""
CAPTURES_DIRNAME = "kxbtc15m_ws_captures"
"""The captures' directory inside the Kalshi data directory."""

CaptureRecord: TypeAlias = BookSnapshot | BookDelta | Ticker

_BOOK_TYPES = ("orderbook_snapshot", "orderbook_delta")
_DEFAULT_SIDS = {"ticker": 1, "orderbook_delta": 2}


def kalshi_data_dir() -> Path:
    """The Kalshi data directory: ``$CFA_KALSHI_DATA``, else ``../shared/data/kalshi`` beside the
    repository root. The path may not exist; callers check."""
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "kalshi").resolve()


def captures_root(data_dir: Path | None = None) -> Path:
    """The captures directory under ``data_dir`` (default: :func:`kalshi_data_dir`)."""
    return (data_dir if data_dir is not None else kalshi_data_dir()) / CAPTURES_DIRNAME


def list_datasets(root: Path | None = None) -> list[Path]:
    """Dataset directories (those holding ``raw_events/``) under ``root``, sorted by name.

    ``root`` defaults to :func:`captures_root`; a missing root gives an empty list.
    """
    root = root if root is not None else captures_root()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "raw_events").is_dir())


# -- public records ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaptureEvent:
    """One market-data record of a capture, with when the recorder received it.

    ``recv_ts``: the recorder's receive time, seconds since the epoch (its own clock).
    ``conn``: the connection index within this market's recording (0 for the first); a new
    connection restarts ``seq`` with a snapshot.
    """

    recv_ts: float
    conn: int
    record: CaptureRecord


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The recorder's top-5 view of one book, taken right after the event with ``seq``.

    ``yes``/``no``: bid levels best first, each leg in its own prices (price units; the recorder
    keeps whole cents only, see the module doc), sizes in count units. ``conn`` is the
    connection the checkpoint belongs to (matched on its receive time).
    """

    ticker: str
    seq: int
    conn: int
    recv_ts: float
    reason: str
    yes: tuple[tuple[Price, Qty], ...]
    no: tuple[tuple[Price, Qty], ...]


@dataclass(frozen=True, slots=True)
class MarketCapture:
    """One market's recording inside one dataset.

    ``events`` are in stream order (see the module doc); ``close_ts``/``strike`` come from the
    recorder's ``watch_market`` event (``None`` when absent).
    """

    dataset: str
    ticker: str
    close_ts: float | None
    strike: float | None
    events: tuple[CaptureEvent, ...]
    checkpoints: tuple[Checkpoint, ...]

    def records(self) -> Iterator[CaptureRecord]:
        """The records alone, in stream order."""
        return (e.record for e in self.events)


# -- raw reading ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Raw:
    recv_ns: int
    event_type: str
    market: str
    seq: int | None
    payload: dict[str, Any]
    conn: int = 0


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def _read_ndjson(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with _open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = _loads(line)
            except _JSONDecodeError as exc:
                raise CfaValueError(f"{path}:{lineno}: not JSON: {exc}") from exc
            if not isinstance(obj, dict):
                raise CfaValueError(f"{path}:{lineno}: not a JSON object")
            yield lineno, obj


def _read_raw(dataset: Path) -> list[_Raw]:
    out: list[_Raw] = []
    files = sorted(
        p
        for p in (dataset / "raw_events").rglob("*")
        if p.is_file() and (p.name.endswith(".ndjson") or p.name.endswith(".ndjson.gz"))
    )
    for path in files:
        for lineno, obj in _read_ndjson(path):
            where = f"{path}:{lineno}"
            try:
                recv_ns = obj["local_recv_ns"]
                event_type = obj["event_type"]
                market = obj["market_ticker"]
                payload = obj["payload_json"]
            except KeyError as exc:
                raise CfaValueError(f"{where}: envelope missing {exc.args[0]}") from exc
            if not isinstance(recv_ns, int) or isinstance(recv_ns, bool):
                raise CfaValueError(f"{where}: local_recv_ns: not an integer")
            if not isinstance(payload, dict):
                raise CfaValueError(f"{where}: payload_json: not an object")
            seq = obj.get("sequence_number")
            if event_type in _BOOK_TYPES and (not isinstance(seq, int) or isinstance(seq, bool)):
                raise CfaValueError(f"{where}: sequence_number: missing on {event_type}")
            out.append(_Raw(recv_ns, str(event_type), str(market), seq, payload))
    return out


@dataclass(slots=True)
class _MarketRaw:
    ticker: str
    conn_starts: list[int]
    sids: list[dict[str, int]]
    close_ts: float | None
    strike: float | None
    ordered: list[tuple[int, _Raw]]  # (merge key ns, raw), stream order
    subscribed: list[_Raw]


def _organise(raws: list[_Raw]) -> list[_MarketRaw]:
    """Group by market, assign connections, and put each market's events in stream order."""
    by_market: dict[str, list[_Raw]] = {}
    for r in raws:
        by_market.setdefault(r.market, []).append(r)
    markets: list[_MarketRaw] = []
    for ticker, rs in by_market.items():
        if not any(r.event_type in _BOOK_TYPES for r in rs):
            continue
        conn_starts = sorted(r.recv_ns for r in rs if r.event_type == "ws_connected") or [0]

        def conn_of(ns: int, starts: list[int] = conn_starts) -> int:
            return max(bisect.bisect_right(starts, ns) - 1, 0)

        for r in rs:
            r.conn = conn_of(r.recv_ns)
        sids = [dict(_DEFAULT_SIDS) for _ in conn_starts]
        subscribed = sorted(
            (r for r in rs if r.event_type == "ws_subscribed"), key=lambda r: r.recv_ns
        )
        for r in subscribed:
            msg = r.payload.get("msg")
            if isinstance(msg, dict) and isinstance(msg.get("sid"), int):
                sids[r.conn][str(msg.get("channel"))] = msg["sid"]
        close_ts: float | None = None
        strike: float | None = None
        for r in rs:
            if r.event_type == "watch_market":
                if r.payload.get("close_time"):
                    close_ts = frames.parse_rfc3339(r.payload["close_time"], "watch_market")
                if isinstance(r.payload.get("strike"), int | float):
                    strike = float(r.payload["strike"])
        book = [r for r in rs if r.event_type in _BOOK_TYPES]
        book.sort(key=lambda r: (r.conn, r.seq, r.event_type != "orderbook_snapshot"))
        keyed: list[tuple[int, _Raw]] = []
        running = 0
        for r in book:
            if r.recv_ns > running:
                running = r.recv_ns
            keyed.append((running, r))
        keyed.extend((r.recv_ns, r) for r in rs if r.event_type == "ticker")
        # A stable sort on the key alone keeps book events in (conn, seq) order (their keys never
        # decrease) and puts them before ticker updates received at the same instant.
        keyed.sort(key=itemgetter(0))
        ordered = keyed
        markets.append(_MarketRaw(ticker, conn_starts, sids, close_ts, strike, ordered, subscribed))
    markets.sort(key=lambda m: m.ordered[0][0] if m.ordered else 0)
    return markets


def _record(raw: _Raw) -> CaptureRecord:
    recv_ts = raw.recv_ns / 1e9
    if raw.event_type == "orderbook_delta":
        return frames.orderbook_delta(raw.payload, seq=raw.seq, recv_ts=recv_ts)
    if raw.event_type == "orderbook_snapshot":
        return frames.orderbook_snapshot(raw.payload, seq=raw.seq, recv_ts=recv_ts)
    return frames.ticker(raw.payload, recv_ts=recv_ts)


def _levels(prices: Any, sizes: Any, what: str) -> tuple[tuple[Price, Qty], ...]:
    if not isinstance(prices, list) or not isinstance(sizes, list) or len(prices) != len(sizes):
        raise CfaValueError(f"{what}: prices and sizes must be lists of equal length")
    out = []
    for p, s in zip(prices, sizes, strict=True):
        if not isinstance(p, int) or isinstance(p, bool) or not isinstance(s, int | float):
            raise CfaValueError(f"{what}: bad level {p!r}, {s!r}")
        out.append((p * 100, contracts(s)))
    return tuple(out)


def _read_checkpoints(dataset: Path, markets: list[_MarketRaw]) -> dict[str, list[Checkpoint]]:
    starts = {m.ticker: m.conn_starts for m in markets}
    out: dict[str, list[Checkpoint]] = {}
    root = dataset / "book_checkpoints"
    if not root.is_dir():
        return out
    for path in sorted(p for p in root.rglob("*") if p.is_file() and ".ndjson" in p.name):
        for lineno, obj in _read_ndjson(path):
            where = f"{path}:{lineno}"
            try:
                ticker = str(obj["market_ticker"])
                seq = obj["sequence_number"]
                recv_ts = frames.parse_rfc3339(obj["checkpoint_ts"], f"{where}: checkpoint_ts")
                yes = _levels(obj["yes_bid_prices"], obj["yes_bid_sizes"], f"{where}: yes")
                no = _levels(obj["no_bid_prices"], obj["no_bid_sizes"], f"{where}: no")
            except KeyError as exc:
                raise CfaValueError(f"{where}: checkpoint missing {exc.args[0]}") from exc
            if not isinstance(seq, int) or isinstance(seq, bool):
                raise CfaValueError(f"{where}: sequence_number: not an integer")
            conn_starts = starts.get(ticker, [0])
            conn = max(bisect.bisect_right(conn_starts, int(recv_ts * 1e9)) - 1, 0)
            out.setdefault(ticker, []).append(
                Checkpoint(ticker, seq, conn, recv_ts, str(obj.get("reason", "")), yes, no)
            )
    for cps in out.values():
        cps.sort(key=lambda c: c.recv_ts)
    return out


# -- public entry points -------------------------------------------------------------------------


def load_dataset(dataset: Path | str) -> list[MarketCapture]:
    """Read one dataset directory into one :class:`MarketCapture` per recorded market.

    Markets come in recording order. Raises :class:`CfaValueError` (naming file and line) on a
    malformed envelope or Kalshi message, and ``FileNotFoundError`` when the directory is missing.
    """
    path = Path(dataset)
    if not (path / "raw_events").is_dir():
        raise FileNotFoundError(f"no raw_events/ under {path}")
    markets = _organise(_read_raw(path))
    checkpoints = _read_checkpoints(path, markets)
    out = []
    for m in markets:
        events = tuple(
            CaptureEvent(raw.recv_ns / 1e9, raw.conn, _record(raw)) for _, raw in m.ordered
        )
        out.append(
            MarketCapture(
                dataset=path.name,
                ticker=m.ticker,
                close_ts=m.close_ts,
                strike=m.strike,
                events=events,
                checkpoints=tuple(checkpoints.get(m.ticker, ())),
            )
        )
    return out


def iter_ws_frames(dataset: Path | str) -> Iterator[dict[str, Any]]:
    """Kalshi's own WebSocket frames of one dataset, in stream order, each with ``recv_ts``.

    Frames are ``{"type", "sid", "seq", "msg", "recv_ts"}`` exactly as Kalshi sends them (``msg``
    is the recorded payload unchanged; ``ticker`` frames have no ``seq``, as on the wire), plus
    the recorder's receive time ``recv_ts`` in epoch seconds. Each connection starts with Kalshi's
    ``subscribed`` replies (``{"id", "type": "subscribed", "msg": {"channel", "sid"}}``), after
    which ``seq`` restarts at 1 with a snapshot. Markets recorded one after the other follow each
    other; all frames are merged on the receive-time key.
    """
    path = Path(dataset)
    if not (path / "raw_events").is_dir():
        raise FileNotFoundError(f"no raw_events/ under {path}")
    markets = _organise(_read_raw(path))
    streams: list[Iterable[tuple[int, dict[str, Any]]]] = [_frames_of(m) for m in markets]
    for _, frame in heapq.merge(*streams, key=lambda kf: kf[0]):
        yield frame


def _frames_of(m: _MarketRaw) -> Iterator[tuple[int, dict[str, Any]]]:
    subs = list(m.subscribed)
    running = 0
    for key, raw in m.ordered:
        # Emit the subscription replies of this connection before its first market-data frame.
        while subs and subs[0].conn <= raw.conn:
            sub = subs.pop(0)
            running = max(running, sub.recv_ns)
            yield running, {**sub.payload, "recv_ts": sub.recv_ns / 1e9}
        running = max(running, key)
        frame: dict[str, Any] = {"type": raw.event_type}
        sid = m.sids[raw.conn]
        if raw.event_type == "ticker":
            frame["sid"] = sid.get("ticker", _DEFAULT_SIDS["ticker"])
        else:
            frame["sid"] = sid.get("orderbook_delta", _DEFAULT_SIDS["orderbook_delta"])
            frame["seq"] = raw.seq
        frame["msg"] = raw.payload
        frame["recv_ts"] = raw.recv_ns / 1e9
        yield running, frame


def write_ws_frames(dataset: Path | str, out: Path | str) -> int:
    """Write :func:`iter_ws_frames` of ``dataset`` to ``out`` as JSON Lines; return the count.

    The output holds Kalshi's data: write it outside the repository (the captures' licence
    forbids redistribution). Parent directories are created.
    """
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with out_path.open("w", encoding="utf-8") as fh:
        for frame in iter_ws_frames(dataset):
            fh.write(json.dumps(frame, separators=(",", ":")))
            fh.write("\n")
            n += 1
    return n
