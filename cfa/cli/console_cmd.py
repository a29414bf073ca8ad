"""``cfa console``: serve the operator's console in the browser over an audit store.

Binds 127.0.0.1 by default. Another address needs ``--allow-remote`` and an explicit token
(``--token`` or ``$CFA_CONSOLE_TOKEN``); without them it refuses to start, in one line. Without
an explicit token one is generated, and the login URL carrying it is printed once, to this
terminal only (uvicorn's access log is off, so no URL is ever logged).
"""

from __future__ import annotations

import os
from types import FrameType
from typing import Annotated

import typer

from cfa.cli.options import fail

TOKEN_ENV = "CFA_CONSOLE_TOKEN"


def console(
    db: Annotated[
        str, typer.Option(help="The audit store to serve: a SQLite file or a postgresql:// URL.")
    ] = "cfa.db",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port to listen on.")] = 8321,
    host: Annotated[
        str, typer.Option(help="Address to bind; anything but loopback needs --allow-remote.")
    ] = "127.0.0.1",
    token: Annotated[
        str | None,
        typer.Option(
            help=f"The login token (default ${TOKEN_ENV}, else a generated one).",
            show_default=False,
        ),
    ] = None,
    allow_remote: Annotated[
        bool,
        typer.Option(
            "--allow-remote", help="Allow a non-loopback --host (requires an explicit token)."
        ),
    ] = False,
    operator: Annotated[
        str | None, typer.Option(help="Pre-fill the operator's name in the action forms.")
    ] = None,
) -> None:
    """Serve the operator's console (live state, traces, approvals, kill switch) in a browser."""
    from cfa.console.security import Binding, Tokens, is_loopback, new_token

    explicit = token if token is not None else os.environ.get(TOKEN_ENV) or None
    if not is_loopback(host):
        if not allow_remote:
            raise fail(
                f"--host {host}: not a loopback address; a remote console needs --allow-remote "
                f"and an explicit token (--token or ${TOKEN_ENV})"
            )
        if explicit is None:
            raise fail(
                f"--host {host} --allow-remote: give an explicit token (--token or ${TOKEN_ENV})"
            )
    try:
        tokens = Tokens(explicit or new_token())
    except ValueError as exc:
        raise fail(f"--token: {exc}") from None
    from cfa.audit.postgres import is_url

    if not is_url(db) and not os.path.exists(db):
        typer.echo(f"note: {db} does not exist yet; the console shows it once `cfa run` writes it")
    import uvicorn

    from cfa.console.app import ConsoleConfig, create_app

    binding = Binding.make(host, port)
    app = create_app(ConsoleConfig(db, tokens, binding, (operator or "").strip()))
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown and not shown.startswith("[") else shown
    if explicit is None:
        typer.echo(f"cfa console: open http://{shown}:{port}/login?token={tokens.token}")
    else:
        typer.echo(f"cfa console: open http://{shown}:{port}/login (log in with your token)")
    config = uvicorn.Config(
        app,
        host=host.strip("[]"),
        port=port,
        access_log=False,
        log_level="warning",
        server_header=False,
        proxy_headers=False,
        lifespan="on",
        timeout_graceful_shutdown=3,  # a backstop: the event streams end on the signal
    )
    feeds = app.state.feeds

    class Server(uvicorn.Server):
        """uvicorn's server that also ends the console's event streams when asked to stop."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            feeds.stopping.set()
            super().handle_exit(sig, frame)

    try:
        Server(config).run()
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
