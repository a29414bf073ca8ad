"""Hash chain: tamper detection (edit, delete, insert, reorder), anchors, the canonical form."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from cfa.audit import GENESIS, TABLES, AuditIntegrityError, AuditStore, ChainHead, verify
from cfa.audit import chain as chain_mod
from cfa.audit.chain import RowHasher
from cfa.audit.compact import decompress_text
from cfa.audit.schema import chained_tables

T0 = 1_700_000_000_000
N_ROWS = 241  # 1 start row + 240 rows in 5 tables


def build(path: Path) -> ChainHead:
    with AuditStore.open(path, batch_rows=50) as store:
        store.start_run({"seed": 1}, ts_ms=T0)
        for i in range(240):
            ts = T0 + i
            k = i % 5
            if k == 0:
                store.append(
                    "param_changes",
                    {
                        "market": "M",
                        "ts_ms": ts,
                        "param": "gamma",
                        "old": i / 7,
                        "new": i / 3,
                        "source": "agent",
                    },
                )
            elif k == 1:
                store.append(
                    "orders",
                    {
                        "market": "M",
                        "ts_ms": ts,
                        "client_order_id": f"c{i}",
                        "side": "bid",
                        "price": 5000 + i,
                        "count": 100,
                        "action": "place",
                    },
                )
            elif k == 2:
                store.append(
                    "decisions",
                    {
                        "market": "M",
                        "ts_ms": ts,
                        "agent": "a",
                        "reasoner": "heuristic",
                        "outcome": "keep",
                        "payload": {"note": 'naïve "quoted"\n'},
                    },
                )
            else:
                store.append(
                    "market_events",
                    {
                        "market": "M",
                        "ts_ms": ts,
                        "kind": "delta",
                        "exch_seq": i,
                        "payload": {"d": i},
                    },
                )
        store.flush()
        return store.head


def tamper(path: Path, *sql: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    for t in TABLES:
        conn.execute(f"DROP TRIGGER IF EXISTS {t}_no_update")
        conn.execute(f"DROP TRIGGER IF EXISTS {t}_no_delete")
    for s in sql:
        conn.execute(s)
    conn.close()


def table_of(path: Path, seq: int) -> str:
    conn = sqlite3.connect(path)
    try:
        for t in TABLES:
            if conn.execute(f"SELECT 1 FROM {t} WHERE seq = ?", (seq,)).fetchone():
                return t
        raise KeyError(seq)
    finally:
        conn.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "chain.db"
    build(path)
    return path


def test_intact_file_verifies_with_row_count(db: Path) -> None:
    r = verify(db)
    assert r.ok and r.rows == N_ROWS and r.first_bad_seq is None, r
    assert r.head is not None and r.head.seq == N_ROWS
    r.raise_for_error()


def test_canonical_form_is_the_documented_json(db: Path) -> None:
    conn = sqlite3.connect(db)
    tables = chained_tables(conn)
    for table in ("market_events", "param_changes", "decisions", "orders"):
        names = tables[table]
        cols = ", ".join(("seq", "prev_hash", "hash", *names))
        seq, prev, h, *values = conn.execute(f"SELECT {cols} FROM {table} LIMIT 1").fetchone()
        full = tuple(values)
        if "payload_z" in names and values[names.index("payload_z")] is not None:
            # the documented rule: a compressed payload is hashed as its text, in `payload`
            z = names.index("payload_z")
            values[names.index("payload")] = decompress_text(values[z])
            values[z] = None
        while values and values[-1] is None:
            values.pop()
        canonical = json.dumps(
            [table, list(names[: len(values)]), seq, prev, values],
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
        assert hashlib.sha256(canonical.encode()).hexdigest() == h
        assert RowHasher(table, names).canonical(seq, prev, full) == canonical
    first = conn.execute("SELECT prev_hash FROM runs WHERE seq = 1").fetchone()[0]
    assert first == GENESIS
    conn.close()


@pytest.mark.parametrize("table", ["market_events", "param_changes", "decisions", "orders"])
def test_edited_row_is_found(db: Path, table: str) -> None:
    conn = sqlite3.connect(db)
    seq = conn.execute(f"SELECT seq FROM {table} ORDER BY seq LIMIT 1 OFFSET 10").fetchone()[0]
    conn.close()
    change = {
        "market_events": "payload = '{\"d\":999}'",
        "param_changes": "new = new + 1e-9",
        "decisions": "outcome = 'applied'",
        "orders": "price = price + 1",
    }[table]
    tamper(db, f"UPDATE {table} SET {change} WHERE seq = {seq}")
    r = verify(db)
    assert not r.ok and r.first_bad_seq == seq and r.table == table, r
    assert "content" in r.reason and r.rows == seq - 1
    with pytest.raises(AuditIntegrityError):
        r.raise_for_error()


def test_deleted_row_is_found(db: Path) -> None:
    t = table_of(db, 100)
    tamper(db, f"DELETE FROM {t} WHERE seq = 100")
    r = verify(db)
    assert not r.ok and r.first_bad_seq == 100 and "missing" in r.reason, r


def test_deleted_first_row_is_found(db: Path) -> None:
    tamper(db, "DELETE FROM runs WHERE seq = 1")
    r = verify(db)
    assert not r.ok and r.first_bad_seq == 1, r


def test_inserted_row_with_duplicate_seq_is_found(db: Path) -> None:
    # A forged decision squeezed in at seq 60, which market_events (or another table) holds.
    tamper(
        db,
        "INSERT INTO decisions (seq, run_id, market, ts_ms, agent, reasoner, outcome, "
        "prev_hash, hash) SELECT 60, run_id, market, ts_ms, 'a', 'h', 'keep', prev_hash, hash "
        f"FROM {table_of(db, 60)} WHERE seq = 60",
    )
    r = verify(db)
    assert not r.ok and r.first_bad_seq == 60, r


def test_inserted_row_renumbering_the_rest_is_found(db: Path) -> None:
    # Shift every row from seq 120 up by one and insert a forged row at 120 in market_events.
    stmts = [f"UPDATE {t} SET seq = seq + 1000 WHERE seq >= 120" for t in TABLES]
    stmts += [f"UPDATE {t} SET seq = seq - 999 WHERE seq >= 1120" for t in TABLES]
    stmts.append(
        "INSERT INTO market_events (seq, run_id, market, ts_ms, kind, prev_hash, hash) "
        "SELECT 120, run_id, market, ts_ms, 'delta', hash, hash FROM "
        f"{table_of(db, 119)} WHERE seq = 119"
    )
    tamper(db, *stmts)
    r = verify(db)
    assert not r.ok and r.first_bad_seq == 120, r


def test_inserted_row_before_the_start_is_found(db: Path) -> None:
    tamper(
        db,
        "INSERT INTO orders (seq, run_id, market, ts_ms, action, prev_hash, hash) "
        f"VALUES (0, 'r', 'M', 0, 'place', '{GENESIS}', '{GENESIS}')",
    )
    r = verify(db)
    assert not r.ok and r.first_bad_seq == 0 and r.table == "orders", r


def test_appended_forged_row_is_found(db: Path) -> None:
    tamper(
        db,
        "INSERT INTO market_events (seq, run_id, market, ts_ms, kind, prev_hash, hash) "
        f"SELECT {N_ROWS + 1}, run_id, market, ts_ms, 'delta', hash, '{'f' * 64}' "
        f"FROM {table_of(db, N_ROWS)} WHERE seq = {N_ROWS}",
    )
    r = verify(db)
    assert not r.ok and r.first_bad_seq == N_ROWS + 1, r


def test_reordered_rows_are_found(db: Path) -> None:
    conn = sqlite3.connect(db)
    a, b = (r[0] for r in conn.execute("SELECT seq FROM market_events WHERE seq > 50 LIMIT 2"))
    conn.close()
    tamper(
        db,
        f"UPDATE market_events SET seq = -1 WHERE seq = {a}",
        f"UPDATE market_events SET seq = {a} WHERE seq = {b}",
        f"UPDATE market_events SET seq = {b} WHERE seq = -1",
    )
    r = verify(db)
    assert not r.ok and r.first_bad_seq == a, r


def test_row_moved_to_another_table_is_found(db: Path) -> None:
    # Same seq and values in a different table: the table name is part of the hash.
    conn = sqlite3.connect(db)
    seq = conn.execute("SELECT seq FROM decisions LIMIT 1 OFFSET 3").fetchone()[0]
    conn.close()
    cols = "seq, run_id, market, ts_ms, prev_hash, hash"
    tamper(
        db,
        f"INSERT INTO risk_events ({cols}, kind) SELECT {cols}, 'keep' FROM decisions "
        f"WHERE seq = {seq}",
        f"DELETE FROM decisions WHERE seq = {seq}",
    )
    r = verify(db)
    assert not r.ok and r.first_bad_seq == seq, r


def test_rewritten_chain_needs_an_anchor(db: Path) -> None:
    anchor = verify(db).head
    assert anchor is not None
    # Edit row 30 and recompute every hash after it: invisible without an outside anchor.
    t30 = table_of(db, 30)
    tamper(db, f"UPDATE {t30} SET ts_ms = ts_ms + 1 WHERE seq = 30")
    conn = sqlite3.connect(db, isolation_level=None)
    tables = chained_tables(conn)
    where = {s: t for t in tables for (s,) in conn.execute(f"SELECT seq FROM {t}")}
    prev = conn.execute(f"SELECT hash FROM {where[29]} WHERE seq = 29").fetchone()[0]
    conn.execute("BEGIN")
    for seq in range(30, N_ROWS + 1):
        t = where[seq]
        names = tables[t]
        values = conn.execute(f"SELECT {', '.join(names)} FROM {t} WHERE seq = ?", (seq,))
        h = RowHasher(t, names).digest(seq, prev, values.fetchone())
        conn.execute(f"UPDATE {t} SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, h, seq))
        prev = h
    conn.execute("COMMIT")
    conn.close()
    assert verify(db).ok
    r = verify(db, anchor=anchor)
    assert not r.ok and r.first_bad_seq == anchor.seq and "anchor" in r.reason, r


def test_cut_tail_needs_an_anchor(db: Path) -> None:
    anchor = verify(db).head
    assert anchor is not None
    stmts = [
        f"DELETE FROM {table_of(db, s)} WHERE seq = {s}" for s in range(N_ROWS - 4, N_ROWS + 1)
    ]
    tamper(db, *stmts)
    assert verify(db).ok
    r = verify(db, anchor=(anchor.seq, anchor.hash))
    assert not r.ok and r.first_bad_seq == N_ROWS - 4, r


def test_append_only_triggers_block_updates_and_deletes(db: Path) -> None:
    conn = sqlite3.connect(db)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE market_events SET kind = 'x'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM runs")
    conn.close()


def test_parallel_verify_agrees(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chain_mod, "_PARALLEL_MIN_ROWS", 10)
    r = verify(db, workers=2)
    assert r.ok and r.rows == N_ROWS and r.head == verify(db, workers=1).head
    # A row deleted at the start of the second range: found by linking the ranges.
    boundary = -(-N_ROWS // 2) + 1
    tamper(db, f"DELETE FROM {table_of(db, boundary)} WHERE seq = {boundary}")
    r = verify(db, workers=2)
    assert not r.ok and r.first_bad_seq == boundary, r
    # An earlier edit in the first range wins.
    tamper(db, f"UPDATE {table_of(db, 7)} SET ts_ms = 0 WHERE seq = 7")
    r = verify(db, workers=2)
    assert not r.ok and r.first_bad_seq == 7, r


def test_verify_workers_fork_only_without_other_threads(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A single-threaded caller (the CLI) forks its workers (no re-import of the main script);
    with another thread running (an open store's checkpointer) they start fresh."""
    import threading

    monkeypatch.setattr(chain_mod, "_PARALLEL_MIN_ROWS", 10)
    if threading.active_count() == 1:
        assert chain_mod._pool_context().get_start_method() == "fork"
    with AuditStore.open(db.parent / "other.db"):  # starts the checkpointer thread
        assert threading.active_count() > 1
        assert chain_mod._pool_context().get_start_method() != "fork"
        r = verify(db, workers=2)
    assert r.ok and r.rows == N_ROWS and r.head == verify(db, workers=1).head


def test_added_nullable_column_keeps_old_hashes(db: Path) -> None:
    tamper(db, "ALTER TABLE market_events ADD COLUMN venue TEXT")
    assert verify(db).ok
    with AuditStore.open(db) as store:  # a writer that does not know the column
        store.start_run({})
        store.append("market_events", {"kind": "delta", "payload": {}})
    r = verify(db)
    assert r.ok and r.rows == N_ROWS + 2, r


def test_awkward_text_verifies(db: Path) -> None:
    with AuditStore.open(db) as store:
        store.start_run({})
        store.append("risk_events", {"kind": 'x\x01\u2028é😀\\"', "code": "tab\there"})
    assert verify(db).ok
