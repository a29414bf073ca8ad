"""`cfa mcp` against a real running `cfa run`, with the MCP SDK's own client over stdio and
streamable HTTP: tools listed, reads, approvals, halts, the governance agent's rank, tool errors
for bad arguments, one `tool_calls` row per call, the bearer token and the bind refusal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from live_session import approval_script, start_run, stop, wait_approval_requests, wait_for
from store_backends import rows

from cfa.desk import submit, wait_result

mcp = pytest.importorskip("mcp")
httpx2 = pytest.importorskip("httpx2")

from mcp import ClientSession, StdioServerParameters, stdio_client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.shared._httpx_utils import create_mcp_http_client  # noqa: E402
from mcp.types import CallToolResult, Implementation  # noqa: E402

READS = {
    "list_sessions",
    "session_state",
    "list_traces",
    "get_decision",
    "pending_approvals",
    "risk_events",
    "governance_requests",
}
ACTS = {"approve", "deny", "freeze", "unfreeze", "override", "halt", "resume", "reduce_only"}
TOKEN = "test-token-" + "x" * 24
PREFIX = "agent:governance:mcp:"


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One `cfa run` (2 markets, 20x) whose market agents ask for γ 0.14 (needs approval)."""
    tmp = tmp_path_factory.mktemp("mcp")
    db = tmp / "live.db"
    proc = start_run(db, tmp, markets=2, reasoner=approval_script(tmp / "s.jsonl"))
    try:
        wait_approval_requests(db, 2)
        markets = sorted(
            m for (m,) in rows(db, "select distinct market from param_changes where market != ''")
        )
        (run_id,) = rows(db, "select run_id from runs where kind = 'start' order by seq desc")[0]
        yield {"db": db, "proc": proc, "markets": markets, "run_id": run_id, "tmp": tmp}
    finally:
        stop(proc)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def http_server(session: dict[str, Any]) -> Iterator[str]:
    """`cfa mcp --transport http --token` on a free loopback port; yields its URL."""
    port = _free_port()
    log = open(session["tmp"] / "http.err", "w")  # noqa: SIM115 - closed below
    env = {**os.environ, "CFA_MCP_TOKEN": TOKEN}
    cmd = [sys.executable, "-m", "cfa.cli", "mcp", "--db", str(session["db"])]
    cmd += ["--transport", "http", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env=env)
    try:

        def listening() -> bool:
            assert proc.poll() is None, (session["tmp"] / "http.err").read_text()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return True
            return False

        wait_for(listening, 30, "the HTTP server to listen")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        assert TOKEN not in (session["tmp"] / "http.err").read_text(), "the token was logged"


@contextlib.asynccontextmanager
async def stdio_session(
    db: Path, name: str, *extra: str, errlog: Any = None
) -> AsyncIterator[ClientSession]:
    """The SDK's client on `cfa mcp --db DB` over stdio, introducing itself as ``name``."""
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "cfa.cli", "mcp", "--db", str(db), *extra]
    )
    info = Implementation(name=name, version="1")
    async with (
        stdio_client(params, errlog=errlog or sys.stderr) as (r, w),
        ClientSession(r, w, client_info=info) as s,
    ):
        await s.initialize()
        yield s


@contextlib.asynccontextmanager
async def http_session(
    url: str, name: str, token: str | None = TOKEN
) -> AsyncIterator[ClientSession]:
    """The SDK's streamable HTTP client on ``url`` (with the bearer token unless None)."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    info = Implementation(name=name, version="1")
    async with (
        create_mcp_http_client(headers=headers) as http,
        streamable_http_client(url, http_client=http) as (r, w),
        ClientSession(r, w, client_info=info) as s,
    ):
        await s.initialize()
        yield s


def _data(res: CallToolResult) -> dict[str, Any]:
    assert not res.is_error, res.content
    assert isinstance(res.structured_content, dict)
    return res.structured_content


def _error(res: CallToolResult) -> str:
    assert res.is_error, res.structured_content
    return " ".join(getattr(c, "text", "") for c in res.content)


def _calls(db: Path, actor: str) -> list[tuple[str, str, dict[str, Any]]]:
    """``(tool, status, result)`` of the tool_calls rows written for ``actor``, in order."""
    got = rows(
        db, "select tool, status, result from tool_calls where agent = ? order by seq", actor
    )
    return [(t, s, json.loads(r or "{}")) for t, s, r in got]


async def test_stdio_lists_tools_reads_traces_and_approves(session: dict[str, Any]) -> None:
    db, run_id = session["db"], session["run_id"]
    actor = "agent:governance:mcp:pytest-stdio"
    t0 = time.monotonic()
    async with stdio_session(db, "pytest-stdio") as s:
        init = await s.initialize()
        assert init.server_info.name == "cfa" and "governance agent" in (init.instructions or "")
        tools = {t.name: t for t in (await s.list_tools()).tools}
        assert set(tools) == READS | ACTS
        for name in ACTS:
            schema = tools[name].input_schema
            assert "reason" in schema["properties"] and "reason" in schema["required"], name
            assert tools[name].output_schema is not None, name
        assert set(tools["override"].input_schema["properties"]) >= {"market", "gamma", "ttl_s"}
        assert tools["list_traces"].input_schema["properties"]["agent"]
        print(f"stdio: started and listed tools in {time.monotonic() - t0:.2f} s")

        traces = _data(await s.call_tool("list_traces", {"limit": 0}))
        assert traces["run_id"] == run_id and traces["total"] == len(traces["decisions"]) > 0
        assert all(d["run_id"] == run_id for d in traces["decisions"])
        asked = [d for d in traces["decisions"] if d["outcome"] == "pending_approval"]
        assert asked, "the market agents' requests are among the traces"
        one = _data(await s.call_tool("get_decision", {"id": str(asked[0]["seq"])}))
        assert one["decision"]["seq"] == asked[0]["seq"] and one["decision"]["rationale"]

        pending = _data(await s.call_tool("pending_approvals", {}))["pending"]
        market = session["markets"][0]
        (req,) = [p for p in pending if p["market"] == market]
        assert req["param"] == "gamma" and req["value"] == 0.14
        out = _data(
            await s.call_tool("approve", {"request_id": req["request_id"], "reason": "looks ok"})
        )
        assert out["status"] == "applied" and out["actor"] == actor, out
        assert out["request_seq"] > 0
        state = _data(await s.call_tool("session_state", {}))
        assert {m["market"] for m in state["markets"]} == set(session["markets"])
        await asyncio.sleep(0.3)  # the session writes on: the next call folds only the new rows
        again = _data(await s.call_tool("session_state", {"run": run_id[:12]}))
        assert again["run_id"] == run_id and again["version"] == state["version"] + 1
        assert again["seq"] > state["seq"]
    wait_for(
        lambda: rows(
            db,
            "select 1 from param_changes where market = ? and param = 'gamma' and new = 0.14",
            market,
        ),
        10,
        "the approved γ",
    )
    decided = rows(
        db,
        "select actor, json_extract(payload, '$.status') from governance_actions"
        " where action = 'approval_decided' and json_extract(payload, '$.request_id') = ?",
        req["request_id"],
    )
    assert decided == [(actor, "approved")]
    result_actor = rows(
        db,
        "select actor from governance_actions where json_extract(payload, '$.request_seq') = ?",
        out["request_seq"],
    )
    assert result_actor == [(actor,)]
    made = ["list_traces", "get_decision", "pending_approvals", "approve"]
    made += ["session_state", "session_state"]
    calls = _calls(db, actor)
    assert [t for t, _, _ in calls] == made
    assert all(status == "ok" for _, status, _ in calls)
    assert calls[3][2]["request_seq"] == out["request_seq"]
    assert rows(db, "select distinct run_id from tool_calls where agent = ?", actor) == [(run_id,)]


async def test_bad_arguments_are_tool_errors_naming_the_problem(session: dict[str, Any]) -> None:
    db, m = session["db"], session["markets"][1]
    actor = "agent:governance:mcp:ops-bot"  # --client overrides the handshake's name
    before = rows(db, "select count(*) from governance_actions")[0][0]
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("halt", {"market": "NOPE", "reason": "x"}, "unknown market 'NOPE'"),
        ("freeze", {"market": m, "reason": ""}, "reason"),
        ("halt", {"market": m, "reason": "   "}, "reason: give why"),
        ("override", {"market": m, "gamma": math.nan, "reason": "x"}, "gamma"),
        ("override", {"market": m, "gamma": -1.0, "reason": "x"}, "gamma: Input should be"),
        ("override", {"market": m, "gamma": 1e6, "reason": "x"}, "outside the policy bounds"),
        ("halt", {"market": m, "all_markets": True, "reason": "x"}, "not both"),
        ("approve", {"request_id": "no-such", "reason": "x"}, "not pending"),
        ("get_decision", {"id": "no-such-decision"}, "no decision 'no-such-decision'"),
        ("list_traces", {"since": "yesterday"}, "since: cannot read 'yesterday'"),
        ("list_traces", {"limit": "many"}, "limit"),
        ("no_such_tool", {}, "no_such_tool"),
    ]
    async with stdio_session(db, "spoofed name", "--client", "ops-bot") as s:
        for tool, args, expected in cases:
            text = _error(await s.call_tool(tool, args))
            assert expected in text, (tool, args, text)
            assert "Traceback" not in text and "pydantic.dev" not in text, text
        sessions = _data(await s.call_tool("list_sessions", {}))["sessions"]
        assert sessions[0]["run_id"] == session["run_id"] and sessions[0]["live"]
    assert rows(db, "select count(*) from governance_actions")[0][0] == before, "nothing requested"
    calls = _calls(db, actor)
    assert [t for t, _, _ in calls] == [t for t, _, _ in cases] + ["list_sessions"]
    assert [s for _, s, _ in calls] == ["error"] * len(cases) + ["ok"]
    assert "unknown market 'NOPE'" in calls[0][2]["summary"]
    nan_args = rows(
        db, "select arguments from tool_calls where agent = ? and tool = 'override'", actor
    )
    assert len(nan_args) == 3


def test_http_refuses_requests_without_the_bearer_token(http_server: str) -> None:
    body = json.dumps({}).encode()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        req = urllib.request.Request(
            http_server, data=body, headers={"Content-Type": "application/json", **headers}
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)
        assert err.value.code == 401, headers
    # With the token but a foreign Host header (DNS rebinding): the SDK's check refuses it.
    req = urllib.request.Request(
        http_server,
        data=body,
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {TOKEN}",
            "Host": "evil.example:80",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 421


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


async def test_http_client_without_token_cannot_connect(
    session: dict[str, Any], http_server: str
) -> None:
    from mcp import MCPError

    with pytest.raises(BaseException) as err:  # the SDK wraps it in groups
        async with http_session(http_server, "no-token", token=None) as s:
            await s.call_tool("halt", {"all_markets": True, "reason": "x"})
    # The SDK's client reports the 401 as an error response to its initialize request.
    assert any(isinstance(e, MCPError) for e in _leaves(err.value)), repr(err.value)
    assert _calls(session["db"], "agent:governance:mcp:no-token") == []


async def test_http_serves_concurrent_calls(session: dict[str, Any], http_server: str) -> None:
    # The server's first calls, all at once (regression: two first reads raced on a lazy
    # import in cfa._imports and failed).
    tools = ["list_sessions", "session_state", "governance_requests", "risk_events"] * 3
    async with http_session(http_server, "pytest-burst") as s:
        results = await asyncio.gather(*(s.call_tool(t, {}) for t in tools))
    assert [r.is_error for r in results] == [False] * len(tools), [r.content for r in results]
    assert len(_calls(session["db"], PREFIX + "pytest-burst")) == len(tools)


async def test_http_halt_and_the_governance_agents_rank(
    session: dict[str, Any], http_server: str
) -> None:
    db, m = session["db"], session["markets"][1]
    actor = "agent:governance:mcp:pytest-http"
    async with http_session(http_server, "pytest-http") as s:
        out = _data(await s.call_tool("halt", {"market": m, "reason": "news"}))
        assert out["status"] == "applied" and out["actor"] == actor, out
        states = rows(
            db,
            "select state from risk_events where kind = 'trading_state' and market = ?"
            " order by seq desc limit 1",
            m,
        )
        assert states == [("HALTED",)]
        out = _data(await s.call_tool("resume", {"market": m, "reason": "calm again"}))
        assert out["status"] == "applied", out  # an agent lifts what an agent placed

        # A person halts everything; the assistant may not lift it.
        seq = submit(str(db), "halt", {"market": None, "reason": "desk halt"}, "person:alice")
        assert [r["status"] for r in wait_result(str(db), seq, 5)] == ["applied"]
        out = _data(await s.call_tool("resume", {"all_markets": True, "reason": "please"}))
        assert out["status"] == "rejected" and out["code"] == "not_allowed", out
        seq = submit(str(db), "resume", {"market": None, "reason": "done"}, "person:alice")
        assert [r["status"] for r in wait_result(str(db), seq, 5)] == ["applied"]

        # An assistant may deny a market agent's request, but not unfreeze a person's freeze.
        pending = _data(await s.call_tool("pending_approvals", {}))["pending"]
        (req,) = [p for p in pending if p["market"] == m]
        out = _data(await s.call_tool("deny", {"request_id": req["request_id"], "reason": "no"}))
        assert out["status"] == "applied", out
        left = _data(await s.call_tool("pending_approvals", {}))["pending"]
        assert req["request_id"] not in {p["request_id"] for p in left}
        seq = submit(
            str(db), "freeze", {"market": m, "param": "sigma", "reason": "x"}, "person:bob"
        )
        assert [r["status"] for r in wait_result(str(db), seq, 5)] == ["applied"]
        out = _data(
            await s.call_tool("unfreeze", {"market": m, "param": "sigma", "reason": "please"})
        )
        assert out["status"] == "rejected" and out["code"] == "not_allowed", out
        state = _data(await s.call_tool("session_state", {}))
        assert next(x for x in state["markets"] if x["market"] == m)["frozen"] == ["sigma"]

        # An override is held to the governance agent's max_step (γ 0.1 -> 1.0 is +900 %).
        out = _data(
            await s.call_tool(
                "override", {"market": m, "gamma": 1.0, "ttl_s": 60, "reason": "wider"}
            )
        )
        assert out["status"] == "rejected" and out["code"] == "step_too_large", out
        reqs = _data(await s.call_tool("governance_requests", {"limit": 20}))["requests"]
        assert any(r["actor"] == actor and r["action"] == "override" for r in reqs)
    calls = _calls(db, actor)
    made = [
        ("halt", "ok"),
        ("resume", "ok"),
        ("resume", "rejected"),
        ("pending_approvals", "ok"),
        ("deny", "ok"),
        ("pending_approvals", "ok"),
        ("unfreeze", "rejected"),
        ("session_state", "ok"),
        ("override", "rejected"),
        ("governance_requests", "ok"),
    ]
    assert [(t, s) for t, s, _ in calls] == made
    assert calls[2][2]["code"] == "not_allowed" and calls[8][2]["code"] == "step_too_large"
    leaked = rows(
        db,
        "select count(*) from tool_calls where arguments like ? or result like ?",
        f"%{TOKEN}%",
        f"%{TOKEN}%",
    )
    assert leaked == [(0,)], "the token reached the audit store"
    denied = rows(
        db,
        "select actor from governance_actions where action = 'approval_decided'"
        " and json_extract(payload, '$.status') = 'denied'",
    )
    assert denied == [(actor,)]


async def test_as_person_is_announced_and_held_to_bounds_only(session: dict[str, Any]) -> None:
    db, m = session["db"], session["markets"][1]
    err = session["tmp"] / "person.err"
    with open(err, "w") as errlog:
        async with stdio_session(db, "desk-tool", "--as-person", "carol", errlog=errlog) as s:
            init = await s.initialize()  # the handshake's result, as the client holds it
            assert "act as a person (person:carol)" in (init.instructions or "")
            out = _data(
                await s.call_tool(
                    "override", {"market": m, "gamma": 1.0, "ttl_s": 60, "reason": "desk call"}
                )
            )
    assert out["status"] == "applied" and out["actor"] == "person:carol", out
    assert "--as-person" in err.read_text() and "person:carol" in err.read_text()
    assert [t for t, _, _ in _calls(db, "person:carol")] == ["override"]


def test_non_loopback_bind_needs_allow_remote_and_token(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "cfa.cli", "mcp", "--db", str(tmp_path / "x.db")]
    base += ["--transport", "http", "--host", "0.0.0.0", "--port", str(_free_port())]
    env = {k: v for k, v in os.environ.items() if k != "CFA_MCP_TOKEN"}
    for extra, missing in (([], "--allow-remote and --token"), (["--allow-remote"], "--token")):
        r = subprocess.run(
            base + extra, capture_output=True, text=True, timeout=30, env=env, check=False
        )
        assert r.returncode != 0 and r.stdout == ""
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "refusing to listen on 0.0.0.0" in lines[0], r.stderr
        assert f"needs {missing}" in lines[0]
    assert not (tmp_path / "x.db").exists()


def test_stdio_stdout_is_protocol_only(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "cfa.cli", "mcp", "--db", str(tmp_path / "none.db")]
    r = subprocess.run(cmd, input="", capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 0 and r.stdout == "", (r.stdout, r.stderr)
    assert "agent:governance:mcp:<client>" in r.stderr


async def test_a_missing_store_is_a_tool_error_and_is_not_created(tmp_path: Path) -> None:
    db = tmp_path / "none.db"
    async with stdio_session(db, "pytest-nodb") as s:
        text = _error(await s.call_tool("list_sessions", {}))
        assert "no audit store here" in text
        text = _error(await s.call_tool("halt", {"all_markets": True, "reason": "x"}))
        assert "no audit store here" in text
    assert not db.exists()


def test_a_client_name_never_raises_its_rank() -> None:
    from cfa.mcp.actor import ActorPolicy, agent_actor
    from cfa.risk.actors import Actor

    assert agent_actor("Claude Desktop/1.0 (ü)") == "agent:governance:mcp:Claude_Desktop_1.0"
    assert agent_actor(None) == agent_actor("") == agent_actor("/// ") == PREFIX + "unknown"
    for name in ("person:alice", "breaker:x", "../../etc", "a" * 500):
        actor = agent_actor(name)
        assert actor.startswith(PREFIX) and len(actor) <= len(PREFIX) + 64
        assert Actor.of(actor) is Actor.GOVERNANCE_AGENT, name
    assert ActorPolicy(client="ops bot").actor("ignored") == PREFIX + "ops_bot"
    assert ActorPolicy(as_person="dana").actor("x") == "person:dana"


def test_only_loopback_binds_without_allow_remote_and_token() -> None:
    from cfa.mcp.http import BindRefused, check_bind, transport_security

    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1"):
        check_bind(host, allow_remote=False, token=None)
    for host in ("0.0.0.0", "::", "10.1.2.3", "example.com"):
        with pytest.raises(BindRefused, match="needs --allow-remote and --token"):
            check_bind(host, allow_remote=False, token=None)
        check_bind(host, allow_remote=True, token="secret")
    with pytest.raises(BindRefused, match="--as-person over http needs --token"):
        check_bind("127.0.0.1", allow_remote=False, token=None, as_person=True)
    check_bind("127.0.0.1", allow_remote=False, token="secret", as_person=True)
    with pytest.raises(BindRefused, match="--token is empty"):
        check_bind("127.0.0.1", allow_remote=False, token=" ")
    sec = transport_security("10.1.2.3")
    assert sec.enable_dns_rebinding_protection and "10.1.2.3:*" in sec.allowed_hosts
    assert "localhost:*" in transport_security("127.0.0.1").allowed_hosts
