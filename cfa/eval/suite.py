"""Evaluation suites: scenarios × seeds × strategies, defined in YAML.

A suite file (``suites/default.yaml`` ships with cfa; any path works)::

    name: default
    description: what the suite is for
    duration: 30m               # simulated time per run
    seeds: 1000-1029            # a range "a-b", a list, or both as a list of items
    scenarios: [calm, regime-shift, informed-flow]
    strategies: [naive, static-as, agents:heuristic]
    baseline: static-as         # the strategy every other one is paired against
    policy: default             # packaged policy name or YAML path
    agent_interval: 60s
    naive_half_spread: 0.01     # dollars
    llm: {model: gpt-4o-mini, base_url: null, latency: 2s}   # for agents:openai

Unknown keys, unknown scenarios or strategies and malformed seed ranges are refused with the
file and the key named. :func:`jobs` expands a suite into one :class:`~cfa.eval.models.Job` per
run, each writing its own audit store under the output directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cfa._files import read_named_or_path
from cfa.cli.options import duration_seconds
from cfa.eval.models import Job
from cfa.eval.strategies import parse_strategy
from cfa.exchange.sim import known_scenarios


class SuiteError(ValueError):
    """The suite file is missing, unreadable or invalid; the message names the file and key."""


def parse_seeds(spec: str | int | list[Any]) -> list[int]:
    """``"1-20"``, ``"1,2,5-7"``, ``7`` or a list of those → sorted distinct seeds (≥ 0)."""
    items = spec if isinstance(spec, list) else [spec]
    seeds: set[int] = set()
    for item in items:
        if isinstance(item, bool):
            raise ValueError(f"seeds: {item!r} is not a seed")
        if isinstance(item, int):
            parts = [str(item)]
        elif isinstance(item, str):
            parts = [p.strip() for p in item.split(",") if p.strip()]
        else:
            raise ValueError(f"seeds: {item!r} is not a seed or a range")
        for part in parts:
            lo, sep, hi = part.partition("-")
            try:
                a = int(lo)
                b = int(hi) if sep else a
            except ValueError:
                raise ValueError(f"seeds: {part!r} is not a seed or a range a-b") from None
            if a < 0 or b < a:
                raise ValueError(f"seeds: {part!r} must be a non-negative, ascending range")
            if b - a >= 100_000:
                raise ValueError(f"seeds: {part!r} is too long a range")
            seeds.update(range(a, b + 1))
    if not seeds:
        raise ValueError("seeds: empty")
    return sorted(seeds)


class LLMOptions(BaseModel):
    """Options of the ``agents:openai`` strategy (also ``CFA_LLM_*`` settings)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = None
    base_url: str | None = None
    latency: str = "2s"
    """Simulated latency charged to each decision in lockstep (the clock waits for answers)."""
    cache: str | None = None
    """LLM call cache file (default: ``llm-cache.db`` in the output directory)."""

    @field_validator("latency")
    @classmethod
    def _latency(cls, v: str) -> str:
        if str(v).strip() not in ("0", "0s"):
            duration_seconds(v)
        return v


class Suite(BaseModel):
    """A validated suite."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    duration: str = "30m"
    seeds: list[int]
    scenarios: list[str] = Field(min_length=1)
    strategies: list[str] = Field(min_length=1)
    baseline: str = "static-as"
    policy: str = "default"
    agent_interval: str = "60s"
    naive_half_spread: float = Field(default=0.01, gt=0, lt=0.5)
    llm: LLMOptions = LLMOptions()

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, v: Any) -> list[int]:
        return parse_seeds(v)

    @field_validator("scenarios")
    @classmethod
    def _scenarios(cls, v: list[str]) -> list[str]:
        known = known_scenarios()
        for name in v:
            if name not in known and not name.endswith((".yaml", ".yml")):
                raise ValueError(f"unknown scenario {name!r} (known: {', '.join(known)})")
        return list(dict.fromkeys(v))

    @field_validator("strategies")
    @classmethod
    def _strategies(cls, v: list[str]) -> list[str]:
        for s in v:
            parse_strategy(s)
        return list(dict.fromkeys(v))

    @field_validator("duration", "agent_interval")
    @classmethod
    def _durations(cls, v: str) -> str:
        duration_seconds(v)
        return v

    @property
    def duration_s(self) -> float:
        return duration_seconds(self.duration)

    def with_overrides(
        self,
        *,
        seeds: str | None = None,
        scenarios: list[str] | None = None,
        strategies: list[str] | None = None,
        duration: str | None = None,
        llm: dict[str, Any] | None = None,
    ) -> Suite:
        """This suite with the command line's choices in place (validated again)."""
        data = self.model_dump()
        if seeds is not None:
            data["seeds"] = seeds
        if scenarios:
            data["scenarios"] = scenarios
        if strategies:
            data["strategies"] = strategies
        if duration is not None:
            data["duration"] = duration
        if llm:
            data["llm"] = {**data["llm"], **{k: v for k, v in llm.items() if v is not None}}
        try:
            return Suite.model_validate(data)
        except ValidationError as exc:
            raise SuiteError(_describe(f"suite {self.name}", exc)) from None


def _describe(label: str, exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<top>"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        problems.append(f"{key}: {msg.removeprefix('Value error, ')}")
    return f"{label}: invalid suite: " + "; ".join(problems)


def load_suite(source: str | Path = "default") -> Suite:
    """A packaged suite by name (``default``, ``smoke``) or a YAML file; raises SuiteError."""
    try:
        text, label = read_named_or_path(source, "cfa.suites", "suites")
    except (LookupError, OSError) as exc:
        raise SuiteError(str(exc)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SuiteError(f"{label}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SuiteError(f"{label}: the top level must be a mapping of keys")
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        raise SuiteError(_describe(label, exc)) from None
    if suite.baseline not in suite.strategies:
        raise SuiteError(f"{label}: baseline {suite.baseline!r} is not one of the strategies")
    return suite


def jobs(suite: Suite, out_dir: Path) -> list[Job]:
    """One job per scenario × strategy × seed, in that order; audit stores under ``out_dir``."""
    llm: dict[str, str | float | None] = {}
    if any(s == "agents:openai" for s in suite.strategies):
        o = suite.llm
        llm = {
            "model": o.model,
            "base_url": o.base_url,
            "latency_s": 0.0 if o.latency.strip() in ("0", "0s") else duration_seconds(o.latency),
            "cache": o.cache or str(out_dir / "llm-cache.db"),
        }
    out = []
    for scenario in suite.scenarios:
        label = Path(scenario).stem
        for spec in suite.strategies:
            slug = parse_strategy(spec).slug
            for seed in suite.seeds:
                out.append(
                    Job(
                        scenario=scenario,
                        seed=seed,
                        strategy=spec,
                        duration_s=suite.duration_s,
                        policy=suite.policy,
                        agent_interval_s=duration_seconds(suite.agent_interval),
                        naive_half_spread=suite.naive_half_spread,
                        db=str(out_dir / "runs" / label / slug / f"seed-{seed}.db"),
                        llm=llm if spec == "agents:openai" else {},
                    )
                )
    return out
