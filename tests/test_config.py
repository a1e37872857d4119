import pytest

from reasonscale.config import ConfigError, RunConfig, apply_overrides, load_config


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
