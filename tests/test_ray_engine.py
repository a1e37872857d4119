"""The Ray engine: two hf replicas on a local Ray instance give exactly the single-process engine's results."""

from __future__ import annotations

import pytest

from reasonscale.config import ModelConfig
from reasonscale.engines import build_engine
from reasonscale.engines.cached import CachedEngine
from reasonscale.engines.hf import HFEngine
from reasonscale.engines.ray import RayEngine, check_resources
from reasonscale.store import Store
from reasonscale.types import SamplingParams

ray = pytest.importorskip("ray")  # reasonscale.engines.ray itself imports ray only when an engine is built

PROMPTS = [f"Q{k}: {'ab' * k}=" for k in range(9)]


@pytest.fixture(scope="module")
def replicated(tiny_model_dir):
    """A RayEngine with 2 hf replicas on a 2-CPU local Ray instance (one per module: Ray is slow to start)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    cfg = ModelConfig(path=str(tiny_model_dir), engine="ray", replicas=2, device="cpu", max_batch_size=4)
    engine = build_engine(cfg)
    yield engine
    engine.close()
    ray.shutdown()


@pytest.fixture(scope="module")
def single(tiny_model_dir) -> HFEngine:
    return HFEngine(str(tiny_model_dir), device="cpu")


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(n=2, max_tokens=10),
        SamplingParams(n=3, temperature=0.9, top_p=0.9, max_tokens=10, seed=4, stop=("=", "b")),
    ],
    ids=["greedy", "sampled"],
)
def test_two_replicas_equal_the_single_process_engine(replicated, single, params):
    assert isinstance(replicated, RayEngine) and len(replicated.actors) == 2
    assert replicated.generate(PROMPTS, params) == single.generate(PROMPTS, params)


def test_replicas_share_the_model_identity_and_chat_template(replicated, single):
    assert (replicated.model_id, replicated.num_parameters) == (single.model_id, single.num_parameters)
    chat = [{"role": "user", "content": "hi"}]
    assert replicated.render_chat(chat) == single.render_chat(chat)


def test_a_store_filled_by_replicas_serves_the_single_engine(tmp_path, replicated, single):
    params = SamplingParams(n=2, temperature=1.0, max_tokens=8, seed=9)
    store = Store(tmp_path / "run.db")
    CachedEngine(replicated, store).generate(PROMPTS, params)
    rerun = CachedEngine(single, store)
    rerun.generate(PROMPTS, params)
    assert rerun.hits == len(PROMPTS) * 2 and rerun.misses == 0


def test_too_few_resources_fail_at_once():
    with pytest.raises(RuntimeError, match="3 replicas need 3 GPUs but the Ray cluster has 1 free"):
        check_resources({"CPU": 8.0, "GPU": 1.0}, replicas=3, cpus=1.0, gpus=1.0)
    check_resources({"CPU": 2.0}, replicas=2, cpus=1.0, gpus=0.0)


def test_a_busy_cluster_or_a_bad_replica_is_reported_at_once(replicated):
    cfg = ModelConfig(path="/no/such/model", engine="ray", replicas=1, device="cpu")
    with pytest.raises(RuntimeError, match="1 replicas need 1 CPUs but the Ray cluster has 0 free"):
        build_engine(cfg)  # the two replicas above hold both CPUs
    with pytest.raises(RuntimeError, match="(?s)'hf' replica failed to start.*model path does not exist"):
        build_engine(cfg.model_copy(update={"cpus_per_replica": 0.0}))
