"""The weak-to-strong pipeline end to end on tiny random models: every stage writes data and a model that loads,
a re-run makes no model call and trains nothing, and the data stages run from user JSONL generations."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoModelForCausalLM

from conftest import build_tiny_model
from reasonscale.data.weak_to_strong import consistent
from reasonscale.config import ModelConfig
from reasonscale.engines.hf import HFEngine
from reasonscale.pipelines.w2s import LazyEngine, run_w2s
from reasonscale.pipelines.w2s_config import W2SConfig
from reasonscale.tasks.base import Task
from reasonscale.train import TRAINERS
from reasonscale.train.data import write_jsonl
from reasonscale.types import Problem


class Parity(Task):
    """A task random models can answer: the answer is the parity of the response's first character."""

    name = "parity"
    step_delimiter = "\n"
    solution_stop = ("\n\n",)

    def __init__(self, count: int, prefix: str):
        self.count, self.prefix = count, prefix

    def load(self) -> list[Problem]:
        return [
            Problem(f"{self.prefix}{i}", f"{self.prefix} {i} =", str(i % 2), meta={"solution": f"{i % 2} by parity"})
            for i in range(self.count)
        ]

    def format_prompt(self, problem: Problem) -> str:
        return problem.question + "\n"

    def extract_answer(self, solution: str) -> str | None:
        return str(ord(solution[0]) % 2) if solution else None

    def equivalent(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        return [a == b for a, b in pairs]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_tiny_model(tmp_path_factory.mktemp("weak"), 1), build_tiny_model(tmp_path_factory.mktemp("strong"), 2)


def config(models: tuple[Path, Path], out: Path, **extra: Any) -> W2SConfig:
    fast = {"lora": {"r": 4, "alpha": 8}, "optim": {"max_steps": 2, "batch_size": 4, "learning_rate": 1e-2},
            "log": {"logging_steps": 1, "cpu_threads": 1}}
    raw = {
        "weak": {"path": str(models[0]), "device": "cpu"},
        "strong": {"path": str(models[1]), "device": "cpu"},
        "task": {"name": "jsonl"},  # replaced by the test task
        "eval_task": {"name": "jsonl"},
        "generation": {"max_tokens": 6},
        "stage1": {"demonstrations": 2},
        "stage2": {"samples": 6, "tau": 0.5, "flip_confidence": 0.5, "pairs_per_question": 2},
        "sft": fast,
        "dpo": fast,
        "output_dir": str(out),
        **extra,
    }
    return W2SConfig.model_validate(raw)


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_stage_makes_data_and_a_model_and_a_rerun_does_nothing(tmp_path: Path, models, monkeypatch) -> None:
    cfg = config(models, tmp_path / "run", stage2={"samples": 6, "tau": 0.5, "flip_confidence": 0.5,
                                                    "pairs_per_question": 2, "rounds": 2})
    task, held_out = Parity(12, "t"), Parity(6, "e")
    first = run_w2s(cfg, progress=False, task=task, eval_task=held_out)
    expected = ["stage1-weak", "stage1-icl", "stage1-hybrid", "naive", "gold", "stage2-round1", "stage2-round2"]
    assert sorted(first["usage"]["trained"]) == sorted(expected)
    assert first["usage"]["model_calls"] > 0
    data = first["data"]
    weak, icl = read(tmp_path / "run/data/d_weak.jsonl"), read(tmp_path / "run/data/d_icl.jsonl")
    kept = consistent(task, [{**r, "response": r["completion"]} for r in weak],
                      [{**r, "response": r["completion"]} for r in icl])
    assert 0 < len(kept) < 12 and data["stage1-weak"]["questions"] == len(kept)
    assert data["stage1-hybrid"]["size"] >= data["stage1-weak"]["size"]
    assert data["d_weak"]["size"] == 12 and data["gold"]["accuracy_completion"] == 1.0
    for name in ("stage1-weak", "stage1-icl"):  # the filter keeps agreeing answers only
        assert {r["id"] for r in read(tmp_path / f"run/data/{name}.jsonl")} == kept
    pairs = read(tmp_path / "run/data/stage2-round1.jsonl")
    assert pairs and all({"prompt", "chosen", "rejected", "confidence"} <= set(p) for p in pairs)
    assert all(p["chosen"] != p["rejected"] for p in pairs)
    assert set(first["models"]) == {"weak", "strong", "strong_icl", *expected}
    assert first["models"]["gold"]["pgr"] in (1.0, None)
    for name, path in first["trained_models"].items():
        assert AutoModelForCausalLM.from_pretrained(path) is not None, name
    info = json.loads((Path(first["trained_models"]["stage2-round1"]) / "reasonscale_train.json").read_text())
    assert info["base"]["path"] == first["trained_models"]["stage1-hybrid"]  # DPO starts from M_plus
    assert (tmp_path / "run/report.md").read_text().count("stage2-round") >= 4

    def no_model(*args: Any) -> None:
        raise AssertionError("a re-run loads no model")

    monkeypatch.setattr("reasonscale.pipelines.w2s.build_engine", no_model)
    again = run_w2s(cfg, progress=False, task=task, eval_task=held_out)
    assert again["usage"] == {"model_calls": 0, "trained": []}
    assert again["models"] == first["models"] and again["data"] == first["data"]


def user_files(tmp_path: Path) -> dict[str, str]:
    weak = [{"id": f"q{i}", "question": f"what is {i}?", "response": "ab"[i % 2] + " weak", "gold": str(i % 2)}
            for i in range(6)]
    icl = [{"id": f"q{i}", "question": "ignored", "response": "aab"[i % 3] + " icl"} for i in range(6)]
    samples = [{"id": f"q{i}", "response": r} for i in range(6) for r in ["a", "a", "a", "b"]]
    return {k: str(write_jsonl(v, tmp_path / f"{k}.jsonl")) for k, v in
            [("weak", weak), ("icl", icl), ("samples", samples)]}


def test_data_stages_from_user_generations(tmp_path: Path, models) -> None:
    files = user_files(tmp_path)
    cfg = config(models, tmp_path / "run", eval_task=None, baselines={"naive": False, "gold": False},
                 stage1={"variants": ["hybrid"]}, stage2={"tau": 0.6, "pairs_per_question": 1},
                 inputs={**files, "fields": {"answer": "gold"}})
    summary = run_w2s(cfg, progress=False, task=Parity(0, "unused"))
    assert summary["usage"]["model_calls"] == 0 and summary["usage"]["trained"] == ["stage1-hybrid", "stage2-round1"]
    # parity of the first character: a=97 odd, b=98 even; weak a,b,a,b,a,b vs icl a,a,b,a,a,b agree on q0, q4, q5
    kept = {r["id"] for r in read(tmp_path / "run/data/stage1-hybrid.jsonl")}
    assert kept == {"q0", "q4", "q5"}
    assert summary["data"]["d_weak"]["accuracy_completion"] == 0.0  # gold i % 2 against parity of a/b: all wrong
    # samples: "a" (answer 1) three times of four (0.75 >= tau): weak "a" (q0, q2, q4) chosen, weak "b" rejected
    # only from 0.8, so q1, q3, q5 give no pair
    pairs = read(tmp_path / "run/data/stage2-round1.jsonl")
    assert sorted(p["id"] for p in pairs) == ["q0", "q2", "q4"]
    assert all(p["chosen"].endswith("weak") and p["rejected"] == "b" for p in pairs)


def test_chats_render_like_the_engine_without_loading_it(tiny_model_dir: Path, monkeypatch) -> None:
    cfg = ModelConfig(path=str(tiny_model_dir), device="cpu", chat_template=True)
    expected = HFEngine(str(tiny_model_dir), device="cpu").render_chat([{"role": "user", "content": "2+2?"}])
    monkeypatch.setattr("reasonscale.pipelines.w2s.build_engine", lambda *a: pytest.fail("model loaded"))
    lazy = LazyEngine(cfg)
    assert lazy.render_chat([{"role": "user", "content": "2+2?"}]) == expected and lazy.inner is None


def test_a_run_killed_in_stage_two_resumes_without_redoing_stage_one(tmp_path: Path, models, monkeypatch) -> None:
    cfg = config(models, tmp_path / "run", eval_task=None, baselines={"naive": False, "gold": False},
                 stage1={"demonstrations": 2, "variants": ["hybrid"]})
    task = Parity(12, "t")

    def killed(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setitem(TRAINERS, "dpo", killed)
        with pytest.raises(KeyboardInterrupt):
            run_w2s(cfg, progress=False, task=task)
    assert (tmp_path / "run/models/stage1-hybrid/reasonscale_train.json").is_file()
    resumed = run_w2s(cfg, progress=False, task=task)
    assert resumed["usage"] == {"model_calls": 0, "trained": ["stage2-round1"]}  # samples and M_plus reused


def test_data_only_builds_every_set_and_trains_nothing(tmp_path: Path, models) -> None:
    cfg = config(models, tmp_path / "run", stage1={"variants": ["weak", "hybrid"]}, data_only=True,
                 inputs={**user_files(tmp_path), "fields": {"answer": "gold"}})
    summary = run_w2s(cfg, progress=False, task=Parity(0, "unused"))
    assert summary["usage"] == {"model_calls": 0, "trained": []} and summary["models"] == {}
    assert not (tmp_path / "run" / "models").exists()
    # tau and flip_confidence 0.5, two pairs per question: the three weak "a" responses are chosen against the one
    # "b" sample (one pair each), the three weak "b" responses rejected against two of the three "a" samples
    assert [summary["data"][k]["size"] for k in ("stage1-weak", "stage1-hybrid", "stage2-round1")] == [3, 6, 9]
    assert "stage2-round2" not in summary["data"]  # later rounds need a trained model
