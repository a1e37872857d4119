"""The `lab search` experiment end to end on a tiny random policy: every strategy x verifier x budget is
reported, the PRM section is written, and a re-run resumes from the store without model calls or retraining."""

from __future__ import annotations

import json

import yaml

from reasonscale.pipelines.search_experiment import run_search_experiment


def write_config(tmp_path, policy) -> str:
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
    assert "## Process reward model" in report and "accuracy.png" in report
    training = (tmp_path / "run" / "prm" / "training.json").read_text()

    again = run_search_experiment(config, show_progress=False)
    assert again["usage"]["model_calls"] == 0
    assert again["accuracy"] == summary["accuracy"]
    assert (tmp_path / "run" / "prm" / "training.json").read_text() == training
    assert json.loads(training)["steps"] >= 1
