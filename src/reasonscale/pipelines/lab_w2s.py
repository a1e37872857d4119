"""Weak-to-strong on the lab domain (`reasonscale lab w2s examples/lab_w2s.yaml`): the weak model is a lab preset
trained on the target's gold solutions, the strong one is pretrained on related families only
(`lab.w2s_presets`); the questions are lab training problems and the models are measured on the test split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from reasonscale.config import Section
from reasonscale.config_loading import load_config
from reasonscale.pipelines.w2s import run_w2s
from reasonscale.pipelines.w2s_config import (
    Baselines,
    DPOTrainSettings,
    GenerationSettings,
    Stage1Settings,
    Stage2Settings,
    TrainSettings,
    W2SConfig,
)

RUN_SECTIONS = ("generation", "stage1", "stage2", "sft", "dpo", "baselines")


class StrongSettings(Section):
    """`lab.w2s_presets.StrongPreset` fields (its defaults unless set)."""

    hidden_size: int = Field(128, ge=8)
    layers: int = Field(4, ge=1)
    heads: int = Field(4, ge=1)
    mlp_size: int = Field(512, ge=8)
    steps: int = Field(2000, ge=1)
    batch_size: int = Field(4, ge=0, description="documents per step")
    singles: int = Field(12, ge=0, description="single solved problems per step")
    lr: float = Field(2e-3, gt=0)
    doc_chars: int = Field(800, ge=100)
    seed: int = 0


class LabW2SConfig(Section):
    weak_preset: str = Field("weak", description="lab preset trained on the target's gold solutions")
    weak_budget_s: float | None = Field(None, gt=0, description="wall-time cap of one call's weak preset training")
    strong_budget_s: float | None = Field(None, gt=0, description="wall-time cap of one call's strong pretraining")
    strong: StrongSettings = Field(default_factory=StrongSettings)
    levels: list[Annotated[int, Field(ge=1, le=5)]] = Field(default_factory=lambda: [1, 2, 3, 4, 5], min_length=1)
    strict_format: bool = Field(True, description="answers count only in the target's form (docs/w2s.md)")
    questions_per_level: int = Field(200, ge=1, description="unlabelled training questions per level")
    questions_seed: int = Field(1, description="seed of the question subset of the train split")
    eval_per_level: int = Field(40, ge=1, description="test problems per level")
    generation: GenerationSettings = Field(default_factory=lambda: GenerationSettings(max_tokens=200))
    stage1: Stage1Settings = Field(default_factory=Stage1Settings)
    stage2: Stage2Settings = Field(default_factory=Stage2Settings)
    sft: TrainSettings = Field(default_factory=TrainSettings)
    dpo: DPOTrainSettings = Field(default_factory=DPOTrainSettings)
    baselines: Baselines = Field(default_factory=Baselines)
    output_dir: str = "runs/lab-w2s"


def w2s_config(cfg: LabW2SConfig, weak: Path, strong: Path) -> W2SConfig:
    """The generic run over the two lab models, lab training questions and lab test problems."""
    lab = {"levels": cfg.levels, "strict_format": cfg.strict_format}
    return W2SConfig.model_validate({
        "weak": {"path": str(weak)},
        "strong": {"path": str(strong)},
        "task": {"name": "lab", "split": "train",
                 "lab": {**lab, "per_level": cfg.questions_per_level, "seed": cfg.questions_seed}},
        "eval_task": {"name": "lab", "split": "test", "lab": {**lab, "per_level": cfg.eval_per_level}},
        **cfg.model_dump(include=set(RUN_SECTIONS)),
        "output_dir": cfg.output_dir,
    })


def run_lab_w2s(config_path: str | Path, overrides: list[str] | None = None, progress: bool = True) -> dict[str, Any]:
    """Train (or reuse) both lab models, then run the whole weak-to-strong method; returns the summary.

    A model that its budget stops before its last step is saved and raises `TrainingIncomplete`: run again."""
    from reasonscale.lab.train import train_preset
    from reasonscale.lab.w2s_presets import StrongPreset, train_strong

    cfg = load_config(config_path, overrides, model=LabW2SConfig)
    preset = StrongPreset(**cfg.strong.model_dump(), levels=tuple(cfg.levels))
    run_cfg = w2s_config(cfg, Path("weak"), Path("strong"))  # every setting checked before anything trains
    weak = train_preset(cfg.weak_preset, budget_s=cfg.weak_budget_s, progress=progress)
    strong = train_strong(preset, budget_s=cfg.strong_budget_s, progress=progress)
    run_cfg = w2s_config(cfg, weak, strong)
    return run_w2s(run_cfg, progress=progress)
