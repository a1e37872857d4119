"""Core value types shared by every layer: problems, completions, candidates and compute usage."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One question with its reference answer; `meta` holds task-specific extras (level, subject, graph...)."""

    id: str
    question: str
    answer: str
    level: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. Sample i of a prompt is seeded from (seed, prompt, i), so it is the same in any batch."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int = 0

    def cache_fields(self) -> dict[str, Any]:
        """Everything that determines one sample's text (n is excluded: it only says how many)."""
        d = asdict(self)
        d.pop("n")
        d["stop"] = list(self.stop)
        return d


@dataclass(frozen=True)
class Completion:
    """One sampled continuation of a prompt.

    `text` excludes the stop string that ended it; `stop` names that string (None when it ended otherwise),
    so step-wise search can append it. `cached` is True when it came from the store instead of a model.
    """

    text: str
    finish_reason: str  # "stop" (stop string or end of sequence) or "length"
    prompt_tokens: int
    completion_tokens: int
    stop: str | None = None
    cached: bool = False


@dataclass
class Usage:
    """Compute spent: model samples and tokens, verifier calls and tokens, cache hits and estimated FLOPs.

    `flops` is the upper bound 2 x parameters x (prompt + generated tokens) of the policy plus the verifier's
    FLOPs; `verifier_flops` is the verifier's part. `policy_flops` gives the figure for an engine that does not
    recompute cached prompt prefixes.
    """

    policy_calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    verifier_calls: int = 0
    verifier_tokens: int = 0
    flops: float = 0.0
    verifier_flops: float = 0.0

    def add_completions(self, completions: list[Completion], params_count: int = 0) -> None:
        """Count completions; `flops` uses the 2 x parameters x tokens rule of thumb when params_count is known."""
        for c in completions:
            self.policy_calls += 1
            self.cache_hits += int(c.cached)
            self.prompt_tokens += c.prompt_tokens
            self.completion_tokens += c.completion_tokens
            self.flops += 2.0 * params_count * (c.prompt_tokens + c.completion_tokens)

    def add_verified(self, tokens: int, params_count: int) -> None:
        """Count one verifier call over `tokens` tokens of a model with `params_count` parameters."""
        self.verifier_calls += 1
        self.verifier_tokens += tokens
        flops = 2.0 * params_count * tokens
        self.flops += flops
        self.verifier_flops += flops

    def policy_flops(self, params_count: int, caches_prefixes: bool) -> float:
        """Policy FLOPs, 2 x parameters x tokens computed: every generated token, and the prompt tokens only
        when the engine recomputes them (an engine with a prefix cache computes a shared prefix once)."""
        computed = self.completion_tokens + (0 if caches_prefixes else self.prompt_tokens)
        return 2.0 * params_count * computed

    def __iadd__(self, other: Usage) -> Usage:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Candidate:
    """One full solution: its text, the steps it splits into, the extracted answer and any scores."""

    text: str
    answer: str | None
    steps: list[str] = field(default_factory=list)
    correct: bool | None = None
    score: float | None = None
    step_scores: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
