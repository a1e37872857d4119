"""The strong model of the lab weak-to-strong experiment: a larger tiny Llama pretrained on documents of related
task families (`lab.families`: other layouts), never on the target task's solutions.

The weak model is an ordinary lab preset (trained on the target's gold solutions). The strong one learns the same
computations written in other layouts, from single problems (the skill: a gold-label fine-tune shows it, the
ceiling) and from documents of several solved problems in one layout (so it can follow demonstrations), but does
not write the target's steps by itself.
Its pretraining follows the lab presets' conventions and reuses `lab.train`'s pieces (state, schedule, optimizer,
step, checkpoint): it is defined by its steps, a wall-time budget only caps one call (a run it stops is saved and
`TrainingIncomplete` raised), a resumed run ends with the same weights, and `trainer_state.json` records the steps,
tokens and parameters. Only the batches differ: documents and single problems in random layouts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import LlamaForCausalLM, PreTrainedTokenizerBase

from reasonscale.identity import digest
from reasonscale.lab.families import LAYOUT_SPACE, document
from reasonscale.lab.model import ModelSpec, Preset, TrainSpec
from reasonscale.lab.train import IGNORE_INDEX, Batch, NextBatch, cache_root, train


@dataclass(frozen=True)
class LongModelSpec(ModelSpec):
    """A lab model with a longer context: documents and few-shot prompts are longer than single problems."""

    max_positions: int = 1024

    def build(self, tokenizer: PreTrainedTokenizerBase, seed: int) -> LlamaForCausalLM:
        """As `ModelSpec.build` (same seed, same weights), with `max_positions` as the context length; rotary
        positions have no weights, so the length is only the config's bound."""
        model = super().build(tokenizer, seed)
        model.config.max_position_embeddings = self.max_positions
        return model


@dataclass(frozen=True)
class StrongPreset:
    """Model size and pretraining of the strong model; every field decides its weights."""

    name: str = "w2s-strong"
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    mlp_size: int = 512
    max_positions: int = 1024
    steps: int = 2000
    batch_size: int = 4  # documents per step
    singles: int = 12  # single solved problems per step (each in its own random layout)
    lr: float = 2e-3
    warmup_steps: int = 100
    levels: tuple[int, ...] = (1, 2, 3, 4, 5)
    doc_chars: int = 800
    seed: int = 0

    def preset(self) -> Preset:
        """The model and training settings as a lab `Preset` (what `lab.train` checkpoints and schedules)."""
        model = LongModelSpec(self.hidden_size, self.layers, self.heads, self.mlp_size, self.max_positions)
        weights = {level: 1.0 for level in self.levels}
        spec = TrainSpec(self.steps, self.batch_size, self.lr, weights, warmup_steps=self.warmup_steps, seed=self.seed)
        return Preset(self.name, model, spec)

    def fingerprint(self) -> str:
        """A short hash of the preset's (model, every training setting, level specs, text format) and of what the
        documents are drawn from (levels in order: the draws pick from them by index; length; the layout space)."""
        documents = {key: value for key, value in asdict(self).items() if key in ("levels", "doc_chars", "singles")}
        documents["layouts"] = LAYOUT_SPACE
        return digest({"preset": self.preset().fingerprint(), "documents": documents}, length=12)

    def documents(self, position: int) -> list[list[tuple[str, str]]]:
        """The batch at stream `position`: documents `position`, `position + 1`, ..., then as many single problems
        (a pure function: a resumed run sees the same)."""
        levels = list(self.levels)
        docs = [document(position + i, levels, self.doc_chars, self.seed) for i in range(self.batch_size)]
        return docs + [document(position + i, levels, 1, self.seed, "single") for i in range(self.singles)]

    @property
    def rows(self) -> int:
        """Sequences per step: documents and single problems."""
        return self.batch_size + self.singles


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


def train_strong(
    preset: StrongPreset, budget_s: float | None = None, progress: bool = True, run_dir: Path | None = None
) -> Path:
    """The fully pretrained strong model's directory (default: in the lab cache under the preset's fingerprint),
    training or resuming it first if needed.

    `budget_s` caps this call's training seconds (default: none); if it runs out first, the run is saved and
    `TrainingIncomplete` is raised. A finished run is reused.
    """
    run_dir = Path(run_dir or strong_dir(preset))
    return train(run_dir, preset.preset(), budget_s, progress, next_batch=_document_batches(preset))


def _document_batches(strong: StrongPreset) -> NextBatch:
    """Batches of pretraining documents and single problems, padded apart (a single problem padded to a document's
    length would cost as much as the document); the position counts sequences read."""

    def next_batch(tokenizer: PreTrainedTokenizerBase, position: int) -> tuple[Batch, int]:
        batch = strong.documents(position)
        docs, singles = batch[: strong.batch_size], batch[strong.batch_size :]
        parts = [encode_documents(tokenizer, part) for part in (docs, singles) if part]
        return parts, position + strong.rows

    return next_batch
