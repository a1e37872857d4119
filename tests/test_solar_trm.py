"""The topological reward model: both heads learn a separable toy set, rank held-out questions, load as `orm`."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from reasonscale.config import TaskConfig
from reasonscale.tasks.lab import LabTask
from reasonscale.train.data import write_jsonl
from reasonscale.train.trm import (
    TRMConfig,
    paired_selection,
    read_trm_records,
    selection_accuracy,
    topology_spearman,
    train_trm,
    trm_metrics,
    within_question_auc,
)
from reasonscale.types import Problem
from reasonscale.verifiers import build_verifier
from reasonscale.verifiers.trm import TRMVerifier


def toy_records(count: int, seed: int) -> list[dict]:
    """Questions starting with `a` are solved by got, those with `b` by cot; `answer=yes` is right, `=no` wrong."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        kind = "ab"[i % 2]
        question = kind + "".join(rng.choice("cdefgh") for _ in range(5)) + "\n"
        labels = {"got": 1.0, "cot": 0.0} if kind == "a" else {"got": 0.0, "cot": 1.0}
        for topology, topo in labels.items():
            for response, label in (("answer=yes", 1), ("answer=no", 0)):
                rows.append({"id": question, "prompt": question, "response": response, "label": label,
                             "topology": topology, "topo_label": topo})  # fmt: skip
    return rows


def config(tiny: Path, data: Path, out: Path, steps: int = 40, **trm) -> TRMConfig:
    return TRMConfig.model_validate({
        "model": {"path": str(tiny)}, "data": {"path": str(data)}, "lora": {"enabled": False},
        "optim": {"learning_rate": 3e-3, "max_steps": steps, "batch_size": 8},
        "log": {"logging_steps": 5, "cpu_threads": 1}, "trm": trm, "output_dir": str(out),
    })  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    folder = tmp_path_factory.mktemp("trm")
    data = write_jsonl(toy_records(24, seed=0), folder / "trm.jsonl")
    cfg = config(tiny_model_dir, data, folder / "m-trm")
    return cfg, train_trm(cfg, progress=False)


def test_both_heads_rank_held_out_questions(trained):
    cfg, result = trained
    assert result.trained and result.info["trm"]["topologies"] == ["got", "cot"]
    losses = [json.loads(line)["loss"] for line in (result.path / "loss.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0]
    verifier = build_verifier("orm", LabTask(TaskConfig(name="lab")), str(result.path))
    assert isinstance(verifier, TRMVerifier)
    held_out = toy_records(8, seed=1)
    answers = verifier.answer_scores([r["prompt"] for r in held_out], [r["response"] for r in held_out])
    metrics = trm_metrics(held_out, answers, lambda ps: verifier.topology_scores(ps)[0])
    assert metrics["questions"] == 8 and metrics["selection_accuracy"] == 1.0 and metrics["within_auc"] == 1.0
    assert metrics["spearman"] > 0.8
    again = train_trm(cfg, progress=False)
    assert not again.trained and again.info["key"] == result.info["key"]


def test_the_verifier_scores_whole_solutions_and_charges_them(trained):
    _, result = trained
    task = LabTask(TaskConfig(name="lab"))
    verifier = TRMVerifier(str(result.path), task)
    problems = [Problem("q", "acdefg", "1")] * 3
    scores, costs = verifier.score_items(problems, [["answer=yes"], ["answer=no", "x"], []])
    assert [len(s) for s in scores] == [1, 2, 0] and scores[0][0] > scores[1][0] == scores[1][1]
    assert costs[0].verifier_calls == 1 and costs[0].verifier_tokens > 0 and costs[2].verifier_calls == 0
    assert verifier.usage.verifier_tokens == costs[0].verifier_tokens + costs[1].verifier_tokens


def test_a_single_task_trm_trains_one_head(tmp_path, tiny_model_dir):
    data = write_jsonl(toy_records(8, seed=0), tmp_path / "trm.jsonl")
    result = train_trm(config(tiny_model_dir, data, tmp_path / "a", topology_weight=0), progress=False)
    assert result.info["trm"]["topology_weight"] == 0
    lines = (result.path / "loss.jsonl").read_text()
    assert "answer_loss" in lines and "pair_loss" in lines and "topology_loss" not in lines
    topology = config(tiny_model_dir, data, tmp_path / "t", steps=2, answer_weight=0, pair_weight=0)
    lines = (train_trm(topology, progress=False).path / "loss.jsonl").read_text()
    assert "topology_loss" in lines and "answer_loss" not in lines and "pair_loss" not in lines
    with pytest.raises(ValueError, match="all 0"):
        config(tiny_model_dir, data, tmp_path / "b", topology_weight=0, answer_weight=0, pair_weight=0)


def test_metrics_by_hand():
    rows = [{"id": "q", "hard_label": 0}, {"id": "q", "hard_label": 1}, {"id": "r", "hard_label": 1}]
    assert selection_accuracy(rows, [0.2, 0.9, 0.1]) == 1.0 and selection_accuracy(rows, [0.9, 0.2, 0.1]) == 0.5
    records = [{**r, "prompt": "p", "response": "x", "label": r["hard_label"]} for r in rows]
    picked = trm_metrics(records, [0.9, 0.2, 0.1], None)
    assert picked["selection_accuracy"] == 0.5 and picked["selection_accuracy_se"] == pytest.approx(0.5 / 2 ** 0.5)
    assert picked["within_auc"] == 0.0 and picked["within_auc_questions"] == 1  # only q has both; wrong on top
    more = [{"id": "q", "hard_label": 1}, {"id": "q", "hard_label": 0}, {"id": "q", "hard_label": 1}]
    assert within_question_auc(more, [0.5, 0.5, 0.9])[0] == pytest.approx(0.75)  # a tie counts half
    records.append({**records[0], "id": "s", "label": 1})
    gain, se = paired_selection(records, [0.2, 0.9, 0.1, 1.0], [0.9, 0.2, 0.1, 1.0])  # q: +1, r: 0, s: 0
    assert gain == pytest.approx(1 / 3) and se == pytest.approx((2 / 9) ** 0.5 / 3 ** 0.5)
    actual = {"q": {"a": 1.0, "b": 0.0}, "r": {"a": 0.5, "b": 0.25}}
    assert topology_spearman(actual, {"q": {"a": 0.9, "b": 0.1}, "r": {"a": 0.6, "b": 0.5}}) == pytest.approx(1.0)
    assert topology_spearman(actual, {"q": {"a": 0.1, "b": 0.9}, "r": {"a": 0.5, "b": 0.6}}) < 0
    assert math.isnan(topology_spearman({"q": {"a": 1.0}}, {"q": {"a": 0.3}}))


def test_bad_data_names_the_line(tmp_path, tiny_model_dir):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "p", "response": "r", "label": 1, "topology": "cot", "topo_label": 1}\n{"prompt": 3}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: field 'prompt'"):
        read_trm_records(config(tiny_model_dir, data, tmp_path / "x"))
