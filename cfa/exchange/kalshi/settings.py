"""Kalshi connection settings, from the environment (``CFA_KALSHI_*``) or a ``.env``-style file.

=============================  ============================================================
``CFA_KALSHI_KEY_ID``          API key id (a UUID string), sent as ``KALSHI-ACCESS-KEY``.
``CFA_KALSHI_PRIVATE_KEY_PATH``  PEM file holding the RSA private key of that key id.
``CFA_KALSHI_ENV``             ``demo`` (default) or ``prod``: picks the REST and WS hosts.
``CFA_KALSHI_BASE_URL``        Overrides the REST base (must end in ``/trade-api/v2``).
``CFA_KALSHI_WS_URL``          Overrides the WebSocket URL (``…/trade-api/ws/v2``).
=============================  ============================================================

The settings hold only the *path* of the key, never its contents: the key is read by
:func:`cfa.exchange.kalshi.auth.load_signer` and kept wrapped in a :class:`~auth.Signer`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

HOSTS: dict[str, tuple[str, str]] = {
    "demo": (
        "https://external-api.demo.kalshi.co/trade-api/v2",
        "wss://external-api-ws.demo.kalshi.co/trade-api/ws/v2",
    ),
    "prod": (
        "https://external-api.kalshi.com/trade-api/v2",
        "wss://external-api-ws.kalshi.com/trade-api/ws/v2",
    ),
}
"""Kalshi's recommended REST base and WebSocket URL per environment (reference §2)."""


class KalshiSettings(BaseSettings):
    """Where and as whom to connect. Read from ``CFA_KALSHI_*`` variables or ``env_file``."""

    model_config = SettingsConfigDict(env_prefix="CFA_KALSHI_", extra="ignore")

    key_id: str | None = Field(default=None, description="API key id (KALSHI-ACCESS-KEY).")
    private_key_path: Path | None = Field(default=None, description="RSA private key, PEM file.")
    env: Literal["demo", "prod"] = "demo"
    base_url: str | None = None
    ws_url: str | None = None

    @property
    def rest_url(self) -> str:
        """The REST base URL, ``…/trade-api/v2`` without a trailing slash."""
        return (self.base_url or HOSTS[self.env][0]).rstrip("/")

    @property
    def websocket_url(self) -> str:
        """The WebSocket URL."""
        return (self.ws_url or HOSTS[self.env][1]).rstrip("/")

    def missing(self) -> list[str]:
        """Names of the credential settings that are not set (empty when complete)."""
        out = []
        if not self.key_id:
            out.append("CFA_KALSHI_KEY_ID")
        if self.private_key_path is None or not str(self.private_key_path):
            out.append("CFA_KALSHI_PRIVATE_KEY_PATH")
        return out


def load_settings(env_file: str | Path | None = None) -> KalshiSettings:
    """Settings from the environment, then ``env_file`` (``KEY=value`` lines) if given."""
    if env_file is None:
        return KalshiSettings()
    return KalshiSettings(_env_file=str(env_file))  # type: ignore[call-arg]
