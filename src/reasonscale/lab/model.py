"""Lab model presets: the size of a tiny Llama and the settings that train it from scratch."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from reasonscale.lab.generator import LEVELS

MAX_SEQ_LEN = 512  # lab prompt + solution, in characters, stays well under this
FORMAT = 3  # bump when problem or solution text changes, so cached models are retrained


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only Llama: width, depth, heads and MLP width."""

    hidden_size: int
    layers: int
    heads: int
    mlp_size: int

    def build(self, tokenizer: PreTrainedTokenizerBase, seed: int) -> LlamaForCausalLM:
        """A freshly initialised model (same seed, same weights)."""
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=self.hidden_size,
            intermediate_size=self.mlp_size,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            num_key_value_heads=self.heads,
            max_position_embeddings=MAX_SEQ_LEN,
            tie_word_embeddings=True,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


@dataclass(frozen=True)
class TrainSpec:
    """How a preset is trained: all of it is the preset's identity, save how often a checkpoint is written."""

    max_steps: int
    batch_size: int
    lr: float
    level_weights: dict[int, float]
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1  # the cosine ends at lr * min_lr_ratio (1.0: constant after warm-up)
    weight_decay: float = 0.1
    checkpoint_every: int = 250
    seed: int = 0


@dataclass(frozen=True)
class Preset:
    """A named recipe: a model size and how to train it."""

    name: str
    model: ModelSpec
    train: TrainSpec = field(repr=False)

    def fingerprint(self) -> str:
        """A short hash of everything that determines the trained weights."""
        levels = {level: asdict(spec) for level, spec in LEVELS.items()}
        settings = {"model": asdict(self.model), "train": asdict(self.train), "levels": levels, "format": FORMAT}
        del settings["train"]["checkpoint_every"]
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


MIX = {1: 0.15, 2: 0.2, 3: 0.25, 4: 0.2, 5: 0.2}  # training problems per level

PRESETS: dict[str, Preset] = {
    "weak": Preset(
        "weak",
        ModelSpec(hidden_size=64, layers=2, heads=2, mlp_size=256),
        TrainSpec(max_steps=2000, batch_size=16, lr=5e-3, level_weights=MIX),
    ),
    "strong": Preset(
        "strong",
        ModelSpec(hidden_size=64, layers=4, heads=2, mlp_size=256),
        TrainSpec(max_steps=4000, batch_size=16, lr=5e-3, level_weights=MIX),
    ),
}
PRESETS["default"] = PRESETS["strong"]


def _family_member(name: str, hidden: int, layers: int, heads: int, lr: float) -> Preset:
    spec = TrainSpec(max_steps=4000, batch_size=16, lr=lr, level_weights=MIX)
    return Preset(name, ModelSpec(hidden_size=hidden, layers=layers, heads=heads, mlp_size=4 * hidden), spec)


# A family of increasing size on the same training stream (same steps, batch, mix and seed: the same D tokens), for
# the pretraining vs test-time FLOPs exchange (Snell et al. 2024, section 7): 74k, 131k, 443k and 1.05M
# non-embedding parameters, 14x as in the paper. Learning rates shrink with width (ours, not yet tuned).
for _preset in (
    _family_member("family-1", 48, 2, 2, 5e-3),
    _family_member("family-2", 64, 2, 2, 5e-3),
    _family_member("family-3", 96, 3, 3, 3e-3),
    _family_member("family-4", 128, 4, 4, 2e-3),
):
    PRESETS[_preset.name] = _preset


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown lab preset '{name}': use one of {', '.join(PRESETS)}")
    return PRESETS[name]
