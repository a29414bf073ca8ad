"""Audit store writer and reader: round trips, sequencing, flushing, validation, secrets."""

from __future__ import annotations

import math
import sqlite3
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cfa.audit import (
    TABLES,
    AuditError,
    AuditIntegrityError,
    AuditReader,
    AuditStore,
    verify,
)
from cfa.audit.encoding import REDACTED, canonical_json, is_secret_key
from cfa.audit.records import (
    MAX_BATCH,
    encode_event,
    events_from_rows,
    events_row,
    fill_row,
    order_row,
)
from cfa.core.grid import PriceGrid
from cfa.core.types import (
    BookDelta,
    BookSnapshot,
    Fill,
    MarketInfo,
    MarketStatus,
    Order,
    OrderRequest,
    OrderStatus,
    Outcome,
    Settlement,
    Side,
    Trade,
)

T0 = 1_700_000_000_000


def all_seqs(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        seqs: list[int] = []
        for t in TABLES:
            seqs += [r[0] for r in conn.execute(f"SELECT seq FROM {t}")]
        return sorted(seqs)
    finally:
        conn.close()


SAMPLE_ROWS: dict[str, dict[str, Any]] = {
    "market_events": {
        "market": "KXBTC-A",
        "ts_ms": T0,
        "kind": "delta",
        "exch_seq": 7,
        "payload": {"outcome": "yes", "price": 5600, "delta": -300},
    },
    "orders": {
        "market": "KXBTC-A",
        "ts_ms": T0 + 1,
        "client_order_id": "c1",
        "order_id": "o1",
        "side": Side.BID,
        "price": 5500,
        "count": 1000,
        "action": "place",
        "status": "resting",
        "reason": "quote",
        "payload": {"post_only": True},
    },
    "fills": {
        "market": "KXBTC-A",
        "ts_ms": T0 + 2,
        "fill_id": "f1",
        "order_id": "o1",
        "client_order_id": "c1",
        "side": "bid",
        "price": 5500,
        "count": 300,
        "fee": Decimal("0.0100"),
        "is_taker": False,
        "post_position": 300,
        "payload": {"ts": 1_700_000_000.002},
    },
    "param_changes": {
        "market": "KXBTC-A",
        "ts_ms": T0 + 3,
        "param": "gamma",
        "old": 0.1,
        "new": 0.12,
        "source": "agent",
        "reason": "toxic flow",
        "decision_id": "d1",
    },
    "decisions": {
        "market": "KXBTC-A",
        "ts_ms": T0 + 4,
        "decision_id": "d1",
        "agent": "market:KXBTC-A",
        "reasoner": "heuristic",
        "outcome": "applied",
        "payload": {"rationale": "markouts negative", "context": {"mid": 0.56, "σ": 0.8}},
    },
    "risk_events": {
        "market": "",
        "ts_ms": T0 + 5,
        "kind": "breaker",
        "code": "ORDER_RATE",
        "state": "REDUCE_ONLY",
        "detail": {"rate": 12.5},
    },
    "governance_actions": {
        "market": "KXBTC-A",
        "ts_ms": T0 + 6,
        "action": "override",
        "actor": "alice",
        "param": "sigma",
        "value": 0.9,
        "ttl_s": 300.0,
        "reason": "news",
    },
    "tool_calls": {
        "market": "KXBTC-A",
        "ts_ms": T0 + 7,
        "decision_id": "d1",
        "agent": "market:KXBTC-A",
        "tool": "set_gamma",
        "arguments": {"value": 0.12, "rationale": "x"},
        "status": "ok",
        "result": {"applied": True},
    },
}


def test_rows_round_trip_every_table(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with AuditStore.open(path) as store:
        run = store.start_run({"seed": 7}, ts_ms=T0 - 1)
        for table, row in SAMPLE_ROWS.items():
            store.append(table, row)
        store.end_run(run, {"fills": 1}, ts_ms=T0 + 10)
    with AuditReader.open(path) as reader:
        for table, row in SAMPLE_ROWS.items():
            (got,) = list(reader.rows(table, run_id=run))
            assert got["run_id"] == run
            for k, v in row.items():
                assert got[k] == (v.value if isinstance(v, Side) else v), (table, k)
        (r,) = reader.runs()
        assert (r.run_id, r.started_ms, r.ended_ms, r.config, r.summary) == (
            run,
            T0 - 1,
            T0 + 10,
            {"seed": 7},
            {"fills": 1},
        )
        assert r.first_seq == 1 and r.last_seq == len(SAMPLE_ROWS) + 2
        counts = reader.counts(run)
        assert counts["runs"] == 2 and all(counts[t] == 1 for t in SAMPLE_ROWS)
        assert reader.last("fills")["fill_id"] == "f1"  # type: ignore[index]
        assert reader.last("orders", market="nope") is None
        order = [t for t, _ in reader.timeline(run_id=run)]
        assert order == ["runs", *SAMPLE_ROWS, "runs"]
    assert verify(path).ok


def test_seq_gap_free_across_tables_flushes_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    tables = ["market_events", "orders", "risk_events"]
    with AuditStore.open(path, batch_rows=7) as store:
        store.start_run({})
        for i in range(50):
            t = tables[i % 3]
            store.append(t, {**SAMPLE_ROWS[t], "ts_ms": T0 + i})
        store.flush()
        first_head = store.head
    assert all_seqs(path) == list(range(1, 52))
    with AuditStore.open(path) as store:
        assert store.head == first_head
        store.start_run({"again": True})
        for i in range(20):
            store.append("decisions", SAMPLE_ROWS["decisions"])
            store.append("market_events", SAMPLE_ROWS["market_events"])
    assert all_seqs(path) == list(range(1, 51 + 1 + 40 + 1))
    result = verify(path)
    assert result.ok and result.rows == 92, result
    with AuditReader.open(path) as reader:
        runs = reader.runs()
        assert len(runs) == 2 and runs[1].first_seq == 52
        assert reader.counts(runs[1].run_id)["market_events"] == 20


def test_wal_mode_and_synchronous_normal(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with AuditStore.open(path) as store:
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        other = sqlite3.connect(path)
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        other.close()


def test_flush_on_threshold_and_interval(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with AuditStore.open(path, batch_rows=10, flush_interval=60) as store:
        store.start_run({})
        for _ in range(9):
            store.append("market_events", SAMPLE_ROWS["market_events"])
        assert store.pending == 9
        assert all_seqs(path) == [1]
        assert store.maybe_flush() is False  # the interval has not passed
        store.append("market_events", SAMPLE_ROWS["market_events"])
        assert store.pending == 0
        assert all_seqs(path) == list(range(1, 12))
        store.append("market_events", SAMPLE_ROWS["market_events"])
        assert store.maybe_flush(time.monotonic() + 61) is True
        assert store.pending == 0 and store.head.seq == 12
        assert store.maybe_flush(time.monotonic() + 120) is False  # nothing pending


def test_background_flusher(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with AuditStore.open(path, background=True, flush_interval=0.02) as store:
        store.start_run({})
        for _ in range(5):
            store.append("market_events", SAMPLE_ROWS["market_events"])
        deadline = time.monotonic() + 5
        # pending drops when the flusher takes the batch, written once it is committed
        while (store.pending or store.stats.written < 6) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert store.pending == 0
        assert len(all_seqs(path)) == 6
    assert verify(path).ok


def test_rows_are_validated(tmp_path: Path) -> None:
    with AuditStore.open(tmp_path / "a.db") as store:
        with pytest.raises(AuditError, match="no run"):
            store.append("market_events", SAMPLE_ROWS["market_events"])
        store.start_run({})
        bad: list[tuple[str, dict[str, Any], str]] = [
            ("nope", {}, "unknown audit table"),
            ("market_events", {"kind": "delta", "bogus": 1}, "unknown columns"),
            ("market_events", {"payload": {}}, "market_events.kind is required"),
            ("market_events", {"kind": "delta", "exch_seq": "7"}, "expected an int"),
            ("market_events", {"kind": 5}, "expected text"),
            ("orders", {"action": "teleport"}, "not one of"),
            ("param_changes", {"param": "g", "new": math.nan, "source": "x"}, "not finite"),
            ("param_changes", {"param": "g", "new": "0.1", "source": "x"}, "expected a number"),
            ("fills", {**SAMPLE_ROWS["fills"], "fee": Decimal("NaN")}, "not finite"),
            ("fills", {**SAMPLE_ROWS["fills"], "is_taker": 2}, "expected a bool"),
            ("market_events", {"kind": "x", "payload": {"b": b"raw"}}, "not storable"),
        ]
        for table, row, msg in bad:
            with pytest.raises(AuditError, match=msg):
                store.append(table, row)
        assert store.pending == 0
        # ints become floats in REAL columns, bools 0/1, enums their values
        store.append("param_changes", {"param": "g", "old": 1, "new": 2, "source": Side.BID})
        store.append("fills", {**SAMPLE_ROWS["fills"], "is_taker": True})
    with AuditReader.open(tmp_path / "a.db") as reader:
        pc = reader.last("param_changes")
        assert pc is not None and pc["old"] == 1.0 and isinstance(pc["old"], float)
        assert pc["source"] == "bid"
        assert reader.last("fills")["is_taker"] is True  # type: ignore[index]


def test_append_snapshots_the_row(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with AuditStore.open(path) as store:
        store.start_run({})
        payload = {"price": 1}
        store.append("market_events", {"kind": "x", "payload": payload})
        payload["price"] = 2
        with store.reader() as reader:
            assert reader.last("market_events")["payload"] == {"price": 1}  # type: ignore[index]


def test_secrets_are_redacted(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    secret = "sk-THIS-IS-SECRET-42"
    config = {
        "kalshi": {"api_key_id": secret, "private_key_pem": secret, "env": "demo"},
        "llm": {"OPENAI_API_KEY": secret, "Authorization": f"Bearer {secret}"},
        "db_password": secret,
        "nested": [{"refresh_token": secret}, {"client_secret": secret}],
    }
    usage = {
        "prompt_tokens": 120,
        "completion_tokens": 30,
        "total_tokens": 150,
        "completion_tokens_details": {"reasoning_tokens": 4},
        "tokens": secret,  # a string under a *tokens key is still redacted
        "session_token": secret,
    }
    with AuditStore.open(path) as store:
        run = store.start_run(config)
        store.append("decisions", {**SAMPLE_ROWS["decisions"], "payload": {"usage": usage}})
        assert store.stats.redactions == 9
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert secret.encode() not in raw
    with AuditReader.open(path) as reader:
        cfg = reader.run(run).config
        assert cfg["kalshi"] == {"api_key_id": REDACTED, "private_key_pem": REDACTED, "env": "demo"}
        assert cfg["nested"] == [{"refresh_token": REDACTED}, {"client_secret": REDACTED}]
        got = reader.last("decisions")["payload"]["usage"]  # type: ignore[index]
        assert got == {
            "prompt_tokens": 120,
            "completion_tokens": 30,
            "total_tokens": 150,
            "completion_tokens_details": {"reasoning_tokens": 4},
            "tokens": REDACTED,
            "session_token": REDACTED,
        }
    assert is_secret_key("monkey", 1)  # the rule is deliberately broad
    assert not is_secret_key("ticker", "x") and not is_secret_key("max_tokens", 512)


def test_payload_canonical_json_and_non_finite_floats() -> None:
    text, n = canonical_json(
        {"b": [1.5, math.nan, math.inf, -math.inf], "a": Decimal("0.0100"), "c": Side.ASK}
    )
    assert n == 0
    assert text == '{"a":"0.0100","b":[1.5,"NaN","Infinity","-Infinity"],"c":"ask"}'
    assert canonical_json({"é": "ü"})[0] == '{"é":"ü"}'
    assert canonical_json({1: "x"})[0] == '{"1":"x"}'
    with pytest.raises(AuditError):
        canonical_json({"s": "\ud800"})  # a lone surrogate cannot be stored


def test_bad_paths_raise_audit_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "cfa.db"
    with pytest.raises(AuditError, match=str(missing)):
        AuditStore.open(missing)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(AuditError, match="not a directory"):
        AuditStore.open(a_file / "cfa.db")
    with pytest.raises(AuditError, match="is a directory"):
        AuditStore.open(tmp_path)
    with pytest.raises(AuditError, match="does not exist"):
        verify(tmp_path / "absent.db")


@pytest.mark.skipif(
    not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
    reason="root ignores directory permissions",
)
def test_unwritable_directory(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(AuditError, match="not writable"):
            AuditStore.open(ro / "cfa.db")
    finally:
        ro.chmod(0o700)


def test_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(AuditIntegrityError, match="not a cfa audit store"):
        AuditStore.open(path)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(AuditError, match=str(junk)):
        AuditStore.open(junk)


def test_two_writers_share_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    a = AuditStore.open(path)
    b = AuditStore.open(path)
    try:
        run = a.start_run({})
        for i in range(30):
            (a if i % 2 else b).append("risk_events", {**SAMPLE_ROWS["risk_events"], "run_id": run})
            if i % 5 == 0:
                (b if i % 2 else a).flush()
        a.flush()
        b.flush()
    finally:
        a.close()
        b.close()
    assert all_seqs(path) == list(range(1, 32))
    assert verify(path).ok


class _FailingConn:
    """A connection proxy whose next executemany fails like a full disk."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.fail = True

    def executemany(self, *args: Any) -> Any:
        if self.fail:
            self.fail = False
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.executemany(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def test_failed_flush_keeps_rows_and_chain(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with AuditStore.open(path, batch_rows=5) as store:
        store.start_run({})
        real = store._sink.conn
        store._sink.conn = _FailingConn(real)  # type: ignore[assignment]
        for _ in range(5):  # the automatic flush fails quietly and keeps the rows
            store.append("market_events", SAMPLE_ROWS["market_events"])
        assert store.pending == 5 and store.stats.last_error is not None
        store.append("orders", SAMPLE_ROWS["orders"])
        store.flush()
        assert store.pending == 0 and store.stats.last_error is None
        store._sink.conn = real
    assert all_seqs(path) == list(range(1, 8))
    assert verify(path).ok


def test_closed_store_refuses_appends(tmp_path: Path) -> None:
    store = AuditStore.open(tmp_path / "a.db")
    store.start_run({})
    store.close()
    store.close()  # idempotent
    with pytest.raises(AuditError, match="closed"):
        store.append("market_events", SAMPLE_ROWS["market_events"])


def test_domain_records_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    events: list[Any] = [
        BookSnapshot("M", 1, 1_700_000_000.25, ((5500, 1000), (5400, 200)), ((4300, 500),)),
        BookDelta("M", 2, 1_700_000_000.5, Outcome.NO, 4300, -100, "c9"),
        BookDelta("M", 3, 1_700_000_000.000123, Outcome.YES, 5500, 50),
        Trade("M", "t1", 1_700_000_001.0, 5600, 300, Side.BID),
        Fill("f1", "o1", "c1", "M", Side.ASK, 5600, 100, Decimal("0.02"), True, 1.7e9, -100),
        Order("o1", "c1", "M", Side.ASK, 5600, 100, 0, 100, OrderStatus.EXECUTED, 1.7e9),
        Settlement("M", Outcome.YES, 1_700_000_900.0),
        MarketStatus("M", 1_700_000_002.0, False, "deactivated"),
        MarketStatus(
            "M",
            1_700_000_003.0,
            True,
            "price_level_structure_updated",
            MarketInfo("M", "E", "S", "M?", PriceGrid.from_structure("deci_cent").ranges, 1.8e9),
        ),
    ]
    fill = events[4]
    req = OrderRequest("M", "c1", Side.ASK, 5600, 100)
    order = events[5]
    with AuditStore.open(path) as store:
        store.start_run({})
        store.append("market_events", events_row("M", [encode_event(e) for e in events[:3]]))
        store.append("market_events", events_row("M", [encode_event(e) for e in events[3:]]))
        store.append("fills", fill_row(fill))
        store.append("orders", order_row(req, "place", ts=1.7e9))
        store.append("orders", order_row(order, "update", ts=1.7e9 + 1))
    with AuditReader.open(path) as reader:
        back = list(events_from_rows(reader.rows("market_events")))
        assert back == events
        assert len(events) <= MAX_BATCH
        f = reader.last("fills")
        assert f is not None and f["fee"] == Decimal("0.02") and f["post_position"] == -100
        o = reader.last("orders")
        assert o is not None and (o["status"], o["count"], o["order_id"]) == ("executed", 0, "o1")
