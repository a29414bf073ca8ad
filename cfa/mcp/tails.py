"""Live tails kept between calls, so ``session_state`` folds only what was written since.

A :class:`cfa.desk.SessionTail` replays its run from the start on its first refresh, and then
folds only new rows. Building a new tail per call would replay a long run every time. So
:class:`TailCache` keeps one tail, with its own read-only reader, for each of the last few runs
asked for. A lock makes calls take turns, because a tail is not thread-safe and calls run in
worker threads. A tail that fails (the store was archived or replaced, say) is dropped, and the
next call builds it again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from cfa.audit import AuditReader
    from cfa.desk import SessionTail

MAX_RUNS: Final = 4
"""How many runs' tails are kept (least recently used dropped first)."""


class TailCache:
    """Each run's :class:`cfa.desk.SessionTail` on audit store ``db``, kept between calls."""

    def __init__(self, db: str, max_runs: int = MAX_RUNS) -> None:
        self.db = db
        self.max_runs = max_runs
        self._lock = threading.Lock()
        self._tails: OrderedDict[str, tuple[AuditReader, SessionTail]] = OrderedDict()

    def _resolve(self, run: str | None) -> str:
        from cfa.desk import DeskError
        from cfa.desk.reads import open_reader, resolve_run

        with open_reader(self.db) as reader:
            run_id = resolve_run(reader, run)
        if not run_id:
            raise DeskError("session_state follows one run, not 'all'")
        return run_id

    def state(self, run: str | None) -> dict[str, Any]:
        """The state of run ``run`` (None/'latest': the latest) after one refresh
        (:meth:`cfa.desk.SessionTail.state`); :class:`cfa.desk.DeskError` for no store or no
        such run. Blocking: call it from a worker thread."""
        from cfa.audit import AuditError, AuditReader
        from cfa.desk import DeskError, SessionTail

        run_id = self._resolve(run)
        with self._lock:
            held = self._tails.pop(run_id, None)
            if held is None:  # _resolve has given the clear error when there is no store
                try:
                    reader = AuditReader.open(self.db)
                except AuditError as exc:
                    raise DeskError(str(exc)) from None
                try:
                    held = (reader, SessionTail(reader, run_id))
                except BaseException:
                    reader.close()
                    raise
            try:
                held[1].refresh()
                out = held[1].state()
            except BaseException:
                held[0].close()  # rebuilt on the next call
                raise
            self._tails[run_id] = held
            while len(self._tails) > self.max_runs:
                _, (old, _) = self._tails.popitem(last=False)
                old.close()
            return out

    def close(self) -> None:
        """Close every kept reader."""
        with self._lock:
            for reader, _ in self._tails.values():
                reader.close()
            self._tails.clear()
