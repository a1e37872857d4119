"""The `topological` strategy: exactly N responses across topologies, each at its own seed, every cost counted."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import pytest
from test_search import NoisyLabPolicy

from reasonscale.config import LabTaskConfig, ModelConfig, RunConfig, SamplingConfig, StrategyConfig, TaskConfig
from reasonscale.pipelines.evaluate import run_evaluation
from reasonscale.search.strategy import Outcome, Strategy, build_strategy, register
from reasonscale.search.topological import SubChunk, Topological, TopologicalConfig, allocate
from reasonscale.tasks.lab import LabTask
from reasonscale.types import SamplingParams, Usage
from reasonscale.verifiers.oracle import OracleVerifier


class CountedConfig(StrategyConfig):
    name: Literal["counted"] = "counted"
    tag: str = "a"


@register
class Counted(Strategy):
    """A fake topology: answers the reference, records which problems it answered at which seed."""

    config_class = CountedConfig
    calls: ClassVar[list[tuple[str, str, int]]] = []

    def run(self, chunk, n):
        seed = chunk.sampling(n).seed
        out = []
        for p in chunk.problems:
            Counted.calls.append((self.config.tag, p.id, seed))
            out.append(Outcome(p.answer, 1.0, Usage(policy_calls=n, completion_tokens=7), f"answer={p.answer}"))
        return out


@dataclass
class LabChunk:
    task: LabTask
    engine: object
    problems: list
    prompts: list
    verifiers: dict = field(default_factory=lambda: {"oracle": OracleVerifier()})

    def sampling(self, n: int = 1, greedy: bool = False) -> SamplingParams:
        return SamplingParams(n, 0.0 if greedy else 0.8, max_tokens=200, stop=self.task.solution_stop, seed=5)

    def verifier(self, config):
        return self.verifiers[config.verifier_key()]


@pytest.fixture(scope="module")
def lab():
    task = LabTask(TaskConfig(name="lab", lab=LabTaskConfig(levels=[3, 4], per_level=5)))
    problems = task.load()
    return task, problems, [task.format_prompt(p) for p in problems]


@pytest.mark.parametrize("n,shares", [(1, [1, 1]), (5, [1, 3]), (7, [0.2, 0.3, 0.5]), (4, [0, 1]), (3, [1, 1, 1, 1])])
def test_allocate_spends_exactly_n(n, shares):
    counts = allocate(n, shares)
    assert sum(counts) == n and len(counts) == len(shares)
    assert all(abs(c - n * s / sum(shares)) < 1 for c, s in zip(counts, shares))


def test_each_topology_answers_its_share_at_its_own_seeds(lab):
    task, problems, prompts = lab
    Counted.calls.clear()
    cfg = TopologicalConfig(
        topologies=[{"name": "counted", "tag": "a"}, {"name": "counted", "tag": "b"}],
        shares=[1, 3], verifier="oracle", n=4,
    )  # fmt: skip
    outcomes = Topological(cfg).run(LabChunk(task, None, problems, prompts), 4)
    for p in problems:
        mine = [(tag, seed) for tag, pid, seed in Counted.calls if pid == p.id]
        assert sorted(mine) == [("a", 5), ("b", 5), ("b", 6), ("b", 7)]  # 1 + 3 responses, seeds seed + j
    assert all(o.correct == 1.0 for o in outcomes)
    assert all(o.usage.completion_tokens == 4 * 7 and o.usage.verifier_calls == 4 for o in outcomes)


def test_real_topologies_are_charged_exactly_what_the_engine_produced(lab):
    task, problems, prompts = lab
    engine = NoisyLabPolicy()
    cfg = TopologicalConfig(
        topologies=[{"name": "cot", "n": 1}, {"name": "tot", "n": 2, "verifier": "oracle"}],
        verifier="oracle", select="argmax", n=3,
    )  # fmt: skip
    outcomes = Topological(cfg).run(LabChunk(task, engine, problems, prompts), 3)
    total = Usage()
    for o in outcomes:
        total += o.usage
    assert total.policy_calls == len(engine.returned) > 0
    assert total.completion_tokens == sum(c.completion_tokens for c in engine.returned)
    assert total.prompt_tokens == sum(c.prompt_tokens for c in engine.returned)
    alone = {  # each response on its own: cot gets 2 (seeds 5, 6), tot 1 (the tie of 1.5 each goes to the first)
        (t.name, j): build_strategy(t).run(SubChunk(LabChunk(task, NoisyLabPolicy(), problems, prompts), problems,
                                                    prompts, j), t.n)
        for t, count in zip(cfg.topologies, (2, 1)) for j in range(count)
    }  # fmt: skip
    best = [max(r[i].correct for r in alone.values()) for i in range(len(problems))]
    assert [o.correct for o in outcomes] == best and sum(best) > sum(o.correct for o in alone["cot", 0])


def test_config_errors_name_the_place():
    with pytest.raises(ValueError, match="one non-negative weight per topology"):
        TopologicalConfig(topologies=[{"name": "cot"}], shares=[1, 2], verifier="oracle")
    with pytest.raises(ValueError, match="topologies.0: 'majority' is not a topology"):
        TopologicalConfig(topologies=[{"name": "majority"}], verifier="oracle")
    with pytest.raises(ValueError, match="topologies.1: its verifier must be oracle"):
        TopologicalConfig(topologies=[{"name": "cot"}, {"name": "tot", "verifier": "prm:x"}], verifier="oracle")


def test_topological_runs_through_the_evaluation(tmp_path):
    cfg = RunConfig(
        model=ModelConfig(path="noisy"),
        task=TaskConfig(name="lab", lab=LabTaskConfig(levels=[4], per_level=6)),
        sampling=SamplingConfig(temperature=0.8, max_tokens=200),
        strategies=[
            StrategyConfig(name="cot", n=1),
            StrategyConfig(name="topological", n=4, budgets=[4], verifier="oracle",
                           topologies=[{"name": "cot"}, {"name": "tot", "n": 2, "verifier": "oracle"}]),
        ],  # fmt: skip
        output_dir=str(tmp_path / "run"),
    )
    summary = run_evaluation(cfg, show_progress=False, engine_factory=lambda c: NoisyLabPolicy())
    assert summary["accuracy"]["topological[oracle]@4"] > summary["accuracy"]["cot@1"]
    assert summary["cost_per_problem"]["topological[oracle]@4"]["generated_tokens"] > 0


def test_predicted_shares_follow_the_topology_head_and_are_charged(lab, tmp_path, tiny_model_dir):
    from test_solar_trm import config, toy_records

    from reasonscale.train.data import write_jsonl
    from reasonscale.train.trm import train_trm
    from reasonscale.verifiers.trm import TRMVerifier

    rows = [{**r, "topology": {"got": "cot", "cot": "counted"}[r["topology"]]} for r in toy_records(4, seed=0)]
    path = train_trm(config(tiny_model_dir, write_jsonl(rows, tmp_path / "t.jsonl"), tmp_path / "trm", steps=2),
                     progress=False).path  # fmt: skip
    task, problems, prompts = lab
    trm = TRMVerifier(str(path), task)
    cfg = TopologicalConfig(topologies=[{"name": "cot"}, {"name": "counted"}], shares="predicted",
                            verifier="orm", verifier_path=str(path), n=5)  # fmt: skip
    chunk = LabChunk(task, NoisyLabPolicy(), problems, prompts, {cfg.verifier_key(): trm})
    Counted.calls.clear()
    outcomes = Topological(cfg).run(chunk, 5)
    predicted, _ = trm.topology_scores(prompts)
    for p, shares, outcome in zip(problems, predicted, outcomes):
        counts = allocate(5, [shares["cot"], shares["counted"]])
        assert sum(1 for _, pid, _ in Counted.calls if pid == p.id) == counts[1]
        assert outcome.usage.policy_calls == counts[0] + counts[1]  # each fake response counts one call (n=1)
        assert outcome.usage.verifier_calls == 1 + 5  # the topology head, then every response scored
    routed = cfg.model_copy(update={"shares": "routed"})
    Counted.calls.clear()
    Topological(routed).run(chunk, 5)
    for p, shares in zip(problems, predicted):  # all five to the topology predicted best (ties: the earlier)
        best_is_counted = shares["counted"] > shares["cot"]
        assert sum(1 for _, pid, _ in Counted.calls if pid == p.id) == (5 if best_is_counted else 0)
    tot = StrategyConfig(name="tot", verifier="oracle")
    wrong = cfg.model_copy(update={"topologies": [StrategyConfig(name="cot"), tot]})
    with pytest.raises(ValueError, match=r"the TRM has no topology tot\[oracle\]"):
        Topological(wrong).run(chunk, 2)
