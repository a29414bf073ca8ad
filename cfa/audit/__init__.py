"""The audit store: append-only, hash-chained SQLite (one file per deployment).

* :class:`AuditStore` (:mod:`cfa.audit.store`) — the writer: ``open``, ``start_run``,
  ``append``, ``maybe_flush``/``flush``, ``end_run``, ``close``.
* :class:`AuditReader` and :func:`verify` (:mod:`cfa.audit.queries`, :mod:`cfa.audit.chain`) —
  reads and chain verification.
* :mod:`cfa.audit.schema` — tables, columns and units; :mod:`cfa.audit.encoding` — canonical
  payload JSON and the secrets rule; :mod:`cfa.audit.chain` — the hash chain and ``verify``;
  :mod:`cfa.audit.sink` — batch commits, WAL checkpoints, the writer process;
  :mod:`cfa.audit.records` — rows from domain records and back; :mod:`cfa.audit.bench` —
  ``python -m cfa.audit.bench`` (write throughput, verify time).
"""

from cfa.audit.chain import GENESIS, ChainHead, VerifyResult, verify
from cfa.audit.errors import AuditError, AuditIntegrityError
from cfa.audit.queries import AuditReader, RunInfo
from cfa.audit.schema import TABLES
from cfa.audit.store import AuditStats, AuditStore, new_run_id, to_ms

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
