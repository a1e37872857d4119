"""The verifier-guided search experiment on the lab domain (Snell et al. 2024, section 5).

1. Train (or reuse) the policy preset.  2. Label its solutions to training problems step by step with Monte-Carlo
rollouts (or the exact oracle, `prm.labels`).  3. Train a PRM on them.  4. Evaluate majority, best-of-N, weighted
best-of-N, beam, lookahead and DVTS at every budget, guided by each configured verifier (oracle, PRM, recompute),
on the test problems.  5. Measure every verifier on the evaluation's sample pools (`verifiers.metrics`: pooled and
within-problem AUC, selection accuracy) and write everything to the report. With several sampling `seeds`, step 4
runs once per seed (the PRM is trained once) and the experiment's summary averages over them.
Every sample is cached in the run's store and the PRM is reused when its data and settings are unchanged, so a
stopped run resumes where it was.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, field_validator, model_validator

from reasonscale.config import ModelConfig, RunConfig, SamplingConfig, Section, StrategyConfig, TaskConfig
from reasonscale.config_loading import load_config
from reasonscale.data.prm_labels import (
    PRMExample,
    build_prm_examples,
    hard_negatives,
    save_examples,
    verified_prm_examples,
)
from reasonscale.engines import build_engine
from reasonscale.engines.cached import CachedEngine
from reasonscale.identity import digest, model_identity
from reasonscale.pipelines.evaluate import difficulty_bins, run_evaluation, verifier_key
from reasonscale.pipelines.search_report import append_prm_section
from reasonscale.progress import Progress
from reasonscale.report import write_report
from reasonscale.store import Store
from reasonscale.summary import mean_over_seeds, summarize
from reasonscale.tasks import build_task
from reasonscale.train.prm import PRMTrainConfig, resolve_device, train_prm
from reasonscale.types import SamplingParams
from reasonscale.verifiers import build_verifier
from reasonscale.verifiers.metrics import label_auc, verifier_metrics

POOL_STRATEGIES = ("majority", "best_of_n", "weighted_best_of_n")
SEARCH_STRATEGIES = ("majority", "best_of_n", "weighted_best_of_n", "beam", "lookahead", "dvts")


class PRMStageConfig(Section):
    """Where the PRM's training data comes from and how it is trained."""

    train_per_level: int = Field(60, ge=1, description="training problems per level to sample and roll out")
    samples: int = Field(4, ge=1, description="policy solutions per training problem")
    labels: Literal["mc", "oracle"] = Field(
        "mc",
        description="step labels: Monte-Carlo rollouts (mc, as the paper), or the task's exact oracle verifier "
        "(1 up to the first wrong step, 0 from it on; no rollouts: the label-quality upper bound)",
    )
    rollouts: int = Field(8, ge=1, description="Monte-Carlo completions per step prefix (labels: mc)")
    hard_negatives: int = Field(
        0, ge=0, description="near-miss copies per step labelled 1, its last number made wrong and labelled 0"
    )
    completer: str | None = Field(
        None,
        description="lab preset or model directory that rolls out step prefixes (default: the policy, as in the "
        "paper; another model's rollouts value a step under that model, not the policy being searched)",
    )
    base: str | None = Field(None, description="lab preset or model directory to fine-tune (default: the policy)")
    train: PRMTrainConfig = Field(default_factory=PRMTrainConfig)


class SearchExperimentConfig(Section):
    policy: str = Field("weak", description="lab preset to train or reuse, or a model directory")
    preset_budget_s: float | None = Field(None, gt=0, description="training time cap of lab presets trained here")
    device: str = "auto"
    max_batch_size: int = Field(256, ge=1, description="policy engine batch size")
    task: TaskConfig = Field(default_factory=lambda: TaskConfig(name="lab"))
    sampling: SamplingConfig = Field(default_factory=lambda: SamplingConfig(temperature=0.8, max_tokens=160))
    prm: PRMStageConfig = Field(default_factory=PRMStageConfig)
    budgets: list[int] = Field(default_factory=lambda: [1, 4, 16, 64])
    strategies: list[Literal[SEARCH_STRATEGIES]] = Field(default_factory=lambda: list(SEARCH_STRATEGIES))  # type: ignore[valid-type]
    verifiers: list[Literal["oracle", "prm", "recompute"]] = Field(
        default_factory=lambda: ["oracle", "prm"],
        description="recompute: the policy re-derives the numbers each step writes",
    )
    recompute_model: str | None = Field(
        None,
        description="lab preset or model directory that re-derives the numbers for `recompute` (default: the policy)",
    )
    search_verifiers: list[Literal["oracle", "prm", "recompute"]] | None = Field(
        None,
        description="the verifiers that guide the step-wise searches (beam, lookahead, dvts), each of which generates "
        "its own samples (default: all of `verifiers`); every verifier still selects from the shared pool",
    )
    aggregate: Literal["last", "min", "prod", "mean"] = "last"
    beam_width: int = Field(4, ge=1)
    lookahead: int = Field(1, ge=0)
    max_rounds: int = Field(12, ge=1)
    step_max_tokens: int = Field(48, ge=1)
    seeds: list[int] | None = Field(
        None,
        min_length=1,
        description="sampling seeds of the evaluation, each its own run (default: [sampling.seed]); the summary "
        "averages over them",
    )
    output_dir: str = "runs/lab-search"

    @model_validator(mode="after")
    def _search_verifiers_are_verifiers(self) -> SearchExperimentConfig:
        unknown = set(self.search_verifiers or ()) - set(self.verifiers)
        if unknown:
            raise ValueError(f"search_verifiers {sorted(unknown)} are not in verifiers {self.verifiers}")
        return self

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, seeds: list[int] | None) -> list[int] | None:
        if seeds is not None and len(set(seeds)) < len(seeds):
            raise ValueError(f"seeds must be distinct, got {seeds}")
        return seeds


def strategies(cfg: SearchExperimentConfig, prm_path: str, policy: str | None = None) -> list[StrategyConfig]:
    """Every configured strategy with every configured verifier (majority once), at the configured budgets; each
    takes the experiment's settings that its section has (beam_width is beam's, not best-of-N's). The recompute
    verifier's model is `recompute_model`, else the policy (`policy`: its directory, default the configured
    preset's or path); its step
    scores check each step on its own, not the prefix's value, so they aggregate by min, whatever `aggregate` says."""
    common = {"n": max(cfg.budgets), "budgets": cfg.budgets, "aggregate": cfg.aggregate}
    common |= {k: getattr(cfg, k) for k in ("beam_width", "lookahead", "max_rounds", "step_max_tokens")}

    def section(name: str, **settings: Any) -> StrategyConfig:
        fields = StrategyConfig.section_for({"name": name}).model_fields
        return StrategyConfig(name=name, **{k: v for k, v in {**common, **settings}.items() if k in fields})

    out = [section("majority")] if "majority" in cfg.strategies else []
    recompute = None
    if "recompute" in cfg.verifiers:
        mine = cfg.recompute_model is None and policy is not None
        recompute = policy if mine else model_path(cfg.recompute_model or cfg.policy, cfg, progress=False)
    for verifier in cfg.verifiers:
        path = {"prm": prm_path, "recompute": recompute}.get(verifier)
        how = "min" if verifier == "recompute" else cfg.aggregate
        searches = cfg.search_verifiers is None or verifier in cfg.search_verifiers
        out += [
            section(name, verifier=verifier, verifier_path=path, aggregate=how)
            for name in cfg.strategies
            if name != "majority" and (name in POOL_STRATEGIES or searches)
        ]
    return out


def policy_model(cfg: SearchExperimentConfig, path: str) -> ModelConfig:
    return ModelConfig(path=path, device=cfg.device, max_batch_size=cfg.max_batch_size)


def model_path(name: str, cfg: SearchExperimentConfig, progress: bool) -> str:
    """A model directory: a lab preset's (trained now, or reused from the cache), or `name` itself."""
    from reasonscale.lab.model import PRESETS
    from reasonscale.lab.train import train_preset

    if name in PRESETS:
        return str(train_preset(name, budget_s=cfg.preset_budget_s, progress=progress))
    return name


def prm_examples(cfg: SearchExperimentConfig, policy: str, out: Path, progress: bool) -> list[PRMExample]:
    """The policy's solutions to training problems, labelled by Monte-Carlo rollouts or by the oracle (`prm.labels`;
    every sample cached in the store)."""
    task_cfg = cfg.task.model_copy(update={"split": "train", "limit": None})
    task_cfg.lab = task_cfg.lab.model_copy(update={"per_level": cfg.prm.train_per_level})
    task = build_task(task_cfg)
    problems = task.load()
    s = cfg.sampling
    params = SamplingParams(
        temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, stop=task.solution_stop, seed=s.seed
    )
    rolls_out = cfg.prm.labels == "mc" and cfg.prm.completer
    completer_path = model_path(cfg.prm.completer, cfg, progress) if rolls_out else None
    with ExitStack() as stack, Progress(enabled=progress, label="PRM data: training problems") as bars:
        store = Store(out / "store.sqlite")
        stack.callback(store.close)  # closed last, after the engines that write to it

        def cached(path: str) -> CachedEngine:
            engine = CachedEngine(build_engine(policy_model(cfg, path)), store, on_generated=bars.samples)
            return stack.enter_context(engine)

        bars.start(len(problems))
        engine, completer = cached(policy), cached(completer_path) if completer_path else None
        prompts = [task.format_prompt(p) for p in problems]
        if cfg.prm.labels == "oracle":
            oracle = build_verifier("oracle", task)
            examples = verified_prm_examples(task, engine, problems, prompts, params, oracle, cfg.prm.samples)
        else:
            examples = build_prm_examples(
                task, engine, problems, prompts, params, cfg.prm.samples, cfg.prm.rollouts, completer
            )
        bars.problems(len(problems))
    save_examples(examples, out / "prm_data.jsonl")
    return examples


def prm_identity(cfg: SearchExperimentConfig, base: str, data: Path) -> str:
    """The identity of a trained PRM: its base model's content, its training data (the labelled solutions, how they
    were labelled, the hard negatives added to them) and every training setting (the device included: CUDA and CPU
    kernels train different weights)."""
    return digest(
        {
            "base": model_identity(base),
            "data": hashlib.sha256(data.read_bytes()).hexdigest(),
            "labels": cfg.prm.labels,
            "hard_negatives": cfg.prm.hard_negatives,
            "train": cfg.prm.train.model_dump(),
            "device": torch.device(resolve_device(cfg.device)).type,
        }
    )


def trained_prm(
    cfg: SearchExperimentConfig, policy: str, examples: list[PRMExample], out: Path, progress: bool
) -> tuple[Path, dict]:
    """Train the PRM into `out/prm/<key>`, keyed by everything that produced it, or reuse the one found there; the
    training set is `examples` and, with `prm.hard_negatives`, their near-miss copies."""
    base = model_path(cfg.prm.base, cfg, progress) if cfg.prm.base else policy
    key = prm_identity(cfg, base, out / "prm_data.jsonl")
    path = out / "prm" / key
    info_file = path / "training.json"  # written last: its presence means the PRM is complete
    if info_file.is_file():
        return path, json.loads(info_file.read_text())
    negatives = hard_negatives(examples, cfg.prm.hard_negatives, cfg.prm.train.seed)
    result = train_prm([*examples, *negatives], base, path, cfg.prm.train, device=cfg.device)
    info = {
        "key": key,
        "base": model_identity(base),
        "labels": cfg.prm.labels,
        "hard_negatives": len(negatives),
        "steps": result.steps,
        "seconds": result.seconds,
        "first_loss": result.losses[0],
        "last_loss": sum(result.losses[-20:]) / len(result.losses[-20:]),
    }
    info_file.write_text(json.dumps(info, indent=2))
    return path, info


def eval_dir(cfg: SearchExperimentConfig, seed: int) -> str:
    """A seed's evaluation directory: `eval` for `sampling.seed` (the only one by default), else `eval-seed<s>`."""
    return "eval" if seed == cfg.sampling.seed else f"eval-seed{seed}"


def evaluate_seed(
    cfg: SearchExperimentConfig, policy: str, prm_path: Path, seed: int, show_progress: bool
) -> tuple[RunConfig, dict[str, Any], list[dict[str, Any]]]:
    """Evaluate every strategy with sampling seed `seed` in its own directory (samples cached in the run's
    store); returns the run's config, summary and records."""
    out = Path(cfg.output_dir)
    run_cfg = RunConfig(
        model=policy_model(cfg, policy),
        task=cfg.task,
        sampling=cfg.sampling.model_copy(update={"seed": seed}),
        strategies=strategies(cfg, str(prm_path)),
        output_dir=str(out / eval_dir(cfg, seed)),
        cache_path=str(out / "store.sqlite"),
    )
    summary = run_evaluation(run_cfg, show_progress=show_progress)
    records = [json.loads(line) for line in (Path(run_cfg.output_dir) / "results.jsonl").read_text().splitlines()]
    return run_cfg, summary, records


def run_search_experiment(
    config_path: str | Path, overrides: list[str] | None = None, show_progress: bool = True
) -> dict[str, Any]:
    """Run (or resume) the experiment the YAML file describes; returns its summary, the mean over the sampling
    seeds (also in `output_dir`/summary.json and report.md; each seed's own run is in its `eval_dir`)."""
    cfg = load_config(config_path, overrides, model=SearchExperimentConfig)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    policy = model_path(cfg.policy, cfg, show_progress)
    examples = prm_examples(cfg, policy, out, show_progress)
    prm_path, training = trained_prm(cfg, policy, examples, out, show_progress)
    seeds = cfg.seeds or [cfg.sampling.seed]
    runs = [evaluate_seed(cfg, policy, prm_path, seed, show_progress) for seed in seeds]
    prm_key = next((verifier_key(s) for s in runs[0][0].strategies if getattr(s, "verifier", None) == "prm"), None)
    for run_cfg, summary, records in runs:
        summary["prm"] = prm_metrics(cfg, examples, records, training, prm_key, prm_path)
        summary["verifiers"] = every_verifier_metrics(cfg, run_cfg, records)
        (Path(run_cfg.output_dir) / "summary.json").write_text(json.dumps(summary, indent=2))
        append_prm_section(Path(run_cfg.output_dir) / "report.md", summary)
    merged = mean_over_seeds([records for _, _, records in runs])
    difficulty_bins(merged, runs[0][0])
    usage = {k: sum(s["usage"][k] for _, s, _ in runs) for k in ("model_calls", "cache_hits", "run_model_calls")}
    summary = {**summarize(merged, runs[0][0], usage), "seeds": seeds}
    every_seed = [r for _, _, records in runs for r in records]
    summary["prm"] = prm_metrics(cfg, examples, every_seed, training, prm_key, prm_path)
    summary["verifiers"] = every_verifier_metrics(cfg, runs[0][0], every_seed)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    append_prm_section(write_report(out, summary), summary)
    return summary


def prm_metrics(
    cfg: SearchExperimentConfig,
    examples: list[PRMExample],
    records: list[dict],
    training: dict,
    prm_key: str | None,
    prm_path: Path,
) -> dict:
    """The PRM's training data and its measures on the evaluation's sample pools (`records`: one per problem and
    seed), overall and per level (`verifiers.metrics`); the label AUC measures its Monte-Carlo labels."""
    task = build_task(cfg.task)
    steps = sum(len(e.steps) for e in examples)
    metrics = {
        "train_solutions": len(examples),
        "train_steps": steps,
        "train_solution_accuracy": sum(e.correct for e in examples) / max(1, len(examples)),
        "rollouts": cfg.prm.rollouts,
        "completer": cfg.prm.completer or cfg.policy,
        "completer_is_policy": cfg.prm.completer in (None, cfg.policy),
        "mc_label_auc": label_auc(examples, build_verifier("oracle", task)),
        "training": training,
        "path": str(prm_path),
    }
    if prm_key and any(r.get("candidates") for r in records):
        budgets = [n for n in cfg.budgets if n > 1]
        found = verifier_metrics(records, prm_key, budgets, cfg.aggregate, task.group_answers)
        metrics["step_auc_first_error"] = found["all"]["step_auc_first_error"]
        metrics["step_auc_all_steps"] = found["all"]["step_auc_all_steps"]
        metrics["verifier"] = found
    return metrics


def every_verifier_metrics(cfg: SearchExperimentConfig, run_cfg: RunConfig, records: list[dict]) -> dict[str, dict]:
    """`verifier_metrics` of every verifier the run used, each with the final-score aggregate its strategies use."""
    if not any(r.get("candidates") for r in records):
        return {}
    task = build_task(cfg.task)
    budgets = [n for n in cfg.budgets if n > 1]
    how = {verifier_key(s): s.aggregate for s in run_cfg.strategies if verifier_key(s) and hasattr(s, "aggregate")}
    return {key: verifier_metrics(records, key, budgets, agg, task.group_answers) for key, agg in how.items()}
