"""`reasonscale annotate`: TAG (SOLAR) over any model and task. Every question is answered `responses` times by
every configured topology (each variant of depth, children or neighbours is an entry of its own, or comes from
`grid`; each runs at its budget `n`, or at each of its `budgets`, one variant per budget); response i is an
ordinary evaluation run with sampling seed `seed + i`, stored and resumed through the run store like any other.
The responses are then labelled, ranked and segmented (`reasonscale.data.tag`).

Writes `annotations.jsonl` (one row per response), `dataset/` (the same rows as a `datasets` dataset, via
`save_to_disk`), `tag_summary.json` and `tag_report.md` to `output_dir`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, SerializeAsAny, model_validator

from reasonscale import atomic
from reasonscale.config import (
    ModelConfig,
    RunConfig,
    SamplingConfig,
    Section,
    StrategyConfig,
    TaskConfig,
    _as_section,
)
from reasonscale.data.tag import SegmentConfig, annotate, save_dataset, summarize_tag, write_jsonl
from reasonscale.engines import Engine, build_engine, engine_identity
from reasonscale.engines.cached import CachedEngine
from reasonscale.pipelines.evaluate import Evaluator, run_key, uses_verifier
from reasonscale.progress import Progress
from reasonscale.search.strategy import labels
from reasonscale.runlock import run_lock
from reasonscale.store import Store
from reasonscale.summary import COST_FIELDS
from reasonscale.tasks import build_task
from reasonscale.types import Problem
from reasonscale.verifiers import build_verifier



class AnnotateConfig(Section):
    model: ModelConfig | None = None
    policy: str | None = Field(None, description="a lab preset (trained or reused) as the model, instead of model")
    task: TaskConfig
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    topologies: list[SerializeAsAny[Annotated[StrategyConfig, BeforeValidator(_as_section)]]] = Field(
        min_length=1, description="strategy sections (cot, tot, got, mcts...), each run at its budget n"
    )
    grid: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="variants: every topology whose section has a key here runs once per combination of its values",
    )
    responses: int = Field(4, ge=1, description="responses per question x topology (seeds seed..seed+responses-1)")
    segments: SegmentConfig = Field(default_factory=SegmentConfig)
    output_dir: str = "runs/tag"
    cache_path: str | None = Field(None, description="shared generation cache (default: in output_dir)")

    @model_validator(mode="after")
    def _one_model(self) -> AnnotateConfig:
        if (self.model is None) == (self.policy is None):
            raise ValueError("give either model (a path or hub id) or policy (a lab preset), not both")
        return self

    @model_validator(mode="after")
    def _grid_keys_exist(self) -> AnnotateConfig:
        for key, values in self.grid.items():
            if not values:
                raise ValueError(f"grid.{key}: give at least one value")
            if not any(key in type(t).model_fields for t in self.topologies):
                raise ValueError(f"grid.{key}: no configured topology has this setting")
        return self

    def variants(self) -> list[StrategyConfig]:
        """Every topology, once per combination of the grid values of the settings its section has."""
        out = []
        for topology in self.topologies:
            keys = [k for k in self.grid if k in type(topology).model_fields]
            for values in itertools.product(*(self.grid[k] for k in keys)):
                out.append(_as_section({**topology.model_dump(), **dict(zip(keys, values))}))
        return out

    def response_run(self, index: int) -> RunConfig:
        """Response `index` as an evaluation run: every topology at its budget n, seed + index."""
        return RunConfig(
            model=self.model or ModelConfig(path=f"lab-preset:{self.policy}"),
            task=self.task,
            sampling=self.sampling.model_copy(update={"seed": self.sampling.seed + index}),
            strategies=[t.model_copy(update={"budgets": t.budgets or [t.n]}) for t in self.variants()],
            output_dir=self.output_dir,
            cache_path=self.cache_path,
        )


def run_annotation(
    cfg: AnnotateConfig,
    show_progress: bool = True,
    engine_factory: Callable[[RunConfig], Engine] | None = None,
    chunk_size: int = 16,
) -> dict[str, Any]:
    """Run (or resume) the annotation; writes its outputs and returns the TAG summary."""
    out_dir = Path(cfg.output_dir)
    if cfg.policy is not None and engine_factory is None:
        from reasonscale.lab.train import train_preset

        path = train_preset(cfg.policy, progress=show_progress)
        cfg = cfg.model_copy(update={"model": ModelConfig(path=str(path)), "policy": None})
    task = build_task(cfg.task)
    problems = task.load()
    runs = [cfg.response_run(i) for i in range(cfg.responses)]
    specs = {s.verifier_key(): s for s in runs[0].strategies if uses_verifier(s)}
    verifiers = {key: build_verifier(s.verifier, task, s.verifier_path, s.verifier_options) for key, s in specs.items()}
    inner = engine_factory(runs[0]) if engine_factory else None
    policy = inner.model_id if inner else engine_identity(cfg.response_run(0).model)
    with run_lock(out_dir):
        store = Store(cfg.cache_path or out_dir / "store.sqlite")
        keys = [run_key(run, policy) for run in runs]
        todo = [[p for p in problems if p.id not in store.get_results(key)] for key in keys]
        if any(todo):
            inner = inner or build_engine(runs[0].model)
            _respond(runs, keys, todo, problems, task, verifiers, inner, store, show_progress, chunk_size)
        elif inner is not None:
            inner.close()
        strategies = runs[0].strategies
        multi = {lab for s, lab in zip(strategies, labels(strategies)) if len(s.budgets) > 1}
        rows = annotate(_rows([store.get_results(k) for k in keys], problems, multi), cfg.segments)
        store.close()
    summary = {"tag": summarize_tag(rows), "config": cfg.model_dump(mode="json")}
    write_jsonl(rows, out_dir / "annotations.jsonl")
    save_dataset(rows, out_dir / "dataset")
    atomic.write_text(out_dir / "tag_summary.json", json.dumps(summary, indent=2))
    atomic.write_text(out_dir / "tag_report.md", tag_report(summary["tag"]))
    return summary


def tag_report(tag: dict[str, Any]) -> str:
    """The summary as Markdown: per variant accuracy (overall, per level), win rate and compute per response; the
    segments per level; the headroom of the best topology per question over the best single one."""
    levels = sorted({lvl for v in tag["variants"].values() for lvl in v["accuracy_by_level"]})
    head = ["topology", "accuracy", "vs best", *(f"L{lvl}" for lvl in levels), "win rate", "sole wins", "tokens",
            "FLOPs"]
    lines = [f"# TAG: {tag['questions']} questions", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, v in tag["variants"].items():
        by_level = [f"{v['accuracy_by_level'].get(lvl, float('nan')):.3f}" for lvl in levels]
        gap = f"{v['vs_best']:+.3f} ± {v['vs_best_se']:.3f}"
        accuracy = f"{v['accuracy']:.3f} ± {v['accuracy_se']:.3f}"
        cells = [label, accuracy, gap, *by_level, f"{v['win_rate']:.3f}", str(v["sole_wins"])]
        lines.append("| " + " | ".join([*cells, f"{v['generated_tokens']:.0f}", f"{v['flops']:.3g}"]) + " |")
    note = (
        "± one standard error over questions; vs best: the paired difference to the best single topology on the "
        "same questions. Tokens and FLOPs: mean per response. Segments per level:"
    )
    lines += ["", note, "", "| level | easy | medium | hard |"]
    lines.append("|---|---|---|---|")
    for level, counts in sorted(tag["segments_by_level"].items()):
        lines.append(f"| {level} | {counts['easy']} | {counts['medium']} | {counts['hard']} |")
    best = tag["best_single"]
    lines += [
        "",
        f"Best topology per question (oracle router): {tag['oracle_topology_accuracy']:.3f}; best single topology "
        f"({best['variant']}): {best['accuracy']:.3f}; headroom {tag['headroom']:.3f} ± {tag['headroom_se']:.3f}.",
        "",
    ]
    return "\n".join(lines)


def _respond(runs, keys, todo, problems, task, verifiers, inner, store, show_progress, chunk_size) -> None:
    """Evaluate every response's missing problems, committing each chunk to the store."""
    position = {p.id: i for i, p in enumerate(problems)}
    with Progress(enabled=show_progress, label="responses x problems") as progress:
        progress.start(len(runs) * len(problems), done=sum(len(problems) - len(t) for t in todo))
        for run, key, missing in zip(runs, keys, todo):

            def generated(count: int, key: str = key) -> None:
                store.add_run_calls(key, count)
                progress.samples(count)

            engine = CachedEngine(inner, store, on_generated=generated)
            evaluator = Evaluator(run, task, engine, verifiers)
            for start in range(0, len(missing), chunk_size):
                chunk = missing[start : start + chunk_size]
                for problem, record in zip(chunk, evaluator.evaluate(chunk)):
                    store.put_result(key, problem.id, position[problem.id], record)
                progress.problems(len(chunk))
    inner.close()


def _rows(results: list[dict[str, dict]], problems: list[Problem], multi_budget: set[str]) -> list[dict[str, Any]]:
    """One row per question x variant x response, from the stored evaluation records; a strategy reported at
    several budgets gives one variant per budget (`cot@4`)."""
    rows = []
    for problem in problems:
        for index, by_id in enumerate(results):
            for outcome in by_id[problem.id]["outcomes"]:
                rows.append(
                    {
                        "id": problem.id,
                        "question": problem.question,
                        "level": problem.level,
                        "reference": problem.answer,
                        "topology": outcome["strategy"],
                        "variant": _variant(outcome, multi_budget),
                        "settings": json.dumps(outcome["settings"], sort_keys=True),
                        "response": index,
                        "text": outcome["text"],
                        "answer": outcome["answer"],
                        "hard_label": int(outcome["correct"] >= 1.0),
                        "usage": {k: outcome[k] for k in COST_FIELDS},
                    }
                )
    return rows


def _variant(outcome: dict[str, Any], multi_budget: set[str]) -> str:
    label = outcome["label"]
    return f"{label}@{outcome['budget']}" if label in multi_budget else label
