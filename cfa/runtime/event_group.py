"""The markets of one Kalshi event, quoted as one book of risk.

A ladder's neighbouring strikes and an exclusive set's outcomes move together; quoting each as
if it were alone holds YES on three neighbouring strikes as three small bets when it is one
large one. An :class:`EventGroup` is what the loops of one event share (one per event of two
or more related markets, built by the session from :func:`cfa.core.events.event_structures`):

* each loop reports its mid (dollars, others' orders) on every touch change and its inventory
  (contracts) on every fill; the mids feed :class:`cfa.core.covariance.EventCovariance`
  (correlation of logit-mid changes, shrunk toward the structure's prior);
* :meth:`cross_risk` gives the loop the multi-asset term of its reservation price,
  ``Σ_{j≠i} Σ_ij·q_j`` with ``Σ_ij = ρ_ij·σp_i·σp_j`` (``σp = p(1−p)·σ``, each market's own σ
  parameter), so that ``r_i = s_i − γ_i·τ_i·Σ_j Σ_ij·q_j`` (:mod:`cfa.core.multiasset`);
  :meth:`cross_skew` the GLFT closed form's ``√γ·Σ_{j≠i} Γ_ij·q_j``;
* :attr:`version` moves whenever a market's inventory does, so the siblings re-quote on their
  next event even when their own touch has not moved.

With ``quoting.event_aware`` off in the policy (per-market quoting, the evaluation's baseline)
the cross terms are 0 and the group only informs the agents' context and the risk report.

Units: prices in dollars, σ in logit units per √second, inventories in contracts, time in
seconds of the exchange's clock.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from cfa.core.consistency import FeeFn, Violation, check_event
from cfa.core.covariance import EventCovariance
from cfa.core.events import EventKind, EventStructure
from cfa.core.multiasset import (
    cross_inventory_risk_at,
    glft_cross_skew,
    glft_gamma_matrix,
    price_covariance,
)

if TYPE_CHECKING:
    from cfa.risk.policy import Policy

REFRESH_S = 5.0
"""The correlation is recomputed at least this often (event seconds)."""


class EventGroup:
    """Shared state of the loops of one event (see the module docstring). ``fee``: the taker
    fee per contract at a price (:func:`cfa.core.consistency.taker_fee_per_contract`), which a
    structure violation must exceed to be reported."""

    def __init__(self, structure: EventStructure, policy: Policy, fee: FeeFn | None = None) -> None:
        n = structure.n
        self.structure = structure
        self.event_ticker = structure.event_ticker
        self.index = {t: i for i, t in enumerate(structure.tickers)}
        self.aware = policy.quoting.event_aware
        """Covariance-aware quoting (``quoting.event_aware``); off: cross terms are 0."""
        self.mids: list[float | None] = [None] * n
        self.touch: list[tuple[int | None, int | None]] = [(None, None)] * n
        """Each market's touch of everyone else (price units), for the consistency checks."""
        self.inventory = [0.0] * n
        self.sigmas = [policy.params.sigma.default] * n
        self.cov = EventCovariance(n, structure=structure)
        self._fee = fee
        self.version = 0
        """Moves whenever a market's inventory does (the siblings' quotes depend on it)."""
        self.now = -math.inf
        self._cross: dict[int, tuple[tuple[object, ...], float]] = {}
        self._corr: list[list[float]] | None = None
        self._corr_key: tuple[int, int] = (-1, -1)

    # -- what the loops report ------------------------------------------------------------------

    def on_touch(self, i: int, t: float, bid: int | None, ask: int | None, mid: float) -> None:
        """Market ``i``'s touch (others' orders, price units) and mid (dollars) at time ``t``."""
        self.touch[i] = (bid, ask)
        self.mids[i] = mid
        self.now = t
        self.cov.on_mid(i, t, mid)

    def on_inventory(self, i: int, contracts: float) -> None:
        """Market ``i``'s inventory (net YES contracts) changed."""
        if contracts != self.inventory[i]:
            self.inventory[i] = contracts
            self.version += 1

    # -- what the loops read --------------------------------------------------------------------

    def probabilities(self) -> list[float]:
        """Each market's mid, or the structure's neutral guess where there is none yet."""
        mids = self.mids
        if all(m is not None for m in mids):
            return [m for m in mids if m is not None]
        n = len(mids)
        guess = 1.0 / n if self.structure.kind is EventKind.EXCLUSIVE else 0.5
        return [guess if m is None else m for m in mids]

    def correlation(self) -> list[list[float]]:
        """ρ of the markets' logit-mid changes (the prior alone while warming up), as nested
        lists; recomputed when the estimator takes a sample, and at least every
        :data:`REFRESH_S` of event time (the prior moves with the probabilities)."""
        key = (self.cov.samples, int(self.now // REFRESH_S) if self.now > -math.inf else -1)
        if self._corr is None or key != self._corr_key:
            self._corr = self.cov.correlation(self.probabilities()).tolist()
            self._corr_key = key
        return self._corr

    def cross_risk(self, i: int, sigma: float) -> float:
        """``Σ_{j≠i} Σ_ij·q_j`` for market ``i`` quoting with logit σ ``sigma`` (dollars²/s ×
        contracts; 0 when not event-aware or nothing else is held)."""
        key = self._cross_key(i, sigma)
        if key is None:
            return 0.0
        hit = self._cross.get(i)
        if hit is not None and hit[0] == key:
            return hit[1]
        p = self.probabilities()
        si = p[i] * (1.0 - p[i]) * sigma
        row = [
            rho * si * pj * (1.0 - pj) * sj
            for rho, pj, sj in zip(self.correlation()[i], p, self.sigmas, strict=True)
        ]
        total = cross_inventory_risk_at(row, self.inventory, i)
        self._cross[i] = (key, total)
        return total

    def cross_skew(self, i: int, gamma: float, sigma: float, A: float, k: float) -> float:
        """GLFT's multi-asset ``√γ·Σ_{j≠i} Γ_ij·q_j`` for market ``i`` (dollars), every market
        taken at ``A``, ``k`` and unit order size (0 when not event-aware or nothing else is
        held)."""
        key = self._cross_key(i, sigma, gamma, A, k)
        if key is None:
            return 0.0
        hit = self._cross.get(i)
        if hit is not None and hit[0] == key:
            return hit[1]
        n = len(self.inventory)
        cov = price_covariance(self.probabilities(), self.sigmas, np.array(self.correlation()))
        g = glft_gamma_matrix(cov, [A] * n, [k] * n, [1.0] * n)
        total = float(glft_cross_skew(g, gamma, self.inventory)[i])
        self._cross[i] = (key, total)
        return total

    def _cross_key(self, i: int, sigma: float, *more: float) -> tuple[object, ...] | None:
        """Note market ``i``'s σ; None when its cross term is 0 (not event-aware, or nothing
        held in the other markets), else what the term depends on: it is recomputed when some
        inventory changes, the correlation is re-estimated or the parameters move."""
        self.sigmas[i] = sigma
        if not self.aware:
            return None
        inv = self.inventory
        if not any(q for j, q in enumerate(inv) if j != i):
            return None
        self.correlation()  # refreshes the correlation's key
        return (self.version, self._corr_key, sigma, *more)

    def violations(self) -> list[Violation]:
        """Where the books break the event's structure now (signals, never traded on)."""
        books = {t: self.touch[i] for i, t in enumerate(self.structure.tickers)}
        return check_event(self.structure, books, fee_per_contract=self._fee)
