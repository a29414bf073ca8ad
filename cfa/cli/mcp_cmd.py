"""``cfa mcp``: serve cfa's read and governance tools to an AI assistant over MCP.

Over stdio (default: an MCP host such as a desktop assistant starts ``cfa mcp`` itself) or
streamable HTTP (``--transport http``, 127.0.0.1:8322 by default). Callers act as the
governance agent ``agent:governance:mcp:<client>`` — never as a person — unless the operator
passes ``--as-person NAME``. Every call is audited as a ``tool_calls`` row. See docs/mcp.md.
"""

from __future__ import annotations

import contextlib
from enum import StrEnum
from typing import Annotated

import typer

from cfa.cli.options import fail


class Transport(StrEnum):
    """The MCP transport: stdio or streamable HTTP."""

    stdio = "stdio"
    http = "http"


def mcp(
    db: Annotated[
        str,
        typer.Option(
            help="The audit store the running `cfa run` writes (a file or a postgresql:// URL)."
        ),
    ] = "cfa.db",
    transport: Annotated[
        Transport, typer.Option(help="stdio (an MCP host starts this) or http (streamable).")
    ] = Transport.stdio,
    host: Annotated[
        str, typer.Option(help="HTTP: address to listen on (non-loopback needs --allow-remote).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="HTTP: port.")] = 8322,
    client: Annotated[
        str | None,
        typer.Option(
            help="Name the client in the actor string agent:governance:mcp:NAME (default: the "
            "name it gives in its MCP handshake)."
        ),
    ] = None,
    as_person: Annotated[
        str | None,
        typer.Option(
            "--as-person",
            help="Let every call act as person:NAME (a person's rank: lifts halts, skips "
            "max_step). Only for a client you trust.",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="CFA_MCP_TOKEN",
            show_envvar=True,
            help="HTTP: require Authorization: Bearer TOKEN on every request (prefer the "
            "environment variable: a command line is visible to other users).",
        ),
    ] = None,
    allow_remote: Annotated[
        bool,
        typer.Option(
            "--allow-remote", help="HTTP: allow a non-loopback --host (needs --token too)."
        ),
    ] = False,
) -> None:
    """Serve cfa's read and governance tools over the Model Context Protocol."""
    import anyio

    from cfa.mcp.actor import ActorPolicy
    from cfa.mcp.http import BindRefused, check_bind
    from cfa.mcp.server import Options, serve_http, serve_stdio

    try:
        ActorPolicy(client, as_person)
    except ValueError as exc:
        raise fail(str(exc)) from None
    opts = Options(db=db, client=client, as_person=as_person)
    if transport is Transport.stdio:
        with contextlib.suppress(KeyboardInterrupt):
            anyio.run(serve_stdio, opts)
        return
    try:
        check_bind(host, allow_remote=allow_remote, token=token, as_person=as_person is not None)
    except BindRefused as exc:
        raise fail(str(exc)) from None
    try:
        anyio.run(lambda: serve_http(opts, host, port, token=token, allow_remote=allow_remote))
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    except KeyboardInterrupt:
        pass
