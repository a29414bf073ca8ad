"""Kalshi request signing: RSA-PSS (SHA-256, MGF1-SHA256, salt = digest length).

Every authenticated request carries three headers:

* ``KALSHI-ACCESS-KEY``: the key id;
* ``KALSHI-ACCESS-TIMESTAMP``: Unix time in **milliseconds**, as a decimal string;
* ``KALSHI-ACCESS-SIGNATURE``: standard base64 of the signature over
  ``timestamp_ms + METHOD + path`` (UTF-8, no separators), where ``path`` starts at the root,
  includes ``/trade-api/v2`` and excludes the query string and the host. The body is not signed.

The WebSocket upgrade signs ``GET`` + ``/trade-api/ws/v2``.

The private key lives only inside a :class:`Signer`; its ``repr``/``str`` show the key id and
the key size, never key material, and no error raised here quotes the PEM text.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cfa.exchange.kalshi.errors import KalshiAuthError
from cfa.exchange.kalshi.settings import KalshiSettings

KEY_HEADER = "KALSHI-ACCESS-KEY"
TIMESTAMP_HEADER = "KALSHI-ACCESS-TIMESTAMP"
SIGNATURE_HEADER = "KALSHI-ACCESS-SIGNATURE"
WS_SIGN_PATH = "/trade-api/ws/v2"
"""The path the WebSocket upgrade signs."""


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def signed_path(url_or_path: str) -> str:
    """The path that is signed: the URL's path (from the root), without query or host."""
    return urlsplit(url_or_path).path or "/"


def message(timestamp_ms: int | str, method: str, path: str) -> bytes:
    """The signed message ``timestamp_ms + METHOD + path`` (path without the query)."""
    return f"{timestamp_ms}{method.upper()}{signed_path(path)}".encode()


class Signer:
    """Holds a key id and its RSA private key; produces the three auth headers.

    ``clock`` returns epoch seconds (injected for tests). The key object is kept in a private
    slot and never appears in ``repr``, ``str``, pickles or error messages.
    """

    __slots__ = ("__key", "_clock", "key_id")

    def __init__(
        self,
        key_id: str,
        private_key: rsa.RSAPrivateKey,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not key_id:
            raise KalshiAuthError("Kalshi key id is empty (set CFA_KALSHI_KEY_ID)", code="no_key")
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise KalshiAuthError("Kalshi private key is not an RSA key", code="bad_key")
        self.key_id = key_id
        self.__key = private_key
        self._clock = clock

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id!r}, key=<RSA-{self.__key.key_size} hidden>)"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Signer holds a private key and cannot be pickled")

    def public_key(self) -> rsa.RSAPublicKey:
        """The public half (safe to share; used by tests and the stand-in)."""
        return self.__key.public_key()

    def sign(self, timestamp_ms: int | str, method: str, path: str) -> str:
        """Base64 RSA-PSS signature of ``timestamp_ms + METHOD + path`` (query dropped)."""
        sig = self.__key.sign(message(timestamp_ms, method, path), _pss(), hashes.SHA256())
        return base64.b64encode(sig).decode("ascii")

    def headers(self, method: str, path: str) -> dict[str, str]:
        """The three ``KALSHI-ACCESS-*`` headers for a request now."""
        ts = str(int(self._clock() * 1000))
        return {
            KEY_HEADER: self.key_id,
            TIMESTAMP_HEADER: ts,
            SIGNATURE_HEADER: self.sign(ts, method, path),
        }

    def ws_headers(self, ws_path: str = WS_SIGN_PATH) -> dict[str, str]:
        """Headers for the WebSocket upgrade (signs ``GET`` + ``/trade-api/ws/v2``)."""
        return self.headers("GET", ws_path)


def verify(
    public_key: rsa.RSAPublicKey,
    signature_b64: str,
    timestamp_ms: int | str,
    method: str,
    path: str,
) -> bool:
    """True when ``signature_b64`` is a valid signature of that request (the stand-in's check)."""
    try:
        sig = base64.b64decode(signature_b64, validate=True)
        public_key.verify(sig, message(timestamp_ms, method, path), _pss(), hashes.SHA256())
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def load_private_key(path: str | Path, password: bytes | None = None) -> rsa.RSAPrivateKey:
    """Read an RSA private key from a PEM file; errors name the file, never its contents."""
    p = Path(path).expanduser()
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise KalshiAuthError(
            f"CFA_KALSHI_PRIVATE_KEY_PATH: no such file {str(p)!r}", code="no_key"
        ) from None
    except OSError as exc:
        raise KalshiAuthError(
            f"CFA_KALSHI_PRIVATE_KEY_PATH: cannot read {str(p)!r}: {exc.strerror}", code="bad_key"
        ) from None
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError):
        # the parser's own message may quote bytes of the file: do not chain it
        raise KalshiAuthError(
            f"CFA_KALSHI_PRIVATE_KEY_PATH: {str(p)!r} is not a PEM RSA private key",
            code="bad_key",
        ) from None
    finally:
        del data
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KalshiAuthError(
            f"CFA_KALSHI_PRIVATE_KEY_PATH: {str(p)!r} holds a non-RSA key", code="bad_key"
        )
    return key


def load_signer(settings: KalshiSettings, clock: Callable[[], float] = time.time) -> Signer:
    """A :class:`Signer` from settings; one :class:`KalshiAuthError` naming what is missing."""
    missing = settings.missing()
    if missing:
        raise KalshiAuthError(
            f"Kalshi credentials missing: set {' and '.join(missing)}", code="no_credentials"
        )
    assert settings.key_id is not None and settings.private_key_path is not None
    return Signer(settings.key_id, load_private_key(settings.private_key_path), clock)
