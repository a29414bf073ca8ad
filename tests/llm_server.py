"""A scripted, local OpenAI-compatible Chat Completions server for tests.

A real HTTP server (``http.server.ThreadingHTTPServer`` in a daemon thread) bound to 127.0.0.1
on an ephemeral port, answering ``POST /v1/chat/completions`` in the OpenAI wire format. Each
request pops the next scripted :class:`Reply` from a FIFO queue (an empty queue answers HTTP 500,
so a test that forgets to script a reply fails loudly). Every request is recorded (method, path,
lower-cased headers, JSON body) in ``server.requests`` for assertions.

The server checks that the body is a JSON object with a ``model``, a non-empty ``messages`` list
and a ``tools`` list of Chat Completions function tools, and answers HTTP 400 with an
OpenAI-style error body otherwise.

Reply builders: :func:`tool_call`, :func:`malformed_arguments`, :func:`unknown_tool`,
:func:`out_of_range`, :func:`prose`, :func:`refusal`, :func:`empty_choices`, :func:`http_error`,
:func:`rate_limited`, :func:`raw_body` and :func:`delayed` (wraps a reply with a sleep).

Instead of (or after) a script, a *responder* can answer: ``server.respond_with(fn)`` makes
every request that finds the script empty get ``fn(request)`` — a deterministic function of the
request makes the server a deterministic endpoint, for reproducibility tests; ``delay_s`` holds
each such answer back that long (wall time). ``server.chat_requests`` counts the chat requests
received (whatever answered them).

Use it through the ``llm_server`` fixture: import :func:`llm_server_fixture` into the test
module (tests/ is on ``sys.path`` under pytest's default import mode); the fixture is registered
under the name ``llm_server``, so test arguments do not shadow the import::

    from llm_server import llm_server_fixture, tool_call  # noqa: F401

    async def test_x(llm_server):
        llm_server.queue(tool_call("keep", {"rationale": "fine"}))
        ...  # AsyncOpenAI(base_url=llm_server.base_url, ...)
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

DEFAULT_MODEL = "test-model-1"
CHAT_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class Reply:
    """One scripted answer: HTTP ``status``, a JSON ``body`` (or raw ``data``), a delay."""

    status: int = 200
    body: Mapping[str, Any] | None = None
    data: bytes | None = None
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True)
class Recorded:
    """A request as the server saw it."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: Any

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", [])) if isinstance(self.body, dict) else []


# -- reply builders -----------------------------------------------------------------------------


def completion(
    message: Mapping[str, Any],
    *,
    finish_reason: str = "stop",
    usage: Mapping[str, int] | None = None,
    model: str = DEFAULT_MODEL,
    choices: list[Mapping[str, Any]] | None = None,
    completion_id: str = "chatcmpl-test-1",
    system_fingerprint: str | None = "fp_test",
) -> dict[str, Any]:
    """A ``chat.completion`` object around ``message`` (or explicit ``choices``)."""
    if choices is None:
        choices = [{"index": 0, "message": dict(message), "finish_reason": finish_reason}]
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": system_fingerprint,
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = dict(usage)
    return body


def tool_call(
    name: str,
    arguments: str | Mapping[str, Any],
    *,
    call_id: str = "call_test_1",
    content: str | None = None,
    usage: Mapping[str, int] | None = None,
    model: str = DEFAULT_MODEL,
) -> Reply:
    """A reply calling tool ``name``; ``arguments`` is sent verbatim when it is a string."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    message = {
        "role": "assistant",
        "content": content,
        "refusal": None,
        "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
        ],
    }
    return Reply(body=completion(message, finish_reason="tool_calls", usage=usage, model=model))


MALFORMED_ARGUMENTS = '{"value": 0.2, "rationale": "tighten"'  # no closing brace


def malformed_arguments(name: str = "set_gamma") -> Reply:
    """A tool call whose arguments are not valid JSON."""
    return tool_call(name, MALFORMED_ARGUMENTS)


def unknown_tool(name: str = "set_delta") -> Reply:
    """A tool call naming a tool that does not exist."""
    return tool_call(name, {"value": 0.5, "rationale": "no such tool"})


def out_of_range(value: float = -1.0, name: str = "set_gamma") -> Reply:
    """A well-formed call whose value is outside the schema (``<= 0``) or the policy bounds."""
    return tool_call(name, {"value": value, "rationale": "out of range on purpose"})


def prose(text: str = "I think gamma looks fine, no change.") -> Reply:
    """An answer in prose with no tool call."""
    msg = {"role": "assistant", "content": text, "refusal": None}
    return Reply(body=completion(msg, finish_reason="stop"))


def refusal(text: str = "I'm sorry, I can't help with that.") -> Reply:
    """A refusal (``message.refusal`` set, no content, no tool call)."""
    msg = {"role": "assistant", "content": None, "refusal": text}
    return Reply(body=completion(msg, finish_reason="stop"))


def empty_choices() -> Reply:
    """A completion with an empty ``choices`` list."""
    return Reply(body=completion({}, choices=[]))


def http_error(
    status: int,
    message: str = "scripted error",
    *,
    type_: str = "server_error",
    code: str | None = None,
    retry_after_ms: int | None = None,
) -> Reply:
    """An HTTP error with an OpenAI-style ``{"error": {...}}`` body."""
    headers = {} if retry_after_ms is None else {"retry-after-ms": str(retry_after_ms)}
    return Reply(status=status, body=_err(message, type_, code), headers=headers)


def rate_limited(message: str = "Rate limit reached for requests") -> Reply:
    """HTTP 429 as OpenAI sends it."""
    return http_error(429, message, type_="requests", code="rate_limit_exceeded")


def raw_body(data: bytes, *, status: int = 200, content_type: str = "application/json") -> Reply:
    """Arbitrary bytes, for broken-server cases (invalid JSON, HTML, ...)."""
    return Reply(status=status, data=data, content_type=content_type)


def delayed(seconds: float, reply: Reply | None = None) -> Reply:
    """``reply`` (default: a valid ``keep`` call) sent only after ``seconds``."""
    base = reply if reply is not None else tool_call("keep", {"rationale": "late"})
    return replace(base, delay_s=seconds)


POLICY_USAGE = {"prompt_tokens": 120, "completion_tokens": 8, "total_tokens": 128}


def context_of(request: Recorded) -> dict[str, Any] | None:
    """The context JSON a cfa reasoner put between its data markers, or None."""
    for m in request.messages:
        text = m.get("content")
        if m.get("role") == "user" and isinstance(text, str) and "<<<CONTEXT_JSON\n" in text:
            data = text.split("<<<CONTEXT_JSON\n", 1)[1].rsplit("\nCONTEXT_JSON>>>", 1)[0]
            ctx = json.loads(data)
            return ctx if isinstance(ctx, dict) else None
    return None


def policy_responder(usage: Mapping[str, int] | None = POLICY_USAGE) -> Any:
    """A deterministic agent: the answer is a function of the request body only.

    Market agent: after a rejection (a ``tool`` message in the history) ``keep``; else, when
    γ's ``cooldown_left_s`` is under 30 s (so some calls hit the cooldown when validated later),
    ``set_gamma`` to γ × 1.1 if the L1 imbalance is ≥ 0, else γ / 1.1; otherwise ``keep``.
    Governance: approve the first pending change, else a no-op ``unfreeze`` of the first market.
    Ids derive from a hash of the body, so two identical requests get identical answers.
    """

    def answer(request: Recorded) -> Reply:
        body = json.dumps(request.body, sort_keys=True)
        digest = hashlib.sha256(body.encode()).hexdigest()[:16]
        ctx = context_of(request) or {}
        retry = any(m.get("role") == "tool" for m in request.messages)
        tools = {t["function"]["name"] for t in request.body.get("tools", [])}
        if "approve_change" in tools:
            pending = ctx.get("pending_approvals") or []
            if pending:
                name = "approve_change"
                args: dict[str, Any] = {
                    "request_id": pending[0]["request_id"],
                    "approved": True,
                    "reason": "within limits",
                }
            else:
                first = (ctx.get("markets") or [{"ticker": "none"}])[0]["ticker"]
                name = "unfreeze"
                args = {"market": first, "param": "all", "reason": "routine review"}
        else:
            gamma = ctx.get("gamma") or {}
            imbalance = (ctx.get("book") or {}).get("imbalance_l1") or 0.0
            if retry or gamma.get("cooldown_left_s", 0.0) >= 30.0 or "value" not in gamma:
                name, args = "keep", {"rationale": "cooling down"}
            else:
                factor = 1.1 if imbalance >= 0 else 1 / 1.1
                value = round(float(gamma["value"]) * factor, 4)
                name, args = "set_gamma", {"value": value, "rationale": f"imbalance {imbalance}"}
        reply = tool_call(name, args, call_id=f"call_{digest}", usage=usage)
        assert reply.body is not None
        return replace(reply, body={**reply.body, "id": f"chatcmpl-{digest}", "created": 0})

    return answer


def _err(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def _check_request(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "missing model"
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return "missing messages"
    if not isinstance(body.get("tools"), list):
        return "missing tools"
    for t in body["tools"]:
        if not (isinstance(t, dict) and t.get("type") == "function" and "function" in t):
            return "tools must be Chat Completions function tools"
    return None


# -- the server ---------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        self._send(Reply(status=404, body=_err("not found", "invalid_request_error")))

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        owner = self.server.owner
        headers = {k.lower(): v for k, v in self.headers.items()}
        seen = Recorded("POST", self.path, headers, body)
        with owner.lock:
            owner.requests.append(seen)
        if self.path.rstrip("/") != CHAT_PATH:
            self._send(Reply(status=404, body=_err(f"no route {self.path}", "invalid_request")))
            return
        problem = _check_request(body)
        if problem:
            self._send(Reply(status=400, body=_err(problem, "invalid_request_error")))
            return
        with owner.lock:
            reply = owner.script.popleft() if owner.script else None
            responder, delay = owner.responder, owner.responder_delay_s
        if reply is None and responder is not None:
            reply = responder(seen)
            if delay > 0 and reply.delay_s == 0:
                reply = replace(reply, delay_s=delay)
        if reply is None:
            reply = Reply(status=500, body=_err("test server: no scripted reply", "server_error"))
        if reply.delay_s > 0 and owner.stopping.wait(reply.delay_s):
            return  # the server is shutting down
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        data = reply.data if reply.data is not None else json.dumps(reply.body).encode()
        try:
            self.send_response(reply.status)
            self.send_header("content-type", reply.content_type)
            self.send_header("content-length", str(len(data)))
            for k, v in reply.headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (timeout)
            self.close_connection = True


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: FakeLLMServer

    def handle_error(self, request: Any, client_address: Any) -> None:  # client went away
        pass


class FakeLLMServer:
    """The running server: ``base_url`` (ends in ``/v1``), ``queue(...)``, ``requests``."""

    def __init__(self) -> None:
        self.script: deque[Reply] = deque()
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.responder: Callable[[Recorded], Reply] | None = None
        self.responder_delay_s = 0.0
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self.port = int(self._httpd.server_address[1])
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> FakeLLMServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def queue(self, *replies: Reply) -> FakeLLMServer:
        """Append replies to the script; each chat request consumes one."""
        with self.lock:
            self.script.extend(replies)
        return self

    def respond_with(
        self, responder: Callable[[Recorded], Reply] | None, *, delay_s: float = 0.0
    ) -> FakeLLMServer:
        """Answer requests that find the script empty with ``responder(request)``.

        ``delay_s`` (wall seconds) delays each responder answer that sets no delay itself.
        ``None`` restores the default (HTTP 500 when the script is empty).
        """
        with self.lock:
            self.responder = responder
            self.responder_delay_s = delay_s
        return self

    @property
    def chat_requests(self) -> int:
        """How many requests reached ``/v1/chat/completions`` so far."""
        with self.lock:
            return sum(1 for r in self.requests if r.path.rstrip("/") == CHAT_PATH)

    @property
    def last(self) -> Recorded:
        """The most recent request."""
        with self.lock:
            return self.requests[-1]

    @property
    def pending(self) -> int:
        """Scripted replies not consumed yet."""
        with self.lock:
            return len(self.script)


@pytest.fixture(name="llm_server")
def llm_server_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLMServer]:
    """A started :class:`FakeLLMServer`; proxies are bypassed so traffic stays on 127.0.0.1."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server = FakeLLMServer().start()
    try:
        yield server
    finally:
        server.stop()
