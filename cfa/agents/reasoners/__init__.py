"""Reasoner backends: heuristic (offline default), openai (OpenAI-compatible), scripted."""

from __future__ import annotations

from typing import Any

from cfa.agents.reasoners.base import Reasoner


def make_reasoner(spec: str, **openai_options: Any) -> Reasoner:
    """Build a reasoner from a CLI spec: ``heuristic``, ``openai`` or ``scripted:PATH``.

    ``openai_options`` (``model``, ``base_url``, ...) override the ``CFA_LLM_*`` settings for the
    openai backend. Raises ValueError naming the spec when it is unknown, and ScriptError when a
    script file is missing or malformed.
    """
    if spec == "heuristic":
        from cfa.agents.reasoners.heuristic import HeuristicReasoner

        return HeuristicReasoner()
    if spec.startswith("scripted:"):
        from cfa.agents.reasoners.scripted import ScriptedReasoner

        return ScriptedReasoner(spec.removeprefix("scripted:"))
    if spec == "openai":
        from cfa.agents.reasoners.openai_backend import OpenAIReasoner
        from cfa.agents.settings import LLMSettings

        overrides = {k: v for k, v in openai_options.items() if v is not None}
        return OpenAIReasoner(LLMSettings(**overrides))
    raise ValueError(f"unknown reasoner {spec!r}: use heuristic, openai or scripted:PATH")
