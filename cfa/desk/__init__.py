"""The operator's desk: what a person or an assistant reads and does on a running session.

One layer over the audit store, shared by ``cfa govern`` (the terminal), ``cfa console`` (the
browser) and ``cfa mcp`` (an AI assistant), so all three see the same facts and act through the
same path:

* :mod:`cfa.desk.reads` — sessions, traces, one decision with what followed, pending approvals,
  risk events, governance requests;
* :mod:`cfa.desk.live` — :class:`SessionTail`, every market's live state, folded incrementally
  from the rows a session writes;
* :mod:`cfa.desk.actions` — :func:`submit`: check a governance action and write it as a request
  the running session applies through its control plane (:mod:`cfa.runtime.governance`), and
  :func:`wait_result` for its answer.

Who acts is a *source* string (:mod:`cfa.risk.actors`): ``person:<name>`` for people,
``agent:governance:mcp:<client>`` for an assistant. Errors are :class:`DeskError`.
"""

from __future__ import annotations

from cfa.desk.actions import ACTIONS, person, submit, wait_result
from cfa.desk.errors import DeskError
from cfa.desk.live import SessionTail

__all__ = ["ACTIONS", "DeskError", "SessionTail", "person", "submit", "wait_result"]
