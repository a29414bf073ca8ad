"""``scripted:PATH`` — tool calls read from a JSONL file, one decision per line.

For tests and for reproducing incidents. Each line is one JSON object:

* ``{"calls": [{"name": "set_gamma", "arguments": {"value": 2.0, "rationale": "..."}}]}`` —
  ``arguments`` may also be a string, passed through verbatim (so malformed JSON can be scripted);
* ``{"text": "prose with no tool call"}`` — an abstain;
* ``{"error": "timeout"}`` — a backend failure, also an abstain;
* an optional ``"market": "TICKER"`` (or ``"role": "governance"``) restricts a line to that
  market's (or the governance agent's) calls.

Lines are consumed in order, separately for each market and for governance. When a script is
exhausted the reasoner abstains with ``error="script exhausted"``. A line that is not valid JSON
is an error at load time naming the file and line.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from cfa.agents.reasoners.base import RawCall, ReasonRequest, ReasonResponse


class ScriptError(ValueError):
    """The script file is missing or malformed; the message names the file and line."""


class ScriptedReasoner:
    name = "scripted"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.model: str | None = self.path.name
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ScriptError(f"{self.path}: cannot read script ({exc.strerror})") from exc
        self.lines: list[dict[str, Any]] = []
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ScriptError(f"{self.path}:{i}: not valid JSON: {exc.msg}") from exc
            if not isinstance(obj, dict) or not ({"calls", "text", "error"} & obj.keys()):
                raise ScriptError(f"{self.path}:{i}: needs one of 'calls', 'text', 'error'")
            self.lines.append(obj)
        self._cursor: dict[str, int] = {}

    def _key(self, req: ReasonRequest) -> str:
        return "governance" if req.role == "governance" else f"market:{req.market}"

    def _matches(self, line: dict[str, Any], req: ReasonRequest) -> bool:
        if req.role == "governance":
            return line.get("role") == "governance"
        if line.get("role") == "governance":
            return False
        return line.get("market") in (None, req.market)

    async def reason(self, request: ReasonRequest) -> ReasonResponse:
        t0 = time.perf_counter()
        key = self._key(request)
        i = self._cursor.get(key, 0)
        while i < len(self.lines) and not self._matches(self.lines[i], request):
            i += 1
        if i >= len(self.lines):
            self._cursor[key] = i
            return ReasonResponse((), raw="", model=self.model, error="script exhausted")
        line = self.lines[i]
        self._cursor[key] = i + 1
        raw = json.dumps(line, sort_keys=True)
        latency = time.perf_counter() - t0
        if "error" in line:
            return ReasonResponse(
                (), raw=raw, model=self.model, latency_s=latency, error=str(line["error"])
            )
        calls = []
        for j, c in enumerate(line.get("calls") or []):
            args = c.get("arguments", {})
            text = args if isinstance(args, str) else json.dumps(args)
            calls.append(RawCall(f"call_{i}_{j}", str(c.get("name", "")), text))
        text = str(line.get("text", ""))
        error = None if calls else f"no tool call: {text[:200]}"
        return ReasonResponse(
            tuple(calls), raw=raw, text=text, model=self.model, latency_s=latency, error=error
        )

    async def aclose(self) -> None:
        return None
