"""Training the topological reward model (`verifiers/trm.py`): our own small loop, since TRL's RewardTrainer has
one scalar output and the M-TRM has two heads.

Data: JSONL, one labelled response per line: `prompt` (the task's prompt), `response`, `label` (its hard label),
`topology` and `topo_label` (the question x topology's fraction of right responses, SOLAR eq. 2). The answer head
learns `label` (binary cross-entropy on its logit) and ranks a question's right responses above its wrong ones
(Bradley-Terry on every such pair); the topology head learns each topology's `topo_label` from the prompt alone
(cross-entropy against the soft label). The loss is `answer_weight`, `pair_weight` and `topology_weight` times
these, so zero weights train a single-task TRM. Identity, skipping, LoRA and publishing are the training
layer's (`train/common.py`); the loop trains in float32 on the GPU if there is one, else the CPU, and does not
checkpoint (a killed run starts again).
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from pydantic import Field, model_validator

from reasonscale.config import Section
from reasonscale.summary import mean_se
from reasonscale.tasks.io import iter_jsonl
from reasonscale.train.common import (
    TrainResult,
    finish,
    load_model,
    load_tokenizer,
    plan,
    read_info,
    session,
    setup_lora,
)
from reasonscale.train.config import TrainConfig
from reasonscale.train.data import fingerprint
from reasonscale.verifiers.metrics import roc_auc
from reasonscale.verifiers.trm import TRM, TRMFormat, encode_answer, encode_question

FIELDS = {"prompt": str, "response": str, "label": (int, float), "topology": str, "topo_label": (int, float)}


class TRMSettings(Section):
    answer_weight: float = Field(1.0, ge=0, description="weight of the answer head's loss (0: topology head only)")
    pair_weight: float = Field(
        1.0, ge=0, description="weight of the answer head's ranking loss on right vs wrong responses to one question"
    )
    topology_weight: float = Field(1.0, ge=0, description="weight of the topology head's loss (0: answer head only)")
    topologies: list[str] | None = Field(None, description="the topology head's outputs (default: as the data has)")

    @model_validator(mode="after")
    def _some_loss(self) -> TRMSettings:
        if self.answer_weight == 0 and self.pair_weight == 0 and self.topology_weight == 0:
            raise ValueError("trm: answer_weight, pair_weight and topology_weight are all 0; nothing to train")
        return self

    @property
    def answers(self) -> bool:
        """Whether the answer head is trained."""
        return bool(self.answer_weight or self.pair_weight)


class TRMConfig(TrainConfig):
    """A topological reward model: shared backbone, topology head and answer head."""

    trm: TRMSettings = Field(default_factory=TRMSettings)


def read_trm_records(cfg: TRMConfig) -> list[dict[str, Any]]:
    """Every line of the data files, checked field by field (errors name file:line)."""
    records: list[dict[str, Any]] = []
    for path in cfg.data.paths:
        if not path.is_file():
            raise FileNotFoundError(f"data file not found: {path}")
        for number, item in iter_jsonl(path):
            records.append(_record(item, f"{path}:{number}"))
            if cfg.data.limit is not None and len(records) >= cfg.data.limit:
                return records
    if not records:
        raise ValueError(f"no training examples in {', '.join(map(str, cfg.data.paths))}")
    return records


def _record(item: dict[str, Any], where: str) -> dict[str, Any]:
    for name, kind in FIELDS.items():
        if not isinstance(item.get(name), kind):
            raise ValueError(f"{where}: field '{name}' is missing or not a {getattr(kind, '__name__', 'number')}")
    return {name: item[name] for name in FIELDS}


def train_trm(cfg: TRMConfig, progress: bool = True) -> TrainResult:
    """Train (or reuse) the TRM described by `cfg` and save it to `cfg.output_dir`."""
    from transformers import AutoModel

    with session(cfg, progress):
        records = read_trm_records(cfg)
        job = plan("trm", cfg, fingerprint(records), len(records))
        if done := job.finished():
            return done
        known = list(dict.fromkeys(r["topology"] for r in records))
        topologies = cfg.trm.topologies or known
        tokenizer = load_tokenizer(cfg)
        fmt = TRMFormat(topologies, cfg.data.chat_template)
        backbone = load_model(cfg, AutoModel)
        hidden = backbone.config.hidden_size
        backbone, lora = setup_lora(cfg, backbone, "FEATURE_EXTRACTION")
        if lora is not None:
            from peft import get_peft_model

            backbone = get_peft_model(backbone, lora)
        model = TRM(backbone, hidden, fmt).to("cuda" if torch.cuda.is_available() else "cpu")
        history = _train(cfg, model, _examples(cfg, tokenizer, fmt, records), tokenizer.pad_token_id or 0, progress)
        extra = {"trm": {"topologies": topologies, **cfg.trm.model_dump(exclude={"topologies"})}}
        steps = history[-1]["step"] if history else 0
        finish(job, model.backbone, tokenizer, history, steps, extra, save=model.save_heads)
        return TrainResult(job.output, read_info(job.output) or {}, trained=True)


def _examples(cfg: TRMConfig, tokenizer, fmt: TRMFormat, records: list[dict[str, Any]]):
    """(answer examples [(ids, label)], pairs [(right ids, wrong ids)] of one prompt, question examples [(ids,
    labels per topology, mask)]), ids cut to `optim.max_length` keeping the end (the last token is read)."""
    keep = cfg.optim.max_length or 1 << 30
    answers = [(encode_answer(tokenizer, fmt, r["prompt"], r["response"])[-keep:], float(r["label"])) for r in records]
    by_prompt: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    for r, (ids, label) in zip(records, answers):
        by_prompt[r["prompt"]][0 if label > 0.5 else 1].append(ids)
    pairs = [(good, bad) for goods, bads in by_prompt.values() for good in goods for bad in bads]
    labels: dict[str, dict[str, float]] = defaultdict(dict)
    for r in records:
        labels[r["prompt"]][r["topology"]] = float(r["topo_label"])
    questions = []
    for prompt, by in labels.items():
        target = [by.get(t, 0.0) for t in fmt.topologies]
        mask = [float(t in by) for t in fmt.topologies]
        questions.append((encode_question(tokenizer, fmt, prompt)[-keep:], target, mask))
    return answers, pairs, questions


def _batches(items: list, size: int, rng: random.Random):
    """Endless shuffled batches, epoch after epoch."""
    while True:
        order = list(items)
        rng.shuffle(order)
        for start in range(0, len(order), size):
            yield order[start : start + size]


def _train(cfg: TRMConfig, model: TRM, data, pad: int, progress: bool) -> list[dict[str, float]]:
    from transformers import get_scheduler

    answers, pairs, questions = data
    o, w = cfg.optim, cfg.trm
    steps = o.max_steps or max(1, math.ceil(o.epochs * len(answers) / (o.batch_size * o.grad_accum)))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=o.learning_rate, weight_decay=o.weight_decay)
    warmup = int(o.warmup * steps) if o.warmup < 1 else int(o.warmup)
    scheduler = get_scheduler(o.scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=steps)
    rng = random.Random(o.seed)
    answer_batches, question_batches = _batches(answers, o.batch_size, rng), _batches(questions, o.batch_size, rng)
    pair_batches = _batches(pairs, o.batch_size, rng) if pairs and w.pair_weight else None
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    history, model = [], model.train()
    for step in range(1, steps + 1):
        logged: dict[str, float] = defaultdict(float)
        for _ in range(o.grad_accum):
            loss = torch.zeros(())
            if w.answer_weight:
                batch = next(answer_batches)
                target = torch.tensor([label for _, label in batch])
                part = bce(model.answer_logits([ids for ids, _ in batch], pad).cpu(), target)
                loss, logged["answer_loss"] = loss + w.answer_weight * part, logged["answer_loss"] + part.item()
            if pair_batches is not None:
                batch = next(pair_batches)
                scores = model.answer_logits([ids for pair in batch for ids in pair], pad).cpu().view(-1, 2)
                part = -torch.nn.functional.logsigmoid(scores[:, 0] - scores[:, 1]).mean()
                loss, logged["pair_loss"] = loss + w.pair_weight * part, logged["pair_loss"] + part.item()
            if w.topology_weight:
                batch = next(question_batches)
                logits = model.topology_logits([ids for ids, _, _ in batch], pad).cpu()
                target, mask = torch.tensor([t for _, t, _ in batch]), torch.tensor([m for _, _, m in batch])
                part = (bce(logits, target, reduction="none") * mask).sum() / mask.sum().clamp(min=1)
                loss, logged["topology_loss"] = loss + w.topology_weight * part, logged["topology_loss"] + part.item()
            (loss / o.grad_accum).backward()
            logged["loss"] += loss.item()
        torch.nn.utils.clip_grad_norm_(params, o.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        if step % cfg.log.logging_steps == 0 or step == steps:
            history.append({"step": step, **{k: v / o.grad_accum for k, v in logged.items()}})
            if progress:
                print(json.dumps(history[-1]))
    model.eval()
    return history


def selected_by_question(rows: Sequence[dict[str, Any]], scores: Sequence[float]) -> dict[str, int]:
    """Per question id, the hard label of its top-scored response (ties: the first)."""
    best: dict[str, tuple[float, int]] = {}
    for row, score in zip(rows, scores, strict=True):
        if row["id"] not in best or score > best[row["id"]][0]:
            best[row["id"]] = (score, row["hard_label"])
    return {question: label for question, (_, label) in best.items()}


def selection_accuracy(rows: Sequence[dict[str, Any]], scores: Sequence[float]) -> float:
    """The fraction of questions whose top-scored response (ties: the first) is right."""
    labels = list(selected_by_question(rows, scores).values())
    return sum(labels) / len(labels) if labels else float("nan")


def within_question_auc(rows: Sequence[dict[str, Any]], scores: Sequence[float]) -> tuple[float, float, int]:
    """Mean over questions with right and wrong responses of the AUC separating them by score (ties count half),
    its standard error and the number of such questions: how well a model orders one question's responses, which
    is all that selection asks of it, with less noise than selection accuracy."""
    by_question: dict[str, tuple[list[float], list[int]]] = defaultdict(lambda: ([], []))
    for row, score in zip(rows, scores, strict=True):
        by_question[row["id"]][0].append(score)
        by_question[row["id"]][1].append(row["hard_label"])
    aucs = [auc for s, y in by_question.values() if (auc := roc_auc(s, y)) is not None]
    return *mean_se(aucs), len(aucs)


def topology_spearman(actual: dict[str, dict[str, float]], predicted: dict[str, dict[str, float]]) -> float:
    """Spearman's rank correlation between predicted and actual topo labels over every question x topology."""
    from scipy.stats import spearmanr

    pairs = [(actual[q][t], predicted[q][t]) for q in actual for t in actual[q] if t in predicted.get(q, {})]
    if len(pairs) < 2 or len({a for a, _ in pairs}) < 2 or len({p for _, p in pairs}) < 2:
        return float("nan")
    return float(spearmanr([a for a, _ in pairs], [p for _, p in pairs]).statistic)


def trm_metrics(
    rows: Sequence[dict[str, Any]],
    answer_scores: Sequence[float] | None,
    topology_score: Callable[[list[str]], list[dict[str, float]]] | None,
) -> dict[str, float]:
    """On TRM records (prompt, response, label, topology, topo_label, id): selection accuracy and within-question
    AUC of the answer scores (one per record) if given, Spearman of a topology scorer if given."""
    out: dict[str, float] = {"questions": len({r["id"] for r in rows})}
    if answer_scores is not None:
        labelled = [{**r, "hard_label": r["label"]} for r in rows]
        picked = [float(v) for v in selected_by_question(labelled, answer_scores).values()]
        out["selection_accuracy"], out["selection_accuracy_se"] = mean_se(picked)
        out["within_auc"], out["within_auc_se"], out["within_auc_questions"] = within_question_auc(
            labelled, answer_scores
        )
    if topology_score is not None:
        actual: dict[str, dict[str, float]] = defaultdict(dict)
        prompts: dict[str, str] = {}
        for r in rows:
            actual[r["id"]][r["topology"]] = r["topo_label"]
            prompts[r["id"]] = r["prompt"]
        ids = list(prompts)
        predicted = dict(zip(ids, topology_score([prompts[q] for q in ids])))
        out["spearman"] = topology_spearman(actual, predicted)
    return out


def paired_selection(
    rows: Sequence[dict[str, Any]], scores: Sequence[float], other: Sequence[float]
) -> tuple[float, float]:
    """Selection accuracy by `scores` minus by `other` on the same questions: the mean per-question difference and
    its standard error (paired, so the questions' difficulty cancels)."""
    labelled = [{**r, "hard_label": r["label"]} for r in rows]
    mine, theirs = selected_by_question(labelled, scores), selected_by_question(labelled, other)
    return mean_se([float(mine[q] - theirs[q]) for q in mine])
