"""The arms of `reasonscale lab solar` at matched compute (`evaluate.matched`): at each budget, what the topological
method's generated tokens buy otherwise. Per policy (base against rewarding, tuned against hybrid):

- N chains voting (`base-matched`, `tuning-matched`), and the same N chains chosen by the oracle verifier that the
  nested topologies use (`chains-oracle`, `tuned-chains-oracle`): is the gain the topologies' or the oracle's?
- the best single topology of the training questions' TAG (`best_single`) alone: `topological` over that topology
  only, with the same reward model and selection, N responses (`best-topology`, `tuned-best-topology`): does mixing
  topologies beat the best one?

N is the count whose generated tokens per question are closest to the topological method's at that budget
(`matched_chains`), measured from one chain or one response of the topology (`evaluate.matched_n` fixes the chains'
N instead).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reasonscale.config import RunConfig, StrategyConfig
from reasonscale.pipelines.evaluate import run_evaluation
from reasonscale.pipelines.solar_results import Point, compare, curve, matched_chains
from reasonscale.search.strategy import labels

if TYPE_CHECKING:
    from reasonscale.pipelines.solar_lab import Factory, SolarConfig, Trained

PAIRS = {"base": ("rewarding", "base"), "tuned": ("hybrid", "tuning")}  # policy: (its topological, its chains)
# method: (run, strategy); a run `<policy>-matched` holds the chains, `<policy>-single` the best single topology
MATCHED = {"base-matched": ("base-matched", "cot"), "tuning-matched": ("tuned-matched", "cot"),
           "chains-oracle": ("base-matched", "weighted_best_of_n"),
           "tuned-chains-oracle": ("tuned-matched", "weighted_best_of_n"),
           "best-topology": ("base-single", "topological"),
           "tuned-best-topology": ("tuned-single", "topological")}  # fmt: skip
Build = Callable[[str, "Trained", str, int], RunConfig]  # (policy path, training, run name, seed) -> the run


def best_topology(cfg: SolarConfig, trained: Trained) -> StrategyConfig:
    """The topology whose responses were most often right on the training questions (TAG's `best_single`)."""
    variant = trained.tags["tag-train"]["best_single"]["variant"]
    return cfg.topologies[labels(cfg.topologies).index(variant)]


def run_matched(
    cfg: SolarConfig,
    by_seed: dict[int, Trained],
    points: dict[str, list[Point]],
    segments: dict[str, str],
    runs: dict[str, Any],
    show_progress: bool,
    engine_factory: Factory,
) -> dict[str, list[Point]]:
    """Every matched arm of each policy at each budget, as curves; adds the runs to `runs`."""
    out, seeds, budgets = Path(cfg.output_dir), cfg.evaluate.seeds, cfg.evaluate.budgets

    def each_seed(policy: str, kind: str, build: Build) -> None:
        for seed in seeds:
            path = cfg.model.path if policy == "base" else by_seed[seed].tune["model"]
            name = f"eval-{policy}-{kind}-s{seed}"
            runs[name] = run_evaluation(build(path, by_seed[seed], name, seed), show_progress, engine_factory)

    def single(counts: list[int]) -> Build:
        return lambda path, trained, name, seed: cfg.single_evaluation(
            path, trained.trm, best_topology(cfg, trained), counts, name, seed
        )

    chosen: dict[str, list[int]] = {}
    for policy, (topological, chains) in PAIRS.items():
        tokens = points[topological]
        chosen[f"{policy}-matched"] = cfg.evaluate.matched_n or [
            matched_chains(t, c, b) for t, c, b in zip(tokens, points[chains], budgets)
        ]
        counts = chosen[f"{policy}-matched"]
        each_seed(policy, "matched", lambda path, _, name, seed, c=counts: cfg.matched_evaluation(path, c, name, seed))
        each_seed(policy, "single", single([1]))  # one response of the topology: its tokens
        one = compare(out, {"one": (f"{policy}-single", "topological", 1)}, segments, seeds)["one"]
        chosen[f"{policy}-single"] = [matched_chains(t, one, 1) for t in tokens]
        each_seed(policy, "single", single(chosen[f"{policy}-single"]))
    arms = {method: (run, strategy, chosen[run]) for method, (run, strategy) in MATCHED.items()}
    return curve(out, arms, budgets, segments, seeds)
