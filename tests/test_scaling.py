"""Difficulty bins, the cross-validated compute-optimal policy, and the FLOPs exchange formulas."""

from __future__ import annotations

import json

import pytest

from reasonscale.config import ModelConfig, RunConfig, SamplingConfig, StrategyConfig, TaskConfig
from reasonscale.scaling.bins import assign_bins, bin_of, predicted_score, quantile_bins, quantile_edges
from reasonscale.scaling.flops import (
    exchange_rows,
    inference_flops,
    matched_multiplier,
    pretraining_flops,
    token_ratio,
    total_flops,
)
from reasonscale.scaling.policy import budget_to_match, cross_validate, halves, select


def test_bins_are_quantiles_easiest_first():
    scores = [i / 10 for i in range(10)]
    edges = quantile_edges(scores, 5)
    assert edges == [0.2, 0.4, 0.6, 0.8]
    bins = [bin_of(s, edges) for s in scores]
    assert bins == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    assert all(bins.count(b) == 2 for b in range(1, 6))
    assert bin_of(0.5, [0.5]) == 1 and bin_of(0.49, [0.5]) == 2
    assert quantile_bins({f"q{i}": s for i, s in enumerate(scores)}) == {f"q{i}": b for i, b in enumerate(bins)}
    tied = quantile_bins({f"q{i}": 0.0 for i in range(8)} | {"a": 1.0, "b": 1.0})  # ties fill bins equally
    assert sorted(tied.values()) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5] and tied["a"] <= 2 and tied["b"] <= 2


class Guarded(dict):
    """A sample whose grade, answer and text must not be read."""

    def __getitem__(self, key):
        assert key not in {"correct", "answer", "text", "reference"}, f"read {key}"
        return super().__getitem__(key)

    def get(self, key, default=None):
        assert key not in {"correct", "answer", "text", "reference"}, f"read {key}"
        return super().get(key, default)


def scored(correct: bool, score: float) -> dict:
    return {"text": "x", "answer": "1", "correct": correct, "step_scores": {"v": [0.1, score]}}


def test_predicted_bins_never_read_a_gold_answer():
    candidates = [Guarded(scored(True, 0.8)), Guarded(scored(False, 0.4))]
    assert predicted_score(candidates, "v") == pytest.approx(0.6)
    records = [{"id": f"q{i}", "reference": "1", "candidates": [scored(i % 2 == 0, i / 10)] * 2} for i in range(10)]
    assign_bins(records, "v")
    before = [r["bins"] for r in records]
    for r in records:  # other gold answers and grades: oracle bins move, predicted bins do not
        r["reference"] = "2"
        r["candidates"] = [{**c, "correct": not c["correct"], "answer": "9"} for c in r["candidates"]]
    assign_bins(records, "v")
    assert [b["predicted"] for b in before] == [r["bins"]["predicted"] for r in records]
    assert [b["oracle"] for b in before] != [r["bins"]["oracle"] for r in records]
    assert [b["predicted"] for b in before] == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]


def outcome(strategy: str, budget: int, correct: float, tokens: int = 10) -> dict:
    return {"strategy": strategy, "label": strategy, "settings": {}, "budget": budget, "generation_budget": budget,
            "correct": correct, "generated_tokens": tokens}


def test_halves_partition_the_questions():
    records = [{"id": f"q{i}"} for i in range(11)]
    a, b = halves(records)
    ids_a, ids_b = {r["id"] for r in a}, {r["id"] for r in b}
    assert not ids_a & ids_b and len(ids_a | ids_b) == 11 and abs(len(a) - len(b)) <= 1


def test_cross_validated_policy_never_selects_on_the_half_it_reports():
    records = [{"id": f"q{i}", "bins": {"oracle": 1}} for i in range(20)]
    first, _ = halves(records)
    in_first = {r["id"] for r in first}
    for r in records:  # strategy x is right exactly on the first half, y on the second
        x = float(r["id"] in in_first)
        r["outcomes"] = [outcome("x", 4, x), outcome("y", 4, 1.0 - x)]
    seen = []

    def spy(chosen_on, kind):
        seen.append({r["id"] for r in chosen_on})
        return select(chosen_on, kind)

    result = cross_validate(records, "oracle", selector=spy)
    for fold, ids in zip(result["folds"], seen):
        assert set(fold["select"]) == ids and not ids & set(fold["report"])
    assert seen[0] | seen[1] == {r["id"] for r in records} and not seen[0] & seen[1]
    # selected in-sample, the policy would score 1.0; chosen on the other half it always picks the wrong one
    assert select(records, "oracle")[0]["strategy"] in {"x", "y"}
    (point,) = result["points"]
    assert point["accuracy"] == 0.0 and point["questions"] == 20


def test_policy_picks_per_bin_and_budget():
    records = []
    for i in range(40):
        b = 1 if i % 2 else 5
        records.append({"id": f"q{i}", "bins": {"oracle": b}, "outcomes": [
            outcome("parallel", 4, float(b == 5)), outcome("sequential", 4, float(b == 1)),
            outcome("parallel", 16, 1.0, tokens=50), outcome("sequential", 16, 1.0, tokens=40)]})
    choices = {(c["budget"], c["bin"]): c["strategy"] for c in select(records, "oracle")}
    assert choices[4.0, 1] == "sequential" and choices[4.0, 5] == "parallel"
    assert choices[16.0, 1] == "sequential"  # a tie in accuracy goes to fewer generated tokens
    result = cross_validate(records, "oracle")
    assert [p["accuracy"] for p in result["points"]] == [1.0, 1.0]
    curve = [{"generation_budget": 16, "accuracy": 0.8}, {"generation_budget": 4, "accuracy": 0.5},
             {"generation_budget": 64, "accuracy": 0.7}]
    assert budget_to_match(curve, 0.65) == pytest.approx(8.0)  # halfway from 0.5 to 0.8: halfway from 4 to 16 in log
    assert budget_to_match(curve, 0.5) == 4 and budget_to_match(curve, 0.3) == 4
    assert budget_to_match(curve, 0.8) == 16 and budget_to_match(curve, 0.9) is None


def test_flops_formulas_on_hand_computed_cases():
    assert pretraining_flops(1e6, 2e9) == 1.2e16  # 6 x 1e6 x 2e9
    assert inference_flops(1e6, 100) == 2e8
    assert token_ratio(1e9, 4e9) == 0.25
    assert matched_multiplier(14, 1.0) == 14 + 39  # M + 3(M-1)/R
    assert matched_multiplier(4, 0.5) == pytest.approx(22.0)
    assert matched_multiplier(1, 22) == 1.0
    # the identity behind X: the small model with X times its inference costs what the large one does
    n, d, r, m = 1e6, 1e9, 0.79, 14
    x = matched_multiplier(m, r)
    assert total_flops(n, d, r * d, x) == pytest.approx(total_flops(m * n, d, r * d))
    with pytest.raises(ValueError):
        matched_multiplier(0.5, 1.0)


def test_exchange_rows_give_the_small_model_only_budgets_it_was_evaluated_at():
    curve = [{"generation_budget": 1, "accuracy": 0.3}, {"generation_budget": 16, "accuracy": 0.5},
             {"generation_budget": 64, "accuracy": 0.6}]
    rows = exchange_rows(curve, large_accuracy=0.55, m=4, ratios=[0.16, 22.0])
    assert rows[0]["X"] == pytest.approx(4 + 9 / 0.16) and rows[0]["budget_used"] == 16  # X = 60.25
    assert rows[0]["small"] == 0.5 and rows[0]["winner"] == "pretraining"
    assert rows[1]["X"] == pytest.approx(4 + 9 / 22) and rows[1]["budget_used"] == 1


def test_exchange_rows_in_flops_charge_the_verifier_and_the_resent_context():
    # per question: the large model's answer costs 400 FLOPs; M = 4, so the small model writes it for 100, and
    # may spend X * 100. Budget 16 costs 3000 FLOPs with its verifier: beyond X = 4.41 (R = 22), within 60.25.
    curve = [{"generation_budget": 1, "accuracy": 0.3, "flops": 150.0},
             {"generation_budget": 16, "accuracy": 0.5, "flops": 3000.0},
             {"generation_budget": 64, "accuracy": 0.6, "flops": 12000.0}]
    low_r, high_r = exchange_rows(curve, large_accuracy=0.4, m=4, ratios=[0.16, 22.0], large_flops=400.0)
    assert low_r["compute"] == "flops" and low_r["limit"] == pytest.approx(6025.0)
    assert low_r["budget_used"] == 16 and low_r["flops_used"] == 3000.0 and low_r["winner"] == "test-time"
    assert high_r["limit"] == pytest.approx(440.9, abs=0.1) and high_r["budget_used"] == 1
    assert high_r["small"] == 0.3 and high_r["winner"] == "pretraining" and not high_r["beyond_curve"]


def test_runs_record_bins_and_summaries_break_down_by_bin(tmp_path, monkeypatch):
    from reasonscale.pipelines import evaluate
    from test_evaluate import FirstSevenVerifier, ScriptedEngine
    from toys import LastWordTask

    monkeypatch.setattr(evaluate, "build_task", lambda cfg: LastWordTask(10))
    monkeypatch.setattr(evaluate, "build_verifier", lambda *args, **kw: FirstSevenVerifier())
    cfg = RunConfig(
        model=ModelConfig(path="scripted"),
        task=TaskConfig(name="jsonl"),
        sampling=SamplingConfig(temperature=1.0, max_tokens=8),
        strategies=[
            StrategyConfig(name="majority", n=8),
            StrategyConfig(name="weighted_best_of_n", n=8, verifier="fake"),
            StrategyConfig(name="revise", length=2, select="majority", budgets=[2, 4]),
        ],
        output_dir=str(tmp_path / "run"),
    )
    summary = evaluate.run_evaluation(cfg, show_progress=False, engine_factory=lambda c: ScriptedEngine())
    records = [json.loads(line) for line in open(tmp_path / "run" / "results.jsonl")]
    assert all(set(r["bins"]) == {"oracle", "predicted"} for r in records)
    revise = [o for o in records[0]["outcomes"] if o["strategy"] == "revise" and o["budget"] == 4]
    assert len(revise) == 1 and len(revise[0]["details"]["correct"]) == 2
    point = summary["strategies"][0]["points"][-1]
    assert set(point["accuracy_by_bin"]) == {"oracle", "predicted"}
    assert sum(summary["problems_by_bin"]["oracle"].values()) == 10
    report = (tmp_path / "run" / "report.md").read_text()
    assert "Oracle difficulty bins" in report and "Predicted difficulty bins" in report


def test_scaling_fit_writes_a_policy_that_a_run_applies_by_predicted_bin(tmp_path, monkeypatch):
    from reasonscale.config_loading import load_config
    from reasonscale.pipelines import evaluate
    from reasonscale.pipelines.scaling import fit
    from test_evaluate import FirstSevenVerifier, ScriptedEngine
    from toys import LastWordTask

    monkeypatch.setattr(evaluate, "build_task", lambda cfg: LastWordTask(12))
    monkeypatch.setattr(evaluate, "build_verifier", lambda *args, **kw: FirstSevenVerifier())
    cfg = RunConfig(
        model=ModelConfig(path="scripted"),
        task=TaskConfig(name="jsonl"),
        sampling=SamplingConfig(temperature=1.0, max_tokens=8),
        strategies=[
            StrategyConfig(name="majority", n=8),
            StrategyConfig(name="weighted_best_of_n", n=8, verifier="fake"),
            StrategyConfig(name="revise", length=2, verifier="fake", budgets=[2, 4, 8]),
        ],
        output_dir=str(tmp_path / "run"),
    )
    engine = ScriptedEngine()
    evaluate.run_evaluation(cfg, show_progress=False, engine_factory=lambda c: engine)
    result = fit(tmp_path / "run")
    assert set(result["policies"][0]["cross_validated"]) == {"oracle", "predicted"}
    from typer.testing import CliRunner

    from reasonscale.cli import app

    shown = CliRunner().invoke(app, ["scaling", "fit", str(tmp_path / "run")])
    assert shown.exit_code == 0 and "predicted bins" in shown.output and "policy.yaml" in shown.output
    missing = CliRunner().invoke(app, ["scaling", "fit", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "summary.json" in missing.output
    baseline = {p["generation_budget"]: p["accuracy"] for p in result["policies"][0]["baseline"]}
    for cv in result["policies"][0]["cross_validated"].values():
        assert [p["generation_budget"] for p in cv["points"]] == [1.0, 2.0, 4.0, 8.0]
        assert all(p["questions"] == 12 for p in cv["points"])
        for p in cv["points"]:  # the paired difference is over the same 12 questions
            if p["generation_budget"] in baseline:
                assert p["vs_baseline"] == pytest.approx(p["accuracy"] - baseline[p["generation_budget"]])
            if p["baseline_budget"] is None:
                assert p["saving_above"] == max(baseline) / p["generation_budget"]
    policy_cfg = load_config(tmp_path / "run" / "scaling" / "policy.yaml")
    assert policy_cfg.policy and policy_cfg.difficulty.edges == result["edges"]["predicted"]
    calls = engine.calls
    summary = evaluate.run_evaluation(policy_cfg, show_progress=False, engine_factory=lambda c: engine)
    assert engine.calls == calls  # the fitted run's samples are reused
    (curve,) = [c for c in summary["strategies"] if c["strategy"] == "compute_optimal"]
    records = [json.loads(line) for line in open(f"{policy_cfg.output_dir}/results.jsonl")]
    by_bin = {(c.budget, c.bin): c for c in policy_cfg.policy}
    for point in curve["points"]:
        expected = []
        for r in records:
            budget = point["generation_budget"]
            choice = by_bin.get((budget, r["bins"]["predicted"])) or by_bin[budget, 0]
            (o,) = [o for o in r["outcomes"] if o["strategy"] == choice.strategy and o["settings"] == choice.settings
                    and o["generation_budget"] == choice.budget]
            expected.append(o["correct"])
        assert point["accuracy"] == pytest.approx(sum(expected) / len(expected))


class LabScript:
    """A scripted lab policy: sample i is the right solution when i is even, else the same with a wrong answer."""

    model_id = "lab-script"
    num_parameters = 10
    caches_prefixes = False
    preferred_batch = 64

    def __init__(self):
        self.calls = 0

    def complete(self, requests, params):
        from reasonscale.lab.graph import graph_of
        from reasonscale.types import Completion

        self.calls += len(requests)
        out = []
        for r in requests:
            graph = graph_of(r.prompt.strip().split("\n")[-1])
            text = graph.solution
            if r.index % 2:
                head, _, answer = text.rpartition("=")
                text = f"{head}={int(answer) + 1}"
            out.append(Completion(text, "stop", len(r.prompt), len(text)))
        return out


def test_lab_scaling_end_to_end_at_a_tiny_size_and_a_rerun_makes_no_model_call(tmp_path, tiny_model_dir):
    from reasonscale.engines.base import Engine
    from reasonscale.pipelines.lab_scaling import run_lab_scaling

    class Scripted(LabScript, Engine):
        pass

    config = tmp_path / "scaling.yaml"
    config.write_text(json.dumps({
        "policy": str(tiny_model_dir), "device": "cpu",
        "task": {"name": "lab", "lab": {"levels": [1], "per_level": 5}},
        "sampling": {"temperature": 1.0, "max_tokens": 12},
        "revision": {"train_per_level": 3, "samples": 4, "train": {"max_steps": 2, "batch_size": 4},
                     "verifier": {"enabled": True, "train_per_level": 1, "chains": 1, "length": 2,
                                  "train": {"epochs": 1, "batch_size": 4}}},
        "budgets": [1, 2, 4], "lengths": [1, 2], "output_dir": str(tmp_path / "out"), "large": str(tiny_model_dir),
    }))
    scripted = Scripted()
    result = run_lab_scaling(config, show_progress=False, engine_factory=lambda m: scripted)
    data = result["revision_data"]
    assert data["questions"] == 3 and data["examples"] == 6 and scripted.calls == 12
    assert result["revision_model"]["trained"] and result["revision_model"]["steps"] == 2
    assert result["model_calls"]["evaluation"] > 0 and len(result["chains"]["accuracy_by_revision"]) == 2
    assert set(result["compute_optimal"]["policies"][0]["cross_validated"]) == {"oracle", "predicted"}
    assert (tmp_path / "out" / "report.md").is_file()
    assert (tmp_path / "out" / "eval" / "scaling" / "policy.yaml").is_file()
    assert result["revision_verifier"]["examples"] == 2  # 1 question x 1 chain x 2 attempts
    assert {"revise[orm]", "weighted_best_of_n[orm]"} <= {label.split(",")[0].rstrip("]") + "]"
                                                         for label in result["verifiers"]}
    assert result["exchange"]["M"] == 1.0 and [r["R"] for r in result["exchange"]["bins"]["all"]] == [0.16, 0.79, 22.0]
    again = run_lab_scaling(config, show_progress=False, engine_factory=lambda m: scripted)
    assert again["model_calls"] == {"revision_data": 0, "evaluation": 0, "revision_verifier": 0, "large": 0}
    assert not again["revision_model"]["trained"]
    assert scripted.calls == 12


def test_exchange_compares_matched_test_time_compute_with_the_large_model_per_bin(tmp_path, monkeypatch):
    from reasonscale.pipelines import evaluate
    from reasonscale.pipelines.scaling import exchange
    from test_evaluate import FirstSevenVerifier, ScriptedEngine
    from toys import LastWordTask

    class Large(ScriptedEngine):
        model_id = "large"

        def complete(self, requests, params):  # greedy answers 7: always right
            return [c.__class__("step\nso 7", "stop", c.prompt_tokens, 3) for c in super().complete(requests, params)]

    monkeypatch.setattr(evaluate, "build_task", lambda cfg: LastWordTask(10))
    monkeypatch.setattr(evaluate, "build_verifier", lambda *args, **kw: FirstSevenVerifier())

    def run(name, engine, strategies):
        cfg = RunConfig(model=ModelConfig(path=name), task=TaskConfig(name="jsonl"),
                        sampling=SamplingConfig(temperature=1.0, max_tokens=8),
                        strategies=strategies, output_dir=str(tmp_path / name))
        evaluate.run_evaluation(cfg, show_progress=False, engine_factory=lambda c: engine)
        return tmp_path / name

    small = run("small", ScriptedEngine(), [StrategyConfig(name="greedy"), StrategyConfig(name="majority", n=8),
                                            StrategyConfig(name="weighted_best_of_n", n=8, verifier="fake")])
    large = run("large", Large(), [StrategyConfig(name="greedy")])
    result = exchange(small, large, m=1.5, ratios=[0.5, 100.0])
    (low, high) = result["bins"]["all"]
    # small: every method is wrong at budget 1 (greedy 5, sample 0 is 3); weighted best-of-N picks 7 from 2 on
    assert low["X"] == pytest.approx(1.5 + 1.5 / 0.5) and low["budget_used"] == 2 and low["small"] == 1.0
    assert low["large"] == 1.0 and low["winner"] == "tie"
    assert high["X"] == pytest.approx(1.515) and high["budget_used"] == 1 and high["small"] == 0.0
    assert high["winner"] == "pretraining"
    assert set(result["bins"]) >= {"all"} and (small / "scaling" / "exchange.png").is_file()
    assert (small / "scaling" / "exchange.png").is_file()


def test_the_lab_family_spans_over_ten_times_in_parameters_on_the_same_data():
    from reasonscale.lab.model import PRESETS, get_preset
    from reasonscale.lab.tokenizer import build_char_tokenizer

    FAMILY = {name: preset for name, preset in PRESETS.items() if name.startswith("family-")}
    assert len(FAMILY) == 4

    tokenizer = build_char_tokenizer()
    sizes = [p.model.build(tokenizer, 0).num_parameters(exclude_embeddings=True) for p in FAMILY.values()]
    assert sizes == sorted(sizes) and sizes[-1] / sizes[0] >= 10
    assert all(get_preset(name) is PRESETS[name] for name in FAMILY)
    data = {(p.train.max_steps, p.train.batch_size, p.train.seed, tuple(p.train.level_weights.items()))
            for p in FAMILY.values()}
    assert len(data) == 1  # one training stream: the same D tokens for every member


def test_predicted_bins_never_come_from_the_oracle():
    from reasonscale.config import DifficultySettings
    from reasonscale.pipelines import evaluate

    cfg = RunConfig(
        model={"path": "m"},
        task={"name": "lab"},
        strategies=[StrategyConfig(name="best_of_n", n=2, verifier="oracle")],
    )
    records = [
        {"id": str(i), "candidates": [{"correct": 1.0, "step_scores": {"oracle": [1.0]}}] * 2} for i in range(5)
    ]
    evaluate.difficulty_bins(records, cfg)
    assert all(r["bins"]["predicted"] is None for r in records)  # the oracle reads gold answers: no prediction
    with pytest.raises(ValueError, match="gold answer"):
        DifficultySettings(verifier="oracle")


def test_a_policy_chooses_only_strategies_of_its_own_verifier_or_none():
    from reasonscale.pipelines.scaling import baseline_verifiers, comparable

    def verified(strategy: str, verifier: str, correct: float) -> dict:
        o = outcome(strategy, 4, correct)
        o["settings"] = {"verifier": verifier, "n": 4} if strategy != "majority" else {"n": 4}
        return o

    records = [{"id": f"q{i}", "bins": {"oracle": 1}, "outcomes": [
        verified("weighted_best_of_n", "prm:/p", 0.0), verified("weighted_best_of_n", "oracle", 1.0),
        verified("majority", "", 0.5)]} for i in range(10)]
    only_prm = comparable(records, "prm:/p")
    assert [[o["settings"].get("verifier") for o in r["outcomes"]] for r in only_prm] == [["prm:/p", None]] * 10
    assert comparable(records, None) is records
    chosen = {c["label"] for c in select(only_prm, "oracle")}
    assert chosen == {"majority"}  # the better oracle strategy is out of reach of the PRM's policy
    assert baseline_verifiers(records, "oracle") == ["oracle", "prm:/p"]
    assert baseline_verifiers(records, None) == ["prm:/p", "oracle"]
    assert baseline_verifiers([{"id": "q", "outcomes": []}], None) == [None]
