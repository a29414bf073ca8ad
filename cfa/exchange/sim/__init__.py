"""The embedded simulator: a seeded, deterministic, Kalshi-shaped :class:`Exchange`.

Modules, one idea each:

* :mod:`~cfa.exchange.sim.clock` — :class:`SimClock`, simulated time (the shared event clock);
* :mod:`~cfa.exchange.sim.scenarios` — named scenarios as YAML data (:func:`load_scenario`);
* :mod:`~cfa.exchange.sim.latent` — the latent probability (logit random walk, regimes, jumps);
* :mod:`~cfa.exchange.sim.event` — one latent process behind the markets of one event (a strike
  ladder or a mutually exclusive set: scenarios ``event-ladder``, ``event-exclusive``);
* :mod:`~cfa.exchange.sim.liquidity` — background book refreshes and takers, drawn in batches;
* :mod:`~cfa.exchange.sim.matching` — price-time priority with our orders in the queues;
* :mod:`~cfa.exchange.emulator` (shared with the feed replay and paper trading) — order checks
  and registry (:class:`~cfa.exchange.emulator.OrderDesk`), cash, positions, fees, settlement;
* :mod:`~cfa.exchange.sim.market` — one market's event loop and lifecycle;
* :mod:`~cfa.exchange.sim.exchange` — :class:`SimExchange`, the Exchange interface.

Quick use::

    ex = SimExchange.from_scenarios(["calm", "close-approach"], seed=7, duration=3600)
    async for event in ex.stream(ex.tickers):
        ...

``python -m cfa.exchange.sim`` measures how many events per second the simulator produces.
"""

from cfa.exchange.sim.clock import DEFAULT_START_TS, SimClock
from cfa.exchange.sim.exchange import DEFAULT_CASH, SimExchange
from cfa.exchange.sim.scenarios import Scenario, known_scenarios, load_scenario

__all__ = [
    "DEFAULT_CASH",
    "DEFAULT_START_TS",
    "Scenario",
    "SimClock",
    "SimExchange",
    "known_scenarios",
    "load_scenario",
]
