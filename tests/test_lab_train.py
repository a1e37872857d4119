"""Lab model training: the loss falls, every parameter moves, a budget-stopped run is incomplete and resumes to the
same weights, presets are cached by settings, and models round-trip through HF."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from transformers import AutoTokenizer

from reasonscale.engines.hf import HFEngine
from reasonscale.identity import model_identity
from reasonscale.lab import model as lab_model
from reasonscale.lab import train as lab_train
from reasonscale.lab.graph import Graph
from reasonscale.lab.model import ModelSpec, Preset, TrainSpec
from reasonscale.lab.splits import TrainStream, load_problems
from reasonscale.lab.tokenizer import build_char_tokenizer
from reasonscale.lab.train import (
    STATE_FILE,
    TrainingIncomplete,
    TrainState,
    encode_batch,
    learning_rate,
    load_checkpoint,
    preset_dir,
    save_checkpoint,
    train,
    train_preset,
)
from reasonscale.types import SamplingParams

TINY = Preset(
    "tiny",
    ModelSpec(hidden_size=32, layers=2, heads=2, mlp_size=64),
    TrainSpec(max_steps=10, batch_size=8, lr=1e-2, level_weights={1: 1.0, 2: 1.0}, warmup_steps=2),
)


def state_of(run_dir) -> dict:
    return json.loads((run_dir / STATE_FILE).read_text())


def weights(run_dir) -> dict[str, torch.Tensor]:
    model, _, _ = load_checkpoint(run_dir, TINY, build_char_tokenizer())
    return dict(model.named_parameters())


def test_training_lowers_the_loss_and_moves_every_parameter(tmp_path):
    run_dir = train(tmp_path / "run", TINY, progress=False)
    losses = state_of(run_dir)["losses"]
    assert len(losses) == 10
    assert sum(losses[-3:]) / 3 < losses[0] - 0.5
    initial = dict(TINY.model.build(build_char_tokenizer(), TINY.train.seed).named_parameters())
    for name, param in weights(run_dir).items():
        assert not torch.equal(param, initial[name]), name


class FakeClock:
    """A perf_counter that advances one second per reading."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_a_run_stopped_by_its_budget_is_incomplete_and_resumes_to_the_same_weights(tmp_path, monkeypatch):
    spec = replace(TINY, train=replace(TINY.train, max_steps=6, checkpoint_every=4))
    monkeypatch.setattr(lab_train.time, "perf_counter", FakeClock())
    with pytest.raises(TrainingIncomplete, match=r"step \d of 6") as stopped:
        train(tmp_path / "resumed", spec, budget_s=3.0, progress=False)  # a step takes 2+ "seconds"
    assert 0 < stopped.value.step < 4 and stopped.value.max_steps == 6  # stopped before the first checkpoint
    partial = state_of(tmp_path / "resumed")
    assert (partial["step"], partial["complete"], partial["max_steps"]) == (stopped.value.step, False, 6)
    train(tmp_path / "resumed", spec, progress=False)
    train(tmp_path / "straight", spec, progress=False)
    resumed, straight = state_of(tmp_path / "resumed"), state_of(tmp_path / "straight")
    assert (resumed["step"], resumed["position"], resumed["complete"]) == (6, 6, True)
    for key in ("step", "position", "tokens", "padded_tokens", "losses", "parameters"):
        assert resumed[key] == straight[key], key
    for (name, a), b in zip(weights(tmp_path / "resumed").items(), weights(tmp_path / "straight").values()):
        assert torch.equal(a, b), name


def test_the_state_records_tokens_and_parameters(tmp_path):
    spec = replace(TINY, train=replace(TINY.train, max_steps=3))
    state = state_of(train(tmp_path / "run", spec, progress=False))
    stream = TrainStream(spec.train.level_weights, spec.train.batch_size, spec.train.seed)
    batches = [encode_batch(build_char_tokenizer(), next(stream)) for _ in range(3)]
    assert state["tokens"] == sum(int(b["attention_mask"].sum()) for b in batches) < state["padded_tokens"]
    assert state["padded_tokens"] == sum(b["input_ids"].numel() for b in batches)
    assert state["parameters"] == sum(p.numel() for p in weights(tmp_path / "run").values())


def test_an_incomplete_preset_is_never_handed_out(tmp_path, monkeypatch):
    monkeypatch.setenv("REASONSCALE_CACHE", str(tmp_path))
    monkeypatch.setitem(lab_model.PRESETS, "tiny", TINY)
    with pytest.raises(TrainingIncomplete, match="run the same command again"):
        train_preset("tiny", budget_s=0.0, progress=False)
    assert state_of(preset_dir(TINY))["complete"] is False
    with pytest.raises(TrainingIncomplete):
        train_preset("tiny", budget_s=0.0, progress=False)
    assert state_of(train_preset("tiny", progress=False))["step"] == TINY.train.max_steps
    assert not (tmp_path / "lab" / f"{preset_dir(TINY).name}.tmp").exists()


def test_presets_are_cached_by_settings(tmp_path, monkeypatch):
    tmp_path = tmp_path / ".cache"  # like the default ~/.cache/reasonscale
    monkeypatch.setenv("REASONSCALE_CACHE", str(tmp_path))
    monkeypatch.setitem(lab_model.PRESETS, "tiny", TINY)
    run_dir = train_preset("tiny", progress=False)
    assert run_dir == tmp_path / "lab" / f"tiny-{TINY.fingerprint()}" == preset_dir(TINY)
    stamp = (run_dir / "model.safetensors").stat().st_mtime_ns
    assert train_preset("tiny", budget_s=0.0, progress=False) == run_dir  # complete: no budget needed
    assert (run_dir / "model.safetensors").stat().st_mtime_ns == stamp
    assert model_identity(str(run_dir)).startswith(run_dir.name + "@")
    assert replace(TINY, train=replace(TINY.train, checkpoint_every=1)).fingerprint() == TINY.fingerprint()
    assert replace(TINY, train=replace(TINY.train, lr=1.0)).fingerprint() != TINY.fingerprint()
    assert replace(TINY, train=replace(TINY.train, max_steps=11)).fingerprint() != TINY.fingerprint()
    with pytest.raises(ValueError, match="unknown lab preset"):
        train_preset("huge")


def test_save_and_load_round_trip_through_the_hf_engine(tmp_path):
    tokenizer = build_char_tokenizer()
    model = TINY.model.build(tokenizer, seed=3)
    optimizer = torch.optim.AdamW(model.parameters())
    save_checkpoint(tmp_path / "model", model, optimizer, tokenizer, TrainState(max_steps=0))
    prompts = [p.question + "\n" for p in load_problems("test", [1, 5], 2)]
    params = SamplingParams(max_tokens=24)
    in_memory = HFEngine("in-memory", device="cpu", model=model, tokenizer=tokenizer).generate(prompts, params)
    loaded = HFEngine(str(tmp_path / "model"), device="cpu").generate(prompts, params)
    assert [c[0].text for c in loaded] == [c[0].text for c in in_memory]
    assert AutoTokenizer.from_pretrained(tmp_path / "model")(prompts)["input_ids"] == tokenizer(prompts)["input_ids"]


def test_batches_label_only_the_solution():
    tokenizer = build_char_tokenizer()
    problems = load_problems("test", [1, 3], 1)
    graphs = [Graph.from_question(p.question) for p in problems]
    batch = encode_batch(tokenizer, graphs)
    for row, graph in enumerate(graphs):
        labels = [t for t in batch["labels"][row].tolist() if t != -100]
        assert tokenizer.decode(labels) == graph.solution + tokenizer.eos_token
        assert int(batch["attention_mask"][row].sum()) == len(graph.question) + len(graph.solution) + 3


def test_learning_rate_warms_up_then_anneals_by_step():
    spec = TINY.train
    assert learning_rate(spec, 0) == pytest.approx(spec.lr / 2)
    assert learning_rate(spec, 2) > learning_rate(spec, 5) > learning_rate(spec, 8)
    assert learning_rate(spec, 5) == pytest.approx(spec.lr * (spec.min_lr_ratio + (1 - spec.min_lr_ratio) / 2))
    assert learning_rate(spec, spec.max_steps) == pytest.approx(spec.lr * spec.min_lr_ratio)
