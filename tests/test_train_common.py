"""The training layer's shared behaviour: config and data errors, skip when identical, never overwrite a finished
model with a failed run, resume after a kill with the same weights, the CLI. Helpers here serve the other
test_train_* files."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback
from typer.testing import CliRunner

from reasonscale.cli import app
from reasonscale.config import ConfigError
from reasonscale.train import CONFIGS, TRAINERS, load_train_config
from reasonscale.train.common import INFO_FILE
from reasonscale.train.data import pairs_from_labels, write_jsonl


def make_config(method: str, base: Path, data_file: Path, out: Path, use_lora: bool = True, **sections: dict[str, Any]):
    """A small, fast config: few steps, a log entry per step."""
    raw: dict[str, Any] = {
        "model": {"path": str(base)},
        "data": {"path": str(data_file)},
        "lora": {"enabled": use_lora},
        "optim": {"learning_rate": 1e-2 if use_lora else 2e-3, "max_steps": 4, "batch_size": 4},
        "log": {"logging_steps": 1, "cpu_threads": 1},
        "output_dir": str(out),
    }
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return CONFIGS[method].model_validate(raw)


def sft_rows(count: int = 8) -> list[dict[str, str]]:
    return [{"prompt": f"{a}+{b}=", "completion": str(a + b)} for a, b in zip(range(count), range(3, 3 + count))]


def preference_rows(count: int, seed: int) -> list[dict[str, str]]:
    """A separable toy set: random prompts, always `yes` over `no`."""
    rng = random.Random(seed)
    prompts = ["".join(rng.choice("abcdefgh") for _ in range(6)) + ":" for _ in range(count)]
    return [{"prompt": p, "chosen": "yes", "rejected": "no"} for p in prompts]


class Snapshot(TrainerCallback):
    """Trainable parameters at the start and the end of training."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.after = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def unchanged(self) -> list[str]:
        return [n for n, p in self.before.items() if torch.equal(p, self.after[n])]


class Killed(Exception):
    pass


class KillAfterSave(TrainerCallback):
    """Stops the run abruptly right after the checkpoint of step `step` is written."""

    def __init__(self, step: int):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            raise Killed


def logged(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (path / "loss.jsonl").read_text().splitlines()]


@pytest.fixture
def sft_data(tmp_path: Path) -> Path:
    return write_jsonl(sft_rows(), tmp_path / "sft.jsonl")


def test_unknown_key_is_an_error_naming_it(tmp_path: Path, tiny_model_dir: Path, sft_data: Path) -> None:
    path = tmp_path / "c.yaml"
    text = f"model: {{path: {tiny_model_dir}}}\ndata: {{path: {sft_data}}}\noutput_dir: o\n"
    path.write_text(text + "optim: {lerning_rate: 1}\n")
    with pytest.raises(ConfigError, match="optim.lerning_rate.*did you mean 'learning_rate'"):
        load_train_config("sft", path)
    with pytest.raises(ConfigError, match="unknown key 'dpo'"):  # a DPO section in an SFT config
        load_train_config("sft", path, ["optim.lerning_rate=null", "dpo.beta=1"])


def test_bad_data_and_base_are_one_clear_error(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "a", "completion": "b"}\n\n{"prompt": "c"}\n')
    cfg = make_config("sft", tiny_model_dir, data, tmp_path / "o")
    with pytest.raises(ValueError, match=r"d\.jsonl:3: missing field 'completion'"):
        TRAINERS["sft"](cfg, progress=False)
    data.write_text("\n")
    with pytest.raises(ValueError, match="no training examples"):
        TRAINERS["sft"](cfg, progress=False)
    renamed = make_config("sft", tiny_model_dir, data, tmp_path / "o", data={"fields": {"completion": "answer"}})
    data.write_text('{"prompt": "a", "completion": "b"}\n')
    with pytest.raises(ValueError, match=r"d\.jsonl:1: missing field 'answer'"):
        TRAINERS["sft"](renamed, progress=False)
    with pytest.raises(FileNotFoundError, match="model: .*does-not-exist"):
        TRAINERS["sft"](make_config("sft", tmp_path / "does-not-exist", data, tmp_path / "o"), progress=False)
    absent = make_config("sft", tiny_model_dir, data, tmp_path / "o", lora={"target_modules": ["q_proj", "qkv"]})
    with pytest.raises(ValueError, match="target_modules: qkv not in LlamaForCausalLM.*q_proj"):
        TRAINERS["sft"](absent, progress=False)
    assert not (tmp_path / "o").exists()
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds something other than a trained model"):
        TRAINERS["sft"](make_config("sft", tiny_model_dir, data, tmp_path / "o"), progress=False)
    assert (tmp_path / "o" / "notes.txt").read_text() == "mine"


def test_identical_run_is_skipped_and_a_failed_run_keeps_the_finished_model(
    tmp_path: Path, tiny_model_dir: Path, sft_data: Path
) -> None:
    out = tmp_path / "model"
    first = TRAINERS["sft"](make_config("sft", tiny_model_dir, sft_data, out, optim={"max_steps": 2}), progress=False)
    assert first.trained and first.info["steps"] == 2
    weights = (out / "model.safetensors").stat().st_mtime_ns
    again = TRAINERS["sft"](make_config("sft", tiny_model_dir, sft_data, out, optim={"max_steps": 2}), progress=False)
    assert not again.trained and again.info["key"] == first.info["key"]
    moved = shutil.copytree(tiny_model_dir, tmp_path / "elsewhere" / tiny_model_dir.name)  # same model: same run
    assert not TRAINERS["sft"](make_config("sft", moved, sft_data, out, optim={"max_steps": 2}), progress=False).trained
    assert (out / "model.safetensors").stat().st_mtime_ns == weights
    changed = make_config("sft", tiny_model_dir, sft_data, out, optim={"max_steps": 4}, log={"save_steps": 1})
    with pytest.raises(Killed):
        TRAINERS["sft"](changed, progress=False, callbacks=[KillAfterSave(1)])
    assert json.loads((out / INFO_FILE).read_text())["key"] == first.info["key"]  # untouched
    assert (out / "model.safetensors").stat().st_mtime_ns == weights
    done = TRAINERS["sft"](changed, progress=False)  # resumes, then replaces the old model
    assert done.trained and done.info["key"] != first.info["key"] and done.info["steps"] == 4
    assert not list(tmp_path.glob("model.work-*")) and not (tmp_path / "model.old").exists()


def test_resume_after_a_kill_gives_the_same_weights(tmp_path: Path, tiny_model_dir: Path, sft_data: Path) -> None:
    settings = {"optim": {"max_steps": 6, "batch_size": 2}, "log": {"save_steps": 3}}
    whole = TRAINERS["sft"](make_config("sft", tiny_model_dir, sft_data, tmp_path / "a", **settings), progress=False)
    cfg = make_config("sft", tiny_model_dir, sft_data, tmp_path / "b", **settings)
    with pytest.raises(Killed):
        TRAINERS["sft"](cfg, progress=False, callbacks=[KillAfterSave(3)])
    assert not (tmp_path / "b").exists()
    resumed = TRAINERS["sft"](cfg, progress=False)
    a, b = load_file(whole.path / "model.safetensors"), load_file(resumed.path / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    curve = [(e["step"], e["loss"]) for e in logged(whole.path)]
    assert curve == [(e["step"], e["loss"]) for e in logged(resumed.path)] and len(curve) == 6
    assert whole.info["final"] == resumed.info["final"]
    base = load_file(tiny_model_dir / "model.safetensors")
    assert not torch.equal(a["model.layers.0.self_attn.q_proj.weight"], base["model.layers.0.self_attn.q_proj.weight"])


def test_pairs_from_labels() -> None:
    rows = [
        {"prompt": "p", "response": "r1", "label": 1},
        {"prompt": "p", "response": "r2", "label": 0},
        {"prompt": "p", "response": "r3", "label": True},
        {"prompt": "q", "response": "r4", "label": 1},  # no bad response: no pair
    ]
    assert pairs_from_labels(rows) == [
        {"prompt": "p", "chosen": "r1", "rejected": "r2"},
        {"prompt": "p", "chosen": "r3", "rejected": "r2"},
    ]
    with pytest.raises(ValueError, match="no prompt with both"):
        pairs_from_labels(rows[3:])


def test_cli_trains_and_reports_bad_input(tmp_path: Path, tiny_model_dir: Path, sft_data: Path) -> None:
    path = tmp_path / "c.yaml"
    out = tmp_path / "cli-model"
    path.write_text(f"model: {{path: {tiny_model_dir}}}\ndata: {{path: {sft_data}}}\noutput_dir: {out}\n")
    runner = CliRunner()
    overrides = ["--set", "optim.max_steps=1", "--set", "log.cpu_threads=1"]
    result = runner.invoke(app, ["train", "sft", str(path), *overrides, "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / INFO_FILE).read_text())["settings"]["optim"]["max_steps"] == 1
    result = runner.invoke(app, ["train", "dpo", str(path), "--quiet"])  # SFT data has no chosen/rejected
    assert result.exit_code == 2 and "missing field 'chosen'" in result.output
