"""The verifier-guided search experiment on the lab domain (Snell et al. 2024, section 5).

1. Train (or reuse) the policy preset.  2. Label its solutions to training problems step by step with Monte-Carlo
rollouts.  3. Train a PRM on them.  4. Evaluate majority, best-of-N, weighted best-of-N, beam, lookahead and DVTS
at every budget, guided by the oracle and by the PRM, on the test problems.  5. Measure the PRM against the
oracle on the evaluation's sample pool (step-level ROC AUC) and write everything to the report.
Every sample is cached in the run's store and the PRM is reused when its data and settings are unchanged, so a
stopped run resumes where it was.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import ExitStack
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from reasonscale.config import ModelConfig, RunConfig, SamplingConfig, Section, StrategyConfig, TaskConfig, load_config
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
from reasonscale.pipelines.evaluate import run_evaluation, verifier_key
from reasonscale.progress import Progress
from reasonscale.store import Store
from reasonscale.tasks import build_task
from reasonscale.train.prm import PRMTrainConfig, resolve_device, train_prm
from reasonscale.types import Problem, SamplingParams
from reasonscale.verifiers import Verifier, build_verifier

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
    verifiers: list[Literal["oracle", "prm"]] = Field(default_factory=lambda: ["oracle", "prm"])
    aggregate: Literal["last", "min", "prod", "mean"] = "last"
    beam_width: int = Field(4, ge=1)
    lookahead: int = Field(1, ge=0)
    max_rounds: int = Field(12, ge=1)
    step_max_tokens: int = Field(48, ge=1)
    output_dir: str = "runs/lab-search"


def roc_auc(scores: Sequence[float], labels: Sequence[int | bool]) -> float | None:
    """Area under the ROC curve by mean rank (ties share their mean rank); None without both classes."""
    positives = sum(1 for y in labels if y)
    negatives = len(labels) - positives
    if not positives or not negatives:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and scores[order[end + 1]] == scores[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        start = end + 1
    rank_sum = sum(r for r, y in zip(ranks, labels) if y)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def step_auc(records: list[dict[str, Any]], verifier: str, until_first_error: bool = True) -> float | None:
    """ROC AUC of `verifier`'s step scores against the oracle's step labels over a run's sample pool.

    With `until_first_error`, each solution contributes its steps up to and including its first wrong one.
    """
    scores, labels = [], []
    for record in records:
        for c in record["candidates"]:
            truth, predicted = c["step_scores"]["oracle"], c["step_scores"][verifier]
            keep = truth.index(0.0) + 1 if until_first_error and 0.0 in truth else len(truth)
            scores += predicted[:keep]
            labels += [int(v) for v in truth[:keep]]
    return roc_auc(scores, labels)


def label_auc(examples: Sequence[PRMExample], oracle: Verifier) -> float | None:
    """ROC AUC of the Monte-Carlo soft labels against the oracle's first-error step labels (label quality)."""
    problems = [Problem(e.problem_id, e.question, "", e.level) for e in examples]
    scores, labels = [], []
    for e, truth in zip(examples, oracle.score(problems, [e.steps for e in examples])):
        keep = truth.index(0.0) + 1 if 0.0 in truth else len(truth)
        scores += e.soft[:keep]
        labels += [int(v) for v in truth[:keep]]
    return roc_auc(scores, labels)


def strategies(cfg: SearchExperimentConfig, prm_path: str) -> list[StrategyConfig]:
    """Every configured strategy with every configured verifier (majority once), at the configured budgets; each
    takes the experiment's settings that its section has (beam_width is beam's, not best-of-N's)."""
    common = {"n": max(cfg.budgets), "budgets": cfg.budgets, "aggregate": cfg.aggregate}
    common |= {k: getattr(cfg, k) for k in ("beam_width", "lookahead", "max_rounds", "step_max_tokens")}

    def section(name: str, **settings: Any) -> StrategyConfig:
        fields = StrategyConfig.section_for({"name": name}).model_fields
        return StrategyConfig(name=name, **{k: v for k, v in {**common, **settings}.items() if k in fields})

    out = [section("majority")] if "majority" in cfg.strategies else []
    for verifier in cfg.verifiers:
        path = prm_path if verifier == "prm" else None
        out += [section(name, verifier=verifier, verifier_path=path) for name in cfg.strategies if name != "majority"]
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


def run_search_experiment(
    config_path: str | Path, overrides: list[str] | None = None, show_progress: bool = True
) -> dict[str, Any]:
    """Run (or resume) the experiment the YAML file describes; returns its summary (also in summary.json)."""
    cfg = load_config(config_path, overrides, model=SearchExperimentConfig)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    policy = model_path(cfg.policy, cfg, show_progress)
    examples = prm_examples(cfg, policy, out, show_progress)
    prm_path, training = trained_prm(cfg, policy, examples, out, show_progress)
    run_cfg = RunConfig(
        model=policy_model(cfg, policy),
        task=cfg.task,
        sampling=cfg.sampling,
        strategies=strategies(cfg, str(prm_path)),
        output_dir=str(out / "eval"),
        cache_path=str(out / "store.sqlite"),
    )
    summary = run_evaluation(run_cfg, show_progress=show_progress)
    records = [json.loads(line) for line in (out / "eval" / "results.jsonl").read_text().splitlines()]
    prm_key = next((verifier_key(s) for s in run_cfg.strategies if getattr(s, "verifier", None) == "prm"), None)
    summary["prm"] = prm_metrics(cfg, examples, records, training, prm_key, prm_path)
    (out / "eval" / "summary.json").write_text(json.dumps(summary, indent=2))
    append_prm_section(out / "eval" / "report.md", summary)
    return summary


def prm_metrics(
    cfg: SearchExperimentConfig,
    examples: list[PRMExample],
    records: list[dict],
    training: dict,
    prm_key: str | None,
    prm_path: Path,
) -> dict:
    """How well the PRM and its training labels predict the oracle's step verdicts."""
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
    if prm_key and "oracle" in cfg.verifiers:
        metrics["step_auc_first_error"] = step_auc(records, prm_key)
        metrics["step_auc_all_steps"] = step_auc(records, prm_key, until_first_error=False)
    return metrics


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def append_prm_section(report: Path, summary: dict[str, Any]) -> None:
    """Add the PRM measurements to the run's Markdown report."""
    m, t = summary["prm"], summary["prm"]["training"]
    lines = [
        "## Process reward model",
        (
            f"Trained on {m['train_solutions']} policy solutions ({m['train_steps']} steps, policy accuracy "
            f"{m['train_solution_accuracy']:.3f}), each step labelled by {m['rollouts']} rollouts of "
            f"`{m['completer']}`; {t['steps']} optimizer steps in {t['seconds']:.0f} s."
        ),
        (
            "The rollouts come from the policy being searched, as in Snell et al. (2024): a label is the step's value "
            "under that policy."
            if m["completer_is_policy"]
            else f"The rollouts come from `{m['completer']}`, not from the policy: a label is the step's value under "
            "that model (as Math-Shepherd's completer), not under the policy being searched."
        ),
        f"- Monte-Carlo labels vs oracle, step ROC AUC (first-error labels): {_fmt(m['mc_label_auc'])}",
        f"- PRM vs oracle, step ROC AUC (first-error labels): {_fmt(m.get('step_auc_first_error'))}",
        f"- PRM vs oracle, step ROC AUC (all steps): {_fmt(m.get('step_auc_all_steps'))}",
    ]
    with report.open("a") as fh:
        fh.write("\n" + "\n".join(lines) + "\n")
