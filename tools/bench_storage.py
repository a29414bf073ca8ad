"""Bytes per market-hour of the audit store, text payloads vs compressed, SQLite and PostgreSQL.

    .venv/bin/python tools/bench_storage.py [--duration 1h] [--pg URL] [--codecs] [--keep DIR]

For each workload — one ``calm`` market, and ``cfa run``'s default mix (3 markets: calm,
regime-shift, informed-flow) — this runs ``cfa run -q ... --duration D --no-anchors`` into a
fresh SQLite file (as written: ``market_events`` compressed), then measures:

* **SQLite**: the file's size after ``PRAGMA wal_checkpoint(TRUNCATE)`` as written, and of two
  ``VACUUM``-ed copies: the same rows compressed, and the same rows with every payload as text
  (``payload_z`` decompressed into ``payload``: what the store held before compaction; the copy
  is verified, so the hashes are unchanged);
* **PostgreSQL** (``--pg``, default ``postgresql://127.0.0.1:5432/test``; skipped when no
  server answers): both variants loaded into fresh schemas with ``COPY``, then
  ``pg_total_relation_size`` summed over the schema's tables (heap, TOAST, indexes) after
  ``VACUUM ANALYZE``. (PostgreSQL's TOAST already compresses text values over ~2 kB with pglz,
  so its "text" baseline is smaller than SQLite's.)

``--codecs`` also compresses every market-events payload of the one-market run with zlib and
zstd at several levels (ratio and CPU µs per row, best of 3). Prints one table; reads nothing
outside this repository and the temporary directory.
"""

from __future__ import annotations

import argparse
import functools
import os
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cfa.audit import AuditStore, verify  # noqa: E402
from cfa.audit.compact import decompress_text  # noqa: E402
from cfa.audit.postgres import with_schema  # noqa: E402
from cfa.audit.schema import TABLES, trigger_ddl  # noqa: E402

WORKLOADS: dict[str, tuple[list[str], int]] = {
    "1 market, calm": (["-n", "1", "-s", "calm"], 1),
    "default mix (3 markets)": ([], 3),
}


def _hours(duration: str) -> float:
    from cfa.cli.options import duration_seconds

    return duration_seconds(duration) / 3600.0


def run_cfa(db: Path, args: list[str], duration: str) -> float:
    """Run the simulator into ``db``; returns wall seconds."""
    exe = Path(sys.executable).with_name("cfa")
    cmd = [str(exe), "run", "-q", *args, "--duration", duration, "--db", str(db), "--no-anchors"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=db.parent)
    return time.perf_counter() - t0


def checkpointed_size(db: Path) -> int:
    c = sqlite3.connect(db, isolation_level=None)
    try:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        c.close()
    return db.stat().st_size


def vacuumed_copy(src: Path, dst: Path, *, as_text: bool) -> int:
    """A VACUUM-ed copy of ``src`` (payloads as text when ``as_text``); returns its size."""
    s = sqlite3.connect(src)
    d = sqlite3.connect(dst, isolation_level=None)
    s.backup(d)
    s.close()
    if as_text:
        d.create_function("unz", 1, lambda b: None if b is None else decompress_text(b))
        d.execute("DROP TRIGGER market_events_no_update")
        d.execute(
            "UPDATE market_events SET payload = unz(payload_z), payload_z = NULL "
            "WHERE payload_z IS NOT NULL"
        )
        d.execute(trigger_ddl("market_events", "UPDATE"))
    d.execute("PRAGMA journal_mode = DELETE")
    d.execute("VACUUM")
    d.close()
    res = verify(dst)
    if not res.ok:
        raise SystemExit(f"{dst}: the copy does not verify: {res.reason}")
    return dst.stat().st_size


def market_events_bytes(db: Path) -> tuple[int, int]:
    """(rows, stored payload bytes) of market_events."""
    c = sqlite3.connect(db)
    try:
        n, b = c.execute(
            "SELECT count(*), coalesce(sum(length(payload_z)), 0) + "
            "coalesce(sum(length(CAST(payload AS BLOB))), 0) FROM market_events"
        ).fetchone()
    finally:
        c.close()
    return int(n), int(b)


def pg_available(url: str) -> str | None:
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=2):
            return None
    except Exception as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def pg_size_of(url: str, src: Path) -> int:
    """Load every audit row of the SQLite store ``src`` into a fresh schema; its total size."""
    import psycopg

    schema = f"cfa_bench_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            AuditStore.open(with_schema(url, schema)).close()
            s = sqlite3.connect(src)
            try:
                with admin.transaction():
                    admin.execute(f"SET LOCAL search_path = {schema}")
                    for t in TABLES:
                        cols = [r[1] for r in s.execute(f"PRAGMA table_info({t})")]
                        names = ", ".join(f'"{c}"' for c in cols)
                        with admin.cursor().copy(f"COPY {t} ({names}) FROM STDIN") as cp:
                            for row in s.execute(f"SELECT {names} FROM {t} ORDER BY seq"):
                                cp.write_row(row)
            finally:
                s.close()
            for t in TABLES:
                admin.execute(f"VACUUM ANALYZE {schema}.{t}")
            row = admin.execute(
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
                [schema],
            ).fetchone()
            return int(row[0] or 0) if row else 0
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def codecs(db: Path) -> list[tuple[str, float, float]]:
    """(codec, ratio, µs per row) over the market-events payload texts of ``db``."""
    import zstandard

    c = sqlite3.connect(db)
    texts = [
        (decompress_text(z) if z is not None else p).encode()
        for p, z in c.execute("SELECT payload, payload_z FROM market_events")
    ]
    c.close()
    raw = sum(map(len, texts))
    out = []
    cands: list[tuple[str, Any]] = [
        (f"zlib {lv}", functools.partial(zlib.compress, level=lv)) for lv in (1, 6, 9)
    ]
    for lv in (1, 3, 6):
        zc = zstandard.ZstdCompressor(level=lv)
        cands.append((f"zstd {lv}", zc.compress))
    for name, fn in cands:
        best = float("inf")
        size = 0
        for _ in range(3):
            t0 = time.process_time()
            size = sum(len(fn(b)) for b in texts)
            best = min(best, time.process_time() - t0)
        out.append((name, raw / size, best / len(texts) * 1e6))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", default="1h")
    ap.add_argument(
        "--pg", default=os.environ.get("CFA_TEST_PG_URL", "postgresql://127.0.0.1:5432/test")
    )
    ap.add_argument("--codecs", action="store_true")
    ap.add_argument("--keep", type=Path, default=None, help="keep the stores in this directory")
    a = ap.parse_args()
    hours = _hours(a.duration)
    pg_reason = pg_available(a.pg)
    work = a.keep or Path(tempfile.mkdtemp(prefix="cfa-bench-storage-"))
    work.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, str, int, float]] = []
    first_db: Path | None = None
    for label, (args, markets) in WORKLOADS.items():
        tag = "m1" if markets == 1 else "mix"
        db = work / f"{tag}.db"
        for p in work.glob(f"{tag}*.db*"):
            p.unlink()
        secs = run_cfa(db, args, a.duration)
        first_db = first_db or db
        mh = markets * hours
        n, payload = market_events_bytes(db)
        print(
            f"# {label}: {a.duration} in {secs:.1f} s wall; market_events {n:,} rows, "
            f"{payload / n:,.0f} B stored payload per row",
            flush=True,
        )
        rows.append((label, "sqlite", "compressed, as written", checkpointed_size(db), mh))
        z = vacuumed_copy(db, work / f"{tag}-z.db", as_text=False)
        t = vacuumed_copy(db, work / f"{tag}-text.db", as_text=True)
        rows.append((label, "sqlite", "compressed, vacuumed", z, mh))
        rows.append((label, "sqlite", "text (before), vacuumed", t, mh))
        if pg_reason is None:
            rows.append(
                (label, "postgresql", "compressed", pg_size_of(a.pg, work / f"{tag}-z.db"), mh)
            )
            rows.append(
                (
                    label,
                    "postgresql",
                    "text (before)",
                    pg_size_of(a.pg, work / f"{tag}-text.db"),
                    mh,
                )
            )
    print()
    print(f"{'workload':<26} {'backend':<11} {'payloads':<26} {'bytes':>13} {'MB/market-h':>12}")
    for label, backend, variant, size, mh in rows:
        print(f"{label:<26} {backend:<11} {variant:<26} {size:>13,} {size / mh / 1e6:>12.2f}")
    if pg_reason is not None:
        print(f"(PostgreSQL skipped: {pg_reason})")
    if a.codecs and first_db is not None:
        print()
        print(f"{'codec':<8} {'ratio':>6} {'CPU µs/row':>11}   (market_events payloads, 1 market)")
        for name, ratio, us in codecs(first_db):
            print(f"{name:<8} {ratio:>6.2f} {us:>11.1f}")
    if a.keep is None:
        for p in work.iterdir():
            p.unlink()
        work.rmdir()


if __name__ == "__main__":
    main()
