"""`cfa console` served by uvicorn on 127.0.0.1 over a real `cfa run`, driven with httpx.

One session and one console per module (a SQLite store in a temporary directory, a free port):
pages render with the run's markets, the JSON API answers, the event stream brings a state
within a second of a row being written, actions reach the session, and every refusal (no token,
bad token, bad cookie, no CSRF, wrong Origin, cross-site fetch, bad Host, empty reason or
operator, a run that is not the latest) is a 401/403/400 that writes nothing. The token never
appears in the store or in the server's output except its one start-up line.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_session import start_run, stop, wait_for, wait_quoting
from store_backends import rows
from typer.testing import CliRunner

from cfa.cli import app


def free_port() -> int:
    """A TCP port nobody listens on now (127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Console:
    """A running `cfa console` and the session it serves."""

    db: Path
    base: str
    port: int
    token: str
    run_id: str
    markets: list[str]
    out: Path
    err: Path
    proc: subprocess.Popen[bytes]
    run: subprocess.Popen[str]
    clients: list[httpx.Client] = field(default_factory=list)

    def bearer(self) -> httpx.Client:
        c = httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.token}"}, timeout=10
        )
        self.clients.append(c)
        return c

    def browser(self) -> httpx.Client:
        """A client logged in through /login?token= (the session cookie)."""
        c = httpx.Client(base_url=self.base, timeout=10)
        r = c.get("/login", params={"token": self.token})
        assert r.status_code == 303 and r.headers["location"] == "/", r.text
        self.clients.append(c)
        return c

    def anonymous(self) -> httpx.Client:
        c = httpx.Client(base_url=self.base, timeout=10)
        self.clients.append(c)
        return c


def start_console(
    db: Path, cwd: Path, port: int, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """Start `cfa console` on ``port``; stdout and stderr go to files in ``cwd``."""
    out, err = cwd / f"console-{port}.out", cwd / f"console-{port}.err"
    cmd = [sys.executable, "-m", "cfa.cli", "console", "--db", str(db), "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, *args],
        stdout=out.open("wb"),
        stderr=err.open("wb"),
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )
    return proc, out, err


def wait_up(base: str, proc: subprocess.Popen[bytes], err: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the console exited: {err.read_text()}")
        try:
            if httpx.get(f"{base}/login", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("the console did not start within 30 s")


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    tmp = tmp_path_factory.mktemp("console")
    db = tmp / "live.db"
    run = start_run(db, tmp, markets=2)
    proc = None
    try:
        wait_quoting(db)
        port = free_port()
        proc, out, err = start_console(db, tmp, port, "--operator", "ann")
        base = f"http://127.0.0.1:{port}"
        wait_up(base, proc, err)
        line = out.read_text()
        m = re.search(r"login\?token=([A-Za-z0-9_\-]+)", line)
        assert m, f"no login URL printed: {line!r}"
        run_id = rows(db, "select run_id from runs where kind = 'start' order by seq desc")[0][0]
        markets = sorted(
            r[0] for r in rows(db, "select distinct market from param_changes where market != ''")
        )
        c = Console(db, base, port, m.group(1), str(run_id), markets, out, err, proc, run)
        yield c
        for client in c.clients:
            client.close()
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        stop(run)


def csrf_of(html: str) -> str:
    m = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', html)
    assert m, "no CSRF token on the page"
    return m.group(1)


def gov_count(db: Path) -> int:
    return int(rows(db, "select count(*) from governance_actions")[0][0])


# -- pages and API --------------------------------------------------------------------------


def test_login_sets_a_strict_http_only_cookie_and_leaves_the_token_url(console: Console) -> None:
    c = console.anonymous()
    r = c.get("/login", params={"token": console.token})
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert console.token not in r.headers["set-cookie"]
    page = c.get("/")
    assert page.status_code == 200 and console.run_id in page.text
    # the login form works too
    c2 = console.anonymous()
    r = c2.post("/login", data={"token": console.token})
    assert r.status_code == 303
    assert c2.get("/api/sessions").status_code == 200
    r = console.anonymous().post("/login", data={"token": "x" * 30})
    assert r.status_code == 401 and "wrong token" in r.text


def test_pages_render_the_run_and_its_markets(console: Console) -> None:
    c = console.browser()
    index = c.get("/")
    assert console.run_id in index.text and "live" in index.text
    live = c.get(f"/runs/{console.run_id}")
    assert live.status_code == 200
    for m in console.markets:
        assert f'data-market="{m}"' in live.text
    for part in ("Pending approvals", "halt all", "override", "freeze", "Recent governance"):
        assert part in live.text
    assert f"/runs/{console.run_id}/plots" in live.text
    h = live.headers
    assert h["content-security-policy"] == "default-src 'self'; frame-ancestors 'none'"
    assert h["x-content-type-options"] == "nosniff"
    assert h["referrer-policy"] == "no-referrer"
    assert h["cache-control"] == "no-store"
    assert "<script>" not in live.text and "style=" not in live.text  # CSP: no inline code
    traces = c.get(f"/runs/{console.run_id}/traces", params={"limit": 5})
    assert traces.status_code == 200
    seqs = re.findall(r'href="/decisions/(\d+)"', traces.text)
    assert seqs, "the traces page links its decisions"
    filtered = c.get(
        f"/runs/{console.run_id}/traces",
        params=[("outcome", "keep"), ("outcome", "applied"), ("agent", "market")],
    )
    assert filtered.status_code == 200
    bad = c.get(f"/runs/{console.run_id}/traces", params={"outcome": "nope"})
    assert "unknown &#39;nope&#39;" in bad.text or "unknown 'nope'" in bad.text
    bad = c.get(f"/runs/{console.run_id}/traces", params={"since": "yesterday"})
    assert "since: cannot read" in bad.text
    d = c.get(f"/decisions/{seqs[-1]}")
    assert d.status_code == 200
    for part in ("Rationale", "Tool calls", "Parameters", "Model responses", "What followed"):
        assert part in d.text
    assert c.get(f"/runs/{console.run_id}/risk").status_code == 200
    missing = c.get("/decisions/999999999", headers={"accept": "text/html"})
    assert missing.status_code == 404 and "no decision" in missing.text
    assert "Traceback" not in missing.text
    assert c.get("/runs/no-such-run").status_code == 404


def test_json_api(console: Console) -> None:
    c = console.bearer()
    sessions = c.get("/api/sessions").json()["sessions"]
    assert sessions[0]["run_id"] == console.run_id and sessions[0]["live"]
    state = c.get(f"/api/runs/{console.run_id}/state").json()
    assert state["run_id"] == console.run_id and state["live"]
    assert sorted(m["market"] for m in state["markets"]) == console.markets
    for m in state["markets"]:
        assert m["gamma"] is not None and m["sigma"] is not None
    assert c.get("/api/runs/latest/state").json()["run_id"] == console.run_id
    traces = c.get(f"/api/runs/{console.run_id}/traces", params={"limit": 3}).json()
    assert 0 < len(traces["decisions"]) <= 3 and traces["total"] >= len(traces["decisions"])
    seq = traces["decisions"][-1]["seq"]
    one = c.get(f"/api/decisions/{seq}").json()
    assert one["decision"]["seq"] == seq and "followed" in one and one["phases"]
    assert c.get(f"/api/runs/{console.run_id}/pending").json()["pending"] == []
    assert isinstance(c.get(f"/api/runs/{console.run_id}/risk").json()["events"], list)
    r = c.get(f"/api/runs/{console.run_id}/traces", params={"agent": "robot"})
    assert r.status_code == 400 and "agent" in r.json()["error"]
    assert c.get("/api/decisions/abc").status_code == 400


def test_the_stream_brings_a_halt_within_a_second_and_actions_are_applied(
    console: Console,
) -> None:
    market = console.markets[0]
    events: list[tuple[float, str, dict[str, Any]]] = []
    stop_reading = threading.Event()

    def read() -> None:
        with (
            httpx.Client(
                base_url=console.base,
                headers={"Authorization": f"Bearer {console.token}"},
                timeout=httpx.Timeout(5, read=30),
            ) as c,
            c.stream("GET", f"/runs/{console.run_id}/events") as r,
        ):
            assert r.headers["content-type"].startswith("text/event-stream")
            name = ""
            for line in r.iter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    events.append((time.time(), name, json.loads(line[6:])))
                if stop_reading.is_set():
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for(lambda: events, 10, "the first state event")
        assert events[0][1] == "state" and events[0][2]["run_id"] == console.run_id
        c = console.bearer()
        r = c.post(
            "/api/actions",
            json={
                "tool": "halt",
                "arguments": {"market": market, "reason": "stream test"},
                "operator": "ann",
            },
        )
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["status"] == "applied", answer
        applied_wall = answer["results"][0]["applied_wall"]
        actor = rows(
            console.db, "select actor from governance_actions where seq = ?", answer["request_seq"]
        )[0][0]
        assert actor == "person:ann"

        def halted_event() -> Any:
            for t, name, s in events:
                ms = {m["market"]: m for m in s.get("markets", [])}
                if name == "state" and ms.get(market, {}).get("state") == "HALTED":
                    return t
            return None

        seen = wait_for(halted_event, 5, "a state event with the market halted")
        delay = seen - applied_wall
        print(f"halt result row written -> state event received in {delay * 1000:.0f} ms")
        assert delay < 1.0
        # Resume; the requests list of the state names who did it.
        r = c.post(
            "/api/actions",
            json={
                "tool": "resume",
                "arguments": {"market": market, "reason": "stream test over"},
                "operator": "ann",
            },
        )
        assert r.json()["status"] == "applied"
        state = c.get(f"/api/runs/{console.run_id}/state").json()
        assert any(q["actor"] == "person:ann" and q["action"] == "halt" for q in state["requests"])
    finally:
        stop_reading.set()
        reader.join(15)


def test_form_actions_go_through_the_control_plane(console: Console) -> None:
    c = console.browser()
    page = c.get(f"/runs/{console.run_id}")
    csrf = csrf_of(page.text)
    market = console.markets[-1]
    form = {
        "csrf": csrf,
        "run_id": console.run_id,
        "tool": "freeze",
        "market": market,
        "param": "sigma",
        "operator": "bob",
        "reason": "news due",
    }
    r = c.post("/actions", data=form, headers={"origin": console.base})
    assert r.status_code == 303 and r.headers["location"] == f"/runs/{console.run_id}"
    shown = c.get(r.headers["location"]).text
    assert f"freeze on {market} by bob: applied" in shown
    api = console.bearer()

    def frozen() -> list[str]:
        state = api.get(f"/api/runs/{console.run_id}/state").json()
        return next(m for m in state["markets"] if m["market"] == market)["frozen"]

    wait_for(lambda: "sigma" in frozen(), 2, "the freeze in the live state")
    # the flash shows once
    assert "by bob: applied" not in c.get(f"/runs/{console.run_id}").text
    r = c.post(
        "/actions",
        data={**form, "tool": "unfreeze"},
        headers={"origin": console.base, "sec-fetch-site": "same-origin"},
    )
    assert r.status_code == 303
    assert "unfreeze" in c.get(r.headers["location"]).text
    # an override outside the policy's bounds: the desk's message, nothing written
    before = gov_count(console.db)
    r = c.post(
        "/actions",
        data={**form, "tool": "override", "gamma": "1e6", "ttl": "5m"},
        headers={"origin": console.base},
    )
    shown = c.get(r.headers["location"]).text
    assert "refused" in shown and "outside the policy bounds" in shown
    assert gov_count(console.db) == before


# -- refusals -------------------------------------------------------------------------------


def test_no_token_or_a_bad_one_is_401(console: Console) -> None:
    anon = console.anonymous()
    for path in ("/", f"/runs/{console.run_id}", "/api/sessions", f"/runs/{console.run_id}/events"):
        r = anon.get(path)
        assert r.status_code == 401, path
    assert "not logged in" in anon.get("/api/sessions").json()["error"]
    html = anon.get("/", headers={"accept": "text/html"})
    assert html.status_code == 401 and 'href="/login"' in html.text
    bad = anon.get("/api/sessions", headers={"Authorization": "Bearer " + "x" * 43})
    assert bad.status_code == 401 and "bad token" in bad.json()["error"]
    assert anon.get("/api/sessions", headers={"Authorization": "Basic abc"}).status_code == 401
    forged = anon.get("/api/sessions", headers={"cookie": "cfa_console=abc.def"})
    assert forged.status_code == 401
    r = anon.post(
        "/api/actions",
        json={"tool": "halt", "arguments": {"market": None, "reason": "x"}, "operator": "x"},
    )
    assert r.status_code == 401
    wrong = anon.get("/login", params={"token": "y" * 43})
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers


def test_state_changes_need_csrf_origin_and_host(console: Console) -> None:
    c = console.browser()
    csrf = csrf_of(c.get(f"/runs/{console.run_id}").text)
    before = gov_count(console.db)
    halt = {
        "run_id": console.run_id,
        "tool": "halt",
        "market": "*",
        "operator": "mallory",
        "reason": "forged",
    }
    # cookie without CSRF token, or a wrong one
    r = c.post("/actions", data=halt)
    assert r.status_code == 403 and "CSRF" in r.text
    r = c.post("/actions", data={**halt, "csrf": "0" * 64})
    assert r.status_code == 403
    body = {"tool": "halt", "arguments": {"market": None, "reason": "x"}, "operator": "m"}
    r = c.post("/api/actions", json=body)
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    # the right token from another origin, a cross-site fetch, an opaque origin
    for headers in (
        {"origin": "http://evil.example"},
        {"origin": f"http://127.0.0.1:{console.port + 1}"},
        {"origin": "null", "sec-fetch-site": "cross-site"},
        {"origin": "null"},
        {"sec-fetch-site": "same-site"},
        {"referer": "http://evil.example/page"},
    ):
        r = c.post("/actions", data={**halt, "csrf": csrf}, headers=headers)
        assert r.status_code == 403, headers
    bearer = console.bearer()
    r = bearer.post("/api/actions", json=body, headers={"origin": "http://evil.example"})
    assert r.status_code == 403 and "Origin" in r.json()["error"]
    # DNS rebinding: a name that is not this console's
    for host in ("evil.example", f"evil.example:{console.port}", f"127.0.0.1:{console.port + 1}"):
        r = bearer.get("/api/sessions", headers={"host": host})
        assert r.status_code == 403 and "Host" in r.json()["error"], host
    assert bearer.get("/api/sessions", headers={"host": f"localhost:{console.port}"}).is_success
    assert gov_count(console.db) == before, "no refused request was written"


def test_operator_reason_and_run_are_checked(console: Console) -> None:
    c = console.bearer()
    before = gov_count(console.db)
    m = console.markets[0]
    cases = [
        ({"tool": "halt", "arguments": {"market": m, "reason": "x"}, "operator": ""}, "operator"),
        ({"tool": "halt", "arguments": {"market": m, "reason": "x"}}, "operator"),
        ({"tool": "halt", "arguments": {"market": m, "reason": "  "}, "operator": "a"}, "reason"),
        ({"tool": "halt", "arguments": {"market": m}, "operator": "a"}, "reason"),
        (
            {"tool": "halt", "arguments": {"market": "NOPE", "reason": "x"}, "operator": "a"},
            "unknown market 'NOPE'",
        ),
        (
            {
                "tool": "halt",
                "arguments": {"market": m, "reason": "x"},
                "operator": "a",
                "run_id": "20200101T000000Z-000000",
            },
            "is not the latest run",
        ),
        ({"tool": "explode", "arguments": {"reason": "x"}, "operator": "a"}, "unknown action"),
        (
            {
                "tool": "approve_change",
                "arguments": {"request_id": "nope", "approved": True, "reason": "x"},
                "operator": "a",
            },
            "not pending",
        ),
    ]
    for body, message in cases:
        r = c.post("/api/actions", json=body)
        assert r.status_code == 400 and message in r.json()["error"], (body, r.text)
    # the form: empty reason, empty operator
    b = console.browser()
    csrf = csrf_of(b.get(f"/runs/{console.run_id}").text)
    form = {"csrf": csrf, "run_id": console.run_id, "tool": "halt", "market": m}
    for fields, message in (
        ({"operator": "ann", "reason": ""}, "give a reason"),
        ({"operator": " ", "reason": "why"}, "give the operator"),
    ):
        r = b.post("/actions", data={**form, **fields})
        assert r.status_code == 303
        assert message in b.get(r.headers["location"]).text
    assert gov_count(console.db) == before, "nothing was written"


def test_a_remote_bind_needs_allow_remote_and_a_token(tmp_path: Path) -> None:
    runner = CliRunner()
    db = str(tmp_path / "x.db")
    env = {"CFA_CONSOLE_TOKEN": ""}
    r = runner.invoke(app, ["console", "--db", db, "--host", "0.0.0.0"], env=env)
    assert r.exit_code != 0 and "needs --allow-remote" in r.output
    r = runner.invoke(app, ["console", "--db", db, "--host", "0.0.0.0", "--allow-remote"], env=env)
    assert r.exit_code != 0 and "explicit token" in r.output
    r = runner.invoke(app, ["console", "--db", db, "--token", "short"], env=env)
    assert r.exit_code != 0 and "at least 16 characters" in r.output


def test_which_hosts_are_this_console() -> None:
    from cfa.console.security import Binding

    local = Binding.make("127.0.0.1", 8321)
    for ok in ("127.0.0.1:8321", "localhost:8321", "[::1]:8321", "LOCALHOST:8321"):
        assert local.host_ok(ok), ok
    for bad in ("127.0.0.1", "127.0.0.1:8322", "evil.example:8321", "", "127.0.0.2:8321", "[::1"):
        assert not local.host_ok(bad), bad
    wild = Binding.make("0.0.0.0", 8321)
    assert wild.host_ok("10.1.2.3:8321") and wild.host_ok("[fe80::1]:8321")
    assert not wild.host_ok("attacker.example:8321") and not wild.host_ok("10.1.2.3:80")
    one = Binding.make("192.168.7.9", 9000)
    assert one.host_ok("192.168.7.9:9000") and not one.host_ok("localhost:9000")
    assert local.origin_ok("http://localhost:8321", "localhost:8321")
    assert not local.origin_ok("http://localhost:8321", "127.0.0.1:8321")
    assert not local.origin_ok("https://127.0.0.1:8321", "127.0.0.1:8321")


def test_a_remote_console_with_a_token_serves_ip_hosts_only(console: Console) -> None:
    port = free_port()
    token = "remote-" + "k" * 30
    proc, out, err = start_console(
        console.db,
        console.db.parent,
        port,
        "--host",
        "0.0.0.0",
        "--allow-remote",
        env={"CFA_CONSOLE_TOKEN": token},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_up(base, proc, err)
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{base}/api/sessions", headers=auth).is_success
        r = httpx.get(f"{base}/api/sessions", headers={**auth, "host": f"rebind.example:{port}"})
        assert r.status_code == 403
        assert httpx.get(f"{base}/api/sessions").status_code == 401
    finally:
        proc.terminate()
        proc.wait(10)
    text = out.read_text() + err.read_text()
    assert token not in text and "log in with your token" in text


def test_the_token_is_in_the_startup_line_only(console: Console) -> None:
    # Exercise the paths that carry the token (login URL, bearer header, a wrong token).
    console.browser().get(f"/runs/{console.run_id}")
    console.bearer().get("/api/sessions")
    console.anonymous().get("/login", params={"token": console.token + "x"})
    time.sleep(0.3)
    out = console.out.read_text() + console.err.read_text()
    assert out.count(console.token) == 1, out
    line = next(x for x in out.splitlines() if console.token in x)
    assert line.startswith("cfa console: open http://127.0.0.1:") and "/login?token=" in line
    for path in console.db.parent.glob("live.db*"):
        assert console.token.encode() not in path.read_bytes(), path


def test_when_the_run_ends_the_stream_says_so_and_actions_are_refused(console: Console) -> None:
    # Last in the module: it stops the session.
    import signal

    console.run.send_signal(signal.SIGTERM)
    console.run.wait(30)
    c = console.bearer()
    got: list[str] = []
    with c.stream("GET", f"/runs/{console.run_id}/events", timeout=15) as r:
        for line in r.iter_lines():
            if line.startswith("event: "):
                got.append(line[7:])
    assert got[-1] == "ended" and "state" in got  # the stream closes after "ended"
    state = c.get(f"/api/runs/{console.run_id}/state").json()
    assert state["ended_ms"] is not None and not state["live"]
    page = console.browser().get(f"/runs/{console.run_id}")
    assert "ended" in page.text
    sessions = c.get("/api/sessions").json()["sessions"]
    assert not sessions[0]["live"]
    r = c.post(
        "/api/actions",
        json={"tool": "halt", "arguments": {"market": None, "reason": "x"}, "operator": "a"},
    )
    assert r.status_code == 400 and "no session is running" in r.json()["error"]
