"""`reasonscale lab solar`'s seeds and budgets: `seeds_vary: everything` trains each seed's own TAG, reward models
and tuning (in its own folder, evaluated with its own models); the evaluation seeds never share a topology's
response; the budgets and matched counts are checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from test_solar_pipeline import Engines, solar_config

from reasonscale.identity import model_identity
from reasonscale.pipelines.solar_lab import EvalStage, run_solar
from reasonscale.search.topological import allocate


def test_everything_seeds_train_and_use_their_own_models(tmp_path, tiny_model_dir):
    cfg = solar_config(tmp_path, tiny_model_dir, tune_task=None, evaluate={"budgets": [2], "seeds_vary": "everything"},
                       trm={"single_task": False, "training": {"lora": {"enabled": False},
                            "optim": {"max_steps": 2, "batch_size": 4}, "log": {"cpu_threads": 1}}})  # fmt: skip
    out = Path(cfg.output_dir)
    summary = run_solar(cfg, show_progress=False, engine_factory=Engines(str(tiny_model_dir)))
    trainings = summary["trainings"]
    assert set(trainings) == set(summary["reward_models"]["by_training"]) == {"seed-0", "seed-1"}
    trms = {s: trainings[f"seed-{s}"]["reward_models"]["models"]["m-trm"] for s in (0, 1)}
    tuned = {s: trainings[f"seed-{s}"]["tuning"]["model"] for s in (0, 1)}
    for s in (0, 1):
        assert Path(trms[s]).is_relative_to(out / f"seed-{s}") and Path(tuned[s]).is_relative_to(out / f"seed-{s}")
        assert (out / f"seed-{s}" / "tag-train" / "annotations.jsonl").is_file()
        runs = {p: json.loads((out / f"eval-{p}-s{s}" / "summary.json").read_text())["config"]
                for p in ("base", "tuned")}  # fmt: skip
        assert runs["base"]["strategies"][1]["verifier_path"] == trms[s]  # each seed is evaluated with its models
        assert runs["tuned"]["model"]["path"] == tuned[s]
    assert model_identity(trms[0]) != model_identity(trms[1]) and model_identity(tuned[0]) != model_identity(tuned[1])
    assert cfg.annotation(cfg.train_task, out, 1).sampling.seed == cfg.sampling.seed + cfg.responses
    spread = summary["reward_models"]["spread"]["m-trm"]
    metrics = [trainings[f"seed-{s}"]["reward_models"]["metrics"]["m-trm"] for s in (0, 1)]
    assert spread["spearman"] == pytest.approx(abs(metrics[0]["spearman"] - metrics[1]["spearman"]))
    report = (out / "solar_report.md").read_text()
    assert "Tuning set (seed-1)" in report and "mean over the trainings" in report
    weights = {s: (Path(trms[s]) / "trm_heads.safetensors").stat().st_mtime_ns for s in (0, 1)}
    again = Engines(str(tiny_model_dir))
    rerun = run_solar(cfg, show_progress=False, engine_factory=again)
    assert again.calls() == 0 and not any(t["tuning"]["trained"] for t in rerun["trainings"].values())
    assert weights == {s: (Path(trms[s]) / "trm_heads.safetensors").stat().st_mtime_ns for s in (0, 1)}
    assert rerun["curve"] == summary["curve"]


def test_evaluation_seeds_never_share_a_topology_response(tmp_path, tiny_model_dir):
    """A topology's response j runs at the run's sampling seed + j: seeds are spaced by the most responses one
    topology gets at the largest budget."""
    cases = (("equal", [1, 2], 1), ("equal", [1, 3], 2), ([3, 1], [4], 3), ("predicted", [5], 5), ("routed", [3], 3))
    for shares, budgets, stride in cases:
        evaluate = {"budgets": budgets, "shares": shares, "seeds": [0, 1, 2]}
        cfg = solar_config(tmp_path, tiny_model_dir, evaluate=evaluate)
        assert cfg.stride == stride
        by_name = {"equal": [1, 1], "predicted": [1, 1], "routed": [1, 0]}
        weights = shares if isinstance(shares, list) else by_name[shares]
        counts = allocate(budgets[-1], weights)
        used = [{cfg.evaluation("m", "trm", "x", s).sampling.seed + j for j in range(max(counts))} for s in (0, 1, 2)]
        assert not (used[0] & used[1] or used[1] & used[2] or used[0] & used[2])


def test_budgets_and_matched_counts_are_checked():
    assert EvalStage().budgets == [4] and EvalStage(n=2).budgets == [2]
    stage = EvalStage(budgets=[8, 2, 4, 2])
    assert stage.budgets == [2, 4, 8] and stage.n == 8
    assert EvalStage(n=3, matched_n=12).matched_n == [12]
    with pytest.raises(ValidationError, match="largest budget"):
        EvalStage(n=4, budgets=[2, 8])
    with pytest.raises(ValidationError, match="one N per budget"):
        EvalStage(budgets=[2, 4], matched_n=12)
    with pytest.raises(ValidationError):
        EvalStage(seeds_vary="training")
