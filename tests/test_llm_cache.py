"""The LLM call cache: same request, recorded answer, no tokens; and the audit store as a source.

Real openai SDK against ``tests/llm_server.py`` on 127.0.0.1 (a deterministic endpoint that
counts requests); the simulator at full speed, agents in lockstep.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from llm_server import (  # llm_server_fixture registers the `llm_server` fixture
    POLICY_USAGE,
    FakeLLMServer,
    http_error,
    llm_server_fixture,  # noqa: F401
    policy_responder,
    prose,
    tool_call,
)
from llm_sim import (
    KEY,
    SimRun,
    llm_settings,
    openai_reasoner,
    policy_server_fixture,  # noqa: F401  (registers the module-wide `policy_server` fixture)
    sim_run,
)
from typer.testing import CliRunner

from cfa.agents.reasoners.base import Feedback, RawCall, ReasonRequest, ReasonResponse
from cfa.agents.reasoners.cache import (
    CachedReasoner,
    MemoryLLMCache,
    SqliteLLMCache,
    request_key,
)
from cfa.agents.reasoners.openai_backend import OpenAIReasoner
from cfa.audit.queries import AuditReader
from cfa.cli import app
from cfa.control.tools import MARKET_TOOLS
from cfa.runtime.replay import recorded_reasoner, replay_counterfactual, replay_decisions

LATENCY = 1.0
PRICE_IN, PRICE_OUT = 3.0, 15.0
"""Dollars per million prompt / completion tokens."""

runner = CliRunner()


@dataclasses.dataclass
class Runs:
    plain: SimRun
    """Lockstep, no cache: its audit store is the source of recorded answers."""
    first: SimRun
    """Same seed, empty cache file (priced)."""
    second: SimRun
    """Same seed, same cache file (priced)."""
    cache: Path
    requests: tuple[int, int, int]
    """Chat requests each run made."""


@pytest.fixture(scope="module")
def runs(policy_server: FakeLLMServer, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    d = tmp_path_factory.mktemp("cache")
    cache_path = d / "llm-cache.db"
    made: list[int] = []

    def once(name: str, cached: bool) -> SimRun:
        before = policy_server.chat_requests
        kw = {"price_input": PRICE_IN, "price_output": PRICE_OUT} if cached else {}
        reasoner: Any = openai_reasoner(policy_server, **kw)
        cache = SqliteLLMCache(cache_path) if cached else None
        if cache is not None:
            reasoner = CachedReasoner(reasoner, cache)
        try:
            return asyncio.run(sim_run(d / name, reasoner, lockstep=True, latency_s=LATENCY))
        finally:
            if cache is not None:
                cache.close()
            made.append(policy_server.chat_requests - before)

    plain = once("plain.db", False)
    first = once("first.db", True)
    second = once("second.db", True)
    return Runs(plain, first, second, cache_path, (made[0], made[1], made[2]))


def test_a_second_run_of_the_seed_is_all_hits(runs: Runs) -> None:
    a, b = runs.first, runs.second
    n = a.llm["calls"]
    assert n >= 8 and runs.requests[1] == n and a.llm["cache_misses"] == n
    assert runs.requests[2] == 0, "no request reached the endpoint the second time"
    assert b.llm["cache_hits"] == b.llm["calls"] == n and b.llm["cache_misses"] == 0
    assert b.llm["tokens_in"] == 0 and b.llm["tokens_out"] == 0
    assert a.trace() == b.trace() == runs.plain.trace()
    assert a.fills == b.fills == runs.plain.fills
    assert a.llm["decisions"] == len(a.decisions) and b.llm["decisions"] == len(b.decisions)
    # every recorded response carries its key and hit/miss; the keys of both runs agree
    keys_a = [r["request_sha256"] for d in a.decisions for r in d["responses"]]
    keys_b = [r["request_sha256"] for d in b.decisions for r in d["responses"]]
    assert keys_a == keys_b and all(len(k) == 64 for k in keys_a)
    assert {r["cache"] for d in a.decisions for r in d["responses"]} == {"miss"}
    assert {r["cache"] for d in b.decisions for r in d["responses"]} == {"hit"}
    hit = b.decisions[0]["responses"][0]
    assert hit["usage"] is None and hit["extra"]["cached_usage"] == POLICY_USAGE
    # the uncached run computed the same keys for the same requests
    assert keys_a == [r["request_sha256"] for d in runs.plain.decisions for r in d["responses"]]


def test_tokens_and_cost_totals_reach_the_run_summary(runs: Runs) -> None:
    a, b, plain = runs.first, runs.second, runs.plain
    n = a.llm["calls"]
    assert a.llm["tokens_in"] == 120 * n and a.llm["tokens_out"] == 8 * n
    assert a.llm["cost_usd"] == pytest.approx(n * (120 * PRICE_IN + 8 * PRICE_OUT) / 1e6)
    assert (a.llm["price_input_per_m"], a.llm["price_output_per_m"]) == (PRICE_IN, PRICE_OUT)
    assert b.llm["cost_usd"] == 0.0
    assert plain.llm["cost_usd"] is None, "no price configured: cost unknown"
    assert plain.llm["tokens_in"] == 120 * plain.llm["calls"]
    with AuditReader.open(a.db) as reader:
        recorded = reader.run(a.run_id).summary
    assert recorded is not None and recorded["llm"] == a.llm
    per_decision = sum((d["usage"] or {}).get("prompt_tokens", 0) for d in a.decisions)
    assert per_decision == a.llm["tokens_in"]


def test_no_secret_in_the_cache_file_or_the_audit_store(runs: Runs) -> None:
    files = [runs.cache, runs.first.db, runs.second.db, runs.plain.db]
    files += [Path(f"{f}{suffix}") for f in files for suffix in ("-wal", "-shm")]
    seen = 0
    for f in files:
        if f.exists():
            data = f.read_bytes()
            seen += len(data)
            assert KEY.encode() not in data, f
            assert b"Bearer" not in data and b"uthorization" not in data, f
    assert seen > 10_000


def request(**kw: Any) -> ReasonRequest:
    ctx = {"market": {"ticker": "KXT-1"}, "gamma": {"value": 1.0, "cooldown_left_s": 0.0}}
    base: dict[str, Any] = {
        "role": "market",
        "market": "KXT-1",
        "system_prompt": "You are the market agent.",
        "context": ctx,
        "tools": MARKET_TOOLS,
    }
    return ReasonRequest(**(base | kw))


async def ask(reasoner: CachedReasoner, req: ReasonRequest) -> ReasonResponse:
    return await reasoner.reason(req)


async def test_changed_prompt_context_feedback_or_settings_miss(
    llm_server: FakeLLMServer, tmp_path: Path
) -> None:
    llm_server.respond_with(policy_responder())
    cache = SqliteLLMCache(tmp_path / "c.db")
    base = OpenAIReasoner(llm_settings(llm_server))
    cached = CachedReasoner(base, cache)
    try:
        first = await ask(cached, request())
        assert first.error is None and first.extra["cache"] == "miss"
        assert first.usage == POLICY_USAGE and llm_server.chat_requests == 1
        again = await ask(cached, request())
        assert again.extra["cache"] == "hit" and llm_server.chat_requests == 1
        assert again.calls == first.calls and again.raw == first.raw and again.usage is None
        assert again.extra["cache_key"] == first.extra["cache_key"]
        assert again.extra["cached_usage"] == POLICY_USAGE
        assert again.extra["id"] == first.extra["id"]
        variants = [
            request(system_prompt="You are a different agent."),
            request(context={"market": {"ticker": "KXT-1"}, "gamma": {"value": 1.1}}),
            request(feedback=Feedback((RawCall("c1", "set_gamma", "{}"),), "rejected: bounds")),
            request(market="KXT-2"),
        ]
        for i, v in enumerate(variants, start=2):
            resp = await ask(cached, v)
            assert resp.extra["cache"] == "miss" and llm_server.chat_requests == i, v
        # sampling settings and the model are part of the key; the API key is not
        for kw in ({"temperature": 0.7}, {"model": "other-model"}, {"seed": 7}):
            other = CachedReasoner(OpenAIReasoner(llm_settings(llm_server, **kw)), cache)
            assert (await ask(other, request())).extra["cache"] == "miss", kw
            await other.aclose()
        rotated = CachedReasoner(
            OpenAIReasoner(llm_settings(llm_server, api_key="sk-another-key-123456")), cache
        )
        before = llm_server.chat_requests
        assert (await ask(rotated, request())).extra["cache"] == "hit"
        assert llm_server.chat_requests == before
        await rotated.aclose()
        # the key is a function of the request and the identity only
        assert first.extra["cache_key"] == request_key(base.cache_identity(), request())
        assert "api_key" not in json.dumps(base.cache_identity())
        assert base.cache_identity()["host"] == "127.0.0.1"
    finally:
        await cached.aclose()
        cache.close()


async def test_errors_and_abstains_are_never_cached(
    llm_server: FakeLLMServer, tmp_path: Path
) -> None:
    cache = SqliteLLMCache(tmp_path / "c.db")
    cached = CachedReasoner(OpenAIReasoner(llm_settings(llm_server)), cache)
    try:
        llm_server.queue(http_error(500, "flaky"), prose("no tool call here"))
        failed = await ask(cached, request())
        assert failed.error is not None and "HTTP 500" in failed.error
        assert failed.extra["cache"] == "miss" and len(cache) == 0
        prosy = await ask(cached, request())
        assert prosy.error is not None and len(cache) == 0
        llm_server.respond_with(policy_responder())
        good = await ask(cached, request())
        assert good.error is None and good.extra["cache"] == "miss" and len(cache) == 1
        assert llm_server.chat_requests == 3, "the endpoint was asked again after each failure"
        assert (await ask(cached, request())).extra["cache"] == "hit"
        assert llm_server.chat_requests == 3
    finally:
        await cached.aclose()
        cache.close()


async def test_an_echoed_key_is_scrubbed_before_it_is_stored(
    llm_server: FakeLLMServer, tmp_path: Path
) -> None:
    path = tmp_path / "c.db"
    cache = SqliteLLMCache(path)
    cached = CachedReasoner(OpenAIReasoner(llm_settings(llm_server)), cache)
    try:
        llm_server.queue(tool_call("keep", {"rationale": "fine"}, content=f"your key {KEY}"))
        resp = await ask(cached, request())
        assert resp.error is None and KEY not in resp.raw and len(cache) == 1
        assert "Bearer" in llm_server.last.headers.get("authorization", "")
    finally:
        await cached.aclose()
        cache.close()
    for suffix in ("", "-wal", "-shm"):
        f = Path(f"{path}{suffix}")
        if f.exists():
            assert KEY.encode() not in f.read_bytes()


_WRITER = """
import sys, time
from cfa.agents.reasoners.base import RawCall, ReasonResponse
from cfa.agents.reasoners.cache import SqliteLLMCache
path, worker, start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
cache = SqliteLLMCache(path, timeout_s=30.0)
time.sleep(max(0.0, start - time.time()))  # all writers begin together
n = 0
for i in range(60):
    key = f"shared-{i}" if i % 2 else f"w{worker}-{i}"
    resp = ReasonResponse((RawCall("c", "keep", "{}"),), raw=f"{worker}:{i}", model="m")
    n += cache.put(key, resp, meta={"origin": f"worker {worker}"})
cache.close()
print(n)
"""


def test_several_processes_write_one_cache_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    start = time.time() + 1.5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), str(w), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(3)
    ]
    stored = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        stored.append(int(out))
    cache = SqliteLLMCache(path)
    try:
        assert cache.journal_mode == "wal"
        assert len(cache) == 3 * 30 + 30 == sum(stored), "first writer wins, nothing lost"
        assert cache.get("shared-1") is not None and cache.get("w2-58") is not None
    finally:
        cache.close()


async def test_replaying_decisions_from_recorded_answers_costs_nothing(
    runs: Runs, policy_server: FakeLLMServer
) -> None:
    plain = runs.plain
    before = policy_server.chat_requests
    reasoner = recorded_reasoner(plain.db, plain.run_id)
    diffs = await replay_decisions(plain.db, plain.run_id, reasoner)
    market = [d for d in plain.decisions if d["agent"] == "market"]
    assert len(diffs) == len(market) >= 5
    assert all(d.same and d.cache == "hit" and d.error is None for d in diffs)
    assert all(d.usage is None for d in diffs)
    assert policy_server.chat_requests == before
    # a changed prompt keys differently: nothing recorded, nothing asked, an audited abstain
    other = await replay_decisions(plain.db, plain.run_id, reasoner, prompt="another prompt")
    assert all(d.cache == "miss" and d.error and "offline" in d.error for d in other)
    assert policy_server.chat_requests == before


async def test_a_whole_run_replays_from_its_audit_store(
    runs: Runs, policy_server: FakeLLMServer, tmp_path: Path
) -> None:
    plain = runs.plain
    before = policy_server.chat_requests
    cache = SqliteLLMCache(tmp_path / "imported.db")
    try:
        n = cache.import_from_audit(plain.db, plain.run_id)
        keys = {r["request_sha256"] for d in plain.decisions for r in d["responses"]}
        assert n == len(keys) == len(cache) and set(cache.keys()) == keys
        assert cache.import_from_audit(plain.db, plain.run_id) == 0, "idempotent"
    finally:
        cache.close()
    reasoner = recorded_reasoner(plain.db, plain.run_id, cache=MemoryLLMCache())
    out = tmp_path / "again.db"
    result = await replay_counterfactual(plain.db, plain.run_id, reasoner, out)
    assert policy_server.chat_requests == before
    assert result["llm"]["lockstep"] is True and result["llm"]["latency_s"] == LATENCY
    assert result["llm"]["cache_hits"] == result["llm"]["calls"] == plain.llm["calls"]
    assert result["counterfactual"] == plain.summary["markets"]
    with AuditReader.open(out) as reader:
        again = [
            r["payload"]
            for r in reader.rows("decisions", run_id=result["run_id"])
            if r["payload"]["phase"] == "decision"
        ]
    replayed = SimRun(out, result["run_id"], {}, [], again)
    assert replayed.trace() == plain.trace()


def test_replay_cli_with_recorded_answers(runs: Runs, policy_server: FakeLLMServer) -> None:
    plain = runs.plain
    before = policy_server.chat_requests
    args = ["replay", plain.run_id, "--db", str(plain.db), "--mode", "decisions", "--recorded"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "answered from recorded answers or the cache" in text and "0 differ" in text
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert rows and all(x["same"] and x["cache"] == "hit" for x in rows)
    assert policy_server.chat_requests == before
