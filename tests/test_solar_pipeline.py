"""`reasonscale lab solar` end to end at a tiny size (a scripted base policy, a tiny real model to tune and score):
every method at every budget, the matched arms along the curve, the report and its plot; a re-run makes no model
call and trains nothing. And `reasonscale solar tune` / `solar trm` from a TAG export."""

from __future__ import annotations

import json

import pytest
import yaml
from test_search import NoisyLabPolicy
from typer.testing import CliRunner

from reasonscale.cli import app
from reasonscale.config_loading import load_config
from reasonscale.engines.hf import HFEngine
from reasonscale.pipelines.solar_lab import METHODS, SolarConfig, run_solar
from reasonscale.pipelines.solar_matched import MATCHED, PAIRS
from reasonscale.pipelines.solar_results import matched_chains

FAST = {"log": {"logging_steps": 1, "cpu_threads": 1}}


def solar_config(tmp_path, tiny, **changes) -> SolarConfig:
    return SolarConfig.model_validate({
        "model": {"path": str(tiny), "device": "cpu"},
        "train_task": {"name": "lab", "split": "train", "lab": {"levels": [2, 3], "per_level": 4}},
        "test_task": {"name": "lab", "split": "test", "lab": {"levels": [2, 3], "per_level": 2}},
        "tune_task": {"name": "lab", "split": "train", "lab": {"levels": [2, 3], "per_level": 5}},
        "sampling": {"temperature": 0.8, "max_tokens": 24},
        "topologies": [{"name": "cot", "n": 1},
                       {"name": "tot", "n": 1, "children": 2, "depth": 4, "verifier": "oracle"}],
        "responses": 2,
        "trm": {"training": {"lora": {"enabled": False}, "optim": {"max_steps": 3, "batch_size": 4}, **FAST}},
        "tune": {"training": {"optim": {"max_steps": 3, "batch_size": 4, "learning_rate": 1e-3}, **FAST}},
        "evaluate": {"budgets": [1, 2], "matched": True},
        "output_dir": str(tmp_path / "solar"),
    } | changes)  # fmt: skip


class CountingHF(HFEngine):
    calls = 0

    def complete(self, requests, params):
        self.calls += 1
        return super().complete(requests, params)


class Engines:
    """The scripted policy stands in for the base model; the tuned model runs for real. Counts model calls."""

    def __init__(self, base: str):
        self.base, self.made = base, []

    def __call__(self, run):
        engine = NoisyLabPolicy() if run.model.path == self.base else CountingHF(run.model.path, device="cpu")
        self.made.append(engine)
        return engine

    def calls(self) -> int:
        return sum(e.calls for e in self.made)


def test_lab_solar_end_to_end_and_rerun_is_free(tmp_path, tiny_model_dir):
    cfg = solar_config(tmp_path, tiny_model_dir)
    engines = Engines(str(tiny_model_dir))
    summary = run_solar(cfg, show_progress=False, engine_factory=engines)
    assert engines.calls() > 0
    curve = summary["curve"]
    assert set(curve) == set(summary["methods"]) == set(METHODS) | set(MATCHED) and summary["budgets"] == [1, 2]
    for method, points in curve.items():  # one point per budget, the largest one the methods' table
        assert [p["budget"] for p in points] == [1, 2] and summary["methods"][method] == points[-1]
        assert all(0 <= p["accuracy"] <= 1 and p["generated_tokens"] > 0 for p in points)
    for method in METHODS:
        assert [p["n"] for p in curve[method]] == [1, 2]
    assert curve["rewarding"][0]["generated_tokens"] < curve["rewarding"][1]["generated_tokens"]
    best = summary["trainings"]["shared"]["tag"]["tag-train"]["best_single"]["variant"]
    for policy, arm in (("base", "base-matched"), ("tuned", "tuning-matched")):
        topological, chains = PAIRS[policy]
        for i, budget in enumerate([1, 2]):  # at each budget, N chains at that point's topological tokens
            n, topo = curve[arm][i]["n"], curve[topological][i]
            assert n == matched_chains(topo, curve[chains][i], budget)
            per_chain = curve[chains][i]["generated_tokens"] / budget
            assert abs(n * per_chain - topo["generated_tokens"]) <= per_chain / 2 + 1e-9
            assert abs(curve[arm][i]["generated_tokens"] - n * per_chain) <= per_chain
        oracle = "chains-oracle" if policy == "base" else "tuned-chains-oracle"
        assert [p["n"] for p in curve[oracle]] == [p["n"] for p in curve[arm]]
        single = "best-topology" if policy == "base" else "tuned-best-topology"  # N responses of it at those tokens
        outcomes = topological_outcomes(tmp_path / "solar", f"eval-{policy}-single")
        assert {len(o["settings"]["topologies"]) for o in outcomes} == {1}
        assert {o["settings"]["topologies"][0]["name"] for o in outcomes} == {best.split("[")[0]}
        one = [o["generated_tokens"] for o in outcomes if o["budget"] == 1]
        per_response = sum(one) / len(one)
        assert [p["n"] for p in curve[single]] == [max(1, round(t["generated_tokens"] / per_response))
                                                   for t in curve[topological]]  # fmt: skip
    assert {"rewarding beats base-matched", "hybrid beats tuned-best-topology"} <= set(summary["targets"])
    assert set(summary["trainings"]) == {"shared"} and set(summary["reward_models"]["by_training"]) == {"shared"}
    assert set(summary["reward_models"]["metrics"]) == {"m-trm", "trm-answer", "trm-topology", "reward"}
    m_trm = summary["reward_models"]["metrics"]["m-trm"]
    assert m_trm["questions"] == 4 and 0 <= m_trm["selection_accuracy"] <= 1 and 0 <= m_trm["within_auc"] <= 1
    answer_only = summary["reward_models"]["metrics"]["trm-answer"]
    gain = m_trm["selection_accuracy"] - answer_only["selection_accuracy"]
    assert m_trm["selection_minus_trm-answer"] == pytest.approx(gain) and "selection_minus_reward_se" in m_trm
    assert summary["reward_models"]["spread"]["m-trm"]["selection_accuracy"] == 0
    training = summary["trainings"]["shared"]
    stages = [s["stage"] for s in training["tuning"]["filters"]]
    assert stages == ["balanced", "hard_label", "serialize_unique", "reward"] and training["tuning"]["trained"]
    assert training["tag"]["tag-tune"]["questions"] == 10 and training["tag"]["tag-train"]["questions"] == 8
    assert training["tuning"]["filters"][0]["in"] == 10 * 2 * 2  # the tuning set is drawn from tune_task's TAG
    assert summary["tag_test"]["questions"] == 4
    assert set(summary["length_by_segment"]) == {"base", "tuned"}
    report = (tmp_path / "solar" / "solar_report.md").read_text()
    assert "| hybrid |" in report and "| m-trm |" in report and "solar_curve.png" in report
    assert "M-TRM selection accuracy minus (paired over questions): reward " in report
    assert "| tuned-chains-oracle | 2 |" in report and "| base | 1 | 1 |" in report
    assert (tmp_path / "solar" / "solar_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again_engines = Engines(str(tiny_model_dir))
    again = run_solar(cfg, show_progress=False, engine_factory=again_engines)
    assert again_engines.calls() == 0 and not again["trainings"]["shared"]["tuning"]["trained"]
    assert again["curve"] == summary["curve"] and set(again["model_calls"].values()) == {0}
    kinds = ("base", "tuned", "base-matched", "tuned-matched", "base-single", "tuned-single")
    runs = {f"eval-{kind}-s{s}" for kind in kinds for s in (0, 1)}
    assert set(again["model_calls"]) == runs
    assert all(set(m["accuracy_by_seed"]) == {"0", "1"} for m in summary["methods"].values())


def topological_outcomes(out, run: str) -> list[dict]:
    """Every `topological` outcome in the runs `<run>-s0` and `<run>-s1`."""
    lines = [line for s in (0, 1) for line in (out / f"{run}-s{s}" / "results.jsonl").read_text().splitlines()]
    return [o for line in lines for o in json.loads(line)["outcomes"] if o["strategy"] == "topological"]


def test_matched_chains_are_the_closest_count_in_tokens():
    assert matched_chains({"generated_tokens": 730.0}, {"generated_tokens": 235.0}, 4) == 12
    assert matched_chains({"generated_tokens": 10.0}, {"generated_tokens": 400.0}, 4) == 1


def test_solar_tune_and_trm_commands_from_a_tag_export(tmp_path, tiny_model_dir):
    cfg = solar_config(tmp_path, tiny_model_dir)
    from reasonscale.pipelines.annotate import run_annotation

    run_annotation(cfg.annotation(cfg.train_task, tmp_path / "solar" / "tag"), False, lambda c: NoisyLabPolicy())
    tag = str(tmp_path / "solar" / "tag")
    tune = tmp_path / "tune.yaml"
    tune.write_text(yaml.safe_dump({
        "annotations": tag, "task": cfg.train_task.model_dump(), "model": {"path": str(tiny_model_dir)},
        "filters": {"per_segment": 2}, "training": {"optim": {"max_steps": 2, "batch_size": 4}, **FAST},
        "output_dir": str(tmp_path / "tuned"),
    }))  # fmt: skip
    result = CliRunner().invoke(app, ["solar", "tune", str(tune), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "hard_label:" in result.output and "model trained" in result.output
    report = json.loads((tmp_path / "tuned" / "tune_report.json").read_text())
    assert report["examples"] == len((tmp_path / "tuned" / "tune.jsonl").read_text().splitlines()) > 0
    trm = tmp_path / "trm.yaml"
    trm.write_text(yaml.safe_dump({
        "annotations": tag, "task": cfg.train_task.model_dump(), "model": {"path": str(tiny_model_dir)},
        "single_task": False, "training": {"lora": {"enabled": False}, "optim": {"max_steps": 2}, **FAST},
        "output_dir": str(tmp_path / "trm"),
    }))  # fmt: skip
    result = CliRunner().invoke(app, ["solar", "trm", str(trm), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "m-trm:" in result.output and "selection_accuracy" in result.output
    bad = CliRunner().invoke(app, ["solar", "tune", str(tune), "--set", "filters.top_k=1"])
    assert bad.exit_code == 2 and "reward model" in bad.output


def test_the_example_config_is_valid():
    cfg = load_config("examples/lab_solar.yaml", [], SolarConfig)
    assert {t.name for t in cfg.topologies} == {"cot", "tot", "got", "mcts"} and cfg.policy == "default"
    assert cfg.evaluate.budgets == [2, 4, 8] and cfg.evaluate.n == 8 and cfg.evaluate.seeds_vary == "evaluation"
