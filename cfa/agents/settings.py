"""Settings for the LLM endpoint behind the ``openai`` reasoner (pydantic-settings).

Every field reads from the environment with the prefix ``CFA_LLM_`` (``CFA_LLM_BASE_URL``,
``CFA_LLM_MODEL``, ``CFA_LLM_TIMEOUT_S``, ...) and may be given as a keyword argument, which wins
over the environment. The API key is the exception: it is read from ``CFA_LLM_API_KEY`` or, if
that is unset, ``OPENAI_API_KEY``.

Contract for the key: it is a :class:`pydantic.SecretStr`, so it never appears in ``repr``,
``str``, ``model_dump_json`` or log lines built from the settings; only
:class:`~cfa.agents.reasoners.openai_backend.OpenAIReasoner` unwraps it, to hand it to the SDK.

Prices, for the run's token and cost totals (:class:`cfa.runtime.agents.LLMTotals`):
``price_input`` and ``price_output`` in **dollars per million tokens** (prompt and completion);
both 0 (the default) means the price is unknown and the cost is reported as unknown.

``tool_choice`` (see :data:`TOOL_CHOICE_HELP`):

* ``"required"`` (default): the model must call one of the tools. OpenAI, vLLM >= 0.8.3,
  llama.cpp ``llama-server --jinja`` and Ollama accept it.
* ``"auto"``: the model may answer in prose (which the reasoner turns into an abstain). vLLM needs
  ``--enable-auto-tool-choice --tool-call-parser <parser>`` for it.
* ``"function:NAME"``: the object form ``{"type": "function", "function": {"name": NAME}}``,
  forcing that one tool; for servers that only support named calls (older vLLM guided decoding).
  When NAME is not among the tools of a request (e.g. a governance decision), ``"required"`` is
  sent instead.
* ``"omit"``: send no ``tool_choice`` at all, for servers or reasoning models (DeepSeek, MiniMax)
  that reject the parameter.
"""

from __future__ import annotations

import re

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TOOL_CHOICE_HELP = 'one of "required", "auto", "omit" or "function:NAME"'
_NAMED = re.compile(r"^function:[A-Za-z0-9_-]{1,64}$")


class LLMSettings(BaseSettings):
    """Where and how to call an OpenAI-compatible Chat Completions endpoint.

    ``base_url`` None means the SDK default (``OPENAI_BASE_URL`` if set, else api.openai.com).
    ``api_key`` None is allowed for local servers (vLLM, Ollama, llama.cpp ignore it); the
    reasoner then sends a placeholder.
    """

    model_config = SettingsConfigDict(
        env_prefix="CFA_LLM_", populate_by_name=True, extra="ignore", frozen=True
    )

    base_url: str | None = Field(
        default=None, description="OpenAI-compatible base URL, e.g. http://localhost:8000/v1."
    )
    model: str = Field(default="gpt-4o-mini", min_length=1, description="Model name to request.")
    api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("CFA_LLM_API_KEY", "OPENAI_API_KEY"),
        description="API key (CFA_LLM_API_KEY, else OPENAI_API_KEY). Never logged.",
    )
    timeout_s: float = Field(default=30.0, gt=0, le=600, description="Per-request timeout, s.")
    max_retries: int = Field(default=2, ge=0, le=10, description="SDK retries (429, 5xx, I/O).")
    temperature: float = Field(default=0.0, ge=0, le=2)
    tool_choice: str = Field(default="required", description=TOOL_CHOICE_HELP)
    system_role: str = Field(
        default="system",
        pattern="^(system|developer)$",
        description='Role of the prompt message; "system" is the portable choice.',
    )
    seed: int | None = Field(default=None, description="Sent when set (OpenAI, vLLM honour it).")
    price_input: float = Field(
        default=0.0,
        ge=0,
        allow_inf_nan=False,
        description="Dollars per 1,000,000 prompt tokens (CFA_LLM_PRICE_INPUT); 0 = unknown.",
    )
    price_output: float = Field(
        default=0.0,
        ge=0,
        allow_inf_nan=False,
        description="Dollars per 1,000,000 completion tokens (CFA_LLM_PRICE_OUTPUT); 0 = unknown.",
    )

    @field_validator("tool_choice")
    @classmethod
    def _check_tool_choice(cls, v: str) -> str:
        v = v.strip()
        if v in {"required", "auto", "omit"} or _NAMED.match(v):
            return v
        raise ValueError(f"tool_choice must be {TOOL_CHOICE_HELP}, not {v!r}")

    def key_value(self) -> str | None:
        """The API key in clear, or None. Only for handing to the SDK; never log it."""
        return None if self.api_key is None else self.api_key.get_secret_value()
