"""The weak-to-strong run config (`reasonscale w2s CONFIG.yaml`): models, questions, stages, training, baselines."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from reasonscale.config import ModelConfig, Section, TaskConfig
from reasonscale.train.config import DPOSettings, LogSettings, LoraSettings, OptimSettings

Variant = Literal["weak", "icl", "hybrid"]


class GenerationSettings(Section):
    """D_weak, D_ICL and every evaluation answer are greedy; stage II samples are drawn as `stage2` says."""

    max_tokens: int = Field(256, ge=1)
    seed: int = 0


class Stage1Settings(Section):
    demonstrations: int = Field(4, ge=0, description="weak question/solution pairs shown to the strong model")
    variants: list[Variant] = Field(
        default_factory=lambda: ["weak", "icl", "hybrid"], min_length=1,
        description="which kept sets to fine-tune on: weak (D_weak), icl (D_ICL) or hybrid (their union: M_plus)",
    )
    use: Variant = Field("hybrid", description="the stage I model that stage II starts from")


class Stage2Settings(Section):
    samples: int = Field(10, ge=1, description="samples per question from the current model")
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    tau: float = Field(0.6, ge=0, le=1, description="questions whose majority share is below this give no pair")
    flip_confidence: float = Field(0.8, ge=0, le=1, description="the weak response is rejected only from here")
    pairs_per_question: int = Field(1, ge=1, description="the paper's repository uses 3 on MATH")
    pairs: Literal["weak", "strong"] = Field(
        "weak", description="weak: the weak response is one side of every pair; strong: strong samples only"
    )
    rounds: int = Field(1, ge=0, description="DPO rounds; each later round samples the previous round's model")


class TrainSettings(Section):
    """How the strong model is fine-tuned (see docs/training.md); the data comes from the pipeline."""

    lora: LoraSettings = Field(default_factory=LoraSettings)
    optim: OptimSettings = Field(default_factory=OptimSettings)
    log: LogSettings = Field(default_factory=LogSettings)


class DPOTrainSettings(TrainSettings):
    dpo: DPOSettings = Field(default_factory=DPOSettings)


class Baselines(Section):
    naive: bool = Field(True, description="strong fine-tuned on all of D_weak")
    gold: bool = Field(True, description="strong fine-tuned on gold solutions (the ceiling; needs them)")
    strong_icl: bool = Field(True, description="the strong model with weak demonstrations")


class InputFields(Section):
    id: str = "id"
    question: str = "question"
    response: str = "response"
    answer: str | None = Field(None, description="gold final answer in the weak file, if any (only measured)")


class Inputs(Section):
    """Generations made elsewhere, used instead of generating (JSONL, one response a line)."""

    weak: str | None = Field(None, description="weak responses: these rows are the questions")
    icl: str | None = Field(None, description="the strong model's responses with weak demonstrations")
    samples: str | None = Field(None, description="stage II samples of the stage I model (several lines per id)")
    fields: InputFields = Field(default_factory=InputFields)


class W2SConfig(Section):
    weak: ModelConfig
    strong: ModelConfig
    task: TaskConfig = Field(description="the questions to label; their gold answers are only measured")
    eval_task: TaskConfig | None = Field(None, description="held-out questions to measure every model on")
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    stage1: Stage1Settings = Field(default_factory=Stage1Settings)
    stage2: Stage2Settings = Field(default_factory=Stage2Settings)
    sft: TrainSettings = Field(default_factory=TrainSettings)
    dpo: DPOTrainSettings = Field(default_factory=DPOTrainSettings)
    baselines: Baselines = Field(default_factory=Baselines)
    inputs: Inputs = Field(default_factory=Inputs)
    data_only: bool = Field(False, description="build and measure the data sets only: no training, no evaluation")
    output_dir: str = "runs/w2s"
    cache_path: str | None = Field(None, description="sample store (default: output_dir/store.sqlite)")
