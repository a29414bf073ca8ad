"""Exceptions of the audit store.

* :class:`AuditError` — the store cannot do what was asked: a path that cannot be opened or
  written (the message names the path), an unknown table or column, a value of the wrong type,
  a write that failed. Subclasses :class:`RuntimeError`.
* :class:`AuditIntegrityError` — the file is not a valid cfa audit trail: its hash chain is
  broken (see :func:`cfa.audit.chain.verify`) or its schema is not one this code can extend.
"""

from __future__ import annotations


class AuditError(RuntimeError):
    """The audit store cannot perform an operation; the message says which and why."""


class AuditIntegrityError(AuditError):
    """The audit trail is not intact (broken hash chain) or not a cfa audit store."""
