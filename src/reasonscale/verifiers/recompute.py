"""A generative verifier: a causal LM re-derives the numbers a step writes and is asked how likely the written ones are.

The verifier model reads the prompt, the previous steps and the step up to just before each scored number (teacher
forcing: one forward pass per solution covers all of its steps), and the step's score is its probability of the
numbers' tokens, each followed by the token that ends it where the text has one (so a truncated "2" for "29" is not
mistaken for a right result). Which numbers (`numbers`):

  all    every number in the step: the operands it copies from the question or earlier steps and its result
         (default: it catches miscopied operands as well as wrong arithmetic, and selected best on the lab pool);
  last   only the step's result, its last number.

The score of a number (`form`):

  prob   the product of its tokens' probabilities: P(written number | context) (default: ranks best on the lab pool).
  ratio  the product of p(token) / max p(any token) at each of those positions: 1.0 exactly when the written number is
         the model's greedy re-derivation, and smoothly lower the further the writing strays from it; a model that
         is unsure between two values does not penalize the one it prefers.

A step without a number scores `neutral` (1.0: nothing to check). Each solution costs one verifier call over its
tokens (2·N·tokens FLOPs), and none if no step has a number. See docs/verifiers.md for the measurements.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import torch

from reasonscale.identity import digest, model_identity
from reasonscale.tasks.base import Task
from reasonscale.types import Problem, Usage
from reasonscale.verifiers.base import Verifier

NUMBER = re.compile(r"\d+(?:\.\d+)?")  # no nested quantifiers: linear time on any text
SIGNED_AFTER = frozenset("=(:, \t\n")  # a '-' after one of these (or at the start) is a sign, not a minus


def number_spans(text: str, which: Literal["last", "all"] = "last") -> list[tuple[int, int]]:
    """The character spans of the numbers in `text` (each with its sign when it has one): the last, or all."""
    matches = NUMBER.finditer(text)
    if which == "last":
        last = None
        for last in matches:
            pass
        matches = iter([last] if last else [])
    spans = []
    for match in matches:
        start, end = match.span()
        if start > 0 and text[start - 1] == "-" and (start == 1 or text[start - 2] in SIGNED_AFTER):
            start -= 1
        spans.append((start, end))
    return spans


def last_number(text: str) -> tuple[int, int] | None:
    """The character span of the last number in `text`, or None."""
    spans = number_spans(text)
    return spans[0] if spans else None


@dataclass(frozen=True)
class RecomputeOptions:
    """How a step's written numbers are scored (every field is part of the verifier's identity)."""

    form: Literal["prob", "ratio"] = "prob"
    max_number_tokens: int = 16  # a longer number is scored on its first tokens (its probability only falls further)
    score_end: bool = True  # also score the token that ends the number
    neutral: float = 1.0  # the score of a step without a number
    numbers: Literal["last", "all"] = "all"  # which of a step's numbers are scored: every one, or its result

    def __post_init__(self) -> None:
        if self.form not in ("prob", "ratio"):
            raise ValueError(f"recompute verifier: form must be 'prob' or 'ratio', not {self.form!r}")
        if self.max_number_tokens < 1:
            raise ValueError("recompute verifier: max_number_tokens must be at least 1")
        if self.numbers not in ("last", "all"):
            raise ValueError(f"recompute verifier: numbers must be 'last' or 'all', not {self.numbers!r}")
        if not 0.0 <= self.neutral <= 1.0:
            raise ValueError("recompute verifier: neutral must lie in [0, 1]")


@dataclass
class Encoded:
    """A solution as the verifier model reads it: its token ids and, per step, the positions scored (or None)."""

    ids: list[int]
    targets: list[list[int] | None]


def encode(tokenizer, prompt: str, steps: Sequence[str], delimiter: str, options: RecomputeOptions) -> Encoded:
    """Token ids of prompt + steps joined by the delimiter and, for each step, the positions of its scored numbers'
    tokens, each followed with `score_end` by the token after it when the text has one (the solution's last token
    has no successor: how a solution ends, EOS or a stop string, is not in its text)."""
    text, spans = prompt, []
    for k, step in enumerate(steps):
        text += delimiter if k else ""
        spans.append([(len(text) + a, len(text) + b) for a, b in number_spans(step, options.numbers)])
        text += step
    try:
        encoded = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
    except NotImplementedError:
        raise ValueError("the recompute verifier needs a fast tokenizer (character offsets); this one is not") from None
    offsets = encoded["offset_mapping"]
    ends = [b for _, b in offsets]
    targets: list[list[int] | None] = []
    for step_spans in spans:
        scored: set[int] = set()
        for start, end in step_spans:
            covering, t = [], bisect.bisect_right(ends, start)  # the first token ending after the number starts
            while t < len(offsets) and offsets[t][0] < end and len(covering) < options.max_number_tokens:
                covering += [t] if offsets[t][1] > offsets[t][0] else []
                t += 1
            if covering and options.score_end and covering[-1] + 1 < len(offsets):
                covering.append(covering[-1] + 1)
            scored.update(covering)
        targets.append(sorted(t for t in scored if t > 0) or None)  # the first token has no context to predict it
    return Encoded(list(encoded["input_ids"]), targets)


def token_scores(logits: torch.Tensor, ids: torch.Tensor, form: str) -> torch.Tensor:
    """Per target token: its log-probability ('prob') or log(p / max p) ('ratio'), from the logits that predict it."""
    logp = logits.float().log_softmax(-1)
    chosen = logp.gather(-1, ids[:, None])[:, 0]
    return chosen - logp.max(-1).values if form == "ratio" else chosen


class RecomputeVerifier(Verifier):
    """Scores each step by the verifier model's probability of re-deriving the numbers written in it."""

    name = "recompute"

    def __init__(self, path: str, task: Task, device: str = "auto", batch_size: int = 32, **options):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        super().__init__()
        self.task = task
        known = RecomputeOptions.__dataclass_fields__
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"recompute verifier: unknown options {', '.join(unknown)} (known: {', '.join(known)})")
        self.options = RecomputeOptions(**options)
        self.device = device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(self.device).eval()
        self.num_parameters = self.model.num_parameters(exclude_embeddings=True)
        self.batch_size = batch_size
        self.identity = digest({"kind": self.name, "model": model_identity(path), "options": asdict(self.options)})

    def prompt(self, problem: Problem) -> str:
        """The task's prompt and any context a strategy put before the solution (as the PRM reads it)."""
        return self.task.format_prompt(problem) + problem.meta.get("context", "")

    def score(self, problems: Sequence[Problem], step_lists: Sequence[Sequence[str]]) -> list[list[float]]:
        return self.score_items(problems, step_lists)[0]

    def score_items(
        self, problems: Sequence[Problem], step_lists: Sequence[Sequence[str]]
    ) -> tuple[list[list[float]], list[Usage]]:
        """Step scores and each solution's own cost: one call over its tokens, or nothing when no step has a number."""
        delimiter = self.task.step_delimiter
        encoded = [
            encode(self.tokenizer, self.prompt(p), s, delimiter, self.options) for p, s in zip(problems, step_lists)
        ]
        asked = sorted((i for i, e in enumerate(encoded) if any(e.targets)), key=lambda i: len(encoded[i].ids))
        scores = [[self.options.neutral] * len(e.targets) for e in encoded]
        costs = [Usage() for _ in encoded]
        for start in range(0, len(asked), self.batch_size):
            batch = asked[start : start + self.batch_size]
            for i, values in zip(batch, self._score_batch([encoded[i] for i in batch])):
                scores[i] = values
                costs[i].add_verified(len(encoded[i].ids), self.num_parameters)
                self.usage += costs[i]
        return scores, costs

    @torch.inference_mode()
    def _score_batch(self, batch: list[Encoded]) -> list[list[float]]:
        width = max(len(e.ids) for e in batch)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.tensor([e.ids + [pad] * (width - len(e.ids)) for e in batch], device=self.device)
        mask = torch.tensor([[1] * len(e.ids) + [0] * (width - len(e.ids)) for e in batch], device=self.device)
        logits = self.model(input_ids=ids, attention_mask=mask).logits
        rows = [r for r, e in enumerate(batch) for t in e.targets if t for _ in t]
        cols = [p for e in batch for t in e.targets if t for p in t]
        rows_t, cols_t = torch.tensor(rows, device=self.device), torch.tensor(cols, device=self.device)
        logs = token_scores(logits[rows_t, cols_t - 1], ids[rows_t, cols_t], self.options.form).tolist()
        out, k = [], 0
        for e in batch:
            values = []
            for t in e.targets:
                if t is None:
                    values.append(self.options.neutral)
                else:
                    values.append(math.exp(sum(logs[k : k + len(t)])))
                    k += len(t)
            out.append(values)
        return out
