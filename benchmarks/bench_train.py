"""SFT throughput through the training layer (TRL SFTTrainer) vs the lab's own loop, on the same model and batch.

Both fine-tune the same lab preset model (full weights, AdamW, one thread, as the lab trains) on the same batch of
lab problems (prompt: question and newline; completion: solution and EOS; loss on the completion), step after step.
Throughput is tokens (prompt + completion, no padding) per second over the steps after the first (warm-up); the
ratio layer/lab is the cost of the TRL wrapper per step (collation, metrics it logs, callbacks). Runs alternate
and the best of `--repeats` counts.

    python benchmarks/bench_train.py [--preset weak --batch 16 --steps 30 --repeats 2 --lora]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from reasonscale.lab.model import get_preset
from reasonscale.lab.splits import TrainStream
from reasonscale.lab.tokenizer import build_char_tokenizer
from reasonscale.lab.train import encode_batch, make_optimizer, train_step
from reasonscale.train import SFTConfig, train_sft
from reasonscale.train.data import write_jsonl


class StepClock(TrainerCallback):
    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())


def lab_loop(model_dir: Path, batch, steps: int) -> float:
    """Seconds per step after the first, with the lab's train_step."""
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32).train()
    optimizer = make_optimizer(model, get_preset("weak").train)
    ends = []
    for _ in range(steps):
        train_step(model, optimizer, batch, lr=1e-4)
        ends.append(time.perf_counter())
    return (ends[-1] - ends[0]) / (steps - 1)


def layer_loop(model_dir: Path, data: Path, work: Path, batch_size: int, steps: int, lora: bool) -> float:
    """Seconds per step after the first, through `train_sft`."""
    clock = StepClock()
    cfg = SFTConfig.model_validate(
        {
            "model": {"path": str(model_dir)},
            "data": {"path": str(data), "fields": {"prompt": "question", "completion": "solution"}},
            "lora": {"enabled": lora},
            "optim": {"learning_rate": 1e-4, "max_steps": steps, "batch_size": batch_size, "weight_decay": 0.1},
            "log": {"logging_steps": 10, "save_steps": 10_000, "cpu_threads": 1},
            "output_dir": str(work / f"out-{time.perf_counter_ns()}"),
        }
    )
    train_sft(cfg, progress=False, callbacks=[clock])
    return (clock.ends[-1] - clock.ends[0]) / (steps - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="weak")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--lora", action="store_true", help="the layer trains LoRA adapters (lab: full weights)")
    args = parser.parse_args()

    tokenizer = build_char_tokenizer()
    preset = get_preset(args.preset)
    graphs = next(TrainStream(preset.train.level_weights, args.batch, seed=0))
    batch = encode_batch(tokenizer, graphs)
    tokens = int(batch["attention_mask"].sum())
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = work / "base"
        preset.model.build(tokenizer, seed=0).save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        rows = [{"question": g.question + "\n", "solution": g.solution} for g in graphs]
        data = write_jsonl(rows, work / "batch.jsonl")
        lab, layer = [], []
        for _ in range(args.repeats):
            lab.append(lab_loop(model_dir, batch, args.steps))
            layer.append(layer_loop(model_dir, data, work, args.batch, args.steps, args.lora))
    lab_rate, layer_rate = tokens / min(lab), tokens / min(layer)
    print(f"model {args.preset} ({sum(p.numel() for p in preset.model.build(tokenizer, 0).parameters())} params), "
          f"batch {args.batch} ({tokens} tokens), {args.steps} steps, best of {args.repeats}")
    print(f"{'loop':<28}{'s/step':>10}{'tokens/s':>12}")
    print(f"{'lab train_step':<28}{min(lab):>10.4f}{lab_rate:>12.0f}")
    print(f"{'train_sft (TRL)' + (' LoRA' if args.lora else ''):<28}{min(layer):>10.4f}{layer_rate:>12.0f}")
    print(f"ratio layer/lab: {layer_rate / lab_rate:.2f}")


if __name__ == "__main__":
    main()
