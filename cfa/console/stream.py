"""Live state for the browser: one tail per run, shared by all its viewers, pushed as SSE.

:class:`RunFeed` owns one :class:`cfa.desk.SessionTail` and the reader under it in a thread of
its own (a SQLite connection must stay in the thread that opened it, and the tail is not
thread-safe), refreshes it every :data:`REFRESH_S` seconds and publishes the state — as a dict
and as the JSON the stream sends — whenever the tail's ``version`` grows. Every viewer of that
run reads the one published state; :class:`Feeds` starts a feed on first use and stops it after
:data:`IDLE_S` seconds without a viewer.

:func:`events` is the ``text/event-stream`` body of ``/runs/{run_id}/events``: a ``state``
event at once and whenever the version changed (checked every :data:`POLL_S` s, so a row is on
the page well within a second of being written), a ``: keep-alive`` comment every
:data:`KEEPALIVE_S` s, and an ``ended`` event (then the stream closes) when the run ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

REFRESH_S: Final = 0.2
"""How often a feed folds the rows written since its last refresh (wall seconds)."""
POLL_S: Final = 0.05
"""How often a stream looks for a new published version (wall seconds)."""
KEEPALIVE_S: Final = 10.0
"""The longest a stream stays silent: then it sends a comment line (wall seconds)."""
IDLE_S: Final = 60.0
"""A feed nobody read for this long stops (wall seconds)."""
LIVENESS_S: Final = 2.0
"""How often a feed checks whether a session still runs on the store (wall seconds)."""
REQUESTS_SHOWN: Final = 15
"""How many recent governance rows a state carries."""


def _json_default(v: Any) -> Any:
    if isinstance(v, set | frozenset):
        return sorted(v)
    return str(v)


class RunFeed:
    """The published live state of run ``run_id`` of store ``db`` (see the module docstring).

    ``state`` and ``json`` are replaced together under a lock; ``version`` counts publications
    (0: nothing yet). ``error`` is the last failure to read the store, shown to viewers."""

    def __init__(self, db: str, run_id: str) -> None:
        self.db = db
        self.run_id = run_id
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._published = threading.Event()
        self.version = 0
        self.state: dict[str, Any] | None = None
        self.json = ""
        self.error: str | None = None
        self.last_read = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"cfa-console-{run_id}", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Whether the feed's thread still follows the run."""
        return self._thread.is_alive() and not self._stop.is_set()

    def stop(self) -> None:
        """Ask the thread to stop (it ends within one refresh)."""
        self._stop.set()

    def join(self, timeout: float = 2.0) -> None:
        """Wait for the thread to end."""
        self._thread.join(timeout)

    def touch(self) -> None:
        """Mark the feed as read now (it stays alive while viewers read it)."""
        self.last_read = time.monotonic()

    def snapshot(self, timeout: float = 5.0) -> tuple[int, dict[str, Any] | None, str]:
        """``(version, state, json)`` published last, waiting up to ``timeout`` wall seconds
        for the first; ``state`` None (and ``error`` set) when none came."""
        self.touch()
        self._published.wait(timeout)
        with self._lock:
            return self.version, self.state, self.json

    def _publish(self, state: dict[str, Any]) -> None:
        text = json.dumps(state, default=_json_default)
        with self._lock:
            self.state, self.json = state, text
            self.version += 1
            self.error = None
        self._published.set()

    def _run(self) -> None:
        from cfa.audit import AuditError
        from cfa.audit.errors import DB_ERRORS
        from cfa.audit.heartbeat import session_status
        from cfa.desk import DeskError, SessionTail
        from cfa.desk.reads import latest_run_of, open_reader, requests

        failures: tuple[type[Exception], ...] = (AuditError, DeskError, *DB_ERRORS)
        while not self._stop.is_set():
            try:
                with open_reader(self.db) as reader:
                    tail = SessionTail(reader, self.run_id)
                    seen, live, checked = -1, False, 0.0
                    while not self._stop.is_set():
                        if time.monotonic() - self.last_read > IDLE_S:
                            self._stop.set()
                            break
                        tail.refresh()
                        now = time.monotonic()
                        was_live = live
                        if tail.ended_ms is not None:
                            live = False
                        elif now - checked >= LIVENESS_S:
                            checked = now
                            latest = latest_run_of(reader)[0]
                            live = (
                                tail.ended_ms is None
                                and latest == self.run_id
                                and session_status(self.db)[0]
                            )
                        if tail.version != seen or live != was_live:
                            seen = tail.version
                            state = tail.state()
                            state["live"] = live
                            state["requests"] = [
                                r
                                for r in requests(reader, limit=REQUESTS_SHOWN * 3)
                                if r["run_id"] in ("", self.run_id)
                            ][:REQUESTS_SHOWN]
                            self._publish(state)
                        if tail.ended_ms is not None and seen >= 0:
                            # the run ended: keep the last state for late viewers, stop reading
                            self._stop.wait(REFRESH_S * 5)
                            continue
                        self._stop.wait(REFRESH_S)
            except failures as exc:
                with self._lock:
                    self.error = str(exc)
                self._published.set()
                self._stop.wait(1.0)


class Feeds:
    """One :class:`RunFeed` per run of store ``db``, started on first use (thread-safe)."""

    def __init__(self, db: str) -> None:
        self.db = db
        self._lock = threading.Lock()
        self._feeds: dict[str, RunFeed] = {}
        self.stopping = threading.Event()
        """Set when the server shuts down: every event stream ends at its next poll (an open
        stream never ends by itself, and the server waits for its responses to finish)."""

    def get(self, run_id: str) -> RunFeed:
        """The feed of ``run_id`` (a full run id), started if it is not running."""
        with self._lock:
            feed = self._feeds.get(run_id)
            if feed is None or not feed.alive:
                feed = self._feeds[run_id] = RunFeed(self.db, run_id)
            feed.touch()
            return feed

    def close(self) -> None:
        """Stop every feed and wait for their threads."""
        with self._lock:
            feeds = list(self._feeds.values())
            self._feeds.clear()
        for f in feeds:
            f.stop()
        for f in feeds:
            f.join()


def sse(event: str, data: str) -> bytes:
    """One server-sent event (``data`` is one line of JSON)."""
    return f"event: {event}\ndata: {data}\n\n".encode()


async def events(
    feed: RunFeed,
    disconnected: Callable[[], Any],
    *,
    stopping: threading.Event | None = None,
    keepalive_s: float = KEEPALIVE_S,
) -> AsyncIterator[bytes]:
    """The event stream of ``feed`` until the run ends, the client goes (``await
    disconnected()`` true) or the server stops (``stopping`` set)."""
    loop = asyncio.get_running_loop()
    version, _, text = await loop.run_in_executor(None, feed.snapshot, 5.0)
    sent = 0
    last = time.monotonic()
    yield b"retry: 2000\n\n"
    while True:
        if version != sent and text:
            sent = version
            last = time.monotonic()
            yield sse("state", text)
            state = feed.state or {}
            if state.get("ended_ms") is not None:
                yield sse("ended", json.dumps({"ended_ms": state["ended_ms"]}))
                return
        elif feed.error and version == 0:
            yield sse("problem", json.dumps({"error": feed.error}))
            last = time.monotonic()
            await asyncio.sleep(1.0)
        if time.monotonic() - last >= keepalive_s:
            last = time.monotonic()
            yield b": keep-alive\n\n"
        if stopping is not None and stopping.is_set():
            return
        with contextlib.suppress(Exception):
            if await disconnected():
                return
        await asyncio.sleep(POLL_S)
        version, _, text = feed.snapshot(0)
