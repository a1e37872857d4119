"""`reasonscale lab solar`: SOLAR's topological scaling on the lab domain, end to end.

1. TAG on the training questions (reward-model training, and the tuning data unless `tune_task` has its own) and
   on the test questions (segments, held-out reward-model metrics, each topology's accuracy).  2. The M-TRM and the
   single-task reward models, trained on the training questions, measured on the test questions.  3. Topological
   tuning: the tuning set (balanced, right, serialized, rejected by the M-TRM) and LoRA SFT of the policy.  4. On
   the test questions, at a budget of N responses: base (`cot`, N chains voting), tuning (the tuned policy, the
   same), rewarding (the base policy, `topological` with the M-TRM) and hybrid (the tuned policy, `topological`),
   per level and per segment, with their generated tokens; and the mean length of one chain per segment, base vs
   tuned.
   With `evaluate.matched`, also each policy's chains at the topological method's generated tokens, voting and
   chosen by the oracle the nested topologies use (MATCHED), and the issue's targets, held or not.
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
# At matched compute (`evaluate.matched`): N chains, N chosen so their generated tokens match rewarding's (the base
# policy) or hybrid's (the tuned one); voting, or chosen by the oracle that the nested topologies also use.
MATCHED = {"base-matched": ("base-matched", "cot"), "tuning-matched": ("tuned-matched", "cot"),
           "chains-oracle": ("base-matched", "weighted_best_of_n"),
           "tuned-chains-oracle": ("tuned-matched", "weighted_best_of_n")}  # fmt: skip
PAIRS = {"base": ("rewarding", "base"), "tuned": ("hybrid", "tuning")}  # policy: (its topological, its chains)


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
    matched: bool = Field(False, description="also the chain arms at the generated tokens of rewarding / hybrid")
    matched_n: int | None = Field(
        None, ge=1, description="the matched arms' N chains (default: chosen from the measured tokens)"
    )


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

    def annotation(self, task: TaskConfig, name: str) -> AnnotateConfig:
        return AnnotateConfig(
            model=self.model, task=task, sampling=self.sampling, topologies=self.topologies, responses=self.responses,
            segments=self.segments, output_dir=str(Path(self.output_dir) / name), cache_path=self.cache,
        )  # fmt: skip

    def evaluation(self, policy: str, trm: str, name: str, seed: int) -> RunConfig:
        n = self.evaluate.n
        return self._run(policy, name, seed, [
            {"name": "cot", "n": n, "budgets": sorted({1, n})},
            {"name": "topological", "n": n, "budgets": [n], "verifier": "orm", "verifier_path": trm,
             "topologies": self.topologies, "shares": self.evaluate.shares, "select": self.evaluate.select},
        ])  # fmt: skip

    def matched_evaluation(self, policy: str, n: int, name: str, seed: int) -> RunConfig:
        """N chains voting, and the same N chains chosen by the oracle (weighted best-of-N)."""
        return self._run(policy, name, seed, [{"name": "cot", "n": n, "budgets": [n]},
                                              {"name": "weighted_best_of_n", "n": n, "budgets": [n],
                                               "verifier": "oracle"}])  # fmt: skip

    def _run(self, policy: str, name: str, seed: int, strategies: list[dict[str, Any]]) -> RunConfig:
        return RunConfig(
            model=self.model.model_copy(update={"path": policy}),
            task=self.test_task,
            sampling=self.sampling.model_copy(update={"seed": seed}),
            strategies=strategies,
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
    tune_task = cfg.tune_task or cfg.train_task
    tasks = {"tag-train": cfg.train_task, "tag-test": cfg.test_task}
    if cfg.tune_task:
        tasks["tag-tune"] = cfg.tune_task
    tags = {}
    for name, task in tasks.items():
        tags[name] = run_annotation(cfg.annotation(task, name), show_progress, engine_factory)["tag"]
    train_rows, test_rows = read_annotations(out / "tag-train"), read_annotations(out / "tag-test")
    tune_tag = out / ("tag-tune" if cfg.tune_task else "tag-train")
    train, test = trm_records(build_task(cfg.train_task), train_rows), trm_records(build_task(cfg.test_task), test_rows)
    reward = train_reward_models(base, train, test, cfg.trm.trm, cfg.trm.training, out / "trm", cfg.trm.single_task,
                                 show_progress)  # fmt: skip
    trm = reward["models"]["m-trm"]
    tune = run_tune(
        TuneConfig(annotations=str(tune_tag), task=tune_task, model=base, filters=cfg.tune.filters,
                   reward_model=trm, training=cfg.tune.training, output_dir=str(out / "tune")),
        progress=show_progress, rows=read_annotations(tune_tag),
    )  # fmt: skip
    runs = {}
    for policy, path in (("base", cfg.model.path), ("tuned", tune["model"])):
        for seed in cfg.evaluate.seeds:
            name = f"eval-{policy}-s{seed}"
            runs[name] = run_evaluation(cfg.evaluation(path, trm, name, seed), show_progress, engine_factory)
    segments = {r["id"]: r["segment"] for r in test_rows}
    arms = {method: (run, strategy, cfg.evaluate.n) for method, (run, strategy) in METHODS.items()}
    methods = compare(out, arms, segments, cfg.evaluate.seeds)
    if cfg.evaluate.matched:
        methods |= run_matched(cfg, {"base": cfg.model.path, "tuned": tune["model"]}, methods, segments, runs,
                               show_progress, engine_factory)  # fmt: skip
    summary = {
        "methods": methods,
        "length_by_segment": lengths(out, segments, cfg.evaluate.seeds),
        "reward_models": reward,
        "targets": targets(methods, reward["metrics"]),
        "tuning": tune,
        "tag": {name: {k: t[k] for k in ("questions", "segments", "best_single", "oracle_topology_accuracy")}
                for name, t in tags.items()},
        "model_calls": {name: run["usage"]["model_calls"] for name, run in runs.items()},  # this invocation's
        "config": cfg.model_dump(mode="json"),
    }  # fmt: skip
    atomic.write_text(out / "solar_summary.json", json.dumps(summary, indent=2))
    atomic.write_text(out / "solar_report.md", solar_report(summary))
    return summary


def run_matched(
    cfg: SolarConfig,
    paths: dict[str, str],
    methods: dict[str, dict[str, Any]],
    segments: dict[str, str],
    runs: dict[str, Any],
    show_progress: bool,
    engine_factory: Callable[[RunConfig], Engine] | None,
) -> dict[str, dict[str, Any]]:
    """The matched arms (MATCHED) of each policy at its N (`matched_n`, or from the measured tokens); adds the
    runs to `runs`."""
    seeds, chosen = cfg.evaluate.seeds, {}
    for policy, path in paths.items():
        topological, chains = PAIRS[policy]
        chosen[policy] = cfg.evaluate.matched_n or matched_chains(methods[topological], methods[chains], cfg.evaluate.n)
        for seed in seeds:
            name = f"eval-{policy}-matched-s{seed}"
            run = cfg.matched_evaluation(path, chosen[policy], name, seed)
            runs[name] = run_evaluation(run, show_progress, engine_factory)
    arms = {m: (run, s, chosen[run.removesuffix("-matched")]) for m, (run, s) in MATCHED.items()}
    return compare(Path(cfg.output_dir), arms, segments, seeds)


def _records(out: Path, run: str, seeds: list[int]) -> list[dict[str, Any]]:
    """Every evaluation record of the runs `eval-<run>-s<seed>`, each with its `seed`."""
    rows = []
    for seed in seeds:
        lines = (out / f"eval-{run}-s{seed}" / "results.jsonl").read_text().splitlines()
        rows += [{**json.loads(line), "seed": seed} for line in lines]
    return rows


def matched_chains(topological: dict[str, Any], chains: dict[str, Any], n: int) -> int:
    """The number of chains whose generated tokens per question are closest to the topological method's, from the
    measured tokens of n chains (a chain's tokens do not depend on how many are drawn)."""
    return max(1, round(topological["generated_tokens"] / (chains["generated_tokens"] / n)))


def compare(
    out: Path, methods: dict[str, tuple[str, str, int]], segments: dict[str, str], seeds: list[int]
) -> dict[str, dict[str, Any]]:
    """Per method (run, strategy, budget n): accuracy overall (mean over seeds, each seed's, and their spread),
    per level and per segment (over every seed's records), and generated tokens per question."""
    table = {}
    for method, (run, strategy, n) in methods.items():
        picked = [(r, o) for r in _records(out, run, seeds) for o in r["outcomes"]
                  if o["strategy"] == strategy and o["budget"] == n]  # fmt: skip
        by_seed, by_level, by_segment = defaultdict(list), defaultdict(list), defaultdict(list)
        for r, o in picked:
            by_seed[str(r["seed"])].append(o["correct"])
            by_level[str(r["level"])].append(o["correct"])
            by_segment[segments.get(r["id"], "unknown")].append(o["correct"])
        per_seed = {k: mean(v) for k, v in by_seed.items()}
        table[method] = {
            "n": n,
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


def targets(methods: dict[str, dict[str, Any]], metrics: dict[str, dict[str, float]]) -> dict[str, bool]:
    """The issue's targets, each held or not: a method beats the base by more than the noise (the larger seed
    spread of the two), hybrid at least as good as either alone, the M-TRM at least as good as the single-task
    models; and, with the matched arms, the same beats at matched generated tokens."""
    def beats(method: str, base: str) -> bool:
        a, b = methods[method], methods[base]
        return a["accuracy"] - b["accuracy"] > max(a["seed_spread"], b["seed_spread"])

    out = {f"{m} beats base": beats(m, "base") for m in ("tuning", "rewarding", "hybrid")}
    out["hybrid >= tuning and rewarding"] = methods["hybrid"]["accuracy"] >= max(
        methods["tuning"]["accuracy"], methods["rewarding"]["accuracy"]
    )
    m_trm = metrics["m-trm"]
    for name, other in metrics.items():
        for key in ("selection_accuracy", "spearman"):
            if name != "m-trm" and key in other and key in m_trm:
                out[f"m-trm {key} >= {name}"] = m_trm[key] >= other[key]
    if "base-matched" in methods:
        out |= {f"{m} beats {base}": beats(m, base) for m, base in (
            ("rewarding", "base-matched"), ("hybrid", "tuning-matched"), ("rewarding", "chains-oracle"),
            ("hybrid", "tuned-chains-oracle"))}  # fmt: skip
    return out


def solar_report(summary: dict[str, Any]) -> str:
    methods = summary["methods"]
    levels = sorted({lvl for m in methods.values() for lvl in m["accuracy_by_level"]})
    head = ["method", "N", "accuracy", "seed spread", *(f"L{lvl}" for lvl in levels), *SEGMENTS, "tokens"]
    lines = ["# SOLAR on the lab", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in methods.items():
        cells = [f"{m['accuracy_by_level'].get(lvl, float('nan')):.3f}" for lvl in levels]
        cells += [f"{m['accuracy_by_segment'].get(s, float('nan')):.3f}" for s in SEGMENTS]
        first = f"| {name} | {m['n']} | {m['accuracy']:.3f} | {m['seed_spread']:.3f} | "
        lines.append(first + " | ".join(cells) + f" | {m['generated_tokens']:.0f} |")
    lines += ["", "N: responses per question (chains, or topology runs); accuracy: mean over the seeds; seed spread: "
              "best minus worst seed; levels and segments: every seed's questions; tokens: generated per question. "
              "`-matched`: N chains at the generated tokens of rewarding (base policy) or hybrid (tuned); "
              "`chains-oracle`: those chains chosen by the oracle verifier the nested topologies use.", "",
              "Targets: " + "; ".join(f"{k}: {'yes' if v else 'no'}" for k, v in summary["targets"].items()) + ".",
              "", "Reward models on the test questions:", "",
              "| model | selection accuracy | Spearman |", "|---|---|---|"]  # fmt: skip
    for name, metric in summary["reward_models"]["metrics"].items():
        sel, rho = metric.get("selection_accuracy", float("nan")), metric.get("spearman", float("nan"))
        se = f" ± {metric['selection_accuracy_se']:.3f}" if "selection_accuracy_se" in metric else ""
        lines.append(f"| {name} | {sel:.3f}{se} | {rho:.3f} |")
    stages = ", ".join(f"{s['stage']} {s['in']} -> {s['out']}" for s in summary["tuning"]["filters"])
    lines += ["", f"Tuning set: {stages}.",
              "", "Mean generated tokens of one chain per segment:", "", "| policy | " + " | ".join(SEGMENTS) + " |",
              "|---|---|---|---|"]  # fmt: skip
    for policy, by in summary["length_by_segment"].items():
        lines.append(f"| {policy} | " + " | ".join(f"{by.get(s, float('nan')):.1f}" for s in SEGMENTS) + " |")
    return "\n".join(lines) + "\n"
