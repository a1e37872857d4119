"""The vLLM engine: request and output mapping everywhere; generation for real where vLLM runs (the CPU build in the
second environment, scripts/vllm_env.sh): greedy output equal to the hf engine's, seeded sampling, the stop and
token protocol, the caching wrapper, resume and step-wise beam search."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from reasonscale.config import ModelConfig
from reasonscale.engines import build_engine
from reasonscale.engines.base import SampleRequest, sample_seed
from reasonscale.engines.cached import CachedEngine
from reasonscale.engines.hf import HFEngine
from reasonscale.engines.vllm import (
    VLLMEngine,
    VLLMUnavailable,
    count_parameters,
    sampling_kwargs,
    to_completion,
)
from reasonscale.search.beam import beam_search
from reasonscale.search.stepwise import StepSearch
from reasonscale.store import Store
from reasonscale.types import Completion, SamplingParams
from reasonscale.verifiers.oracle import OracleVerifier
from vllm_support import UNAVAILABLE, lab_problems, lab_prompts, needs_vllm, vllm_lab_model


def test_each_sample_gets_its_own_seed_and_the_stop_is_left_out():
    params = SamplingParams(temperature=0.7, top_p=0.9, max_tokens=32, stop=("\n\n",), seed=5)
    kwargs = sampling_kwargs(SampleRequest("Q:", 3), params)
    assert kwargs == {
        "n": 1,
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 32,
        "stop": ["\n\n"],
        "include_stop_str_in_output": False,
        "seed": sample_seed(5, "Q:", 3),
    }
    greedy = sampling_kwargs(SampleRequest("Q:", 0), SamplingParams())
    assert greedy["seed"] is None and greedy["stop"] is None


@pytest.mark.parametrize(
    ("finish", "stop_reason", "expected_stop", "expected_finish"),
    [
        ("stop", "\n\n", "\n\n", "stop"),
        ("stop", None, None, "stop"),
        ("stop", 2, None, "stop"),
        ("length", None, None, "length"),
    ],
)
def test_outputs_map_to_completions(finish, stop_reason, expected_stop, expected_finish):
    sample = SimpleNamespace(text="step one", token_ids=[5, 6, 7], finish_reason=finish, stop_reason=stop_reason)
    output = SimpleNamespace(prompt_token_ids=[1, 2, 3, 4], outputs=[sample])
    assert to_completion(output) == Completion("step one", expected_finish, 4, 3, stop=expected_stop)


def test_parameters_are_counted_like_the_hf_engine_from_the_config_alone(tiny_model_dir, tmp_path):
    expected = HFEngine(str(tiny_model_dir), device="cpu").num_parameters
    assert expected > 0 and count_parameters(str(tiny_model_dir)) == expected
    (tmp_path / "config.json").write_bytes((tiny_model_dir / "config.json").read_bytes())  # no weights, as a hub id
    assert count_parameters(str(tmp_path)) == expected


@pytest.mark.skipif(UNAVAILABLE is None, reason="vLLM is available here")
def test_without_vllm_the_engine_says_so(tiny_model_dir):
    with pytest.raises(VLLMUnavailable, match="engine 'vllm' is unavailable"):
        build_engine(ModelConfig(path=str(tiny_model_dir), engine="vllm"))




@pytest.fixture(scope="module")
def lab_model(tmp_path_factory) -> str:
    return str(vllm_lab_model(tmp_path_factory.mktemp("vllm-lab")))


@pytest.fixture(scope="module")
def vllm_engine(lab_model):
    with VLLMEngine(lab_model, dtype="float32") as engine:
        yield engine


@pytest.fixture(scope="module")
def hf_engine(lab_model) -> HFEngine:
    return HFEngine(lab_model, device="cpu", dtype="float32")


PROMPTS = lab_prompts(levels=[2, 4], per_level=4) + ["x", "a=1"]


@needs_vllm
@pytest.mark.parametrize("stop", [(), ("\n",), ("+", "-", "*"), ("=1", "b="), ("answer=",)])
def test_greedy_completions_equal_the_hf_engine(vllm_engine, hf_engine, stop):
    params = SamplingParams(n=2, max_tokens=40, stop=stop)
    made = vllm_engine.generate(PROMPTS, params)
    assert made == hf_engine.generate(PROMPTS, params)  # text, stop, finish reason and token counts
    flat = [c for row in made for c in row]
    assert all(c.completion_tokens == 40 and c.stop is None for c in flat if c.finish_reason == "length")
    if stop:
        assert any(c.stop for c in flat) and all(c.stop in (None, *stop) for c in flat)
        assert not any(s in c.text for c in flat for s in stop)


@needs_vllm
def test_stops_token_counts_and_finish_reasons(vllm_engine):
    greedy = [row[0] for row in vllm_engine.generate(PROMPTS, SamplingParams(max_tokens=200))]
    ended = [(p, c) for p, c in zip(PROMPTS, greedy) if c.finish_reason == "stop" and "\n" in c.text]
    assert ended, "no prompt's greedy completion reached end-of-sequence within 200 tokens"
    prompt, full = ended[0]
    assert full.stop is None  # ended at end-of-sequence
    assert full.prompt_tokens == len(prompt) + 1  # one token per character, plus BOS
    assert full.completion_tokens == len(full.text) + 1  # ... and the end-of-sequence token
    (step,) = vllm_engine.generate([prompt], SamplingParams(max_tokens=200, stop=("\n",)))[0]
    assert (step.text, step.stop, step.finish_reason) == (full.text.split("\n")[0], "\n", "stop")
    assert step.completion_tokens == len(step.text) + 1  # the stop's own token is generated, then cut
    (cut,) = vllm_engine.generate([prompt], SamplingParams(max_tokens=5, stop=("\n",)))[0]
    assert (cut.text, cut.stop, cut.finish_reason, cut.completion_tokens) == (full.text[:5], None, "length", 5)
    bos = vllm_engine.tokenizer.bos_token
    (same,) = vllm_engine.generate([bos + prompt], SamplingParams(max_tokens=200))[0]
    assert same == full  # a prompt that starts with BOS gets no second one


@needs_vllm
def test_samples_are_reproducible_per_seed_and_sample_index(vllm_engine):
    params = SamplingParams(n=4, temperature=1.0, top_p=0.95, max_tokens=30, seed=2)
    together = vllm_engine.generate(PROMPTS, params)
    assert together == [vllm_engine.generate([p], params)[0] for p in PROMPTS]  # alone or in a batch
    assert all(len({c.text for c in row}) > 1 for row in together)  # the samples of a prompt differ
    index_2 = vllm_engine.complete([SampleRequest(PROMPTS[0], 2)], params)[0]
    assert index_2 == together[0][2]  # sample i is the same whatever samples come with it
    reseeded = vllm_engine.generate(PROMPTS, replace(params, seed=3))
    assert reseeded != together
    long = "".join(PROMPTS[:7])  # over two of vLLM's 128-token blocks: the second call reads them from its cache
    assert len(vllm_engine._encode(long)) > 256
    first = vllm_engine.generate([long], params)[0]
    assert vllm_engine.generate([*PROMPTS, long], params)[-1] == first


@needs_vllm
def test_the_cache_serves_a_resumed_run_without_generating_again(tmp_path, vllm_engine):
    params = SamplingParams(n=4, temperature=0.8, max_tokens=30, seed=7, stop=("\n",))
    reference = vllm_engine.generate(PROMPTS, params)

    class Crash(Exception):
        pass

    def crash(_: int) -> None:
        raise Crash

    store = Store(tmp_path / "run.db")
    with pytest.raises(Crash):
        CachedEngine(vllm_engine, store, chunk_size=8, on_generated=crash).generate(PROMPTS, params)
    assert store.count_generations() == 8  # the first chunk was committed before the crash
    resumed = CachedEngine(vllm_engine, store, chunk_size=8)
    assert plain(resumed.generate(PROMPTS, params)) == plain(reference)
    assert (resumed.hits, resumed.misses) == (8, len(PROMPTS) * 4 - 8)
    again = CachedEngine(vllm_engine, store)
    again.generate(PROMPTS, params)
    assert again.misses == 0 and again.model_id.startswith("vllm:") and again.model_id.endswith(":float32")


@needs_vllm
def test_beam_search_runs_through_vllm(tmp_path, vllm_engine, hf_engine):
    assert vllm_engine.num_parameters == hf_engine.num_parameters  # so FLOP counts agree
    greedy = [beam(engine, temperature=0.0) for engine in (vllm_engine, hf_engine)]
    assert greedy[0] == greedy[1]  # same steps, answers, scores and usage (tokens and FLOPs)
    store = Store(tmp_path / "beam.db")
    first = beam(CachedEngine(vllm_engine, store), temperature=0.8)
    assert beam(vllm_engine, temperature=0.8) == first
    rerun = CachedEngine(vllm_engine, store)
    assert plain_results(beam(rerun, temperature=0.8)) == plain_results(first)
    assert rerun.misses == 0 and rerun.hits > 0
    assert all(r.candidates for r in first) and any(r.answer for r in first)
    assert max(len(c.steps) for r in first for c in r.candidates) >= 3  # it searched over real steps


def beam(engine, temperature: float):
    task, problems, prompts = lab_problems()
    params = SamplingParams(temperature=temperature, max_tokens=120, stop=task.solution_stop, seed=1)
    search = StepSearch(task, engine, OracleVerifier(), problems, prompts, params, step_max_tokens=24)
    return beam_search(search, 4, beam_width=2, max_rounds=6)


def plain(rows):
    return [[replace(c, cached=False) for c in row] for row in rows]


def plain_results(results):
    """Results without cache-hit counts, which differ between a fresh and a cached run by design."""
    return [(r.candidates, r.chosen, replace(r.usage, cache_hits=0)) for r in results]
