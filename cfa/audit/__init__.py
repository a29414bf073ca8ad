"""The audit store: append-only, hash-chained; a SQLite file (the embedded default) or a
PostgreSQL schema (:mod:`cfa.audit.postgres`, for several processes and hosts).

* :class:`AuditStore` (:mod:`cfa.audit.store`) — the writer: ``open``, ``start_run``,
  ``append``, ``maybe_flush``/``flush``, ``end_run``, ``close``.
* :class:`AuditReader` and :func:`verify` (:mod:`cfa.audit.queries`, :mod:`cfa.audit.chain`) —
  reads and chain verification.
* :mod:`cfa.audit.schema` — tables, columns and units; :mod:`cfa.audit.encoding` — canonical
  payload JSON and the secrets rule; :mod:`cfa.audit.chain` — the hash chain and ``verify``;
  :mod:`cfa.audit.sink` — batch commits, WAL checkpoints, the writer process;
  :mod:`cfa.audit.records` — rows from domain records and back; :mod:`cfa.audit.bench` —
  ``python -m cfa.audit.bench`` (write throughput, verify time).
* :mod:`cfa.audit.compact` — ``market_events`` payloads stored compressed (the chain hashes
  their text); :mod:`cfa.audit.archive` — retention, ``cfa audit archive`` (a verified prefix
  of the chain moved to an archive file); :mod:`cfa.audit.cut` — where a store's chain starts
  after such a cut.
* :mod:`cfa.audit.anchors` — Ed25519-signed anchors of the chain head in a file outside the
  database, and their verification; :mod:`cfa.audit.integrity` — ``PRAGMA quick_check`` and the
  append-only triggers; :mod:`cfa.audit.heartbeat` — is a session running on this file?
  (standard library only: cheap to import).

The names below are imported lazily (PEP 562), so ``import cfa.audit.heartbeat`` costs only
that module: the kill switch imports it and must start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cfa.audit.chain import GENESIS, ChainHead, VerifyResult, verify
    from cfa.audit.errors import AuditError, AuditIntegrityError
    from cfa.audit.queries import AuditReader, RunInfo
    from cfa.audit.schema import TABLES
    from cfa.audit.store import AuditStats, AuditStore, new_run_id, to_ms

_LAZY: dict[str, str] = {
    "GENESIS": "cfa.audit.chain",
    "ChainHead": "cfa.audit.chain",
    "VerifyResult": "cfa.audit.chain",
    "verify": "cfa.audit.chain",
    "AuditError": "cfa.audit.errors",
    "AuditIntegrityError": "cfa.audit.errors",
    "AuditReader": "cfa.audit.queries",
    "RunInfo": "cfa.audit.queries",
    "TABLES": "cfa.audit.schema",
    "AuditStats": "cfa.audit.store",
    "AuditStore": "cfa.audit.store",
    "new_run_id": "cfa.audit.store",
    "to_ms": "cfa.audit.store",
}

__all__ = [
    "GENESIS",
    "TABLES",
    "AuditError",
    "AuditIntegrityError",
    "AuditReader",
    "AuditStats",
    "AuditStore",
    "ChainHead",
    "RunInfo",
    "VerifyResult",
    "new_run_id",
    "to_ms",
    "verify",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cfa.audit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
