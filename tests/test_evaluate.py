"""The evaluation pipeline with a scripted engine: strategy choices, budgets, records, caching and resume."""

import json

import pytest

from reasonscale.config import ModelConfig, RunConfig, SamplingConfig, StrategyConfig, TaskConfig
from reasonscale.engines.base import Engine
from reasonscale.pipelines import evaluate
from reasonscale.types import Completion
from toys import LastWordTask


class ScriptedEngine(Engine):
    """Sample i of every prompt answers SCRIPT[i]; greedy answers 5. Counts calls."""

    SCRIPT = ["3", "7", "3", "7", "7", "1", "3", "3"]
    model_id = "scripted"

    def __init__(self):
        self.calls = 0

    def complete(self, requests, params):
        self.calls += len(requests)
        out = []
        for r in requests:
            answer = "5" if params.temperature == 0 else self.SCRIPT[r.index % len(self.SCRIPT)]
            out.append(Completion(f"step\nso {answer}", "stop", len(r.prompt), 3))
        return out


class FirstSevenVerifier:
    """Scores a candidate 0.9 if its answer is 7 else 0.1 (stands in for a verifier)."""

    def __init__(self):
        from reasonscale.types import Usage

        self.usage = Usage()

    def score(self, problems, step_lists):
        self.usage.verifier_calls += len(step_lists)
        return [[0.5, 0.9 if steps[-1].endswith("7") else 0.1] for steps in step_lists]


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setattr(evaluate, "build_task", lambda cfg: LastWordTask(3))
    monkeypatch.setattr(evaluate, "build_verifier", lambda *args, **kw: FirstSevenVerifier())
    cfg = RunConfig(
        model=ModelConfig(path="scripted"),
        task=TaskConfig(name="jsonl"),
        sampling=SamplingConfig(temperature=1.0, max_tokens=8),
        strategies=[
            StrategyConfig(name="greedy"),
            StrategyConfig(name="majority", n=8),
            StrategyConfig(name="best_of_n", n=8, verifier="fake"),
            StrategyConfig(name="weighted_best_of_n", n=8, verifier="fake", aggregate="min"),
            StrategyConfig(name="pass_at_k", n=8),
        ],
        output_dir=str(tmp_path / "run"),
    )
    return cfg


def test_strategies_and_budgets(setup):
    engine = ScriptedEngine()
    summary = evaluate.run_evaluation(setup, show_progress=False, engine_factory=lambda cfg: engine)
    acc = summary["accuracy"]
    assert acc["greedy@1"] == 0.0
    assert acc["majority@1"] == 0.0  # "3"
    assert acc["majority@2"] == 0.0  # 3 vs 7 tie: the earliest group wins
    assert acc["majority@4"] == 0.0  # 3,7,3,7 tie -> 3
    assert acc["majority@8"] == 0.0  # 3 x4, 7 x3
    assert acc["best_of_n[fake]@2"] == 1.0
    # min aggregation: every candidate scores min(0.5, .) so 7s weigh 0.5 and others 0.1
    assert acc["weighted_best_of_n[fake,min]@8"] == 1.0
    assert acc["pass_at_k@1"] == pytest.approx(3 / 8)
    assert acc["pass_at_k@8"] == 1.0
    assert summary["problems"] == 3 and set(summary["accuracy_by_level"]) == {"1", "2"}
    assert engine.calls == 3 * 8 + 3


def test_outputs_written_and_usage_counted(setup):
    evaluate.run_evaluation(setup, show_progress=False, engine_factory=lambda cfg: ScriptedEngine())
    out = setup.output_dir
    records = [json.loads(line) for line in open(f"{out}/results.jsonl")]
    assert [r["id"] for r in records] == ["q0", "q1", "q2"]
    first = records[0]
    assert len(first["candidates"]) == 8 and first["candidates"][1]["answer"] == "7"
    assert first["strategies"]["majority@4"]["samples"] == 4
    assert first["strategies"]["majority@4"]["tokens"] == 4 * (3 + 3)
    assert first["strategies"]["majority@4"]["generated_tokens"] == 4 * 3
    summary = json.load(open(f"{out}/summary.json"))
    assert summary["usage"]["completion_tokens"] == 3 * 9 * 3
    assert summary["usage"]["model_calls"] == 27
    report = open(f"{out}/report.md").read()
    assert "majority@8" in report and (setup_dir := out)  # the plot sits beside it
    import os

    assert os.path.getsize(f"{setup_dir}/accuracy.png") > 1000


def test_rerun_makes_no_model_calls(setup):
    evaluate.run_evaluation(setup, show_progress=False, engine_factory=lambda cfg: ScriptedEngine())
    first = open(f"{setup.output_dir}/results.jsonl").read()
    again = ScriptedEngine()
    summary = evaluate.run_evaluation(setup, show_progress=False, engine_factory=lambda cfg: again)
    assert again.calls == 0 and summary["usage"]["model_calls"] == 0
    assert open(f"{setup.output_dir}/results.jsonl").read() == first


def test_run_identity_ignores_throughput_settings_only(setup):
    faster = setup.model_copy(update={"model": setup.model.model_copy(update={"max_batch_size": 7, "concurrency": 3})})
    hotter = setup.model_copy(update={"sampling": setup.sampling.model_copy(update={"temperature": 1.1})})
    assert evaluate.run_key(faster) == evaluate.run_key(setup)
    assert evaluate.run_key(hotter) != evaluate.run_key(setup)


def test_changed_strategy_reuses_cached_samples(setup):
    evaluate.run_evaluation(setup, show_progress=False, engine_factory=lambda cfg: ScriptedEngine())
    bigger = setup.model_copy(update={"strategies": [StrategyConfig(name="majority", n=4)]})
    engine = ScriptedEngine()
    summary = evaluate.run_evaluation(bigger, show_progress=False, engine_factory=lambda cfg: engine)
    assert engine.calls == 0 and summary["usage"]["cache_hits"] == 12


def test_failure_midway_keeps_finished_problems(setup):
    class FailingEngine(ScriptedEngine):
        def complete(self, requests, params):
            if any(r.prompt.startswith("q2") for r in requests):
                raise RuntimeError("server went away")
            return super().complete(requests, params)

    with pytest.raises(RuntimeError):
        evaluate.run_evaluation(setup, show_progress=False, engine_factory=lambda cfg: FailingEngine(), chunk_size=1)
    engine = ScriptedEngine()
    evaluate.run_evaluation(setup, show_progress=False, engine_factory=lambda cfg: engine, chunk_size=1)
    assert engine.calls == 9  # only q2 was left


def test_best_of_n_without_verifier_is_rejected(setup):
    bad = setup.model_copy(update={"strategies": [StrategyConfig(name="best_of_n", n=4)]})
    with pytest.raises(ValueError, match="needs a verifier"):
        evaluate.run_evaluation(bad, show_progress=False, engine_factory=lambda cfg: ScriptedEngine())
