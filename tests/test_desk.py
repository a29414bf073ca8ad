"""The operator's desk (cfa.desk) on both store backends: the live tail, the reads, and the
checks every governance action passes before it is written."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from live_session import start_run, stop, wait_for
from store_backends import rows

from cfa.desk import DeskError, SessionTail, reads, submit, wait_result


@pytest.fixture(scope="module")
def live(module_store_target: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One running session per backend, shared by this module's tests (the halt test last)."""
    db = module_store_target
    proc = start_run(db, tmp_path_factory.mktemp("run"))
    try:
        wait_for(lambda: rows(db, "select count(*) from fills")[0][0] > 0, 60, "a fill")
        yield db
    finally:
        stop(proc)


def test_live_tail_folds_increments_to_what_a_full_replay_gives(live: str) -> None:
    from cfa.reports.history import MarketWalker, timeline_items

    db = live
    with reads.open_reader(db) as reader:
        tail = SessionTail(reader)
        refreshes = 0
        for _ in range(40):  # fold what the session writes, a piece at a time
            refreshes += tail.refresh()
            time.sleep(0.05)
        assert refreshes >= 3, "the session kept writing, so most refreshes found new rows"
        assert all(w.gaps == 0 for w in tail.walkers.values()), "no event skipped"
        state = tail.state()
        # One replay of the run from its start, up to the seq the tail reached, agrees exactly.
        ref: dict[str, MarketWalker] = {}
        for s, table, m, item in timeline_items(reader, tail.run_id, after_seq=tail.first_seq):
            if s > tail.seq:
                break
            if m:
                ref.setdefault(m, MarketWalker(m)).feed(s, table, item)
    assert ref and {m: w.snapshot() for m, w in ref.items()} == {
        m: tail.walkers[m].snapshot() for m in ref
    }
    assert state["run_id"] == tail.run_id and len(state["markets"]) == 2
    for m in state["markets"]:
        assert m["gamma"] is not None and m["sigma"] is not None
        assert m["state"] == "ACTIVE" and m["title"]
        assert isinstance(m["mid"], float) and 0 < m["mid"] < 1
    assert any(m["fills"] > 0 for m in state["markets"])
    assert any(m["last_decision"] for m in state["markets"])


def test_submit_refuses_bad_actions_and_writes_nothing(live: str, tmp_path: Path) -> None:
    db = live
    _, _, markets = reads.latest_run(db)
    m = markets[0]
    before = rows(db, "select count(*) from governance_actions")[0][0]
    cases: list[tuple[str, dict[str, Any], str, str]] = [
        ("explode", {"reason": "x"}, "person:a", "unknown action"),
        ("halt", {"market": "NOPE", "reason": "x"}, "person:a", "unknown market 'NOPE'"),
        ("halt", {"market": m, "reason": ""}, "person:a", "halt:"),
        ("halt", {"market": m, "reason": "x"}, "alice", "expected a source"),
        (
            "override",
            {"market": m, "gamma": 1e6, "sigma": None, "ttl_s": 60.0, "reason": "x"},
            "person:a",
            "policy bounds",
        ),
        (
            "override",
            {"market": m, "gamma": float("nan"), "sigma": None, "ttl_s": 60.0, "reason": "x"},
            "person:a",
            "gamma",
        ),
        (
            "approve_change",
            {"request_id": "x:y:1", "approved": True, "reason": "x"},
            "person:a",
            "not pending",
        ),
        ("freeze", {"market": m, "param": "k", "reason": "x"}, "person:a", "param"),
    ]
    for tool, args, actor, message in cases:
        with pytest.raises(DeskError, match=message):
            submit(db, tool, args, actor)
    assert rows(db, "select count(*) from governance_actions")[0][0] == before
    with pytest.raises(DeskError, match="no audit store here"):
        submit(str(tmp_path / "none.db"), "halt", {"market": None, "reason": "x"}, "person:a")


def test_reads_and_a_halt_through_the_desk(live: str) -> None:
    db = live
    run_id, _, markets = reads.latest_run(db)
    with reads.open_reader(db) as reader:
        (s, *_) = reads.sessions(reader)
        assert s["run_id"] == run_id and s["live"] and s["venue"] == "sim"
        assert sorted(s["markets"]) == markets
        summaries, total = reads.traces(reader, run_id=run_id, limit=2)
        assert total >= len(summaries) > 0
        d = reads.decision_json(*reads.decision(reader, str(summaries[-1]["seq"]), after_s=60))
        assert d["decision"]["seq"] == summaries[-1]["seq"] and d["followed"]
        with pytest.raises(DeskError, match="no decision"):
            reads.decision(reader, "no-such-decision")
        with pytest.raises(DeskError, match="outcome: unknown"):
            reads.traces(reader, run_id=run_id, outcomes=["won"])
    seq = submit(db, "halt", {"market": markets[0], "reason": "desk test"}, "person:alice")
    (res,) = wait_result(db, seq, timeout=5)
    assert res["status"] == "applied" and res["outcome"]["verdict"] == "applied"
    # The governance agent (an assistant) cannot lift a person's halt.
    seq = submit(db, "resume", {"market": markets[0], "reason": "go"}, "agent:governance:mcp:t")
    (res,) = wait_result(db, seq, timeout=5)
    assert res["status"] == "rejected", res
    with reads.open_reader(db) as reader:
        tail = SessionTail(reader)
        tail.refresh()
        st = {m["market"]: m for m in tail.state()["markets"]}
        assert st[markets[0]]["state"] == "HALTED"
        last = reads.requests(reader, limit=4)
        assert {r["actor"] for r in last} >= {"person:alice", "agent:governance:mcp:t"}
        assert reads.trading_states(reader, run_id)[markets[0]] == "HALTED"


def test_a_row_committed_while_the_tail_reads_is_not_lost(tmp_path: Path) -> None:
    # Regression: refresh resumed after the highest seq it saw in any table, so an order
    # committed while it read a later table (seq lower than that table's new row) was skipped
    # for good (the console's books then showed gaps and lost their mid).
    from cfa.audit import AuditStore

    db = str(tmp_path / "tail.db")
    store = AuditStore.open(db)
    run_id = store.start_run({"test": "tail"})

    def order(price: int) -> dict[str, Any]:
        return {
            "market": "M",
            "client_order_id": f"c{price}",
            "side": "bid",
            "price": price,
            "count": 100,
            "action": "place",
        }

    store.append("orders", order(4000))
    store.flush()
    with reads.open_reader(db) as reader:
        tail = SessionTail(reader, run_id)
        assert tail.refresh() and tail.walkers["M"].snapshot().our_bid == 0.4
        rows_of = reader.rows
        fired = []

        def rows(table: str, **kw: Any) -> Any:
            if table == "param_changes" and not fired:  # another process commits meanwhile
                fired.append(1)
                store.append("orders", order(4100))
                store.append(
                    "param_changes",
                    {"market": "M", "param": "gamma", "new": 0.2, "source": "person:x"},
                )
                store.flush()
            return rows_of(table, **kw)

        reader.rows = rows  # type: ignore[method-assign]
        store.append("risk_events", {"market": "M", "kind": "test"})  # something new to read
        store.flush()
        tail.refresh()
        assert fired
        tail.refresh()
        state = tail.state()["markets"][0]
        assert state["our_bid"] == 0.41 and state["gamma"] == 0.2
    store.close()
