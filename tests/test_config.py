import pytest

from reasonscale.config import ConfigError, RunConfig
from reasonscale.config_loading import apply_overrides, load_config


def write(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


BASE = """
model: {path: some/model}
task: {name: gsm8k, limit: 3}
strategies:
  - {name: majority, n: 8}
"""


def test_valid_config_loads_with_defaults(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    assert isinstance(cfg, RunConfig)
    assert cfg.task.limit == 3 and cfg.strategies[0].n == 8 and cfg.sampling.temperature == 0.8


def test_misspelt_key_is_named_with_suggestion(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, BASE + "sampling: {temprature: 0.5}\n"))
    assert "sampling.temprature" in str(err.value) and "did you mean 'temperature'" in str(err.value)


def test_unknown_key_in_list_item_is_named(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, BASE.replace("n: 8", "nn: 8")))
    assert "strategies.0.nn" in str(err.value) and "'n'" in str(err.value)


def test_unknown_top_level_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'modle'.*'model'"):
        load_config(write(tmp_path, BASE + "modle: {}\n"))


def test_bad_value_names_key(tmp_path):
    with pytest.raises(ConfigError, match="task.name"):
        load_config(write(tmp_path, BASE.replace("gsm8k", "gsm9k")))


def test_overrides_apply_with_yaml_types(tmp_path):
    cfg = load_config(write(tmp_path, BASE), ["sampling.temperature=0.3", "strategies.0.n=4", "task.limit=null"])
    assert cfg.sampling.temperature == 0.3 and cfg.strategies[0].n == 4 and cfg.task.limit is None


def test_override_with_unknown_key_fails(tmp_path):
    with pytest.raises(ConfigError, match="sampling.tempreture"):
        load_config(write(tmp_path, BASE), ["sampling.tempreture=0.3"])


def test_override_needs_equals():
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_overrides({}, ["sampling.temperature"])


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def strategies_yaml(tmp_path, entries: str):
    return write(tmp_path, BASE.replace("  - {name: majority, n: 8}\n", entries))


def test_each_strategy_has_its_own_section_with_suggestions(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(strategies_yaml(tmp_path, "  - {name: beam, verifier: oracle, beam_widht: 8}\n"))
    assert "strategies.0.beam_widht" in str(err.value) and "did you mean 'beam_width'" in str(err.value)
    with pytest.raises(ConfigError, match="strategies.0.lookahead"):  # a lookahead setting is not beam's
        load_config(strategies_yaml(tmp_path, "  - {name: beam, verifier: oracle, lookahead: 2}\n"))
    with pytest.raises(ConfigError, match="strategies.0.beam_width"):  # nor is a beam setting majority's
        load_config(strategies_yaml(tmp_path, "  - {name: majority, n: 4, beam_width: 2}\n"))
    cfg = load_config(strategies_yaml(tmp_path, "  - {name: lookahead, verifier: oracle, lookahead: 2}\n"))
    assert type(cfg.strategies[0]).__name__ == "LookaheadConfig" and cfg.strategies[0].lookahead == 2


def test_strategy_names_are_checked_against_the_registry(tmp_path):
    with pytest.raises(ConfigError, match="strategies.0.*unknown strategy 'majorty'; did you mean 'majority'"):
        load_config(strategies_yaml(tmp_path, "  - {name: majorty, n: 4}\n"))
    with pytest.raises(ConfigError, match="needs a 'name'"):
        load_config(strategies_yaml(tmp_path, "  - {n: 4}\n"))


def test_duplicate_strategies_are_an_error_in_any_spelling(tmp_path):
    twice = "  - {name: best_of_n, verifier: 'prm:/m', n: 4}\n  - {name: best_of_n, verifier: prm, verifier_path: /m}\n"
    with pytest.raises(ConfigError, match="strategies 0 and 1 are the same strategy"):
        load_config(strategies_yaml(tmp_path, twice))
    widths = "  - {name: beam, verifier: oracle, beam_width: 2}\n  - {name: beam, verifier: oracle, beam_width: 4}\n"
    assert len(load_config(strategies_yaml(tmp_path, widths)).strategies) == 2


def test_overrides_reach_strategy_sections(tmp_path):
    cfg = load_config(strategies_yaml(tmp_path, "  - {name: dvts, verifier: oracle}\n"), ["strategies.0.beam_width=8"])
    assert cfg.strategies[0].beam_width == 8 and cfg.strategies[0].settings()["beam_width"] == 8


def test_every_hyper_parameter_is_in_a_strategy_identity():
    from reasonscale.config import StrategyConfig

    base = StrategyConfig(name="lookahead", verifier="prm", verifier_path="/a")
    for changed in [
        {"beam_width": 8},
        {"lookahead": 2},
        {"max_rounds": 3},
        {"step_max_tokens": 99},
        {"verifier_path": "/b"},
        {"verifier_options": {"step_tag": "ки"}},
        {"aggregate": "min"},
        {"verifier": "orm"},
    ]:
        other = StrategyConfig(**{**base.model_dump(), **changed})
        assert other.settings() != base.settings(), changed
    assert StrategyConfig(**{**base.model_dump(), "n": 64, "budgets": [4]}).settings() == base.settings()


@pytest.mark.parametrize("example", ["gsm8k.yaml", "math500.yaml"])
def test_example_run_configs_stay_valid(example):
    from pathlib import Path

    cfg = load_config(Path(__file__).parent.parent / "examples" / example)
    assert [s.name for s in cfg.strategies] == ["greedy", "majority", "pass_at_k"]


def test_example_search_config_stays_valid():
    from pathlib import Path

    from reasonscale.pipelines.search_experiment import SearchExperimentConfig, strategies

    cfg = load_config(Path(__file__).parent.parent / "examples" / "lab_search.yaml", model=SearchExperimentConfig)
    built = RunConfig(model={"path": "m"}, task={"name": "lab"}, strategies=strategies(cfg, "/prm", policy="m"))
    names = {type(s).__name__ for s in built.strategies}
    assert {"MajorityConfig", "BeamConfig", "BestOfNConfig", "WeightedBestOfNConfig"} <= names
    assert {s.verifier for s in built.strategies if type(s).__name__ == "BeamConfig"} == set(cfg.search_verifiers)


def test_budgets_set_n_and_may_not_exceed_it():
    from reasonscale.config import StrategyConfig

    beam = StrategyConfig(name="beam", verifier="oracle", budgets=[16, 4, 4])
    assert beam.budgets == [4, 16] and beam.n == 16 and beam.budget_list() == [4, 16]
    assert StrategyConfig(name="majority", n=12).budget_list() == [1, 2, 4, 8, 12]
    with pytest.raises(ValueError, match="budgets go up to 16 but n is 8"):
        StrategyConfig(name="majority", n=8, budgets=[4, 16])
    with pytest.raises(ValueError):
        StrategyConfig(name="majority", budgets=[0, 4])
