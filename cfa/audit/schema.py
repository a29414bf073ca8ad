"""The audit tables: their columns, units and the DDL that creates them (through sqlite-utils).

Every audit table has, in this physical order:

* ``seq`` INTEGER PRIMARY KEY — ONE global sequence over all tables of the file: 1, 2, 3, ...
  with no gaps, continued across flushes, reopenings and writer processes. It is also the
  table's rowid, so reading a table ``ORDER BY seq`` is a plain rowid scan.
* ``run_id`` TEXT — the run the row belongs to (:meth:`AuditStore.start_run`).
* ``market`` TEXT — the market ticker, or ``''`` for portfolio-wide rows.
* ``ts_ms`` INTEGER — UTC epoch milliseconds: when the fact happened by the clock the store was
  given (the simulated clock in a simulation).
* the table's own columns (:data:`TABLES`), then
* ``prev_hash`` and ``hash`` TEXT — the hash chain (see :mod:`cfa.audit.chain`).

Tables are ``STRICT`` (SQLite rejects a value of the wrong type) and append-only: triggers abort
any ``UPDATE`` or ``DELETE`` (``cfa audit verify`` reports missing ones). Corrections are new rows.
The one other table, ``cfa_heartbeat`` (:mod:`cfa.audit.heartbeat`), is session liveness, not
audit data: not chained, updated in place. Units follow :mod:`cfa.core.types`:
prices are INTEGER price units ($0.0001), counts INTEGER count units (0.01 contract), money is
exact decimal dollars as TEXT, parameter values are REAL.

Schema evolution: a newer version may add tables, and may add *nullable* columns at the end of a
table (``ALTER TABLE ... ADD COLUMN``); old rows then hold NULL there, which the chain ignores,
so they still verify. Columns are never dropped, renamed or reordered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from cfa.audit import heartbeat, postgres
from cfa.audit.encoding import ColType
from cfa.audit.errors import AuditError, AuditIntegrityError

SCHEMA_VERSION: Final = 2
"""``PRAGMA user_version`` of a cfa audit store written by this code. 2: compressed
``market_events.payload_z`` (older code would misread those rows as edited, so it refuses a
version-2 file) and the ``archive`` kind of ``runs``."""
APPLICATION_ID: Final = 0x63666161
"""``PRAGMA application_id`` marking a SQLite file as a cfa audit store (ASCII ``cfaa``)."""

CHAIN_COLUMNS: Final = ("seq", "prev_hash", "hash")
"""Columns that are not part of a row's hashed content (``prev_hash`` is hashed separately)."""


@dataclass(frozen=True, slots=True)
class Column:
    """One content column. ``required`` columns are NOT NULL; ``choices`` limits text values."""

    name: str
    type: ColType
    required: bool = False
    choices: frozenset[str] | None = None
    doc: str = ""
    packs: str | None = None
    """For a ``zjson`` column: the ``json`` column whose canonical text it stores compressed
    (:mod:`cfa.audit.compact`); the chain hashes the row as if the text were in that column."""


@dataclass(frozen=True, slots=True)
class TableSpec:
    """An audit table: its content columns in physical order (common columns first)."""

    name: str
    columns: tuple[Column, ...]
    doc: str
    indexed: bool = True
    """Whether to index ``(run_id, market)``; the high-volume ``market_events`` is not indexed
    (reads by run use the run's seq range instead, see :mod:`cfa.audit.queries`)."""

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


def _c(
    name: str,
    type_: ColType,
    required: bool = False,
    choices: tuple[str, ...] | None = None,
    doc: str = "",
    packs: str | None = None,
) -> Column:
    return Column(name, type_, required, frozenset(choices) if choices else None, doc, packs)


_T, _I, _R, _M, _B, _J = (
    ColType.TEXT,
    ColType.INT,
    ColType.REAL,
    ColType.MONEY,
    ColType.BOOL,
    ColType.JSON,
)

COMMON_COLUMNS: Final = (
    _c("run_id", _T, True, doc="run identifier"),
    _c("market", _T, True, doc="market ticker, '' for portfolio-wide rows"),
    _c("ts_ms", _I, True, doc="UTC epoch milliseconds"),
)

RUN_KINDS: Final = ("start", "end", "note", "archive")
"""``runs.kind``: run boundaries, operator notes, and ``archive``: the record of a retention
cut (:mod:`cfa.audit.archive`; payload: the archived seq range, the hash at its end, the
archive file and its SHA-256)."""
ORDER_ACTIONS: Final = (
    "place",
    "amend",
    "cancel",
    "cancel_all",
    "cancel_failed",
    "deny",
    "reject",
    "update",
)
"""``orders.action``: what cfa did (place/amend/cancel/cancel_all), what stopped or failed it
(reject by the exchange, deny by the risk gate, cancel_failed) and what the exchange reported
(update)."""
DECISION_OUTCOMES: Final = (
    "applied",
    "rejected",
    "abstain",
    "keep",
    "escalate",
    "pending_approval",
    "approved",
    "denied",
    "no_action",
)


def _table(name: str, doc: str, *cols: Column, indexed: bool = True) -> TableSpec:
    return TableSpec(name, COMMON_COLUMNS + cols, doc, indexed)


TABLES: Final[dict[str, TableSpec]] = {
    t.name: t
    for t in (
        _table(
            "runs",
            "Run boundaries: a 'start' row (payload: the run's config, secrets redacted), an "
            "'end' row (payload: the summary), 'note' rows (operator annotations).",
            _c("kind", _T, True, RUN_KINDS),
            _c("payload", _J),
        ),
        _table(
            "market_events",
            "Everything the loop consumed from the exchange: book snapshots and deltas, trades, "
            "ticker updates, status changes, settlements. exch_seq is the exchange's sequence "
            "number where it has one; payload the event in cfa's units (new rows: NULL, the "
            "text compressed in payload_z instead).",
            _c("kind", _T, True, doc="snapshot/delta/trade/ticker/status/settlement/..."),
            _c("exch_seq", _I),
            _c("payload", _J),
            _c(
                "payload_z",
                ColType.ZJSON,
                doc="payload's canonical JSON text, compressed (cfa.audit.compact)",
                packs="payload",
            ),
            indexed=False,
        ),
        _table(
            "orders",
            "Order actions cfa took and order states the exchange reported. price in price "
            "units on the YES leg, count in count units.",
            _c("client_order_id", _T),
            _c("order_id", _T),
            _c("side", _T, doc="bid/ask on the YES leg"),
            _c("price", _I),
            _c("count", _I),
            _c("action", _T, True, ORDER_ACTIONS),
            _c("status", _T),
            _c("reason", _T),
            _c("payload", _J),
        ),
        _table(
            "fills",
            "Executions of our orders. price in price units, count and post_position in count "
            "units, fee in dollars.",
            _c("fill_id", _T, True),
            _c("order_id", _T),
            _c("client_order_id", _T),
            _c("side", _T, True),
            _c("price", _I, True),
            _c("count", _I, True),
            _c("fee", _M, True),
            _c("is_taker", _B, True),
            _c("post_position", _I),
            _c("payload", _J),
        ),
        _table(
            "param_changes",
            "Every change of a quoting parameter (γ, σ, ...): old and new value, who changed it "
            "(source: agent/governance/override_expiry/policy/init) and why.",
            _c("param", _T, True),
            _c("old", _R),
            _c("new", _R, True),
            _c("source", _T, True),
            _c("reason", _T),
            _c("decision_id", _T),
            _c("payload", _J),
        ),
        _table(
            "decisions",
            "One row per agent decision, including keep and abstain: payload holds the context "
            "summary, rationale, tool calls, validation verdict and parameters before/after.",
            _c("decision_id", _T),
            _c("agent", _T, True),
            _c("reasoner", _T, True),
            _c("outcome", _T, True, DECISION_OUTCOMES),
            _c("payload", _J),
        ),
        _table(
            "risk_events",
            "Risk gate denials, breaker trips and trading-state changes (state: ACTIVE/"
            "REDUCE_ONLY/HALTED).",
            _c("kind", _T, True),
            _c("code", _T),
            _c("state", _T),
            _c("detail", _J),
        ),
        _table(
            "governance_actions",
            "freeze/unfreeze/override/halt/resume/reduce_only by a person or the governance "
            "agent (actor). value is the override value, ttl_s its lifetime in seconds.",
            _c("action", _T, True),
            _c("actor", _T, True),
            _c("param", _T),
            _c("value", _R),
            _c("ttl_s", _R),
            _c("reason", _T),
            _c("payload", _J),
        ),
        _table(
            "tool_calls",
            "Typed tool calls made by reasoners, with arguments, status (ok/rejected/error) "
            "and result (or the validation error returned to the reasoner).",
            _c("decision_id", _T),
            _c("agent", _T),
            _c("tool", _T, True),
            _c("arguments", _J),
            _c("status", _T),
            _c("result", _J),
        ),
    )
}
"""Every audit table by name."""

_SQL_TYPE: Final = {
    ColType.INT: "INTEGER",
    ColType.REAL: "REAL",
    ColType.TEXT: "TEXT",
    ColType.MONEY: "TEXT",
    ColType.BOOL: "INTEGER",
    ColType.JSON: "TEXT",
    ColType.ZJSON: "BLOB",
}
_PY_TYPE: Final = {
    ColType.INT: int,
    ColType.REAL: float,
    ColType.TEXT: str,
    ColType.MONEY: str,
    ColType.BOOL: int,
    ColType.JSON: str,
    ColType.ZJSON: bytes,
}


def quote_ident(name: str) -> str:
    """SQL identifier quoting."""
    return '"' + name.replace('"', '""') + '"'


def trigger_ddl(table: str, op: str) -> str:
    """The SQLite append-only trigger of ``table`` for ``op`` (``UPDATE`` or ``DELETE``)."""
    return (
        f"CREATE TRIGGER IF NOT EXISTS {quote_ident(f'{table}_no_{op.lower()}')} "
        f"BEFORE {op} ON {quote_ident(table)} "
        "BEGIN SELECT RAISE(ABORT, 'cfa audit tables are append-only'); END"
    )


def chained_tables(conn: Any) -> dict[str, tuple[str, ...]]:
    """Every table of the file that carries the chain columns, with its content columns.

    Content columns are in physical order, without ``seq``, ``prev_hash`` and ``hash``. This
    reads the file, not :data:`TABLES`, so it also finds tables written by newer code.
    ``conn`` is a ``sqlite3.Connection`` or a :class:`~cfa.audit.postgres.PgConnection`.
    """
    if postgres.is_pg(conn):
        return postgres.chained_tables(conn)
    out: dict[str, tuple[str, ...]] = {}
    names = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " ORDER BY name"
        )
    ]
    for name in names:
        cols = [r[1] for r in conn.execute(f"PRAGMA table_info({quote_ident(name)})")]
        if all(c in cols for c in CHAIN_COLUMNS):
            out[name] = tuple(c for c in cols if c not in CHAIN_COLUMNS)
    return out


def ensure_schema(conn: Any, path: str) -> None:
    """Create the missing tables, columns, indexes and append-only triggers; mark the file.

    Raises :class:`AuditIntegrityError` for a SQLite file that is some other application's, or
    a cfa audit store written by a newer schema version. On PostgreSQL:
    :func:`cfa.audit.postgres.ensure_schema`.
    """
    if postgres.is_pg(conn):
        postgres.ensure_schema(conn, path)
        return
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    existing = {
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    }
    foreign = existing - set(TABLES) - {heartbeat.TABLE}
    if app_id not in (0, APPLICATION_ID) or (app_id == 0 and foreign):
        raise AuditIntegrityError(f"{path} is a SQLite file but not a cfa audit store")
    if version > SCHEMA_VERSION:
        raise AuditIntegrityError(
            f"{path} was written by a newer cfa (schema {version} > {SCHEMA_VERSION})"
        )
    for spec in TABLES.values():
        if spec.name not in existing:
            # Only a new store pays for sqlite_utils (the kill switch opens an existing one).
            from cfa._imports import sqlite_utils  # lazy, and without pandas (~0.5 s)

            db = sqlite_utils.Database(conn, execute_plugins=False)
            columns: dict[str, type] = {"seq": int}
            columns.update({c.name: _PY_TYPE[c.type] for c in spec.columns})
            columns.update({"prev_hash": str, "hash": str})
            not_null = {c.name for c in spec.columns if c.required} | {"prev_hash", "hash"}
            db.table(spec.name).create(columns, pk="seq", not_null=not_null, strict=True)
        else:
            have = {r[1] for r in conn.execute(f"PRAGMA table_info({quote_ident(spec.name)})")}
            if not all(c in have for c in CHAIN_COLUMNS):
                raise AuditIntegrityError(f"{path}: table {spec.name} lacks the chain columns")
            for c in spec.columns:
                if c.name not in have:  # added by a newer schema: nullable, at the end
                    conn.execute(
                        f"ALTER TABLE {quote_ident(spec.name)} ADD COLUMN "
                        f"{quote_ident(c.name)} {_SQL_TYPE[c.type]}"
                    )
        if spec.indexed:
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS {quote_ident(f'ix_{spec.name}_run_market')} "
                f"ON {quote_ident(spec.name)} (run_id, market)"
            )
        for op in ("UPDATE", "DELETE"):
            conn.execute(trigger_ddl(spec.name, op))
    conn.execute(heartbeat.DDL)
    if app_id != APPLICATION_ID:
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    if version != SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def check_table(table: str) -> TableSpec:
    """The spec of ``table``; :class:`AuditError` naming the known tables otherwise."""
    try:
        return TABLES[table]
    except KeyError:
        raise AuditError(
            f"unknown audit table {table!r}; known: {', '.join(sorted(TABLES))}"
        ) from None
