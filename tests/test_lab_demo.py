"""The main job end to end at a tiny size: lab task, sample pool, oracle best-of-N, per-level summary and report."""

import json

from reasonscale.lab import train as lab_train
from reasonscale.pipelines.lab_demo import run_demo


def test_demo_runs_end_to_end_at_tiny_size(tmp_path, tiny_model_dir, monkeypatch):
    asked = []
    monkeypatch.setattr(lab_train, "train_preset", lambda name, **kw: asked.append(name) or tiny_model_dir)
    out = tmp_path / "demo"
    cfg, summary = run_demo("weak", str(out), per_level=2, n=4, show_progress=False)
    assert asked == ["weak"] and cfg.model.path == str(tiny_model_dir)
    assert summary["problems"] == 10 and set(summary["accuracy_by_level"]) == {"1", "2", "3", "4", "5"}
    for label in ("greedy@1", "majority@4", "best_of_n[oracle]@4", "weighted_best_of_n[oracle]@4", "pass_at_k@2"):
        assert 0.0 <= summary["accuracy"][label] <= 1.0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 10 and all(len(r["candidates"]) == 4 for r in records)
    assert all(isinstance(c["step_scores"]["oracle"], list) for r in records for c in r["candidates"])
    assert "best_of_n[oracle]@4" in (out / "report.md").read_text() and (out / "accuracy.png").stat().st_size > 0
