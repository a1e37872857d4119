"""The lab revision model (Snell et al. 2024, section 6 and appendix H), trained through the training layer.

The policy samples `samples` answers to each training question at `temperature`; trajectories of incorrect attempts
ending in a correct one are built from them (`reasonscale.data.revisions`, graded by the task) and the policy is
fine-tuned on them with `train_sft` (loss on the correct answer only). Samples are cached in a store and the model
is trained into a directory keyed by the base's content, the data and every setting, so a re-run reuses both.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from reasonscale.config import ModelConfig, Section, TaskConfig
from reasonscale.data.prm_labels import save_examples
from reasonscale.data.revisions import MAX_PREVIOUS, build_revision_data, verifier_examples
from reasonscale.engines import Engine, build_engine
from reasonscale.engines.cached import CachedEngine
from reasonscale.identity import digest, model_identity
from reasonscale.store import Store
from reasonscale.tasks import build_task
from reasonscale.train.common import TrainResult
from reasonscale.train.config import SFTConfig
from reasonscale.train.prm import PRMTrainConfig
from reasonscale.train.data import write_jsonl
from reasonscale.types import SamplingParams


class RevisionTrainSettings(Section):
    """SFT of the revision model (all weights by default: lab models are tiny)."""

    lora: bool = False
    learning_rate: float = Field(5e-4, gt=0)
    epochs: float = Field(2.0, gt=0)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(16, ge=1)
    max_length: int = Field(512, ge=1, description="tokens per example (the lab models' context)")
    seed: int = 0


class RevisionVerifierConfig(Section):
    """The paper's verifier for revisions: an ORM trained on the revision model's chains, each attempt read after
    the previous attempts it saw (off by default: the oracle and the PRM need no extra training)."""

    enabled: bool = False
    train_per_level: int = Field(20, ge=1, description="training questions per level")
    chains: int = Field(2, ge=1, description="revision chains per question")
    length: int = Field(4, ge=1, description="attempts per chain")
    train: PRMTrainConfig = Field(default_factory=lambda: PRMTrainConfig(epochs=2, lr=1e-3))


class RevisionStageConfig(Section):
    """How the revision model's data is sampled and how it is trained."""

    train_per_level: int = Field(400, ge=1, description="training questions per level (fewer overfit: measured)")
    samples: int = Field(16, ge=1, description="parallel answers per question (64 in the paper)")
    temperature: float = Field(1.0, ge=0, description="sampling temperature of those answers (higher than eval)")
    max_tokens: int = Field(160, ge=1)
    max_previous: int = Field(MAX_PREVIOUS, ge=0, description="at most this many incorrect attempts before one")
    window: int = Field(3, ge=0, description="previous attempts shown (3 keeps level-5 contexts in 512 positions)")
    seed: int = 0
    train: RevisionTrainSettings = Field(default_factory=RevisionTrainSettings)
    verifier: RevisionVerifierConfig = Field(default_factory=RevisionVerifierConfig)


def revision_data(
    cfg: RevisionStageConfig,
    policy: ModelConfig,
    task_cfg: TaskConfig,
    out: Path,
    engine_factory: Callable[[ModelConfig], Engine] = build_engine,
) -> tuple[Path, dict[str, Any], int]:
    """Sample the policy on training questions (cached in `out/store.sqlite`), build the trajectories, write
    `out/revision_data.jsonl` ({prompt, completion}) and `revision_data.json` (statistics); returns the data path,
    the statistics and the model calls made."""
    task_cfg = task_cfg.model_copy(update={"split": "train", "limit": None})
    task_cfg.lab = task_cfg.lab.model_copy(update={"per_level": cfg.train_per_level})
    task = build_task(task_cfg)
    problems = task.load()
    prompts = [task.format_prompt(p) for p in problems]
    params = SamplingParams(cfg.samples, cfg.temperature, 1.0, cfg.max_tokens, task.solution_stop, cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    store = Store(out / "store.sqlite")
    try:
        with CachedEngine(engine_factory(policy), store) as engine:
            outputs = engine.generate(prompts, params)
            calls = engine.misses
    finally:
        store.close()
    flat = [(p, c) for p, cs in zip(problems, outputs) for c in cs]
    answers = [task.extract_answer(c.text) for _, c in flat]
    correct = iter(task.grade([p for p, _ in flat], answers))
    answers_iter = iter(answers)
    items = [
        (p.id, prompt, [{"text": c.text, "answer": next(answers_iter), "correct": next(correct)} for c in cs])
        for p, prompt, cs in zip(problems, prompts, outputs)
    ]
    examples, stats = build_revision_data(items, cfg.seed, task.split_steps, cfg.max_previous, cfg.window)
    if not examples:
        raise ValueError(f"the policy {policy.path} answered none of {len(problems)} training questions correctly "
                         f"in {cfg.samples} samples: no revision data")
    rows = [{"prompt": e.prompt, "completion": e.completion} for e in examples]
    path = write_jsonl(rows, out / "revision_data.jsonl")
    (out / "revision_data.json").write_text(json.dumps(stats, indent=2))
    return path, stats, calls


def train_revision_model(
    cfg: RevisionStageConfig, policy_path: str, data: Path, output_dir: Path, progress: bool = True
) -> TrainResult:
    """Fine-tune the policy on the revision data with `train_sft` (reused when identical)."""
    from reasonscale.train.sft import train_sft

    t = cfg.train
    sft = SFTConfig.model_validate({
        "model": {"path": policy_path},
        "data": {"path": str(data)},
        "lora": {"enabled": t.lora},
        "optim": {"learning_rate": t.learning_rate, "epochs": t.epochs, "max_steps": t.max_steps,
                  "batch_size": t.batch_size, "max_length": t.max_length, "seed": t.seed, "precision": "fp32",
                  "warmup": 0.05},
        "log": {"logging_steps": 10, "save_steps": 200},
        "output_dir": str(output_dir),
    })
    return train_sft(sft, progress=progress)


def train_revision_preset(
    name: str,
    cfg: RevisionStageConfig | None = None,
    budget_s: float | None = None,
    progress: bool = True,
    engine_factory: Callable[[ModelConfig], Engine] = build_engine,
) -> Path:
    """The revision model of lab preset `name` (`reasonscale lab train --revision`): the preset is trained or
    reused, then its revision data and model live in the lab cache beside it, under the preset's fingerprint and
    reused while the base's content, the data and the settings are unchanged."""
    from reasonscale.lab.model import get_preset
    from reasonscale.lab.train import cache_root, train_preset

    cfg = cfg or RevisionStageConfig()
    preset = get_preset(name)
    policy = str(train_preset(name, budget_s=budget_s, progress=progress))
    out = cache_root() / "lab" / f"revision-{preset.name}-{preset.fingerprint()}"
    data, _, _ = revision_data(cfg, ModelConfig(path=policy), TaskConfig(name="lab"), out, engine_factory)
    return train_revision_model(cfg, policy, data, out / "model", progress).path


def train_revision_verifier(
    cfg: RevisionStageConfig,
    revision_model: str,
    task_cfg: TaskConfig,
    temperature: float,
    out: Path,
    device: str = "auto",
    engine_factory: Callable[[ModelConfig], Engine] = build_engine,
) -> tuple[Path, dict[str, Any]]:
    """Sample revision chains of the revision model on training questions (cached), label every attempt with the
    task's grader, and train an ORM on them (`train_prm`, one segment per attempt) into `out/orm/<key>`, keyed by the
    base's content, the data and the settings; reused when all are unchanged. Returns its path and statistics
    (with the model calls this invocation made)."""
    from types import SimpleNamespace

    from reasonscale.search.revise import Revise, ReviseConfig
    from reasonscale.train.prm import resolve_device, train_prm

    v = cfg.verifier
    task_cfg = task_cfg.model_copy(update={"split": "train", "limit": None})
    task_cfg.lab = task_cfg.lab.model_copy(update={"per_level": v.train_per_level, "seed": task_cfg.lab.seed + 1})
    task = build_task(task_cfg)
    problems = task.load()
    prompts = [task.format_prompt(p) for p in problems]
    params = SamplingParams(1, temperature, 1.0, cfg.max_tokens, task.solution_stop, cfg.seed)
    strategy = Revise(ReviseConfig(length=v.length, window=cfg.window, select="majority"))
    store = Store(out / "store.sqlite")
    try:
        with CachedEngine(engine_factory(ModelConfig(path=revision_model)), store) as engine:
            chunk = SimpleNamespace(task=task, engine=engine, problems=problems, prompts=prompts,
                                    sampling=lambda: params)
            chains, _ = strategy.sample_chains(chunk, v.chains * v.length)
            calls = engine.misses
    finally:
        store.close()
    examples = [e for p, prompt, c in zip(problems, prompts, chains)
                for e in verifier_examples(task, p, prompt, c, cfg.window)]
    data = save_examples(examples, out / "orm_data.jsonl")
    key = digest({"base": model_identity(revision_model), "data": digest(data.read_text()),
                  "train": v.train.model_dump(), "device": resolve_device(device)})
    path = out / "orm" / key
    stats = {"examples": len(examples), "correct": sum(e.correct for e in examples), "key": key}
    if not (path / "training.json").is_file():  # written last: a complete ORM
        result = train_prm(examples, revision_model, path, v.train, device=device)
        (path / "training.json").write_text(json.dumps({**stats, "steps": result.steps}, indent=2))
    return path, {**stats, "model_calls": calls}
