"""The lab weak-to-strong design: related families compute the target's values in other layouts that the lab task
cannot read as answers, documents, the strong model's pretraining (resumable, reused), the lab config, the CLI."""

from __future__ import annotations

import json
import random
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM
from typer.testing import CliRunner

from reasonscale.cli import app
from reasonscale.config import TaskConfig
from reasonscale.config_loading import load_config
from reasonscale.lab.families import SEPARATORS, TARGET, Layout, document, is_family, random_layout
from reasonscale.lab.splits import held_out_questions, split_graphs
from reasonscale.lab.tokenizer import build_char_tokenizer
from reasonscale.lab import train as lab_train
from reasonscale.lab.train import STATE_FILE, TrainingIncomplete
from reasonscale.lab.w2s_presets import StrongPreset, encode_documents, strong_dir, train_strong
from reasonscale.pipelines.lab_w2s import LabW2SConfig, w2s_config
from reasonscale.tasks.lab import LabTask

EXAMPLE = Path(__file__).parent.parent / "examples" / "lab_w2s.yaml"


def test_the_target_layout_writes_the_lab_solution() -> None:
    for level in (1, 3, 5):
        for graph in split_graphs("train", level, 5):
            assert TARGET.solve(graph) == graph.solution
    assert not is_family(TARGET) and is_family(Layout(("=", "=", ": ")))


def test_a_family_computes_the_target_values_in_other_steps_with_the_same_answer_line() -> None:
    task = LabTask(TaskConfig(name="lab"))
    rng = random.Random(0)
    layouts = [random_layout(rng) for _ in range(200)]
    assert all(is_family(layout) for layout in layouts) and len(set(layouts)) > 150
    assert {sep for layout in layouts for sep in layout.steps} == set(SEPARATORS)
    for layout in layouts[:20]:
        for level in (1, 3, 5):
            for graph in split_graphs("train", level, 3):
                text = layout.solve(graph)
                assert task.extract_answer(text) == str(graph.answer) and text != graph.solution
                target_lines = graph.solution.splitlines()
                lines = text.splitlines()
                assert len(lines) == len(target_lines)
                for mine, theirs in zip(lines[:-1], target_lines[:-1]):  # the same parts, other separators
                    assert re.split(r"=| = |: | -> |, | is |; | := ", mine) == theirs.split("=")
                assert lines[-1] == target_lines[-1]


def test_strict_format_reads_answers_after_target_steps_only() -> None:
    strict = LabTask(TaskConfig(name="lab", lab={"strict_format": True}))
    loose = LabTask(TaskConfig(name="lab"))
    graph = split_graphs("train", 3, 1)[0]
    family = random_layout(random.Random(1)).solve(graph)
    assert strict.extract_answer(graph.solution) == loose.extract_answer(graph.solution) == str(graph.answer)
    assert loose.extract_answer(family) == str(graph.answer) and strict.extract_answer(family) is None
    assert strict.extract_answer(graph.solution + "\nnot a step") == str(graph.answer)  # only lines before it count


def test_documents_are_one_layout_fit_and_avoid_evaluation_problems() -> None:
    held_out = held_out_questions()
    layouts = set()
    for index in range(20):
        doc = document(index, [1, 2, 3], 600)
        assert doc == document(index, [1, 2, 3], 600) and doc != document(index, [1, 2, 3], 600, seed=1)
        assert sum(len(q) + len(s) + 3 for q, s in doc) <= 600 or len(doc) == 1
        assert all(q not in held_out for q, _ in doc) and len(doc) >= 2
        steps = {re.sub(r"[a-z0-9+\-*/]+", "", line) for _, s in doc for line in s.splitlines()[:-1]}
        assert len(steps) <= 2  # one layout: steps with and without operand values
        layouts |= steps
    assert len(layouts) > 20
    single = document(0, [1, 2, 3], 1, kind="single")
    assert len(single) == 1 and single != document(0, [1, 2, 3], 1)[:1]


def test_documents_train_on_solutions_and_their_ends_only() -> None:
    tokenizer = build_char_tokenizer()
    docs = [[("a=1+2. Find a.", "a: 1+2 -> 3\nresult: 3"), ("b=2*2. Find b.", "b: 2*2 -> 4\nresult: 4")]]
    batch = encode_documents(tokenizer, docs)
    labelled = [t for t, lab in zip(batch["input_ids"][0].tolist(), batch["labels"][0].tolist()) if lab != -100]
    assert tokenizer.decode(labelled) == "a: 1+2 -> 3\nresult: 3\n\nb: 2*2 -> 4\nresult: 4" + tokenizer.eos_token
    assert tokenizer.decode(batch["input_ids"][0]).startswith(tokenizer.bos_token + "a=1+2. Find a.\n")


TINY_STRONG = StrongPreset(hidden_size=16, layers=1, heads=2, mlp_size=32, steps=3, batch_size=2, singles=1,
                           doc_chars=200)


def state_of(run_dir: Path) -> dict:
    return json.loads((run_dir / STATE_FILE).read_text())


def test_strong_pretraining_records_its_steps_and_tokens_and_is_reused(tmp_path: Path) -> None:
    path = train_strong(TINY_STRONG, progress=False, run_dir=tmp_path / "strong")
    state = state_of(path)
    assert (state["step"], state["max_steps"], state["complete"], state["position"]) == (3, 3, True, 9)
    assert [len(doc) for doc in TINY_STRONG.documents(0)][2:] == [1]  # two documents, then one single problem
    tokenizer = build_char_tokenizer()
    parts = [encode_documents(tokenizer, docs) for p in (0, 3, 6) for docs in (TINY_STRONG.documents(p)[:2],
                                                                              TINY_STRONG.documents(p)[2:])]
    assert state["tokens"] == sum(int(b["attention_mask"].sum()) for b in parts) < state["padded_tokens"]
    assert state["padded_tokens"] == sum(b["input_ids"].numel() for b in parts)  # documents and singles padded apart
    model = LlamaForCausalLM.from_pretrained(path)
    assert state["parameters"] == model.num_parameters() and model.config.max_position_embeddings == 1024
    before = (path / "model.safetensors").stat().st_mtime_ns
    assert train_strong(TINY_STRONG, budget_s=0.0, progress=False, run_dir=path) == path  # complete: no budget
    assert (path / "model.safetensors").stat().st_mtime_ns == before  # finished: nothing trained again


class FakeClock:
    """A perf_counter that advances one second per reading."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_a_budget_stopped_strong_run_is_incomplete_and_resumes_to_the_same_weights(tmp_path, monkeypatch) -> None:
    preset = replace(TINY_STRONG, steps=4)
    monkeypatch.setattr(lab_train.time, "perf_counter", FakeClock())
    with pytest.raises(TrainingIncomplete, match=r"step 2 of 4") as stopped:
        train_strong(preset, budget_s=2.0, progress=False, run_dir=tmp_path / "resumed")  # a step takes 1 "second"
    assert state_of(stopped.value.run_dir)["complete"] is False
    train_strong(preset, progress=False, run_dir=tmp_path / "resumed")
    train_strong(preset, progress=False, run_dir=tmp_path / "straight")
    resumed, straight = state_of(tmp_path / "resumed"), state_of(tmp_path / "straight")
    for key in ("step", "position", "tokens", "padded_tokens", "losses", "parameters", "complete"):
        assert resumed[key] == straight[key], key
    a = LlamaForCausalLM.from_pretrained(tmp_path / "resumed").state_dict()
    b = LlamaForCausalLM.from_pretrained(tmp_path / "straight").state_dict()
    assert all(torch.equal(a[name], b[name]) for name in b)


def test_the_strong_fingerprint_covers_every_setting() -> None:
    variants = [StrongPreset(), StrongPreset(steps=4), StrongPreset(max_positions=2048),
                StrongPreset(levels=(5, 4, 3, 2, 1)),
                StrongPreset(doc_chars=900), StrongPreset(singles=4), StrongPreset(warmup_steps=50),
                StrongPreset(seed=1)]
    assert len({p.fingerprint() for p in variants}) == len(variants)
    assert strong_dir(StrongPreset()).name == f"w2s-strong-{StrongPreset().fingerprint()}"


def test_lab_config_maps_to_the_generic_run() -> None:
    cfg = load_config(EXAMPLE, ["stage2.rounds=1", "questions_per_level=7"], model=LabW2SConfig)
    run = w2s_config(cfg, Path("w"), Path("s"))
    assert run.task.split == "train" and run.task.lab.per_level == 7 and run.eval_task.split == "test"
    assert run.stage2.rounds == 1 and run.dpo.dpo.nll_weight == 1.0 and run.weak.path == "w"
    assert run.task.lab.strict_format and run.eval_task.lab.strict_format


def test_cli_names_a_misspelt_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("flip_confidence", "flip_confidense"))
    result = CliRunner().invoke(app, ["lab", "w2s", str(bad)])
    assert result.exit_code == 2 and "flip_confidense" in result.output


def test_w2s_cli_errors_name_the_place(tmp_path: Path) -> None:
    config = tmp_path / "w2s.yaml"
    config.write_text(
        "weak: {path: w}\nstrong: {path: s}\ntask: {name: jsonl, path: " + str(tmp_path / "missing.jsonl") + "}\n"
        f"output_dir: {tmp_path / 'run'}\n"
    )
    result = CliRunner().invoke(app, ["w2s", str(config)])
    assert result.exit_code == 2 and "missing.jsonl" in result.output
    result = CliRunner().invoke(app, ["w2s", str(config), "--set", "stage2.tau=1.5"])
    assert result.exit_code == 2 and "stage2.tau" in result.output
    result = CliRunner().invoke(app, ["lab", "w2s", str(EXAMPLE), "--set", "levels=[1,6]"])
    assert result.exit_code == 2 and "levels" in result.output
    result = CliRunner().invoke(app, ["lab", "w2s", str(EXAMPLE), "--set", "strong.families=[arrow]"])
    assert result.exit_code == 2 and "strong.families" in result.output


def test_a_step_on_parts_padded_apart_equals_a_step_on_them_padded_together() -> None:
    tokenizer = build_char_tokenizer()
    docs = TINY_STRONG.documents(0)
    together = encode_documents(tokenizer, docs)
    apart = [encode_documents(tokenizer, docs[:2]), encode_documents(tokenizer, docs[2:])]
    initial = [p.detach().clone() for p in TINY_STRONG.preset().model.build(tokenizer, seed=0).parameters()]
    results = []
    for batch in (together, apart):
        model = TINY_STRONG.preset().model.build(tokenizer, seed=0)
        loss = lab_train.train_step(model, torch.optim.AdamW(model.parameters()), batch, 1e-2)
        results.append((loss, [p.detach().clone() for p in model.parameters()]))
    (loss_together, after_together), (loss_apart, after_apart) = results
    assert loss_apart == pytest.approx(loss_together, rel=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(after_together, after_apart))
    assert not all(torch.equal(a, b) for a, b in zip(initial, after_apart))  # the step moved the weights
