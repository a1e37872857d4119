"""The PRM trainer's loop: AdamW steps over shuffled batches, with checkpoints a killed run resumes from exactly.

A batch is made of whole units (index lists into the data, each example alone by default): the units are shuffled
each epoch by the seeded data-order generator and a batch takes the next ones while they fit in `batch_size`
examples (at least one), so grouped units (a problem's solutions) always train together.

A checkpoint (`<work>/checkpoints/step-N.pt`, written atomically, the newest `log.save_total_limit` kept) holds the
trainable weights, the optimizer and scheduler states, the torch and data-order RNG states, the order of the
current epoch's remaining units and the loss history, so the resumed run takes the same steps on the same
batches. Mixed precision is bf16 autocast when the run's precision is bf16.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from reasonscale.train.common import CHECKPOINTS, Job


def train_loop(
    job: Job,
    model: torch.nn.Module,
    data: Sequence[Any],
    loss_of: Callable[[list[Any]], torch.Tensor],
    device: str,
    progress: bool,
    on_step: Callable[[int, float], None] | None = None,
    units: Sequence[Sequence[int]] | None = None,
) -> tuple[list[dict[str, float]], int]:
    """Train `model` on `data` (loss of a batch by `loss_of`), batching whole `units` (default: each example
    alone); returns the logged history and the steps taken."""
    from transformers import get_scheduler

    units = [list(u) for u in units] if units is not None else [[i] for i in range(len(data))]
    o, log = job.cfg.optim, job.cfg.log
    total = o.max_steps or max(1, math.ceil(o.epochs * len(data) / (o.batch_size * o.grad_accum)))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=o.learning_rate, weight_decay=o.weight_decay)
    warmup = int(o.warmup * total) if o.warmup < 1 else int(o.warmup)
    scheduler = get_scheduler(o.scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=total)
    state: dict[str, Any] = {"step": 0, "order": [], "rng": random.Random(o.seed).getstate(), "history": []}
    folder = job.work / CHECKPOINTS
    if (last := last_checkpoint(folder)) is not None:
        state = load_checkpoint(last, model, optimizer, scheduler)
    rng = random.Random()
    rng.setstate(state["rng"])
    order, history = state["order"], state["history"]
    autocast = torch.autocast(torch.device(device).type, torch.bfloat16, enabled=job.precision == "bf16")
    model.train()
    step = state["step"]
    while step < total:
        step += 1
        loss_sum = 0.0
        for _ in range(o.grad_accum):
            if sum(len(units[u]) for u in order) < o.batch_size:
                order += rng.sample(range(len(units)), len(units))
            taken, order = take(order, units, o.batch_size)
            batch = [data[i] for u in taken for i in units[u]]
            with autocast:
                loss = loss_of(batch)
            (loss / o.grad_accum).backward()
            loss_sum += loss.item()
        torch.nn.utils.clip_grad_norm_(params, o.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        if step % log.logging_steps == 0 or step == total:
            history.append({"step": step, "loss": loss_sum / o.grad_accum, "learning_rate": scheduler.get_last_lr()[0]})
            if progress:
                print(json.dumps(history[-1]))
        if step % log.save_steps == 0 and step < total:
            state = {"step": step, "order": order, "rng": rng.getstate(), "history": history}
            save_checkpoint(folder, state, model, optimizer, scheduler, log.save_total_limit)
        if on_step:
            on_step(step, loss_sum / o.grad_accum)
    return history, step


def take(order: list[int], units: list[list[int]], size: int) -> tuple[list[int], list[int]]:
    """The leading units of `order` that fit in `size` examples (at least one), and the rest of `order`."""
    count, n = len(units[order[0]]), 1
    while n < len(order) and count + len(units[order[n]]) <= size:
        count, n = count + len(units[order[n]]), n + 1
    return order[:n], order[n:]


def last_checkpoint(folder: Path) -> Path | None:
    files = sorted(folder.glob("step-*.pt"), key=lambda f: int(f.stem.split("-")[1])) if folder.is_dir() else []
    return files[-1] if files else None


def save_checkpoint(folder: Path, state: dict[str, Any], model, optimizer, scheduler, keep: int | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    weights = {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad}
    rngs = {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    payload = {**state, "weights": weights, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
               "rngs": rngs}
    path = folder / f"step-{state['step']}.pt"
    torch.save(payload, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)
    old = sorted(folder.glob("step-*.pt"), key=lambda f: int(f.stem.split("-")[1]))
    for stale in old[: -keep] if keep else []:
        stale.unlink()


def load_checkpoint(path: Path, model, optimizer, scheduler) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and RNGs; returns the loop state (step, order, rng, history)."""
    payload = torch.load(path, weights_only=False)  # our own file, written by save_checkpoint
    missing = set(payload["weights"]) - {n for n, _ in model.named_parameters()}
    if missing:
        raise ValueError(f"checkpoint {path} does not fit the model (e.g. {sorted(missing)[0]})")
    model.load_state_dict(payload["weights"], strict=False)
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    torch.set_rng_state(payload["rngs"]["torch"])
    if payload["rngs"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["rngs"]["cuda"])
    return {k: payload[k] for k in ("step", "order", "rng", "history")}
