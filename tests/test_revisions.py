"""Revision trajectories (appendix H), the revision prompt, and the `revise` strategy on a deterministic engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from reasonscale.config import ConfigError, RunConfig, StrategyConfig
from reasonscale.data.revisions import (
    PREVIOUS,
    REVISED,
    build_revision_data,
    edit_distance,
    revision_prompt,
    trajectories,
)
from reasonscale.engines.base import Engine
from reasonscale.search.revise import Revise, hierarchical_choice
from reasonscale.types import Completion, Problem, SamplingParams
from reasonscale.verifiers.base import Verifier
from toys import LastWordTask


def sample(text: str, answer: str | None, correct: bool) -> dict[str, Any]:
    return {"text": text, "answer": answer, "correct": correct}


def test_edit_distance_on_hand_cases():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3 and edit_distance("abc", "abc") == 0
    assert edit_distance("a = 1\nanswer = 2", "a = 1\nanswer = 3") == 1


def test_revision_prompt_shows_the_last_attempts_in_a_window():
    assert revision_prompt("Q\n", []) == "Q\n"
    attempts = [f"try {i}" for i in range(6)]
    prompt = revision_prompt("Q\n", attempts, window=4)
    assert prompt == "Q\n" + "".join(f"{PREVIOUS}try {i}\n" for i in range(2, 6)) + REVISED
    assert prompt.isascii()


def test_trajectories_pair_the_nearest_incorrect_attempt_last_and_keep_the_correct_one():
    correct = "x = 2\ny = 4\nanswer = 8"
    near = "x = 2\ny = 4\nanswer = 9"  # one character away
    far = [f"z = {i}{i}{i}\nw = {i}\nanswer = {i}" for i in range(1, 6)]
    samples = [sample(correct, "8", True), sample("no answer here", None, False), sample(near, "9", False)]
    samples += [sample(t, t[-1], False) for t in far]
    seen_k = set()
    for seed in range(40):
        (example,) = trajectories("p1", "Q\n", samples, seed=seed)
        k = len(example.previous)
        seen_k.add(k)
        assert example.completion == correct and k <= 4
        assert "no answer here" not in example.prompt  # answers without a final answer are dropped
        if k:
            assert example.previous[-1] == near and near not in example.previous[:-1]
            assert len(set(example.previous)) == k and set(example.previous) <= {near, *far}
        assert example.prompt == revision_prompt("Q\n", example.previous)
    assert seen_k == {0, 1, 2, 3, 4}  # k ~ U{0..min(4, #incorrect)}


def test_k_is_capped_by_the_number_of_incorrect_answers_and_draws_are_stable():
    samples = [sample("a 7", "7", True), sample("a 7!", "7", True), sample("a 6", "6", False)]
    for seed in range(20):
        examples = trajectories("p", "Q\n", samples, seed=seed)
        assert len(examples) == 2 and all(len(e.previous) <= 1 for e in examples)
        assert examples == trajectories("p", "Q\n", samples, seed=seed)
    assert trajectories("p", "Q\n", [sample("a 6", "6", False)]) == []  # no correct answer: no example


def test_build_statistics_count_drops_and_first_step_sharing():
    items = [
        ("p1", "Q1\n", [sample("s1\nanswer 8", "8", True), sample("s1\nanswer 9", "9", False)]),
        ("p2", "Q2\n", [sample("t1\nanswer 5", "5", True), sample("u1\nanswer 4", "4", False),
                        sample("junk", None, False)]),
    ]
    split = lambda text: text.split("\n")  # noqa: E731
    for seed in range(10):
        examples, stats = build_revision_data(items, seed=seed, split_steps=split)
        assert stats["dropped_without_answer"] == 1 and stats["examples"] == 2 == len(examples)
        revised = {e.problem_id for e in examples if e.previous}
        expected = None if not revised else sum(p == "p1" for p in revised) / len(revised)
        assert stats["nearest_shares_first_step"] == expected


class ChainEngine(Engine):
    """Answers with the number of attempts shown in the prompt plus the sample index; records every request.
    A completion costs 2 tokens and its prompt as many tokens as characters."""

    model_id = "chain"
    num_parameters = 10

    def __init__(self):
        self.requests = []

    def complete(self, requests, params):
        self.requests.extend(requests)
        out = []
        for r in requests:
            shown = r.prompt.count(PREVIOUS)
            out.append(Completion(f"step\nso {shown + r.index}", "stop", len(r.prompt), 2))
        return out


class ScoreByAnswer(Verifier):
    """Scores an attempt by its answer: 0.9 for 3, else 0.2. Each item costs 5 tokens and 50 FLOPs."""

    def score(self, problems, step_lists):
        return [[0.9 if steps[-1].endswith(" 3") else 0.2] for steps in step_lists]

    def score_items(self, problems, step_lists):
        from reasonscale.types import Usage

        self.contexts = [p.meta.get("context") for p in problems]
        return self.score(problems, step_lists), [
            Usage(verifier_calls=1, verifier_tokens=5, flops=50.0, verifier_flops=50.0) for _ in step_lists
        ]


@dataclass
class FakeChunk:
    engine: Engine
    problems: list[Problem]
    prompts: list[str]
    task: Any = field(default_factory=LastWordTask)
    scorer: Verifier = field(default_factory=ScoreByAnswer)

    def sampling(self, n=1, greedy=False):
        return SamplingParams(n, 0.0 if greedy else 1.0, 1.0, 8, (), 0)

    def verifier(self, config):
        return self.scorer


def test_a_revise_chain_sends_the_right_context_and_counts_usage_exactly():
    engine = ChainEngine()
    problem = Problem("q0", "q0", "3")
    chunk = FakeChunk(engine, [problem], ["q0\n"])
    config = StrategyConfig(name="revise", length=6, verifier="fake", budgets=[12])
    (outcome,) = Revise(config).run(chunk, 12)
    assert len(engine.requests) == 12  # P = 2 chains x L = 6
    for j in range(2):
        chain = [r for r in engine.requests if r.index == j]
        texts = []
        for t, request in enumerate(chain):
            assert request.prompt == revision_prompt("q0\n", texts[-4:])  # the last 4 attempts of its own chain
            texts.append(f"step\nso {min(t, 4) + j}")
    assert outcome.usage.policy_calls == 12
    assert outcome.usage.prompt_tokens == sum(len(r.prompt) for r in engine.requests)  # re-sent context billed
    assert outcome.usage.completion_tokens == 24
    assert outcome.usage.verifier_calls == 12 and outcome.usage.verifier_tokens == 60
    assert outcome.usage.verifier_flops == 600.0
    # chain 0 answers 0,1,2,3,4,4; chain 1 answers 1,2,3,4,5,5: the verifier favours 3, which is right
    assert outcome.answer == "3" and outcome.correct == 1.0
    assert outcome.details["correct"] == [[0, 0, 0, 1, 0, 0], [0, 0, 1, 0, 0, 0]]
    # each attempt is scored with the attempts it saw before it (what an ORM trained on revisions reads)
    sent = [r.prompt for j in range(2) for r in engine.requests if r.index == j]
    assert ["q0\n" + c for c in chunk.scorer.contexts] == sent


def test_revise_by_majority_votes_over_every_attempt_and_scores_nothing():
    engine = ChainEngine()
    chunk = FakeChunk(engine, [Problem("q0", "q0", "4")], ["q0\n"])
    config = StrategyConfig(name="revise", length=4, select="majority", budgets=[8])
    (outcome,) = Revise(config).run(chunk, 8)
    # chain 0: 0,1,2,3; chain 1: 1,2,3,4 -> 1, 2 and 3 tie with two votes; the earliest group wins
    assert outcome.answer == "1" and outcome.usage.verifier_calls == 0
    (short,) = Revise(config).run(chunk, 2)  # below L: one chain of N attempts
    assert len(short.details["correct"]) == 1 and len(short.details["correct"][0]) == 2


def test_hierarchical_selection_takes_chain_winners_then_the_best_across():
    # chain 0: answer A twice (0.3 each) vs B once (0.5) -> A wins (0.6), its best attempt scores 0.3;
    # chain 1: B (0.4) -> across winners, B (0.4) beats A (0.3)
    groups, scores = [0, 0, 1, 1, None, None], [0.3, 0.3, 0.5, 0.4, 0.9, 0.9]
    assert hierarchical_choice(groups, scores, 3) == 3
    assert hierarchical_choice([None] * 4, [1.0] * 4, 2) is None


def test_revise_config_checks_budgets_and_verifier():
    with pytest.raises(ValueError, match="multiple of the chain length"):
        StrategyConfig(name="revise", length=4, verifier="oracle", budgets=[4, 6])
    with pytest.raises(ValueError, match="needs a verifier"):
        StrategyConfig(name="revise")
    with pytest.raises(ValueError, match="uses no verifier"):
        StrategyConfig(name="revise", select="majority", verifier="oracle")
    with pytest.raises(ConfigError, match="lenght"):
        from reasonscale.config_loading import validate

        validate(RunConfig, {"model": {"path": "m"}, "task": {"name": "lab"},
                             "strategies": [{"name": "revise", "select": "majority", "lenght": 2}]}, "cfg")


def test_lab_train_revision_builds_a_cached_revision_model_beside_the_preset(tmp_path, tiny_model_dir, monkeypatch):
    from reasonscale.lab import train as lab_train
    from reasonscale.lab.revision import RevisionStageConfig, RevisionTrainSettings, train_revision_preset
    from reasonscale.train.common import read_info
    from test_scaling import LabScript

    class Scripted(LabScript, Engine):
        pass

    monkeypatch.setenv("REASONSCALE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(lab_train, "train_preset", lambda name, **kw: tiny_model_dir)
    cfg = RevisionStageConfig(train_per_level=1, samples=4, train=RevisionTrainSettings(max_steps=1, batch_size=2))
    scripted = Scripted()
    path = train_revision_preset("weak", cfg, progress=False, engine_factory=lambda m: scripted)
    assert path.parent.parent == tmp_path / "cache" / "lab" and path.parent.name.startswith("revision-weak-")
    assert read_info(path)["data"]["examples"] == 10 and scripted.calls == 20  # 5 levels x 4 samples, 2 right each
    stamp = (path / "reasonscale_train.json").stat().st_mtime_ns
    again = train_revision_preset("weak", cfg, progress=False, engine_factory=lambda m: scripted)
    assert again == path and scripted.calls == 20  # no sample drawn again
    assert (path / "reasonscale_train.json").stat().st_mtime_ns == stamp  # nothing trained again


def test_verifier_examples_label_each_attempt_after_the_context_it_saw():
    from reasonscale.data.revisions import verifier_examples

    problem = Problem("q0", "q0", "7", level=2)
    chains = [["step\nso 3", "step\nso 7"], ["", "so 7"]]
    examples = verifier_examples(LastWordTask(), problem, "q0\n", chains, window=4)
    assert [e.steps for e in examples] == [["step\nso 3"], ["step\nso 7"], ["so 7"]]  # the empty attempt is left out
    assert [e.correct for e in examples] == [False, True, True] and [e.soft for e in examples] == [[0.0], [1.0], [1.0]]
    assert examples[1].prompt == revision_prompt("q0\n", ["step\nso 3"]) and examples[0].prompt == "q0\n"
    assert examples[2].prompt == revision_prompt("q0\n", [""]) and examples[2].level == 2
