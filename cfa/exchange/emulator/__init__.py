"""The venue emulator: the matching engine for our own orders where they never leave the process.

Every venue of cfa except live Kalshi emulates our side of the exchange: the simulator, the
recorded-feed replay and paper trading share this package (the audit replay answers with the
recorded run's answers instead). One idea per module:

* :mod:`~cfa.exchange.emulator.orders` — :class:`OrderDesk`: validates, registers and answers
  our orders (place / amend / cancel / cancel-all, idempotent client order ids, post-only,
  grid, reduce-only, balance checks) and the account queries; the venue plugs its matching in;
* :mod:`~cfa.exchange.emulator.account` — :class:`Account`: cash, positions, Kalshi fees and
  their rounding, settlement;
* :mod:`~cfa.exchange.emulator.fills` — the named fill models ``through``, ``touch`` and
  ``queue`` for books we do not control;
* :mod:`~cfa.exchange.emulator.book` — :class:`BookEmulator`: our orders against a feed's book
  (a recording, or live market data), filled by one of those models.

The simulator's own book (:mod:`cfa.exchange.sim.matching`) is a book it *does* control: its
background takers reach our orders through real price-time queues, so it is the queue-position
model made exact, and it plugs into the same :class:`OrderDesk`. Time comes from
:mod:`cfa.exchange.clock`.
"""

from cfa.exchange.emulator.account import Account
from cfa.exchange.emulator.book import BookEmulator, EmulatedMarket
from cfa.exchange.emulator.fills import FILL_MODELS, FillModel, fill_model
from cfa.exchange.emulator.orders import OrderDesk, OwnOrder

__all__ = [
    "FILL_MODELS",
    "Account",
    "BookEmulator",
    "EmulatedMarket",
    "FillModel",
    "OrderDesk",
    "OwnOrder",
    "fill_model",
]
