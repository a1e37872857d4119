"""Evaluate a policy on a task with every configured strategy (see `reasonscale.search.strategy`).

Strategies that read shared samples (greedy, majority, best-of-N, pass@k...) share one sample pool per problem,
of the largest size any of them asks for; the others (beam, lookahead, DVTS...) run on their own at each budget.
Every outcome records its strategy's name and settings, its budget N, the compute N stands for
(`generation_budget`) and what it really spent: generations, prompt and generated tokens, verifier tokens and
FLOPs (2 x parameters x tokens computed; prompt tokens only where the engine recomputes them).

Problems are processed in chunks; each finished problem is committed to the run store, and every sample is
cached, so a killed run resumes where it stopped and a re-run performs no model calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasonscale.config import GOLD_VERIFIERS, ModelConfig, RunConfig, StrategyConfig, VerifiedStrategyConfig
from reasonscale.engines import Engine, build_engine, engine_identity
from reasonscale.engines.cached import CachedEngine
from reasonscale.identity import digest, model_identity
from reasonscale.progress import Progress
from reasonscale.search.pool import candidate_usage
from reasonscale.search.strategy import Outcome, Strategy, build_strategy, labels
from reasonscale.runlock import run_lock
from reasonscale.scaling.bins import assign_bins
from reasonscale.store import Store
from reasonscale.summary import summarize, write_outputs
from reasonscale.tasks import Task, build_task
from reasonscale.types import Completion, Problem, SamplingParams, Usage
from reasonscale.verifiers import build_verifier
from reasonscale.verifiers.base import Verifier

MODEL_VERIFIERS = ("prm", "orm", "recompute")


def uses_verifier(strategy: StrategyConfig) -> bool:
    """Whether a strategy is configured with a verifier (some, like revise by majority, may go without)."""
    return isinstance(strategy, VerifiedStrategyConfig) and strategy.verifier is not None


def verifier_key(strategy: StrategyConfig) -> str | None:
    """Which verifier instance a strategy uses (None: none): the key of its scores in candidate records."""
    return strategy.verifier_key() if uses_verifier(strategy) else None


def verifier_identity(strategy: VerifiedStrategyConfig) -> str:
    """What a verifier computes: a model verifier by its weights' content, any other by its name."""
    if strategy.verifier in MODEL_VERIFIERS and strategy.verifier_path:
        return model_identity(strategy.verifier_path)
    return str(strategy.verifier)


def run_key(cfg: RunConfig, policy: str | None = None) -> str:
    """Identity of a run's results: the config (but where it is written and throughput settings), the policy's
    content identity and dtype (`policy`, default `engine_identity(cfg.model)`), the content identity of every
    verifier model, so a model retrained in place invalidates exactly the results that depend on it, and whether
    the hf engine caches prompt prefixes (no sample changes, but the FLOPs a result records do)."""
    # difficulty bins and a policy are read off finished results: they change no result
    where = {"output_dir": True, "cache_path": True, "difficulty": True, "policy": True}
    data = cfg.model_dump(exclude={**where, "model": set(ModelConfig.THROUGHPUT_FIELDS)})
    verified = [s for s in cfg.strategies if uses_verifier(s)]
    verifiers = {s.verifier_key(): verifier_identity(s) for s in verified}
    return digest({"config": data, "policy": policy or engine_identity(cfg.model), "verifiers": verifiers,
                   "prefix_cache": cfg.model.prefix_cache_mb > 0})


def binning_verifier(cfg: RunConfig) -> str | None:
    """The key of the verifier whose scores predict difficulty: the configured one, else the first strategy's
    verifier that reads no gold answer (None: the run has none, so no predicted bins)."""
    keys = [verifier_key(s) for s in cfg.strategies if uses_verifier(s) and s.verifier not in GOLD_VERIFIERS]
    return cfg.difficulty.verifier or (keys[0] if keys else None)


def difficulty_bins(records: list[dict[str, Any]], cfg: RunConfig) -> dict[str, list[float]]:
    """Put each question's oracle and predicted difficulty bin in its record; returns the bin edges used."""
    d = cfg.difficulty
    return assign_bins(records, binning_verifier(cfg), d.bins, d.edges)


def cost(usage: Usage, engine: Engine) -> dict[str, float]:
    """What a Usage amounts to on `engine`: generations, tokens and FLOPs (policy and verifier)."""
    policy = usage.policy_flops(engine.num_parameters, engine.caches_prefixes)
    return {
        "generations": usage.policy_calls,
        "prompt_tokens": usage.prompt_tokens,
        "generated_tokens": usage.completion_tokens,
        "tokens": usage.prompt_tokens + usage.completion_tokens,
        "verifier_calls": usage.verifier_calls,
        "verifier_tokens": usage.verifier_tokens,
        "policy_flops": policy,
        "verifier_flops": usage.verifier_flops,
        "flops": policy + usage.verifier_flops,
    }


@dataclass
class Chunk:
    """A chunk of problems as strategies see it; the shared samples are drawn on first use."""

    task: Task
    engine: Engine
    problems: Sequence[Problem]
    prompts: Sequence[str]
    cfg: RunConfig
    verifiers: dict[str, Verifier]
    pool_size: int
    shared: dict[str, Any] = field(default_factory=dict)

    def sampling(self, n: int = 1, greedy: bool = False) -> SamplingParams:
        s = self.cfg.sampling
        temperature = 0.0 if greedy else s.temperature
        return SamplingParams(n, temperature, s.top_p, s.max_tokens, self.task.solution_stop, s.seed)

    def verifier(self, config: VerifiedStrategyConfig) -> Verifier:
        return self.verifiers[config.verifier_key()]

    def greedy(self) -> list[dict[str, Any]]:
        if "greedy" not in self.shared:
            outputs = self.engine.generate(self.prompts, self.sampling(1, greedy=True))
            self.shared["greedy"] = [c for (c,) in self.candidates(outputs)]
        return self.shared["greedy"]

    def pool(self) -> list[list[dict[str, Any]]]:
        if "pool" not in self.shared:
            outputs = self.engine.generate(self.prompts, self.sampling(self.pool_size))
            self.shared["pool"] = self.candidates(outputs)
        return self.shared["pool"]

    def groups(self) -> list[list[int | None]]:
        """The pool's answers grouped by equivalence, per problem."""
        if "groups" not in self.shared:
            self.shared["groups"] = [self.task.group_answers([c["answer"] for c in cs]) for cs in self.pool()]
        return self.shared["groups"]

    def candidates(self, outputs: list[list[Completion]]) -> list[list[dict[str, Any]]]:
        """Extract, split and grade every completion, and score it with every configured verifier (each
        candidate's verifier cost is its own)."""
        flat = [(p, c) for p, cs in zip(self.problems, outputs) for c in cs]
        answers = [self.task.extract_answer(c.text) for _, c in flat]
        steps = [self.task.split_steps(c.text) for _, c in flat]
        correct = self.task.grade([p for p, _ in flat], answers)
        records = [
            {
                "text": c.text,
                "answer": a,
                "correct": ok,
                "prompt_tokens": c.prompt_tokens,
                "completion_tokens": c.completion_tokens,
                "step_scores": {},
                "verifier_cost": {},
            }
            for (_, c), a, ok in zip(flat, answers, correct)
        ]
        for key, verifier in self.verifiers.items():
            scores, costs = verifier.score_items([p for p, _ in flat], steps)
            for record, step_scores, spent in zip(records, scores, costs):
                record["step_scores"][key] = step_scores
                record["verifier_cost"][key] = {"tokens": spent.verifier_tokens, "flops": spent.verifier_flops}
        grouped, start = [], 0
        for cs in outputs:
            grouped.append(records[start : start + len(cs)])
            start += len(cs)
        return grouped

    def shared_usage(self, index: int) -> Usage:
        """Problem `index`'s cost of the shared samples drawn (generation and scoring by every verifier)."""
        drawn = list(self.shared["pool"][index]) if "pool" in self.shared else []
        if "greedy" in self.shared:
            drawn.append(self.shared["greedy"][index])
        usage = Usage()
        for c in drawn:
            usage += candidate_usage(c, list(c["verifier_cost"]))
        return usage


@dataclass
class Evaluator:
    """Evaluates chunks of problems with every configured strategy."""

    cfg: RunConfig
    task: Task
    engine: Engine
    verifiers: dict[str, Verifier]
    strategies: list[Strategy] = field(init=False)
    labels: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.strategies = [build_strategy(s) for s in self.cfg.strategies]
        self.labels = labels(self.cfg.strategies)

    def prompts(self, problems: Sequence[Problem]) -> list[str]:
        prompts = [self.task.format_prompt(p) for p in problems]
        if self.cfg.model.chat_template:
            prompts = [self.engine.render_chat([{"role": "user", "content": p}]) for p in prompts]
        return prompts

    def evaluate(self, problems: Sequence[Problem]) -> list[dict[str, Any]]:
        """One result record per problem: every strategy's outcome at every budget, the shared samples, and the
        problem's total compute."""
        pool_size = max((s.pool_size() for s in self.strategies), default=0)
        chunk = Chunk(self.task, self.engine, problems, self.prompts(problems), self.cfg, self.verifiers, pool_size)
        records = [{"id": p.id, "level": p.level, "reference": p.answer, "outcomes": []} for p in problems]
        spent = [Usage() for _ in problems]
        for strategy, label in zip(self.strategies, self.labels):
            for n in strategy.budgets():
                for i, outcome in enumerate(strategy.run(chunk, n)):
                    records[i]["outcomes"].append(self.outcome(strategy, label, n, outcome))
                    if not strategy.shares_samples:
                        spent[i] += outcome.usage
        for i, record in enumerate(records):
            record["candidates"] = chunk.shared["pool"][i] if "pool" in chunk.shared else []
            if "greedy" in chunk.shared:
                record["greedy"] = chunk.shared["greedy"][i]
            spent[i] += chunk.shared_usage(i)
            record["usage"] = cost(spent[i], self.engine)
        return records

    def outcome(self, strategy: Strategy, label: str, n: int, outcome: Outcome) -> dict[str, Any]:
        """The result record of one strategy at budget n on one problem."""
        return {
            "strategy": strategy.name(),
            "label": label,
            "settings": strategy.config.settings(),
            "budget": n,
            "generation_budget": strategy.generation_budget(n),
            "answer": outcome.answer,
            "correct": outcome.correct,
            **cost(outcome.usage, self.engine),
            "text": outcome.text,
            **({"details": outcome.details} if outcome.details is not None else {}),
        }


def run_evaluation(
    cfg: RunConfig,
    show_progress: bool = True,
    engine_factory: Callable[[RunConfig], Engine] | None = None,
    chunk_size: int = 16,
) -> dict[str, Any]:
    """Run (or resume) an evaluation; writes results.jsonl, summary.json and the report; returns the summary.

    The policy is named in the run's identity by `engine_identity(cfg.model)`, so a finished run loads no model;
    an `engine_factory` (custom or test engines) is built at once and named by its engine's `model_id`.
    """
    out_dir = Path(cfg.output_dir)
    task = build_task(cfg.task)
    problems = task.load()  # inputs are checked before any output is touched
    specs = {s.verifier_key(): s for s in cfg.strategies if uses_verifier(s)}
    verifiers = {key: build_verifier(s.verifier, task, s.verifier_path, s.verifier_options) for key, s in specs.items()}
    inner = engine_factory(cfg) if engine_factory else None
    with run_lock(out_dir):
        store = Store(cfg.cache_path or out_dir / "store.sqlite")
        key = run_key(cfg, inner.model_id if inner else None)
        engine = _evaluate_missing(cfg, task, problems, verifiers, inner, store, key, show_progress, chunk_size)
        records = list(store.get_results(key).values())
        calls = engine.misses if engine else 0
        usage = {
            "model_calls": calls,
            "cache_hits": engine.hits if engine else 0,
            "run_model_calls": store.run_calls(key),
        }
        store.close()
        difficulty_bins(records, cfg)
        summary = summarize(records, cfg, usage)
        write_outputs(out_dir, records, summary)
    return summary


def _evaluate_missing(
    cfg: RunConfig,
    task: Task,
    problems: list[Problem],
    verifiers: dict[str, Verifier],
    inner: Engine | None,
    store: Store,
    key: str,
    show_progress: bool,
    chunk_size: int,
) -> CachedEngine | None:
    """Evaluate the problems not yet stored under `key`, committing each chunk; returns the caching engine used
    (None when nothing was left). Model calls are added to the run's total as each chunk of samples lands."""
    done = store.get_results(key)
    todo = [(i, p) for i, p in enumerate(problems) if p.id not in done]
    with Progress(enabled=show_progress) as progress:
        if todo and inner is None:
            inner = build_engine(cfg.model)
        if inner is None:
            return None

        def generated(count: int) -> None:
            store.add_run_calls(key, count)
            progress.samples(count)

        engine = CachedEngine(inner, store, on_generated=generated)
        progress.start(len(problems), done=len(problems) - len(todo))
        try:
            if todo:
                evaluator = Evaluator(cfg, task, engine, verifiers)
                for start in range(0, len(todo), chunk_size):
                    chunk = todo[start : start + chunk_size]
                    for (position, _), record in zip(chunk, evaluator.evaluate([p for _, p in chunk])):
                        store.put_result(key, record["id"], position, record)
                    progress.problems(len(chunk))
        finally:
            engine.close()
    return engine
