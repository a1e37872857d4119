"""A generative verifier: a causal LM re-derives each step's result and is asked how likely the written one is.

A step's result is the last number written in it (`last_number`). The verifier model reads the prompt, the previous
steps and the step up to just before that number (teacher forcing: one forward pass per solution covers all of its
steps) and the step's score is its probability of the number's tokens, followed by the token that ends the number
where the text has one (so a truncated "2" for "29" is not mistaken for a right answer):

  prob   the product of those tokens' probabilities: P(written number | context).
  ratio  the product of p(token) / max p(any token) at each of those positions: 1.0 exactly when the written number is
         the model's greedy re-derivation, and smoothly lower the further the writing strays from it; a model that
         is unsure between two values does not penalize the one it prefers.

A step without a number scores `neutral` (1.0: nothing to check). Each solution costs one verifier call over its
tokens (2·N·tokens FLOPs), and none if no step has a number.
"""

from __future__ import annotations

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


def last_number(text: str) -> tuple[int, int] | None:
    """The character span of the last number in `text` (with its sign when it has one), or None."""
    match = None
    for match in NUMBER.finditer(text):
        pass
    if match is None:
        return None
    start, end = match.span()
    if start > 0 and text[start - 1] == "-" and (start == 1 or text[start - 2] in SIGNED_AFTER):
        start -= 1
    return start, end


@dataclass(frozen=True)
class RecomputeOptions:
    """How a step's written result is scored (every field is part of the verifier's identity)."""

    form: Literal["prob", "ratio"] = "ratio"
    max_number_tokens: int = 16  # a longer number is scored on its first tokens (its probability only falls further)
    score_end: bool = True  # also score the token that ends the number
    neutral: float = 1.0  # the score of a step without a number

    def __post_init__(self) -> None:
        if self.form not in ("prob", "ratio"):
            raise ValueError(f"recompute verifier: form must be 'prob' or 'ratio', not {self.form!r}")
        if self.max_number_tokens < 1:
            raise ValueError("recompute verifier: max_number_tokens must be at least 1")
        if not 0.0 <= self.neutral <= 1.0:
            raise ValueError("recompute verifier: neutral must lie in [0, 1]")


@dataclass
class Encoded:
    """A solution as the verifier model reads it: its token ids and, per step, the positions scored (or None)."""

    ids: list[int]
    targets: list[list[int] | None]


def encode(tokenizer, prompt: str, steps: Sequence[str], delimiter: str, options: RecomputeOptions) -> Encoded:
    """Token ids of prompt + steps joined by the delimiter and, for each step, the positions of its last number's
    tokens, plus with `score_end` the token after them when the text has one (the solution's last token has no
    successor: how a solution ends, EOS or a stop string, is not in its text)."""
    text, spans = prompt, []
    for k, step in enumerate(steps):
        text += delimiter if k else ""
        span = last_number(step)
        spans.append(None if span is None else (len(text) + span[0], len(text) + span[1]))
        text += step
    try:
        encoded = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
    except NotImplementedError:
        raise ValueError("the recompute verifier needs a fast tokenizer (character offsets); this one is not") from None
    offsets = encoded["offset_mapping"]
    targets: list[list[int] | None] = []
    for span in spans:
        covering = [] if span is None else [t for t, (a, b) in enumerate(offsets) if b > a and a < span[1] and b > span[0]]
        covering = covering[: options.max_number_tokens]
        if covering and options.score_end and covering[-1] + 1 < len(offsets):
            covering.append(covering[-1] + 1)
        targets.append([t for t in covering if t > 0] or None)  # the first token has no context to predict it
    return Encoded(list(encoded["input_ids"]), targets)


def token_scores(logits: torch.Tensor, ids: torch.Tensor, form: str) -> torch.Tensor:
    """Per target token: its log-probability ('prob') or log(p / max p) ('ratio'), from the logits that predict it."""
    logp = logits.float().log_softmax(-1)
    chosen = logp.gather(-1, ids[:, None])[:, 0]
    return chosen - logp.max(-1).values if form == "ratio" else chosen


class RecomputeVerifier(Verifier):
    """Scores each step by the verifier model's probability of re-deriving the result written in it."""

    name = "recompute"

    def __init__(self, path: str, task: Task, device: str = "auto", batch_size: int = 32, **options):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        super().__init__()
        self.task = task
        unknown = set(options) - set(RecomputeOptions.__dataclass_fields__)
        if unknown:
            raise ValueError(f"recompute verifier: unknown options {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(RecomputeOptions.__dataclass_fields__)})")
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
        asked = sorted((i for i, e in enumerate(encoded) if any(encoded[i].targets)), key=lambda i: len(encoded[i].ids))
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
