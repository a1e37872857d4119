"""SOLAR's topological scaling: topological tuning (`reasonscale solar tune`), the topological reward models
(`reasonscale solar trm`), and the experiment comparing base, tuned, rewarding and hybrid (`reasonscale lab solar`,
`pipelines/solar_lab.py`).

Both stages read a TAG export (`reasonscale annotate`'s `annotations.jsonl`, or its output directory). Every
trained model lands in a directory keyed by what produced it through the training layer, so a re-run trains nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from reasonscale import atomic
from reasonscale.config import Section, TaskConfig
from reasonscale.data.solar import TuningFilters, problem_of, tuning_set
from reasonscale.tasks import build_task
from reasonscale.tasks.base import Task
from reasonscale.train.config import (
    BaseModelSettings,
    DataSettings,
    LogSettings,
    LoraSettings,
    OptimSettings,
    RewardConfig,
    SFTConfig,
)
from reasonscale.train.data import write_jsonl
from reasonscale.train.trm import TRMConfig, TRMSettings, paired_selection, train_trm, trm_metrics

Row = dict[str, Any]


class TrainingSettings(Section):
    """How a model of this pipeline is trained (the training layer's sections)."""

    lora: LoraSettings = Field(default_factory=LoraSettings)
    optim: OptimSettings = Field(default_factory=OptimSettings)
    log: LogSettings = Field(default_factory=LogSettings)


class TuneConfig(Section):
    """`reasonscale solar tune`: the tuning set from a TAG export, then LoRA SFT of `model` on it."""

    annotations: str = Field(description="a TAG export: annotations.jsonl, or the annotate run's output_dir")
    task: TaskConfig = Field(description="the annotated task (its prompt and step format)")
    model: BaseModelSettings
    filters: TuningFilters = Field(default_factory=TuningFilters)
    reward_model: str | None = Field(None, description="a TRM or reward model for the reward filter")
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    output_dir: str = "runs/solar-tune"


class TRMRunConfig(Section):
    """`reasonscale solar trm`: the M-TRM and the single-task models, measured on held-out questions."""

    annotations: str = Field(description="a TAG export: annotations.jsonl, or the annotate run's output_dir")
    task: TaskConfig
    model: BaseModelSettings = Field(description="the backbone every reward model starts from")
    held_out: float = Field(0.25, gt=0, lt=1, description="fraction of questions kept out of training")
    single_task: bool = Field(True, description="also train the single-task models to compare with")
    trm: TRMSettings = Field(default_factory=TRMSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    output_dir: str = "runs/solar-trm"


def read_annotations(path: str | Path) -> list[Row]:
    """The rows of a TAG export (a directory means its annotations.jsonl)."""
    path = Path(path)
    file = path / "annotations.jsonl" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"annotations: no TAG export at {file} (run `reasonscale annotate` first)")
    rows = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
    if not rows or "segment" not in rows[0]:
        raise ValueError(f"annotations: {file} holds no annotated rows")
    return rows


def run_tune(cfg: TuneConfig, progress: bool = True, rows: Sequence[Row] | None = None) -> dict[str, Any]:
    """Build the tuning set (reporting every filter), write it to `output_dir/tune.jsonl`, and SFT the model."""
    from reasonscale.train.sft import train_sft

    task = build_task(cfg.task)
    rows = list(rows) if rows is not None else read_annotations(cfg.annotations)
    reward = reward_scorer(task, cfg.reward_model) if cfg.reward_model else None
    records, report = tuning_set(task, rows, cfg.filters, reward)
    if not records:
        raise ValueError(f"the tuning set is empty after the filters ({_sizes(report)}): nothing to train on")
    out = Path(cfg.output_dir)
    data = write_jsonl(records, out / "tune.jsonl")
    sft = SFTConfig(model=cfg.model, data=DataSettings(path=str(data)), **_sections(cfg.training),
                    output_dir=str(out / "model"))  # fmt: skip
    result = train_sft(sft, progress=progress)
    summary = {"filters": report, "examples": len(records), "model": str(result.path), "trained": result.trained,
               "topologies": _count(records, "topology"), "segments": _count(records, "segment")}  # fmt: skip
    atomic.write_text(out / "tune_report.json", json.dumps(summary, indent=2))
    return summary


def reward_scorer(task: Task, path: str):
    """rows -> each serialized response's score by the reward model at `path` (as an `orm` verifier)."""
    from reasonscale.verifiers import build_verifier

    verifier = build_verifier("orm", task, path)

    def score(rows: list[Row]) -> list[float]:
        steps = [task.split_steps(r["completion"]) for r in rows]
        scores = verifier.score([problem_of(r) for r in rows], steps)
        return [s[-1] if s else 0.0 for s in scores]

    return score


def trm_records(task: Task, rows: Sequence[Row]) -> list[Row]:
    """TRM training lines from TAG rows: the task's prompt, the response as a verifier reads it (its steps
    joined), its hard label, its topology variant and the question x variant's topo label."""
    return [
        {"id": r["id"], "prompt": task.format_prompt(problem_of(r)),
         "response": task.join_steps(task.split_steps(r["text"] or "")), "label": r["hard_label"],
         "topology": r["variant"], "topo_label": r["topo_label"]}
        for r in rows
    ]  # fmt: skip


def held_out_ids(ids: Sequence[str], fraction: float) -> set[str]:
    """A stable `fraction` of question ids (by a hash of each id, so adding questions keeps earlier choices)."""
    unique = sorted(set(ids), key=lambda q: hashlib.sha256(q.encode()).hexdigest())
    return set(unique[: max(1, round(fraction * len(unique)))])


def run_trm(cfg: TRMRunConfig, progress: bool = True) -> dict[str, Any]:
    """Train the reward models on the questions not held out; measure them on the held-out ones."""
    task = build_task(cfg.task)
    records = trm_records(task, read_annotations(cfg.annotations))
    test = held_out_ids([r["id"] for r in records], cfg.held_out)
    train = [r for r in records if r["id"] not in test]
    summary = train_reward_models(cfg.model, train, [r for r in records if r["id"] in test], cfg.trm,
                                  cfg.training, Path(cfg.output_dir), cfg.single_task, progress)  # fmt: skip
    atomic.write_text(Path(cfg.output_dir) / "trm_report.json", json.dumps(summary, indent=2))
    return summary


def train_reward_models(
    base: BaseModelSettings,
    train: list[Row],
    test: list[Row],
    settings: TRMSettings,
    training: TrainingSettings,
    out: Path,
    single_task: bool,
    progress: bool,
) -> dict[str, Any]:
    """The M-TRM (both heads), and with `single_task` the answer-only and topology-only TRMs and a scalar reward
    model through the training layer (TRL's RewardTrainer on pairs from the hard labels); each model's path and
    its held-out selection accuracy and Spearman."""
    from reasonscale.train.reward import train_reward
    from reasonscale.verifiers.reward import RewardModelVerifier
    from reasonscale.verifiers.trm import TRMVerifier

    if not train or not test:
        raise ValueError(f"reward models: {len(train)} training and {len(test)} held-out responses; need both")
    data = write_jsonl(train, out / "trm_train.jsonl")
    variants = {"m-trm": settings}
    if single_task:
        variants["trm-answer"] = settings.model_copy(update={"topology_weight": 0.0})
        variants["trm-topology"] = settings.model_copy(update={"answer_weight": 0.0, "pair_weight": 0.0})
    models, metrics, scores = {}, {}, {}
    prompts, responses = [r["prompt"] for r in test], [r["response"] for r in test]
    for name, trm in variants.items():
        cfg = TRMConfig(model=base, data=DataSettings(path=str(data)), trm=trm, **_sections(training),
                        output_dir=str(out / name))  # fmt: skip
        models[name] = str(train_trm(cfg, progress=progress).path)
        verifier = TRMVerifier(models[name], None)
        if trm.answers:
            scores[name] = verifier.answer_scores(prompts, responses)
        topology = (lambda ps, v=verifier: v.topology_scores(ps)[0]) if trm.topology_weight else None
        metrics[name] = trm_metrics(test, scores.get(name), topology)
    if single_task:
        cfg = RewardConfig(model=base, data=DataSettings(path=str(data)), reward={"format": "labels"},
                           **_sections(training), output_dir=str(out / "reward"))  # fmt: skip
        models["reward"] = str(train_reward(cfg, progress=progress).path)
        scores["reward"] = RewardModelVerifier(models["reward"], None).rewards(prompts, responses)[0]
        metrics["reward"] = trm_metrics(test, scores["reward"], None)
    if "m-trm" in scores:  # the M-TRM's selection minus each other answer scorer's, paired over questions
        for name in sorted(scores.keys() - {"m-trm"}):
            difference, se = paired_selection(test, scores["m-trm"], scores[name])
            metrics["m-trm"] |= {f"selection_minus_{name}": difference, f"selection_minus_{name}_se": se}
    return {"models": models, "metrics": metrics, "train_responses": len(train), "test_responses": len(test)}


def _sections(training: TrainingSettings) -> dict[str, Any]:
    return {"lora": training.lora, "optim": training.optim, "log": training.log}


def _count(records: Sequence[Row], key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in records:
        out[r[key]] = out.get(r[key], 0) + 1
    return out


def _sizes(report: Sequence[dict[str, Any]]) -> str:
    return ", ".join(f"{s['stage']} {s['in']} -> {s['out']}" for s in report)

