"""Train a lab model from scratch on canonical solutions: a plain loop with checkpoints and resume.

A run lives in one directory that is at once a Hugging Face model directory (config, safetensors, tokenizer)
and a checkpoint (`trainer_state.json`, `optimizer.pt`). Calling `train` on it again resumes at the saved step
and stream position, or returns at once when the run is done. A preset is its steps: the learning rate depends
on the step alone, so a run stopped and resumed (on any machine) ends with the same weights as one that was not.
A wall-time budget only caps one call: a run it stops is saved as incomplete and `TrainingIncomplete` is raised,
so an unfinished model is never handed out as the preset. `trainer_state.json` records the steps and tokens
trained and the parameter count (training FLOPs are 6 x parameters x tokens).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from transformers import LlamaForCausalLM, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from reasonscale.lab.graph import Graph
from reasonscale.lab.model import Preset, TrainSpec, get_preset
from reasonscale.lab.splits import TrainStream
from reasonscale.lab.tokenizer import build_char_tokenizer

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
IGNORE_INDEX = -100
# Lab models are so small that one thread trains them fastest (measured: 0.072 s/step on one thread, 0.082 on
# two, on an idle 2-core machine), and a second thread only adds contention on a shared machine.
NUM_THREADS = 1


class TrainingIncomplete(ValueError):
    """A run stopped by its wall-time budget before its last step (saved; the next call resumes it)."""

    def __init__(self, run_dir: Path, step: int, max_steps: int):
        super().__init__(
            f"lab model in {run_dir} is trained to step {step} of {max_steps} (the time budget ran out); "
            "it is saved and not used until complete: run the same command again to resume"
        )
        self.run_dir, self.step, self.max_steps = run_dir, step, max_steps


@dataclass
class TrainState:
    """Where a run stands: optimizer steps taken of `max_steps`, stream position, tokens trained (without and
    with padding), training seconds spent over all calls, loss per step."""

    max_steps: int
    step: int = 0
    position: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    elapsed_s: float = 0.0
    losses: list[float] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.step >= self.max_steps


def cache_root() -> Path:
    """Where trained lab models are kept: $REASONSCALE_CACHE, else ~/.cache/reasonscale."""
    return Path(os.environ.get("REASONSCALE_CACHE") or Path.home() / ".cache" / "reasonscale")


def preset_dir(preset: Preset) -> Path:
    return cache_root() / "lab" / f"{preset.name}-{preset.fingerprint()}"


def train_preset(name: str, budget_s: float | None = None, progress: bool = True) -> Path:
    """The directory of the fully trained model of preset `name`, training (or resuming) it first if needed.

    `budget_s` caps this call's training time (default: none); if it runs out first, the run is saved and
    `TrainingIncomplete` is raised. A finished run is reused.
    """
    preset = get_preset(name)
    return train(preset_dir(preset), preset, budget_s, progress)


def encode_batch(tokenizer: PreTrainedTokenizerBase, graphs: list[Graph]) -> dict[str, torch.Tensor]:
    """Right-padded `bos question \\n solution eos` sequences; only solution tokens carry labels."""
    rows, labels = [], []
    for graph in graphs:
        prompt = tokenizer(graph.question + "\n")["input_ids"]
        answer = tokenizer(graph.solution, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append(prompt + answer)
        labels.append([IGNORE_INDEX] * len(prompt) + answer)
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    return {
        "input_ids": torch.tensor([r + [pad] * (width - len(r)) for r in rows]),
        "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows]),
        "labels": torch.tensor([r + [IGNORE_INDEX] * (width - len(r)) for r in labels]),
    }


def learning_rate(spec: TrainSpec, step: int) -> float:
    """Linear warm-up over steps, then a cosine from lr to lr * min_lr_ratio as `step` goes to max_steps."""
    if step < spec.warmup_steps:
        return spec.lr * (step + 1) / spec.warmup_steps
    cosine = 0.5 * (1 + math.cos(math.pi * min(step / spec.max_steps, 1.0)))
    return spec.lr * (spec.min_lr_ratio + (1 - spec.min_lr_ratio) * cosine)


def make_optimizer(model: torch.nn.Module, spec: TrainSpec) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on norms)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": spec.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=spec.lr, betas=(0.9, 0.99))


# A batch: one padded tensor dict, or several (rows of very different lengths, padded apart; one optimizer step).
Batch = dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]
# The next training batch from a stream position, and the position after it (the position is checkpointed).
NextBatch = Callable[[PreTrainedTokenizerBase, int], tuple[Batch, int]]


def problem_batches(spec: TrainSpec) -> NextBatch:
    """Batches of solved problems from the preset's training stream (`TrainStream`), resumable at any position."""
    stream: TrainStream | None = None

    def next_batch(tokenizer: PreTrainedTokenizerBase, position: int) -> tuple[Batch, int]:
        nonlocal stream
        if stream is None or stream.position != position:
            stream = TrainStream(spec.level_weights, spec.batch_size, spec.seed, position)
        return encode_batch(tokenizer, next(stream)), stream.position

    return next_batch


def train(
    run_dir: str | Path,
    preset: Preset,
    budget_s: float | None = None,
    progress: bool = True,
    next_batch: NextBatch | None = None,
) -> Path:
    """Train `preset` in `run_dir` to its last step and return `run_dir`.

    `budget_s` caps the training seconds of this call; when it runs out first, the checkpoint is saved and
    `TrainingIncomplete` raised. `next_batch` gives the data (default: the preset's stream of solved problems).
    """
    with _torch_threads(NUM_THREADS):
        return _train(Path(run_dir), preset, budget_s, progress, next_batch or problem_batches(preset.train))


def _train(run_dir: Path, preset: Preset, budget_s: float | None, progress: bool, next_batch: NextBatch) -> Path:
    spec = preset.train
    tokenizer = build_char_tokenizer()
    model, optimizer, state = load_checkpoint(run_dir, preset, tokenizer)
    if state.complete and (run_dir / STATE_FILE).is_file():
        return run_dir
    report_every = max(1, spec.max_steps // 20)
    spent = 0.0
    model.train()
    while not state.complete and (budget_s is None or spent < budget_s):
        started = time.perf_counter()
        batch, position = next_batch(tokenizer, state.position)
        loss = train_step(model, optimizer, batch, learning_rate(spec, state.step))
        state.step, state.position = state.step + 1, position
        parts = batch if isinstance(batch, list) else [batch]
        state.tokens += sum(int(part["attention_mask"].sum()) for part in parts)
        state.padded_tokens += sum(part["input_ids"].numel() for part in parts)
        took = time.perf_counter() - started
        spent, state.elapsed_s = spent + took, state.elapsed_s + took
        state.losses.append(round(loss, 5))
        if progress and state.step % report_every == 0:
            _report(preset.name, state, spent)
        if state.step % spec.checkpoint_every == 0:
            save_checkpoint(run_dir, model, optimizer, tokenizer, state)
    save_checkpoint(run_dir, model, optimizer, tokenizer, state)
    if progress and state.step % report_every:
        _report(preset.name, state, spent)
    if not state.complete:
        raise TrainingIncomplete(run_dir, state.step, state.max_steps)
    return run_dir


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, lr: float) -> float:
    """One optimizer step at learning rate `lr` (gradients clipped to norm 1); returns the batch loss, the mean
    over every labelled token (of all parts, when the batch has several)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    if isinstance(batch, list):
        counts = [int((part["labels"][:, 1:] != IGNORE_INDEX).sum()) for part in batch]
        loss = torch.zeros(())
        for part, count in zip(batch, counts):
            part_loss = model(**part).loss * (count / sum(counts))
            part_loss.backward()
            loss += part_loss.detach()
    else:
        loss = model(**batch).loss
        loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def _report(name: str, state: TrainState, spent_s: float) -> None:
    recent = state.losses[-max(1, state.max_steps // 20) :]
    print(
        f"[lab:{name}] step {state.step}/{state.max_steps} loss {sum(recent) / len(recent):.4f} "
        f"{spent_s:.0f}s in this call",
        file=sys.stderr,
        flush=True,
    )


def load_checkpoint(
    run_dir: Path, preset: Preset, tokenizer: PreTrainedTokenizerBase
) -> tuple[LlamaForCausalLM, torch.optim.AdamW, TrainState]:
    """The model, optimizer and state saved in `run_dir`, or fresh ones when it holds no checkpoint."""
    if not (run_dir / STATE_FILE).is_file():
        model = preset.model.build(tokenizer, preset.train.seed)
        return model, make_optimizer(model, preset.train), TrainState(preset.train.max_steps)
    with _no_progress_bars():
        model = LlamaForCausalLM.from_pretrained(run_dir, dtype=torch.float32)
    optimizer = make_optimizer(model, preset.train)
    optimizer.load_state_dict(torch.load(run_dir / OPTIMIZER_FILE, weights_only=True))
    saved = json.loads((run_dir / STATE_FILE).read_text())
    state = TrainState(**{f.name: saved[f.name] for f in fields(TrainState) if f.name in saved})
    state.max_steps = preset.train.max_steps
    return model, optimizer, state


def save_checkpoint(
    run_dir: Path,
    model: LlamaForCausalLM,
    optimizer: torch.optim.Optimizer,
    tokenizer: PreTrainedTokenizerBase,
    state: TrainState,
) -> None:
    """Write the model (Hugging Face format), tokenizer, optimizer and state, replacing the old checkpoint whole.

    The state file also says whether the run is complete and how many parameters the model has.
    """
    tmp = run_dir.with_name(run_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with _no_progress_bars():
        model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
    record = {"complete": state.complete, "parameters": model.num_parameters(), **asdict(state)}
    (tmp / STATE_FILE).write_text(json.dumps(record))
    old = run_dir.with_name(run_dir.name + ".old")
    if run_dir.exists():
        run_dir.rename(old)
    tmp.rename(run_dir)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Silence transformers' per-file progress bars (checkpoints are frequent and tiny)."""
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


@contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """Run torch ops on `count` threads, restoring the previous setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
