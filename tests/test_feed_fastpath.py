"""The feed's fast replay path yields exactly what the general path yields.

:meth:`KalshiFeedExchange.stream` decodes current-shape ``orderbook_delta`` frames inline and
sends every other line through :meth:`KalshiFeedExchange._frame` (the general path, which
``_fast = False`` uses for every line). Checked here, event by event and field by field:

* on a generated feed (``tools/bench_replay.py`` ``generate_feed``: a simulator run written as
  Kalshi frames) with gaps, jumps, mid-stream snapshots, control frames, blank lines and a
  receive clock that steps back; the same feed as a ``cfa record`` file with a header and NO
  levels in YES prices (``use_yes_price``); and a whole :class:`Session` over it (same orders
  and fills);
* on the four real capture windows, against digests of the stream computed with the code
  before the fast path (skipped, saying so, when the captures are absent);
* the open-time scan (:meth:`KalshiFeedExchange._prescan`, now on a memory map) against the
  line-by-line scan it replaced, on awkward files.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from cfa.core.types import BookDelta, CfaValueError, Outcome
from cfa.exchange.captures import list_datasets
from cfa.exchange.feed import KalshiFeedExchange, metadata_path, write_feed
from cfa.exchange.records import make_delta

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from bench_replay import agenerate_feed, generate_feed


class _Reference(KalshiFeedExchange):
    _fast = False


async def _replay(ex: KalshiFeedExchange) -> list[Any]:
    return [ev async for ev in ex.stream(ex.tickers)]


def _state(ex: KalshiFeedExchange) -> list[Any]:
    out: list[Any] = [ex.frames_read, ex.events_emitted, ex.clock.now(), ex.tickers]
    for t in ex.tickers:
        b = ex.recorded_book(t)
        out.append((ex.health(t), ex.last_ticker(t), ex.mark(t), b.yes, b.no, b.seq, b.ts))
    return out


def _same_events(a: list[Any], b: list[Any]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert type(x) is type(y) and x == y and repr(x) == repr(y)


@pytest.fixture(scope="module")
def defects_feed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("feed") / "defects.jsonl"
    generate_feed(path, markets=2, seconds=900, defects=True, seed=5)
    return path


def test_make_delta_is_an_ordinary_equal_book_delta() -> None:
    a = make_delta("T", 3, 1.5, Outcome.NO, 4200, -700, None)
    b = BookDelta("T", 3, 1.5, Outcome.NO, 4200, -700, None)
    assert type(a) is BookDelta and a == b and hash(a) == hash(b) and repr(a) == repr(b)
    assert make_delta("T", 1, 0.0, Outcome.YES, 1, 1) == BookDelta("T", 1, 0.0, Outcome.YES, 1, 1)


async def test_fast_path_equals_the_general_path_on_a_feed_with_defects(
    defects_feed: Path,
) -> None:
    fast, ref = KalshiFeedExchange(defects_feed), _Reference(defects_feed)
    got, want = await _replay(fast), await _replay(ref)
    _same_events(got, want)
    assert _state(fast) == _state(ref)
    health = [fast.health(t) for t in fast.tickers]
    assert sum(h.gaps for h in health) > 0 and sum(h.jumps for h in health) > 0
    assert sum(h.resyncs for h in health) > sum(h.gaps + h.jumps for h in health)
    assert sum(isinstance(e, BookDelta) for e in got) > 10_000


def _record_format(src: Path, out: Path) -> None:
    """``src`` as a ``cfa record`` file: a header with REST Market objects and
    ``use_yes_price``, then ``{"recv_ts", "frame"}`` lines with NO levels in YES prices."""

    def yes_terms(p: str) -> str:
        units = 10_000 - round(float(p) * 10_000)
        return f"{units // 10_000}.{units % 10_000:04d}"

    meta = json.loads(metadata_path(src).read_text())
    markets = [
        {
            "ticker": m["ticker"],
            "event_ticker": m["ticker"].rsplit("-", 1)[0],
            "price_level_structure": m["price_level_structure"],
            "close_time": "2026-12-07T15:00:00Z",
        }
        for m in meta["markets"]
    ]
    header = {"kind": "cfa-kalshi-recording", "use_yes_price": True, "markets": markets}
    lines = [json.dumps(header)]
    for raw in src.read_text().splitlines():
        if not raw.strip():
            lines.append(raw)
            continue
        f = json.loads(raw)
        recv = f.pop("recv_ts")
        msg = f.get("msg", {})
        if f["type"] == "orderbook_snapshot" and "no_dollars_fp" in msg:
            msg["no_dollars_fp"] = sorted([yes_terms(p), q] for p, q in msg["no_dollars_fp"])
        elif f["type"] == "orderbook_delta" and msg["side"] == "no":
            msg["price_dollars"] = yes_terms(msg["price_dollars"])
        lines.append(json.dumps({"recv_ts": recv, "frame": f}))
    out.write_text("\n".join(lines) + "\n")


async def test_fast_path_on_a_cfa_record_file_in_yes_prices(
    defects_feed: Path, tmp_path: Path
) -> None:
    rec = tmp_path / "rec.ndjson"
    _record_format(defects_feed, rec)
    fast, ref = KalshiFeedExchange(rec), _Reference(rec)
    got = await _replay(fast)
    _same_events(got, await _replay(ref))
    assert _state(fast) == _state(ref)
    # NO levels sent in YES prices are read back into NO prices: the plain file's stream
    _same_events(got, await _replay(KalshiFeedExchange(defects_feed)))


class _OneByOne:
    """A feed seen only through :meth:`stream` (``event_chunks`` wraps it one event per
    chunk: ``stream_chunks`` is looked up on the class, not forwarded)."""

    def __init__(self, inner: KalshiFeedExchange) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def stream(self, tickers: Any) -> Any:
        return self.inner.stream(tickers)


async def test_chunks_are_the_stream(tmp_path: Path) -> None:
    path = tmp_path / "chunks.jsonl"
    await agenerate_feed(path, markets=2, seconds=120, defects=True, seed=9)
    ex = KalshiFeedExchange(path)
    chunked = [ev async for chunk in ex.stream_chunks(ex.tickers) for ev in chunk]
    _same_events(chunked, await _replay(KalshiFeedExchange(path)))
    assert ex.finished and ex.events_emitted == len(chunked)


async def test_a_session_over_the_fast_path_places_the_same_orders(tmp_path: Path) -> None:
    bench_runtime = pytest.importorskip("bench_runtime")
    from cfa.audit import AuditStore
    from cfa.risk.policy import load_policy
    from cfa.runtime.session import Session

    feed = tmp_path / "s.jsonl"
    await agenerate_feed(feed, markets=1, seconds=900, defects=True, seed=2)
    out = []
    exchanges: list[Any] = [
        KalshiFeedExchange(feed),
        _Reference(feed),
        _OneByOne(KalshiFeedExchange(feed)),
    ]
    for i, ex in enumerate(exchanges):
        db = tmp_path / f"{i}.db"
        store = AuditStore.open(db)
        session = Session(
            ex, await ex.get_markets(), load_policy("default"), store, store.start_run({})
        )
        await session.run(govern=False)
        store.close()
        out.append((session.events, bench_runtime.order_traffic(db), ex.account.fills))
    assert out[0] == out[1] == out[2]
    assert out[0][1]["placed"] > 0 and out[0][1]["fills"] > 0


# -- the real captures, against the stream before the fast path ------------------------------

# sha256 of every event's type and repr, then each market's health, last ticker, mark and
# recorded book, then (frames read, events, clock, tickers): computed on main before the fast
# path (commit 5e8e31b) from ``write_feed`` of each dataset.
_GOLDEN = {
    "rv600_next_evidence_shadow_20260514T043808Z": (
        101_707,
        "f2bf584c30923489906073154182dec47e1c427d6ca2c7f2305afc5bf7c715d0",
    ),
    "rv600_next_evidence_shadow_20260514T122254Z": (
        80_069,
        "7a96481a0281f0bf5b189816bf6d302de16a6b55bbaf680fca45135b0bf1091d",
    ),
    "rv600_next_evidence_shadow_20260515T053557Z": (
        51_642,
        "e4d90b54daa562cb4b07f030fce771a3033666fcdad8e5c00bb56f958e2f742a",
    ),
    "rv600_next_evidence_shadow_20260515T190705Z": (
        87_862,
        "625feae58b47e084194e40fe2e94a7ee2ea871beb718324beb394c771ad5c320",
    ),
}


async def _digest(ex: KalshiFeedExchange) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    async for ev in ex.stream(ex.tickers):
        h.update(f"{type(ev).__name__}{ev!r}\n".encode())
        n += 1
    for t in ex.tickers:
        b = ex.recorded_book(t)
        book = (sorted(b.yes.items()), sorted(b.no.items()), b.seq, b.ts, b.synced)
        h.update(repr((ex.health(t), ex.last_ticker(t), ex.mark(t), *book)).encode())
    h.update(repr((ex.frames_read, ex.events_emitted, ex.clock.now(), ex.tickers)).encode())
    return n, h.hexdigest()


@pytest.mark.data
@pytest.mark.slow
async def test_real_captures_stream_as_before(tmp_path: Path) -> None:
    datasets = [d for d in list_datasets() if d.name in _GOLDEN]
    if not datasets:
        pytest.skip("the Kalshi captures (../shared/data/kalshi) are not present")
    for ds in datasets:
        frames = tmp_path / f"{ds.name}.jsonl"
        write_feed(ds, frames)
        assert await _digest(KalshiFeedExchange(frames)) == _GOLDEN[ds.name], ds.name
    assert await _digest(_Reference(frames)) == _GOLDEN[ds.name]


# -- the open-time scan ------------------------------------------------------------------------


def _old_prescan(ex: KalshiFeedExchange) -> tuple[list[str], float, float]:
    """The line-by-line scan the memory-mapped one replaced (main, 5e8e31b)."""
    from orjson import loads

    tickers: dict[str, None] = {}
    first = None
    with ex.path.open("rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            is_snap = b"orderbook_snapshot" in line
            if first is None or is_snap:
                frame = ex._as_frame(loads(line))
                if not isinstance(frame, dict):
                    raise CfaValueError(f"{ex.path}: a line is not a JSON object")
                if first is None and isinstance(frame.get("recv_ts"), int | float):
                    first = float(frame["recv_ts"])
                if frame.get("type") == "orderbook_snapshot":
                    msg = frame.get("msg") or {}
                    t = msg.get("market_ticker") or msg.get("ticker")
                    if isinstance(t, str):
                        tickers.setdefault(t)
            last_line = line
    if first is None:
        raise CfaValueError(f"{ex.path}: no frames with recv_ts")
    end = ex._as_frame(loads(last_line)).get("recv_ts")
    last = float(end) if isinstance(end, int | float) else first
    return list(tickers), first, max(first, last)


def _snap(t: str, ts: float, seq: int = 1) -> str:
    msg = {"market_ticker": t, "yes_dollars_fp": [["0.4000", "1.00"]]}
    frame = {"type": "orderbook_snapshot", "sid": 2, "seq": seq, "msg": msg, "recv_ts": ts}
    return json.dumps(frame)


@pytest.mark.parametrize(
    "text",
    [
        "\n\n" + _snap("A-1", 5.0) + "\n" + _snap("B-1", 6.0) + "\n\n  \n",
        json.dumps({"type": "subscribed", "msg": {}}) + "\n" + _snap("A-1", 5.0),
        _snap("B-1", 7.0) + "\n" + _snap("A-1", 3.0) + "\n" + _snap("B-1", 9.0, 2) + "\n \t\n",
        json.dumps({"kind": "cfa-kalshi-recording", "markets": []})
        + "\n"
        + json.dumps({"recv_ts": 4.5, "frame": json.loads(_snap("C-1", 0.0))})
        + "\n   "
        + json.dumps({"type": "ok", "recv_ts": 8})
        + "\r\n",
        _snap("A-1", 5.0) + '\n{"type": "ok", "note": "orderbook_snapshot"}\n',
    ],
)
def test_prescan_matches_the_line_by_line_scan(tmp_path: Path, text: str) -> None:
    p = tmp_path / "f.jsonl"
    p.write_text(text)
    ex = _Reference.__new__(_Reference)
    ex.path = p
    assert ex._prescan() == _old_prescan(ex)


@pytest.mark.parametrize("text", ["", "\n \n", json.dumps({"type": "ok"}) + "\n", "[1]\n"])
def test_prescan_errors_as_before(tmp_path: Path, text: str) -> None:
    p = tmp_path / "f.jsonl"
    p.write_text(text)
    ex = _Reference.__new__(_Reference)
    ex.path = p
    with pytest.raises(CfaValueError) as new:
        ex._prescan()
    with pytest.raises(CfaValueError) as old:
        _old_prescan(ex)
    assert str(new.value) == str(old.value)
