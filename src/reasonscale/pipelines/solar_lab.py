"""`reasonscale lab solar`: SOLAR's topological scaling on the lab domain, end to end.

1. TAG on the training questions (reward-model training, and the tuning data unless `tune_task` has its own) and
   on the test questions (segments, held-out reward-model metrics, each topology's accuracy).  2. The M-TRM and the
   single-task reward models, trained on the training questions, measured on the test questions.  3. Topological
   tuning: the tuning set (balanced, right, serialized, rejected by the M-TRM) and LoRA SFT of the policy.  4. On
   the test questions, at each budget of N responses (`evaluate.budgets`): base (`cot`, N chains voting), tuning
   (the tuned policy, the same), rewarding (the base policy, `topological` with the M-TRM) and hybrid (the tuned
   policy, `topological`), per level and per segment, with their generated tokens; and the mean length of one
   chain per segment, base vs tuned.
   With `evaluate.matched`, also each policy's chains and its best single topology at the topological method's
   generated tokens at each budget (`solar_matched.py`), and the issue's targets, held or not, at the largest
   budget.
The evaluation runs once per seed of `evaluate.seeds`; with `seeds_vary: everything` each seed also has its own
training (steps 1-3 on the training questions, under `seed-<seed>/`). Every stage is stored or keyed by its inputs
(one shared sample cache), so a re-run makes no model call and trains nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SerializeAsAny, model_validator

from reasonscale import atomic
from reasonscale.config import ModelConfig, RunConfig, SamplingConfig, Section, StrategyConfig, TaskConfig, _as_section
from reasonscale.data.solar import TuningFilters
from reasonscale.data.tag import SegmentConfig
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
from reasonscale.pipelines.solar_matched import run_matched
from reasonscale.pipelines.solar_report import write_report
from reasonscale.pipelines.solar_results import curve, lengths, reward_summary, targets
from reasonscale.search.topological import allocate
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


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, int) and not isinstance(value, bool) else value


class EvalStage(Section):
    n: int = Field(4, ge=1, description="responses per test question: the largest budget (default with budgets)")
    budgets: list[Annotated[int, Field(ge=1)]] | None = Field(
        None, description="the budgets N every method is evaluated at (the curve; default: [n])"
    )
    shares: list[float] | Literal["equal", "predicted", "routed"] = "equal"
    select: Literal["vote", "argmax"] = "vote"
    seeds: list[int] = Field(
        default_factory=lambda: [0, 1], min_length=1, description="seeds of the evaluation (the noise)"
    )
    seeds_vary: Literal["evaluation", "everything"] = Field(
        "evaluation", description="evaluation: one training for every seed; everything: each seed trains its own"
    )
    matched: bool = Field(
        False, description="also chains and the best single topology at the generated tokens of rewarding / hybrid"
    )
    matched_n: Annotated[list[Annotated[int, Field(ge=1)]] | None, BeforeValidator(_listed)] = Field(
        None, description="the matched arms' N chains, one per budget (default: chosen from the measured tokens)"
    )

    @model_validator(mode="after")
    def _budgets(self) -> EvalStage:
        if self.budgets:
            self.budgets = sorted(set(self.budgets))
            if "n" in self.model_fields_set and self.n != self.budgets[-1]:
                raise ValueError(f"n ({self.n}) is the largest budget; budgets go up to {self.budgets[-1]}")
            self.n = self.budgets[-1]
        else:
            self.budgets = [self.n]
        if self.matched_n is not None and len(self.matched_n) != len(self.budgets):
            raise ValueError(f"matched_n: give one N per budget ({len(self.budgets)}), not {len(self.matched_n)}")
        return self


class SolarConfig(Section):
    model: ModelConfig | None = None
    policy: str | None = Field(None, description="a lab preset (trained or reused) as the policy, instead of model")
    train_task: TaskConfig = Field(description="questions annotated for tuning and reward-model training")
    test_task: TaskConfig = Field(description="questions evaluated (and annotated for segments and metrics)")
    tune_task: TaskConfig | None = Field(
        None, description="questions annotated for the tuning set (default: train_task)"
    )
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

    @property
    def stride(self) -> int:
        """Evaluation seed s samples at sampling seed s x stride: the most responses one topology gets at the largest
        budget, since a topology's response j runs at sampling seed + j, so two seeds never share a response."""
        n, shares = self.evaluate.n, self.evaluate.shares
        if shares in ("predicted", "routed"):
            return n
        return max(allocate(n, [1.0] * len(self.topologies) if shares == "equal" else shares))

    def annotation(self, task: TaskConfig, output_dir: Path, seed: int = 0) -> AnnotateConfig:
        """TAG of `task`; training seed `seed` samples its responses at seeds disjoint from every other seed's."""
        sampling = self.sampling.model_copy(update={"seed": self.sampling.seed + seed * self.responses})
        return AnnotateConfig(
            model=self.model, task=task, sampling=sampling, topologies=self.topologies, responses=self.responses,
            segments=self.segments, output_dir=str(output_dir), cache_path=self.cache,
        )  # fmt: skip

    def evaluation(self, policy: str, trm: str, name: str, seed: int) -> RunConfig:
        budgets = self.evaluate.budgets
        return self._run(policy, name, seed, [
            {"name": "cot", "budgets": sorted({1, *budgets})},
            {"name": "topological", "budgets": budgets, "verifier": "orm", "verifier_path": trm,
             "topologies": self.topologies, "shares": self.evaluate.shares, "select": self.evaluate.select},
        ])  # fmt: skip

    def matched_evaluation(self, policy: str, counts: list[int], name: str, seed: int) -> RunConfig:
        """N chains voting, and the same N chains chosen by the oracle (weighted best-of-N), at each N of
        `counts`."""
        budgets = sorted(set(counts))
        return self._run(policy, name, seed, [{"name": "cot", "budgets": budgets},
                                              {"name": "weighted_best_of_n", "budgets": budgets,
                                               "verifier": "oracle"}])  # fmt: skip

    def single_evaluation(
        self, policy: str, trm: str, topology: StrategyConfig, counts: list[int], name: str, seed: int
    ) -> RunConfig:
        """One topology alone, as `topological` with the reward model at `trm`, at 1 and each N of `counts`."""
        return self._run(policy, name, seed, [
            {"name": "topological", "budgets": sorted({1, *counts}), "verifier": "orm", "verifier_path": trm,
             "topologies": [topology], "select": self.evaluate.select},
        ])  # fmt: skip

    def _run(self, policy: str, name: str, seed: int, strategies: list[dict[str, Any]]) -> RunConfig:
        return RunConfig(
            model=self.model.model_copy(update={"path": policy}),
            task=self.test_task,
            sampling=self.sampling.model_copy(update={"seed": seed * self.stride}),
            strategies=strategies,
            output_dir=str(Path(self.output_dir) / name),
            cache_path=self.cache,
        )


@dataclass
class Trained:
    """One training of the experiment: its TAG summaries, reward models (paths and metrics) and tuning."""

    tags: dict[str, Any]
    reward: dict[str, Any]
    tune: dict[str, Any]

    @property
    def trm(self) -> str:
        return self.reward["models"]["m-trm"]


Factory = Callable[[RunConfig], Engine] | None


def run_solar(cfg: SolarConfig, show_progress: bool = True, engine_factory: Factory = None) -> dict[str, Any]:
    """Run (or resume) the whole experiment; writes solar_summary.json, solar_report.md and solar_curve.png;
    returns the summary."""
    out = Path(cfg.output_dir)
    if cfg.policy is not None:
        from reasonscale.lab.train import train_preset

        path = train_preset(cfg.policy, progress=show_progress)
        cfg = cfg.model_copy(update={"model": ModelConfig(path=str(path)), "policy": None})
    test_tag = run_annotation(cfg.annotation(cfg.test_task, out / "tag-test"), show_progress, engine_factory)["tag"]
    test_rows = read_annotations(out / "tag-test")
    test = trm_records(build_task(cfg.test_task), test_rows)
    seeds = cfg.evaluate.seeds
    if cfg.evaluate.seeds_vary == "everything":
        trainings = {f"seed-{s}": train(cfg, test, out / f"seed-{s}", s, show_progress, engine_factory) for s in seeds}
        by_seed = {s: trainings[f"seed-{s}"] for s in seeds}
    else:
        trainings = {"shared": train(cfg, test, out, 0, show_progress, engine_factory)}
        by_seed = dict.fromkeys(seeds, trainings["shared"])
    runs = {}
    for policy in ("base", "tuned"):
        for seed in seeds:
            path = cfg.model.path if policy == "base" else by_seed[seed].tune["model"]
            name = f"eval-{policy}-s{seed}"
            runs[name] = run_evaluation(cfg.evaluation(path, by_seed[seed].trm, name, seed), show_progress,
                                        engine_factory)  # fmt: skip
    segments = {r["id"]: r["segment"] for r in test_rows}
    budgets = cfg.evaluate.budgets
    points = curve(out, {m: (run, s, budgets) for m, (run, s) in METHODS.items()}, budgets, segments, seeds)
    if cfg.evaluate.matched:
        points |= run_matched(cfg, by_seed, points, segments, runs, show_progress, engine_factory)
    reward = reward_summary({label: t.reward["metrics"] for label, t in trainings.items()})
    methods = {method: line[-1] for method, line in points.items()}  # at the largest budget
    summary = {
        "budgets": budgets,
        "methods": methods,
        "curve": points,
        "length_by_segment": lengths(out, segments, seeds),
        "reward_models": reward,
        "targets": targets(methods, reward["metrics"]),
        "trainings": {label: {"tag": t.tags, "reward_models": t.reward, "tuning": t.tune}
                      for label, t in trainings.items()},
        "tag_test": tag_figures(test_tag),
        "model_calls": {name: run["usage"]["model_calls"] for name, run in runs.items()},  # this invocation's
        "config": cfg.model_dump(mode="json"),
    }  # fmt: skip
    atomic.write_text(out / "solar_summary.json", json.dumps(summary, indent=2))
    write_report(summary, out)
    return summary


def train(cfg: SolarConfig, test: list[dict[str, Any]], root: Path, seed: int, show_progress: bool,
          engine_factory: Factory) -> Trained:  # fmt: skip
    """TAG on the training (and tuning) questions, the reward models and the tuning, all under `root`; training
    seed `seed` offsets TAG's sampling seeds (by `seed` x responses), the trainers' seeds and the tuning set's draw."""
    base = BaseModelSettings(path=cfg.model.path)
    tasks = {"tag-train": cfg.train_task} | ({"tag-tune": cfg.tune_task} if cfg.tune_task else {})
    tags = {name: tag_figures(run_annotation(cfg.annotation(task, root / name, seed), show_progress,
                                             engine_factory)["tag"]) for name, task in tasks.items()}  # fmt: skip
    train_rows = trm_records(build_task(cfg.train_task), read_annotations(root / "tag-train"))
    reward = train_reward_models(base, train_rows, test, cfg.trm.trm, reseeded(cfg.trm.training, seed), root / "trm",
                                 cfg.trm.single_task, show_progress)  # fmt: skip
    tune_tag = root / ("tag-tune" if cfg.tune_task else "tag-train")
    filters = cfg.tune.filters.model_copy(update={"seed": cfg.tune.filters.seed + seed})
    tune = run_tune(
        TuneConfig(annotations=str(tune_tag), task=cfg.tune_task or cfg.train_task, model=base, filters=filters,
                   reward_model=reward["models"]["m-trm"], training=reseeded(cfg.tune.training, seed),
                   output_dir=str(root / "tune")),
        progress=show_progress, rows=read_annotations(tune_tag),
    )  # fmt: skip
    return Trained(tags, reward, tune)


def reseeded(training: TrainingSettings, seed: int) -> TrainingSettings:
    """The training settings with the optimizer's seed offset by `seed` (0: as configured)."""
    return training.model_copy(update={"optim": training.optim.model_copy(update={"seed": training.optim.seed + seed})})


def tag_figures(tag: dict[str, Any]) -> dict[str, Any]:
    return {k: tag[k] for k in ("questions", "segments", "best_single", "oracle_topology_accuracy")}
