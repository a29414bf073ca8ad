"""The audit fast path writes exactly the bytes of the canonical rule.

* typed event batches (:class:`cfa.audit.encoding.EventBatch`, orjson, no secret scan) give the
  same text as the general stdlib path for every event kind and for adversarial values (NaN,
  infinities, tiny floats, ints beyond 64 bits, Decimal, enums, controls and non-ASCII text,
  dicts with secret keys), over generated events, over every batch of a simulator run and over
  the real Kalshi captures when they are present;
* a row's hash (orjson writing the values array) equals the stdlib canonical form's;
* ordinary payloads are still scanned for secrets.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import itertools
import json
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cfa.audit import AuditStore, verify
from cfa.audit.chain import RowHasher
from cfa.audit.encoding import (
    REDACTED,
    EventBatch,
    _sanitize,
    canonical_json,
    encode_row_values,
    event_batch_json,
    row_values_bytes,
)
from cfa.audit.errors import AuditError
from cfa.audit.records import MAX_BATCH, decode_event, encode_event, events_row, market_to_dict
from cfa.core.types import (
    BookDelta,
    BookSnapshot,
    FeeSchedule,
    Fill,
    MarketInfo,
    MarketStatus,
    Order,
    OrderStatus,
    Outcome,
    PriceRange,
    Settlement,
    Side,
    Trade,
)

# --- references ------------------------------------------------------------------------------


def reference_text(items: list[Any]) -> tuple[str, int] | type[Exception]:
    """Today's rule, by the general path (a plain dict; the stdlib encoder)."""
    try:
        return canonical_json({"events": items, "n": len(items)})
    except AuditError:
        return AuditError


def rule_text(obj: Any) -> str:
    """The module doc's formula spelled out with ``json.dumps`` (independent of the fast path)."""
    return json.dumps(
        _sanitize(obj, [0]),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def fast_text(items: list[Any]) -> tuple[str, int] | type[Exception]:
    try:
        return event_batch_json(items)
    except AuditError:
        return AuditError


# --- strategies ------------------------------------------------------------------------------

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
any_floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [1e-5, -3e-7, 5e-324, 1e16, 1.7e9 + 0.123, 0.0, -0.0, 1e-4, 99999.99999]
)
ts_values = any_floats | st.floats(1.6e9, 1.9e9)
ints = st.integers(-(2**70), 2**70) | st.integers(-1000, 100_000)
maybe_text = st.none() | texts
levels = st.lists(st.tuples(ints, ints), max_size=4).map(tuple)


@st.composite
def markets(draw: st.DrawFn) -> MarketInfo:
    return MarketInfo(
        ticker=draw(texts),
        event_ticker=draw(texts),
        series_ticker=draw(texts),
        title=draw(texts),
        price_ranges=(PriceRange(0, 10_000, 100),),
        close_ts=draw(ts_values),
        open_ts=draw(ts_values),
        price_level_structure="linear_cent",
        fee=FeeSchedule(
            fee_type="quadratic",
            multiplier=Decimal("1"),
            taker_coeff=Decimal("0.07"),
            maker_coeff=Decimal("0.0175"),
            rounding=Decimal("0.01"),
        ),
    )


events = st.one_of(
    st.builds(BookDelta, texts, ints, ts_values, st.sampled_from(Outcome), ints, ints, maybe_text),
    st.builds(BookSnapshot, texts, ints, ts_values, levels, levels),
    st.builds(Trade, texts, texts, ts_values, ints, ints, st.sampled_from(Side)),
    st.builds(
        Fill,
        texts,
        texts,
        texts,
        texts,
        st.sampled_from(Side),
        ints,
        ints,
        st.decimals(allow_nan=False, allow_infinity=False, places=4),
        st.booleans(),
        ts_values,
        ints,
    ),
    st.builds(
        Order,
        texts,
        texts,
        texts,
        st.sampled_from(Side),
        ints,
        ints,
        ints,
        ints,
        st.sampled_from(OrderStatus),
        ts_values,
    ),
    st.builds(Settlement, texts, st.sampled_from(Outcome), ts_values),
    st.builds(MarketStatus, texts, ts_values, st.booleans(), texts, st.none() | markets()),
)


class Color(enum.Enum):
    RED = "red"
    ONE = 1


json_leaves = (
    st.none()
    | st.booleans()
    | ints
    | st.floats(-1e20, 1e20).filter(lambda x: x == 0 or abs(x) >= 1e-4)
    | texts
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.sampled_from(list(Color) + list(Side) + list(OrderStatus))
)
secretish_keys = st.sampled_from(["api_key", "token", "prompt_tokens", "Signature", "k", "n"])
json_values = st.recursive(
    json_leaves,
    lambda kids: (
        st.lists(kids, max_size=3)
        | st.tuples(kids, kids)
        | st.dictionaries(texts | secretish_keys, kids, max_size=3)
        | st.dictionaries(st.integers(-5, 5), kids, max_size=2)
    ),
    max_leaves=12,
)


# --- typed batches ---------------------------------------------------------------------------


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events, min_size=1, max_size=8))
def test_event_batches_are_byte_identical_to_the_rule(evs: list[Any]) -> None:
    items = [encode_event(e) for e in evs]
    want = reference_text(items)
    assert fast_text(items) == want
    if want is not AuditError:
        assert isinstance(want, tuple)
        assert want[0] == rule_text({"n": len(items), "events": items})
        assert canonical_json(EventBatch(items)) == want


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.lists(json_values, min_size=3, max_size=5), min_size=1, max_size=5),
    st.lists(any_floats, min_size=5, max_size=5),
)
def test_arbitrary_batch_items_are_byte_identical_or_fall_back(
    items: list[Any], tss: list[float]
) -> None:
    """Whatever a caller puts in an EventBatch (kind strings or not, dicts with secret keys,
    Decimals, enums, non-str keys, any float as the ts): the same text and the same
    redactions. (Floats elsewhere are limited to what orjson writes like ``repr``: the
    precondition of the typed path, see :func:`event_batch_json`.)"""
    for it, kind, ts in zip(items, itertools.cycle(["d", "t", "s", 5]), tss, strict=False):
        it[0] = kind
        it[2 if kind in ("d", "s") else 1] = ts
    assert fast_text(items) == reference_text(items)


def test_each_guard_takes_the_general_path() -> None:
    base = ["t", 1.7e9, "tid", 50, 3, "bid"]
    cases: list[list[Any]] = [
        [*base[:1], math.nan, *base[2:]],
        [*base[:1], math.inf, *base[2:]],
        [*base[:1], 1e-5, *base[2:]],  # repr 1e-05, orjson 0.00001
        [*base[:3], 2**64, *base[4:]],  # orjson refuses ints beyond 64 bits
        [*base[:3], Decimal("0.5"), *base[4:]],
        [*base[:3], Color.ONE, *base[4:]],
        [*base[:2], {"api_key": "x", 3: 1}, *base[3:]],
        [*base[:2], "{not a dict}", *base[3:]],
        [*base[:3], 56.0, *base[4:]],  # a float where an int belongs: exact while in range
    ]
    for item in cases:
        got = event_batch_json([list(base), item])
        assert got == reference_text([list(base), item]), item
    redacted = event_batch_json([[*base[:2], {"api_key": "x"}, *base[3:]]])
    assert redacted[1] == 1 and REDACTED in redacted[0]
    assert event_batch_json([[*base[:1], math.nan, *base[2:]]])[0].count('"NaN"') == 1


def test_surrogates_are_refused_by_both_paths() -> None:
    items = [["t", 1.7e9, "bad\ud800", 50, 3, "bid"]]
    assert fast_text(items) is AuditError
    assert reference_text(items) is AuditError


def test_event_batch_reads_like_its_dict() -> None:
    items = [["x", 1.7e9, "yes"]]
    b = EventBatch(items)
    assert dict(b) == {"events": items, "n": 1}
    assert b["events"] is items and b["n"] == 1 and len(b) == 2
    with pytest.raises(KeyError):
        b["other"]


def test_market_metadata_keys_name_no_secret() -> None:
    """The typed path skips the key scan; the only dicts in events are market metadata, whose
    keys are fixed: none of them may be one the secrets rule would redact (else the general
    path, which an ``m`` item takes anyway, would store them redacted)."""
    from cfa.audit.encoding import SECRET_WORDS

    m = market_to_dict(
        MarketInfo("T", "E", "S", "t", (PriceRange(1, 99, 1),), 1.0, 0.0, "linear_cent")
    )

    def keys(d: Any) -> list[str]:
        return [k for k, v in d.items() for k in [k, *(keys(v) if isinstance(v, dict) else [])]]

    assert not [k for k in keys(m) if any(w in k.lower() for w in SECRET_WORDS)]


def test_encoded_enums_are_plain_values() -> None:
    d = encode_event(BookDelta("M", 3, 1.7e9, Outcome.NO, 40, -2, None))
    assert d == ["d", 3, 1.7e9, "no", 40, -2, None] and type(d[3]) is str
    assert decode_event("M", json.loads(event_batch_json([d])[0])["events"][0]) == BookDelta(
        "M", 3, 1.7e9, Outcome.NO, 40, -2, None
    )


# --- secrets on ordinary payloads ------------------------------------------------------------


def test_secret_key_in_an_ordinary_payload_is_still_redacted(tmp_path: Path) -> None:
    with AuditStore.open(tmp_path / "a.db") as store:
        store.start_run({"api_key": "sk-live-123", "ok": 1})
        store.append(
            "market_events",
            {"market": "M", "kind": "events", "payload": {"n": 1, "events": [], "token": "t"}},
        )
        store.append("market_events", events_row("M", [["x", 1.7e9, "yes"]]))
        store.sync()
        assert store.stats.redactions == 2
        with store.reader() as r:
            rows = list(r.rows("market_events"))
            assert rows[0]["payload"]["token"] == REDACTED
            assert rows[1]["payload"] == {"n": 1, "events": [["x", 1.7e9, "yes"]]}
            (run,) = r.runs()
            assert run.config["api_key"] == REDACTED
    assert verify(tmp_path / "a.db").ok


# --- row hashes ------------------------------------------------------------------------------

column_values = st.none() | ints | st.floats(allow_nan=False, allow_infinity=False) | texts


@settings(max_examples=500)
@given(st.lists(column_values, min_size=1, max_size=8))
def test_row_values_bytes_match_the_stdlib(values: list[Any]) -> None:
    body = row_values_bytes(values)
    if body is not None:
        assert body == encode_row_values(values).encode()


@settings(max_examples=200)
@given(st.lists(column_values, min_size=3, max_size=3), st.integers(1, 2**40))
def test_row_digest_is_sha256_of_the_canonical_text(values: list[Any], seq: int) -> None:
    h = RowHasher("t", ["a", "b", "c"])
    prev = "ab" * 32
    canonical = json.dumps(
        [
            "t",
            ["a", "b", "c"][: len(h._trimmed(values)[1])],
            seq,
            prev,
            list(h._trimmed(values)[1]),
        ],
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    assert h.canonical(seq, prev, values) == canonical
    assert h.digest(seq, prev, values) == hashlib.sha256(canonical.encode()).hexdigest()


def test_row_values_guards() -> None:
    assert row_values_bytes([1e-5]) is None
    assert row_values_bytes([2**64]) is None
    assert row_values_bytes([b"blob"]) is None
    assert row_values_bytes(["\ud800"]) is None
    assert row_values_bytes([0.0, -0.0, 1e-4, 1e300, "é\n\x00\u2028", None, -(2**63)]) == (
        encode_row_values([0.0, -0.0, 1e-4, 1e300, "é\n\x00\u2028", None, -(2**63)]).encode()
    )


# --- real batches ----------------------------------------------------------------------------


class TeeSink:
    """An AuditStore that also keeps every market_events payload it was given."""

    def __init__(self, store: AuditStore) -> None:
        self.store = store
        self.batches: list[EventBatch] = []

    def append(self, table: str, row: Any) -> None:
        if table == "market_events":
            self.batches.append(row["payload"])
        self.store.append(table, row)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def _sim_batches(db: Path) -> list[EventBatch]:
    from cfa.exchange.sim import SimExchange
    from cfa.risk.policy import load_policy
    from cfa.runtime.session import Session

    ex = SimExchange.from_scenarios(
        ["calm", "informed-flow", "regime-shift", "thin"], seed=1, duration=600
    )
    await ex.start()
    store = AuditStore.open(db)
    sink = TeeSink(store)
    session = Session(ex, await ex.get_markets(), load_policy("default"), sink, store.start_run({}))  # type: ignore[arg-type]
    await session.run(govern=False)
    await ex.close()
    store.close()
    return sink.batches


def test_every_batch_of_a_simulator_run_is_byte_identical(tmp_path: Path) -> None:
    batches = asyncio.run(_sim_batches(tmp_path / "sim.db"))
    assert len(batches) > 200
    kinds = {it[0] for b in batches for it in b.events}
    assert {"d", "t", "s"} <= kinds
    for b in batches:
        assert type(b) is EventBatch
        assert event_batch_json(b.events) == reference_text(b.events)
    assert verify(tmp_path / "sim.db").ok


def test_real_kalshi_captures_encode_byte_identically() -> None:
    from cfa.exchange.captures import list_datasets, load_dataset

    datasets = list_datasets()
    if not datasets:
        pytest.skip(
            "real Kalshi captures not found (../shared/data/kalshi); see docs/calibration.md"
        )
    n = 0
    for m in load_dataset(datasets[0]):
        recs = [r for r in m.records() if isinstance(r, BookDelta | BookSnapshot | Trade)]
        items = [encode_event(r) for r in recs]
        for i in range(0, len(items), MAX_BATCH):
            batch = items[i : i + MAX_BATCH]
            assert event_batch_json(batch) == reference_text(batch)
            n += len(batch)
    assert n > 10_000
