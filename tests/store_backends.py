"""The audit store's backends for tests: a fresh SQLite file, or a fresh PostgreSQL schema.

PostgreSQL is the real server at ``$CFA_TEST_PG_URL`` (default
``postgresql://127.0.0.1:5432/test``, trust auth; ``.ci/run`` starts it when it is down). Each
test gets a schema of its own (``options=-csearch_path%3D<schema>`` in the URL), dropped
afterwards. When no server answers, PostgreSQL cases are skipped with a message saying so.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_URL = os.environ.get("CFA_TEST_PG_URL", "postgresql://127.0.0.1:5432/test")
WRITER_ROLE = "cfa_writer"


def pg_unavailable() -> str | None:
    """Why PostgreSQL cannot be used here, or None when it can."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - a declared dependency
        return f"psycopg missing ({exc})"
    try:
        with psycopg.connect(PG_URL, connect_timeout=2):
            return None
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (
            f"PostgreSQL not reachable at {PG_URL} ({first}); start it (README: 'PostgreSQL') "
            "or set CFA_TEST_PG_URL"
        )


def schema_url(schema: str, user: str | None = None) -> str:
    """``PG_URL`` with ``schema`` as its search path (and ``user`` as its role, if given)."""
    from cfa.audit.postgres import with_schema

    url = PG_URL
    if user is not None:
        url = url.replace("postgresql://", f"postgresql://{user}@", 1)
    return with_schema(url, schema)


def rows(db: Path | str, sql: str, *args: object) -> list[tuple[object, ...]]:
    """Rows of a read of the store at ``db`` (a SQLite file or a PostgreSQL URL)."""
    from cfa.audit.chain import connect_readonly

    conn = connect_readonly(db)
    try:
        return [tuple(r) for r in conn.execute(sql, args).fetchall()]
    finally:
        conn.close()


def admin() -> object:
    """An autocommit psycopg connection to the test database as the server's owner role."""
    import psycopg

    return psycopg.connect(PG_URL, autocommit=True)


def _fresh_schema() -> Iterator[str]:
    reason = pg_unavailable()
    if reason is not None:
        pytest.skip(reason)
    schema = f"cfa_t_{secrets.token_hex(5)}"
    with admin() as c:  # type: ignore[attr-defined]
        c.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema
    finally:
        with admin() as c:  # type: ignore[attr-defined]
            c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh, empty PostgreSQL schema (skips when no server answers)."""
    yield from _fresh_schema()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Where a fresh audit store goes: a SQLite path, or a PostgreSQL URL of an empty schema."""
    if request.param == "sqlite":
        yield str(tmp_path / "audit.db")
        return
    for schema in _fresh_schema():
        yield schema_url(schema)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_store_target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """:func:`store_target` shared by one test module (for a running session its tests share)."""
    if request.param == "sqlite":
        yield str(tmp_path_factory.mktemp("store") / "audit.db")
        return
    for schema in _fresh_schema():
        yield schema_url(schema)
