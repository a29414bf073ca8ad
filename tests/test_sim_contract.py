"""The Exchange contract suite, run against the simulator on every shipped scenario."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from exchange_contract import ExchangeContract, ExchangeFactory

from cfa.exchange.base import Exchange
from cfa.exchange.sim import SimExchange, known_scenarios


@pytest.fixture(params=known_scenarios())
async def exchange_factory(request: pytest.FixtureRequest) -> AsyncIterator[ExchangeFactory]:
    made: list[SimExchange] = []

    async def make() -> Exchange:
        ex = SimExchange.from_scenarios([request.param], seed=11, duration=3600)
        await ex.start()
        made.append(ex)
        return ex

    yield make
    for ex in made:
        await ex.close()


def test_sim_exchange_satisfies_the_protocol() -> None:
    assert isinstance(SimExchange.from_scenarios(["calm"]), Exchange)


class TestSimContract(ExchangeContract):
    pass
