"""The PRM trainer on the training layer: config and CLI, skip when identical, resume after a kill to the same
weights, file:line data errors, and the saved PRM scoring as a `prm` verifier."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from reasonscale.cli import app
from reasonscale.config import ConfigError, TaskConfig
from reasonscale.data.prm_labels import save_examples
from reasonscale.tasks.lab import LabTask
from reasonscale.train import TRAINERS, load_train_config
from reasonscale.train.common import ADAPTER_DIR, INFO_FILE, PLOT_FILE
from reasonscale.types import Problem
from reasonscale.verifiers import build_verifier
from test_prm import toy_examples
from test_train_common import Killed, logged, make_config

PROBLEM = Problem("p", "a=2, b=a*3. Find b.", "6")


@pytest.fixture
def prm_data(tmp_path: Path) -> Path:
    return save_examples(toy_examples(), tmp_path / "prm.jsonl")


def prm_config(base: Path, data: Path, out: Path, **sections):
    sections.setdefault("optim", {})
    sections["optim"] = {"learning_rate": 5e-3, "max_steps": 6, "batch_size": 4, **sections["optim"]}
    sections["prm"] = {"rank_weight": 0.5, "device": "cpu", **sections.get("prm", {})}
    return make_config("prm", base, data, out, **sections)


class KillAt:
    def __init__(self, step: int):
        self.step = step

    def __call__(self, step: int, loss: float) -> None:
        if step >= self.step:
            raise Killed


def scores(path: Path) -> list[list[float]]:
    prm = build_verifier("prm", LabTask(TaskConfig(name="lab")), str(path))
    good, bad = toy_examples()[:2]
    return prm.score([PROBLEM, PROBLEM], [good.steps, bad.steps])


def test_cli_trains_a_prm_that_loads_as_a_verifier_and_skips_an_identical_run(
    tmp_path: Path, tiny_model_dir: Path, prm_data: Path
) -> None:
    out = tmp_path / "prm-model"
    path = tmp_path / "prm.yaml"
    path.write_text(f"model: {{path: {tiny_model_dir}}}\ndata: {{path: {prm_data}}}\noutput_dir: {out}\n"
                    "lora: {enabled: true, r: 4}\nprm: {mode: head, target: soft, rank_weight: 0.5}\n")
    overrides = ["--set", "optim.max_steps=12", "--set", "optim.batch_size=4", "--set", "optim.learning_rate=0.005",
                 "--set", "log.cpu_threads=1", "--set", "log.logging_steps=1", "--set", "prm.device=cpu"]
    result = CliRunner().invoke(app, ["train", "prm", str(path), *overrides, "--quiet"])
    assert result.exit_code == 0, result.output
    info = json.loads((out / INFO_FILE).read_text())
    assert info["method"] == "prm" and info["steps"] == 12 and info["settings"]["prm"]["device"] == "cpu"
    assert (out / ADAPTER_DIR / "adapter_config.json").is_file() and (out / PLOT_FILE).is_file()
    curve = [e["loss"] for e in logged(out)]
    assert len(curve) == 12 and sum(curve[-3:]) < sum(curve[:3])
    good, bad = scores(out)
    assert good[0] > bad[0] and good[1] > bad[1]
    assert scores(out) != scores(tiny_model_dir)  # the untrained base (a fresh head) scores otherwise
    weights = (out / "model.safetensors").stat().st_mtime_ns
    again = CliRunner().invoke(app, ["train", "prm", str(path), *overrides, "--quiet"])
    assert again.exit_code == 0 and "reused (identical run)" in again.output
    assert (out / "model.safetensors").stat().st_mtime_ns == weights
    cfg = load_train_config("prm", path, [o for o in overrides if o != "--set"] + ["prm.target=hard"])
    assert TRAINERS["prm"](cfg, progress=False).trained  # a changed setting is another run


def test_resume_after_a_kill_gives_the_same_weights(tmp_path: Path, tiny_model_dir: Path, prm_data: Path) -> None:
    settings = {"optim": {"batch_size": 3}, "log": {"save_steps": 3}}  # batches cross epochs: the order is resumed
    whole = TRAINERS["prm"](prm_config(tiny_model_dir, prm_data, tmp_path / "a", **settings), progress=False)
    cfg = prm_config(tiny_model_dir, prm_data, tmp_path / "b", **settings)
    with pytest.raises(Killed):
        TRAINERS["prm"](cfg, progress=False, on_step=KillAt(4))  # after step 3's checkpoint, mid-way to step 6
    assert not (tmp_path / "b").exists() and list(tmp_path.glob("b.work-*/checkpoints/step-3.pt"))
    resumed = TRAINERS["prm"](cfg, progress=False)
    a, b = load_file(whole.path / "model.safetensors"), load_file(resumed.path / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [e["loss"] for e in logged(whole.path)] == [e["loss"] for e in logged(resumed.path)]
    assert whole.info["final"] == resumed.info["final"] and resumed.info["steps"] == 6
    base = load_file(tiny_model_dir / "model.safetensors")
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(a[name], base[name])  # LoRA merged into the weights
    assert not list(tmp_path.glob("b.work-*"))


def test_token_mode_full_fine_tuning_saves_its_format(tmp_path: Path, tiny_model_dir: Path, prm_data: Path) -> None:
    cfg = prm_config(tiny_model_dir, prm_data, tmp_path / "tok", use_lora=False, optim={"learning_rate": 2e-3},
                     prm={"mode": "token", "step_tag": "+", "step_separator": " +\n"})
    result = TRAINERS["prm"](cfg, progress=False)
    saved = json.loads((result.path / "reasonscale_prm.json").read_text())
    assert saved["mode"] == "token" and saved["step_separator"] == " +\n" and saved["step_tag"] == "+"
    assert not (result.path / ADAPTER_DIR).exists()
    assert scores(result.path) != scores(tiny_model_dir)


def test_bad_data_and_config_are_one_clear_error(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = tmp_path / "d.jsonl"
    good = json.dumps({"problem_id": "p", "prompt": "q\n", "steps": ["a", "b"], "soft": [1.0, 0.0]})
    lines = {
        '{"problem_id": "p", "prompt": "q\\n", "steps": ["a"], "soft": [1.0, 0.5]}': "1 steps but 2 'soft' labels",
        '{"problem_id": "p", "prompt": "q\\n", "steps": "a", "soft": [1.0]}': "'steps' is missing or not a list",
        '{"problem_id": "p", "prompt": "q\\n", "steps": ["a"], "hard": [1.0]}': "'soft' .prm.target. is missing",
        '{"prompt": "q\\n", "steps": ["a"], "soft": [1.0]}': "'problem_id' is missing",
    }
    for line, message in lines.items():
        data.write_text(f"{good}\n\n{line}\n")
        with pytest.raises(ValueError, match=rf"d\.jsonl:3: .*{message}"):
            TRAINERS["prm"](prm_config(tiny_model_dir, data, tmp_path / "o"), progress=False)
    assert not (tmp_path / "o").exists()
    path = tmp_path / "c.yaml"
    path.write_text(f"model: {{path: {tiny_model_dir}}}\ndata: {{path: {data}}}\noutput_dir: o\n")
    with pytest.raises(ConfigError, match="step_tag 'x' is not in step_separator"):
        load_train_config("prm", path, ["prm.step_tag=x", "prm.step_separator=;"])
    with pytest.raises(ConfigError, match="lora.merge"):
        load_train_config("prm", path, ["lora.merge=false"])
    with pytest.raises(ConfigError, match="unknown key 'prm'"):  # a PRM section in an SFT config
        load_train_config("sft", path, ["prm.mode=head"])
