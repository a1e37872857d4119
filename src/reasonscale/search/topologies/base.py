"""What the step-wise topologies share: their config fields, and the step-wise strategy they run as."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from reasonscale.config import VerifiedStrategyConfig
from reasonscale.identity import digest
from reasonscale.prompts import load_prompt
from reasonscale.search.step_strategies import StepStrategy


class TopologyConfig(VerifiedStrategyConfig):
    """A step-wise topology guided by a verifier: `depth` bounds the steps searched (deeper states are run to the
    end of their solution unpruned), `children` is the branching (continuations proposed per state)."""

    SHORT: ClassVar[dict[str, str]] = {**VerifiedStrategyConfig.SHORT, "step_max_tokens": "step_tokens"}
    # fields added after results were stored: left out of the identity while all are at their defaults (the
    # feature unused, so nothing changes), so those results stay valid
    ADDED: ClassVar[frozenset[str]] = frozenset()

    depth: int = Field(12, ge=1, description="steps searched before a state is run to its end without pruning")
    children: int = Field(2, ge=1, description="continuations proposed per expanded state (branching)")
    step_max_tokens: int = Field(48, ge=1, description="token limit of one step call")
    value_prompt: str | None = Field(
        None,
        description="the policy values states itself: a prompt of prompts/topologies.yaml (value) or FILE.yaml#NAME, "
        "read as a token-mode PRM; use with verifier: prm and the policy as verifier_path",
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_value_prompt(cls, data: Any) -> Any:
        """The value prompt's PRM format becomes the verifier's options (explicit options win)."""
        if isinstance(data, dict) and data.get("value_prompt"):
            options = {**load_prompt(data["value_prompt"]), **data.get("verifier_options", {})}
            data = {**data, "verifier_options": options}
        return data

    @model_validator(mode="after")
    def _value_prompt_needs_a_model(self) -> TopologyConfig:
        if self.value_prompt and self.verifier not in ("prm", "orm"):
            raise ValueError(f"value_prompt needs verifier: prm (the policy as verifier_path), not '{self.verifier}'")
        return self

    def settings(self) -> dict[str, Any]:
        data = super().settings()
        if all(data[k] == type(self).model_fields[k].default for k in self.ADDED):
            return {k: v for k, v in data.items() if k not in self.ADDED}
        return data

    def short(self, field: str, value: Any) -> str:
        """A prompt reads as a hash of its text in a label."""
        return f"{field}={digest(value, 6)}" if field.endswith("_prompt") else super().short(field, value)


class TopologyStrategy(StepStrategy):
    """A topology over steps (run like the step-wise searches: a `StepSearch` per chunk), charged every step it
    generates and every state its verifier scores."""

    config: TopologyConfig  # type: ignore[assignment]

    def generation_budget(self, n: int) -> float:
        return float(n * self.config.children)
