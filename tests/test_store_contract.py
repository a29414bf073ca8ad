"""The audit store contract: every backend (SQLite file, PostgreSQL schema) passes these tests.

Write and read back every column type; reopen and continue the chain; a writer killed mid-batch
leaves only whole batches; several writer processes extend one gap-free chain; an edited,
deleted or inserted row is detected; the append-only guards refuse UPDATE and DELETE; the
heartbeat, the signed anchors and the CLI (`cfa audit verify`, `cfa traces`) work the same.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from store_backends import admin, schema_url

from cfa.audit import AuditError, AuditReader, AuditStore, verify
from cfa.audit.anchors import AnchorLog, check_anchors
from cfa.audit.chain import connect_readonly
from cfa.audit.heartbeat import session_status
from cfa.audit.integrity import missing_triggers

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _fill(store: AuditStore, n: int = 20) -> str:
    rid = store.start_run({"scenario": "contract", "api_key": "s3cret"})
    for i in range(n):
        store.append(
            "market_events",
            {
                "market": "M1",
                "ts_ms": 1_000 + i,
                "kind": "delta",
                "exch_seq": i,
                "payload": {"i": i, "px": 0.1 * i, "tag": "é\u2603"},
            },
        )
        store.append(
            "fills",
            {
                "market": "M1",
                "ts_ms": 1_000 + i,
                "fill_id": f"f{i}",
                "side": "bid",
                "price": 4_900 + i,
                "count": 100,
                "fee": Decimal("0.0175"),
                "is_taker": i % 2 == 0,
                "post_position": i * 100,
            },
        )
        store.append(
            "param_changes",
            {
                "market": "M1",
                "ts_ms": 1_000 + i,
                "param": "gamma",
                "old": 0.1 * i,
                "new": 0.1 * i + 1e-17,
                "source": "agent",
                "reason": "contract",
            },
        )
    store.end_run(rid, {"ok": True})
    return rid


def _admin_sql(target: str, sqlite_sql: list[str], pg_sql: list[str]) -> None:
    """Run statements as the store's owner, bypassing cfa (a tamperer or an administrator)."""
    if target.startswith("postgresql://"):
        schema = target.rsplit("%3D", 1)[1]
        with admin() as c:  # type: ignore[attr-defined]
            c.execute(f"SET search_path = {schema}")
            for s in pg_sql:
                c.execute(s)
    else:
        import sqlite3

        c = sqlite3.connect(target, isolation_level=None)
        try:
            for s in sqlite_sql:
                c.execute(s)
        finally:
            c.close()


def test_write_read_back_every_type(store_target: str) -> None:
    with AuditStore.open(store_target, clock=lambda: 2.0) as store:
        rid = _fill(store)
        head = store.head
    assert head.seq == 2 + 3 * 20
    res = verify(store_target)
    assert res.ok and res.head == head
    with AuditReader.open(store_target) as r:
        (run,) = r.runs()
        assert run.run_id == rid and run.config["scenario"] == "contract"
        assert run.config["api_key"] == "[REDACTED]"  # the secrets rule holds on both
        assert run.summary == {"ok": True}
        fills = list(r.rows("fills", run_id=rid))
        assert [f["price"] for f in fills] == [4_900 + i for i in range(20)]
        assert fills[3]["fee"] == Decimal("0.0175") and fills[3]["is_taker"] is False
        assert fills[4]["is_taker"] is True and fills[4]["post_position"] == 400
        params = list(r.rows("param_changes", market="M1"))
        assert params[7]["new"] == 0.1 * 7 + 1e-17  # doubles round-trip exactly
        ev = r.last("market_events", run_id=rid)
        assert ev is not None and ev["payload"] == {"i": 19, "px": 0.1 * 19, "tag": "é\u2603"}
        assert r.counts(rid)["fills"] == 20
        seqs = [row["seq"] for _, row in r.timeline(run_id=rid)]
        assert seqs == list(range(1, head.seq + 1))
        assert r.head() == head
        raw = next(iter(r.rows("fills", since_ms=1_010, until_ms=1_012, decode=False)))
        assert raw["fee"] == "0.0175"


def test_reopen_continues_the_chain(store_target: str) -> None:
    with AuditStore.open(store_target) as store:
        _fill(store, 5)
        first = store.head
    with AuditStore.open(store_target) as store:
        assert store.head == first
        _fill(store, 5)
    res = verify(store_target)
    assert res.ok and res.rows == 2 * first.seq


def test_bad_input_is_refused_before_any_write(store_target: str) -> None:
    with AuditStore.open(store_target) as store:
        store.start_run({})
        with pytest.raises(AuditError, match="NUL"):
            store.append("orders", {"market": "M\x00", "action": "place"})
        with pytest.raises(AuditError, match=r"orders\.action"):
            store.append("orders", {"market": "M", "action": "steal"})
        with pytest.raises(AuditError, match=r"not finite|NaN"):
            store.append("param_changes", {"param": "gamma", "new": float("nan"), "source": "x"})
        store.sync()
    assert verify(store_target).ok


CRASH_CHILD = """
import sys
from cfa.audit import AuditStore

store = AuditStore.open(sys.argv[1], batch_rows=10**6, max_pending=10**7)
store.start_run({"child": True})
i = 0
while True:
    for _ in range(500):
        store.append("market_events", {"market": "M", "kind": "delta", "exch_seq": i,
                                       "payload": {"i": i, "pad": "x" * 300}})
        i += 1
    store.flush()
    print(i, flush=True)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_writer_killed_mid_batch_leaves_whole_batches(store_target: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_CHILD, store_target],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for _ in range(3):  # three batches committed: the writer is inside its loop
            assert proc.stdout.readline().strip(), proc.stderr.read() if proc.stderr else ""
        time.sleep(0.013)  # land somewhere inside a batch (append, hash or commit)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    res = verify(store_target)
    assert res.ok, res.reason
    with AuditReader.open(store_target) as r:
        events = r.counts()["market_events"]
    assert events >= 1_500 and events % 500 == 0  # only whole batches: no torn transaction
    with AuditStore.open(store_target) as store:  # and the next writer goes on from there
        store.start_run({"after": "crash"})
    assert verify(store_target).ok


WRITER_CHILD = """
import random, sys
from cfa.audit import AuditStore

name, n = sys.argv[2], int(sys.argv[3])
rng = random.Random(name)
with AuditStore.open(sys.argv[1], batch_rows=37) as store:
    rid = store.start_run({"writer": name})
    for i in range(n):
        store.append("orders", {"market": name, "action": "place", "price": i, "count": 1})
        if rng.random() < 0.05:
            store.flush()
    store.end_run(rid, {"n": n})
"""


def test_concurrent_writer_processes_extend_one_chain(store_target: str) -> None:
    with AuditStore.open(store_target):
        pass  # create the schema first (as a deployment would)
    names = ["w1", "w2", "w3"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER_CHILD, store_target, name, "400"],
            stderr=subprocess.PIPE,
            env=ENV,
            text=True,
        )
        for name in names
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    res = verify(store_target)
    assert res.ok, res.reason
    assert res.rows == 3 * (400 + 2)
    with AuditReader.open(store_target) as r:
        for name in names:
            prices = [o["price"] for o in r.rows("orders", market=name)]
            assert prices == list(range(400))  # each writer's rows in its own order
        assert len(r.runs()) == 3


def test_edit_delete_and_insert_are_detected(store_target: str) -> None:
    with AuditStore.open(store_target) as store:
        _fill(store, 10)
    _admin_sql(
        store_target,
        [
            "DROP TRIGGER fills_no_update",
            "UPDATE fills SET price = price + 1 WHERE seq = 6",
        ],
        [
            "ALTER TABLE fills DISABLE TRIGGER fills_no_change",
            "UPDATE fills SET price = price + 1 WHERE seq = 6",
        ],
    )
    res = verify(store_target)
    assert not res.ok and res.first_bad_seq == 6 and res.table == "fills"
    with connect_readonly(store_target) as conn:
        assert missing_triggers(conn)  # the disabled guard is reported too
    _admin_sql(
        store_target,
        ["DROP TRIGGER param_changes_no_delete", "DELETE FROM param_changes WHERE seq = 10"],
        [
            "ALTER TABLE param_changes DISABLE TRIGGER param_changes_no_change",
            "DELETE FROM param_changes WHERE seq = 10",
        ],
    )
    assert verify(store_target).first_bad_seq == 6  # still the earliest problem


def test_append_only_guards_refuse_update_and_delete(store_target: str) -> None:
    with AuditStore.open(store_target) as store:
        _fill(store, 3)
    with connect_readonly(store_target) as conn:
        assert missing_triggers(conn) == []
    for sql in ("UPDATE fills SET price = 1", "DELETE FROM runs", "TRUNCATE fills"):
        if sql.startswith("TRUNCATE") and not store_target.startswith("postgresql://"):
            continue  # SQLite has no TRUNCATE
        with pytest.raises(Exception, match="append-only"):
            _admin_sql(store_target, [sql], [sql])
    assert verify(store_target).ok


def test_heartbeat_says_who_is_running(store_target: str) -> None:
    with AuditStore.open(store_target) as store:
        rid = store.start_run({})
        store.heartbeat(rid, rid, started=time.time())
        alive, detail = session_status(store_target)
        assert alive and rid in detail
        store.heartbeat(rid, rid, "stopped", started=time.time())
        alive, detail = session_status(store_target)
        assert not alive and "stopped" in detail


def test_signed_anchors_match_on_every_backend(store_target: str, tmp_path: Path) -> None:
    log = AnchorLog.open(tmp_path / "a.anchors", tmp_path / "a.key")
    with AuditStore.open(store_target, anchors=log) as store:
        _fill(store, 4)
    check = check_anchors(store_target, tmp_path / "a.anchors", writer_alive=False)
    assert check.ok and check.matched == check.anchors >= 3, check.findings


def test_cli_verify_and_traces_read_the_store(store_target: str) -> None:
    with AuditStore.open(store_target) as store:
        rid = store.start_run({"scenario": "cli"})
        store.append(
            "decisions",
            {
                "market": "M1",
                "decision_id": "d1",
                "agent": "market",
                "reasoner": "heuristic",
                "outcome": "keep",
                "payload": {"rationale": "calm book"},
            },
        )
        store.end_run(rid, {})
    out = subprocess.run(
        [sys.executable, "-m", "cfa.cli", "audit", "verify", "--db", store_target, "--json"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["ok"] is True
    out = subprocess.run(
        [sys.executable, "-m", "cfa.cli", "traces", "show", "d1", "--db", store_target],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "decision d1 · seq 2" in out.stdout


def _as(target: str, role: str) -> str:
    return schema_url(target.rsplit("%3D", 1)[1], user=role)


def test_postgres_writer_role_cannot_rewrite_even_without_triggers(pg_schema: str) -> None:
    """The owner creates the store; sessions run as ``cfa_writer``, which may SELECT and INSERT
    only: with the triggers disabled by the owner, the writer's UPDATE is still refused."""
    import psycopg

    with admin() as c:  # type: ignore[attr-defined]
        if not c.execute("SELECT 1 FROM pg_roles WHERE rolname = 'cfa_writer'").fetchone():
            c.execute("CREATE ROLE cfa_writer LOGIN")
    owner = schema_url(pg_schema)
    with AuditStore.open(owner):
        pass
    writer = _as(owner, "cfa_writer")
    with AuditStore.open(writer) as store:  # an existing store: the writer needs no DDL
        _fill(store, 3)
    assert verify(writer).ok
    _admin_sql(owner, [], ["ALTER TABLE fills DISABLE TRIGGER fills_no_change"])
    with psycopg.connect(writer, autocommit=True) as c, pytest.raises(psycopg.Error) as err:
        c.execute("UPDATE fills SET price = 1")
    assert "permission denied" in str(err.value)
    assert verify(writer).ok


def test_postgres_url_password_never_reaches_messages_or_the_trail(pg_schema: str) -> None:
    url = schema_url(pg_schema).replace("postgresql://", "postgresql://nobody:hunter2@", 1)
    with pytest.raises(AuditError) as err:
        AuditStore.open(url)
    assert "hunter2" not in str(err.value) and "***" in str(err.value)


def test_postgres_schema_with_foreign_tables_is_refused(pg_schema: str) -> None:
    _admin_sql(schema_url(pg_schema), [], ["CREATE TABLE customers (id int)"])
    with pytest.raises(AuditError, match="other tables"):
        AuditStore.open(schema_url(pg_schema))


def test_process_writer_commits_on_every_backend(store_target: str) -> None:
    with AuditStore.open(store_target, writer="process") as store:
        _fill(store, 30)
        head = store.sync()
    assert head.seq == 2 + 3 * 30
    res = verify(store_target)
    assert res.ok and res.head == head


# --- compacted market events and retention ----------------------------------------------------


def _admin_params(target: str, sqlite_sql: list[str], pg_sql: list[str], params: tuple) -> None:
    """Like :func:`_admin_sql`, the last statement taking ``params`` (``?`` / ``%s``)."""
    if target.startswith("postgresql://"):
        schema = target.rsplit("%3D", 1)[1]
        with admin() as c:  # type: ignore[attr-defined]
            c.execute(f"SET search_path = {schema}")
            for s in pg_sql[:-1]:
                c.execute(s)
            c.execute(pg_sql[-1], params)
    else:
        import sqlite3

        c = sqlite3.connect(target, isolation_level=None)
        try:
            for s in sqlite_sql[:-1]:
                c.execute(s)
            c.execute(sqlite_sql[-1], params)
        finally:
            c.close()


_UNGUARD = (
    ["DROP TRIGGER IF EXISTS market_events_no_update"],
    ["ALTER TABLE market_events DISABLE TRIGGER market_events_no_change"],
)


def test_market_events_are_compressed_and_hash_as_their_text(store_target: str) -> None:
    import hashlib
    import zlib

    from cfa.audit.compact import ZSTD_MAGIC, decompress_text

    with AuditStore.open(store_target) as store:
        _fill(store, 5)
    conn = connect_readonly(store_target)
    try:
        cur = conn.execute(
            "SELECT seq, run_id, market, ts_ms, kind, exch_seq, payload, payload_z, prev_hash, "
            "hash FROM market_events ORDER BY seq"
        )
        rows = cur.fetchall()
    finally:
        conn.close()
    assert len(rows) == 5
    for seq, rid, market, ts, kind, exch, payload, blob, prev, h in rows:
        assert payload is None and bytes(blob)[:4] == ZSTD_MAGIC
        text = decompress_text(bytes(blob))
        assert len(bytes(blob)) < len(text.encode()) + 16
        # the documented rule over the text, as a schema-1 store held it: the same hash
        names = ["run_id", "market", "ts_ms", "kind", "exch_seq", "payload"]
        canonical = json.dumps(
            ["market_events", names, seq, prev, [rid, market, ts, kind, exch, text]],
            separators=(",", ":"),
            ensure_ascii=False,
        )
        assert hashlib.sha256(canonical.encode()).hexdigest() == h
    # re-compressed with another codec: no hash changes, readers see the same payload
    seq, text = rows[2][0], decompress_text(bytes(rows[2][7]))
    _admin_params(
        store_target,
        [*_UNGUARD[0], "UPDATE market_events SET payload_z = ? WHERE seq = ?"],
        [*_UNGUARD[1], "UPDATE market_events SET payload_z = %s WHERE seq = %s"],
        (zlib.compress(text.encode(), 9), seq),
    )
    assert verify(store_target).ok
    with AuditReader.open(store_target) as r:
        (ev,) = list(r.rows("market_events", after_seq=seq - 1, limit=1))
        assert ev["payload"] == json.loads(text) and "payload_z" not in ev
        raw = r.last("market_events", decode=False)
        assert raw is not None and isinstance(raw["payload"], str) and "payload_z" not in raw


def test_corrupt_compressed_payload_is_reported_not_raised(store_target: str) -> None:
    with AuditStore.open(store_target) as store:
        _fill(store, 5)
    with AuditReader.open(store_target) as r:
        seq = [e["seq"] for e in r.rows("market_events")][3]
    _admin_params(
        store_target,
        [
            *_UNGUARD[0],
            "UPDATE market_events SET payload_z = substr(payload_z, 1, 12) WHERE seq = ?",
        ],
        [
            *_UNGUARD[1],
            "UPDATE market_events SET payload_z = substring(payload_z from 1 for 12) "
            "WHERE seq = %s",
        ],
        (seq,),
    )
    res = verify(store_target)
    assert not res.ok and res.first_bad_seq == seq and res.table == "market_events"
    assert "cannot be read" in res.reason and "corrupt" in res.reason, res.reason
    with AuditReader.open(store_target) as r, pytest.raises(AuditError, match=f"seq {seq}"):
        list(r.rows("market_events"))


def test_archive_cut_on_every_backend(store_target: str, tmp_path: Path) -> None:
    from cfa.audit.archive import archive

    with AuditStore.open(store_target, clock=lambda: 10.0) as store:
        first = _fill(store, 4)
    with AuditStore.open(store_target, clock=lambda: 99.0) as store:
        second = _fill(store, 4)
    res = archive(store_target, 50_000, out=tmp_path / "a1.db")
    assert res.plan.runs == (first,) and res.plan.last_seq == 14
    live, arch = verify(store_target), verify(res.file)
    assert live.ok and live.base.seq == 14 and arch.ok and arch.head == live.base
    with AuditReader.open(store_target) as r:
        assert [x.run_id for x in r.runs()] == [second]
        assert len(list(r.rows("fills"))) == 4
    with AuditReader.open(res.file) as r:
        assert [x.run_id for x in r.runs()] == [first]
    res2 = archive(store_target, 200_000, out=tmp_path / "a2.db")
    assert res2.plan.first_seq == 15 and res2.plan.runs == (second,)
    assert verify(res2.file).ok and verify(store_target).base == verify(res2.file).head
    with AuditReader.open(store_target) as r:
        assert r.runs() == [] and r.counts()["fills"] == 0


def test_postgres_writer_role_cannot_archive(pg_schema: str, tmp_path: Path) -> None:
    from cfa.audit.archive import archive

    with admin() as c:  # type: ignore[attr-defined]
        if not c.execute("SELECT 1 FROM pg_roles WHERE rolname = 'cfa_writer'").fetchone():
            c.execute("CREATE ROLE cfa_writer LOGIN")
    owner = schema_url(pg_schema)
    with AuditStore.open(owner):
        pass
    writer = _as(owner, "cfa_writer")
    with AuditStore.open(writer, clock=lambda: 10.0) as store:
        _fill(store, 3)
    with pytest.raises(AuditError, match=r"owner.*cfa_writer role cannot"):
        archive(writer, 50_000, out=tmp_path / "w.db")
    assert not (tmp_path / "w.db").exists()  # no archive of rows that are still live
    res = verify(writer)
    assert res.ok and res.base.seq == 0 and res.head is not None and res.head.seq == 11


def test_schema_1_store_still_verifies_reads_and_is_extended(store_target: str) -> None:
    """A store as schema 1 left it (payloads as text, no payload_z column) verifies and reads;
    a newer writer adds the column and compresses its own rows; the mixed store verifies."""
    from cfa.audit.compact import decompress_text

    with AuditStore.open(store_target) as store:
        _fill(store, 4)
    with AuditReader.open(store_target) as r:
        before = list(r.rows("market_events"))
        texts = [
            (e["seq"], decompress_text(raw["payload_z"]))
            for e, raw in zip(
                before, r.db.query("SELECT seq, payload_z FROM market_events"), strict=True
            )
        ]
    # back to schema 1, as its owner: text payloads, the column dropped, version 1
    for seq, text in texts:
        _admin_params(
            store_target,
            [*_UNGUARD[0], "UPDATE market_events SET payload = ?, payload_z = NULL WHERE seq = ?"],
            [
                *_UNGUARD[1],
                "UPDATE market_events SET payload = %s, payload_z = NULL WHERE seq = %s",
            ],
            (text, seq),
        )
    _admin_sql(
        store_target,
        ["ALTER TABLE market_events DROP COLUMN payload_z", "PRAGMA user_version = 1"],
        [
            "ALTER TABLE market_events DROP COLUMN payload_z",
            "ALTER TABLE market_events ENABLE TRIGGER market_events_no_change",
            "UPDATE cfa_meta SET schema_version = 1",
        ],
    )
    old = verify(store_target)
    assert old.ok and old.rows == 14
    with AuditReader.open(store_target) as r:
        assert list(r.rows("market_events")) == before
    with AuditStore.open(store_target) as store:  # extends it: column back, new rows compressed
        _fill(store, 2)
    res = verify(store_target)
    assert res.ok and res.rows == 14 + 8
    with AuditReader.open(store_target) as r:
        assert list(r.rows("market_events"))[:4] == before
        stored = [
            (row["payload"] is None, row["payload_z"] is None)
            for row in r.db.query("SELECT payload, payload_z FROM market_events ORDER BY seq")
        ]
    assert stored == [(False, True)] * 4 + [(True, False)] * 2


def test_cli_init_creates_the_store_once_and_checks_it_after(store_target: str) -> None:
    cmd = [sys.executable, "-m", "cfa.cli", "audit", "init", "--db", store_target]
    for _ in range(2):  # creating, then checking the existing store
        out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        assert "ready (empty)" in out.stdout
    assert verify(store_target).ok


def test_cli_init_grants_a_session_role_insert_only(pg_schema: str) -> None:
    import psycopg

    role = "cfa_test_desk"
    with admin() as c:  # type: ignore[attr-defined]
        if not c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
            c.execute(f"CREATE ROLE {role} LOGIN")
    owner = schema_url(pg_schema)
    cmd = [sys.executable, "-m", "cfa.cli", "audit", "init", "--db", owner, "--grant", role]
    out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    session = schema_url(pg_schema, user=role)
    with AuditStore.open(session) as store:
        _fill(store, 2)
    with psycopg.connect(session, autocommit=True) as c, pytest.raises(psycopg.Error) as err:
        c.execute("DELETE FROM fills")
    assert "permission denied" in str(err.value)  # refused before any trigger runs
    bad = [*cmd[:-1], "no_such_role_here"]
    out = subprocess.run(bad, capture_output=True, text=True, env=ENV, timeout=60, check=False)
    assert out.returncode != 0 and "no such role" in (out.stdout + out.stderr)


def test_postgres_writer_survives_a_dropped_connection(pg_schema: str) -> None:
    """The server drops the writer's connection (a restart, a failover): the flush that meets
    the dead connection keeps its rows, and the next one reconnects and commits them in order."""
    url = schema_url(pg_schema)
    with AuditStore.open(url) as store:
        rid = store.start_run({})
        pid = store._conn._conn.info.backend_pid
        with admin() as c:  # type: ignore[attr-defined]
            c.execute("SELECT pg_terminate_backend(%s)", [pid])
        for i in range(5):
            store.append("orders", {"market": "M", "action": "place", "price": i, "count": 1})
        store.flush()  # BEGIN meets the dropped connection: reconnected, then committed
        store.end_run(rid, {})
    res = verify(url)
    assert res.ok and res.rows == 7
    with AuditReader.open(url) as r:
        assert [o["price"] for o in r.rows("orders")] == list(range(5))


def test_postgres_password_stays_out_of_the_trail(pg_schema: str, tmp_path: Path) -> None:
    """A password in the URL (trust auth ignores it here) reaches no row: the run's recorded
    command line has it replaced, and no message prints it."""
    with admin() as c:  # type: ignore[attr-defined]
        (user,) = c.execute("SELECT current_user").fetchone()
    url = schema_url(pg_schema).replace("postgresql://", f"postgresql://{user}:hunter2@", 1)
    cmd = [sys.executable, "-m", "cfa.cli", "run", "-q", "-n", "1", "--duration", "90s"]
    out = subprocess.run(
        [*cmd, "--no-anchors", "--db", url],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "hunter2" not in out.stdout + out.stderr and ":***@" in out.stdout
    with AuditReader.open(url) as r:
        (run,) = r.runs()
        assert any(":***@" in a for a in run.config["argv"])
        for table in ("runs", "decisions", "risk_events", "orders"):
            for row in r.rows(table, decode=False):
                assert "hunter2" not in json.dumps(row, default=str), (table, row["seq"])
