"""Run configuration: the pydantic models of a run (loading, overrides and errors are in `config_loading`)."""

from __future__ import annotations

import difflib
import json
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializeAsAny,
    field_validator,
    model_validator,
)


class ConfigError(ValueError):
    """A configuration problem, with a message that names the key and, where possible, the intended one."""


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, and types are strict (`seed: true` is not 1,
    `n: "4"` is not 4; an integer still fills a float)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ModelConfig(Section):
    # How fast, not what: changing these never changes a sample, so they are not part of a run's identity.
    THROUGHPUT_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {
            "max_batch_size",
            "prefix_cache_mb",
            "concurrency",
            "request_timeout",
            "max_retries",
            "replicas",
            "ray_address",
            "cpus_per_replica",
            "gpu_memory_utilization",
        }
    )

    path: str = Field(description="local directory or Hugging Face id of the policy model")
    engine: Literal["hf", "vllm", "openai", "ray"] = "hf"
    revision: str | None = Field(
        None,
        description="hub id: the revision to load (default main, resolved to its commit); openai: a version string "
        "you choose for the served model, part of the cache identity (keeping it true is your responsibility)",
    )
    device: str = "auto"
    dtype: str = "auto"
    max_batch_size: int = Field(64, ge=1)
    prefix_cache_mb: int = Field(512, ge=0, description="hf: keys and values kept across calls (0: off)")
    chat_template: bool = Field(False, description="wrap questions in the model's chat template")
    # openai: any OpenAI-compatible server
    base_url: str | None = Field(None, description="server URL including /v1, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str | None = Field(None, description="environment variable holding the API key (never stored)")
    api: Literal["completions", "chat"] = Field("completions", description="chat sends each prompt as a user turn")
    served_model_name: str | None = Field(None, description="model name the server knows (default: path)")
    concurrency: int = Field(16, ge=1, description="requests in flight at once")
    request_timeout: float = Field(300.0, gt=0, description="seconds before one request is abandoned and retried")
    max_retries: int = Field(6, ge=0, description="retries of a failed request (429, 5xx, timeouts, resets)")
    # vllm
    tensor_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    max_model_len: int | None = Field(None, ge=1, description="context length (default: the model's)")
    # ray: data-parallel replicas of another engine
    replicas: int = Field(2, ge=1)
    replica_engine: Literal["hf", "vllm"] = "hf"
    ray_address: str | None = Field(None, description="existing cluster, e.g. ray://head:10001 or auto")
    cpus_per_replica: float = Field(1.0, ge=0)
    gpus_per_replica: float | None = Field(
        None, ge=0, description="default: tensor_parallel_size for vllm on a cluster with GPUs, else 0"
    )


class SamplingConfig(Section):
    temperature: float = Field(0.8, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(256, ge=1)
    seed: int = 0


class LabTaskConfig(Section):
    levels: list[Annotated[int, Field(ge=1, le=5)]] = Field(default_factory=lambda: [1, 2, 3, 4, 5], min_length=1)
    per_level: int = Field(40, ge=1)
    seed: int = 0
    strict_format: bool = Field(False, description="an answer counts only after steps all in the lab's form")


class FieldNames(Section):
    """Field names of a user JSONL file."""

    id: str | None = None
    question: str = "question"
    answer: str = "answer"
    level: str | None = None


class TaskConfig(Section):
    name: Literal["gsm8k", "math", "jsonl", "lab"]
    path: str | None = Field(None, description="JSONL file (default: the task's standard location)")
    split: str = "test"
    limit: int | None = Field(None, ge=1)
    few_shot: int = Field(0, ge=0)
    step_delimiter: str | None = None
    fields: FieldNames = Field(default_factory=FieldNames)
    grader: Literal["numeric", "math"] = Field("math", description="answer grading for the jsonl task")
    lab: LabTaskConfig = Field(default_factory=LabTaskConfig)


class StrategyConfig(Section):
    """A strategy's config section. `name` picks the registered strategy (`reasonscale.search.strategy`), whose own
    section validates the rest: `StrategyConfig(name="beam", beam_width=8)` builds a `BeamConfig`.

    `n` and `budgets` only choose the budgets reported; every other field is part of the strategy's identity.
    `SHORT` names fields in labels when two strategies of one name differ in them (`beam[prm,M=8]`).
    """

    SHORT: ClassVar[dict[str, str]] = {}
    REPORTING_FIELDS: ClassVar[frozenset[str]] = frozenset({"name", "n", "budgets"})

    name: str
    n: int = Field(1, ge=1, description="largest budget N (default with budgets: the largest of them)")
    budgets: list[Annotated[int, Field(ge=1)]] | None = Field(
        None, description="budgets N to report (default: powers of two up to n, and n)"
    )

    def __new__(cls, *args: Any, **data: Any):
        if cls is StrategyConfig and "name" in data:
            cls = strategy_section(data["name"])
        return super().__new__(cls)

    @model_validator(mode="after")
    def _budgets_within_n(self) -> StrategyConfig:
        if self.budgets:
            self.budgets = sorted(set(self.budgets))
            if "n" in self.model_fields_set and self.n < self.budgets[-1]:
                raise ValueError(f"budgets go up to {self.budgets[-1]} but n is {self.n}")
            self.n = self.budgets[-1]
        return self

    @classmethod
    def section_for(cls, data: Any) -> type[StrategyConfig]:
        """The section class that validates `data` (for error suggestions)."""
        try:
            return strategy_section(data["name"])
        except (KeyError, TypeError, ValueError):
            return cls

    def settings(self) -> dict[str, Any]:
        """The strategy's identity beyond its name: every hyper-parameter."""
        return self.model_dump(exclude=set(self.REPORTING_FIELDS))

    def budget_list(self) -> list[int]:
        """The budgets reported: the configured list, else powers of two up to n, and n."""
        from reasonscale.search.selection import budgets

        return self.budgets or budgets(self.n)

    def base_label(self) -> str:
        """The readable name before any differing settings are added."""
        return self.name

    def short(self, field: str, value: Any) -> str:
        """How a differing setting reads in a label."""
        return f"{self.SHORT.get(field, field)}={value}"


class VerifiedStrategyConfig(StrategyConfig):
    """A strategy that scores solutions with a verifier."""

    SHORT: ClassVar[dict[str, str]] = {"verifier_options": "options"}

    verifier: str | None = Field(None, description="scorer: oracle, prm, orm (or prm:PATH, orm:PATH)")
    verifier_path: str | None = Field(None, description="model directory or HF id of a prm / orm verifier")
    verifier_options: dict[str, Any] = Field(default_factory=dict, description="PRM format overrides (step_tag...)")
    aggregate: Literal["last", "min", "prod", "mean"] = "last"

    @model_validator(mode="after")
    def _needs_verifier(self) -> VerifiedStrategyConfig:
        if self.verifier is None:
            raise ValueError(f"strategy '{self.name}' needs a verifier (e.g. verifier: oracle)")
        kind, _, inline = self.verifier.partition(":")
        if inline and self.verifier_path not in (None, inline):
            raise ValueError(f"verifier '{self.verifier}' and verifier_path '{self.verifier_path}' disagree")
        if inline:  # one spelling per verifier: prm:PATH is prm with verifier_path PATH
            self.verifier, self.verifier_path = kind, inline
        return self

    def verifier_key(self) -> str:
        """Which verifier instance the strategy uses: its kind, model path and options."""
        key = self.verifier if self.verifier_path is None else f"{self.verifier}:{self.verifier_path}"
        return f"{key}{json.dumps(self.verifier_options, sort_keys=True)}" if self.verifier_options else key

    def base_label(self) -> str:
        suffix = self.verifier if self.aggregate == "last" else f"{self.verifier},{self.aggregate}"
        return f"{self.name}[{suffix}]"

    def short(self, field: str, value: Any) -> str:
        return str(value) if field == "verifier_path" else super().short(field, value)


class StepSearchConfig(VerifiedStrategyConfig):
    """A step-wise tree search guided by a verifier."""

    SHORT: ClassVar[dict[str, str]] = {
        **VerifiedStrategyConfig.SHORT,
        "beam_width": "M",
        "max_rounds": "rounds",
        "step_max_tokens": "step_tokens",
    }

    beam_width: int = Field(4, ge=1, description="M: expansions per kept beam (beam, lookahead), subtree width (dvts)")
    max_rounds: int = Field(12, ge=1, description="step rounds; then the open beams run to their end unpruned")
    step_max_tokens: int = Field(48, ge=1, description="token limit of one step in step-wise search")


def strategy_section(name: Any) -> type[StrategyConfig]:
    """The config section of the registered strategy `name`; an unknown name is an error with a suggestion."""
    from reasonscale.search.strategy import registered

    strategies = registered()
    if name not in strategies:
        match = difflib.get_close_matches(str(name), list(strategies), n=1, cutoff=0.5)
        hint = f"did you mean '{match[0]}'?" if match else f"available: {', '.join(strategies)}"
        raise ConfigError(f"unknown strategy '{name}'; {hint}")
    return strategies[name].config_class


def _as_section(value: Any) -> StrategyConfig:
    """Validate a strategy entry with its own section (a section built for another name is re-validated)."""
    if isinstance(value, StrategyConfig):
        if type(value) is strategy_section(value.name):
            return value
        value = value.model_dump()
    if not isinstance(value, dict) or "name" not in value:
        raise ValueError("a strategy needs a 'name', e.g. {name: majority, n: 16}")
    return strategy_section(value["name"]).model_validate(value)


GOLD_VERIFIERS = frozenset({"oracle"})  # they read the gold answer: never a predictor of difficulty


class DifficultySettings(Section):
    """Difficulty bins (`reasonscale.scaling.bins`); computed from the finished results, so not part of a run's
    identity."""

    bins: int = Field(5, ge=1, description="quantile bins, 1 the easiest")
    verifier: str | None = Field(
        None, description="key of the verifier whose mean final score predicts difficulty (default: the first "
        "strategy's verifier that reads no gold answer), e.g. prm@KEY; never the oracle"
    )
    edges: list[float] | None = Field(None, description="fixed predicted-bin edges (from `reasonscale scaling fit`)")

    @field_validator("verifier")
    @classmethod
    def _no_gold(cls, verifier: str | None) -> str | None:
        if verifier in GOLD_VERIFIERS:
            raise ValueError("predicted bins must not read a gold answer: choose a learned verifier, not the oracle")
        return verifier


class PolicyChoice(Section):
    """At budget `budget`, questions of predicted bin `bin` get the strategy with this name and these settings."""

    budget: float = Field(description="generation budget (N, or N x (k + 1) for lookahead)")
    bin: int = Field(ge=0, description="predicted difficulty bin; 0: questions without a bin")
    n: int = Field(ge=1, description="the strategy's budget N")
    strategy: str
    settings: dict[str, Any]
    label: str | None = None


class RunConfig(Section):
    model: ModelConfig
    task: TaskConfig
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    strategies: list[SerializeAsAny[Annotated[StrategyConfig, BeforeValidator(_as_section)]]] = Field(
        default_factory=lambda: [StrategyConfig(name="greedy")]
    )
    output_dir: str = "runs/default"
    cache_path: str | None = Field(None, description="shared generation cache (default: in output_dir)")
    difficulty: DifficultySettings = Field(default_factory=DifficultySettings)
    policy: list[PolicyChoice] = Field(
        default_factory=list, description="a compute-optimal policy (`reasonscale scaling fit`), applied by bin"
    )

    @model_validator(mode="after")
    def _distinct_strategies(self) -> RunConfig:
        seen: dict[str, int] = {}
        for i, strategy in enumerate(self.strategies):
            key = json.dumps([strategy.name, strategy.settings()], sort_keys=True, default=str)
            if key in seen:
                raise ValueError(
                    f"strategies {seen[key]} and {i} are the same strategy ({strategy.base_label()}): "
                    "merge their budgets into one entry"
                )
            seen[key] = i
        return self
