"""Weak-to-strong reasoning (Yang et al. 2024) from unlabelled questions to a better strong model, in one run.

Stage I: the weak model answers every question (D_weak), the strong model answers with weak demonstrations (D_ICL);
questions whose final answers agree are kept, and the strong model is fine-tuned on the kept part of D_weak, of
D_ICL or their union (M_plus). Stage II: the current model samples every question; confidence-filtered pairs, the
weak response on one side, train it by DPO (reference: the model it starts from), round after round. Baselines:
the weak model, the strong model with weak demonstrations, naive weak-to-strong (all of D_weak), the gold ceiling.

Every generation goes through the engine and the sample store, every training through `reasonscale.train` (each
model in `output_dir/models/<name>`, keyed by its base, data and settings), so a killed run resumes and a re-run
makes no model call and trains nothing. Every data set is written to `output_dir/data/<name>.jsonl` and measured.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reasonscale.config import ModelConfig
from reasonscale.data import weak_to_strong as w2s
from reasonscale.engines import build_engine, engine_identity
from reasonscale.engines.base import Engine, SampleRequest
from reasonscale.engines.cached import CachedEngine
from reasonscale.pipelines.w2s_config import W2SConfig
from reasonscale.pipelines.w2s_inputs import read_generations, read_questions
from reasonscale.runlock import run_lock
from reasonscale.store import Store
from reasonscale.tasks import Task, build_task
from reasonscale.train import CONFIGS, TRAINERS
from reasonscale.train.data import write_jsonl
from reasonscale.types import Completion, Problem, SamplingParams


class LazyEngine(Engine):
    """An engine named by `engine_identity(cfg)` that loads its model only when a sample is missing from the store
    (chats are rendered with the model's tokenizer alone, except on a server, whose engine loads nothing)."""

    def __init__(self, cfg: ModelConfig):
        self.cfg = cfg
        self.model_id = engine_identity(cfg)
        self.inner: Engine | None = None
        self.tokenizer = None

    def loaded(self) -> Engine:
        if self.inner is None:
            self.inner = build_engine(self.cfg)
        return self.inner

    def complete(self, requests: Sequence[SampleRequest], params: SamplingParams) -> list[Completion]:
        return self.loaded().complete(requests, params)

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        if self.cfg.engine == "openai":
            return self.loaded().render_chat(messages)  # type: ignore[attr-defined]
        if self.tokenizer is None:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(self.cfg.path, revision=self.cfg.revision)
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()


class Run:
    """One weak-to-strong run: its task, store, the generations and models made, and the counts of both."""

    def __init__(self, cfg: W2SConfig, task: Task, store: Store, progress: bool):
        self.cfg, self.task, self.store, self.progress = cfg, task, store, progress
        self.out = Path(cfg.output_dir)
        self.model_calls = 0
        self.trained: list[str] = []
        self.data: dict[str, dict[str, Any]] = {}

    def generate(self, model: ModelConfig, prompts: Sequence[str], n: int = 1, temperature: float = 0.0,
                 top_p: float = 1.0) -> list[list[str]]:
        """`n` responses per prompt (greedy unless `temperature`), cached; chat models get their template."""
        g = self.cfg.generation
        engine = CachedEngine(LazyEngine(model), self.store)
        try:
            if model.chat_template:
                prompts = [engine.render_chat([{"role": "user", "content": p}]) for p in prompts]
            params = SamplingParams(n, temperature, top_p, g.max_tokens, self.task.solution_stop, g.seed)
            out = engine.generate(prompts, params)
        finally:
            engine.close()
            self.model_calls += engine.misses
        return [[c.text for c in cs] for cs in out]

    def answer(self, model: ModelConfig, problems: Sequence[Problem], prompts: Sequence[str]) -> list[dict]:
        texts = self.generate(model, prompts)
        return [{"id": p.id, "question": p.question, "response": t} for p, (t,) in zip(problems, texts)]

    def save(self, name: str, rows: list[dict], problems: dict[str, Problem], fields: Sequence[str]) -> Path:
        """Write a data set and record its size and, where gold exists, its label accuracy."""
        path = write_jsonl(rows, self.out / "data" / f"{name}.jsonl")
        self.data[name] = {"path": str(path), **w2s.describe(self.task, problems, rows, fields)}
        return path

    def train(self, method: str, name: str, base: ModelConfig, data: Path) -> ModelConfig | None:
        """Fine-tune `base` on `data` by `method` (sft or dpo) into `models/<name>`; an identical finished run is
        reused. DPO's reference is `base` itself (see docs/training.md). None with `data_only`."""
        if self.cfg.data_only:
            return None
        section = self.cfg.sft if method == "sft" else self.cfg.dpo
        cfg = CONFIGS[method].model_validate({
            "model": {"path": base.path, "revision": base.revision},
            "data": {"path": str(data), "chat_template": base.chat_template},
            **section.model_dump(),
            "output_dir": str(self.out / "models" / name),
        })
        result = TRAINERS[method](cfg, progress=self.progress)
        if result.trained:
            self.trained.append(name)
        return base.model_copy(update={"path": str(result.path), "revision": None})


def run_w2s(cfg: W2SConfig, progress: bool = True, task: Task | None = None,
            eval_task: Task | None = None) -> dict[str, Any]:
    """Run (or resume) the whole method and its baselines; writes data/, models/, summary.json and report.md."""
    task = task or build_task(cfg.task)
    evaluated = eval_task or (build_task(cfg.eval_task) if cfg.eval_task else None)
    evaluated = None if cfg.data_only else evaluated
    problems = read_questions(cfg.inputs, task)
    eval_problems = evaluated.load() if evaluated else []
    out = Path(cfg.output_dir)
    with run_lock(out):
        store = Store(cfg.cache_path or out / "store.sqlite")
        try:
            run = Run(cfg, task, store, progress)
            models, weak_data = train_all(run, problems)
            accuracy = evaluate(run, evaluated, eval_problems, models, weak_data) if evaluated else {}
        finally:
            store.close()
    summary = summarize(run, models, accuracy)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "report.md").write_text(report(summary))
    return summary


def train_all(run: Run, problems: list[Problem]) -> tuple[dict[str, ModelConfig], list[dict]]:
    """Stage I, stage II and the trained baselines: every model by name (only those trained or reused)."""
    cfg, task = run.cfg, run.task
    by_id = {p.id: p for p in problems}
    plain = [task.format_prompt(p) for p in problems]
    weak = read_generations(cfg.inputs, "weak", by_id) or run.answer(cfg.weak, problems, plain)
    icl = read_generations(cfg.inputs, "icl", by_id)
    icl = icl or run.answer(cfg.strong, problems, icl_prompts(run, problems, weak))
    run.save("d_weak", w2s.sft_records(task, by_id, weak), by_id, ["completion"])
    run.save("d_icl", w2s.sft_records(task, by_id, icl), by_id, ["completion"])
    kept = w2s.consistent(task, weak, icl)
    sets = {
        "weak": w2s.sft_records(task, by_id, [g for g in weak if g["id"] in kept]),
        "icl": w2s.sft_records(task, by_id, [g for g in icl if g["id"] in kept]),
    }
    sets["hybrid"] = unique(sets["weak"] + sets["icl"])
    models: dict[str, ModelConfig | None] = {"weak": cfg.weak, "strong": cfg.strong}
    for variant in dict.fromkeys([*cfg.stage1.variants, cfg.stage1.use]):
        path = run.save(f"stage1-{variant}", sets[variant], by_id, ["completion"])
        if sets[variant]:
            models[f"stage1-{variant}"] = run.train("sft", f"stage1-{variant}", cfg.strong, path)
    if cfg.baselines.naive:
        models["naive"] = run.train("sft", "naive", cfg.strong, run.out / "data" / "d_weak.jsonl")
    gold = [{"id": p.id, "question": p.question, "response": p.meta["solution"]} for p in problems
            if p.meta.get("solution")]
    if cfg.baselines.gold and gold:
        path = run.save("gold", w2s.sft_records(task, by_id, gold), by_id, ["completion"])
        models["gold"] = run.train("sft", "gold", cfg.strong, path)
    stage2(run, problems, weak, models)
    return {name: model for name, model in models.items() if model is not None}, weak


def stage2(run: Run, problems: list[Problem], weak: list[dict], models: dict[str, ModelConfig | None]) -> None:
    """Each round samples the current model (round 1: or reads `inputs.samples`), builds confidence-filtered pairs
    and trains the model by DPO."""
    cfg, task, s = run.cfg, run.task, run.cfg.stage2
    by_id = {p.id: p for p in problems}
    weak_by_id = {g["id"]: g for g in weak}
    current = models.get(f"stage1-{cfg.stage1.use}")
    plain = [task.format_prompt(p) for p in problems]
    for r in range(1, s.rounds + 1):
        given = read_generations(cfg.inputs, "samples", by_id) if r == 1 else None
        if given is None and current is None:
            return
        samples = group_samples(given, problems) if given is not None else run.generate(
            current, plain, s.samples, s.temperature, s.top_p)
        settings = w2s.PairSettings(s.tau, s.flip_confidence, s.pairs_per_question, s.pairs, cfg.generation.seed + r)
        pairs = [pair for p, ss, prompt in zip(problems, samples, plain) if p.id in weak_by_id
                 for pair in w2s.preference_pairs(task, weak_by_id[p.id], ss, prompt, settings)]
        name = f"stage2-round{r}"
        path = run.save(name, pairs, by_id, ["chosen", "rejected"])
        run.data[name].update(w2s.confidence_filter(task, problems, samples, s.tau))
        current = run.train("dpo", name, current, path) if pairs and current else None
        models[name] = current


def icl_prompts(run: Run, problems: Sequence[Problem], pool: list[dict]) -> list[str]:
    k, seed = run.cfg.stage1.demonstrations, run.cfg.generation.seed
    return [w2s.icl_prompt(run.task, p, w2s.demonstrations(pool, p.id, p.question, k, seed)) for p in problems]


def group_samples(rows: list[dict], problems: Sequence[Problem]) -> list[list[str]]:
    by_id: dict[str, list[str]] = {}
    for row in rows:
        by_id.setdefault(row["id"], []).append(row["response"])
    return [by_id.get(p.id, []) for p in problems]


def unique(rows: list[dict]) -> list[dict]:
    """Rows without repeats of the same (question, completion): a weak and an ICL response may be identical."""
    kept: dict[tuple[str, str], dict] = {}
    for row in rows:
        kept.setdefault((row["id"], row["completion"]), row)
    return list(kept.values())


def evaluate(run: Run, task: Task, problems: list[Problem], models: dict[str, ModelConfig],
             weak: list[dict]) -> dict[str, float]:
    """Greedy accuracy of every model on the held-out questions (strong+ICL with weak demonstrations)."""
    plain = [task.format_prompt(p) for p in problems]
    prompts: dict[str, tuple[ModelConfig, list[str]]] = {name: (m, plain) for name, m in models.items()}
    if run.cfg.baselines.strong_icl:
        k, seed = run.cfg.stage1.demonstrations, run.cfg.generation.seed
        shown = [w2s.icl_prompt(task, p, w2s.demonstrations(weak, p.id, p.question, k, seed)) for p in problems]
        prompts["strong_icl"] = (run.cfg.strong, shown)
    accuracy = {}
    for name, (model, texts) in prompts.items():
        answers = [task.extract_answer(t) for (t,) in run.generate(model, texts)]
        correct = task.grade(problems, answers)
        rows = [{"id": p.id, "answer": a, "reference": p.answer, "correct": c}
                for p, a, c in zip(problems, answers, correct)]
        write_jsonl(rows, run.out / "eval" / f"{name}.jsonl")
        accuracy[name] = sum(correct) / len(correct)
    return accuracy


ORDER = ["weak", "strong", "strong_icl", "naive", "stage1-weak", "stage1-icl", "stage1-hybrid"]


def pgr(accuracy: dict[str, float], name: str) -> float | None:
    """Performance gap recovered: (acc - weak) / (ceiling - weak); None without a ceiling above the weak model."""
    weak, ceiling = accuracy.get("weak"), accuracy.get("gold")
    if weak is None or ceiling is None or ceiling <= weak:
        return None
    return (accuracy[name] - weak) / (ceiling - weak)


def summarize(run: Run, models: dict[str, ModelConfig], accuracy: dict[str, float]) -> dict[str, Any]:
    names = sorted(accuracy, key=lambda n: (n == "gold", ORDER.index(n) if n in ORDER else len(ORDER), n))
    return {
        "models": {n: {"path": models[n].path if n in models else run.cfg.strong.path, "accuracy": accuracy[n],
                       "pgr": pgr(accuracy, n)} for n in names},
        "trained_models": {n: m.path for n, m in models.items() if n not in ("weak", "strong")},
        "data": run.data,
        "usage": {"model_calls": run.model_calls, "trained": run.trained},
    }


def report(summary: dict[str, Any]) -> str:
    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    lines = ["# Weak-to-strong reasoning", "", "| model | accuracy | PGR |", "|---|---|---|"]
    lines += [f"| {n} | {num(m['accuracy'])} | {num(m['pgr'])} |" for n, m in summary["models"].items()]
    lines += ["", "| data set | size | questions | label accuracy | confidence filter |", "|---|---|---|---|---|"]
    for name, d in summary["data"].items():
        acc = ", ".join(f"{k.removeprefix('accuracy_')} {num(v)}" for k, v in d.items() if k.startswith("accuracy_"))
        vote = ", ".join(f"{k} {v if isinstance(v, int) else num(v)}" for k, v in d.items()
                         if k.startswith(("confident", "majority")))
        lines.append(f"| {name} | {d['size']} | {d['questions']} | {acc} | {vote or '-'} |")
    usage = summary["usage"]
    lines += ["", f"Model calls this run: {usage['model_calls']}; trained: {', '.join(usage['trained']) or 'none'}."]
    return "\n".join(lines) + "\n"

