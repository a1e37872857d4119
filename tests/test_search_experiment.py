"""The `lab search` experiment end to end on a tiny random policy: every strategy x verifier x budget is
reported, the PRM section is written, and a re-run resumes from the store without model calls or retraining;
a trained PRM lives in a directory keyed by its base model's content, its data and its settings; with two
sampling seeds the summary is the mean over them, with standard errors over problems."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import build_tiny_model

from reasonscale.config import ConfigError
from reasonscale.config_loading import load_config
from reasonscale.pipelines import search_experiment
from reasonscale.pipelines.search_experiment import SearchExperimentConfig, run_search_experiment, trained_prm
from reasonscale.summary import mean_se


def write_config(tmp_path, policy, **extra) -> str:
    config = {
        "policy": str(policy),
        "task": {"name": "lab", "split": "test", "lab": {"levels": [1, 2], "per_level": 2}},
        "sampling": {"temperature": 0.8, "max_tokens": 24, "seed": 0},
        "prm": {
            "train_per_level": 2,
            "samples": 2,
            "rollouts": 2,
            "completer": str(policy),
            "train": {"epochs": 1, "batch_size": 4},
        },
        "budgets": [1, 2],
        "max_rounds": 2,
        "step_max_tokens": 8,
        "output_dir": str(tmp_path / "run"),
        **extra,
    }
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_search_experiment_reports_every_strategy_and_resumes(tiny_model_dir, tmp_path):
    config = write_config(tmp_path, tiny_model_dir)
    summary = run_search_experiment(config, show_progress=False)
    names = set(summary["accuracy"])
    for verifier in ("oracle", "prm"):
        for strategy in ("best_of_n", "weighted_best_of_n", "beam", "lookahead", "dvts"):
            assert {f"{strategy}[{verifier}]@1", f"{strategy}[{verifier}]@2"} <= names
    assert {"majority@1", "majority@2"} <= names
    prm = summary["prm"]
    assert prm["train_solutions"] == 2 * 2 * 2 and prm["completer"] == str(tiny_model_dir)
    report = (tmp_path / "run" / "eval" / "report.md").read_text()
    assert "## Process reward model" in report and "accuracy.png" in report and "| within-problem AUC" in report
    assert set(prm["verifier"]["by_level"]) == {"1", "2"} and set(prm["verifier"]["all"]["selection"]) == {"2"}
    assert summary["seeds"] == [0] and (tmp_path / "run" / "report.md").is_file()
    prm_key = prm["verifier"]["verifier"]
    assert set(summary["verifiers"]) == {"oracle", prm_key}  # every verifier measured on the same pool
    assert summary["verifiers"][prm_key]["all"] == prm["verifier"]["all"]
    assert summary["verifiers"]["oracle"]["all"]["step_auc_first_error"] in (1.0, None)  # the oracle against itself
    top = (tmp_path / "run" / "report.md").read_text()
    assert "## Every verifier on the pools" in top and f"| {prm_key} |" in top
    assert json.loads((tmp_path / "run" / "eval" / "summary.json").read_text())["accuracy"] == summary["accuracy"]
    prm_dir = Path(prm["path"])
    assert prm_dir.parent == tmp_path / "run" / "prm" and prm["completer_is_policy"]
    training = (prm_dir / "training.json").read_text()

    again = run_search_experiment(config, show_progress=False)
    assert again["usage"]["model_calls"] == 0
    assert again["accuracy"] == summary["accuracy"]
    assert again["prm"]["path"] == prm["path"] and (prm_dir / "training.json").read_text() == training
    assert json.loads(training)["steps"] >= 1


def test_a_trained_prm_is_keyed_by_its_base_content_data_and_settings(tiny_model_dir, tmp_path, monkeypatch):
    trained: list[Path] = []

    def fake_train(examples, base, output_dir, cfg, device="auto"):
        Path(output_dir).mkdir(parents=True)
        trained.append(Path(output_dir))
        return SimpleNamespace(path=Path(output_dir), losses=[1.0], steps=1, seconds=0.0)

    monkeypatch.setattr(search_experiment, "train_prm", fake_train)
    out, base = tmp_path / "run", tmp_path / "base"
    shutil.copytree(tiny_model_dir, base)
    out.mkdir()
    (out / "prm_data.jsonl").write_text('{"a": 1}\n')
    cfg = load_config(write_config(tmp_path, base), model=SearchExperimentConfig)

    first, _ = trained_prm(cfg, str(base), [], out, False)
    assert trained_prm(cfg, str(base), [], out, False)[0] == first and trained == [first]  # reused, not retrained
    changed = load_config(write_config(tmp_path, base), ["prm.train.lr=0.5"], model=SearchExperimentConfig)
    assert trained_prm(changed, str(base), [], out, False)[0] != first
    (out / "prm_data.jsonl").write_text('{"a": 2}\n')
    new_data, _ = trained_prm(cfg, str(base), [], out, False)
    build_tiny_model(base, seed=1)  # same path, new weights
    new_base, _ = trained_prm(cfg, str(base), [], out, False)
    assert len({first, new_data, new_base, *trained}) == 4 and len(trained) == 4
    assert all(p.parent == out / "prm" for p in trained)


def test_two_seeds_are_evaluated_apart_and_averaged_over_problems(tiny_model_dir, tmp_path):
    pool = ["majority", "best_of_n", "weighted_best_of_n"]
    config = write_config(tmp_path, tiny_model_dir, seeds=[0, 1], strategies=pool)
    summary = run_search_experiment(config, show_progress=False)
    run = tmp_path / "run"
    dirs = [run / "eval", run / "eval-seed1"]
    seeds = [json.loads((d / "summary.json").read_text()) for d in dirs]
    records = [[json.loads(x) for x in (d / "results.jsonl").read_text().splitlines()] for d in dirs]
    texts = [[c["text"] for r in rs for c in r["candidates"]] for rs in records]
    assert texts[0] != texts[1]  # each seed samples its own pool
    assert summary["seeds"] == [0, 1] and len(list((run / "prm").iterdir())) == 1  # one PRM for both seeds
    for name, accuracy in summary["accuracy"].items():
        assert accuracy == pytest.approx((seeds[0]["accuracy"][name] + seeds[1]["accuracy"][name]) / 2)
    per_problem = {}
    for r in records[0] + records[1]:
        majority = next(o for o in r["outcomes"] if o["label"] == "majority" and o["budget"] == 2)
        per_problem.setdefault(r["id"], []).append(majority["correct"])
    means = [sum(v) / 2 for v in per_problem.values()]
    assert summary["accuracy_se"]["majority@2"] == pytest.approx(mean_se(means)[1])
    assert summary["prm"]["verifier"]["all"]["selection"]["2"]["problems"] == 4
    report = (run / "report.md").read_text()
    assert "mean over sampling seeds 0, 1" in report and " ± " in report and "pools of seeds 0, 1 together" in report


def test_seeds_must_be_distinct(tiny_model_dir, tmp_path):
    with pytest.raises(ConfigError, match="distinct"):
        load_config(write_config(tmp_path, tiny_model_dir, seeds=[1, 1]), model=SearchExperimentConfig)


def test_search_verifiers_limit_the_step_searches_not_the_pool():
    cfg = SearchExperimentConfig(
        strategies=["majority", "weighted_best_of_n", "beam"], verifiers=["oracle", "prm"], search_verifiers=["prm"]
    )
    chosen = [(s.name, getattr(s, "verifier", None)) for s in search_experiment.strategies(cfg, "prm-dir", "policy")]
    pool = [("majority", None), ("weighted_best_of_n", "oracle"), ("weighted_best_of_n", "prm")]
    assert chosen == [*pool, ("beam", "prm")]
    with pytest.raises(ValueError, match="search_verifiers"):
        SearchExperimentConfig(verifiers=["oracle"], search_verifiers=["prm"])


def test_recompute_reads_the_policy_unless_another_model_is_named(tmp_path):
    cfg = SearchExperimentConfig(strategies=["weighted_best_of_n"], verifiers=["recompute"])
    [own] = search_experiment.strategies(cfg, "prm-dir", "policy-dir")
    assert own.verifier_path == "policy-dir"
    other = cfg.model_copy(update={"recompute_model": str(tmp_path)})
    [named] = search_experiment.strategies(other, "prm-dir", "policy-dir")
    assert named.verifier_path == str(tmp_path) and named.verifier_key() != own.verifier_key()
