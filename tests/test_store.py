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


def test_claims_are_exclusive_and_lapse_with_their_process(tmp_path):
    from reasonscale.store import new_owner

    a, b = Store(tmp_path / "s.sqlite"), Store(tmp_path / "s.sqlite")
    first, second = new_owner(), new_owner()
    assert a.claim(["k1", "k2"], first) == {"k1", "k2"}
    assert b.claim(["k2", "k3"], second) == {"k3"}  # k2 is first's while first lives
    a.release(["k2"], first)
    assert b.claim(["k2"], second) == {"k2"}
    dead = "somehost-that-is-this:0:x".replace("somehost-that-is-this", __import__("socket").gethostname())
    dead = dead.replace(":0:", ":999999999:")  # no such pid on this host
    a.claim(["k9"], dead)
    assert b.claim(["k9"], second) == {"k9"}  # its owner's process is gone: taken over
    assert b.claim(["k1"], second, stale_after_s=-1) == {"k1"}  # too old: taken over


def test_opening_a_store_waits_out_a_lock_but_not_a_broken_file():
    import sqlite3

    from reasonscale.store import _while_locked

    calls = []

    def locked_twice():
        calls.append(1)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")

    _while_locked(locked_twice)
    assert len(calls) == 3
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _while_locked(lambda: (_ for _ in ()).throw(sqlite3.OperationalError("database is locked")), wait_s=0.2)
    broken = []
    with pytest.raises(sqlite3.OperationalError, match="malformed"):
        _while_locked(lambda: broken.append(1) or (_ for _ in ()).throw(sqlite3.OperationalError("malformed")))
    assert broken == [1]
