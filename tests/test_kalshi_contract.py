"""The shared Exchange contract suite, run against KalshiExchange talking to the stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from exchange_contract import ExchangeContract, ExchangeFactory
from kalshi_standin import StandIn
from kalshi_standin.fixtures import adapter, make_world, running_standin

from cfa.exchange.base import Exchange
from cfa.exchange.kalshi.adapter import KalshiExchange


@pytest.fixture
async def exchange_factory() -> AsyncIterator[ExchangeFactory]:
    made: list[tuple[KalshiExchange, StandIn]] = []
    servers = []

    async def make() -> Exchange:
        cm = running_standin(world=make_world(), churn_batch=4)
        standin = await cm.__aenter__()
        servers.append(cm)
        ex = adapter(standin)
        await ex.start()
        made.append((ex, standin))
        return ex

    yield make
    for ex, _ in made:
        await ex.close()
    for cm in servers:
        await cm.__aexit__(None, None, None)


def test_kalshi_exchange_satisfies_the_protocol() -> None:
    ex = KalshiExchange("http://127.0.0.1:1/trade-api/v2", "ws://127.0.0.1:1", _signer())
    assert isinstance(ex, Exchange)


def _signer():
    from kalshi_standin.fixtures import signer

    return signer()


class TestKalshiContract(ExchangeContract):
    pass
