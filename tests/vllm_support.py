"""Shared by the tests that run vLLM for real (on its CPU build, in the second environment: scripts/vllm_env.sh).

vLLM's CPU attention kernels take head widths of 64 and up, and the lab presets use 32, so the tests train their
own small lab model with heads 64 wide: 100 steps, enough to write lab-style steps (one per line, a blank line at
the end), so step-wise search has real steps to work on. It is trained once and kept in the lab model cache.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from reasonscale.engines.vllm import vllm_unavailable_reason

UNAVAILABLE = vllm_unavailable_reason()
needs_vllm = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"{UNAVAILABLE}; see docs/engines.md")

# What a CPU machine needs to run vLLM in tests: a 1 GB KV cache (the default wants far more), no phoning home,
# no hub, and the engine in this process (start-up in seconds instead of a minute).
CPU_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "HF_HUB_OFFLINE": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
}
if UNAVAILABLE is None:  # set before any vLLM engine starts; without vLLM, nothing changes
    for _name, _value in CPU_ENV.items():
        os.environ.setdefault(_name, _value)


MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def vllm_lab_model(directory: Path) -> Path:
    """A small lab model (fp32, 2 layers, 128 wide, 2 heads of 64) trained for 100 steps (kept in the lab cache),
    its model and tokenizer files copied to `directory`."""
    from reasonscale.lab.model import MIX, ModelSpec, Preset, TrainSpec
    from reasonscale.lab.train import preset_dir, train

    preset = Preset(
        "vllm-test",
        ModelSpec(hidden_size=128, layers=2, heads=2, mlp_size=256),
        TrainSpec(max_steps=100, batch_size=16, lr=5e-3, level_weights=MIX, warmup_steps=20),
    )
    trained = train(preset_dir(preset), preset, progress=False)
    directory.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        shutil.copy(trained / name, directory / name)
    return directory


def lab_problems(levels: tuple[int, ...] = (3,), per_level: int = 3):
    """The lab task, its test problems at `levels` and their prompts."""
    from reasonscale.config import LabTaskConfig, TaskConfig
    from reasonscale.tasks.lab import LabTask

    task = LabTask(TaskConfig(name="lab", lab=LabTaskConfig(levels=list(levels), per_level=per_level)))
    problems = task.load()
    return task, problems, [task.format_prompt(p) for p in problems]


def lab_prompts(levels: list[int], per_level: int) -> list[str]:
    return lab_problems(tuple(levels), per_level)[2]
