"""Typed Kalshi errors, all under :class:`cfa.exchange.base.ExchangeError`.

Every error carries Kalshi's own ``code`` (``invalid_order``, ``authentication_error``, …, or
``rate_limited`` for the flat 429 body), its ``message`` and ``details`` when given, and the HTTP
``status``. Where cfa's contract names a more precise code (``post_only_cross``,
``invalid_price``) that code is ``code`` and Kalshi's original is ``kalshi_code``.

Hierarchy::

    ExchangeError
    └── KalshiError
        ├── KalshiAuthError          401 / 403, missing or bad credentials
        ├── KalshiRateLimited        429
        ├── KalshiServerError        5xx, timeouts, dropped connections (transient)
        ├── KalshiExchangePaused     exchange or trading paused, market inactive
        ├── KalshiInvalidOrder       400 / 409 on an order (also an OrderRejected)
        ├── KalshiNotFound           404 (also an OrderNotFound)
        └── KalshiMarketNotFound     404 on a market (also a MarketNotFound)
"""

from __future__ import annotations

from typing import Any

from cfa.exchange.base import ExchangeError, MarketNotFound, OrderNotFound, OrderRejected


class KalshiError(ExchangeError):
    """An error answered by (or on the way to) Kalshi. Never contains credentials."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: str | None = None,
        kalshi_code: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.details = details
        self.kalshi_code = kalshi_code if kalshi_code is not None else code

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status!r}, msg={self!s})"


class KalshiAuthError(KalshiError):
    """Missing, unreadable or rejected credentials (401/403)."""


class KalshiRateLimited(KalshiError):
    """HTTP 429: a token bucket ran dry. Retry later; Kalshi sends no Retry-After."""


class KalshiServerError(KalshiError):
    """5xx, a timeout or a broken connection: transient, retry idempotent calls."""


class KalshiExchangePaused(KalshiError, OrderRejected):
    """The exchange or trading is paused, or the market is not active."""


class KalshiInvalidOrder(KalshiError, OrderRejected):
    """Kalshi refused the order (bad price, size, post-only cross, duplicate id, ...)."""


class KalshiNotFound(KalshiError, OrderNotFound):
    """No such order (or object)."""


class KalshiMarketNotFound(KalshiError, MarketNotFound):
    """No such market."""


_PAUSED = {"exchange_paused", "trading_paused", "market_inactive", "market_closed"}


def _cfa_code(code: str, details: str) -> str:
    """cfa's contract code for a Kalshi code + details (``post only cross`` → post_only_cross)."""
    text = f"{code} {details}".lower().replace("-", " ").replace("_", " ")
    if "post only" in text and "cross" in text:
        return "post_only_cross"
    if "price" in text and code in {"invalid_order", "invalid_price", "invalid_parameters"}:
        return "invalid_price"
    return code


def error_from_response(
    status: int, body: Any, *, what: str = "request", market: bool = False
) -> KalshiError:
    """Map an HTTP error response to the typed hierarchy.

    ``body`` is the decoded JSON (``{"error": {"code", "message", "details"}}``, or the flat
    ``{"error": "too many requests"}`` of a 429) or raw text. ``market``: a 404 names a market.
    """
    code, message, details = "", "", ""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        code = str(err.get("code") or "")
        message = str(err.get("message") or "")
        details = str(err.get("details") or "")
    elif isinstance(err, str):
        message = err
    elif isinstance(body, str):
        message = body[:200]
    if status == 429:
        code = code or "rate_limited"
    code = code or f"http_{status}"
    text = f"{what}: HTTP {status} {code}" + (f": {message}" if message else "")
    if details and details != message:
        text += f" ({details})"
    kw: dict[str, Any] = {"status": status, "details": details or None, "kalshi_code": code}
    lowered = code.lower()
    if status in (401, 403) or "auth" in lowered:
        return KalshiAuthError(text, code=code, **kw)
    if status == 429:
        return KalshiRateLimited(text, code=code, **kw)
    if status >= 500:
        return KalshiServerError(text, code=code, **kw)
    if lowered in _PAUSED or "paused" in lowered:
        return KalshiExchangePaused(text, code=lowered, **kw)
    if status == 404:
        if market:
            return KalshiMarketNotFound(text, code=code, **kw)
        return KalshiNotFound(text, code=code, **kw)
    return KalshiInvalidOrder(text, code=_cfa_code(code, details), **kw)
