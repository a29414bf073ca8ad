"""Retention (`cfa audit archive`) and compacted market events, end to end.

Old-format stores (payload as text, schema 1) still verify and read, and hash exactly like the
compressed rows; a cut is a verified prefix on both sides (live and archive, chain and anchors);
a second cut starts after the first; interleaved runs stop the cut with a message; tampering
with the archive is caught. Backend-independent cases run on SQLite and PostgreSQL
(`store_target`); the rest on SQLite files.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cfa.audit import AuditError, AuditReader, AuditStore, verify
from cfa.audit.anchors import AnchorLog, check_anchors, default_anchor_path
from cfa.audit.archive import archive, parse_before, plan
from cfa.audit.compact import decompress_text
from cfa.cli import app

S = 1_000  # ms per simulated second


def _run(store: AuditStore, name: str, start_s: int, end_s: int | None, n: int = 6) -> str:
    """One run from start_s to end_s (None: never ends) with market events and a fill."""
    rid = store.start_run({"name": name}, run_id=name, ts_ms=start_s * S)
    for i in range(n):
        store.append(
            "market_events",
            {
                "market": "M1",
                "ts_ms": start_s * S + i,
                "kind": "events",
                "exch_seq": i,
                "payload": {"events": [["d", i, 0.5, [[4900 + i, 100]]]] * 20, "n": 20},
            },
        )
    store.append(
        "orders", {"market": "M1", "ts_ms": start_s * S + n, "action": "place", "price": 4_900}
    )
    store.sync()
    if end_s is not None:
        store.end_run(rid, {"name": name}, ts_ms=end_s * S)
    return rid


def _anchor_log(target: str, key: Path) -> AnchorLog:
    return AnchorLog.open(default_anchor_path(target), key)


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in tmp_path: PostgreSQL stores keep their anchor file and archives in the cwd."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_archive_then_second_archive_on_every_backend(store_target: str, here: Path) -> None:
    key = here / "k.key"
    with AuditStore.open(store_target, anchors=_anchor_log(store_target, key)) as store:
        _run(store, "r1", 100, 1_000)
        _run(store, "r2", 1_100, 2_000)
        _run(store, "r3", 2_100, 5_000)
        head = store.head
    before = verify(store_target)
    assert before.ok and before.head == head
    res = archive(store_target, 3_000 * S, key_path=key)
    k = res.plan.last_seq
    assert res.plan.first_seq == 1 and res.plan.runs == ("r1", "r2") and res.anchors_copied >= 2
    assert res.plan.stopped is not None and "r3" in res.plan.stopped
    # the live store: rows k+1.., the cut recorded in its chain, anchors still OK
    live = verify(store_target)
    assert live.ok and live.base.seq == k and live.archived_in == str(res.file.resolve())
    assert live.head == res.record and live.rows == res.record.seq - k
    check = check_anchors(store_target, default_anchor_path(store_target), writer_alive=False)
    assert check.ok and not check.of("warn"), check.findings
    assert any(f.kind == "archived" for f in check.findings)
    # the archive: rows 1..k with their original hashes, its own anchors OK
    arch = verify(res.file)
    assert arch.ok and arch.base.seq == 0 and arch.head is not None and arch.head.seq == k
    acheck = check_anchors(res.file, Path(f"{res.file}.anchors"), writer_alive=False)
    assert acheck.ok and not acheck.of("warn") and acheck.matched == acheck.anchors
    with AuditReader.open(store_target) as r:
        assert [x.run_id for x in r.runs()] == ["r3"]
        assert r.counts()["market_events"] == 6
    with AuditReader.open(res.file) as r:
        assert [x.run_id for x in r.runs()] == ["r1", "r2"]
        ev = r.last("market_events", run_id="r2")
        assert ev is not None and ev["payload"]["n"] == 20 and "payload_z" not in ev
    out = _cli("audit", "verify", "--db", store_target)
    assert out.exit_code == 0 and f"rows 1..{k} archived in" in out.output, out.output
    out = _cli("audit", "verify", "--db", str(res.file))
    assert out.exit_code == 0 and "ANCHORS OK" in out.output, out.output
    # a later run, then a second cut: the second archive starts at k+1
    with AuditStore.open(store_target, anchors=_anchor_log(store_target, key)) as store:
        _run(store, "r4", 5_100, 6_000)
    res2 = archive(store_target, 5_500 * S, key_path=key, out=here / "second.db")
    assert res2.plan.first_seq == k + 1 and res2.plan.runs == ("r3",)
    arch2 = verify(res2.file)
    assert arch2.ok and arch2.base.seq == k and arch2.head is not None
    live2 = verify(store_target)
    assert live2.ok and live2.base == arch2.head
    for db, anchors in (
        (store_target, default_anchor_path(store_target)),
        (str(res2.file), Path(f"{res2.file}.anchors")),
    ):
        c = check_anchors(db, anchors, writer_alive=False)
        assert c.ok and not c.of("warn"), (db, c.findings)
    with AuditReader.open(store_target) as r:
        assert [x.run_id for x in r.runs()] == ["r4"]


def test_interleaved_runs_stop_the_cut(store_target: str, here: Path) -> None:
    with AuditStore.open(store_target) as store:
        _run(store, "r0", 10, 50)
        store.start_run({"name": "a"}, run_id="a", ts_ms=100 * S)
        store.start_run({"name": "b"}, run_id="b", ts_ms=110 * S)  # b runs alongside a
        store.end_run("a", {}, ts_ms=200 * S)
        store.end_run("b", {}, ts_ms=9_000 * S)  # ... and ends after the date
    p = plan(store_target, 1_000 * S)
    assert p.runs == ("r0",) and p.last_seq == 9
    assert p.stopped is not None
    assert "run b ended at" in p.stopped and "interleaves with run(s) a" in p.stopped
    res = archive(store_target, 1_000 * S, vacuum=False)
    assert res.plan.last_seq == 9
    with pytest.raises(AuditError, match=r"nothing to archive.*interleaves"):
        archive(store_target, 1_000 * S)
    assert verify(store_target).ok


def test_unfinished_run_and_bad_input_are_refused(tmp_path: Path) -> None:
    db = str(tmp_path / "a.db")
    with AuditStore.open(db) as store:
        _run(store, "open", 10, None)
    with pytest.raises(AuditError, match=r"nothing to archive.*has not ended"):
        archive(db, 10**12)
    with pytest.raises(AuditError, match=r"--before: expected a date"):
        parse_before("yesterday")
    assert parse_before("1970-01-02") == 86_400 * S
    out = _cli("audit", "archive", "--db", db, "--before", "2999-01-01")
    assert out.exit_code == 2 and "has not ended" in out.output and "Traceback" not in out.output
    with AuditStore.open(db) as store:  # a session writing the store: no cut under it
        store.heartbeat("s1", "open", started=time.time())
        with pytest.raises(AuditError, match="a session is writing it"):
            archive(db, 10**12)


def _old_format_copy(src: str, dst: str) -> None:
    """``dst``: the store ``src`` as schema 1 wrote it (market_events without payload_z, the
    payload as text), built with plain SQL."""
    s = sqlite3.connect(src)
    d = sqlite3.connect(dst, isolation_level=None)
    for (sql,) in s.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall():
        d.execute(re.sub(r'\s*"payload_z" BLOB,', "", sql))
    cols = [r[1] for r in d.execute("PRAGMA table_info(market_events)")]
    assert "payload_z" not in cols, cols
    for t in [r[0] for r in s.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]:
        if t == "market_events":
            for row in s.execute(
                "SELECT seq, run_id, market, ts_ms, kind, exch_seq, payload, payload_z, "
                "prev_hash, hash FROM market_events"
            ):
                text = row[6] if row[7] is None else decompress_text(row[7])
                d.execute(
                    "INSERT INTO market_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*row[:6], text, *row[8:]),
                )
        else:
            rows = s.execute(f"SELECT * FROM {t}").fetchall()
            if rows:
                d.executemany(f"INSERT INTO {t} VALUES ({', '.join('?' * len(rows[0]))})", rows)
    d.execute("PRAGMA application_id = 1667653985")
    d.execute("PRAGMA user_version = 1")
    s.close()
    d.close()


def test_old_format_store_verifies_reads_and_archives(tmp_path: Path) -> None:
    new = str(tmp_path / "new.db")
    with AuditStore.open(new) as store:
        _run(store, "r1", 10, 20)
    old = str(tmp_path / "old.db")
    _old_format_copy(new, old)
    # the same hashes under the text rule: the compressed rows hash as their text
    assert verify(old).ok and verify(old).head == verify(new).head
    with AuditReader.open(old) as r_old, AuditReader.open(new) as r_new:
        assert list(r_old.rows("market_events")) == list(r_new.rows("market_events"))
    # archived as it is (never opened by a writer): the text rows are compressed on the way
    untouched = str(tmp_path / "untouched.db")
    _old_format_copy(new, untouched)
    res0 = archive(untouched, 25 * S, vacuum=False)
    a = sqlite3.connect(res0.file)
    packed = a.execute("SELECT count(payload), count(payload_z) FROM market_events").fetchone()
    a.close()
    assert packed == (0, 6) and verify(res0.file).head == verify(new).head
    # a newer writer adds the column and compresses from then on: a mixed store
    with AuditStore.open(old) as store:
        _run(store, "r2", 30, 40)
    c = sqlite3.connect(old)
    kinds = c.execute("SELECT count(payload), count(payload_z) FROM market_events").fetchone()
    assert kinds == (6, 6) and c.execute("PRAGMA user_version").fetchone()[0] == 2
    c.close()
    assert verify(old).ok
    # archiving compresses the old rows on the way; their hashes do not change
    res = archive(old, 25 * S)
    a = sqlite3.connect(res.file)
    assert a.execute("SELECT count(payload), count(payload_z) FROM market_events").fetchone() == (
        0,
        6,
    )
    a.close()
    assert verify(res.file).ok and verify(res.file).head == verify(new).head


def test_tampered_archive_is_caught(tmp_path: Path) -> None:
    db = str(tmp_path / "a.db")
    key = tmp_path / "k.key"
    with AuditStore.open(db, anchors=_anchor_log(db, key)) as store:
        _run(store, "r1", 10, 20)
        _run(store, "r2", 30, 40)
    res = archive(db, 25 * S, key_path=key)
    c = sqlite3.connect(res.file, isolation_level=None)
    c.execute("DROP TRIGGER orders_no_update")
    c.execute("UPDATE orders SET price = 1 WHERE price = 4900")
    c.close()
    bad = verify(res.file)
    assert not bad.ok and bad.table == "orders", bad
    out = _cli("audit", "verify", "--db", str(res.file))
    assert out.exit_code == 1 and "BROKEN" in out.output and "TRIGGERS MISSING" in out.output
    # the live store still verifies, and its anchors of the archived rows are checked against
    # the archive: a rewritten archive (hashes recomputed) would not match them
    assert verify(db).ok
    os.unlink(res.file)  # archive gone: the anchors of archived rows are accepted, with a note
    check = check_anchors(db, default_anchor_path(db), writer_alive=False)
    assert check.ok and any("not checked" in f.message for f in check.findings), check.findings


def test_deleting_rows_without_a_cut_record_is_still_a_gap(tmp_path: Path) -> None:
    db = str(tmp_path / "a.db")
    with AuditStore.open(db) as store:
        _run(store, "r1", 10, 20)
        _run(store, "r2", 30, 40)
    c = sqlite3.connect(db, isolation_level=None)
    for t in ("runs", "market_events", "orders"):
        c.execute(f"DROP TRIGGER {t}_no_delete")
        c.execute(f"DELETE FROM {t} WHERE seq <= 9")
    c.close()
    res = verify(db)
    assert not res.ok and res.first_bad_seq == 1 and "missing" in res.reason


def test_forged_cut_hash_is_caught(tmp_path: Path) -> None:
    db = str(tmp_path / "a.db")
    with AuditStore.open(db) as store:
        _run(store, "r1", 10, 20)
        _run(store, "r2", 30, 40)
    archive(db, 25 * S)
    c = sqlite3.connect(db, isolation_level=None)
    c.execute("DROP TRIGGER runs_no_update")
    payload = json.loads(c.execute("SELECT payload FROM runs WHERE kind = 'archive'").fetchone()[0])
    payload["head_hash"] = "f" * 64
    c.execute("UPDATE runs SET payload = ? WHERE kind = 'archive'", (json.dumps(payload),))
    c.close()
    res = verify(db)
    assert not res.ok and res.first_bad_seq == 10 and "archived seq 9" in res.reason


def test_rows_deleted_with_a_forged_cut_record_fail_the_anchors(tmp_path: Path) -> None:
    """Without the signing key, a forged cut (rows 1..K deleted, a well-chained archive record
    appended) passes the unkeyed chain but not the anchors: the record is unanchored."""
    from cfa.audit.archive import _append_record
    from cfa.audit.schema import chained_tables
    from cfa.audit.sink import read_head

    db = str(tmp_path / "a.db")
    key = tmp_path / "k.key"
    with AuditStore.open(db, anchors=_anchor_log(db, key)) as store:
        _run(store, "r1", 10, 20)
        _run(store, "r2", 30, 40)
    c = sqlite3.connect(db, isolation_level=None)
    (k_hash,) = c.execute("SELECT hash FROM runs WHERE seq = 9").fetchone()
    for t in chained_tables(c):
        c.execute(f"DROP TRIGGER IF EXISTS {t}_no_delete")
        c.execute(f"DELETE FROM {t} WHERE seq <= 9")
    record = {
        "first_seq": 1,
        "last_seq": 9,
        "head_hash": k_hash,
        "file": "nowhere.db",
        "sha256": "0" * 64,
        "rows": 9,
    }
    _append_record(c, chained_tables(c), read_head(c), ("archive-forged", record))
    c.close()
    assert verify(db).ok  # the chain alone cannot tell
    check = check_anchors(db, default_anchor_path(db), writer_alive=False)
    assert not check.ok and any(f.kind == "unanchored_tail" for f in check.findings), check


def test_parallel_fast_path_after_a_cut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path split into units over worker processes starts at the cut as well."""
    from cfa.audit import chain as chain_mod

    db = str(tmp_path / "a.db")
    with AuditStore.open(db) as store:
        for i in range(4):
            _run(store, f"r{i}", 100 * i + 10, 100 * i + 20, n=30)
    archive(db, 250 * S, vacuum=False)
    monkeypatch.setattr(chain_mod, "_PARALLEL_MIN_ROWS", 0)
    res = verify(db, workers=2)
    assert res.ok and res.base.seq == 3 * 33 and res.rows == 33 + 1, res
    c = sqlite3.connect(db, isolation_level=None)
    c.execute("DROP TRIGGER market_events_no_delete")
    c.execute("DELETE FROM market_events WHERE seq = (SELECT max(seq) FROM market_events)")
    c.close()
    bad = verify(db, workers=2)
    assert not bad.ok and bad.first_bad_seq is not None and bad.first_bad_seq > 3 * 33, bad
