"""An LLM call cache: the same request gets the recorded answer, for reproducible backtests.

:class:`CachedReasoner` wraps any reasoner. Each request is keyed by :func:`request_key`: the
SHA-256 (hex) of a canonical JSON document holding

* the reasoner's *identity* (:func:`reasoner_identity`): backend, model, the base URL's host
  name (never the URL's credentials, never the API key) and the sampling settings (temperature,
  seed, ``tool_choice``, prompt role) — whatever changes the answer of a deterministic endpoint;
* the role and market, the system prompt, the tool schemas (as sent to the endpoint);
* the context summary and the retry feedback (previous calls and the rejection text).

Canonical JSON: ``json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=False)``;
a float is written by ``repr``, so ``1`` and ``1.0`` are different keys, and a context that has
been through the audit store (JSON both ways) keys exactly as the live one did.

Contract of :class:`CachedReasoner`:

* a **hit** returns the recorded :class:`ReasonResponse` (calls, raw, text, model) with
  ``usage=None`` — zero tokens charged — and ``extra`` = the recorded extra plus
  ``{"cache": "hit", "cache_key": KEY, "cached_usage": <the usage the first call reported>}``;
* a **miss** calls the inner reasoner and returns its answer with ``extra["cache"] = "miss"``
  and ``extra["cache_key"]``; the answer is stored only when it has no ``error`` (an abstain,
  a timeout or an HTTP error is never stored, so a flaky endpoint is asked again next time);
* a cache that fails (locked past its timeout, disk full) never fails the decision: the lookup
  counts as a miss and ``extra["cache_error"]`` says why;
* lookups and writes run in a worker thread (:func:`asyncio.to_thread`), so a cache file
  locked by another process never blocks the event loop (and so never the fast path).

Secrets: the key has no API key in it, and a stored answer is what the reasoner returned, which
the openai backend has already scrubbed of its key; the wrapper also passes every stored text
through the inner reasoner's ``scrub`` when it has one. Nothing else is stored.

Because a context carries numbers derived from simulated time, a key hits only when the world
is identical: the same seed and the same (lockstep) schedule give identical contexts, so a
second run is all hits. An audit store is itself a source of answers: every decision recorded
with a reasoner that has an identity carries ``request_sha256`` (the key) per response — the
audit store redacts dict keys named ``*key*``, hence the other name — and
:func:`import_from_audit` loads them into any :class:`LLMCache`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

from cfa.agents.reasoners.base import RawCall, Reasoner, ReasonRequest, ReasonResponse

KEY_VERSION = 1
"""Bumped when the key document changes shape (old entries then simply miss)."""

_CACHE_FIELDS = ("cache", "cache_key", "cached_usage", "cache_error")
"""Extra fields the wrapper adds; never stored with an answer."""


@runtime_checkable
class HasIdentity(Protocol):
    """A reasoner that can say what, besides the request, determines its answer."""

    def cache_identity(self) -> Mapping[str, Any]: ...


def reasoner_identity(reasoner: Reasoner) -> dict[str, Any]:
    """What identifies ``reasoner`` in a cache key: its ``cache_identity()``, else name and model.

    Never contains a secret (the openai backend gives backend, model, host, sampling settings).
    """
    if isinstance(reasoner, HasIdentity):
        return dict(reasoner.cache_identity())
    return {"backend": reasoner.name, "model": reasoner.model}


_SCHEMAS: dict[tuple[tuple[str, type[BaseModel]], ...], list[dict[str, Any]]] = {}
_SCHEMAS_LOCK = threading.Lock()


def _schemas(tools: Mapping[str, type[BaseModel]]) -> list[dict[str, Any]]:
    """The tool schemas as sent to an endpoint, memoised per tool set."""
    sig = tuple(tools.items())
    with _SCHEMAS_LOCK:
        hit = _SCHEMAS.get(sig)
    if hit is None:
        from cfa.control.tools import tool_schemas

        hit = tool_schemas(tools)  # type: ignore[arg-type]
        with _SCHEMAS_LOCK:
            _SCHEMAS[sig] = hit
    return hit


def canonical_json(value: Any) -> str:
    """The canonical JSON text the key is hashed from (sorted keys, no spaces, UTF-8)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def key_document(identity: Mapping[str, Any], request: ReasonRequest) -> dict[str, Any]:
    """The JSON-able document :func:`request_key` hashes (exposed for audits and tests)."""
    fb = request.feedback
    return {
        "v": KEY_VERSION,
        "reasoner": dict(identity),
        "role": request.role,
        "market": request.market,
        "system_prompt": request.system_prompt,
        "tools": _schemas(request.tools),
        "context": request.context,
        "feedback": None
        if fb is None
        else {
            "calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in fb.calls],
            "error": fb.error,
        },
    }


def request_key(identity: Mapping[str, Any], request: ReasonRequest) -> str:
    """SHA-256 hex of the canonical JSON of :func:`key_document`."""
    text = canonical_json(key_document(identity, request))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -- stored answers -----------------------------------------------------------------------------


def response_to_dict(response: ReasonResponse) -> dict[str, Any]:
    """The stored form of an answer: calls, raw, text, model, usage, extra (cache fields out)."""
    return {
        "calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in response.calls],
        "raw": response.raw,
        "text": response.text,
        "model": response.model,
        "usage": dict(response.usage) if response.usage else None,
        "extra": {k: v for k, v in response.extra.items() if k not in _CACHE_FIELDS},
    }


def response_from_dict(d: Mapping[str, Any]) -> ReasonResponse:
    """Inverse of :func:`response_to_dict` (``latency_s`` 0, ``error`` None)."""
    usage = d.get("usage")
    return ReasonResponse(
        calls=tuple(
            RawCall(str(c["id"]), str(c["name"]), str(c["arguments"])) for c in d.get("calls", [])
        ),
        raw=str(d.get("raw", "")),
        text=str(d.get("text", "")),
        model=d.get("model"),
        usage={k: int(v) for k, v in usage.items() if isinstance(v, int)} if usage else None,
        extra=dict(d.get("extra") or {}),
    )


class LLMCache(Protocol):
    """Recorded answers by request key. Implementations must be safe to call from a thread."""

    def get(self, key: str) -> ReasonResponse | None:
        """The answer stored under ``key``, or None."""
        ...

    def put(
        self, key: str, response: ReasonResponse, *, meta: Mapping[str, Any] | None = None
    ) -> bool:
        """Store ``response`` under ``key`` unless one is there (first writer wins).

        ``meta`` (role, market, model, origin) is descriptive only. Returns True if stored.
        """
        ...

    def close(self) -> None: ...


class MemoryLLMCache:
    """An in-process :class:`LLMCache` (tests; answers read from an audit store)."""

    def __init__(self) -> None:
        self._data: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_audit(cls, db_path: str | Path, run_id: str | None = None) -> MemoryLLMCache:
        """A cache holding every recorded answer of ``run_id`` (all runs if None) in ``db_path``."""
        cache = cls()
        import_from_audit(cache, db_path, run_id)
        return cache

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> ReasonResponse | None:
        with self._lock:
            d = self._data.get(key)
        return None if d is None else response_from_dict(d)

    def put(
        self, key: str, response: ReasonResponse, *, meta: Mapping[str, Any] | None = None
    ) -> bool:
        with self._lock:
            if key in self._data:
                return False
            self._data[key] = response_to_dict(response)
            return True

    def close(self) -> None:
        return None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS llm_cache (
    key        TEXT PRIMARY KEY,
    response   TEXT NOT NULL,
    role       TEXT,
    market     TEXT,
    model      TEXT,
    origin     TEXT,
    created_ms INTEGER NOT NULL
)
"""


class SqliteLLMCache:
    """An :class:`LLMCache` in one SQLite file, shared by threads and processes.

    WAL journal, a busy timeout of ``timeout_s`` seconds (a writer waits for another process's
    write instead of failing), ``INSERT OR IGNORE`` (first writer wins; in a deterministic world
    every writer of a key writes the same answer), each write its own short transaction. One
    connection per instance, guarded by a lock, usable from worker threads. Several processes
    (an evaluation's process pool) may open the same file at once.
    """

    def __init__(self, path: str | Path, *, timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            str(self.path), timeout=timeout_s, isolation_level=None, check_same_thread=False
        )
        deadline = time.monotonic() + timeout_s
        while True:  # switching to WAL takes a lock the busy handler does not always wait for
            try:
                self._conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
                mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                self._conn.execute("PRAGMA synchronous = NORMAL")
                self._conn.execute(_SCHEMA)
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    self._conn.close()
                    raise
                time.sleep(0.01)
        self.journal_mode = str(mode).lower()

    def __repr__(self) -> str:
        return f"SqliteLLMCache({str(self.path)!r})"

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM llm_cache").fetchone()[0])

    def keys(self) -> Iterator[str]:
        """Every stored key (a snapshot)."""
        with self._lock:
            rows = self._conn.execute("SELECT key FROM llm_cache ORDER BY key").fetchall()
        return iter([str(r[0]) for r in rows])

    def get(self, key: str) -> ReasonResponse | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT response FROM llm_cache WHERE key = ?", (key,)
            ).fetchone()
        return None if row is None else response_from_dict(json.loads(row[0]))

    def put(
        self, key: str, response: ReasonResponse, *, meta: Mapping[str, Any] | None = None
    ) -> bool:
        m = meta or {}
        text = canonical_json(response_to_dict(response))
        with self._lock:
            cur = self._conn.execute(
                "INSERT OR IGNORE INTO llm_cache "
                "(key, response, role, market, model, origin, created_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    text,
                    m.get("role"),
                    m.get("market"),
                    m.get("model", response.model),
                    m.get("origin", "live"),
                    int(time.time() * 1000),
                ),
            )
            return cur.rowcount == 1

    def import_from_audit(self, db_path: str | Path, run_id: str | None = None) -> int:
        """Load the recorded answers of ``run_id`` (all runs if None); returns how many were new."""
        return import_from_audit(self, db_path, run_id)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._conn.close()


def recorded_answers(
    db_path: str | Path, run_id: str | None = None
) -> Iterator[tuple[str, ReasonResponse, dict[str, Any]]]:
    """``(key, answer, meta)`` of every usable recorded answer in an audit store.

    An answer is usable when its response record carries ``request_sha256`` and no ``error``.
    A recorded cache hit yields the usage of the original call (``extra.cached_usage``).
    """
    from cfa.audit.queries import AuditReader

    with AuditReader.open(db_path) as reader:
        for row in reader.rows("decisions", run_id=run_id):
            p = row.get("payload")
            if not isinstance(p, dict) or p.get("phase", "decision") != "decision":
                continue
            for r in p.get("responses") or []:
                key = r.get("request_sha256")
                if not key or r.get("error") is not None:
                    continue
                extra = dict(r.get("extra") or {})
                usage = r.get("usage")
                if r.get("cache") == "hit":
                    usage = extra.get("cached_usage")
                answer = response_from_dict(
                    {
                        "calls": r.get("calls") or [],
                        "raw": r.get("raw") or "",
                        "text": r.get("text") or "",
                        "model": r.get("model"),
                        "usage": usage,
                        "extra": {k: v for k, v in extra.items() if k not in _CACHE_FIELDS},
                    }
                )
                meta = {
                    "role": p.get("agent"),
                    "market": p.get("market") or None,
                    "model": r.get("model"),
                    "origin": f"audit:{row.get('run_id')}",
                }
                yield str(key), answer, meta


def recorded_identity(
    db_path: str | Path, run_id: str | None = None, agent: str = "market"
) -> dict[str, Any] | None:
    """The ``reasoner_identity`` of the first decision of ``agent`` that recorded one, or None."""
    from cfa.audit.queries import AuditReader

    with AuditReader.open(db_path) as reader:
        for row in reader.rows("decisions", run_id=run_id):
            p = row.get("payload")
            if isinstance(p, dict) and p.get("agent") == agent and p.get("reasoner_identity"):
                return dict(p["reasoner_identity"])
    return None


def import_from_audit(cache: LLMCache, db_path: str | Path, run_id: str | None = None) -> int:
    """Put every usable recorded answer of an audit store into ``cache``; returns how many new."""
    n = 0
    for key, answer, meta in recorded_answers(db_path, run_id):
        if cache.put(key, answer, meta=meta):
            n += 1
    return n


# -- the wrapper --------------------------------------------------------------------------------


class OfflineReasoner:
    """Answers nothing: every call is an abstain. For replays from recorded answers only.

    ``identity`` is the recorded reasoner identity (so keys computed for it match the
    recorded ones); ``name`` and ``model`` are taken from it.
    """

    def __init__(self, identity: Mapping[str, Any]) -> None:
        self.identity = dict(identity)
        self.name: str = str(self.identity.get("backend", "offline"))
        model = self.identity.get("model")
        self.model: str | None = None if model is None else str(model)

    def cache_identity(self) -> Mapping[str, Any]:
        return dict(self.identity)

    async def reason(self, request: ReasonRequest) -> ReasonResponse:
        return ReasonResponse(
            calls=(),
            raw="",
            model=self.model,
            error="no recorded answer for this request (offline replay)",
        )

    async def aclose(self) -> None:
        return None


class CachedReasoner:
    """``inner`` behind ``cache``; see the module docstring for the contract.

    ``name``, ``model`` and ``background`` are the inner reasoner's, so the runtime treats the
    wrapper exactly as it would the inner reasoner (a cached ``openai`` reasoner is still
    ``openai``).
    ``aclose`` closes the inner reasoner, not the cache: whoever opened the cache closes it.
    """

    def __init__(self, inner: Reasoner, cache: LLMCache) -> None:
        self.inner = inner
        self.cache = cache
        self.name: str = inner.name
        self.model: str | None = inner.model
        self.background: bool = bool(getattr(inner, "background", False))
        self.identity = reasoner_identity(inner)
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"CachedReasoner({self.inner!r}, {self.cache!r})"

    def cache_identity(self) -> Mapping[str, Any]:
        return dict(self.identity)

    def key_for(self, request: ReasonRequest) -> str:
        """The cache key of ``request`` for this reasoner."""
        return request_key(self.identity, request)

    async def reason(self, request: ReasonRequest) -> ReasonResponse:
        t0 = time.perf_counter()
        key = self.key_for(request)
        problem: str | None = None
        try:
            hit = await asyncio.to_thread(self.cache.get, key)
        except Exception as exc:  # a broken cache is a miss, never a failed decision
            hit, problem = None, f"lookup: {type(exc).__name__}: {exc}"
        if hit is not None:
            self.hits += 1
            extra = {**hit.extra, "cache": "hit", "cache_key": key, "cached_usage": hit.usage}
            return dataclasses.replace(
                hit, usage=None, latency_s=time.perf_counter() - t0, extra=extra
            )
        self.misses += 1
        resp = await self.inner.reason(request)
        extra = {**resp.extra, "cache": "miss", "cache_key": key}
        if resp.error is None:
            stored = self._scrubbed(resp)
            meta = {"role": request.role, "market": request.market, "model": resp.model}
            try:
                await asyncio.to_thread(self.cache.put, key, stored, meta=meta)
            except Exception as exc:
                problem = f"store: {type(exc).__name__}: {exc}"
        if problem is not None:
            extra["cache_error"] = problem
        return dataclasses.replace(resp, extra=extra)

    def _scrubbed(self, resp: ReasonResponse) -> ReasonResponse:
        scrub = getattr(self.inner, "scrub", None)
        if not callable(scrub):
            return resp
        return dataclasses.replace(
            resp,
            raw=scrub(resp.raw),
            text=scrub(resp.text),
            calls=tuple(RawCall(c.id, c.name, scrub(c.arguments)) for c in resp.calls),
        )

    async def aclose(self) -> None:
        await self.inner.aclose()
