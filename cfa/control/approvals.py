"""Changes waiting for approval, keyed by request id, each with a time to live.

A request is made when an agent's change is larger than the policy lets it make alone (one step
above ``approval_step``, or a cumulative move beyond ``window_factor`` within ``window_s``). It
names the value it would move *from* (``base``): approving it after the parameter has moved
on applies nothing (``superseded``). One request per market and parameter: a newer one replaces
the older. A request expires ``agents.approval_ttl_s`` after it was made.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from cfa.risk.actors import Actor


@dataclass(frozen=True, slots=True)
class PendingChange:
    """One change waiting for approval. Times are epoch seconds of the session's clock."""

    request_id: str
    market: str
    param: str
    value: float
    base: float
    """The parameter's value when the request was made."""
    rationale: str
    source: str
    """Who asked (``agent:market:...`` or ``agent:governance:...``)."""
    ts: float
    expires: float
    override_ttl_s: float | None = None
    """Set when the request is a governance override: its ttl once approved, seconds."""
    people_only: bool = False
    """Only a person may decide it (the policy's ``agents.approvals: person``)."""

    @property
    def approver_rank(self) -> Actor:
        """The least rank that may decide it: governance for a market agent's request, a
        person for the governance agent's, and a person for any with :attr:`people_only`."""
        if self.people_only:
            return Actor.PERSON
        return Actor(max(Actor.GOVERNANCE_AGENT, Actor.of(self.source) + 1))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Approvals:
    """The pending requests of one session."""

    def __init__(self) -> None:
        self._by_id: dict[str, PendingChange] = {}
        self._n = 0

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[PendingChange]:
        return iter(list(self._by_id.values()))

    def get(self, request_id: str) -> PendingChange | None:
        return self._by_id.get(request_id)

    def ids(self) -> frozenset[str]:
        return frozenset(self._by_id)

    def request(
        self,
        *,
        market: str,
        param: str,
        value: float,
        base: float,
        rationale: str,
        source: str,
        now: float,
        ttl_s: float,
        override_ttl_s: float | None = None,
        people_only: bool = False,
    ) -> tuple[PendingChange, PendingChange | None]:
        """File a request; returns it and the older request it replaced, if any."""
        old = next(
            (p for p in self._by_id.values() if (p.market, p.param) == (market, param)), None
        )
        if old is not None:
            del self._by_id[old.request_id]
        self._n += 1
        rid = f"{market}:{param}:{self._n}"
        pend = PendingChange(
            rid,
            market,
            param,
            value,
            base,
            rationale,
            source,
            now,
            now + ttl_s,
            override_ttl_s,
            people_only,
        )
        self._by_id[rid] = pend
        return pend, old

    def pop(self, request_id: str) -> PendingChange | None:
        return self._by_id.pop(request_id, None)

    def expire(self, now: float) -> list[PendingChange]:
        """Remove and return every request whose time to live has passed."""
        gone = [p for p in self._by_id.values() if p.expires <= now]
        for p in gone:
            del self._by_id[p.request_id]
        return gone

    @property
    def next_expiry(self) -> float:
        return min((p.expires for p in self._by_id.values()), default=math.inf)
