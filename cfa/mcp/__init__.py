"""``cfa mcp``: the read and governance tools of cfa over the Model Context Protocol.

An AI assistant reads a running session and acts on it through the one control plane, as a
governance agent (``agent:governance:mcp:<client>``), never as a person unless the operator
says so (``--as-person``). One idea per module:

* :mod:`cfa.mcp.server` — the :class:`mcp.server.mcpserver.MCPServer`, the middleware that
  names and audits every call, and the stdio / streamable HTTP runners;
* :mod:`cfa.mcp.reads` — sessions, live state, traces, one decision, approvals, risk, requests;
* :mod:`cfa.mcp.govern` — approve, deny, freeze, unfreeze, override, halt, resume, reduce_only
  (each through :func:`cfa.desk.submit`, waiting ~3 s for the session's answer);
* :mod:`cfa.mcp.tails` — live tails kept between calls (``session_state`` folds only new rows);
* :mod:`cfa.mcp.actor` — who a client acts as;
* :mod:`cfa.mcp.audit` — one ``tool_calls`` row per call;
* :mod:`cfa.mcp.calls` — running a tool body off the event loop, failures as tool errors;
* :mod:`cfa.mcp.http` — loopback-only bind by default, bearer token, Host/Origin checks.

See ``docs/mcp.md``.
"""
