"""The evaluation pipeline with scripted engines: strategy choices, budgets, structured records, compute
accounting, run identity, caching and resume."""

import json
import os

import pytest

from reasonscale.config import ConfigError, ModelConfig, RunConfig, SamplingConfig, StrategyConfig, TaskConfig
from reasonscale.engines.base import Engine
from reasonscale.pipelines import evaluate
from reasonscale.types import Completion
from reasonscale.verifiers.base import Verifier
from toys import LastWordTask


class ScriptedEngine(Engine):
    """Sample i of every prompt answers SCRIPT[i] in one 3-token completion; greedy answers 5. Counts calls."""

    SCRIPT = ["3", "7", "3", "7", "7", "1", "3", "3"]
    model_id = "scripted"
    num_parameters = 10

    def __init__(self, caches_prefixes: bool = False):
        self.calls = 0
        self.caches_prefixes = caches_prefixes

    def complete(self, requests, params):
        self.calls += len(requests)
        out = []
        for r in requests:
            answer = "5" if params.temperature == 0 else self.SCRIPT[r.index % len(self.SCRIPT)]
            out.append(Completion(f"step\nso {answer}", "stop", len(r.prompt), 3))
        return out


class StepEngine(Engine):
    """Writes `steps` one-token steps 's' (each ended by the step delimiter), then the answer line 'so 7'."""

    model_id = "steps"
    num_parameters = 10

    def __init__(self, steps: int = 3):
        self.steps = steps

    def complete(self, requests, params):
        out = []
        for r in requests:
            written = r.prompt.count("s\n")
            if written < self.steps and "\n" in params.stop:
                out.append(Completion("s", "stop", len(r.prompt), 1, stop="\n"))
            else:
                tail = "s\n" * max(0, self.steps - written) + "so 7"
                out.append(Completion(tail, "stop", len(r.prompt), max(0, self.steps - written) + 2))
        return out


class FirstSevenVerifier(Verifier):
    """Scores a candidate 0.9 if its answer is 7 else 0.1; spends no tokens."""

    def score(self, problems, step_lists):
        self.usage.verifier_calls += len(step_lists)
        return [[0.5, 0.9 if steps and steps[-1].endswith("7") else 0.1] for steps in step_lists]


class CostedVerifier(FirstSevenVerifier):
    """Like FirstSevenVerifier, but an item costs as many tokens as its answer's value, 100 FLOPs each."""

    def score_items(self, problems, step_lists):
        from reasonscale.types import Usage

        costs = []
        for steps in step_lists:
            tokens = int(steps[-1].split()[-1])
            flops = 100.0 * tokens
            costs.append(Usage(verifier_calls=1, verifier_tokens=tokens, flops=flops, verifier_flops=flops))
        for cost in costs:
            self.usage += cost
        return self.score(problems, step_lists), costs


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


def run(cfg, engine=None):
    engine = engine or ScriptedEngine()
    return evaluate.run_evaluation(cfg, show_progress=False, engine_factory=lambda c: engine)


def records(cfg):
    return [json.loads(line) for line in open(f"{cfg.output_dir}/results.jsonl")]


def outcome(record, strategy, budget, **settings):
    found = [
        o
        for o in record["outcomes"]
        if o["strategy"] == strategy and o["budget"] == budget and settings.items() <= o["settings"].items()
    ]
    assert len(found) == 1, found
    return found[0]


def test_strategies_and_budgets(setup):
    engine = ScriptedEngine()
    summary = run(setup, engine)
    acc = summary["accuracy"]
    assert acc["greedy@1"] == 0.0
    assert acc["majority@1"] == 0.0  # "3"
    assert acc["majority@2"] == 0.0  # 3 vs 7 tie: the earliest group wins
    assert acc["majority@4"] == 0.0  # 3,7,3,7 tie -> 3
    assert acc["majority@8"] == 0.0  # 3 x4, 7 x3
    assert acc["best_of_n[fake]@1"] == 0.0 and acc["best_of_n[fake]@2"] == 1.0
    # min aggregation: every candidate scores min(0.5, .) so 7s weigh 0.5 and others 0.1
    assert acc["weighted_best_of_n[fake,min]@8"] == 1.0
    assert acc["pass_at_k@1"] == pytest.approx(3 / 8)
    assert acc["pass_at_k@8"] == 1.0
    assert summary["problems"] == 3 and set(summary["accuracy_by_level"]) == {"1", "2"}
    assert engine.calls == 3 * 8 + 3  # one pool of 8 shared by every pool strategy, one greedy sample


def test_records_hold_structured_strategies_and_costs(setup):
    summary = run(setup)
    first = records(setup)[0]
    assert [r["id"] for r in records(setup)] == ["q0", "q1", "q2"]
    assert len(first["candidates"]) == 8 and first["candidates"][1]["answer"] == "7"
    majority = outcome(first, "majority", 4)
    assert majority["settings"] == {} and majority["label"] == "majority"
    assert majority["generations"] == 4 and majority["generation_budget"] == 4
    assert majority["tokens"] == 4 * (3 + 3) and majority["generated_tokens"] == 4 * 3
    weighted = outcome(first, "weighted_best_of_n", 8)
    assert weighted["settings"]["aggregate"] == "min" and weighted["settings"]["verifier"] == "fake"
    curves = {c["label"]: c for c in summary["strategies"]}
    assert [p["budget"] for p in curves["majority"]["points"]] == [1, 2, 4, 8]
    assert summary["usage"]["generated_tokens"] == 3 * 9 * 3 and summary["usage"]["model_calls"] == 27
    report = open(f"{setup.output_dir}/report.md").read()
    assert "| majority@8 | 8 |" in report and "FLOPs" in report
    assert os.path.getsize(f"{setup.output_dir}/accuracy.png") > 1000


def test_flops_count_prompts_only_where_the_engine_recomputes_them(setup):
    run(setup, ScriptedEngine(caches_prefixes=False))
    recomputed = outcome(records(setup)[0], "majority", 4)
    assert recomputed["flops"] == 2 * 10 * (4 * 3 + recomputed["prompt_tokens"])
    cached = setup.model_copy(update={"output_dir": setup.output_dir + "-cached"})
    run(cached, ScriptedEngine(caches_prefixes=True))
    assert outcome(records(cached)[0], "majority", 4)["flops"] == 2 * 10 * 4 * 3


def test_each_candidate_pays_its_own_verifier_cost(setup, monkeypatch):
    monkeypatch.setattr(evaluate, "build_verifier", lambda *args, **kw: CostedVerifier())
    run(setup)
    first = records(setup)[0]
    tokens = [c["verifier_cost"]["fake"]["tokens"] for c in first["candidates"]]
    assert tokens == [int(c["answer"]) for c in first["candidates"]] and len(set(tokens)) > 1
    chosen = outcome(first, "best_of_n", 2)
    assert chosen["verifier_tokens"] == sum(tokens[:2]) and chosen["verifier_flops"] == 100.0 * sum(tokens[:2])
    assert chosen["flops"] == chosen["policy_flops"] + chosen["verifier_flops"]
    assert outcome(first, "majority", 2)["verifier_tokens"] == 0  # majority pays no verifier


def test_rerun_makes_no_model_calls(setup):
    run(setup)
    first = open(f"{setup.output_dir}/results.jsonl").read()
    again = ScriptedEngine()
    summary = run(setup, again)
    assert again.calls == 0 and summary["usage"]["model_calls"] == 0
    assert open(f"{setup.output_dir}/results.jsonl").read() == first


def test_run_identity_ignores_throughput_settings_only(setup):
    key = evaluate.run_key(setup, "scripted")
    faster = setup.model_copy(update={"model": setup.model.model_copy(update={"max_batch_size": 7, "concurrency": 3})})
    hotter = setup.model_copy(update={"sampling": setup.sampling.model_copy(update={"temperature": 1.1})})
    assert evaluate.run_key(faster, "scripted") == key
    assert evaluate.run_key(hotter, "scripted") != key
    assert evaluate.run_key(setup, "scripted:bfloat16") != key  # another dtype or weights of the policy
    smaller_cache = setup.model.model_copy(update={"prefix_cache_mb": 64})
    no_cache = setup.model.model_copy(update={"prefix_cache_mb": 0})
    assert evaluate.run_key(setup.model_copy(update={"model": smaller_cache}), "scripted") == key
    assert evaluate.run_key(setup.model_copy(update={"model": no_cache}), "scripted") != key  # FLOPs change


def test_retrained_policy_in_place_changes_the_run_key(setup, tmp_path):
    from conftest import build_tiny_model

    model = build_tiny_model(tmp_path / "policy", seed=0)
    cfg = setup.model_copy(update={"model": ModelConfig(path=str(model), device="cpu")})
    before = evaluate.run_key(cfg)
    assert evaluate.run_key(cfg) == before
    build_tiny_model(model, seed=1)  # retrained into the same directory
    assert evaluate.run_key(cfg) != before
    as_bf16 = cfg.model_copy(update={"model": cfg.model.model_copy(update={"dtype": "bfloat16"})})
    assert evaluate.run_key(as_bf16) != evaluate.run_key(cfg)


def test_retrained_verifier_in_place_changes_the_run_key(setup, tmp_path):
    prm = tmp_path / "prm"
    prm.mkdir()
    (prm / "config.json").write_text("{}")
    (prm / "model.safetensors").write_bytes(b"weights-v1")
    cfg = setup.model_copy(
        update={"strategies": [StrategyConfig(name="best_of_n", n=4, verifier="prm", verifier_path=str(prm))]}
    )
    before = evaluate.run_key(cfg, "scripted")
    (prm / "model.safetensors").write_bytes(b"weights-v22")  # same path, new content
    assert evaluate.run_key(cfg, "scripted") != before
    tagged = StrategyConfig(name="best_of_n", n=4, verifier="prm", verifier_path=str(prm), verifier_options={"a": 1})
    other = cfg.model_copy(update={"strategies": [tagged]})
    assert evaluate.run_key(other, "scripted") != evaluate.run_key(cfg, "scripted")


def test_changed_strategy_reuses_cached_samples(setup):
    run(setup)
    bigger = setup.model_copy(update={"strategies": [StrategyConfig(name="majority", n=4)]})
    engine = ScriptedEngine()
    summary = run(bigger, engine)
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


def test_best_of_n_without_verifier_is_rejected():
    with pytest.raises(ValueError, match="needs a verifier"):
        StrategyConfig(name="best_of_n", n=4)


def step_config(setup, *strategies):
    return setup.model_copy(update={"strategies": list(strategies)})


def test_two_beam_widths_are_two_result_series(setup):
    cfg = step_config(
        setup,
        StrategyConfig(name="beam", n=4, verifier="fake", beam_width=2),
        StrategyConfig(name="beam", n=4, verifier="fake", beam_width=4),
    )
    summary = evaluate.run_evaluation(cfg, show_progress=False, engine_factory=lambda c: StepEngine())
    curves = {c["label"]: c for c in summary["strategies"]}
    assert set(curves) == {"beam[fake,M=2]", "beam[fake,M=4]"}
    assert curves["beam[fake,M=2]"]["settings"]["beam_width"] == 2
    assert {"beam[fake,M=2]@4", "beam[fake,M=4]@4"} <= set(summary["accuracy"])
    first = records(cfg)[0]
    assert outcome(first, "beam", 4, beam_width=2)["label"] == "beam[fake,M=2]"


def test_identical_strategies_are_an_error(setup):
    same = [{"name": "majority", "n": 4}, {"name": "majority", "n": 8}]  # n and budgets only pick budgets
    with pytest.raises(ValueError, match="strategies 0 and 1 are the same strategy"):
        RunConfig.model_validate({**setup.model_dump(), "strategies": same})
    RunConfig.model_validate({**setup.model_dump(), "strategies": [same[0], {"name": "pass_at_k", "n": 8}]})


def test_lookahead_costs_n_times_k_plus_one_and_totals_include_search(setup):
    cfg = step_config(
        setup,
        StrategyConfig(name="beam", n=4, budgets=[4], verifier="fake"),
        StrategyConfig(name="lookahead", n=4, budgets=[4], verifier="fake", lookahead=2),
    )
    summary = evaluate.run_evaluation(cfg, show_progress=False, engine_factory=lambda c: StepEngine(steps=3))
    beam = summary["cost_per_problem"]["beam[fake]@4"]
    ahead = summary["cost_per_problem"]["lookahead[fake]@4"]
    points = {c["strategy"]: c["points"][0] for c in summary["strategies"]}
    assert points["beam"]["generation_budget"] == 4 and points["lookahead"]["generation_budget"] == 4 * 3
    # every scored open beam is rolled 2 greedy steps ahead: more generations and tokens than beam at equal N
    assert ahead["generations"] > beam["generations"] and ahead["generated_tokens"] > beam["generated_tokens"]
    per_problem = [sum(o["generated_tokens"] for o in r["outcomes"]) for r in records(cfg)]
    assert summary["usage"]["generated_tokens"] == sum(per_problem)  # step-search tokens are in the totals
    assert summary["usage"]["generated_tokens"] == 3 * (beam["generated_tokens"] + ahead["generated_tokens"])


def test_unknown_strategy_is_named_with_a_suggestion():
    with pytest.raises(ConfigError, match="unknown strategy 'beem'; did you mean 'beam'"):
        StrategyConfig(name="beem")
