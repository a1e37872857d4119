"""Evaluate a policy on a task: greedy, majority@N, best-of-N (plain / weighted) and pass@k from one sample pool,
and the step-wise searches (beam, lookahead, DVTS) run once per budget.

Problems are processed in chunks; each finished problem is committed to the run store, and every sample is
cached, so a killed run resumes where it stopped and a re-run performs no model calls.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from reasonscale.config import ModelConfig, RunConfig, StrategyConfig
from reasonscale.engines import Engine, build_engine
from reasonscale.engines.cached import CachedEngine
from reasonscale.progress import Progress
from reasonscale.search.beam import beam_search
from reasonscale.search.dvts import dvts
from reasonscale.search.lookahead import lookahead_search
from reasonscale.search.selection import best_of_n, budgets, majority_vote, pass_at_k, weighted_vote
from reasonscale.search.stepwise import SearchResult, StepSearch, usage_delta
from reasonscale.store import Store
from reasonscale.summary import summarize, write_outputs
from reasonscale.tasks import Task, build_task
from reasonscale.types import Completion, Problem, SamplingParams
from reasonscale.verifiers import build_verifier
from reasonscale.verifiers.base import Verifier, aggregate

POOL_STRATEGIES = ("majority", "best_of_n", "weighted_best_of_n", "pass_at_k")
STEP_STRATEGIES = ("beam", "lookahead", "dvts")


def strategy_label(strategy: StrategyConfig) -> str:
    """A readable name: `majority`, `best_of_n[oracle]`, `weighted_best_of_n[prm,min]`..."""
    if strategy.verifier is None:
        return strategy.name
    suffix = strategy.verifier if strategy.aggregate == "last" else f"{strategy.verifier},{strategy.aggregate}"
    return f"{strategy.name}[{suffix}]"


def verifier_key(strategy: StrategyConfig) -> str | None:
    """Which verifier instance a strategy uses: its name, with the model path when one is given."""
    if strategy.verifier is None or strategy.verifier_path is None:
        return strategy.verifier
    return f"{strategy.verifier}:{strategy.verifier_path}"


def strategy_budgets(strategy: StrategyConfig, available: int | None = None) -> list[int]:
    """The budgets reported for a strategy: its configured list, else powers of two up to n (capped by a pool)."""
    top = strategy.n if available is None else min(strategy.n, available)
    return [b for b in strategy.budgets if b <= top] if strategy.budgets else budgets(top)


def run_key(cfg: RunConfig) -> str:
    """Identity of a run's results: everything but where they are written and throughput settings."""
    data = cfg.model_dump(exclude={"output_dir": True, "cache_path": True, "model": set(ModelConfig.THROUGHPUT_FIELDS)})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def check_strategies(strategies: Sequence[StrategyConfig]) -> None:
    for s in strategies:
        needs_verifier = s.name in ("best_of_n", "weighted_best_of_n", *STEP_STRATEGIES)
        if needs_verifier and s.verifier is None:
            raise ValueError(f"strategy '{s.name}' needs a verifier (e.g. verifier: oracle)")


@dataclass
class Evaluator:
    """Evaluates chunks of problems with every configured strategy."""

    cfg: RunConfig
    task: Task
    engine: Engine
    verifiers: dict[str, Verifier]

    def prompts(self, problems: Sequence[Problem]) -> list[str]:
        prompts = [self.task.format_prompt(p) for p in problems]
        if self.cfg.model.chat_template:
            prompts = [self.engine.render_chat([{"role": "user", "content": p}]) for p in prompts]
        return prompts

    def params(self, n: int, greedy: bool) -> SamplingParams:
        s = self.cfg.sampling
        return SamplingParams(
            n=n,
            temperature=0.0 if greedy else s.temperature,
            top_p=s.top_p,
            max_tokens=s.max_tokens,
            stop=self.task.solution_stop,
            seed=s.seed,
        )

    def candidates(self, problems: Sequence[Problem], outputs: list[list[Completion]]) -> list[list[dict]]:
        """Extract, split and grade every completion, and score it with every configured verifier."""
        flat = [(p, c) for p, cs in zip(problems, outputs) for c in cs]
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
                "flops": 2.0 * self.engine.num_parameters * (c.prompt_tokens + c.completion_tokens),
                "step_scores": {},
                "verifier_cost": {},
            }
            for (_, c), a, ok in zip(flat, answers, correct)
        ]
        for name, verifier in self.verifiers.items():
            before = replace(verifier.usage)
            scores = verifier.score([p for p, _ in flat], steps)
            used = usage_delta(before, verifier.usage)
            spent = max(1, used.verifier_calls)
            cost = {"tokens": used.verifier_tokens / spent, "flops": used.flops / spent}
            for record, step_scores in zip(records, scores):
                record["step_scores"][name] = step_scores
                record["verifier_cost"][name] = cost
        sizes = [len(cs) for cs in outputs]
        grouped, start = [], 0
        for size in sizes:
            grouped.append(records[start : start + size])
            start += size
        return grouped

    def evaluate(self, problems: Sequence[Problem]) -> list[dict[str, Any]]:
        """One result record per problem."""
        prompts = self.prompts(problems)
        records = [
            {"id": p.id, "level": p.level, "reference": p.answer, "candidates": [], "strategies": {}} for p in problems
        ]
        if any(s.name == "greedy" for s in self.cfg.strategies):
            greedy = self.candidates(problems, self.engine.generate(prompts, self.params(1, greedy=True)))
            for record, (candidate,) in zip(records, greedy):
                record["greedy"] = candidate
                record["strategies"]["greedy@1"] = choice(candidate, [candidate], None)
        pool = [s for s in self.cfg.strategies if s.name in POOL_STRATEGIES]
        if pool:
            size = max(s.n for s in pool)
            outputs = self.engine.generate(prompts, self.params(size, greedy=False))
            for record, candidates in zip(records, self.candidates(problems, outputs)):
                record["candidates"] = candidates
                groups = self.task.group_answers([c["answer"] for c in candidates])
                for strategy in pool:
                    record["strategies"].update(select(strategy, candidates, groups))
        for strategy in (s for s in self.cfg.strategies if s.name in STEP_STRATEGIES):
            for n in strategy_budgets(strategy):
                results = self.search(strategy, problems, prompts, n)
                correct = self.task.grade(problems, [r.answer for r in results])
                for record, result, ok in zip(records, results, correct):
                    record["strategies"][f"{strategy_label(strategy)}@{n}"] = search_outcome(result, ok, n)
        return records

    def search(
        self, strategy: StrategyConfig, problems: Sequence[Problem], prompts: list[str], n: int
    ) -> list[SearchResult]:
        """Run one step-wise strategy at budget n on a chunk of problems."""
        search = StepSearch(
            self.task,
            self.engine,
            self.verifiers[verifier_key(strategy)],
            problems,
            prompts,
            self.params(1, greedy=False),
            step_max_tokens=strategy.step_max_tokens,
            aggregation=strategy.aggregate,
        )
        width, rounds = strategy.beam_width, strategy.max_rounds
        if strategy.name == "beam":
            return beam_search(search, n, width, rounds)
        if strategy.name == "lookahead":
            return lookahead_search(search, n, width, rounds, strategy.lookahead)
        return dvts(search, n, width, rounds)


def choice(chosen: dict | None, used: Sequence[dict], verifier: str | None) -> dict[str, Any]:
    """A strategy's outcome: the chosen answer, whether it is right, and the compute its candidates used
    (policy FLOPs plus those of the strategy's own verifier)."""
    costs = [c["verifier_cost"][verifier] for c in used] if verifier else []
    return {
        "answer": None if chosen is None else chosen["answer"],
        "correct": bool(chosen and chosen["correct"]),
        "samples": len(used),
        "tokens": sum(c["prompt_tokens"] + c["completion_tokens"] for c in used),
        "generated_tokens": sum(c["completion_tokens"] for c in used),
        "verifier_tokens": sum(v["tokens"] for v in costs),
        "flops": sum(c["flops"] for c in used) + sum(v["flops"] for v in costs),
    }


def search_outcome(result: SearchResult, correct: bool, n: int) -> dict[str, Any]:
    """A step-wise strategy's outcome, with the same fields as a pool strategy's plus call counts."""
    usage = result.usage
    chosen = None if result.chosen is None else result.candidates[result.chosen]
    return {
        "answer": result.answer,
        "correct": bool(correct),
        "samples": n,
        "tokens": usage.prompt_tokens + usage.completion_tokens,
        "generated_tokens": usage.completion_tokens,
        "verifier_tokens": usage.verifier_tokens,
        "flops": usage.flops,
        "policy_calls": usage.policy_calls,
        "verifier_calls": usage.verifier_calls,
        "text": None if chosen is None else chosen.text,
    }


def select(strategy: StrategyConfig, candidates: list[dict], groups: list[int | None]) -> dict[str, dict]:
    """The outcome of one pool strategy at every budget up to its n."""
    label = strategy_label(strategy)
    out = {}
    for k in strategy_budgets(strategy, len(candidates)):
        head, head_groups = candidates[:k], groups[:k]
        if strategy.name == "pass_at_k":
            outcome = choice(None, head, None)
            outcome["correct"] = pass_at_k(len(candidates), sum(c["correct"] for c in candidates), k)
        else:
            index = pick(strategy, head, head_groups)
            outcome = choice(None if index is None else head[index], head, verifier_key(strategy))
        out[f"{label}@{k}"] = outcome
    return out


def pick(strategy: StrategyConfig, candidates: list[dict], groups: list[int | None]) -> int | None:
    if strategy.name == "majority":
        return majority_vote(groups)
    scores = [aggregate(c["step_scores"][verifier_key(strategy)], strategy.aggregate) for c in candidates]
    if strategy.name == "best_of_n":
        return best_of_n(scores, [g is not None for g in groups])
    return weighted_vote(groups, scores)


def run_evaluation(
    cfg: RunConfig,
    show_progress: bool = True,
    engine_factory: Callable[[RunConfig], Engine] | None = None,
    chunk_size: int = 16,
) -> dict[str, Any]:
    """Run (or resume) an evaluation; writes results.jsonl, summary.json and the report; returns the summary."""
    check_strategies(cfg.strategies)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    task = build_task(cfg.task)
    problems = task.load()
    specs = {verifier_key(s): s for s in cfg.strategies if s.verifier}
    verifiers = {key: build_verifier(s.verifier, task, s.verifier_path, s.verifier_options) for key, s in specs.items()}
    store = Store(cfg.cache_path or out_dir / "store.sqlite")
    key = run_key(cfg)
    done = store.get_results(key)
    todo = [(i, p) for i, p in enumerate(problems) if p.id not in done]
    with Progress(enabled=show_progress) as progress:
        inner = (engine_factory or (lambda c: build_engine(c.model)))(cfg) if todo else None
        engine = CachedEngine(inner, store, on_generated=progress.samples) if inner else None
        progress.start(len(problems), done=len(problems) - len(todo))
        try:
            if engine is not None:
                evaluator = Evaluator(cfg, task, engine, verifiers)
                for start in range(0, len(todo), chunk_size):
                    chunk = todo[start : start + chunk_size]
                    for (position, _), record in zip(chunk, evaluator.evaluate([p for _, p in chunk])):
                        store.put_result(key, record["id"], position, record)
                    progress.problems(len(chunk))
        finally:
            if engine is not None:
                engine.close()
    records = list(store.get_results(key).values())
    usage = {"model_calls": engine.misses if engine else 0, "cache_hits": engine.hits if engine else 0}
    store.close()
    summary = summarize(records, cfg, usage)
    write_outputs(out_dir, records, summary)
    return summary
