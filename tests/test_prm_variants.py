"""PRM training variants of the search experiment: oracle step labels (no rollouts), near-miss hard negatives, and
both in the trained PRM's identity."""

from __future__ import annotations

import json
import re

import pytest

from reasonscale.config import TaskConfig
from reasonscale.data.prm_labels import PRMExample, hard_negatives, near_misses, verified_prm_examples
from reasonscale.engines.base import Engine
from reasonscale.lab.splits import load_problems
from reasonscale.pipelines import search_experiment
from reasonscale.pipelines.search_experiment import (
    PRMStageConfig,
    SearchExperimentConfig,
    prm_examples,
    prm_identity,
    trained_prm,
)
from reasonscale.tasks.lab import LabTask
from reasonscale.train.prm import PRMTrainConfig
from reasonscale.types import Completion, Problem, SamplingParams
from reasonscale.verifiers.oracle import OracleVerifier

QUESTION = "a=27-17, b=a-8, c=b-1, d=a+6. Find b."
SOLUTIONS = {  # hand-made solutions and the oracle's first-error verdicts on them
    "a=27-17=10\nb=a-8=10-8=2\nanswer=2": [1.0, 1.0, 1.0],
    "a=27-17=10\nb=a-8=10-8=1\nanswer=1": [1.0, 0.0, 0.0],  # arithmetic slip in step 2
    "a=27-17=11\nb=a-8=11-8=3\nanswer=3": [0.0, 0.0, 0.0],  # slip in step 1, carried on consistently
    "a=27-17=10\nb=a-8=10-8=2\nanswer=3": [1.0, 1.0, 0.0],  # right steps, wrong answer line
}


class Solutions(Engine):
    """Sample i of any prompt is solution i of `texts`; records every prompt it is asked to complete."""

    model_id = "hand-made"

    def __init__(self, texts: list[str]):
        self.texts, self.prompts = texts, []

    def complete(self, requests, params):
        self.prompts += [r.prompt for r in requests]
        return [Completion(self.texts[r.index], "stop", len(r.prompt), 8) for r in requests]


def test_oracle_labels_are_the_oracles_first_error_verdicts_without_rollouts():
    task, engine = LabTask(TaskConfig(name="lab")), Solutions(list(SOLUTIONS))
    problem = Problem("p", QUESTION, "2", 1)
    examples = verified_prm_examples(
        task, engine, [problem], [QUESTION + "\n"], SamplingParams(temperature=1.0), OracleVerifier(), samples=4
    )
    assert [e.soft for e in examples] == list(SOLUTIONS.values())
    assert [e.hard for e in examples] == [e.soft for e in examples]
    assert [e.correct for e in examples] == [True, False, False, False]
    assert engine.prompts == [QUESTION + "\n"] * 4  # the solutions only: no step prefix rolled out


def example(steps: list[str], labels: list[float]) -> PRMExample:
    return PRMExample("p", QUESTION, QUESTION + "\n", steps, labels, [float(v > 0) for v in labels], True, 1)


def test_a_hard_negative_changes_only_the_steps_last_number_and_is_labelled_0():
    good = example(["a=27-17=10", "b=a-8=10-8=2", "answer=2"], [1.0, 1.0, 1.0])
    negatives = hard_negatives([good], 3, seed=0)
    assert len(negatives) == 9
    for e in negatives:
        i = len(e.steps) - 1
        assert e.steps[:i] == good.steps[:i] and e.soft == [1.0] * i + [0.0] and e.hard == e.soft
        head, number = re.fullmatch(r"(.*\D)(\d+)", e.steps[i]).groups()
        original = re.fullmatch(r"(.*\D)(\d+)", good.steps[i]).groups()
        assert head == original[0] and number != original[1] and not e.correct
    assert set(good.steps) & {e.steps[-1] for e in negatives} == set()
    assert all(OracleVerifier().score([Problem("p", QUESTION, "2")], [e.steps])[0][-1] == 0.0 for e in negatives)
    assert hard_negatives([good], 3, seed=0) == negatives  # deterministic
    assert hard_negatives([good], 3, seed=1) != negatives
    assert hard_negatives([good], 0) == []


def test_hard_negatives_come_only_from_steps_labelled_1_with_a_number():
    mixed = example(["a=27-17=10", "b=a-8=10-8=2", "so that is it", "answer=2"], [1.0, 0.5, 1.0, 0.0])
    negatives = hard_negatives([mixed], 2, seed=0)
    assert [len(e.steps) for e in negatives] == [1, 1]  # step 2 is 0.5, step 3 has no number, step 4 is 0
    assert hard_negatives([mixed, mixed], 2, seed=0) == negatives  # a repeated solution adds nothing new


@pytest.mark.parametrize("value", [0, 1, 9, 10, 29, 100, 1234])
def test_near_misses_are_wrong_non_negative_and_distinct(value):
    misses = near_misses(value)
    assert misses and value not in misses and min(misses) >= 0 and len(set(misses)) == len(misses)
    assert value + 1 in misses


def write(cfg_dir, **prm) -> SearchExperimentConfig:
    return SearchExperimentConfig(
        policy="unused", device="cpu", task=TaskConfig(name="lab", lab={"levels": [1, 2], "per_level": 1}),
        prm=PRMStageConfig(train_per_level=1, samples=2, **prm), output_dir=str(cfg_dir),
    )


def test_the_prm_identity_changes_with_labels_and_hard_negatives(tiny_model_dir, tmp_path):
    data = tmp_path / "prm_data.jsonl"
    data.write_text('{"a": 1}\n')
    keys = {
        prm_identity(write(tmp_path, **settings), str(tiny_model_dir), data)
        for settings in ({}, {"labels": "oracle"}, {"hard_negatives": 4}, {"labels": "oracle", "hard_negatives": 4},
                         {"hard_negatives": 2})
    }
    assert len(keys) == 5  # (rollouts and samples change the data file, which is hashed)
    assert prm_identity(write(tmp_path), str(tiny_model_dir), data) in keys  # and is stable


def test_the_prm_identity_changes_with_problem_batching_and_solution_ranking(tiny_model_dir, tmp_path):
    data = tmp_path / "prm_data.jsonl"
    data.write_text('{"a": 1}\n')
    trains = ({}, {"batching": "problem"}, {"solution_rank_weight": 1.0}, {"batching": "problem",
                                                                             "solution_rank_weight": 1.0})
    keys = {prm_identity(write(tmp_path, train=PRMTrainConfig(**t)), str(tiny_model_dir), data) for t in trains}
    assert len(keys) == 4


def test_oracle_labels_end_to_end_make_no_rollout_calls(tiny_model_dir, tmp_path, monkeypatch):
    problems = load_problems("train", [1, 2], 1)
    right = problems[0].meta["solution"]
    wrong = re.sub(r"\d+$", lambda m: str(int(m.group()) + 1), right.split("\n")[0])  # a slip in step 1
    engine = Solutions([right, wrong])  # the same two samples for every prompt
    monkeypatch.setattr(search_experiment, "build_engine", lambda model: engine)
    cfg = write(tmp_path, labels="oracle", completer="no-such-model", hard_negatives=2)
    cfg.prm.train = cfg.prm.train.model_copy(update={"epochs": 1, "batch_size": 8})
    examples = prm_examples(cfg, str(tiny_model_dir), tmp_path, progress=False)
    prompts = [LabTask(TaskConfig(name="lab")).format_prompt(p) for p in problems]
    assert sorted(engine.prompts) == sorted(prompts * 2)  # two samples per problem, no rollout, no completer
    oracle = OracleVerifier().score(problems[:1] * 2, [e.steps for e in examples[:2]])
    assert [e.soft for e in examples[:2]] == oracle == [[1.0] * len(oracle[0]), [0.0]]
    path, info = trained_prm(cfg, str(tiny_model_dir), examples, tmp_path, progress=False)
    assert info["labels"] == "oracle" and info["hard_negatives"] > 0 and info["steps"] >= 1
    assert json.loads((path / "training.json").read_text()) == info
    assert path.name == prm_identity(cfg, str(tiny_model_dir), tmp_path / "prm_data.jsonl")


class Sixteen(Engine):
    """Solutions "a / b / so 7"; from the prefix "a", rollouts whose index is a multiple of 4 go wrong."""

    model_id = "sixteen"

    def __init__(self):
        self.indices: list[int] = []

    def complete(self, requests, params):
        self.indices += [r.index for r in requests if r.prompt != "q0\n"]
        texts = {"q0\n": "a\nb\nso 7", "q0\na\n": "b\nso 7", "q0\na\nb\n": "so 7"}
        return [Completion("c\nso 3" if r.prompt == "q0\na\n" and r.index % 4 == 0 else texts[r.prompt], "stop",
                           len(r.prompt), 4) for r in requests]


def test_sixteen_rollouts_label_in_sixteenths():
    from toys import LastWordTask

    from reasonscale.data.prm_labels import build_prm_examples

    task, engine = LastWordTask(), Sixteen()
    [e] = build_prm_examples(task, engine, task.load(), ["q0\n"], SamplingParams(temperature=1.0), 1, rollouts=16)
    assert e.soft == [12 / 16, 1.0, 1.0] and sorted(engine.indices) == sorted(list(range(16)) * 2)
