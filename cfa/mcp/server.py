"""The MCP server: cfa's read and governance tools for an AI assistant (``cfa mcp``).

:func:`build` makes an :class:`mcp.server.mcpserver.MCPServer` with the read tools
(:mod:`cfa.mcp.reads`) and the governance tools (:mod:`cfa.mcp.govern`) over one audit store,
and a middleware that names the actor of every ``tools/call`` (:class:`cfa.mcp.actor.ActorPolicy`
and the client's ``initialize`` clientInfo) and audits it (:mod:`cfa.mcp.audit`: one
``tool_calls`` row per call, reads and refused calls included). :func:`serve_stdio` and
:func:`serve_http` run it over stdio (stdout carries nothing but protocol; logs go to stderr)
or streamable HTTP (:mod:`cfa.mcp.http`: loopback by default, bearer token, Host/Origin
checks).
"""

from __future__ import annotations

import logging
import re
import socket
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from cfa.mcp import audit
from cfa.mcp.actor import ActorPolicy

if TYPE_CHECKING:
    from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
    from mcp.server.mcpserver import MCPServer

log = logging.getLogger("cfa.mcp")

NAME: Final = "cfa"
INSTRUCTIONS: Final = (
    "cfa market-makes Kalshi binary contracts. These tools read a running session's audit "
    "store (sessions, live state, decision traces, pending approvals, risk events, governance "
    "requests) and act on it through its control plane (approve, deny, freeze, unfreeze, "
    "override, halt, resume, reduce_only; a reason is required, and every call is audited). "
)
AS_AGENT: Final = (
    "You act as a governance agent ({actor}): your overrides change one parameter per call "
    "and obey max_step, cooldown and approval, and you cannot lift a person's halt, freeze or "
    "override."
)
AS_PERSON: Final = (
    "The operator lets you act as a person ({actor}): you outrank every agent and breaker. "
    "Act only on the operator's explicit request."
)


@dataclass(frozen=True, slots=True)
class Options:
    """What ``cfa mcp`` serves: the audit store ``db`` (a SQLite file or a postgresql:// URL)
    and who its callers act as."""

    db: str
    client: str | None = None
    as_person: str | None = None


def instructions(opts: Options) -> str:
    """The server's ``initialize`` instructions: what it offers and whom the client acts as."""
    policy = ActorPolicy(opts.client, opts.as_person)
    if opts.as_person is not None:
        return INSTRUCTIONS + AS_PERSON.format(actor=policy.actor(None))
    actor = policy.actor(opts.client) if opts.client else "agent:governance:mcp:<your name>"
    return INSTRUCTIONS + AS_AGENT.format(actor=actor)


def _client_name(ctx: ServerRequestContext[Any, Any]) -> str | None:
    """The name the client gave in its initialize handshake (clientInfo.name), if any."""
    try:
        params = ctx.session.client_params
    except Exception:  # a context without a session: no handshake to read
        return None
    info = getattr(params, "client_info", None)
    name = getattr(info, "name", None)
    return name if isinstance(name, str) else None


def _error_text(result: Any) -> str | None:
    """The text of an ``isError`` tool result (a model or a dict), None if it is no error."""
    if isinstance(result, dict):
        if not result.get("isError"):
            return None
        content = result.get("content") or []
        return " ".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
    if not getattr(result, "is_error", False):
        return None
    return " ".join(str(getattr(c, "text", "")) for c in getattr(result, "content", []) or [])


_VALIDATION = re.compile(r"^Error executing tool (\S+): \d+ validation errors? for \S+$")


def plain_validation_error(text: str) -> str | None:
    """The SDK's argument-validation error (pydantic's multi-line report) as one line,
    ``tool: field: problem; ...``; None when ``text`` is not one."""
    lines = text.splitlines()
    m = _VALIDATION.match(lines[0]) if lines else None
    if m is None:
        return None
    problems, loc = [], None
    for line in lines[1:]:
        if not line.startswith(" "):
            loc = line.strip()
        elif line.startswith("  ") and not line.startswith("    ") and loc is not None:
            msg = line.strip().split(" [type=", 1)[0]
            problems.append(f"{loc}: {msg}")
            loc = None
    return f"{m.group(1)}: " + "; ".join(problems) if problems else None


def _unprefixed(tool: str, text: str) -> str:
    """``Error executing tool X: msg`` (the SDK's wrapping of a tool error) as ``X: msg``."""
    head = f"Error executing tool {tool}: "
    if not text.startswith(head):
        return text
    rest = text[len(head) :]
    return rest if rest.startswith(f"{tool}: ") else f"{tool}: {rest}"


def _with_text(result: Any, text: str) -> Any:
    """``result`` (an error tool result, model or dict) with its content replaced by ``text``."""
    from mcp.types import TextContent

    if isinstance(result, dict):
        return {**result, "content": [{"type": "text", "text": text}]}
    return result.model_copy(update={"content": [TextContent(type="text", text=text)]})


def audit_middleware(opts: Options, policy: ActorPolicy) -> ServerMiddleware[Any]:
    """The server middleware auditing every ``tools/call`` (see the module doc)."""
    import anyio.to_thread

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/call" or ctx.request_id is None:
            return await call_next(ctx)
        params = ctx.params or {}
        raw_args = params.get("arguments")
        rec = audit.CallRecord(
            tool=str(params.get("name") or ""),
            arguments=dict(raw_args) if isinstance(raw_args, dict) else {"_raw": raw_args},
            actor=policy.actor(_client_name(ctx)),
        )
        bound = audit.CURRENT.set(rec)
        try:
            result = await call_next(ctx)
        except Exception as exc:
            if rec.status is None:
                rec.done("error", f"{type(exc).__name__}: {exc}")
            await anyio.to_thread.run_sync(audit.write, opts.db, rec)
            raise
        finally:
            audit.CURRENT.reset(bound)
        text = _error_text(result)
        if text is not None:
            plain = plain_validation_error(text) or _unprefixed(rec.tool, text)
            if plain != text:
                result, text = _with_text(result, plain), plain
            if rec.status in (None, "ok"):
                # refused by the SDK before the body ran (bad arguments, unknown tool)
                rec.done("error", text)
        elif rec.status is None:
            rec.done("ok", "")
        await anyio.to_thread.run_sync(audit.write, opts.db, rec)
        return result

    return middleware


_LAZY_MODULES: Final = (
    "cfa.audit",
    "cfa.desk.actions",
    "cfa.desk.live",
    "cfa.desk.reads",
    "cfa.reports.decisions",
    "cfa.reports.history",
)


def warm_imports() -> None:
    """Import what the tool bodies import lazily, once, before the first call (so the first
    call answers as fast as the others; ``cfa._imports.load_sqlite_utils`` is thread-safe)."""
    import importlib

    from cfa._imports import load_sqlite_utils

    load_sqlite_utils()
    for name in _LAZY_MODULES:
        importlib.import_module(name)


def build(opts: Options) -> MCPServer[Any]:
    """The MCP server over ``opts.db`` with every read and governance tool."""
    from mcp.server.mcpserver import MCPServer

    from cfa.mcp import govern, reads

    warm_imports()

    policy = ActorPolicy(opts.client, opts.as_person)
    server: MCPServer[Any] = MCPServer(
        NAME,
        title="cfa: Cognitive Financial Agents",
        instructions=instructions(opts),
        version=_version(),
        log_level="WARNING",
        middleware=[audit_middleware(opts, policy)],
    )
    reads.register(server, opts.db)
    govern.register(server, opts.db)
    return server


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cfa")
    except PackageNotFoundError:
        return ""


def announce(opts: Options, transport: str, where: str) -> None:
    """Start-up lines on stderr: what is served, and who the callers act as (loudly when a
    person)."""
    policy = ActorPolicy(opts.client, opts.as_person)
    if opts.as_person is not None:
        who = policy.actor(None)
        bar = "!" * 72
        print(
            f"{bar}\n! cfa mcp --as-person: every MCP call acts as {who}, with a person's"
            " rank:\n! it may lift halts, freezes and overrides, and overrides skip max_step,"
            f" cooldown\n! and approval. Give this only to a client you trust.\n{bar}",
            file=sys.stderr,
        )
    else:
        who = policy.actor(opts.client) if opts.client else "agent:governance:mcp:<client>"
        print(f"cfa mcp: callers act as {who} (a governance agent)", file=sys.stderr)
    print(f"cfa mcp: serving {opts.db} over {transport} {where}".rstrip(), file=sys.stderr)


async def serve_stdio(opts: Options) -> None:
    """Serve over this process's stdin/stdout until the client closes them."""
    announce(opts, "stdio", "")
    await build(opts).run_stdio_async()


def http_app(opts: Options, host: str, token: str | None) -> tuple[Any, MCPServer[Any]]:
    """The ASGI app of the streamable HTTP transport (``/mcp``), behind the bearer check
    when ``token`` is given."""
    from cfa.mcp.http import PATH, BearerToken, transport_security

    server = build(opts)
    app = server.streamable_http_app(
        streamable_http_path=PATH, host=host, transport_security=transport_security(host)
    )
    return (BearerToken(app, token) if token else app), server


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (OSError naming why not: in use, no such
    address), bound before the server announces itself."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


async def serve_http(
    opts: Options, host: str, port: int, *, token: str | None, allow_remote: bool
) -> None:
    """Serve streamable HTTP on ``host:port`` (:func:`cfa.mcp.http.check_bind` first; OSError
    when the address cannot be bound)."""
    import uvicorn

    from cfa.mcp.http import PATH, check_bind

    check_bind(host, allow_remote=allow_remote, token=token, as_person=opts.as_person is not None)
    sock = listen(host, port)
    app, _ = http_app(opts, host, token)
    shown = f"[{host}]" if ":" in host else host
    announce(
        opts,
        "streamable HTTP",
        f"at http://{shown}:{port}{PATH}" + (" (bearer token required)" if token else ""),
    )
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    try:
        await uvicorn.Server(config).serve(sockets=[sock])
    finally:
        sock.close()
