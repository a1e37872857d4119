from dataclasses import replace

import pytest

from reasonscale.store import Store, generation_key
from reasonscale.types import Completion, SamplingParams


def test_generation_roundtrip_and_flags(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    params = SamplingParams(n=4, temperature=0.7, stop=("\n",))
    key = generation_key("m", "p", params, 2)
    store.put_generations("m", [(key, Completion("out", "stop", 3, 4, stop="\n"))])
    got = store.get_generations([key, "missing"])
    assert list(got) == [key]
    assert got[key] == Completion("out", "stop", 3, 4, stop="\n", cached=True)


BASE = SamplingParams(temperature=0.7, top_p=0.9, max_tokens=64, stop=("\n\n",), seed=0)


@pytest.mark.parametrize(
    "changed",
    [
        {"stop": ("\n",)},
        {"stop": ("\n\n", "Question:")},
        {"stop": ()},
        {"max_tokens": 65},
        {"top_p": 0.95},
        {"temperature": 0.8},
        {"temperature": 0.0},
        {"seed": 1},
    ],
)
def test_every_sampling_setting_is_in_the_key(changed):
    assert generation_key("m", "p", replace(BASE, **changed), 0) != generation_key("m", "p", BASE, 0)


def test_model_prompt_and_sample_index_are_in_the_key():
    base = generation_key("hf:tiny@abc:float32", "p", BASE, 0)
    assert base != generation_key("hf:tiny@abc:bfloat16", "p", BASE, 0)  # same weights, another dtype
    assert base != generation_key("hf:tiny@abd:float32", "p", BASE, 0)  # other weights
    assert base != generation_key("hf:tiny@abc:float32", "p2", BASE, 0)
    assert base != generation_key("hf:tiny@abc:float32", "p", BASE, 1)  # sampled: each index its own sample
    assert base == generation_key("hf:tiny@abc:float32", "p", replace(BASE, n=8), 0)  # n does not matter


def test_greedy_samples_share_one_key():
    greedy = replace(BASE, temperature=0.0)
    assert generation_key("m", "p", greedy, 0) == generation_key("m", "p", greedy, 5)


def test_results_persist_in_order(tmp_path):
    path = tmp_path / "s.sqlite"
    store = Store(path)
    store.put_result("run", "b", 1, {"x": 2})
    store.put_result("run", "a", 0, {"x": 1})
    store.put_result("other", "a", 0, {"x": 3})
    store.close()
    assert list(Store(path).get_results("run").items()) == [("a", {"x": 1}), ("b", {"x": 2})]
    assert Store(path).get_results("other") == {"a": {"x": 3}}
