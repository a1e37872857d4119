"""Verifiers: step aggregation, weighted best-of-N with the configured aggregation, PRM / ORM scoring formats."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

from reasonscale.config import TaskConfig
from reasonscale.lab.tokenizer import build_char_tokenizer
from reasonscale.tasks.lab import LabTask
from reasonscale.types import Problem
from reasonscale.verifiers import build_verifier
from reasonscale.verifiers.base import aggregate
from reasonscale.verifiers.orm import ORMVerifier
from reasonscale.verifiers.prm import PRMFormat, PRMVerifier, encode_steps

SCORES = [0.9, 0.4, 0.8]


@pytest.mark.parametrize(
    ("how", "expected"), [("last", 0.8), ("min", 0.4), ("prod", 0.9 * 0.4 * 0.8), ("mean", 2.1 / 3)]
)
def test_aggregations_on_hand_made_scores(how, expected):
    assert aggregate(SCORES, how) == pytest.approx(expected)


def test_aggregation_of_no_steps_is_zero_and_unknown_is_an_error():
    assert aggregate([], "min") == 0.0
    with pytest.raises(ValueError):
        aggregate(SCORES, "max")  # type: ignore[arg-type]


def test_encode_steps_reads_each_step_end_or_its_tag(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids, positions = encode_steps(tok, "q\n", ["a=1", "b=2"], PRMFormat())
    assert tok.decode(ids, skip_special_tokens=True) == "q\na=1\nb=2\n"
    assert [tok.decode([ids[p]]) for p in positions] == ["\n", "\n"]
    ids, positions = encode_steps(tok, "q ", ["a", "b"], PRMFormat(step_separator=" #\n", step_tag="#"))
    assert [tok.decode([ids[p]]) for p in positions] == ["#", "#"]
    assert positions[1] - positions[0] == len(" #\n") + 1


@pytest.fixture(scope="module")
def lab_task():
    return LabTask(TaskConfig(name="lab"))


PROBLEM = Problem("p", "a=2, b=a*3. Find b.", "6", level=1)


@pytest.mark.parametrize("mode", ["token", "head"])
def test_prm_scores_every_step_and_counts_usage(tiny_model_dir, tmp_path, lab_task, mode):
    path = tiny_model_dir
    if mode == "head":
        path = tmp_path / "head"
        AutoModelForTokenClassification.from_pretrained(tiny_model_dir, num_labels=2).save_pretrained(path)
        AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(path)
    prm = PRMVerifier(str(path), lab_task, mode=mode)
    scores = prm.score([PROBLEM, PROBLEM], [["b=a*3=2*3=6", "answer=6"], ["answer=5"]])
    assert [len(s) for s in scores] == [2, 1]
    assert all(0.0 < v < 1.0 for s in scores for v in s)
    prompt_tokens = len(lab_task.format_prompt(PROBLEM)) + 1
    assert prm.usage.verifier_calls == 2
    assert prm.usage.verifier_tokens == 2 * prompt_tokens + len("b=a*3=2*3=6\nanswer=6\n") + len("answer=5\n")
    assert prm.usage.flops == pytest.approx(2 * prm.num_parameters * prm.usage.verifier_tokens)
    alone = prm.score([PROBLEM], [["answer=5"]])
    assert alone[0] == pytest.approx(scores[1], abs=1e-5)  # padding in a batch changes nothing


def test_prm_reads_the_saved_format_and_options_override_it(tiny_model_dir, tmp_path, lab_task):
    import shutil

    path = tmp_path / "prm"
    shutil.copytree(tiny_model_dir, path)
    PRMFormat(mode="token", good_token="y", bad_token="n").save(path)
    assert PRMVerifier(str(path), lab_task).format.good_token == "y"
    assert PRMVerifier(str(path), lab_task, good_token="+").format.good_token == "+"
    with pytest.raises(ValueError):
        PRMVerifier(str(path), lab_task, no_such_option=1)


def test_orm_gives_every_step_the_whole_solution_score(tiny_model_dir, lab_task):
    orm = ORMVerifier(str(tiny_model_dir), lab_task, mode="token")
    (scores,) = orm.score([PROBLEM], [["b=a*3=2*3=6", "answer=6"]])
    assert len(scores) == 2 and scores[0] == scores[1]
    assert all(math.isclose(aggregate(scores, how), scores[0]) for how in ("last", "min", "mean"))


def test_build_verifier_names(tiny_model_dir, lab_task):
    assert build_verifier("oracle", lab_task).name == "oracle"
    assert isinstance(build_verifier(f"prm:{tiny_model_dir}", lab_task, options={"mode": "token"}), PRMVerifier)
    assert isinstance(build_verifier("orm", lab_task, str(tiny_model_dir), {"mode": "token"}), ORMVerifier)
    with pytest.raises(ValueError, match="needs a model path"):
        build_verifier("prm", lab_task)
    with pytest.raises(ValueError, match="unknown verifier"):
        build_verifier("judge", lab_task)


@pytest.mark.parametrize("labels", [1, 2])
def test_head_mode_score_is_the_heads_output_at_each_step_end(tiny_model_dir, tmp_path, lab_task, labels):
    steps = ["b=a*3=2*3=6", "answer=6"]
    path = tmp_path / "head"
    torch.manual_seed(1)
    AutoModelForTokenClassification.from_pretrained(tiny_model_dir, num_labels=labels).save_pretrained(path)
    tokenizer = build_char_tokenizer()
    tokenizer.save_pretrained(path)
    (scores,) = PRMVerifier(str(path), lab_task).score([PROBLEM], [steps])
    text = lab_task.format_prompt(PROBLEM) + "".join(s + "\n" for s in steps)
    ids = tokenizer(text)["input_ids"]
    ends = [len(ids) - 1 - len(steps[1]) - 1, len(ids) - 1]  # the "\n" after each step (one token per character)
    with torch.no_grad():
        logits = AutoModelForTokenClassification.from_pretrained(path)(torch.tensor([ids])).logits[0, ends]
    expected = logits[:, 0].sigmoid() if labels == 1 else logits.softmax(-1)[:, 1]
    assert scores == pytest.approx(expected.tolist(), abs=1e-5)
    assert abs(scores[0] - scores[1]) > 1e-4  # two different positions are read
