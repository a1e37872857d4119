"""The PRM trainer (TRL has none): fine-tune a model to predict each step's Monte-Carlo label where the verifier
reads it, with the training layer's config, identity, skipping, LoRA and publishing (`train/common.py`).

The loss acts on one logit per step (`verifiers.prm.step_logits`): binary cross-entropy against the soft or hard
label, plus optional pairwise ranking terms within a problem (labels of different problems are not comparable: an
easy problem's wrong step may outscore a hard problem's right one): between its steps (`rank_weight`) and between
its solutions' last-step logits, the score best-of-N selects by with `aggregate: last` (`solution_rank_weight`).
Both compare what is in one batch; `batching: problem` puts all of a problem's examples in one, so they compare its
solutions with each other. The loop is plain PyTorch on `prm.device`; every `log.save_steps` it checkpoints the
trainable weights, optimizer, scheduler, RNGs and data order in the work directory, so a killed run resumes to the
same weights. The model is published merged with `reasonscale_prm.json`, so `build_verifier("prm", task, path)`
scores with it as trained.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from pydantic import Field

from reasonscale.config import Section
from reasonscale.data.prm_labels import PRMExample, save_examples
from reasonscale.tasks.io import iter_jsonl
from reasonscale.train.common import (
    LOSS_FILE,
    TrainResult,
    finish,
    load_model,
    load_tokenizer,
    plan,
    read_info,
    session,
    setup_lora,
)
from reasonscale.train.config import PRMConfig, PRMSettings
from reasonscale.train.data import fingerprint
from reasonscale.train.prm_loop import train_loop
from reasonscale.verifiers.prm import PRMFormat, encode_steps, step_logits, token_id

OnStep = Callable[[int, float], None]


class Encoded(NamedTuple):
    """One example as the model reads it: token ids, read positions, a label per step, and its problem."""

    ids: list[int]
    positions: list[int]
    labels: list[float]
    problem: str


def read_prm_examples(cfg: PRMConfig) -> list[PRMExample]:
    """Every line of the data files as a PRM example; a bad line is an error naming file:line."""
    examples: list[PRMExample] = []
    for path in cfg.data.paths:
        if not path.is_file():
            raise FileNotFoundError(f"data file not found: {path}")
        for number, item in iter_jsonl(path):
            examples.append(_example(item, cfg.prm.target, f"{path}:{number}"))
            if cfg.data.limit is not None and len(examples) >= cfg.data.limit:
                return examples
    if not examples:
        raise ValueError(f"no training examples in {', '.join(map(str, cfg.data.paths))}")
    return examples


def _example(item: dict[str, Any], target: str, where: str) -> PRMExample:
    for name in ("problem_id", "prompt"):
        if not isinstance(item.get(name), str):
            raise ValueError(f"{where}: field '{name}' is missing or not a string")
    steps, labels = item.get("steps"), item.get(target)
    if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
        raise ValueError(f"{where}: field 'steps' is missing or not a list of strings")
    if not isinstance(labels, list) or not all(isinstance(v, (int, float)) for v in labels):
        raise ValueError(f"{where}: field '{target}' (prm.target) is missing or not a list of numbers")
    if len(labels) != len(steps):
        raise ValueError(f"{where}: {len(steps)} steps but {len(labels)} '{target}' labels")
    labels = [float(v) for v in labels]
    return PRMExample(item["problem_id"], str(item.get("question", "")), item["prompt"], steps, labels, labels,
                      bool(item.get("correct", False)), item.get("level"))


def encode_examples(
    tokenizer, examples: Sequence[PRMExample], fmt: PRMFormat, target: str, max_length: int | None = None
) -> list[Encoded]:
    """Each example encoded with its soft or hard step labels, cut to `max_length` tokens (steps read beyond it
    are dropped, and so is an example left with none)."""
    out = []
    for e in examples:
        ids, positions = encode_steps(tokenizer, e.prompt, e.steps, fmt)
        labels = e.soft if target == "soft" else e.hard
        if max_length is not None:
            kept = [i for i, p in enumerate(positions) if p < max_length]
            ids, positions, labels = ids[:max_length], [positions[i] for i in kept], [labels[i] for i in kept]
        if positions:
            out.append(Encoded(ids, positions, labels, e.problem_id))
    return out


def batch_loss(
    model, batch: list[Encoded], fmt: PRMFormat, good_bad, rank_weight: float, pad: int, device: str = "cpu",
    solution_rank_weight: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy of every step's logit against its label, plus the optional ranking terms: between steps and
    between examples' last steps (each example's last logit and label), of the same problem."""
    width = max(len(e.ids) for e in batch)
    input_ids = torch.tensor([e.ids + [pad] * (width - len(e.ids)) for e in batch], device=device)
    mask = torch.tensor([[1] * len(e.ids) + [0] * (width - len(e.ids)) for e in batch], device=device)
    logits = model(input_ids=input_ids, attention_mask=mask).logits
    rows = torch.tensor([r for r, e in enumerate(batch) for _ in e.positions], device=device)
    cols = torch.tensor([p for e in batch for p in e.positions], device=device)
    z = step_logits(logits[rows, cols], fmt, good_bad).float()
    y = torch.tensor([v for e in batch for v in e.labels], dtype=z.dtype, device=device)
    loss = F.binary_cross_entropy_with_logits(z, y)
    problems = {p: i for i, p in enumerate(dict.fromkeys(e.problem for e in batch))}
    if rank_weight > 0:
        groups = torch.tensor([problems[e.problem] for e in batch for _ in e.positions], device=device)
        loss = loss + rank_weight * ranking_loss(z, y, groups)
    if solution_rank_weight > 0:
        last = torch.tensor([len(e.positions) for e in batch], device=device).cumsum(0) - 1
        groups = torch.tensor([problems[e.problem] for e in batch], device=device)
        loss = loss + solution_rank_weight * ranking_loss(z[last], y[last], groups)
    return loss


def ranking_loss(z: torch.Tensor, y: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
    """Mean -log sigmoid(z_i - z_j) over pairs whose labels order i above j, within the same group (problem)."""
    above = y[:, None] > y[None, :]
    if groups is not None:
        above &= groups[:, None] == groups[None, :]
    if not above.any():
        return z.sum() * 0.0
    return -F.logsigmoid(z[:, None] - z[None, :])[above].mean()


def problem_units(data: Sequence[Encoded], size: int) -> list[list[int]]:
    """The indices of each problem's examples, in data order, cut into pieces of at most `size` (a batch)."""
    by_problem: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(data):
        by_problem[e.problem].append(i)
    return [ids[k : k + size] for ids in by_problem.values() for k in range(0, len(ids), size)]


def resolve_device(device: str) -> str:
    """The torch device to train on: CUDA when available for "auto", else the one given."""
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def build_model(cfg: PRMConfig) -> torch.nn.Module:
    """The base with a one-logit token head (head mode) or as a causal LM (token mode), through the layer's LoRA
    setup (PEFT keeps a token-classification head fully trained and saves it)."""
    from transformers import AutoModelForCausalLM, AutoModelForTokenClassification

    if cfg.prm.mode == "token":
        model, task_type = load_model(cfg, AutoModelForCausalLM), "CAUSAL_LM"
    else:
        model, task_type = load_model(cfg, AutoModelForTokenClassification, num_labels=1), "TOKEN_CLS"
    model, lora = setup_lora(cfg, model, task_type)
    if lora is not None:
        from peft import get_peft_model

        if cfg.prm.mode == "head":
            lora.exclude_modules = ["score"]  # the head is trained whole, not adapted
        model = get_peft_model(model, lora)
    return model


def train_prm_run(cfg: PRMConfig, progress: bool = True, on_step: OnStep | None = None) -> TrainResult:
    """Train (or reuse) the PRM described by `cfg` and publish it at `cfg.output_dir`. `on_step(step, loss)` is
    called after every optimizer step (numbered from 1) and its checkpoint."""
    with session(cfg, progress):
        examples = read_prm_examples(cfg)
        records = [[e.problem_id, e.prompt, e.steps, e.soft] for e in examples]
        device = resolve_device(cfg.prm.device)
        cfg = cfg.model_copy(update={"prm": cfg.prm.model_copy(update={"device": device})})  # keyed as resolved
        job = plan("prm", cfg, fingerprint(records), len(examples))
        if done := job.finished():
            return done
        tokenizer = load_tokenizer(cfg)
        fmt = cfg.prm.format()
        good_bad = None
        if fmt.mode == "token":
            good_bad = (token_id(tokenizer, fmt.good_token), token_id(tokenizer, fmt.bad_token))
        data = encode_examples(tokenizer, examples, fmt, cfg.prm.target, cfg.optim.max_length)
        if not data:
            raise ValueError("no PRM example has a step within optim.max_length tokens")
        model = build_model(cfg).to(device)
        pad = tokenizer.pad_token_id or 0

        def loss_of(batch: list[Encoded]) -> torch.Tensor:
            return batch_loss(model, batch, fmt, good_bad, cfg.prm.rank_weight, pad, device,
                              cfg.prm.solution_rank_weight)

        units = problem_units(data, cfg.optim.batch_size) if cfg.prm.batching == "problem" else None
        history, steps = train_loop(job, model, data, loss_of, device, progress, on_step, units)
        finish(job, model.eval(), tokenizer, history, steps, {"prm": asdict(fmt)}, save=fmt.save)
        return TrainResult(job.output, read_info(job.output) or {}, trained=True)


class PRMTrainConfig(Section):
    """How a pipeline trains a PRM from labelled examples (`train_prm`): the `prm` settings and a few of the
    layer's, in the names the pipelines' configs use."""

    mode: Literal["head", "token"] = Field("head", description="value head at step ends, or good/bad token logits")
    target: Literal["soft", "hard"] = "soft"
    rank_weight: float = Field(0.0, ge=0, description="weight of a pairwise ranking loss between steps")
    solution_rank_weight: float = Field(
        0.0, ge=0, description="weight of a pairwise ranking loss between a problem's solutions (last-step scores)"
    )
    batching: Literal["random", "problem"] = Field("random", description="problem: a batch holds whole problems")
    step_separator: str = "\n"
    epochs: float = Field(3.0, gt=0)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(20, ge=0)
    lora: bool = False
    lora_r: int = Field(16, ge=1)
    seed: int = 0


@dataclass
class PRMTrainResult:
    path: Path
    losses: list[float]
    steps: int
    seconds: float


def prm_config(examples_file: Path, base: str | Path, output_dir: str | Path, cfg: PRMTrainConfig, device: str,
               examples: int) -> PRMConfig:
    """The layer's config for a pipeline's PRM: cosine schedule, warm-up capped at a tenth of the steps, LoRA
    alpha 2r without dropout, no length cut, a loss logged every step."""
    steps = max(1, math.ceil(cfg.epochs * examples / cfg.batch_size))
    return PRMConfig.model_validate({
        "model": {"path": str(base)},
        "data": {"path": str(examples_file)},
        "lora": {"enabled": cfg.lora, "r": cfg.lora_r, "alpha": 2.0 * cfg.lora_r, "dropout": 0.0},
        "optim": {"learning_rate": cfg.lr, "weight_decay": cfg.weight_decay, "scheduler": "cosine",
                  "warmup": min(cfg.warmup_steps, steps // 10), "epochs": cfg.epochs, "batch_size": cfg.batch_size,
                  "max_length": None, "seed": cfg.seed, "precision": "fp32"},
        "log": {"logging_steps": 1},
        "output_dir": str(output_dir),
        "prm": PRMSettings(mode=cfg.mode, target=cfg.target, rank_weight=cfg.rank_weight,
                           solution_rank_weight=cfg.solution_rank_weight, batching=cfg.batching,
                           step_separator=cfg.step_separator, device=device).model_dump(),
    })


def train_prm(
    examples: Sequence[PRMExample],
    base_model: str | Path,
    output_dir: str | Path,
    cfg: PRMTrainConfig | None = None,
    on_step: OnStep | None = None,
    device: str = "auto",
) -> PRMTrainResult:
    """Fine-tune `base_model` into a PRM on `examples` on `device` ("auto": CUDA when available) and publish it
    (merged, HF format) at `output_dir`, through `train_prm_run`."""
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        data = save_examples(examples, Path(folder) / "prm.jsonl")
        config = prm_config(data, base_model, output_dir, cfg or PRMTrainConfig(), device, len(examples))
        result = train_prm_run(config, progress=False, on_step=on_step)
    lines = (result.path / LOSS_FILE).read_text().splitlines()
    losses = [json.loads(line)["loss"] for line in lines]
    return PRMTrainResult(result.path, losses, result.info.get("steps", len(losses)), time.monotonic() - start)

