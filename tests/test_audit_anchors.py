"""Signed anchors: what `cfa audit verify --anchors` catches that the bare chain cannot — a
chain rewritten from row k (still self-consistent), a cut tail, a forged appended row — and the
anchor file's own defences (signatures, line links, a pinned key), the append-only triggers,
the key file, and the writer's check at open."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cfa.audit import AuditError, AuditIntegrityError, AuditStore, verify
from cfa.audit.anchors import (
    AnchorLog,
    canonical,
    check_anchors,
    key_id,
    load_or_create_key,
    public_key_of,
    read_anchors,
)
from cfa.audit.chain import RowHasher
from cfa.audit.schema import TABLES, chained_tables
from cfa.cli.audit_cmds import audit_app

runner = CliRunner()
T0 = 1_700_000_000_000


def build(db: Path, key: Path, *, batches: int = 6, per: int = 20, close: bool = True) -> Path:
    """An anchored store: ``batches`` flushes of ``per`` rows, a checkpoint after each."""
    afile = Path(f"{db}.anchors")
    store = AuditStore.open(db, anchors=AnchorLog.open(afile, key, interval=0.0))
    run_id = store.start_run({"test": "anchors"}, ts_ms=T0)
    for b in range(batches):
        for i in range(per):
            n = b * per + i
            if n % 4 == 1:
                store.append(
                    "orders",
                    {
                        "market": "M",
                        "ts_ms": T0 + n,
                        "client_order_id": f"c{n}",
                        "side": "bid",
                        "price": 5000 + n,
                        "count": 100,
                        "action": "place",
                    },
                )
            else:
                store.append(
                    "market_events",
                    {"market": "M", "ts_ms": T0 + n, "kind": "delta", "exch_seq": n},
                )
        store.flush()
    if close:
        store.end_run(run_id, {"n": batches * per})
        store.close()
    else:  # as if SIGKILLed: committed rows, no end or close anchor
        store._anchors = None
        store.close()
    return afile


def drop_triggers(conn: sqlite3.Connection) -> None:
    for t in TABLES:
        conn.execute(f"DROP TRIGGER IF EXISTS {t}_no_update")
        conn.execute(f"DROP TRIGGER IF EXISTS {t}_no_delete")


def restore_triggers(db: Path) -> None:
    """Re-create the triggers, as a careful attacker would after tampering."""
    AuditStore.open(db).close()


def rewrite_from(db: Path, k: int) -> None:
    """Edit row ``k`` and recompute every later hash: a self-consistent forgery."""
    conn = sqlite3.connect(db, isolation_level=None)
    drop_triggers(conn)
    tables = chained_tables(conn)
    where = {s: t for t in tables for (s,) in conn.execute(f"SELECT seq FROM {t}")}
    top = max(where)
    conn.execute(f"UPDATE {where[k]} SET ts_ms = ts_ms + 1 WHERE seq = {k}")
    prev = conn.execute(f"SELECT hash FROM {where[k - 1]} WHERE seq = {k - 1}").fetchone()[0]
    conn.execute("BEGIN")
    for seq in range(k, top + 1):
        t = where[seq]
        names = tables[t]
        values = conn.execute(f"SELECT {', '.join(names)} FROM {t} WHERE seq = ?", (seq,))
        h = RowHasher(t, names).digest(seq, prev, values.fetchone())
        conn.execute(f"UPDATE {t} SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, h, seq))
        prev = h
    conn.execute("COMMIT")
    conn.close()
    restore_triggers(db)


def cut_tail(db: Path, n: int) -> int:
    """Delete the last ``n`` rows; returns the new last seq."""
    conn = sqlite3.connect(db, isolation_level=None)
    drop_triggers(conn)
    tables = chained_tables(conn)
    top = max(conn.execute(f"SELECT max(seq) FROM {t}").fetchone()[0] or 0 for t in tables)
    for t in tables:
        conn.execute(f"DELETE FROM {t} WHERE seq > ?", (top - n,))
    conn.close()
    restore_triggers(db)
    return top - n


def append_forged(db: Path) -> int:
    """Append one correctly chained, forged fill; returns its seq."""
    conn = sqlite3.connect(db, isolation_level=None)
    tables = chained_tables(conn)
    top, prev = max(
        (conn.execute(f"SELECT seq, hash FROM {t} ORDER BY seq DESC LIMIT 1").fetchone() or (0, ""))
        for t in tables
    )
    names = tables["fills"]
    row = {n: None for n in names}
    row.update(
        run_id="forged",
        market="M",
        ts_ms=T0,
        fill_id="f-forged",
        side="bid",
        price=100,
        count=10_000,
        fee="0",
        is_taker=0,
    )
    values = tuple(row[n] for n in names)
    seq = top + 1
    h = RowHasher("fills", names).digest(seq, prev, values)
    cols = ", ".join(("seq", *names, "prev_hash", "hash"))
    marks = ", ".join("?" * (len(names) + 3))
    conn.execute(f"INSERT INTO fills ({cols}) VALUES ({marks})", (seq, *values, prev, h))
    conn.close()
    return seq


def cli(*args: str) -> tuple[int, str]:
    res = runner.invoke(audit_app, ["verify", *args])
    assert "Traceback" not in res.output, res.output
    return res.exit_code, res.output


def cli_json(*args: str) -> dict:
    res = runner.invoke(audit_app, ["verify", *args, "--json"])
    return json.loads(res.output)


@pytest.fixture
def key(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "anchor.key"


@pytest.fixture
def db(tmp_path: Path, key: Path) -> Path:
    path = tmp_path / "a.db"
    build(path, key)
    return path


def test_intact_store_verifies_with_its_anchors(db: Path) -> None:
    code, out = cli("--db", str(db))  # <db>.anchors is found by default
    assert code == 0, out
    assert "ANCHORS OK" in out and "TRIGGERS" not in out
    afile = Path(f"{db}.anchors")
    kinds = [json.loads(x)["kind"] for x in afile.read_text().splitlines()]
    assert kinds[0] == "open" and kinds[-2:] == ["end", "close"]
    assert kinds.count("checkpoint") >= 6
    last = json.loads(afile.read_text().splitlines()[-1])
    head = verify(db).head
    assert head is not None
    assert (last["seq"], last["rows"], last["hash"]) == (head.seq, head.seq, head.hash)
    assert last["run_id"] and last["ts"].endswith("Z") and last["public_key"] and last["sig"]


def test_rewrite_from_row_k_is_caught_only_with_anchors(db: Path) -> None:
    k = 50
    rewrite_from(db, k)
    assert verify(db).ok, "the forgery is self-consistent"
    code, out = cli("--db", str(db), "--no-anchors")
    assert code == 0, out
    code, out = cli("--db", str(db), "--anchors", f"{db}.anchors")
    assert code == 1 and "REWRITTEN" in out, out
    f = next(x for x in cli_json("--db", str(db))["anchors"]["findings"] if x["level"] == "fail")
    assert f["kind"] == "rewritten"
    assert f["first_seq"] <= k <= f["last_seq"], f
    assert f["last_seq"] - f["first_seq"] < 25, "localised to one checkpoint interval"


def test_cut_tail_is_caught(db: Path) -> None:
    top = cut_tail(db, 7)
    assert verify(db).ok
    code, out = cli("--db", str(db))
    assert code == 1 and "CUT" in out and f"rows {top + 1}.." in out, out
    kinds = {f["kind"] for f in cli_json("--db", str(db))["anchors"]["findings"]}
    assert kinds == {"cut_tail"}


def test_forged_appended_row_is_caught(db: Path) -> None:
    seq = append_forged(db)
    assert verify(db).ok, "the forged row is chained correctly"
    code, out = cli("--db", str(db))
    assert code == 1 and "UNANCHORED" in out and f"rows {seq}..{seq}" in out, out
    assert "fills x1" in out
    (f,) = cli_json("--db", str(db))["anchors"]["findings"]
    assert f["kind"] == "unanchored_tail" and f["first_seq"] == seq


def test_dropped_triggers_are_reported(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER orders_no_update")
    conn.close()
    code, out = cli("--db", str(db))
    assert code == 1 and "TRIGGERS MISSING" in out and "orders_no_update" in out, out
    assert cli_json("--db", str(db))["triggers_missing"] == ["orders_no_update"]


def test_edited_anchor_line_fails_its_signature(db: Path) -> None:
    afile = Path(f"{db}.anchors")
    lines = afile.read_text().splitlines()
    obj = json.loads(lines[3])
    obj["seq"] -= 1
    lines[3] = canonical(obj).decode()
    afile.write_text("\n".join(lines) + "\n")
    code, out = cli("--db", str(db))
    assert code == 1 and "line 4: the signature does not match" in out, out


def test_removed_anchor_lines_break_the_line_links(db: Path) -> None:
    afile = Path(f"{db}.anchors")
    lines = afile.read_text().splitlines()
    afile.write_text("\n".join(lines[:2] + lines[4:]) + "\n")
    code, out = cli("--db", str(db))
    assert code == 1 and "line 3: it does not follow line 2" in out, out


def test_anchor_file_resigned_with_another_key_needs_a_pinned_key(
    db: Path, key: Path, tmp_path: Path
) -> None:
    # The attacker rewrites the chain and re-signs a fresh anchor file with their own key.
    rewrite_from(db, 30)
    afile = Path(f"{db}.anchors")
    afile.unlink()
    evil = AnchorLog.open(afile, tmp_path / "evil.key")
    head = verify(db).head
    assert head is not None
    for kind in ("open", "close"):
        evil.append(kind, head, run_id="r", first=None, db=db.name)  # type: ignore[arg-type]
    evil.close()
    code, out = cli("--db", str(db))
    assert code == 0, "without a pinned key the attacker's file is self-consistent: " + out
    pub = public_key_of(load_or_create_key(key))
    code, out = cli("--db", str(db), "--public-key", pub)
    assert code == 1 and "not the pinned key" in out, out
    # The pin can also be a file holding the key (as `cfa audit key` prints it).
    pinned = tmp_path / "anchor.pub"
    pinned.write_text(pub + "\n")
    code, out = cli("--db", str(db), "--public-key", str(pinned))
    assert code == 1 and "not the pinned key" in out


def test_pinned_key_accepts_its_own_anchors(db: Path, key: Path) -> None:
    res = runner.invoke(audit_app, ["key", "--key", str(key)])
    assert res.exit_code == 0
    pub = res.output.splitlines()[0].strip()
    assert pub == public_key_of(load_or_create_key(key))
    code, out = cli("--db", str(db), "--public-key", pub)
    assert code == 0 and "signed by the pinned key" in out, out


def test_deleted_anchor_file_shows(db: Path, key: Path) -> None:
    afile = Path(f"{db}.anchors")
    afile.unlink()
    code, out = cli("--db", str(db), "--anchors", str(afile))
    assert code == 1 and "does not exist (deleted or moved?)" in out, out
    code, out = cli("--db", str(db))
    assert code == 0 and "WARN" in out and "which is missing" in out, out
    assert cli("--db", str(db), "--strict")[0] == 1
    # An anchored writer refuses to carry on as if nothing happened.
    with pytest.raises(AuditIntegrityError, match="missing or empty"):
        AuditStore.open(db, anchors=AnchorLog.open(afile, key))


def test_writer_refuses_a_store_that_no_longer_matches_its_anchors(db: Path, key: Path) -> None:
    rewrite_from(db, 40)
    with pytest.raises(AuditIntegrityError, match="does not match its last signed anchor"):
        AuditStore.open(db, anchors=AnchorLog.open(f"{db}.anchors", key))
    cut_tail(db, 3)
    with pytest.raises(AuditIntegrityError, match="rows cut from the end"):
        AuditStore.open(db, anchors=AnchorLog.open(f"{db}.anchors", key))


def test_killed_writer_leaves_a_warning_not_a_failure(tmp_path: Path, key: Path) -> None:
    db = tmp_path / "k.db"
    build(db, key, close=False)
    # Rows committed after the last checkpoint of the killed writer.
    store = AuditStore.open(db)
    store.start_run({"unanchored": True})
    store.close()
    res = check_anchors(db, f"{db}.anchors", writer_alive=False)
    assert res.ok and [f.kind for f in res.findings] == ["not_closed"], res.findings
    code, out = cli("--db", str(db))
    assert code == 0 and "WARN" in out and "never closed" in out, out
    assert cli("--db", str(db), "--strict")[0] == 1
    running = check_anchors(db, f"{db}.anchors", writer_alive=True)
    assert [f.kind for f in running.findings] == ["running"]


def test_second_anchored_writer_continues_the_file(db: Path, key: Path) -> None:
    store = AuditStore.open(db, anchors=AnchorLog.open(f"{db}.anchors", key, interval=0.0))
    store.start_run({"second": True})
    store.append("market_events", {"market": "M", "kind": "delta"})
    store.flush()
    store.close()
    anchors, problems = read_anchors(f"{db}.anchors")
    assert not problems and len({a.writer for a in anchors}) == 2
    assert cli("--db", str(db))[0] == 0


def test_rows_appended_between_writers_are_unattested(db: Path, key: Path) -> None:
    seq = append_forged(db)
    AuditStore.open(db, anchors=AnchorLog.open(f"{db}.anchors", key)).close()
    code, out = cli("--db", str(db))
    assert code == 1 and "UNANCHORED" in out and f"rows {seq}..{seq}" in out, out


def test_key_file_is_private_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "cfa" / "anchor.key"
    k = load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert public_key_of(load_or_create_key(path)) == public_key_of(k), "created once"
    assert len(base64.b64decode(public_key_of(k))) == 32
    assert len(key_id(public_key_of(k))) == 16
    os.chmod(path, 0o644)
    with pytest.raises(AuditError, match=r"readable by others.*chmod 600"):
        load_or_create_key(path)
    bad = tmp_path / "bad.key"
    bad.write_text("not a key")
    os.chmod(bad, 0o600)
    with pytest.raises(AuditError, match="not an unencrypted PEM"):
        load_or_create_key(bad)


def test_default_key_path_honours_the_environment(tmp_path: Path) -> None:
    code = "from cfa.audit.anchors import default_key_path; print(default_key_path())"
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    env.pop("CFA_ANCHOR_KEY", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == str(tmp_path / "xdg" / "cfa" / "anchor.key")
    env["CFA_ANCHOR_KEY"] = str(tmp_path / "k")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == str(tmp_path / "k")


def test_bad_public_key_is_one_line(db: Path) -> None:
    res = runner.invoke(audit_app, ["verify", "--db", str(db), "--public-key", "nope"])
    assert res.exit_code == 2 and res.output.startswith("error: --public-key")


def test_consistent_cut_of_both_files_shows_only_as_a_run_that_never_closed(db: Path) -> None:
    # Without the key an attacker can still cut the anchor file back to a checkpoint and the
    # database to match: what remains is indistinguishable from a killed run (a warning).
    afile = Path(f"{db}.anchors")
    lines = afile.read_text().splitlines()
    keep = 4
    seq = json.loads(lines[keep - 1])["seq"]
    afile.write_text("\n".join(lines[:keep]) + "\n")
    top = max(json.loads(x)["seq"] for x in lines)
    cut_tail(db, top - seq)
    code, out = cli("--db", str(db))
    assert code == 0 and "WARN" in out and "never closed" in out, out
    assert cli("--db", str(db), "--strict")[0] == 1


def test_process_writer_anchors_what_it_committed(tmp_path: Path, key: Path) -> None:
    db = tmp_path / "p.db"
    log = AnchorLog.open(f"{db}.anchors", key, interval=0.0)
    store = AuditStore.open(db, writer="process", anchors=log)
    run_id = store.start_run({"writer": "process"})
    for i in range(500):
        store.append("market_events", {"market": "M", "kind": "delta", "exch_seq": i})
    store.flush()
    store.end_run(run_id, {})
    store.close()
    assert store.stats.anchors_written >= 3 and store.stats.anchor_error is None
    head = verify(db).head
    last = json.loads(Path(f"{db}.anchors").read_text().splitlines()[-1])
    assert head is not None and (last["kind"], last["seq"], last["hash"]) == (
        "close",
        head.seq,
        head.hash,
    )
    assert cli("--db", str(db))[0] == 0
