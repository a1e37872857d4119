"""The recompute verifier: the number parse, the teacher-forced positions and scores, identity and costs."""

from __future__ import annotations

import json
import math
import shutil
import time
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import build_tiny_model
from reasonscale.config import StrategyConfig, TaskConfig
from reasonscale.pipelines.evaluate import verifier_identity
from reasonscale.pipelines.search_experiment import SearchExperimentConfig, strategies
from reasonscale.tasks.lab import LabTask
from reasonscale.types import Problem
from reasonscale.verifiers import build_verifier
from reasonscale.verifiers.recompute import RecomputeOptions, RecomputeVerifier, encode, last_number

TASK = LabTask(TaskConfig(name="lab"))
PROBLEM = Problem("p", "a=2, b=a*3. Find b.", "6", level=1)


def span_text(text: str) -> str | None:
    span = last_number(text)
    return None if span is None else text[span[0] : span[1]]


def test_the_result_is_the_last_number_with_its_sign():
    assert span_text("a=8+11=29") == "29"
    assert span_text("answer=30") == "30"
    assert span_text("b=10-3=7") == "7"
    assert span_text("c=3-5=-2") == "-2"
    assert span_text("-4") == "-4"
    assert span_text("d=1.5*2=3.0 apples") == "3.0"
    assert span_text("no number here") is None


HOSTILE = {
    "digits": "9" * 200_000 + "x",
    "decimals": "1." * 100_000,
    "minus": "-" * 200_000 + "1",
    "signs": "=-" * 100_000 + "5",
}


@pytest.mark.parametrize("name", HOSTILE)
def test_the_parse_is_linear_on_hostile_text(name):
    hostile = HOSTILE[name]
    start = time.perf_counter()
    span = last_number(hostile)
    assert time.perf_counter() - start < 2.0  # a quadratic scan of 200k characters would take minutes
    assert span is not None and hostile[span[1] - 1].isdigit()


def test_a_long_number_is_scored_on_its_first_tokens(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    encoded = encode(tokenizer, "q\n", ["a=" + "9" * 1000, "b=1"], "\n", RecomputeOptions(max_number_tokens=5))
    assert encoded.targets[0] == list(range(5, 10)) + [10]  # BOS, "q\na=": the number starts at token 5; its end


def test_positions_are_exactly_the_numbers_tokens(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    steps = ["a=8+11=29", "no result", "answer=29"]
    text = "q\n" + "\n".join(steps)
    encoded = encode(tokenizer, "q\n", steps, "\n", RecomputeOptions(numbers="last"))
    first, last = text.index("29"), text.rindex("29")  # the character tokenizer: token k + 1 is character k
    assert encoded.targets == [[first + 1, first + 2, first + 3], None, [last + 1, last + 2]]  # "2", "9", "\n"
    no_end = encode(tokenizer, "q\n", steps, "\n", RecomputeOptions(numbers="last", score_end=False))
    assert no_end.targets == [[first + 1, first + 2], None, [last + 1, last + 2]]
    every = encode(tokenizer, "q\n", steps, "\n", RecomputeOptions(numbers="all"))
    eight, eleven = text.index("8"), text.index("11")  # "8", "+"; "1", "1", "="; "2", "9", "\n"
    expected = [eight + 1, eight + 2, eleven + 1, eleven + 2, eleven + 3, first + 1, first + 2, first + 3]
    assert every.targets == [expected, None, [last + 1, last + 2]]


@pytest.mark.parametrize("form", ["prob", "ratio"])
def test_scores_are_the_hand_computed_token_probabilities(tiny_model_dir, form):
    verifier = RecomputeVerifier(str(tiny_model_dir), TASK, device="cpu", form=form)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    solutions = [["b=a*3=2*3=6", "answer=6"], ["b=a*3=2*3=17", "so", "answer=17"]]  # batched: padding exercised
    scores = verifier.score([PROBLEM, PROBLEM], solutions)
    prompt = TASK.format_prompt(PROBLEM)
    for steps, got in zip(solutions, scores):
        encoded = encode(verifier.tokenizer, prompt, steps, "\n", verifier.options)
        expected = []
        for targets in encoded.targets:
            if targets is None:
                expected.append(1.0)
                continue
            total = 0.0
            for t in targets:  # each token on its own, from a forward pass over exactly its prefix
                with torch.no_grad():
                    logp = model(torch.tensor([encoded.ids[:t]])).logits[0, -1].log_softmax(-1)
                total += float(logp[encoded.ids[t]] - (logp.max() if form == "ratio" else 0.0))
            expected.append(math.exp(total))
        assert got == pytest.approx(expected, rel=1e-4)
    assert scores[1][1] == 1.0 and all(0.0 < s < 1.0 for s in scores[0])


class KnowsOneSolution(torch.nn.Module):
    """A scripted causal LM: after any prefix of `reference` it puts nearly all mass on the reference's next token
    (a model that knows this solution's arithmetic); elsewhere it is uniform."""

    def __init__(self, reference: list[int], vocab: int):
        super().__init__()
        self.reference, self.vocab = reference, vocab

    def forward(self, input_ids, attention_mask=None):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        for b, row in enumerate(input_ids.tolist()):
            for t in range(min(len(row), len(self.reference) - 1)):
                if row[: t + 1] != self.reference[: t + 1]:
                    break
                logits[b, t, self.reference[t + 1]] = 10.0
        return SimpleNamespace(logits=logits)


@pytest.mark.parametrize("form", ["prob", "ratio"])
def test_the_models_own_result_scores_above_a_perturbed_one(tiny_model_dir, form):
    verifier = build_verifier("recompute", TASK, str(tiny_model_dir), {"form": form, "device": "cpu"})
    reference = verifier.tokenizer(TASK.format_prompt(PROBLEM) + "b=a*3=2*3=6\nanswer=6")["input_ids"]
    verifier.model = KnowsOneSolution(reference, len(verifier.tokenizer))
    right, wrong = verifier.score([PROBLEM, PROBLEM], [["b=a*3=2*3=6"], ["b=a*3=2*3=7"]])
    assert right[0] > 0.9 and wrong[0] < 0.1
    if form == "ratio":
        assert right[0] == pytest.approx(1.0)  # the written number is the greedy re-derivation


def test_identity_follows_options_and_model_content(tiny_model_dir, tmp_path):
    base = RecomputeVerifier(str(tiny_model_dir), TASK, device="cpu")
    for change in ({"form": "ratio"}, {"numbers": "last"}, {"score_end": False}, {"max_number_tokens": 4}):
        assert RecomputeVerifier(str(tiny_model_dir), TASK, device="cpu", **change).identity != base.identity
    assert RecomputeVerifier(str(tiny_model_dir), TASK, device="cpu", form="prob").identity == base.identity
    copy = shutil.copytree(tiny_model_dir, tmp_path / "copy" / tiny_model_dir.name)  # same name, same content
    assert RecomputeVerifier(str(copy), TASK, device="cpu").identity == base.identity
    other = build_tiny_model(tmp_path / "other", seed=1)
    assert RecomputeVerifier(str(other), TASK, device="cpu").identity != base.identity
    # in a run's identity: the model by content, the options by the verifier key
    config = StrategyConfig(name="best_of_n", verifier="recompute", verifier_path=str(tiny_model_dir))
    moved = StrategyConfig(name="best_of_n", verifier="recompute", verifier_path=str(other))
    assert verifier_identity(config) != verifier_identity(moved)
    tuned = StrategyConfig(name="best_of_n", verifier=f"recompute:{tiny_model_dir}", verifier_options={"form": "ratio"})
    assert tuned.verifier_key() != config.verifier_key()


def test_bad_settings_are_named(tiny_model_dir):
    with pytest.raises(ValueError, match="needs a model path"):
        build_verifier("recompute", TASK)
    with pytest.raises(ValueError, match="unknown options shape"):
        build_verifier("recompute", TASK, str(tiny_model_dir), {"shape": 1})
    with pytest.raises(ValueError, match="form"):
        build_verifier("recompute", TASK, str(tiny_model_dir), {"form": "max"})


def test_costs_are_one_call_over_each_solutions_tokens(tiny_model_dir):
    verifier = RecomputeVerifier(str(tiny_model_dir), TASK, device="cpu")
    steps = [["b=a*3=2*3=6", "answer=6"], ["answer=5"], ["no numbers"]]
    scores, costs = verifier.score_items([PROBLEM] * 3, steps)
    prompt = len(TASK.format_prompt(PROBLEM)) + 1  # the character tokenizer, plus BOS
    assert [c.verifier_tokens for c in costs] == [prompt + len("b=a*3=2*3=6\nanswer=6"), prompt + len("answer=5"), 0]
    assert [c.verifier_calls for c in costs] == [1, 1, 0]
    assert all(c.verifier_flops == pytest.approx(2 * verifier.num_parameters * c.verifier_tokens) for c in costs)
    assert verifier.usage.verifier_tokens == sum(c.verifier_tokens for c in costs)
    assert scores[2] == [1.0]


def test_the_search_experiment_verifies_with_the_policy():
    cfg = SearchExperimentConfig(verifiers=["oracle", "recompute"], strategies=["majority", "best_of_n"])
    made = strategies(cfg, "prm-dir", policy="policy-dir")
    described = [(s.name, getattr(s, "verifier", None), getattr(s, "verifier_path", None)) for s in made]
    assert described == [
        ("majority", None, None),
        ("best_of_n", "oracle", None),
        ("best_of_n", "recompute", "policy-dir"),
    ]
    assert [getattr(s, "aggregate", None) for s in made] == [None, "last", "min"]  # local step checks: by min


def test_an_evaluation_scores_its_pool_with_recompute(engine, tiny_model_dir, tmp_path):
    from reasonscale.config import ModelConfig, RunConfig, SamplingConfig
    from reasonscale.pipelines.evaluate import run_evaluation

    key = f"recompute:{tiny_model_dir}"
    cfg = RunConfig(
        model=ModelConfig(path=str(tiny_model_dir)),
        task=TaskConfig(name="lab", lab={"levels": [1], "per_level": 2}),
        sampling=SamplingConfig(temperature=1.0, max_tokens=12),
        strategies=[StrategyConfig(name="weighted_best_of_n", n=2, verifier=key, aggregate="min")],
        output_dir=str(tmp_path / "run"),
    )
    run_evaluation(cfg, show_progress=False, engine_factory=lambda c: engine)
    lines = (tmp_path / "run" / "results.jsonl").read_text().splitlines()
    candidates = [c for line in lines for c in json.loads(line)["candidates"]]
    assert len(candidates) == 4
    for c in candidates:
        steps = TASK.split_steps(c["text"])
        assert len(c["step_scores"][key]) == len(steps) and all(0.0 <= s <= 1.0 for s in c["step_scores"][key])
        assert (c["verifier_cost"][key]["tokens"] > 0) == any(last_number(s) for s in steps)
