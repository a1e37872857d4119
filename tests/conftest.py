"""Shared test fixtures: a tiny random Llama over the lab's character tokenizer, saved in Hugging Face format."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from reasonscale.engines.hf import HFEngine
from reasonscale.lab.tokenizer import build_char_tokenizer
from reasonscale.serve import BackgroundServer, create_app

# A plain "role: content" chat template, so chat code paths can be tested on the tiny model.
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def build_tiny_model(directory: Path, seed: int = 0) -> Path:
    """Save a 2-layer, 64-wide random Llama and its character tokenizer to `directory` (deterministic in `seed`)."""
    tokenizer = build_char_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a tiny random Llama (model + tokenizer), built once per test session."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> HFEngine:
    """The hf engine over the tiny model, one per test module."""
    return HFEngine(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="module")
def server(engine: HFEngine):
    """`reasonscale serve` over `engine` on a free loopback port, for the module's tests."""
    with BackgroundServer(create_app(engine, "tiny", fault_rate=0.0)) as running:
        yield running
