"""Expected failures end in one clear message (exit 2) and never touch finished outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reasonscale.cli import app
from reasonscale.config import ConfigError, TaskConfig
from reasonscale.config_loading import apply_overrides, load_config
from reasonscale.store import Store, StoreError
from reasonscale.tasks import build_task
from reasonscale.tasks.io import DataError

runner = CliRunner()
BASE = "model: {path: some/model}\ntask: {name: gsm8k, limit: 3}\nstrategies:\n  - {name: majority, n: 8}\n"


def write_config(tmp_path: Path, text: str = BASE) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("strategies.5.n=4", "'strategies.5' is not an item of a list of 1"),
        ("strategies.x.n=4", "'strategies.x' is not an item"),
        ("sampling.seed.x=1", "'sampling.seed' is a value, not a section"),
    ],
)
def test_overrides_into_missing_items_or_scalars_are_errors(override: str, message: str):
    data = {"strategies": [{"name": "majority"}], "sampling": {"seed": 0}}
    with pytest.raises(ConfigError, match=message):
        apply_overrides(data, [override])


@pytest.mark.parametrize(
    ("extra", "key"),
    [("sampling: {seed: true}\n", "sampling.seed"), ("sampling: {max_tokens: '12'}\n", "sampling.max_tokens")],
)
def test_types_are_strict(tmp_path: Path, extra: str, key: str):
    with pytest.raises(ConfigError, match=key):
        load_config(write_config(tmp_path, BASE + extra))


def test_integer_still_fills_a_float(tmp_path: Path):
    assert load_config(write_config(tmp_path, BASE + "sampling: {temperature: 1}\n")).sampling.temperature == 1.0


def test_lab_levels_outside_1_to_5_are_errors(tmp_path: Path):
    text = BASE.replace("{name: gsm8k, limit: 3}", "{name: lab, lab: {levels: [1, 6]}}")
    with pytest.raises(ConfigError, match="task.lab.levels.1"):
        load_config(write_config(tmp_path, text))


def jsonl_task(path: Path) -> TaskConfig:
    return TaskConfig(name="jsonl", path=str(path), fields={"id": "id"}, grader="numeric")


def test_duplicate_ids_name_the_id_and_lines(tmp_path: Path):
    data = tmp_path / "d.jsonl"
    rows = [{"id": i, "question": "q", "answer": "1"} for i in ("a", "b", "a", "c", "b")]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match="id 'a' is on lines 1, 3"):
        build_task(jsonl_task(data)).load()


def test_empty_data_file_is_named(tmp_path: Path):
    data = tmp_path / "empty.jsonl"
    data.write_text("\n")
    with pytest.raises(DataError, match=f"no problems in {data}"):
        build_task(jsonl_task(data)).load()


def test_empty_data_file_leaves_finished_outputs_alone(tmp_path: Path):
    data, out = tmp_path / "empty.jsonl", tmp_path / "run"
    data.write_text("")
    out.mkdir()
    (out / "results.jsonl").write_text("finished\n")
    config = f"model: {{path: {tmp_path}}}\ntask: {{name: jsonl, path: {data}}}\noutput_dir: {out}\n"
    result = runner.invoke(app, ["run", str(write_config(tmp_path, config))])
    assert result.exit_code == 2 and "no problems in" in result.output
    assert (out / "results.jsonl").read_text() == "finished\n"


def test_store_that_is_a_folder_or_not_sqlite(tmp_path: Path):
    with pytest.raises(StoreError, match="is a folder"):
        Store(tmp_path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a reasonscale store"):
        Store(junk)


def test_grade_into_a_missing_folder_fails_before_grading(tmp_path: Path):
    data = tmp_path / "p.jsonl"
    data.write_text(json.dumps({"reference": "1", "prediction": "1"}) + "\n")
    result = runner.invoke(app, ["grade", str(data), "--task", "gsm8k", "--out", str(tmp_path / "no" / "g.jsonl")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_missing_relative_model_path_is_one_line(tmp_path: Path):
    config = "model: {path: ./no/such/model}\ntask: {name: lab, lab: {per_level: 1, levels: [1]}}\n"
    config += f"output_dir: {tmp_path / 'out'}\n"
    result = runner.invoke(app, ["run", str(write_config(tmp_path, config))])
    assert result.exit_code == 2 and "does not exist" in result.output
    assert "Traceback" not in result.output


def test_second_writer_of_a_run_gets_a_clear_error(tmp_path: Path):
    import subprocess
    import sys

    from reasonscale.runlock import RunLocked, run_lock

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys,time; from reasonscale.runlock import run_lock\n"
         f"with run_lock({str(tmp_path)!r}):\n print('held', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked, match=f"pid {holder.pid}"):
            with run_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    with run_lock(tmp_path):  # released when its process died
        pass


SHARED_CACHE_WORKER = """
import sys, time
from reasonscale.engines.base import Engine
from reasonscale.engines.cached import CachedEngine
from reasonscale.store import Store
from reasonscale.types import Completion, SamplingParams

class Slow(Engine):
    model_id = "slow"
    preferred_batch = 2
    def complete(self, requests, params):
        time.sleep(0.3)
        with open(sys.argv[2], "a") as log:
            log.writelines(f"{r.prompt}/{r.index}\\n" for r in requests)
        return [Completion(f"{r.prompt}-{r.index}", "stop", 1, 1) for r in requests]

engine = CachedEngine(Slow(), Store(sys.argv[1]))
engine.poll_s = 0.05
out = engine.generate(["a", "b"], SamplingParams(n=4, temperature=1.0))
assert [c.text for c in out[0]] == [f"a-{i}" for i in range(4)]
"""


def test_processes_sharing_a_cache_never_generate_a_sample_twice(tmp_path: Path):
    import subprocess
    import sys

    script, log = tmp_path / "worker.py", tmp_path / "generated.log"
    script.write_text(SHARED_CACHE_WORKER)
    workers = [
        subprocess.Popen([sys.executable, str(script), str(tmp_path / "s.sqlite"), str(log)]) for _ in range(2)
    ]
    assert [w.wait(timeout=120) for w in workers] == [0, 0]
    generated = log.read_text().split()
    assert sorted(generated) == sorted(f"{p}/{i}" for p in "ab" for i in range(4))


def test_run_totals_count_every_invocation_and_outputs_are_whole(tmp_path: Path):
    from reasonscale.config import ModelConfig, RunConfig, TaskConfig as TC
    from reasonscale.pipelines.evaluate import run_evaluation
    from tests.test_evaluate import ScriptedEngine  # noqa: F401  (a scripted engine keyed by its model_id)

    lab = TC(name="lab", lab={"levels": [1], "per_level": 2})
    cfg = RunConfig(
        model=ModelConfig(path="scripted"),
        task=lab,
        strategies=[{"name": "majority", "n": 2}],
        output_dir=str(tmp_path / "run"),
    )
    first = run_evaluation(cfg, show_progress=False, engine_factory=lambda c: ScriptedEngine())
    bigger = cfg.model_copy(update={"task": TC(name="lab", lab={"levels": [1], "per_level": 3})})
    bigger_cfg = RunConfig.model_validate(bigger.model_dump())
    second = run_evaluation(bigger_cfg, show_progress=False, engine_factory=lambda c: ScriptedEngine())
    assert first["usage"]["model_calls"] == first["usage"]["run_model_calls"] == 4
    again = run_evaluation(cfg, show_progress=False, engine_factory=lambda c: ScriptedEngine())
    assert again["usage"]["model_calls"] == 0 and again["usage"]["run_model_calls"] == 4
    assert second["usage"]["model_calls"] >= 2
    leftovers = [p.name for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == [] and (tmp_path / "run" / "accuracy.png").stat().st_size > 0


def _cli_cases(tmp_path: Path) -> list[tuple[str, list[str], str]]:
    """(config text, extra args, the message expected) for each expected failure of `reasonscale run`."""
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "junk.sqlite").write_bytes(b"not sqlite at all" * 64)
    lab = "task: {name: lab, lab: {per_level: 1, levels: [1]}}\n"
    model = f"model: {{path: {tmp_path}}}\n"
    server = "model: {path: m, engine: openai, base_url: 'http://127.0.0.1:9/v1', max_retries: 0}\n"
    out = f"output_dir: {tmp_path / 'out'}\n"
    return [
        (model + lab + f"output_dir: {tmp_path / 'a-file'}\n", [], "a-file"),
        (model + lab + out + f"cache_path: {tmp_path}\n", [], "is a folder"),
        (model + lab + out + f"cache_path: {tmp_path / 'junk.sqlite'}\n", [], "not a reasonscale store"),
        (server + lab + out, [], "cannot reach"),
        (model + lab + out + "strategies: [{name: greedy}]\n", ["--set", "strategies.5.n=4"], "not an item of a list"),
        (model + lab + out + "sampling: {seed: 0}\n", ["--set", "sampling.seed.x=1"], "is a value, not a section"),
        (model + "task: {name: lab, lab: {levels: [0]}}\n" + out, [], "task.lab.levels.0"),
        (model + lab + out + "sampling: {seed: true}\n", [], "sampling.seed"),
    ]


@pytest.mark.parametrize("case", range(8))
def test_each_expected_failure_is_one_message_and_exit_2(tmp_path: Path, case: int):
    text, extra, message = _cli_cases(tmp_path)[case]
    result = runner.invoke(app, ["run", str(write_config(tmp_path, text)), "--quiet", *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
