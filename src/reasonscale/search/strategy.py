"""The Strategy interface and the registry of strategies.

A strategy is a class with its own config section (a `StrategyConfig` subclass whose `name` is a Literal): it
turns a chunk of problems into one `Outcome` per problem at a budget N. Adding one is a module that defines both
and calls `register` (built-ins are listed in `BUILTIN_MODULES`); `pipelines/evaluate.py` needs no change.

Strategies read what they need from the `Chunk` the evaluation gives them: the task, the engine, sampling
settings, verifiers, and two sets of samples shared by every strategy that reads them (greedy solutions and one
sample pool of the largest size any strategy asks for, with the pool's answer groups), so smaller budgets are read
off the same samples.
"""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from reasonscale.config import StrategyConfig, VerifiedStrategyConfig
from reasonscale.engines.base import Engine
from reasonscale.identity import digest
from reasonscale.tasks.base import Task
from reasonscale.types import Problem, SamplingParams, Usage
from reasonscale.verifiers.base import Verifier

BUILTIN_MODULES = (
    "reasonscale.search.pool",
    "reasonscale.search.step_strategies",
    "reasonscale.search.topologies",
    "reasonscale.search.revise",
    "reasonscale.search.topological",
)


@dataclass
class Outcome:
    """A strategy's result on one problem: its answer, whether it is right (an expectation for pass@k), the
    compute it spent (policy and verifier), the chosen solution's text unless it is one of the shared samples
    (which the result record holds anyway), and any strategy-specific `details` for analysis (e.g. the
    correctness of every revision)."""

    answer: str | None
    correct: float
    usage: Usage
    text: str | None = None
    details: dict[str, Any] | None = None


class Chunk(Protocol):
    """What a strategy sees of a chunk of problems (implemented by the evaluation)."""

    task: Task
    engine: Engine
    problems: Sequence[Problem]
    prompts: Sequence[str]

    def sampling(self, n: int = 1, greedy: bool = False) -> SamplingParams: ...

    def verifier(self, config: VerifiedStrategyConfig) -> Verifier: ...

    def greedy(self) -> list[dict[str, Any]]: ...

    def pool(self) -> list[list[dict[str, Any]]]: ...

    def groups(self) -> list[list[int | None]]: ...


class Strategy(ABC):
    """A test-time compute strategy configured by one section.

    `shares_samples`: its outcomes are read off the chunk's shared samples (whose cost the run counts once per
    problem) instead of generating their own. `generation_budget(n)` is the compute a budget N costs, in full
    generations' worth (N, except lookahead's N x (k + 1)), so strategies compare at equal compute.
    """

    config_class: ClassVar[type[StrategyConfig]]
    shares_samples: ClassVar[bool] = False

    def __init__(self, config: StrategyConfig):
        self.config = config

    @classmethod
    def name(cls) -> str:
        return cls.config_class.model_fields["name"].default

    def pool_size(self) -> int:
        """How many pool samples per problem it reads (0: none)."""
        return 0

    def budgets(self) -> list[int]:
        return self.config.budget_list()

    def generation_budget(self, n: int) -> float:
        return float(n)

    @abstractmethod
    def run(self, chunk: Chunk, n: int) -> list[Outcome]:
        """One outcome per problem of the chunk at budget n."""


_REGISTRY: dict[str, type[Strategy]] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    """Make a strategy available by its config section's name (a class decorator)."""
    name = cls.name()
    if not isinstance(name, str):
        raise TypeError(f"{cls.__name__}.config_class needs a default name, e.g. name: Literal['x'] = 'x'")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"strategy '{name}' is registered twice ({_REGISTRY[name].__name__}, {cls.__name__})")
    _REGISTRY[name] = cls
    return cls


def registered() -> dict[str, type[Strategy]]:
    """Every registered strategy by name (the built-ins are loaded on first use)."""
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    return dict(_REGISTRY)


def build_strategy(config: StrategyConfig) -> Strategy:
    return registered()[config.name](config)


def labels(configs: Sequence[StrategyConfig]) -> list[str]:
    """Readable unique names: the short name (`beam[prm]`) where it is unique, with the settings in which
    same-named strategies differ where it is not (`beam[prm,M=4]`, `beam[prm,M=8]`)."""
    bases = [c.base_label() for c in configs]
    out = []
    for config, base in zip(configs, bases):
        mine = config.settings()
        peers = [c.settings() for c, b in zip(configs, bases) if b == base and c is not config]
        differing = [f for f in mine if any(p.get(f) != mine[f] for p in peers)]
        extras = [config.short(f, _compact(mine[f])) for f in differing]
        out.append(_with_extras(base, extras))
    for i, label in enumerate(out):
        if out.count(label) > 1:  # settings that read alike (e.g. paths): fall back to a hash
            out[i] = _with_extras(label, [digest(configs[i].settings(), 6)])
    return out


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":")) if isinstance(value, (dict, list)) else str(value)


def _with_extras(base: str, extras: list[str]) -> str:
    if not extras:
        return base
    if base.endswith("]"):
        return f"{base[:-1]},{','.join(extras)}]"
    return f"{base}[{','.join(extras)}]"
