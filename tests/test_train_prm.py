"""The PRM trainer on the training layer: config and CLI, skip when identical, resume after a kill to the same
weights, file:line data errors, the saved PRM scoring as a `prm` verifier, and batches grouped by problem with a
ranking loss between a problem's solutions."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from typer.testing import CliRunner

from reasonscale.cli import app
from reasonscale.config import ConfigError, TaskConfig
from reasonscale.data.prm_labels import PRMExample, save_examples
from reasonscale.tasks.lab import LabTask
from reasonscale.train import TRAINERS, load_train_config
from reasonscale.train import prm as trainer
from reasonscale.train.common import ADAPTER_DIR, INFO_FILE, PLOT_FILE, plan
from reasonscale.train.config import LogSettings, OptimSettings
from reasonscale.train.prm import Encoded, PRMTrainConfig, batch_loss, problem_units, train_prm
from reasonscale.train.prm_loop import train_loop
from reasonscale.types import Problem
from reasonscale.verifiers import build_verifier
from reasonscale.verifiers.prm import PRMFormat
from test_prm import toy_examples
from test_train_common import Killed, logged, make_config

PROBLEM = Problem("p", "a=2, b=a*3. Find b.", "6")


@pytest.fixture
def prm_data(tmp_path: Path) -> Path:
    return save_examples(toy_examples(), tmp_path / "prm.jsonl")


def prm_config(base: Path, data: Path, out: Path, **sections):
    sections.setdefault("optim", {})
    sections["optim"] = {"learning_rate": 5e-3, "max_steps": 6, "batch_size": 4, **sections["optim"]}
    sections["prm"] = {"rank_weight": 0.5, "device": "cpu", **sections.get("prm", {})}
    return make_config("prm", base, data, out, **sections)


class KillAt:
    def __init__(self, step: int):
        self.step = step

    def __call__(self, step: int, loss: float) -> None:
        if step >= self.step:
            raise Killed


def scores(path: Path) -> list[list[float]]:
    prm = build_verifier("prm", LabTask(TaskConfig(name="lab")), str(path))
    good, bad = toy_examples()[:2]
    return prm.score([PROBLEM, PROBLEM], [good.steps, bad.steps])


def test_cli_trains_a_prm_that_loads_as_a_verifier_and_skips_an_identical_run(
    tmp_path: Path, tiny_model_dir: Path, prm_data: Path
) -> None:
    out = tmp_path / "prm-model"
    path = tmp_path / "prm.yaml"
    path.write_text(f"model: {{path: {tiny_model_dir}}}\ndata: {{path: {prm_data}}}\noutput_dir: {out}\n"
                    "lora: {enabled: true, r: 4}\nprm: {mode: head, target: soft, rank_weight: 0.5}\n")
    overrides = ["--set", "optim.max_steps=12", "--set", "optim.batch_size=4", "--set", "optim.learning_rate=0.005",
                 "--set", "log.cpu_threads=1", "--set", "log.logging_steps=1", "--set", "prm.device=cpu"]
    result = CliRunner().invoke(app, ["train", "prm", str(path), *overrides, "--quiet"])
    assert result.exit_code == 0, result.output
    info = json.loads((out / INFO_FILE).read_text())
    assert info["method"] == "prm" and info["steps"] == 12 and info["settings"]["prm"]["device"] == "cpu"
    assert (out / ADAPTER_DIR / "adapter_config.json").is_file() and (out / PLOT_FILE).is_file()
    curve = [e["loss"] for e in logged(out)]
    assert len(curve) == 12 and sum(curve[-3:]) < sum(curve[:3])
    good, bad = scores(out)
    assert good[0] > bad[0] and good[1] > bad[1]
    assert scores(out) != scores(tiny_model_dir)  # the untrained base (a fresh head) scores otherwise
    weights = (out / "model.safetensors").stat().st_mtime_ns
    again = CliRunner().invoke(app, ["train", "prm", str(path), *overrides, "--quiet"])
    assert again.exit_code == 0 and "reused (identical run)" in again.output
    assert (out / "model.safetensors").stat().st_mtime_ns == weights
    cfg = load_train_config("prm", path, [o for o in overrides if o != "--set"] + ["prm.target=hard"])
    assert TRAINERS["prm"](cfg, progress=False).trained  # a changed setting is another run


@pytest.mark.parametrize("batching", ["random", "problem"])
def test_resume_after_a_kill_gives_the_same_weights(
    tmp_path: Path, tiny_model_dir: Path, prm_data: Path, batching: str
) -> None:
    # batches cross epochs: the order is resumed
    settings = {"optim": {"batch_size": 3}, "log": {"save_steps": 3}, "prm": {"batching": batching}}
    whole = TRAINERS["prm"](prm_config(tiny_model_dir, prm_data, tmp_path / "a", **settings), progress=False)
    cfg = prm_config(tiny_model_dir, prm_data, tmp_path / "b", **settings)
    with pytest.raises(Killed):
        TRAINERS["prm"](cfg, progress=False, on_step=KillAt(4))  # after step 3's checkpoint, mid-way to step 6
    assert not (tmp_path / "b").exists() and list(tmp_path.glob("b.work-*/checkpoints/step-3.pt"))
    resumed = TRAINERS["prm"](cfg, progress=False)
    a, b = load_file(whole.path / "model.safetensors"), load_file(resumed.path / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [e["loss"] for e in logged(whole.path)] == [e["loss"] for e in logged(resumed.path)]
    assert whole.info["final"] == resumed.info["final"] and resumed.info["steps"] == 6
    base = load_file(tiny_model_dir / "model.safetensors")
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(a[name], base[name])  # LoRA merged into the weights
    assert not list(tmp_path.glob("b.work-*"))


def test_token_mode_full_fine_tuning_saves_its_format(tmp_path: Path, tiny_model_dir: Path, prm_data: Path) -> None:
    cfg = prm_config(tiny_model_dir, prm_data, tmp_path / "tok", use_lora=False, optim={"learning_rate": 2e-3},
                     prm={"mode": "token", "step_tag": "+", "step_separator": " +\n"})
    result = TRAINERS["prm"](cfg, progress=False)
    saved = json.loads((result.path / "reasonscale_prm.json").read_text())
    assert saved["mode"] == "token" and saved["step_separator"] == " +\n" and saved["step_tag"] == "+"
    assert not (result.path / ADAPTER_DIR).exists()
    assert scores(result.path) != scores(tiny_model_dir)


def test_bad_data_and_config_are_one_clear_error(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = tmp_path / "d.jsonl"
    good = json.dumps({"problem_id": "p", "prompt": "q\n", "steps": ["a", "b"], "soft": [1.0, 0.0]})
    lines = {
        '{"problem_id": "p", "prompt": "q\\n", "steps": ["a"], "soft": [1.0, 0.5]}': "1 steps but 2 'soft' labels",
        '{"problem_id": "p", "prompt": "q\\n", "steps": "a", "soft": [1.0]}': "'steps' is missing or not a list",
        '{"problem_id": "p", "prompt": "q\\n", "steps": ["a"], "hard": [1.0]}': "'soft' .prm.target. is missing",
        '{"prompt": "q\\n", "steps": ["a"], "soft": [1.0]}': "'problem_id' is missing",
    }
    for line, message in lines.items():
        data.write_text(f"{good}\n\n{line}\n")
        with pytest.raises(ValueError, match=rf"d\.jsonl:3: .*{message}"):
            TRAINERS["prm"](prm_config(tiny_model_dir, data, tmp_path / "o"), progress=False)
    assert not (tmp_path / "o").exists()
    path = tmp_path / "c.yaml"
    path.write_text(f"model: {{path: {tiny_model_dir}}}\ndata: {{path: {data}}}\noutput_dir: o\n")
    with pytest.raises(ConfigError, match="step_tag 'x' is not in step_separator"):
        load_train_config("prm", path, ["prm.step_tag=x", "prm.step_separator=;"])
    with pytest.raises(ConfigError, match="lora.merge"):
        load_train_config("prm", path, ["lora.merge=false"])
    with pytest.raises(ConfigError, match="unknown key 'prm'"):  # a PRM section in an SFT config
        load_train_config("sft", path, ["prm.mode=head"])


def two_problems() -> list[PRMExample]:
    """Problem p's right and wrong solutions (as `toy_examples`) and problem q's, two each."""
    q = "a=3, b=a+4. Find b."
    right = PRMExample("q", q, q + "\n", ["b=a+4=3+4=7", "answer=7"], [1.0, 1.0], [1.0, 1.0], True)
    wrong = PRMExample("q", q, q + "\n", ["b=a+4=3+4=9", "answer=9"], [1.0, 0.0], [1.0, 0.0], False)
    return toy_examples()[:4] + [right, wrong] * 2


def loop_batches(tmp_path: Path, data: list[Encoded], units, seed: int, steps: int = 8) -> list[list[int]]:
    """The batches (as data indices) that `train_loop` takes in `steps` steps of 4 examples."""
    job = SimpleNamespace(cfg=SimpleNamespace(optim=OptimSettings(max_steps=steps, batch_size=4, seed=seed),
                                              log=LogSettings(save_steps=1000)),
                          work=tmp_path, precision="fp32")
    model, seen = torch.nn.Linear(1, 1), []

    def loss_of(batch: list[Encoded]) -> torch.Tensor:
        seen.append([e.ids[0] for e in batch])
        return (model.weight**2).sum()

    train_loop(job, model, data, loss_of, "cpu", progress=False, units=units)
    return seen


def test_problem_batches_hold_whole_problems_in_a_seeded_order(tmp_path: Path) -> None:
    sizes = {"a": 3, "b": 1, "c": 2, "d": 6, "e": 2}  # d has more examples than a batch holds: cut 4 + 2
    problems = [p for p, n in sizes.items() for _ in range(n)]
    data = [Encoded([i], [0], [1.0], p) for i, p in enumerate(problems)]  # ids[0]: the example's index
    units = problem_units(data, 4)
    assert units == [[0, 1, 2], [3], [4, 5], [6, 7, 8, 9], [10, 11], [12, 13]]
    batches = loop_batches(tmp_path, data, units, seed=0)
    pieces = {tuple(u) for u in units}
    for batch in batches:
        assert 1 <= len(batch) <= 4
        rest = list(batch)
        while rest:  # the batch is whole units, one after another
            piece = next(u for u in pieces if tuple(rest[: len(u)]) == u)
            rest = rest[len(piece) :]
    assert loop_batches(tmp_path, data, units, seed=0) == batches  # deterministic by the seed
    assert loop_batches(tmp_path, data, units, seed=1) != batches
    alone = loop_batches(tmp_path, data, None, seed=0)
    assert all(len(b) == 4 for b in alone) and alone != batches  # random batching: full batches of any examples


class FixedLogits(torch.nn.Module):
    """A "model" whose logit at each read position is given, example by example (head mode: one logit)."""

    def __init__(self, values: list[list[float]]):
        super().__init__()
        self.values = values

    def forward(self, input_ids, attention_mask):
        logits = torch.zeros(*input_ids.shape, 1)
        for row, values in enumerate(self.values):
            logits[row, : len(values), 0] = torch.tensor(values)
        return SimpleNamespace(logits=logits)


def test_the_solution_ranking_loss_compares_last_steps_of_a_problems_solutions() -> None:
    def encoded(problem: str, labels: list[float]) -> Encoded:
        return Encoded(list(range(len(labels))), list(range(len(labels))), labels, problem)

    batch = [encoded("p", [1.0, 1.0]), encoded("p", [1.0, 0.0]), encoded("p", [0.0, 0.0]),
             encoded("q", [1.0, 1.0]), encoded("q", [0.0])]
    # first steps far off any order (they must not count), last steps: p right 3 over wrong 1 and 5; q right -4,
    # wrong 0; p's right (3) above q's wrong (0) and q's right (-4) below p's wrong (1) are no pairs
    logits = [[-9.0, 3.0], [9.0, 1.0], [9.0, 5.0], [-9.0, -4.0], [0.0]]
    fmt = PRMFormat()

    def added(values: list[list[float]], examples: list[Encoded] = batch) -> float:
        model = FixedLogits(values)
        return (batch_loss(model, examples, fmt, None, 0.0, 0, solution_rank_weight=2.0)
                - batch_loss(model, examples, fmt, None, 0.0, 0)).item()

    expected = -(F.logsigmoid(torch.tensor(2.0)) + F.logsigmoid(torch.tensor(-2.0))
                 + F.logsigmoid(torch.tensor(-4.0))) / 3
    assert added(logits) == pytest.approx(2 * expected.item(), rel=1e-5)
    ordered = [[-9.0, 6.0], [9.0, 1.0], [9.0, 0.0], [-9.0, 4.0], [0.0]]
    assert 0 < added(ordered) < added(logits)
    assert added(logits[:1] + logits[3:4], [batch[0], batch[3]]) == 0.0  # no wrong solution: no pair


def test_training_with_problem_batches_and_solution_ranking_orders_a_problems_solutions(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    base = {"epochs": 6, "batch_size": 4, "lr": 5e-3, "warmup_steps": 0, "batching": "problem"}
    ranked = train_prm(two_problems(), tiny_model_dir, tmp_path / "r", PRMTrainConfig(**base, solution_rank_weight=2.0))
    plain = train_prm(two_problems(), tiny_model_dir, tmp_path / "p", PRMTrainConfig(**base))
    assert ranked.losses[0] > plain.losses[0]  # the same first batch, plus the ranking term
    assert sum(ranked.losses[-3:]) < sum(ranked.losses[:3])
    prm = build_verifier("prm", LabTask(TaskConfig(name="lab")), str(ranked.path))
    q = Problem("q", "a=3, b=a+4. Find b.", "7")
    examples = two_problems()
    finals = [s[-1] for s in prm.score([PROBLEM, PROBLEM, q, q], [e.steps for e in examples[:2] + examples[4:6]])]
    assert finals[0] > finals[1] and finals[2] > finals[3]


def test_batching_and_solution_ranking_are_part_of_the_prms_identity(
    tmp_path: Path, tiny_model_dir: Path, prm_data: Path
) -> None:
    def key(**prm) -> str:
        return plan("prm", prm_config(tiny_model_dir, prm_data, tmp_path / "o", prm=prm), "data", 8).key

    keys = {key(), key(batching="problem"), key(solution_rank_weight=1.0),
            key(batching="problem", solution_rank_weight=1.0), key(solution_rank_weight=0.5)}
    assert len(keys) == 5 and key() in keys
    settings = PRMTrainConfig(batching="problem", solution_rank_weight=1.5)  # a pipeline's settings reach the layer
    cfg = trainer.prm_config(prm_data, tiny_model_dir, tmp_path / "o", settings, "cpu", 8)
    assert cfg.prm.batching == "problem" and cfg.prm.solution_rank_weight == 1.5
