"""A thin PRM trainer: fine-tune a model to predict each step's Monte-Carlo label where the verifier reads it.

TRL 1.16 has no PRM trainer, so this is a plain PyTorch loop over transformers models (LoRA optional through
peft), on the given device. The loss acts on one logit per step (`verifiers.prm.step_logits`): binary
cross-entropy against the soft or hard label, plus an optional pairwise ranking term between steps of the same
problem (labels of different problems are not comparable: an easy problem's wrong step may outscore a hard
problem's right one). The result is saved in Hugging Face format with `reasonscale_prm.json`, so
`PRMVerifier(path, task)` scores with it as trained.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from pydantic import Field

from reasonscale.config import Section
from reasonscale.data.prm_labels import PRMExample
from reasonscale.verifiers.prm import PRMFormat, encode_steps, step_logits, token_id


class PRMTrainConfig(Section):
    """How a PRM is trained from labelled examples."""

    mode: Literal["head", "token"] = Field("head", description="value head at step ends, or good/bad token logits")
    target: Literal["soft", "hard"] = "soft"
    rank_weight: float = Field(0.0, ge=0, description="weight of a pairwise ranking loss between steps")
    step_separator: str = "\n"
    epochs: float = Field(3.0, gt=0)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(20, ge=0)
    budget_s: float | None = Field(None, gt=0, description="stop after this many seconds")
    lora: bool = False
    lora_r: int = Field(16, ge=1)
    seed: int = 0


@dataclass
class PRMTrainResult:
    path: Path
    losses: list[float]
    steps: int
    seconds: float


def build_model(base: str, cfg: PRMTrainConfig) -> torch.nn.Module:
    """The base checkpoint with a one-logit token head (head mode) or as a causal LM (token mode), LoRA-wrapped
    when asked (the new head stays fully trainable)."""
    from transformers import AutoModelForCausalLM, AutoModelForTokenClassification

    if cfg.mode == "token":
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    else:
        model = AutoModelForTokenClassification.from_pretrained(base, num_labels=1, dtype=torch.float32)
    if cfg.lora:
        from peft import LoraConfig, get_peft_model

        task_type = "CAUSAL_LM" if cfg.mode == "token" else "TOKEN_CLS"
        lora = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=2 * cfg.lora_r,
            target_modules="all-linear",
            exclude_modules=["score"],
            task_type=task_type,
        )
        model = get_peft_model(model, lora)
    return model


class Encoded(NamedTuple):
    """One example as the model reads it: token ids, read positions, a label per step, and its problem."""

    ids: list[int]
    positions: list[int]
    labels: list[float]
    problem: str


def encode_examples(tokenizer, examples: Sequence[PRMExample], fmt: PRMFormat, target: str) -> list[Encoded]:
    """Each example encoded with its soft or hard step labels."""
    out = []
    for e in examples:
        ids, positions = encode_steps(tokenizer, e.prompt, e.steps, fmt)
        out.append(Encoded(ids, positions, e.soft if target == "soft" else e.hard, e.problem_id))
    return out


def batch_loss(
    model, batch: list[Encoded], fmt: PRMFormat, good_bad, rank_weight: float, pad: int, device: str = "cpu"
) -> torch.Tensor:
    """Cross-entropy of every step's logit against its label, plus the optional ranking term."""
    width = max(len(e.ids) for e in batch)
    input_ids = torch.tensor([e.ids + [pad] * (width - len(e.ids)) for e in batch], device=device)
    mask = torch.tensor([[1] * len(e.ids) + [0] * (width - len(e.ids)) for e in batch], device=device)
    logits = model(input_ids=input_ids, attention_mask=mask).logits
    rows = torch.tensor([r for r, e in enumerate(batch) for _ in e.positions], device=device)
    cols = torch.tensor([p for e in batch for p in e.positions], device=device)
    z = step_logits(logits[rows, cols], fmt, good_bad).float()
    y = torch.tensor([v for e in batch for v in e.labels], dtype=z.dtype, device=device)
    loss = F.binary_cross_entropy_with_logits(z, y)
    if rank_weight > 0:
        problems = {p: i for i, p in enumerate(dict.fromkeys(e.problem for e in batch))}
        groups = torch.tensor([problems[e.problem] for e in batch for _ in e.positions], device=device)
        loss = loss + rank_weight * ranking_loss(z, y, groups)
    return loss


def ranking_loss(z: torch.Tensor, y: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
    """Mean -log sigmoid(z_i - z_j) over pairs whose labels order i above j, within the same group (problem)."""
    above = y[:, None] > y[None, :]
    if groups is not None:
        above &= groups[:, None] == groups[None, :]
    if not above.any():
        return z.sum() * 0.0
    return -F.logsigmoid(z[:, None] - z[None, :])[above].mean()


def resolve_device(device: str) -> str:
    """The torch device to train on: CUDA when available for "auto", else the one given."""
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def train_prm(
    examples: Sequence[PRMExample],
    base_model: str | Path,
    output_dir: str | Path,
    cfg: PRMTrainConfig | None = None,
    on_step: Callable[[int, float], None] | None = None,
    device: str = "auto",
) -> PRMTrainResult:
    """Fine-tune `base_model` into a PRM on `examples` on `device` ("auto": CUDA when available) and save it
    (merged, HF format, on the CPU) to `output_dir`."""
    from transformers import AutoTokenizer, get_cosine_schedule_with_warmup

    cfg = cfg or PRMTrainConfig()
    torch.manual_seed(cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    fmt = PRMFormat(mode=cfg.mode, step_separator=cfg.step_separator)
    good_bad = (
        (token_id(tokenizer, fmt.good_token), token_id(tokenizer, fmt.bad_token)) if cfg.mode == "token" else None
    )
    data = [e for e in encode_examples(tokenizer, examples, fmt, cfg.target) if e.positions]
    device = resolve_device(device)
    model = build_model(str(base_model), cfg).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = max(1, math.ceil(cfg.epochs * len(data) / cfg.batch_size))
    schedule = get_cosine_schedule_with_warmup(optimizer, min(cfg.warmup_steps, total // 10), total)
    rng = random.Random(cfg.seed)
    pad = tokenizer.pad_token_id or 0
    losses: list[float] = []
    start = time.monotonic()
    order: list[int] = []
    for step in range(total):
        if cfg.budget_s is not None and time.monotonic() - start > cfg.budget_s:
            break
        if len(order) < cfg.batch_size:
            order += rng.sample(range(len(data)), len(data))
        batch, order = [data[i] for i in order[: cfg.batch_size]], order[cfg.batch_size :]
        loss = batch_loss(model, batch, fmt, good_bad, cfg.rank_weight, pad, device)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if on_step:
            on_step(step, losses[-1])
    return PRMTrainResult(save_prm(model, tokenizer, fmt, output_dir), losses, len(losses), time.monotonic() - start)


def save_prm(model, tokenizer, fmt: PRMFormat, output_dir: str | Path) -> Path:
    """Save the (LoRA-merged) model, its tokenizer and the format a loader needs to score."""
    path = Path(output_dir)
    path.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.eval().to("cpu").save_pretrained(path)
    tokenizer.save_pretrained(path)
    fmt.save(path)
    return path
