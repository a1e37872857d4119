"""The strong model of the lab weak-to-strong experiment: a larger tiny Llama pretrained on documents of related
task families (`lab.families`), never on the target task's solutions.

The weak model is an ordinary lab preset (trained on the target's gold solutions). The strong one learns the same
computations written in other forms, several solved problems per document, so it has the skill (a gold-label
fine-tune shows it: the ceiling) and can follow demonstrations, but does not write the target's form by itself.
Training reuses the lab loop's pieces (optimizer, schedule, step, checkpoint); a run resumes and is reused when done.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from reasonscale.lab.families import FAMILIES, document
from reasonscale.lab.model import FORMAT, TrainSpec
from reasonscale.lab.tokenizer import build_char_tokenizer
from reasonscale.lab.train import (
    IGNORE_INDEX,
    NUM_THREADS,
    OPTIMIZER_FILE,
    STATE_FILE,
    TrainState,
    _torch_threads,
    cache_root,
    learning_rate,
    make_optimizer,
    save_checkpoint,
    train_step,
)


@dataclass(frozen=True)
class StrongPreset:
    """Model size and pretraining of the strong model; every field decides its weights."""

    name: str = "w2s-strong"
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    mlp_size: int = 512
    max_positions: int = 1024  # documents and few-shot prompts are longer than the lab's single problems
    steps: int = 3000
    batch_size: int = 8  # documents per step
    lr: float = 3e-3
    warmup_steps: int = 100
    levels: tuple[int, ...] = (1, 2, 3, 4, 5)
    families: tuple[str, ...] = tuple(FAMILIES)
    doc_chars: int = 900
    seed: int = 0

    def fingerprint(self) -> str:
        settings = {**asdict(self), "format": FORMAT}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]

    def train_spec(self) -> TrainSpec:
        weights = {level: 1.0 for level in self.levels}
        return TrainSpec(self.steps, self.batch_size, self.lr, weights, warmup_steps=self.warmup_steps, seed=self.seed)

    def build(self, tokenizer: PreTrainedTokenizerBase) -> LlamaForCausalLM:
        config = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=self.hidden_size, intermediate_size=self.mlp_size,
            num_hidden_layers=self.layers, num_attention_heads=self.heads, num_key_value_heads=self.heads,
            max_position_embeddings=self.max_positions, tie_word_embeddings=True,
            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        torch.manual_seed(self.seed)
        return LlamaForCausalLM(config)


def encode_documents(tokenizer: PreTrainedTokenizerBase, docs: list[list[tuple[str, str]]]) -> dict[str, torch.Tensor]:
    """`bos q1\\n s1\\n\\n q2\\n s2 ... eos`, right-padded; labels on solutions and what ends them (blank line, eos)."""
    rows, labels = [], []
    for doc in docs:
        ids, lab = [tokenizer.bos_token_id], [IGNORE_INDEX]
        for k, (question, solution) in enumerate(doc):
            asked = tokenizer(question + "\n", add_special_tokens=False)["input_ids"]
            last = k == len(doc) - 1
            end = [tokenizer.eos_token_id] if last else tokenizer("\n\n", add_special_tokens=False)["input_ids"]
            answer = tokenizer(solution, add_special_tokens=False)["input_ids"] + end
            ids += asked + answer
            lab += [IGNORE_INDEX] * len(asked) + answer
        rows.append(ids)
        labels.append(lab)
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    return {
        "input_ids": torch.tensor([r + [pad] * (width - len(r)) for r in rows]),
        "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows]),
        "labels": torch.tensor([r + [IGNORE_INDEX] * (width - len(r)) for r in labels]),
    }


def strong_dir(preset: StrongPreset) -> Path:
    return cache_root() / "lab" / f"{preset.name}-{preset.fingerprint()}"


def train_strong(preset: StrongPreset, progress: bool = True, run_dir: Path | None = None) -> Path:
    """The pretrained strong model's directory, training (or resuming) it first if needed."""
    run_dir = run_dir or strong_dir(preset)
    spec, tokenizer = preset.train_spec(), build_char_tokenizer()
    with _torch_threads(NUM_THREADS):
        if (run_dir / STATE_FILE).is_file():
            model = LlamaForCausalLM.from_pretrained(run_dir, dtype=torch.float32)
            optimizer = make_optimizer(model, spec)
            optimizer.load_state_dict(torch.load(run_dir / OPTIMIZER_FILE, weights_only=True))
            state = TrainState(**json.loads((run_dir / STATE_FILE).read_text()))
        else:
            model = preset.build(tokenizer)
            optimizer, state = make_optimizer(model, spec), TrainState()
        if state.step >= spec.max_steps:
            return run_dir
        model.train()
        levels, families = list(preset.levels), list(preset.families)
        while state.step < spec.max_steps:
            docs = [document(state.position + i, levels, families, preset.doc_chars, preset.seed)
                    for i in range(preset.batch_size)]
            lr = learning_rate(spec, state.step, state.step / spec.max_steps)
            loss = train_step(model, optimizer, encode_documents(tokenizer, docs), lr)
            state.step, state.position = state.step + 1, state.position + preset.batch_size
            state.losses.append(round(loss, 5))
            if progress and state.step % max(1, spec.max_steps // 20) == 0:
                print(f"[lab:{preset.name}] step {state.step}/{spec.max_steps} loss {loss:.4f}", flush=True)
            if state.step % spec.checkpoint_every == 0:
                save_checkpoint(run_dir, model, optimizer, tokenizer, state)
        save_checkpoint(run_dir, model, optimizer, tokenizer, state)
    return run_dir
