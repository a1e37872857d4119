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


def test_keys_separate_what_changes_a_sample():
    p = SamplingParams(temperature=0.7)
    base = generation_key("m", "p", p, 0)
    assert base != generation_key("m2", "p", p, 0)
    assert base != generation_key("m", "p2", p, 0)
    assert base != generation_key("m", "p", p, 1)
    assert base != generation_key("m", "p", SamplingParams(temperature=0.7, seed=1), 0)
    assert base == generation_key("m", "p", SamplingParams(n=8, temperature=0.7), 0)  # n does not matter


def test_greedy_samples_share_one_key():
    greedy = SamplingParams(temperature=0.0)
    assert generation_key("m", "p", greedy, 0) == generation_key("m", "p", greedy, 5)


def test_results_persist_in_order(tmp_path):
    path = tmp_path / "s.sqlite"
    store = Store(path)
    store.put_result("run", "b", 1, {"x": 2})
    store.put_result("run", "a", 0, {"x": 1})
    store.close()
    assert list(Store(path).get_results("run").items()) == [("a", {"x": 1}), ("b", {"x": 2})]


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
