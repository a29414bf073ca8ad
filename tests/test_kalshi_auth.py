"""Signing, key handling, settings and error mapping (no network)."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from kalshi_standin import test_key
from kalshi_standin.fixtures import write_test_pem

from cfa.exchange.base import MarketNotFound, OrderNotFound, OrderRejected
from cfa.exchange.kalshi.auth import (
    KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Signer,
    load_private_key,
    load_signer,
    message,
    verify,
)
from cfa.exchange.kalshi.errors import (
    KalshiAuthError,
    KalshiExchangePaused,
    KalshiInvalidOrder,
    KalshiMarketNotFound,
    KalshiNotFound,
    KalshiRateLimited,
    KalshiServerError,
    error_from_response,
)
from cfa.exchange.kalshi.settings import HOSTS, KalshiSettings


def _pem(tmp_path: Path) -> Path:
    return write_test_pem(tmp_path / "key.pem")


def test_signature_is_rsa_pss_sha256_over_ts_method_path() -> None:
    s = Signer("key-1", test_key(), clock=lambda: 1703123456.789)
    h = s.headers("get", "/trade-api/v2/portfolio/orders?limit=5")
    assert h[KEY_HEADER] == "key-1"
    assert h[TIMESTAMP_HEADER] == "1703123456789"
    assert message(h[TIMESTAMP_HEADER], "get", "/trade-api/v2/portfolio/orders?limit=5") == (
        b"1703123456789GET/trade-api/v2/portfolio/orders"
    )
    sig = base64.b64decode(h[SIGNATURE_HEADER], validate=True)
    # verify independently with the public key: PSS, MGF1-SHA256, salt = digest length (32)
    test_key().public_key().verify(
        sig,
        b"1703123456789GET/trade-api/v2/portfolio/orders",
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )
    pub = test_key().public_key()
    assert verify(
        pub, h[SIGNATURE_HEADER], "1703123456789", "GET", "/trade-api/v2/portfolio/orders"
    )
    assert not verify(
        pub, h[SIGNATURE_HEADER], "1703123456789", "POST", "/trade-api/v2/portfolio/orders"
    )
    assert not verify(
        pub, h[SIGNATURE_HEADER], "1703123456790", "GET", "/trade-api/v2/portfolio/orders"
    )
    # a full URL signs only its path
    assert (
        message(1, "DELETE", "https://x.kalshi.co/trade-api/v2/a/b?q=1")
        == b"1DELETE/trade-api/v2/a/b"
    )


def test_websocket_upgrade_signs_get_ws_path() -> None:
    s = Signer("key-1", test_key(), clock=lambda: 1.0)
    h = s.ws_headers()
    assert verify(test_key().public_key(), h[SIGNATURE_HEADER], "1000", "GET", "/trade-api/ws/v2")


def _secret_fragments() -> list[str]:
    pem = (
        test_key()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    body = [line for line in pem.splitlines() if "-----" not in line]
    d = test_key().private_numbers().d
    return [*body[1:4], str(d)[:40], hex(d)[2:42]]


def test_key_never_in_repr_str_or_pickle(tmp_path: Path) -> None:
    s = load_signer(KalshiSettings(key_id="abc", private_key_path=_pem(tmp_path)))
    for text in (repr(s), str(s), f"{s}", repr(KalshiSettings(key_id="abc"))):
        for frag in _secret_fragments():
            assert frag not in text
    assert "hidden" in repr(s)
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(s)


def test_missing_and_bad_credentials_name_what_is_missing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(KalshiAuthError) as exc:
        load_signer(KalshiSettings(key_id=None, private_key_path=None))
    assert "CFA_KALSHI_KEY_ID" in str(exc.value) and "CFA_KALSHI_PRIVATE_KEY_PATH" in str(exc.value)
    with pytest.raises(KalshiAuthError) as exc:
        load_signer(KalshiSettings(key_id="k", private_key_path=None))
    assert str(exc.value) == "Kalshi credentials missing: set CFA_KALSHI_PRIVATE_KEY_PATH"
    with pytest.raises(KalshiAuthError, match="no such file"):
        load_private_key(tmp_path / "nope.pem")
    bad = tmp_path / "bad.pem"
    secretish = "-----BEGIN PRIVATE KEY-----\nTOPSECRETMATERIAL\n-----END PRIVATE KEY-----\n"
    bad.write_text(secretish)
    with pytest.raises(KalshiAuthError) as exc:
        load_private_key(bad)
    assert "not a PEM RSA private key" in str(exc.value)
    assert (
        exc.value.__cause__ is None and exc.value.__context__ is None
    ) or "TOPSECRET" not in repr(exc.value.__context__)
    assert "TOPSECRET" not in str(exc.value)


def test_settings_hosts_and_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for k in ("KEY_ID", "PRIVATE_KEY_PATH", "ENV", "BASE_URL", "WS_URL"):
        monkeypatch.delenv(f"CFA_KALSHI_{k}", raising=False)
    s = KalshiSettings()
    assert (
        s.env == "demo" and s.rest_url == HOSTS["demo"][0] and s.websocket_url == HOSTS["demo"][1]
    )
    monkeypatch.setenv("CFA_KALSHI_ENV", "prod")
    assert KalshiSettings().rest_url == "https://external-api.kalshi.com/trade-api/v2"
    monkeypatch.setenv("CFA_KALSHI_BASE_URL", "http://127.0.0.1:9/trade-api/v2/")
    monkeypatch.setenv("CFA_KALSHI_WS_URL", "ws://127.0.0.1:9/trade-api/ws/v2")
    s = KalshiSettings()
    assert s.rest_url == "http://127.0.0.1:9/trade-api/v2"
    assert s.websocket_url == "ws://127.0.0.1:9/trade-api/ws/v2"
    env = tmp_path / "kalshi.env"
    env.write_text("CFA_KALSHI_KEY_ID=from-file\nCFA_KALSHI_PRIVATE_KEY_PATH=/x.pem\n")
    from cfa.exchange.kalshi.settings import load_settings

    s = load_settings(env)
    assert s.key_id == "from-file" and s.missing() == []


def test_error_mapping_carries_kalshi_code_and_message() -> None:
    e = error_from_response(
        401,
        {"error": {"code": "authentication_error", "message": "authentication_error"}},
        what="GET /portfolio/balance",
    )
    assert isinstance(e, KalshiAuthError) and e.code == "authentication_error" and e.status == 401
    e = error_from_response(429, {"error": "too many requests"})
    assert isinstance(e, KalshiRateLimited) and e.code == "rate_limited"
    assert "too many requests" in str(e)
    assert isinstance(error_from_response(503, "oops"), KalshiServerError)
    e = error_from_response(
        400,
        {
            "error": {
                "code": "invalid_order",
                "message": "invalid order",
                "details": "post only cross",
            }
        },
    )
    assert isinstance(e, KalshiInvalidOrder) and isinstance(e, OrderRejected)
    assert e.code == "post_only_cross" and e.kalshi_code == "invalid_order"
    assert error_from_response(400, {"error": {"code": "invalid_price", "message": "x"}}).code == (
        "invalid_price"
    )
    e = error_from_response(400, {"error": {"code": "trading_paused", "message": "paused"}})
    assert isinstance(e, KalshiExchangePaused) and isinstance(e, OrderRejected)
    e = error_from_response(404, {"error": {"code": "not_found", "message": "x"}})
    assert isinstance(e, KalshiNotFound) and isinstance(e, OrderNotFound)
    e = error_from_response(404, {"error": {"code": "not_found", "message": "x"}}, market=True)
    assert isinstance(e, KalshiMarketNotFound) and isinstance(e, MarketNotFound)
    logging.getLogger("x").info("%r", e)  # reprs are plain
    assert "KalshiMarketNotFound(code='not_found'" in repr(e)
