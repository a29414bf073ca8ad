"""The PostgreSQL backend of the audit store: connection, schema and append-only protection.

``--db postgresql://user@host:5432/dbname`` (or ``postgres://``) selects it. The tables, columns,
hash chain, anchors and queries are those of the SQLite store (:mod:`cfa.audit.schema`,
:mod:`cfa.audit.chain`); this module holds only what PostgreSQL does differently:

* :class:`PgConnection` wraps a psycopg 3 connection in the small part of the ``sqlite3`` API the
  store uses (``execute`` with ``?`` placeholders, ``COPY``, cursors with ``fetchone`` /
  ``fetchmany`` / iteration, ``in_transaction``, ``close``), so the chain writer, the verifier
  and the readers run one code path on both engines. psycopg errors become
  :class:`~cfa.audit.errors.PostgresError`.
* Tables live in the connection's ``current_schema()`` (set ``options=-csearch_path%3D<schema>``
  in the URL to keep several stores in one database). Types map one to one onto what SQLite
  returns, so the chain hashes the same values: INTEGER → ``BIGINT``, REAL → ``DOUBLE
  PRECISION``, TEXT/money/JSON → ``TEXT`` (payload JSON stays the canonical text, not ``jsonb``,
  whose normalisation would change the hashed bytes), compressed JSON → ``BYTEA``.
* Writers serialise on a transaction-scoped advisory lock keyed by the schema
  (:data:`LOCK_SQL`): the equivalent of SQLite's ``BEGIN IMMEDIATE``, so several processes and
  hosts extend one chain without gaps.
* **Append-only**: every audit table has ``BEFORE UPDATE OR DELETE`` row triggers and a ``BEFORE
  TRUNCATE`` statement trigger that raise, and ``UPDATE``/``DELETE``/``TRUNCATE`` are revoked
  from ``PUBLIC`` and from the writer role :data:`WRITER_ROLE` when it exists (it gets ``SELECT``
  and ``INSERT`` only). Run sessions as that role and keep the owner for administration
  (``docs/audit.md``): then even a disabled trigger does not let the writer rewrite a row.
  Like SQLite's triggers these are guards; the hash chain and the signed anchors detect what
  gets past them.

psycopg is imported only when a PostgreSQL URL is opened.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from cfa.audit import heartbeat
from cfa.audit.errors import AuditError, AuditIntegrityError, PostgresError

SCHEMES: Final = ("postgresql://", "postgres://")
WRITER_ROLE: Final = "cfa_writer"
"""Role that, when it exists, is granted SELECT and INSERT on the audit tables (and the heartbeat
upsert) and nothing else."""
LOCK_SQL: Final = "SELECT pg_advisory_xact_lock(hashtext('cfa_audit:' || current_schema()))"
"""Serialises chain writers of one schema until their transaction ends."""
APPEND_ONLY_FUNCTION: Final = "cfa_audit_append_only"
META_TABLE: Final = "cfa_meta"
"""One-row marker of a cfa audit schema (the role of SQLite's application_id / user_version)."""

_SQL_TYPE: Final = {
    "int": "BIGINT",
    "real": "DOUBLE PRECISION",
    "text": "TEXT",
    "money": "TEXT",
    "bool": "BIGINT",
    "json": "TEXT",
    "zjson": "BYTEA",
}


def is_pg(conn: object) -> bool:
    """Whether ``conn`` is a :class:`PgConnection` (else a ``sqlite3.Connection``)."""
    return getattr(conn, "kind", None) == "postgresql"


def is_url(target: object) -> bool:
    """Whether ``target`` names a PostgreSQL database (a ``postgresql://`` URL)."""
    return isinstance(target, str) and target.startswith(SCHEMES)


def redact(url: str) -> str:
    """``url`` without its password (in the user part or a ``password=`` parameter), for
    messages, logs and the audit trail."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://<unparsable URL>"
    if parts.password is not None:
        netloc = parts.netloc.rsplit("@", 1)[-1]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{netloc}")
    query = re.sub(r"(?i)(^|&)password=[^&]*", r"\1password=***", parts.query)
    return urlunsplit(parts._replace(query=query))


def redact_args(args: Sequence[str]) -> list[str]:
    """Command-line arguments with the password of every PostgreSQL URL in them replaced
    (``--db URL`` and ``--db=URL`` alike): what a run may record of its command line."""
    out = []
    for a in args:
        head, sep, tail = a.partition("=")
        if is_url(a):
            a = redact(a)
        elif sep and is_url(tail):
            a = f"{head}={redact(tail)}"
        out.append(a)
    return out


def with_schema(url: str, schema: str) -> str:
    """``url`` with ``schema`` as its search path: the store in that schema."""
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


def slug(url: str) -> str:
    """``<host>-<database>[-<schema>]`` of ``url``, safe as a file name (no credentials)."""
    parts = urlsplit(url)
    bits = [parts.hostname or "localhost", parts.path.lstrip("/") or "postgres"]
    schema = re.search(r"search_path(?:%3D|=)([A-Za-z0-9_]+)", parts.query)
    if schema:
        bits.append(schema.group(1))
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(bits))


_PLACEHOLDER = re.compile(r"'[^']*'|\?|%")


def _pg_sql(sql: str) -> str:
    """sqlite3's ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled); text inside
    single quotes is left alone."""

    def sub(m: re.Match[str]) -> str:
        s = m.group(0)
        if s == "?":
            return "%s"
        if s == "%":
            return "%%"
        return s.replace("%", "%%")

    return _PLACEHOLDER.sub(sub, sql)


class PgCursor:
    """A psycopg cursor seen through the sqlite3 cursor API the store uses."""

    __slots__ = ("_conn", "_cur")

    def __init__(self, cur: Any, conn: Any) -> None:
        self._cur = cur
        self._conn = conn

    def fetchone(self) -> Any:
        try:
            return self._cur.fetchone()
        except Exception as exc:
            raise _wrap(exc, self._conn) from exc

    def fetchall(self) -> list[Any]:
        try:
            return list(self._cur.fetchall())
        except Exception as exc:
            raise _wrap(exc, self._conn) from exc

    def fetchmany(self, size: int) -> list[Any]:
        try:
            return list(self._cur.fetchmany(size))
        except Exception as exc:
            raise _wrap(exc, self._conn) from exc

    @property
    def description(self) -> Any:
        return self._cur.description

    def __iter__(self) -> Iterator[Any]:
        while True:
            chunk = self.fetchmany(2_000)
            if not chunk:
                return
            yield from chunk


def _wrap(exc: BaseException, conn: Any = None) -> BaseException:
    """psycopg's error as :class:`PostgresError`; a transaction the error aborted is rolled back
    (as SQLite leaves no half-failed transaction behind a failed statement either)."""
    import psycopg
    import psycopg.pq

    if isinstance(exc, psycopg.Error):
        if (
            conn is not None
            and not conn.closed
            and conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        ):
            with contextlib.suppress(psycopg.Error):
                conn.execute("ROLLBACK")
        return PostgresError(f"{type(exc).__name__}: {str(exc).strip()}")
    return exc


class PgConnection:
    """A psycopg 3 connection in autocommit mode behind the sqlite3 connection API.

    ``BEGIN``/``COMMIT``/``ROLLBACK`` are issued as statements (as the store does with sqlite3's
    ``isolation_level=None``). ``readonly`` connections run every transaction read-only.
    Large reads use a server-side cursor (:meth:`stream`) so a verify of millions of rows does not
    load them all into memory.
    """

    kind: Final = "postgresql"

    def __init__(self, url: str, *, readonly: bool = False, connect_timeout: float = 5.0) -> None:
        try:
            import psycopg  # noqa: F401  (imported here to fail with a clear message)
        except ImportError as exc:  # a declared dependency; a broken install lands here
            raise AuditError(
                f"cannot open audit store {redact(url)!r}: psycopg is not installed ({exc})"
            ) from None
        self.url = url
        self.name = redact(url)
        self.readonly = readonly
        self._timeout = max(1, round(connect_timeout))
        self._conn = self._connect()
        self._streams = 0

    def _connect(self) -> Any:
        import psycopg

        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=self._timeout)
            if self.readonly:
                conn.execute("SET default_transaction_read_only = on")
        except psycopg.Error as exc:
            raise AuditError(f"cannot open audit store {self.name!r}: {str(exc).strip()}") from None
        return conn

    def begin(self) -> None:
        """``BEGIN`` a transaction. A connection the server dropped since the last statement (a
        restart, a failover, an idle timeout) is opened again first, once: nothing of the new
        transaction has happened yet, so this loses nothing, and a writer whose commit failed
        that way commits its retained rows at its next flush."""
        if self._conn.closed or self._conn.broken:
            self._reconnect()
        try:
            self.execute("BEGIN")
        except PostgresError:
            if not (self._conn.closed or self._conn.broken):
                raise
            self._reconnect()
            self.execute("BEGIN")

    def _reconnect(self) -> None:
        with contextlib.suppress(Exception):  # already gone
            self._conn.close()
        try:
            self._conn = self._connect()
        except AuditError as exc:
            raise PostgresError(str(exc)) from None

    # --- the sqlite3 surface ---------------------------------------------------------------

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> PgCursor:
        return self._run(self._conn.cursor(), sql, params)

    def stream(self, sql: str, params: Sequence[Any] | None = None) -> PgCursor:
        """A server-side (named) cursor over ``sql``: rows arrive in chunks as they are read.
        Runs in a transaction of its own; close the connection or read to the end."""
        self._streams += 1
        try:
            if not self.in_transaction:
                self._conn.execute("BEGIN")
        except Exception as exc:
            raise _wrap(exc, self._conn) from exc
        cur = self._conn.cursor(name=f"cfa_stream_{self._streams}")
        cur.itersize = 10_000
        return self._run(cur, sql, params)

    def _run(self, cur: Any, sql: str, params: Sequence[Any] | None) -> PgCursor:
        """Execute on ``cur`` (``?`` placeholders translated only when there are params: without
        them psycopg sends the text as is, ``%`` included)."""
        try:
            if params:
                cur.execute(_pg_sql(sql), params)
            else:
                cur.execute(sql)
        except Exception as exc:
            raise _wrap(exc, self._conn) from exc
        return PgCursor(cur, self._conn)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> Iterator[dict[str, Any]]:
        """Rows of ``sql`` as dicts, streamed (the ``sqlite_utils.Database.query`` contract)."""
        cur = self.stream(sql, params)
        names = None
        for row in cur:
            if names is None:
                names = [d.name for d in cur.description]
            yield dict(zip(names, row, strict=True))

    def copy_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert ``rows`` with ``COPY ... FROM STDIN`` (inside the caller's transaction)."""
        from cfa.audit.schema import quote_ident

        cols = ", ".join(quote_ident(c) for c in columns)
        try:
            sql = f"COPY {quote_ident(table)} ({cols}) FROM STDIN"
            with self._conn.cursor() as cur, cur.copy(sql) as copy:
                for row in rows:
                    copy.write_row(row)
        except Exception as exc:
            raise _wrap(exc, self._conn) from exc

    @property
    def in_transaction(self) -> bool:
        import psycopg.pq

        return bool(self._conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> PgConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- schema --------------------------------------------------------------------------------


def chained_tables(conn: PgConnection) -> dict[str, tuple[str, ...]]:
    """Every table of the connection's schema that carries the chain columns, with its content
    columns in physical order (see :func:`cfa.audit.schema.chained_tables`)."""
    from cfa.audit.schema import CHAIN_COLUMNS

    cols: dict[str, list[str]] = {}
    for table, column in conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
    ):
        cols.setdefault(str(table), []).append(str(column))
    return {
        t: tuple(c for c in names if c not in CHAIN_COLUMNS)
        for t, names in sorted(cols.items())
        if all(c in names for c in CHAIN_COLUMNS)
    }


def _tables(conn: PgConnection) -> set[str]:
    return {
        str(r[0])
        for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = "
            "current_schema() AND table_type = 'BASE TABLE'"
        )
    }


def ensure_schema(conn: PgConnection, name: str) -> None:
    """Create the missing tables, columns, indexes, append-only triggers and grants in the
    connection's schema, inside the caller's transaction (which holds :data:`LOCK_SQL`).

    Raises :class:`AuditIntegrityError` for a schema that holds other tables than cfa's, or a
    cfa audit schema of a newer version."""
    from cfa.audit.schema import SCHEMA_VERSION, TABLES, quote_ident

    existing = _tables(conn)
    foreign = existing - set(TABLES) - {heartbeat.TABLE, META_TABLE}
    if META_TABLE not in existing and foreign:
        raise AuditIntegrityError(
            f"{name}: schema holds other tables ({', '.join(sorted(foreign)[:3])}) and no "
            "cfa audit store; use an empty schema (options=-csearch_path%3D<schema> in the URL)"
        )
    if META_TABLE in existing:
        row = conn.execute(f"SELECT schema_version FROM {META_TABLE}").fetchone()
        if row is not None and int(row[0]) > SCHEMA_VERSION:
            raise AuditIntegrityError(
                f"{name} was written by a newer cfa (schema {row[0]} > {SCHEMA_VERSION})"
            )
    else:
        conn.execute(
            f"CREATE TABLE {META_TABLE} (app TEXT NOT NULL, schema_version BIGINT NOT NULL)"
        )
        conn.execute(f"INSERT INTO {META_TABLE} VALUES ('cfa-audit', ?)", [SCHEMA_VERSION])
    # An existing, complete store needs no DDL at all: the writer role may create nothing.
    if not _schema_missing(conn, existing):
        return
    if not conn.execute(
        "SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = current_schema() AND p.proname = ?",
        [APPEND_ONLY_FUNCTION],
    ).fetchone():
        conn.execute(
            f"CREATE FUNCTION {APPEND_ONLY_FUNCTION}() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'cfa audit tables are append-only' "
            "USING ERRCODE = 'insufficient_privilege'; END $$"
        )
    triggers = _triggers(conn)
    created: list[str] = []
    for spec in TABLES.values():
        t = quote_ident(spec.name)
        if spec.name not in existing:
            cols = ["seq BIGINT PRIMARY KEY"]
            cols += [
                f"{quote_ident(c.name)} {_SQL_TYPE[c.type.value]}"
                + (" NOT NULL" if c.required else "")
                for c in spec.columns
            ]
            cols += ["prev_hash TEXT NOT NULL", "hash TEXT NOT NULL"]
            conn.execute(f"CREATE TABLE {t} ({', '.join(cols)})")
            conn.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON {t} FROM PUBLIC")
            created.append(spec.name)
        else:
            have = set(chained_tables(conn).get(spec.name, ()))
            if not have:
                raise AuditIntegrityError(f"{name}: table {spec.name} lacks the chain columns")
            for c in spec.columns:
                if c.name not in have:  # added by a newer schema: nullable, at the end
                    conn.execute(
                        f"ALTER TABLE {t} ADD COLUMN {quote_ident(c.name)} "
                        f"{_SQL_TYPE[c.type.value]}"
                    )
        if spec.indexed:
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS {quote_ident(f'ix_{spec.name}_run_market')} "
                f"ON {t} (run_id, market)"
            )
        # only missing triggers: DDL on a table waits for every reader of it (a long verify)
        for trig, when in _TRIGGERS:
            tname = f"{spec.name}_{trig}"
            if (spec.name, tname) not in triggers:
                conn.execute(
                    f"CREATE TRIGGER {quote_ident(tname)} {when.format(t=t)} "
                    f"EXECUTE FUNCTION {APPEND_ONLY_FUNCTION}()"
                )
    conn.execute(HEARTBEAT_DDL)
    conn.execute(
        f"UPDATE {META_TABLE} SET schema_version = ? WHERE schema_version < ?",
        [SCHEMA_VERSION, SCHEMA_VERSION],
    )
    if (
        created
        and conn.execute("SELECT 1 FROM pg_roles WHERE rolname = ?", [WRITER_ROLE]).fetchone()
    ):
        grant_writer(conn, WRITER_ROLE)


def _schema_missing(conn: PgConnection, existing: set[str]) -> bool:
    """Whether any table, column, index or trigger of the current schema version is absent."""
    from cfa.audit.schema import TABLES

    if not {heartbeat.TABLE, *TABLES} <= existing:
        return True
    have = chained_tables(conn)
    if any(
        not {c.name for c in spec.columns} <= set(have.get(n, ())) for n, spec in TABLES.items()
    ):
        return True
    indexes = {
        str(r[0])
        for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
        )
    }
    if any(f"ix_{n}_run_market" not in indexes for n, spec in TABLES.items() if spec.indexed):
        return True
    triggers = _triggers(conn)
    return any((n, f"{n}_{trig}") not in triggers for n in TABLES for trig, _ in _TRIGGERS)


def grant_writer(conn: PgConnection, role: str) -> None:
    """Give ``role`` what a session needs and no more: ``SELECT``/``INSERT`` on the audit
    tables (``UPDATE``/``DELETE``/``TRUNCATE`` revoked), the heartbeat upsert, the schema.
    Run by the owner (done automatically for :data:`WRITER_ROLE` when a store is created)."""
    from cfa.audit.schema import TABLES, quote_ident

    r = quote_ident(role)
    for spec in TABLES.values():
        t = quote_ident(spec.name)
        conn.execute(f"GRANT SELECT, INSERT ON {t} TO {r}")
        conn.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON {t} FROM {r}")
    conn.execute(f"GRANT SELECT, INSERT, UPDATE ON {heartbeat.TABLE} TO {r}")
    conn.execute(f"GRANT SELECT ON {META_TABLE} TO {r}")
    conn.execute(f"GRANT USAGE ON SCHEMA {quote_ident(current_schema(conn))} TO {r}")


_TRIGGERS: Final = (
    ("no_change", "BEFORE UPDATE OR DELETE ON {t} FOR EACH ROW"),
    ("no_truncate", "BEFORE TRUNCATE ON {t} FOR EACH STATEMENT"),
)
HEARTBEAT_DDL: Final = (
    f"CREATE TABLE IF NOT EXISTS {heartbeat.TABLE} ("
    "session_id TEXT PRIMARY KEY, run_id TEXT NOT NULL, pid BIGINT NOT NULL, "
    "host TEXT NOT NULL, started DOUBLE PRECISION NOT NULL, beat DOUBLE PRECISION NOT NULL, "
    "stopped DOUBLE PRECISION, state TEXT NOT NULL)"
)
"""The heartbeat table (:data:`cfa.audit.heartbeat.DDL` in PostgreSQL types)."""


def _triggers(conn: PgConnection) -> dict[tuple[str, str], str]:
    """``(table, trigger) -> tgenabled`` ('D' = disabled) of the user triggers in the schema."""
    return {
        (str(t), str(n)): str(enabled)
        for t, n, enabled in conn.execute(
            "SELECT c.relname, tg.tgname, tg.tgenabled FROM pg_trigger tg "
            "JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND NOT tg.tgisinternal"
        )
    }


def current_schema(conn: PgConnection) -> str:
    """The schema the store's tables live in."""
    return str(conn.execute("SELECT current_schema()").fetchone()[0])


def is_audit_schema(conn: PgConnection) -> bool:
    """Whether the connection's schema holds a cfa audit store."""
    return META_TABLE in _tables(conn)


def missing_protections(conn: PgConnection) -> list[str]:
    """What is missing of the append-only protection of the audit tables present: each table's
    ``<table>_no_change`` / ``<table>_no_truncate`` trigger (absent or disabled), and
    ``UPDATE``/``DELETE``/``TRUNCATE`` still granted to ``PUBLIC`` or :data:`WRITER_ROLE`."""
    from cfa.audit.schema import TABLES

    present = _tables(conn) & set(TABLES)
    triggers = _triggers(conn)
    out: list[str] = []
    roles = ["PUBLIC"]
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = ?", [WRITER_ROLE]).fetchone():
        roles.append(WRITER_ROLE)
    for t in TABLES:
        if t not in present:
            continue
        for trig in ("no_change", "no_truncate"):
            name = f"{t}_{trig}"
            state = triggers.get((t, name))
            if state is None:
                out.append(name)
            elif state == "D":
                out.append(f"{name} (disabled)")
        for role in roles:
            for priv in ("UPDATE", "DELETE", "TRUNCATE"):
                if role == "PUBLIC":
                    granted = conn.execute(
                        "SELECT 1 FROM information_schema.role_table_grants WHERE table_schema = "
                        "current_schema() AND table_name = ? AND grantee = 'PUBLIC' "
                        "AND privilege_type = ?",
                        [t, priv],
                    ).fetchone()
                else:
                    granted = conn.execute(
                        "SELECT has_table_privilege(?, quote_ident(current_schema()) || '.' || "
                        "quote_ident(?), ?)",
                        [role, t, priv],
                    ).fetchone()[0]
                if granted:
                    out.append(f"{priv} on {t} granted to {role}")
    return out
