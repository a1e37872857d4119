"""`reasonscale lab solar`: SOLAR's topological scaling on the lab domain, end to end.

1. TAG on the training questions (tuning data, reward-model training) and on the test questions (segments,
   held-out reward-model metrics, each topology's accuracy).  2. The M-TRM and the single-task reward models,
   trained on the training questions, measured on the test questions.  3. Topological tuning: the tuning set
   (balanced, right, serialized, rejected by the M-TRM) and LoRA SFT of the policy.  4. On the test questions, at a
   budget of N responses: base (`cot`, N chains voting), tuning (the tuned policy, the same), rewarding (the base
   policy, `topological` with the M-TRM) and hybrid (the tuned policy, `topological`), per level and per segment,
   with their generated tokens; and the mean response length per segment of one chain, base vs tuned.
Every stage is stored or keyed by its inputs (one shared sample cache), so a re-run makes no model call and
trains nothing.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from statistics import mean
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SerializeAsAny, model_validator

from reasonscale import atomic
from reasonscale.config import ModelConfig, RunConfig, SamplingConfig, Section, StrategyConfig, TaskConfig, _as_section
from reasonscale.data.solar import TuningFilters
from reasonscale.data.tag import SEGMENTS, SegmentConfig
from reasonscale.engines import Engine
from reasonscale.pipelines.annotate import AnnotateConfig, run_annotation
from reasonscale.pipelines.evaluate import run_evaluation
from reasonscale.pipelines.solar import (
    TrainingSettings,
    TuneConfig,
    read_annotations,
    run_tune,
    train_reward_models,
    trm_records,
)
from reasonscale.tasks import build_task
from reasonscale.train.config import BaseModelSettings
from reasonscale.train.trm import TRMSettings

METHODS = {"base": ("base", "cot"), "tuning": ("tuned", "cot"), "rewarding": ("base", "topological"),
           "hybrid": ("tuned", "topological")}  # fmt: skip


class TuneStage(Section):
    filters: TuningFilters = Field(default_factory=lambda: TuningFilters(top_k=2))
    training: TrainingSettings = Field(default_factory=TrainingSettings)


class TRMStage(Section):
    trm: TRMSettings = Field(default_factory=TRMSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    single_task: bool = True


class EvalStage(Section):
    n: int = Field(4, ge=1, description="responses per test question, for every method")
    shares: list[float] | Literal["equal", "predicted"] = "equal"
    select: Literal["vote", "argmax"] = "vote"
    seeds: list[int] = Field(
        default_factory=lambda: [0, 1], min_length=1, description="sampling seeds of the evaluation (the noise)"
    )


class SolarConfig(Section):
    model: ModelConfig | None = None
    policy: str | None = Field(None, description="a lab preset (trained or reused) as the policy, instead of model")
    train_task: TaskConfig = Field(description="questions annotated for tuning and reward-model training")
    test_task: TaskConfig = Field(description="questions evaluated (and annotated for segments and metrics)")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    topologies: list[SerializeAsAny[Annotated[StrategyConfig, BeforeValidator(_as_section)]]] = Field(min_length=1)
    responses: int = Field(4, ge=1, description="TAG responses per question x topology")
    segments: SegmentConfig = Field(default_factory=SegmentConfig)
    trm: TRMStage = Field(default_factory=TRMStage)
    tune: TuneStage = Field(default_factory=TuneStage)
    evaluate: EvalStage = Field(default_factory=EvalStage)
    output_dir: str = "runs/lab-solar"
    cache_path: str | None = Field(None, description="shared sample cache (default: output_dir/store.sqlite)")

    @model_validator(mode="after")
    def _one_model(self) -> SolarConfig:
        if (self.model is None) == (self.policy is None):
            raise ValueError("give either model (a path) or policy (a lab preset), not both")
        return self

    @property
    def cache(self) -> str:
        return self.cache_path or str(Path(self.output_dir) / "store.sqlite")

    def annotation(self, task: TaskConfig, name: str) -> AnnotateConfig:
        return AnnotateConfig(
            model=self.model, task=task, sampling=self.sampling, topologies=self.topologies, responses=self.responses,
            segments=self.segments, output_dir=str(Path(self.output_dir) / name), cache_path=self.cache,
        )  # fmt: skip

    def evaluation(self, policy: str, trm: str, name: str, seed: int) -> RunConfig:
        n = self.evaluate.n
        return RunConfig(
            model=self.model.model_copy(update={"path": policy}),
            task=self.test_task,
            sampling=self.sampling.model_copy(update={"seed": seed}),
            strategies=[
                {"name": "cot", "n": n, "budgets": sorted({1, n})},
                {"name": "topological", "n": n, "budgets": [n], "verifier": "orm", "verifier_path": trm,
                 "topologies": self.topologies, "shares": self.evaluate.shares, "select": self.evaluate.select},
            ],  # fmt: skip
            output_dir=str(Path(self.output_dir) / name),
            cache_path=self.cache,
        )


def run_solar(
    cfg: SolarConfig, show_progress: bool = True, engine_factory: Callable[[RunConfig], Engine] | None = None
) -> dict[str, Any]:
    """Run (or resume) the whole experiment; writes solar_summary.json and solar_report.md; returns the summary."""
    out = Path(cfg.output_dir)
    if cfg.policy is not None:
        from reasonscale.lab.train import train_preset

        path = train_preset(cfg.policy, progress=show_progress)
        cfg = cfg.model_copy(update={"model": ModelConfig(path=str(path)), "policy": None})
    base = BaseModelSettings(path=cfg.model.path)
    tags = {}
    for name, task in (("tag-train", cfg.train_task), ("tag-test", cfg.test_task)):
        tags[name] = run_annotation(cfg.annotation(task, name), show_progress, engine_factory)["tag"]
    train_rows, test_rows = read_annotations(out / "tag-train"), read_annotations(out / "tag-test")
    train, test = trm_records(build_task(cfg.train_task), train_rows), trm_records(build_task(cfg.test_task), test_rows)
    reward = train_reward_models(base, train, test, cfg.trm.trm, cfg.trm.training, out / "trm", cfg.trm.single_task,
                                 show_progress)  # fmt: skip
    trm = reward["models"]["m-trm"]
    tune = run_tune(
        TuneConfig(annotations=str(out / "tag-train"), task=cfg.train_task, model=base, filters=cfg.tune.filters,
                   reward_model=trm, training=cfg.tune.training, output_dir=str(out / "tune")),
        progress=show_progress, rows=train_rows,
    )  # fmt: skip
    runs = {}
    for policy, path in (("base", cfg.model.path), ("tuned", tune["model"])):
        for seed in cfg.evaluate.seeds:
            name = f"eval-{policy}-s{seed}"
            runs[name] = run_evaluation(cfg.evaluation(path, trm, name, seed), show_progress, engine_factory)
    segments = {r["id"]: r["segment"] for r in test_rows}
    summary = {
        "methods": compare(out, cfg.evaluate.n, segments, cfg.evaluate.seeds),
        "length_by_segment": lengths(out, segments, cfg.evaluate.seeds),
        "reward_models": reward,
        "tuning": tune,
        "tag": {name: {k: t[k] for k in ("questions", "segments", "best_single", "oracle_topology_accuracy")}
                for name, t in tags.items()},
        "model_calls": {name: run["usage"]["model_calls"] for name, run in runs.items()},  # this invocation's
        "config": cfg.model_dump(mode="json"),
    }  # fmt: skip
    atomic.write_text(out / "solar_summary.json", json.dumps(summary, indent=2))
    atomic.write_text(out / "solar_report.md", solar_report(summary))
    return summary


def _records(out: Path, policy: str, seeds: list[int]) -> list[dict[str, Any]]:
    """Every evaluation record of `policy`, each with its `seed`."""
    rows = []
    for seed in seeds:
        lines = (out / f"eval-{policy}-s{seed}" / "results.jsonl").read_text().splitlines()
        rows += [{**json.loads(line), "seed": seed} for line in lines]
    return rows


def compare(out: Path, n: int, segments: dict[str, str], seeds: list[int]) -> dict[str, dict[str, Any]]:
    """Per method at budget n: accuracy overall (mean over seeds, each seed's, and their spread), per level and per
    segment (over every seed's records), and generated tokens per question."""
    table = {}
    for method, (policy, strategy) in METHODS.items():
        picked = [(r, o) for r in _records(out, policy, seeds) for o in r["outcomes"]
                  if o["strategy"] == strategy and o["budget"] == n]  # fmt: skip
        by_seed, by_level, by_segment = defaultdict(list), defaultdict(list), defaultdict(list)
        for r, o in picked:
            by_seed[str(r["seed"])].append(o["correct"])
            by_level[str(r["level"])].append(o["correct"])
            by_segment[segments.get(r["id"], "unknown")].append(o["correct"])
        per_seed = {k: mean(v) for k, v in by_seed.items()}
        table[method] = {
            "accuracy": mean(per_seed.values()),
            "accuracy_by_seed": per_seed,
            "seed_spread": max(per_seed.values()) - min(per_seed.values()),
            "accuracy_by_level": {k: mean(v) for k, v in sorted(by_level.items())},
            "accuracy_by_segment": {k: mean(by_segment[k]) for k in SEGMENTS if by_segment[k]},
            "generated_tokens": mean(o["generated_tokens"] for _, o in picked),
        }
    return table


def lengths(out: Path, segments: dict[str, str], seeds: list[int]) -> dict[str, dict[str, float]]:
    """Mean generated tokens of one chain (cot@1) per segment, base vs tuned, over every seed."""
    table: dict[str, dict[str, float]] = {}
    for policy in ("base", "tuned"):
        groups = defaultdict(list)
        for r in _records(out, policy, seeds):
            for o in r["outcomes"]:
                if o["strategy"] == "cot" and o["budget"] == 1:
                    groups[segments.get(r["id"], "unknown")].append(o["generated_tokens"])
        table[policy] = {k: mean(groups[k]) for k in SEGMENTS if groups[k]}
    return table


def solar_report(summary: dict[str, Any]) -> str:
    methods = summary["methods"]
    levels = sorted({lvl for m in methods.values() for lvl in m["accuracy_by_level"]})
    head = ["method", "accuracy", "seed spread", *(f"L{lvl}" for lvl in levels), *SEGMENTS, "tokens"]
    lines = ["# SOLAR on the lab", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in methods.items():
        cells = [f"{m['accuracy_by_level'].get(lvl, float('nan')):.3f}" for lvl in levels]
        cells += [f"{m['accuracy_by_segment'].get(s, float('nan')):.3f}" for s in SEGMENTS]
        first = f"| {name} | {m['accuracy']:.3f} | {m['seed_spread']:.3f} | "
        lines.append(first + " | ".join(cells) + f" | {m['generated_tokens']:.0f} |")
    lines += ["", "Accuracy: mean over the seeds; seed spread: best minus worst seed; levels and segments: every "
              "seed's questions; tokens: generated per question. Reward models on the test questions:", "",
              "| model | selection accuracy | Spearman |", "|---|---|---|"]  # fmt: skip
    for name, metric in summary["reward_models"]["metrics"].items():
        sel, rho = metric.get("selection_accuracy", float("nan")), metric.get("spearman", float("nan"))
        lines.append(f"| {name} | {sel:.3f} | {rho:.3f} |")
    stages = ", ".join(f"{s['stage']} {s['in']} -> {s['out']}" for s in summary["tuning"]["filters"])
    lines += ["", f"Tuning set: {stages}.",
              "", "Mean generated tokens of one chain per segment:", "", "| policy | " + " | ".join(SEGMENTS) + " |",
              "|---|---|---|---|"]  # fmt: skip
    for policy, by in summary["length_by_segment"].items():
        lines.append(f"| {policy} | " + " | ".join(f"{by.get(s, float('nan')):.1f}" for s in SEGMENTS) + " |")
    return "\n".join(lines) + "\n"
