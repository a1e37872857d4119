"""Reward models through TRL: training, ranking held-out pairs, loading as an `orm` verifier, labelled data."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from reasonscale.config import TaskConfig
from reasonscale.tasks.lab import LabTask
from reasonscale.train import train_reward
from reasonscale.train.data import write_jsonl
from reasonscale.types import Problem
from reasonscale.verifiers import build_verifier
from reasonscale.verifiers.reward import RewardModelVerifier, encode
from test_train_common import Snapshot, logged, make_config
from test_train_sft import FirstBatch


def questions(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice("abcdefgh") for _ in range(6)) for _ in range(count)]


def pairs(count: int, seed: int) -> list[dict[str, str]]:
    """Separable: `answer=yes` always beats `answer=no`; prompts as the lab task writes them (question, newline)."""
    return [{"prompt": q + "\n", "chosen": "answer=yes", "rejected": "answer=no"} for q in questions(count, seed)]


@pytest.mark.parametrize("use_lora", [True, False])
def test_reward_model_ranks_held_out_pairs_as_a_verifier(tmp_path: Path, tiny_model_dir: Path, use_lora: bool) -> None:
    data = write_jsonl(pairs(16, seed=0), tmp_path / "pairs.jsonl")
    snapshot = Snapshot()
    cfg = make_config("reward", tiny_model_dir, data, tmp_path / "rm", use_lora, optim={"max_steps": 6})
    result = train_reward(cfg, progress=False, callbacks=[snapshot])
    assert not snapshot.unchanged() and any("score" in name for name in snapshot.before)
    losses = [entry["loss"] for entry in logged(result.path)]
    assert losses[-1] < losses[0]
    verifier = build_verifier("orm", LabTask(TaskConfig(name="lab")), str(result.path))
    assert isinstance(verifier, RewardModelVerifier)
    held_out = [Problem(id=q, question=q, answer="") for q in questions(8, seed=1)]
    scores = verifier.score(held_out * 2, [["answer=yes"]] * 8 + [["answer=no", "x"]] * 8)
    assert all(0 < s[0] < 1 for s in scores) and [len(s) for s in scores] == [1] * 8 + [2] * 8
    assert all(good[0] > bad[0] for good, bad in zip(scores[:8], scores[8:]))
    assert verifier.score(held_out[:1], [[]]) == [[]] and verifier.usage.verifier_calls == 16
    _, costs = verifier.score_items(held_out[:2], [["answer=yes"], ["answer=yes", "a much longer second step"]])
    assert costs[0].verifier_calls == costs[1].verifier_calls == 1  # each item is charged its own tokens
    assert 0 < costs[0].verifier_tokens < costs[1].verifier_tokens and costs[1].flops > costs[0].flops > 0


def test_reward_from_labelled_responses_in_a_chat_template(tmp_path: Path, tiny_model_dir: Path) -> None:
    rows = [
        {"q": q, "a": answer, "ok": answer == "yes"} for q in questions(4, seed=2) for answer in ("yes", "no", "yes")
    ]
    data = write_jsonl(rows, tmp_path / "labelled.jsonl")
    probe = FirstBatch()
    cfg = make_config(
        "reward",
        tiny_model_dir,
        data,
        tmp_path / "rm",
        reward={"format": "labels"},
        data={"chat_template": True, "fields": {"prompt": "q", "response": "a", "label": "ok"}},
        optim={"max_steps": 2},
    )
    result = train_reward(cfg, progress=False, callbacks=[probe])
    assert result.info["data"]["examples"] == 8  # two good answers against one bad, per prompt
    verifier = RewardModelVerifier(str(result.path), LabTask(TaskConfig(name="lab")))
    assert verifier.format.chat_template
    expected = {
        tuple(encode(verifier.tokenizer, verifier.format, r["q"], r["a"])) for r in rows
    }  # the verifier reads a solution exactly as the trainer did
    batch = probe.batch
    trained = {tuple(row[mask.bool()].tolist()) for row, mask in zip(batch["input_ids"], batch["attention_mask"])}
    assert trained and trained <= expected
