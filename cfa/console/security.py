"""The console's guard: who may read, who may act, and from where.

The console can halt every market, so every request passes :class:`Guard` (a pure ASGI
middleware) before any route sees it:

1. **Host** — the ``Host`` header must name this console (the bound address, or for a loopback
   bind ``localhost``/``127.0.0.1``/``[::1]``; for a wildcard bind with ``--allow-remote``: an
   IP literal or this machine's own names), on the bound port. A DNS-rebinding page (a domain
   of the attacker's resolving to 127.0.0.1) is refused with 403.
2. **Authentication** — ``Authorization: Bearer <token>`` or the session cookie that
   ``/login?token=...`` sets (HttpOnly, SameSite=Strict). The cookie is ``sid.mac``: a random
   session id and its HMAC under the token, so the token itself never travels in a cookie;
   tokens and MACs are compared with :func:`hmac.compare_digest`. Missing → 401, wrong → 401.
   ``/login`` and ``/static/`` need none.
3. **State changes** — every POST must come from this console: a non-``null`` ``Origin`` must be
   this console's; lacking one, ``Sec-Fetch-Site`` (set by the browser, not by pages) must be
   ``same-origin``, else a ``Referer`` must be this console's. A cookie-authenticated POST also
   needs the CSRF token (:meth:`Tokens.csrf`, an HMAC of the session id) in an
   ``X-CSRF-Token`` header or a ``csrf`` form field; a Bearer POST carries no cookie, so it
   needs none. Refusals are 403.
4. **Headers** on every response: ``Content-Security-Policy: default-src 'self';
   frame-ancestors 'none'`` (no inline script or style anywhere), ``X-Content-Type-Options:
   nosniff``, ``Referrer-Policy: no-referrer``, ``Cache-Control: no-store``.

(A browser form POST under ``Referrer-Policy: no-referrer`` carries ``Origin: null`` by the
Fetch standard, which is why ``Sec-Fetch-Site`` is consulted before refusing it.)
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

COOKIE: Final = "cfa_console"
"""The session cookie's name."""
CSRF_FIELD: Final = "csrf"
"""The hidden form field carrying the CSRF token."""
CSRF_HEADER: Final = "x-csrf-token"
"""The request header carrying the CSRF token (JavaScript clients)."""
MAX_FORM_BYTES: Final = 64 * 1024
"""The largest form body the guard reads to find the CSRF field (a larger one: 413)."""

SECURITY_HEADERS: Final[tuple[tuple[bytes, bytes], ...]] = (
    (b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"x-frame-options", b"DENY"),
)
PUBLIC_PREFIXES: Final = ("/static/", "/login", "/favicon.ico")
"""Paths served without authentication (the login page and the console's own CSS and JS)."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES: Final = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
WILDCARD_HOSTS: Final = frozenset({"0.0.0.0", "::", "[::]", ""})


def new_token() -> str:
    """A fresh console token (URL-safe, 256 bits)."""
    return secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback interface only."""
    h = host.strip("[]")
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Tokens:
    """The console's secret and what is derived from it: session cookies and CSRF tokens."""

    token: str

    def __post_init__(self) -> None:
        if not self.token or len(self.token) < 16:
            raise ValueError("a console token must have at least 16 characters")

    def _mac(self, purpose: str, sid: str) -> str:
        return hmac.new(
            self.token.encode(), f"{purpose}:{sid}".encode(), hashlib.sha256
        ).hexdigest()

    def check_token(self, given: str | None) -> bool:
        """Whether ``given`` is the token (constant time)."""
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def new_cookie(self) -> str:
        """A new session cookie value ``sid.mac``."""
        sid = secrets.token_urlsafe(18)
        return f"{sid}.{self._mac('session', sid)}"

    def session_of(self, cookie: str | None) -> str | None:
        """The session id of a valid cookie value, else None."""
        if not cookie or "." not in cookie:
            return None
        sid, mac = cookie.rsplit(".", 1)
        return (
            sid if hmac.compare_digest(mac.encode(), self._mac("session", sid).encode()) else None
        )

    def csrf(self, sid: str) -> str:
        """The CSRF token of session ``sid`` (what forms and ``X-CSRF-Token`` carry)."""
        return self._mac("csrf", sid)

    def check_csrf(self, sid: str, given: str | None) -> bool:
        """Whether ``given`` is session ``sid``'s CSRF token (constant time)."""
        return given is not None and hmac.compare_digest(given.encode(), self.csrf(sid).encode())


@dataclass(frozen=True)
class Binding:
    """Where the console listens, and so which ``Host`` and ``Origin`` values are its own."""

    host: str
    port: int
    names: frozenset[str] = field(default_factory=frozenset)
    """Host names accepted besides the bound host (filled by :meth:`make`)."""
    any_ip: bool = False
    """Accept any IP literal as the Host (a wildcard bind: the console's address is not known)."""

    @classmethod
    def make(cls, host: str, port: int) -> Binding:
        """The binding of ``host:port`` with the names a browser may use to reach it."""
        names = {host.lower().strip("[]")}
        any_ip = False
        if is_loopback(host):
            names |= {"localhost", "127.0.0.1", "::1"}
        elif host in WILDCARD_HOSTS:
            any_ip = True
            names |= {"localhost"}
            for name in (socket.gethostname(), socket.getfqdn()):
                if name:
                    names.add(name.lower())
        return cls(host, port, frozenset(names), any_ip)

    def host_ok(self, value: str | None) -> bool:
        """Whether a ``Host`` header (``name[:port]``) names this console on its port."""
        if not value:
            return False
        try:
            parts = urlsplit(f"//{value}")
            name, port = (parts.hostname or "").lower(), parts.port
        except ValueError:
            return False
        if port is not None and port != self.port:
            return False
        if port is None and self.port != 80:
            return False
        if name in self.names:
            return True
        if self.any_ip:
            try:
                ipaddress.ip_address(name)
                return True
            except ValueError:
                return False
        return False

    def origin_ok(self, origin: str, host_header: str) -> bool:
        """Whether an ``Origin`` (or a ``Referer``'s origin) is this console as the request
        reached it: ``http://`` + the request's own (already checked) Host."""
        try:
            parts = urlsplit(origin)
        except ValueError:
            return False
        return parts.scheme == "http" and parts.netloc.lower() == host_header.lower()


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in scope.get("headers") or []:
        key = k.decode("latin-1").lower()
        val = v.decode("latin-1")
        out[key] = f"{out[key]}; {val}" if key == "cookie" and key in out else val
    return out


def cookie_value(headers: dict[str, str]) -> str | None:
    """The console's session cookie in a request's headers, or None."""
    raw = headers.get("cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # a malformed Cookie header: no session
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else None


async def refuse(send: Send, status: int, message: str, *, html: bool) -> None:
    """Answer ``status`` with ``message`` (JSON ``{"error": ...}`` or a small HTML page)."""
    if html:
        from html import escape

        login = (
            '<p><a href="/login">Log in</a> with the token <code>cfa console</code> printed.</p>'
            if status == 401
            else ""
        )
        body = (
            '<!doctype html><html><head><meta charset="utf-8"><title>cfa console: refused'
            '</title><link rel="stylesheet" href="/static/console.css"></head><body>'
            f'<main><h1>{status}</h1><p class="flash error">{escape(message)}</p>{login}'
            "</main></body></html>"
        ).encode()
        ctype = b"text/html; charset=utf-8"
    else:
        body = json.dumps({"error": message}).encode()
        ctype = b"application/json"
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="cfa console"'))
    await send(
        {"type": "http.response.start", "status": status, "headers": [*headers, *SECURITY_HEADERS]}
    )
    await send({"type": "http.response.body", "body": body})


class Guard:
    """The ASGI middleware enforcing the checks of this module's docstring.

    A request that passes gets ``scope["state"]["auth"]``: ``{"via": "bearer"|"cookie"|None,
    "sid": session id or None, "csrf": its CSRF token or None}`` for the routes and templates.
    """

    def __init__(self, app: ASGIApp, tokens: Tokens, binding: Binding) -> None:
        self.app = app
        self.tokens = tokens
        self.binding = binding

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        path: str = scope.get("path", "/")
        wants_html = not path.startswith("/api/") and "text/html" in headers.get("accept", "")
        host = headers.get("host")
        if not self.binding.host_ok(host):
            await refuse(
                send, 403, f"Host {host!r} is not this console (DNS rebinding?)", html=wants_html
            )
            return
        assert host is not None
        method = scope.get("method", "GET").upper()
        if method not in ("GET", "HEAD"):
            why = self._provenance_problem(headers, host)
            if why:
                await refuse(send, 403, why, html=wants_html)
                return
        auth: dict[str, Any] = {"via": None, "sid": None, "csrf": None}
        bearer = headers.get("authorization", "")
        if bearer:
            scheme, _, given = bearer.partition(" ")
            if scheme.lower() != "bearer" or not self.tokens.check_token(given.strip()):
                await refuse(send, 401, "bad token in the Authorization header", html=wants_html)
                return
            auth["via"] = "bearer"
        else:
            cookie = cookie_value(headers)
            sid = self.tokens.session_of(cookie) if cookie else None
            if cookie and sid is None and not path.startswith(PUBLIC_PREFIXES):
                await refuse(send, 401, "bad or expired session cookie: log in again", html=True)
                return
            if sid is not None:
                auth.update(via="cookie", sid=sid, csrf=self.tokens.csrf(sid))
        if auth["via"] is None and not path.startswith(PUBLIC_PREFIXES):
            await refuse(
                send,
                401,
                "not logged in: open the login URL `cfa console` printed, or send "
                "Authorization: Bearer <token>",
                html=wants_html,
            )
            return
        scope.setdefault("state", {})["auth"] = auth
        if method not in ("GET", "HEAD") and auth["via"] == "cookie":
            checked = await self._check_csrf(scope, receive, send, headers, auth, wants_html)
            if checked is None:
                return
            receive = checked
        await self.app(scope, receive, self._with_headers(send))

    def _provenance_problem(self, headers: dict[str, str], host: str) -> str | None:
        """Why a POST does not come from this console, or None when it does."""
        origin = headers.get("origin")
        if origin and origin != "null":
            if not self.binding.origin_ok(origin, host):
                return f"Origin {origin!r} is not this console: refused"
            return None
        site = headers.get("sec-fetch-site")
        if site is not None:
            if site != "same-origin":
                return f"a {site} request (Sec-Fetch-Site) may not change state: refused"
            return None
        referer = headers.get("referer")
        if referer:
            if not self.binding.origin_ok(referer, host):
                return "Referer is not this console: refused"
            return None
        if origin == "null":
            return "Origin null (an opaque origin) may not change state: refused"
        return None  # no browser metadata: a program, which needs the token anyway

    async def _check_csrf(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        auth: dict[str, Any],
        wants_html: bool,
    ) -> Receive | None:
        """The receive to pass on when the CSRF token is present and right; None after a 403."""
        sid = auth["sid"]
        if self.tokens.check_csrf(sid, headers.get(CSRF_HEADER)):
            return receive
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            await refuse(send, 403, "missing or wrong CSRF token (X-CSRF-Token)", html=wants_html)
            return None
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return None  # the client went away
            body += message.get("body", b"")
            more = bool(message.get("more_body"))
            if len(body) > MAX_FORM_BYTES:
                await refuse(send, 413, "form too large", html=wants_html)
                return None
        fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        given = next(iter(fields.get(CSRF_FIELD) or []), None)
        if not self.tokens.check_csrf(sid, given):
            await refuse(
                send,
                403,
                "missing or wrong CSRF token: reload the page and try again",
                html=True,
            )
            return None
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        return replay

    @staticmethod
    def _with_headers(send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in SECURITY_HEADERS if k not in names
                ]
            await send(message)

        return wrapped
