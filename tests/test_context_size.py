"""The market agent's context stays within 2,000 characters of JSON whatever the exchange's text."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cfa.agents.context import MAX_CONTEXT
from cfa.agents.reasoners.heuristic import HeuristicReasoner
from cfa.audit import AuditStore
from cfa.exchange.sim import DEFAULT_START_TS, SimExchange
from cfa.risk.policy import load_policy
from cfa.runtime.session import Session

TITLE = 'Will "the" thing \\ happen? ' * 10
RULES = 'If "x" then "yes"; ' * 10


async def test_context_fits_even_with_long_quoted_market_text(tmp_path: Path) -> None:
    ex = SimExchange.from_scenarios(
        ["close-approach"], seed=3, start_ts=DEFAULT_START_TS, duration=600
    )
    await ex.start()
    markets = [dataclasses.replace(m, title=TITLE, rules=RULES) for m in await ex.get_markets()]
    store = AuditStore.open(tmp_path / "c.db")
    run_id = store.start_run({}, ts_ms=round(DEFAULT_START_TS * 1000))
    session = Session(ex, markets, load_policy("default"), store, run_id)
    agents = session.attach_agents(HeuristicReasoner())
    seen: list[int] = []
    build = agents._context

    def spy(ticker: str) -> dict[str, object]:
        out = build(ticker)
        seen.append(len(agents._contexts[ticker].to_json()))
        return out

    agents._context = spy  # type: ignore[method-assign]
    await session.run(govern=False)
    await ex.close()
    store.close()
    assert seen and max(seen) <= MAX_CONTEXT, max(seen)
    ctx = agents._contexts[markets[0].ticker]
    assert TITLE.startswith(ctx.market.title) and ctx.market.title  # cut, never emptied here
