"""Helpers shared by the Kalshi test modules: a running stand-in and adapters wired to it."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from cfa.exchange.kalshi.adapter import KalshiExchange
from cfa.exchange.kalshi.auth import Signer

from . import StandIn, World, test_key

_THREAD_LOOPS: dict[int, asyncio.AbstractEventLoop] = {}

KEY_ID = "0f6e1c2a-5b7d-4c1e-9a3b-standin00001"
MARKETS = ("KXSTANDIN-26DEC31-T50", "KXDECI-26DEC31-B40")


def make_world(seed: int = 5) -> World:
    w = World(seed=seed)
    w.add_market(MARKETS[0])
    w.add_market(
        MARKETS[1],
        structure="deci_cent",
        yes_band=(3000, 3900),
        no_band=(5000, 5900),
    )
    return w


def write_test_pem(path: Path) -> Path:
    """Write the stand-in's private key to ``path`` as an unencrypted PKCS#8 PEM file."""
    path.write_bytes(
        test_key().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def use_standin(monkeypatch: pytest.MonkeyPatch, s: StandIn, pem: Path | None) -> None:
    """Point the ``CFA_KALSHI_*`` settings at stand-in ``s`` (with the key file ``pem``;
    None: no credentials at all)."""
    monkeypatch.setenv("CFA_KALSHI_BASE_URL", s.base_url)
    monkeypatch.setenv("CFA_KALSHI_WS_URL", s.ws_url)
    if pem is None:
        for var in ("CFA_KALSHI_KEY_ID", "CFA_KALSHI_PRIVATE_KEY_PATH"):
            monkeypatch.delenv(var, raising=False)
        return
    monkeypatch.setenv("CFA_KALSHI_KEY_ID", KEY_ID)
    monkeypatch.setenv("CFA_KALSHI_PRIVATE_KEY_PATH", str(pem))


def signer() -> Signer:
    return Signer(KEY_ID, test_key())


@asynccontextmanager
async def running_standin(**kw: Any) -> AsyncIterator[StandIn]:
    s = StandIn(test_key().public_key(), KEY_ID, world=kw.pop("world", None) or make_world(), **kw)
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def adapter(s: StandIn, **kw: Any) -> KalshiExchange:
    kw.setdefault("timeout", 1.0)
    kw.setdefault("ws_backoff", 0.02)
    return KalshiExchange(s.base_url, s.ws_url, signer(), **kw)


@contextmanager
def standin_thread(**kw: Any) -> Iterator[StandIn]:
    """A stand-in served from its own event loop in a daemon thread (for sync callers)."""
    ready = threading.Event()
    box: dict[str, Any] = {}
    world = kw.pop("world", None) or make_world()

    def main() -> None:
        loop = asyncio.new_event_loop()
        box["loop"] = loop
        s = StandIn(test_key().public_key(), KEY_ID, world=world, **kw)
        loop.run_until_complete(s.start())
        box["standin"] = s
        _THREAD_LOOPS[id(s)] = loop
        ready.set()
        loop.run_forever()
        loop.run_until_complete(s.stop())
        loop.close()

    th = threading.Thread(target=main, daemon=True)
    th.start()
    ready.wait(10)
    try:
        yield box["standin"]
    finally:
        _THREAD_LOOPS.pop(id(box["standin"]), None)
        box["loop"].call_soon_threadsafe(box["loop"].stop)
        th.join(10)


def call_in(s: StandIn, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """Run ``fn(*args, **kw)`` on the event loop of a :func:`standin_thread` stand-in (its
    world is not thread-safe) and return its result; coroutine functions are awaited there."""
    loop = _THREAD_LOOPS[id(s)]
    if inspect.iscoroutinefunction(fn):
        return asyncio.run_coroutine_threadsafe(fn(*args, **kw), loop).result(10)

    async def call() -> Any:
        return fn(*args, **kw)

    return asyncio.run_coroutine_threadsafe(call(), loop).result(10)
