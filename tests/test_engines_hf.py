"""The in-process hf engine (seeded sampling, stops, continuation, token counts) and the caching wrapper."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import replace

import torch

from reasonscale.config import ModelConfig
from reasonscale.engines import build_engine
from reasonscale.engines.base import Engine, SampleRequest, cut_at_stop
from reasonscale.engines.cached import CachedEngine
from reasonscale.engines.hf import HFEngine, counter_uniform
from reasonscale.engines.prefix_cache import PrefixCache
from reasonscale.store import Store
from reasonscale.types import Completion, SamplingParams

PROMPTS = ["Q: 1+2=", "Question: what is 3*4? Answer:", "x", "Let a=5. b=a+2. So b="]


class CountingEngine(Engine):
    """Passes requests through and records every one the model actually ran."""

    def __init__(self, inner: Engine):
        self.inner = inner
        self.model_id = inner.model_id
        self.seen: list[SampleRequest] = []

    def complete(self, requests: Sequence[SampleRequest], params: SamplingParams) -> list[Completion]:
        self.seen.extend(requests)
        return self.inner.complete(requests, params)


def test_build_engine_makes_an_hf_engine(tiny_model_dir):
    engine = build_engine(ModelConfig(path=str(tiny_model_dir), device="cpu"))
    assert isinstance(engine, HFEngine) and engine.num_parameters > 0


def test_sampling_is_reproducible_under_a_seed(engine):
    params = SamplingParams(n=3, temperature=1.0, max_tokens=10, seed=7)
    first, again = engine.generate(PROMPTS, params), engine.generate(PROMPTS, params)
    assert first == again
    assert all(len({c.text for c in row}) > 1 for row in first), "samples of one prompt should differ"
    other_seed = engine.generate(PROMPTS, replace(params, seed=8))
    assert other_seed != first


def test_a_sample_is_the_same_in_any_batch(tiny_model_dir, engine):
    params = SamplingParams(n=2, temperature=0.9, top_p=0.9, max_tokens=10, seed=3)
    together = engine.generate(PROMPTS, params)
    alone = [engine.generate([p], params)[0] for p in PROMPTS]
    assert together == alone
    small_batches = HFEngine(str(tiny_model_dir), device="cpu", max_batch_size=3)
    shuffled = [SampleRequest(p, i) for i in (1, 0) for p in reversed(PROMPTS)]
    made = dict(zip(shuffled, small_batches.complete(shuffled, params)))
    assert [[made[SampleRequest(p, i)] for i in range(2)] for p in PROMPTS] == together


def test_greedy_samples_are_identical(engine):
    row = engine.generate(["Q: 1+2="], SamplingParams(n=3, temperature=0.0, max_tokens=12))[0]
    assert len({c.text for c in row}) == 1


def test_noise_is_a_pure_function_of_seed_step_and_token():
    seeds = torch.tensor([1, -5, 1 << 62], dtype=torch.int64)
    u = counter_uniform(seeds, step=3, vocab_size=50)
    assert u.shape == (3, 50) and bool(((u > 0) & (u < 1)).all())
    assert torch.equal(u, counter_uniform(seeds, 3, 50))
    assert torch.equal(u[1], counter_uniform(seeds[1:2], 3, 50)[0])
    assert not torch.equal(u, counter_uniform(seeds, 4, 50))


def test_stop_string_is_cut_and_named(engine):
    full = engine.generate(["Q: 1+2="], SamplingParams(max_tokens=24))[0][0].text
    stop = full[5:7]  # two characters the model produces, so generation must end there
    done = engine.generate(["Q: 1+2="], SamplingParams(max_tokens=24, stop=(stop, "never")))[0][0]
    cut = full.index(stop)
    assert done.text == full[:cut] and done.stop == stop and done.finish_reason == "stop"
    assert done.completion_tokens == cut + len(stop)  # one token per character


def test_prefix_continuation_resumes_the_same_text(engine):
    prompt = "Let a=5. b=a+2. So b="
    full = engine.generate([prompt], SamplingParams(max_tokens=24))[0][0].text
    step = engine.generate([prompt], SamplingParams(max_tokens=24, stop=(full[6],)))[0][0]
    rest = engine.generate([prompt + step.text + step.stop], SamplingParams(max_tokens=24))[0][0]
    resumed = step.text + step.stop + rest.text
    common = min(len(full), len(resumed))
    assert common > len(step.text) + 1 and resumed[:common] == full[:common]


def test_token_counts(engine):
    made = engine.generate(PROMPTS, SamplingParams(temperature=1.0, max_tokens=5, seed=1))
    for prompt, (c,) in zip(PROMPTS, made):
        assert c.prompt_tokens == len(prompt) + 1  # characters plus BOS
        assert c.completion_tokens <= 5
        assert c.finish_reason == ("length" if c.completion_tokens == 5 else "stop")


def test_a_prompt_that_starts_with_bos_gets_no_second_one(engine):
    plain = engine.generate(["x"], SamplingParams(max_tokens=8))[0][0]
    with_bos = engine.generate(["<s>x", "y"], SamplingParams(max_tokens=8))[0][0]
    assert with_bos == plain


def test_render_chat_uses_the_chat_template(engine):
    assert engine.render_chat([{"role": "user", "content": "hi"}]) == "user: hi\nassistant:"


def test_cached_engine_makes_no_model_calls_on_a_rerun(tmp_path, engine):
    params = SamplingParams(n=3, temperature=1.0, max_tokens=12, seed=5)
    store = Store(tmp_path / "run.db")
    counting = CountingEngine(engine)
    first = CachedEngine(counting, store, chunk_size=4).generate(PROMPTS, params)
    assert len(counting.seen) == 12 and not any(c.cached for row in first for c in row)
    rerun = CachedEngine(counting, store).generate(PROMPTS, params)
    assert len(counting.seen) == 12, "a re-run must not call the model"
    assert all(c.cached for row in rerun for c in row)
    assert [[c.text for c in row] for row in rerun] == [[c.text for c in row] for row in first]
    more = CachedEngine(counting, store).generate(PROMPTS, replace(params, n=4))
    assert len(counting.seen) == 16 and [row[:3] for row in more] == rerun  # only the 4th samples are new


def test_rows_sharing_a_prompt_match_rows_sampled_alone(tiny_model_dir):
    """The shared prefill of a prompt's n samples changes nothing in what each sample says."""
    from reasonscale.engines.base import SampleRequest
    from reasonscale.engines.hf import HFEngine
    from reasonscale.types import SamplingParams

    engine = HFEngine(str(tiny_model_dir), device="cpu", max_batch_size=32)
    params = SamplingParams(n=4, temperature=1.0, max_tokens=12, seed=5)
    prompts = ["x = 3. y = x * 2.\n", "a much longer prompt with more characters in it\n"]
    together = engine.generate(prompts, params)
    for k, prompt in enumerate(prompts):
        for i in (0, 3):
            alone = engine.complete([SampleRequest(prompt, i)], params)[0]
            assert together[k][i] == alone


def test_prefix_cache_keeps_the_longest_prefix_and_its_byte_bound():
    def kv(tokens: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(torch.zeros(1, tokens, 2), torch.zeros(1, tokens, 2))]  # 16 bytes a token

    cache = PrefixCache(max_bytes=16 * 9)
    cache.add((1, 2), kv(2))
    cache.add((1, 2, 3, 4), kv(4))
    cache.add((7,), kv(1))
    assert cache.longest_prefix([1, 2, 3, 4, 5])[0] == 4
    assert cache.longest_prefix([1, 2, 3])[0] == 2
    assert cache.longest_prefix([2, 1])[0] == 0
    cache.add((9, 9, 9), kv(3))  # 10 tokens: the least recently used entry goes, (1, 2) was just used
    assert cache.nbytes == 16 * 9 and (7,) not in cache and (1, 2) in cache and (9, 9, 9) in cache
    cache.add((5,) * 11, kv(11))  # larger than the whole cache: not kept
    assert (5,) * 11 not in cache and cache.nbytes <= cache.max_bytes


def test_continuations_reuse_the_prefix_cache_and_sample_the_same(tiny_model_dir):
    """Step-wise continuation (prompt + step so far) encodes only the new tokens and samples exactly what an
    engine without a prefix cache samples, with left padding across prompts of different lengths."""
    cached = HFEngine(str(tiny_model_dir), device="cpu")
    uncached = HFEngine(str(tiny_model_dir), device="cpu", prefix_cache_bytes=0)
    params = SamplingParams(n=3, temperature=1.0, max_tokens=12, seed=4, stop=("e", "a "))
    texts = {engine: [list(PROMPTS)] for engine in (cached, uncached)}
    for _ in range(3):
        for engine, rounds in texts.items():
            made = engine.generate(rounds[-1], params)
            rounds.append([p + c.text + (c.stop or "") for p, row in zip(rounds[-1], made) for c in row][:6])
    assert texts[cached] == texts[uncached]
    assert len({len(p) for p in texts[cached][-1]}) > 1, "rows of different lengths share a padded batch"
    encoded = cached.encoded_tokens
    made = cached.generate(texts[cached][-1] + ["a fresh prompt"], params)
    assert made == uncached.generate(texts[cached][-1] + ["a fresh prompt"], params)
    assert cached.encoded_tokens - encoded < sum(len(p) for p in texts[cached][-1]) // 2
    assert uncached.prefix_cache.nbytes == 0 and 0 < cached.prefix_cache.nbytes <= cached.prefix_cache.max_bytes


def test_stop_strings_end_rows_at_different_steps_as_when_sampled_alone(tiny_model_dir, engine):
    """Rows leave the batch as they stop; each still matches its unstopped sample cut at the first stop."""
    params = SamplingParams(n=4, temperature=1.0, max_tokens=20, seed=9)
    stops = ("e", "an", "1")
    free = engine.generate(PROMPTS, params)
    stopped = engine.generate(PROMPTS, replace(params, stop=stops))
    assert len({c.completion_tokens for row in stopped for c in row}) > 2, "rows should stop at different steps"
    for prompt, free_row, stopped_row in zip(PROMPTS, free, stopped):
        for i, (full, cut) in enumerate(zip(free_row, stopped_row)):
            request = SampleRequest(prompt, i)
            assert (cut.text, cut.stop) == cut_at_stop(full.text, stops)
            assert cut == engine.complete([request], replace(params, stop=stops))[0]
            if cut.stop is not None:  # it stopped at the first token whose text completes a stop
                shorter = engine.complete([request], replace(params, max_tokens=cut.completion_tokens - 1))[0]
                assert cut_at_stop(shorter.text, stops)[1] is None


def test_logits_match_a_full_encoding_after_a_cached_prefix_or_a_decoded_token(tiny_model_dir):
    """Keys and values from the prefix cache, or from decoding, give the logits of encoding the prompt whole."""
    cached = HFEngine(str(tiny_model_dir), device="cpu")
    uncached = HFEngine(str(tiny_model_dir), device="cpu", prefix_cache_bytes=0)
    made = cached.generate(PROMPTS, SamplingParams(temperature=1.0, max_tokens=8, seed=2))
    longer = uncached.token_ids([p + row[0].text for p, row in zip(PROMPTS, made)])
    every = list(range(len(longer)))
    encoded = cached.encoded_tokens
    with torch.inference_mode():
        full = uncached._prefill(longer, every).logits
        reused = cached._prefill(longer, every).logits
        stepped = uncached._prefill([ids[:-1] for ids in longer], every)
        uncached._advance(stepped, torch.tensor([ids[-1] for ids in longer]))
    assert cached.encoded_tokens - encoded < sum(map(len, longer)) // 2
    assert torch.allclose(reused, full, atol=1e-5) and torch.allclose(stepped.logits, full, atol=1e-5)


def test_the_engine_uses_the_current_cache_api(engine):
    """No deprecated argument reaches the model (transformers removes `past_key_values` in 5.40)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        made = engine.generate(["Q: 1+2=", "x"], SamplingParams(n=2, temperature=1.0, max_tokens=6, seed=1))
    assert all(c.completion_tokens > 0 for row in made for c in row)
