"""Streamable HTTP: where the server may listen, the bearer token, and Host/Origin checks.

* :func:`check_bind`: loopback (127.0.0.1, ::1, localhost) by default; any other address needs
  both ``--allow-remote`` and ``--token``, and ``--as-person`` needs ``--token``, else the
  server refuses to start.
* :class:`BearerToken`: with a token, every HTTP request must carry
  ``Authorization: Bearer <token>`` (compared with :func:`hmac.compare_digest`); anything else
  gets 401 before the MCP transport sees it. The token is never logged, printed or audited.
* :func:`transport_security`: the SDK's DNS-rebinding protection
  (:class:`mcp.server.transport_security.TransportSecuritySettings`: Host and Origin headers
  must name the bound address, else 421/403) for the address bound. A wildcard bind
  (0.0.0.0, ::) cannot know the names clients use, so there the Host check is off and the
  token is the guard.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from mcp.server.transport_security import TransportSecuritySettings
    from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_NAMES: Final = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARDS: Final = frozenset({"0.0.0.0", "::", ""})
PATH: Final = "/mcp"
"""The MCP endpoint path of the HTTP transport."""


class BindRefused(ValueError):
    """The server may not listen there with these options (one line for the operator)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback name or address (127.0.0.0/8, ::1, localhost)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(
    host: str, *, allow_remote: bool, token: str | None, as_person: bool = False
) -> None:
    """:class:`BindRefused` unless ``host`` is loopback, or ``allow_remote`` and a non-empty
    ``token`` are both given; and unless a ``token`` guards a server whose callers act as a
    person (``as_person``: any local process could otherwise reach a person's powers)."""
    if token is not None and not token.strip():
        raise BindRefused("--token is empty; give a long random secret")
    if as_person and not token:
        raise BindRefused(
            "--as-person over http needs --token (else any local process acts as a person)"
        )
    if is_loopback(host):
        return
    missing = [
        n for n, ok in (("--allow-remote", allow_remote), ("--token", bool(token))) if not ok
    ]
    if missing:
        raise BindRefused(
            f"refusing to listen on {host}: a non-loopback address needs {' and '.join(missing)}"
            " (governance tools would be open to the network)"
        )


def _authority(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def transport_security(host: str) -> TransportSecuritySettings:
    """Host/Origin checks for the bound ``host`` (loopback: every loopback spelling)."""
    from mcp.server.transport_security import TransportSecuritySettings

    if host in WILDCARDS:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    names = {_authority(host)}
    if is_loopback(host):
        names |= {"127.0.0.1", "localhost", "[::1]"}
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=sorted(f"{n}:*" for n in names) + sorted(names),
        allowed_origins=sorted(f"{s}://{n}:*" for n in names for s in ("http", "https"))
        + sorted(f"{s}://{n}" for n in names for s in ("http", "https")),
    )


class BearerToken:
    """ASGI middleware: a request without ``Authorization: Bearer <token>`` gets 401."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    def _ok(self, scope: Scope) -> bool:
        for name, value in scope.get("headers") or ():
            if name.lower() == b"authorization":
                scheme, _, given = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(
                    given.strip(), self._token
                )
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._ok(scope):
            body = b"401: this MCP server needs Authorization: Bearer <token>\n"
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"text/plain; charset=utf-8"),
                        (b"content-length", str(len(body)).encode()),
                        (b"www-authenticate", b'Bearer realm="cfa-mcp"'),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
