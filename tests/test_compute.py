"""Compute accounting: which engines recompute prompts, and the FLOP rule."""

import pytest

from reasonscale.engines.cached import CachedEngine
from reasonscale.engines.hf import HFEngine
from reasonscale.engines.openai import OpenAIEngine
from reasonscale.engines.vllm import VLLMEngine
from reasonscale.store import Store
from reasonscale.types import Completion, Usage


def test_engines_say_whether_they_recompute_prompt_prefixes(tiny_model_dir, tmp_path):
    cached = HFEngine(str(tiny_model_dir), device="cpu")
    plain = HFEngine(str(tiny_model_dir), device="cpu", prefix_cache_bytes=0)
    assert cached.caches_prefixes and not plain.caches_prefixes
    store = Store(tmp_path / "s.sqlite")
    assert CachedEngine(cached, store).caches_prefixes and not CachedEngine(plain, store).caches_prefixes
    assert VLLMEngine.caches_prefixes and not OpenAIEngine.caches_prefixes


def test_policy_flops_charge_prompts_only_when_recomputed():
    usage = Usage()
    usage.add_completions([Completion("a", "stop", 10, 3), Completion("b", "stop", 12, 5)], params_count=7)
    assert usage.policy_flops(7, caches_prefixes=True) == 2 * 7 * (3 + 5)
    assert usage.policy_flops(7, caches_prefixes=False) == 2 * 7 * (10 + 12 + 3 + 5)
    usage.add_verified(tokens=4, params_count=100)
    assert usage.verifier_flops == 2 * 100 * 4 and usage.verifier_tokens == 4 and usage.verifier_calls == 1
    assert usage.flops == pytest.approx(2 * 7 * 30 + 2 * 100 * 4)
