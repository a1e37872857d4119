"""The main job: train (or reuse) the default lab model and compare greedy, majority and best-of-N on the lab task."""

from __future__ import annotations

from typing import Any

from reasonscale.config import LabTaskConfig, ModelConfig, RunConfig, SamplingConfig, StrategyConfig, TaskConfig
from reasonscale.pipelines.evaluate import run_evaluation


def demo_config(model_dir: str, output_dir: str, per_level: int, n: int, seed: int = 0) -> RunConfig:
    """The demo run: every level of the lab test mix, one pool of n samples at temperature 0.8."""
    return RunConfig(
        model=ModelConfig(path=model_dir),
        task=TaskConfig(name="lab", lab=LabTaskConfig(per_level=per_level, seed=seed)),
        sampling=SamplingConfig(temperature=0.8, max_tokens=160, seed=seed),
        strategies=[
            StrategyConfig(name="greedy"),
            StrategyConfig(name="pass_at_k", n=n),
            StrategyConfig(name="majority", n=n),
            StrategyConfig(name="best_of_n", n=n, verifier="oracle"),
            StrategyConfig(name="weighted_best_of_n", n=n, verifier="oracle"),
        ],
        output_dir=output_dir,
    )


def run_demo(
    preset: str = "default",
    output_dir: str = "runs/lab-demo",
    per_level: int = 40,
    n: int = 16,
    budget_s: float | None = None,
    show_progress: bool = True,
) -> tuple[RunConfig, dict[str, Any]]:
    """Train or reuse the preset's model, evaluate it, and write the run directory with its report."""
    from reasonscale.lab.train import train_preset

    model_dir = train_preset(preset, budget_s=budget_s, progress=show_progress)
    cfg = demo_config(str(model_dir), output_dir, per_level, n)
    return cfg, run_evaluation(cfg, show_progress=show_progress)
