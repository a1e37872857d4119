"""The vLLM engine: request and output mapping everywhere; generation itself only where vLLM and a GPU exist."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from reasonscale.config import ModelConfig
from reasonscale.engines import build_engine
from reasonscale.engines.base import SampleRequest, sample_seed
from reasonscale.engines.hf import HFEngine
from reasonscale.engines.vllm import (
    VLLMEngine,
    VLLMUnavailable,
    count_parameters,
    sampling_kwargs,
    to_completion,
    vllm_unavailable_reason,
)
from reasonscale.types import Completion, SamplingParams

UNAVAILABLE = vllm_unavailable_reason()
needs_vllm = pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or "")


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
def vllm_engine(tiny_model_dir):
    engine = VLLMEngine(str(tiny_model_dir), gpu_memory_utilization=0.3)
    yield engine
    engine.close()


@needs_vllm
def test_vllm_samples_are_reproducible_in_any_batch(vllm_engine):
    prompts = ["Q: 1+2=", "x", "Let a=5. b="]
    params = SamplingParams(n=3, temperature=1.0, max_tokens=16, seed=2)
    together = vllm_engine.generate(prompts, params)
    assert together == [vllm_engine.generate([p], params)[0] for p in prompts]
    assert all(len({c.text for c in row}) > 1 for row in together)


@needs_vllm
def test_vllm_stops_and_token_counts(vllm_engine):
    full = vllm_engine.generate(["x"], SamplingParams(max_tokens=20))[0][0]
    assert full.prompt_tokens == 2 and full.completion_tokens <= 20
    stop = full.text[3:5]
    done = vllm_engine.generate(["x"], SamplingParams(max_tokens=20, stop=(stop,)))[0][0]
    assert done.text == full.text[: full.text.index(stop)] and done.stop == stop
