"""Audit store benchmark: write throughput and chain verification time.

Run ``python -m cfa.audit.bench [--rows N] [--path FILE|URL] [--workers W] [--processes P]``.
It appends ``N`` ``market_events`` rows shaped like the loop's book deltas (through
:meth:`AuditStore.append`, with automatic flushes of 2,000 rows, exactly as the runtime writes),
then verifies the store. ``--path postgresql://...`` measures the PostgreSQL backend, in a fresh
schema of that database (dropped afterwards). ``--processes P`` splits the rows over ``P`` writer
processes appending to the one store at once (as the actors of a Ray run do).
Prints wall and CPU figures; :func:`run` returns them for ``tools/bench.py``.
``--recorder DB`` instead times the audit share of the fast path (:func:`recorder_path`).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from cfa.audit import postgres
from cfa.audit.chain import verify
from cfa.audit.store import AuditStore


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        p = Path(f"{path}{suffix}")
        if p.exists():
            p.unlink()


def _writer_cpu_seconds(store: AuditStore) -> float | None:
    """CPU seconds used so far by the store's writer process (Linux /proc), or None."""
    proc = store._proc
    if proc is None:
        return None
    try:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def fresh_schema(url: str, prefix: str = "cfa_bench") -> tuple[str, str]:
    """A fresh schema in the PostgreSQL database of ``url``: ``(schema, url of a store in it)``;
    :func:`drop_schema` removes it."""
    import secrets

    import psycopg

    schema = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    return schema, postgres.with_schema(url, schema)


def _pg_bytes(url: str, schema: str) -> int:
    import psycopg

    with psycopg.connect(url) as c:
        row = c.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s "
            "AND c.relkind = 'r'",
            [schema],
        ).fetchone()
    return int(row[0]) if row else 0


def drop_schema(url: str, schema: str) -> None:
    """Drop ``schema`` (and the store in it) from the database of ``url``."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _append_rows(store: AuditStore, lo: int, hi: int) -> None:
    append = store.append
    ts = 1_700_000_000_000
    for i in range(lo, hi):
        append(
            "market_events",
            {
                "market": "KXBTCD-25DEC3117-T101999.99",
                "ts_ms": ts + i,
                "kind": "delta",
                "exch_seq": i,
                "payload": {
                    "ts": 1_700_000_000.0 + i / 1000,
                    "outcome": "yes",
                    "price": 5600 + i % 40,
                    "delta": -300 + i % 7,
                },
            },
        )


def _writer_job(target: str, lo: int, hi: int, writer: str) -> float:
    """One of ``--processes``: append rows ``lo..hi`` and sync; returns its CPU seconds."""
    c0 = time.process_time()
    with AuditStore.open(target, writer="process" if writer == "process" else "inline") as st:
        st.start_run({"bench": hi - lo})
        _append_rows(st, lo, hi)
        st.sync()
    return time.process_time() - c0


def run(
    rows: int = 1_000_000,
    path: Path | str | None = None,
    workers: int | None = None,
    writer: str = "inline",
    processes: int = 1,
) -> dict[str, Any]:
    """Write ``rows`` market events to a fresh store (a SQLite file, or a fresh schema of the
    PostgreSQL database at a ``postgresql://`` ``path``), verify it; return the measurements."""
    tmp = None
    schema: str | None = None
    base = str(path) if path is not None else ""
    if postgres.is_url(base):
        schema, target = fresh_schema(base)
    else:
        if path is None:
            tmp = tempfile.TemporaryDirectory()
            path = Path(tmp.name) / "bench.db"
        _remove(Path(path))
        target = str(path)
    try:
        AuditStore.open(target).close()  # the schema exists before any timed write
        child_cpu: float | None
        t0, c0 = time.perf_counter(), time.process_time()
        if processes > 1:
            from concurrent.futures import ProcessPoolExecutor
            from multiprocessing import get_context

            step = -(-rows // processes)
            spans = [(i, min(i + step, rows)) for i in range(0, rows, step)]
            with ProcessPoolExecutor(len(spans), mp_context=get_context("spawn")) as pool:
                cpus = list(
                    pool.map(
                        _writer_job,
                        [target] * len(spans),
                        [a for a, _ in spans],
                        [b for _, b in spans],
                        [writer] * len(spans),
                    )
                )
            t1, c1 = time.perf_counter(), c0 + sum(cpus)
            child_cpu = None
            t2 = t1
        else:
            store = AuditStore.open(target, writer="process" if writer == "process" else "inline")
            store.start_run({"bench": rows})
            _append_rows(store, 0, rows)
            store.sync()
            t1, c1 = time.perf_counter(), time.process_time()
            child_cpu = _writer_cpu_seconds(store)
            store.close()
            t2 = time.perf_counter()
        if schema is not None:
            size = _pg_bytes(base, schema)
        else:
            size = sum(
                Path(f"{target}{s}").stat().st_size
                for s in ("", "-wal")
                if Path(f"{target}{s}").exists()
            )
        result = verify(target, workers=workers)
        t3 = time.perf_counter()
        if not result.ok:
            raise RuntimeError(f"benchmark store does not verify: {result.reason}")
        return {
            "rows": rows,
            "backend": "postgresql" if schema is not None else "sqlite",
            "processes": processes,
            "writer": writer,
            "write_seconds": t1 - t0,
            "write_rows_per_s": rows / (t1 - t0),
            "write_cpu_us_per_row": (c1 - c0) / rows * 1e6,
            "writer_process_cpu_us_per_row": (
                child_cpu / rows * 1e6 if child_cpu is not None else None
            ),
            "close_seconds": t2 - t1,
            "file_bytes": size,
            "verify_seconds": t3 - t2,
            "verify_rows": result.rows,
            "verify_workers": workers if workers is not None else min(2, os.cpu_count() or 1),
        }
    finally:
        if tmp is not None:
            tmp.cleanup()
        if schema is not None:
            drop_schema(base, schema)


def recorder_path(source: Path, events: int = 100_000, repeat: int = 5) -> dict[str, Any]:
    """CPU µs per event of the audit share of the fast path: the market events recorded in the
    store ``source`` (all runs, in time order, looped to ``events``) through
    :meth:`Recorder.market_event`, the session's every-2,000-events ``close_aged``,
    :meth:`AuditStore.append` and the commits, into a fresh file; best of ``repeat`` runs
    (opening and closing the store included)."""
    from cfa.audit.queries import AuditReader
    from cfa.audit.records import events_from_rows
    from cfa.runtime.recorder import Recorder

    with AuditReader.open(source) as r:
        recorded = list(events_from_rows(r.rows("market_events")))
    if not recorded:
        raise RuntimeError(f"{source} holds no market events")
    recorded.sort(key=lambda e: e.ts)
    evs = (recorded * (events // len(recorded) + 1))[:events]
    best, rows = float("inf"), 0
    with tempfile.TemporaryDirectory() as d:
        for i in range(repeat):
            store = AuditStore.open(Path(d) / f"r{i}.db", checkpoint_interval=None)
            rec = Recorder(store, store.start_run({}))
            me = rec.market_event
            c0 = time.process_time()
            for n, ev in enumerate(evs, 1):
                me(ev)
                if n % 2000 == 0:
                    rec.close_aged(ev.ts)
                    store.maybe_flush()
            rec.flush_events()
            store.flush()
            best = min(best, time.process_time() - c0)
            rows = store.stats.written - 1
            store.close()
    return {"events": len(evs), "rows": rows, "cpu_us_per_event": best / len(evs) * 1e6}


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (``python -m cfa.audit.bench``)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument(
        "--path",
        default=None,
        help="SQLite file to write (default: a temp dir), or a postgresql:// URL (a fresh schema)",
    )
    ap.add_argument("--processes", type=int, default=1, help="writer processes at once")
    ap.add_argument("--workers", type=int, default=None, help="verify processes (default 2)")
    ap.add_argument("--writer", choices=("inline", "process"), default="inline")
    ap.add_argument(
        "--recorder",
        type=Path,
        default=None,
        metavar="DB",
        help="instead: the recorder + store path over the market events recorded in DB",
    )
    args = ap.parse_args(argv)
    if args.recorder is not None:
        rr = recorder_path(args.recorder, args.rows if args.rows != 1_000_000 else 100_000)
        print(
            f"recorder + store: {rr['events']:,} events in {rr['rows']:,} rows, "
            f"{rr['cpu_us_per_event']:.2f} us CPU/event (best of 5)"
        )
        return
    r = run(args.rows, args.path, args.workers, args.writer, args.processes)
    print(
        f"{r['backend']}, {r['processes']} writer process(es) ({r['writer']}): "
        f"{r['rows']:,} market_events rows in {r['write_seconds']:.2f} s = "
        f"{r['write_rows_per_s']:,.0f} rows/s ({r['write_cpu_us_per_row']:.1f} us CPU/row), "
        f"close {r['close_seconds']:.2f} s, file {r['file_bytes'] / 1e6:.0f} MB"
    )
    if r["writer_process_cpu_us_per_row"] is not None:
        print(f"        writer process: {r['writer_process_cpu_us_per_row']:.1f} us CPU/row")
    print(
        f"verify: {r['verify_rows']:,} rows in {r['verify_seconds']:.2f} s "
        f"({r['verify_workers']} workers)"
    )


if __name__ == "__main__":
    main()
