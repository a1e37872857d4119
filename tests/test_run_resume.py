"""`reasonscale run` end to end on a tiny local model: outputs, zero-call re-runs, and resume after SIGKILL."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

QUESTIONS = [{"q": f"What is {i} plus {i}?", "a": str(2 * i)} for i in range(24)]


def write_config(tmp_path: Path, model_dir: Path, name: str) -> Path:
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in QUESTIONS))
    config = tmp_path / f"{name}.yaml"
    config.write_text(
        f"""
model: {{path: {model_dir}, max_batch_size: 16}}
task: {{name: jsonl, path: {data}, grader: numeric, fields: {{question: q, answer: a}}}}
sampling: {{temperature: 1.0, max_tokens: 48, seed: 3}}
strategies:
  - {{name: greedy}}
  - {{name: majority, n: 4}}
  - {{name: pass_at_k, n: 4}}
output_dir: {tmp_path / name}
"""
    )
    return config


def reasonscale(*args: str, **kwargs) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "reasonscale.cli", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def finished_problems(store: Path) -> int:
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(store, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path, tiny_model_dir):
    whole = write_config(tmp_path, tiny_model_dir, "whole")
    proc = reasonscale("run", str(whole), "--quiet")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "majority@4" in out

    killed = write_config(tmp_path, tiny_model_dir, "killed")
    store = tmp_path / "killed" / "store.sqlite"
    proc = reasonscale("run", str(killed), "--quiet", start_new_session=True)
    deadline = time.time() + 240
    while finished_problems(store) < 16 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = finished_problems(store)
    assert 0 < done_before < len(QUESTIONS), "the kill should land mid-run"

    proc = reasonscale("run", str(killed), "--quiet")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert records(tmp_path / "killed") == records(tmp_path / "whole")
    summary = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert summary["usage"]["model_calls"] <= (len(QUESTIONS) - done_before) * 5  # finished work not redone

    proc = reasonscale("run", str(killed), "--quiet")
    proc.communicate(timeout=300)
    summary = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert summary["usage"]["model_calls"] == 0


def test_config_error_is_reported_before_loading(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("model: {path: /nowhere}\ntask: {name: gsm8k}\nsampling: {temprature: 1}\n")
    proc = reasonscale("run", str(config))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "sampling.temprature" in err and "temperature" in err and "Traceback" not in err


def test_another_dtype_reuses_no_result_and_no_sample(tmp_path, tiny_model_dir):
    from reasonscale.config_loading import load_config
    from reasonscale.pipelines.evaluate import run_evaluation

    config = write_config(tmp_path, tiny_model_dir, "dtype")
    small = ["task.limit=3", "strategies=[{name: majority, n: 2}]", "model.device=cpu"]
    first = run_evaluation(load_config(config, small), show_progress=False)
    assert first["usage"]["model_calls"] == 3 * 2
    bf16 = run_evaluation(load_config(config, [*small, "model.dtype=bfloat16"]), show_progress=False)
    assert bf16["usage"]["model_calls"] == 3 * 2 and bf16["usage"]["cache_hits"] == 0
    again = run_evaluation(load_config(config, small), show_progress=False)
    assert again["usage"]["model_calls"] == 0 and again["accuracy"] == first["accuracy"]
