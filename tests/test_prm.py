"""PRM data and training: Monte-Carlo rollout labels, the trainer, and the ROC AUC used to measure PRMs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from reasonscale.data.prm_labels import PRMExample, build_prm_examples, load_examples, save_examples, step_prefixes
from reasonscale.engines.base import Engine
from reasonscale.verifiers.metrics import roc_auc
from reasonscale.train.prm import PRMTrainConfig, ranking_loss, train_prm
from reasonscale.types import Completion, Problem, SamplingParams
from reasonscale.verifiers.prm import PRMFormat, PRMVerifier
from toys import LastWordTask


class ScriptedPolicy(Engine):
    """Deterministic: the continuation of a prompt depends only on its text after the question and the sample index."""

    SCRIPT = {
        "": ["a\nb\nso 7", "a\nc\nso 3"],
        "a\n": ["b\nso 7", "c\nso 3", "b\nso 7", "b\nso 7"],  # 3 of 4 rollouts reach 7
        "a\nb\n": ["so 7", "so 7", "so 7", "so 7"],
        "a\nc\n": ["so 3", "so 3", "so 3", "so 3"],
    }
    model_id = "scripted"

    def __init__(self):
        self.requests = 0

    def complete(self, requests, params):
        self.requests += len(requests)
        return [Completion(self.SCRIPT[r.prompt[2:]][r.index], "stop", len(r.prompt), 4) for r in requests]


def test_step_prefixes_keep_raw_text_and_skip_empty_steps():
    assert step_prefixes("a\nb\n\nc", "\n") == ["a\n", "a\nb\n", "a\nb\n\nc"]
    assert step_prefixes("x\n\ny", "\n\n") == ["x\n\n", "x\n\ny"]


def test_rollout_labels_match_hand_computed_expectation(tmp_path):
    task, engine = LastWordTask(), ScriptedPolicy()
    problem = task.load()[0]
    examples = build_prm_examples(
        task, engine, [problem], ["q\n"], SamplingParams(temperature=1.0), samples=2, rollouts=4
    )
    right, wrong = examples
    assert right.steps == ["a", "b", "so 7"] and right.correct
    assert right.soft == [0.75, 1.0, 1.0] and right.hard == [1.0, 1.0, 1.0]
    assert wrong.steps == ["a", "c", "so 3"] and not wrong.correct
    assert wrong.soft == [0.75, 0.0, 0.0] and wrong.hard == [1.0, 0.0, 0.0]
    assert engine.requests == 2 + 3 * 4  # the shared prefix "a" is rolled out once
    assert load_examples(save_examples(examples, tmp_path / "ex.jsonl")) == examples


class StrongCompleter(ScriptedPolicy):
    """Finishes every prefix: all rollouts from "a" reach 7, and from "a c" it still gets 3 (the error stays)."""

    SCRIPT = {**ScriptedPolicy.SCRIPT, "a\n": ["b\nso 7"] * 4}


def test_rollouts_come_from_the_completer_when_given():
    task, policy, completer = LastWordTask(), ScriptedPolicy(), StrongCompleter()
    examples = build_prm_examples(
        task, policy, task.load()[:1], ["q\n"], SamplingParams(temperature=1.0), 2, 4, completer=completer
    )
    assert [e.steps for e in examples] == [["a", "b", "so 7"], ["a", "c", "so 3"]]  # solutions from the policy
    assert [e.soft for e in examples] == [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]  # labels from the completer
    assert policy.requests == 2 and completer.requests == 3 * 4


def toy_examples() -> list[PRMExample]:
    good = PRMExample(
        "p", "a=2, b=a*3. Find b.", "a=2, b=a*3. Find b.\n", ["b=a*3=2*3=6", "answer=6"], [1.0, 1.0], [1.0, 1.0], True
    )
    bad = PRMExample(
        "p", "a=2, b=a*3. Find b.", "a=2, b=a*3. Find b.\n", ["b=a*3=2*3=8", "answer=8"], [0.0, 0.0], [0.0, 0.0], False
    )
    return [good, bad] * 4


@pytest.mark.parametrize("mode", ["head", "token"])
def test_prm_training_lowers_loss_and_saves_a_loadable_scorer(tiny_model_dir, tmp_path, mode):
    from reasonscale.config import TaskConfig
    from reasonscale.tasks.lab import LabTask

    cfg = PRMTrainConfig(mode=mode, epochs=6, batch_size=4, lr=5e-3, warmup_steps=0, rank_weight=0.5)
    result = train_prm(toy_examples(), tiny_model_dir, tmp_path / "prm", cfg)
    assert result.steps == 12
    assert sum(result.losses[-3:]) < sum(result.losses[:3])
    prm = PRMVerifier(str(result.path), LabTask(TaskConfig(name="lab")))
    assert prm.format.mode == mode
    problem = Problem("p", "a=2, b=a*3. Find b.", "6")
    good, bad = prm.score([problem, problem], [toy_examples()[0].steps, toy_examples()[1].steps])
    assert good[0] > bad[0] and good[1] > bad[1]


def test_lora_training_saves_a_merged_model(tiny_model_dir, tmp_path):
    cfg = PRMTrainConfig(epochs=1, batch_size=4, lora=True, lora_r=4)
    result = train_prm(toy_examples(), tiny_model_dir, tmp_path / "lora", cfg)
    assert (result.path / "reasonscale_prm.json").is_file()
    assert not (result.path / "adapter_config.json").exists()


def test_ranking_loss_orders_pairs():
    y = torch.tensor([1.0, 0.0])
    assert ranking_loss(torch.tensor([2.0, -2.0]), y) < ranking_loss(torch.tensor([-2.0, 2.0]), y)
    assert ranking_loss(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 1.0])) == 0.0


def test_ranking_loss_compares_steps_of_the_same_problem_only():
    # problem 0 steps (y 1, 0) and problem 1 steps (y 1, 0): each problem is ordered right, but problem 0's good
    # step (z 2) is below problem 1's bad step (z 4), a pair that must not count.
    z, y = torch.tensor([2.0, -2.0, 5.0, 4.0]), torch.tensor([1.0, 0.0, 1.0, 0.0])
    within = ranking_loss(z, y, torch.tensor([0, 0, 1, 1]))
    expected = -(F.logsigmoid(torch.tensor(4.0)) + F.logsigmoid(torch.tensor(1.0))) / 2
    assert within == pytest.approx(expected.item())
    assert ranking_loss(z, y) > within


def test_training_batches_group_the_ranking_by_problem(tiny_model_dir):
    from transformers import AutoTokenizer

    from reasonscale.train.prm import batch_loss, encode_examples

    class Fixed(torch.nn.Module):  # a "model" whose step logits are the labels themselves, flipped for "q"
        def forward(self, input_ids, attention_mask):
            logits = torch.zeros(*input_ids.shape, 1)
            for row, e in enumerate(encoded):
                for pos, label in zip(e.positions, e.labels):
                    logits[row, pos, 0] = 4 * label - 2 + (10 if e.problem == "q" else 0)
            return SimpleNamespace(logits=logits)

    good, bad = toy_examples()[:2]
    other = PRMExample("q", good.question, good.prompt, good.steps, [1.0, 0.0], [1.0, 0.0], False)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    encoded = encode_examples(tokenizer, [good, bad, other], PRMFormat(), "soft")
    assert [e.problem for e in encoded] == ["p", "p", "q"]
    plain = batch_loss(Fixed(), encoded, PRMFormat(), None, 0.0, 0)
    ranked = batch_loss(Fixed(), encoded, PRMFormat(), None, 1.0, 0)
    assert ranked - plain == pytest.approx(-F.logsigmoid(torch.tensor(4.0)).item(), rel=1e-5)


def test_soft_and_hard_targets_train_on_different_labels(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    from reasonscale.train.prm import encode_examples

    task, engine = LastWordTask(), ScriptedPolicy()
    examples = build_prm_examples(task, engine, task.load(), ["q\n"], SamplingParams(temperature=1.0), 2, 4)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    soft = [e.labels for e in encode_examples(tokenizer, examples, PRMFormat(), "soft")]
    hard = [e.labels for e in encode_examples(tokenizer, examples, PRMFormat(), "hard")]
    assert soft == [[0.75, 1.0, 1.0], [0.75, 0.0, 0.0]] and hard == [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]
    cfg = {"epochs": 1, "batch_size": 2, "warmup_steps": 0}
    first = [
        train_prm(examples, tiny_model_dir, tmp_path / target, PRMTrainConfig(target=target, **cfg)).losses[0]
        for target in ("soft", "hard")
    ]
    assert first[0] != pytest.approx(first[1])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks that the device is used where CUDA is absent")
def test_the_trainer_runs_on_the_device_it_is_given(tiny_model_dir, tmp_path):
    cfg = PRMTrainConfig(epochs=1, batch_size=4)
    assert train_prm(toy_examples(), tiny_model_dir, tmp_path / "cpu", cfg, device="cpu").steps == 2
    with pytest.raises((AssertionError, RuntimeError)):  # no CUDA here: asking for it must fail, not fall back
        train_prm(toy_examples(), tiny_model_dir, tmp_path / "cuda", cfg, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_trainer_trains_on_cuda(tiny_model_dir, tmp_path):
    cfg = PRMTrainConfig(epochs=6, batch_size=4, lr=5e-3, warmup_steps=0, rank_weight=0.5)
    result = train_prm(toy_examples(), tiny_model_dir, tmp_path / "prm", cfg, device="cuda")
    assert sum(result.losses[-3:]) < sum(result.losses[:3])


def test_roc_auc_is_rank_based_with_ties_counted_half():
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert roc_auc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)
    assert roc_auc([1, 2, 3], [1, 1, 1]) is None
