"""Exceptions of the audit store.

* :class:`AuditError` — the store cannot do what was asked: a path that cannot be opened or
  written (the message names the path), an unknown table or column, a value of the wrong type,
  a write that failed. Subclasses :class:`RuntimeError`.
* :class:`AuditIntegrityError` — the file is not a valid cfa audit trail: its hash chain is
  broken (see :func:`cfa.audit.chain.verify`) or its schema is not one this code can extend.
* :class:`PostgresError` — a raw PostgreSQL error (the PostgreSQL backend's stand-in for
  :class:`sqlite3.Error`); :data:`DB_ERRORS` catches both.
"""

from __future__ import annotations

import sqlite3


class AuditError(RuntimeError):
    """The audit store cannot perform an operation; the message says which and why."""


class AuditIntegrityError(AuditError):
    """The audit trail is not intact (broken hash chain) or not a cfa audit store."""


class PostgresError(Exception):
    """An error PostgreSQL (psycopg) reported on an audit store connection, with its class name.

    :class:`cfa.audit.postgres.PgConnection` raises it where a SQLite connection raises
    :class:`sqlite3.Error`; code that talks to either catches :data:`DB_ERRORS`, and the store's
    public methods turn both into :class:`AuditError` naming the store."""


DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, PostgresError)
"""The errors of either engine's connection (catch these around raw database calls)."""
