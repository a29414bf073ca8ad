"""An in-repo Kalshi stand-in: a real HTTP + WebSocket server on 127.0.0.1 for tests.

``StandIn`` (server side, faults), ``World`` (markets, books, matching, account) and
``test_key()`` (an RSA key generated at test time; no key file is ever written to the repo).
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.hazmat.primitives.asymmetric import rsa

from .server import Fault, Faults, StandIn
from .world import ApiError, World

__all__ = ["ApiError", "Fault", "Faults", "StandIn", "World", "test_key"]


@lru_cache(maxsize=1)
def test_key() -> rsa.RSAPrivateKey:
    """A 2048-bit RSA key made once per test process."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


test_key.__test__ = False  # type: ignore[attr-defined]
