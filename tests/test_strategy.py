"""The strategy registry and readable labels."""

from typing import Literal

import pytest

from reasonscale.config import RunConfig, StrategyConfig
from reasonscale.search.strategy import Outcome, Strategy, labels, register, registered
from reasonscale.types import Usage


def test_builtins_are_registered_with_their_sections():
    strategies = registered()
    assert {"greedy", "majority", "best_of_n", "weighted_best_of_n", "pass_at_k", "beam", "lookahead", "dvts"} <= set(
        strategies
    )
    assert all(s.config_class.model_fields["name"].default == name for name, s in strategies.items())


def test_labels_are_short_where_unique_and_show_differences_where_not():
    configs = [
        StrategyConfig(name="majority", n=16),
        StrategyConfig(name="beam", verifier="prm", verifier_path="/m/prm", beam_width=4),
        StrategyConfig(name="beam", verifier="prm", verifier_path="/m/prm", beam_width=8),
        StrategyConfig(name="beam", verifier="oracle"),
        StrategyConfig(name="best_of_n", verifier="prm:/a/prm"),
        StrategyConfig(name="best_of_n", verifier="prm:/b/prm"),
        StrategyConfig(name="weighted_best_of_n", verifier="oracle", aggregate="min"),
        StrategyConfig(name="lookahead", verifier="oracle", lookahead=1),
        StrategyConfig(name="lookahead", verifier="oracle", lookahead=3, max_rounds=4),
    ]
    assert labels(configs) == [
        "majority",
        "beam[prm,M=4]",
        "beam[prm,M=8]",
        "beam[oracle]",
        "best_of_n[prm,/a/prm]",
        "best_of_n[prm,/b/prm]",
        "weighted_best_of_n[oracle,min]",
        "lookahead[oracle,rounds=12,k=1]",
        "lookahead[oracle,rounds=4,k=3]",
    ]


class DoubleConfig(StrategyConfig):
    name: Literal["double_test"] = "double_test"
    factor: int = 2


@register
class Double(Strategy):
    """A toy strategy registered by a test: it answers twice the problem number at no cost."""

    config_class = DoubleConfig

    def run(self, chunk, n):
        return [Outcome(str(self.config.factor * n), 1.0, Usage()) for _ in chunk.problems]


def test_a_new_strategy_is_a_registered_class_and_a_section():
    cfg = RunConfig.model_validate(
        {"model": {"path": "m"}, "task": {"name": "lab"}, "strategies": [{"name": "double_test", "factor": 3}]}
    )
    assert isinstance(cfg.strategies[0], DoubleConfig) and cfg.strategies[0].settings() == {"factor": 3}
    with pytest.raises(ValueError, match="factr"):
        StrategyConfig(name="double_test", factr=3)
