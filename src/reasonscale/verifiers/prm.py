"""Process reward models: a trained model scores every step of a solution, read at the end of each step.

Two checkpoint formats are supported (`PRMFormat.mode`):
  head   a token-classification model (1 label: sigmoid; 2 labels: softmax of label 1) read at each step's
         separator, or at `step_tag` in it. Models trained by `reasonscale.train.prm` use this by default;
         Qwen2.5-Math-PRM style checkpoints load with `trust_remote_code`, `step_tag: "<extra_0>"` and
         `step_separator: "<extra_0>"`.
  token  a causal LM; the score is P(good) of softmax over (good_token, bad_token) logits at `step_tag`
         (Math-Shepherd: step_tag "ки", whose default separator writes "step ки\n", good "+", bad "-",
         prompt_template "{question} ").
A checkpoint saved by the trainer carries its format in `reasonscale_prm.json`; options override it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import torch

from reasonscale.tasks.base import Task
from reasonscale.types import Problem, Usage
from reasonscale.verifiers.base import Verifier

FORMAT_FILE = "reasonscale_prm.json"


@dataclass(frozen=True)
class PRMFormat:
    """How a checkpoint reads a solution: what ends a step, where the score sits, and the prompt it expects.

    Each step is followed by `step_separator` and its score is read at `step_tag`, which the separator must
    write (default " {step_tag}\n", as Math-Shepherd writes "step ки\n"), or without a tag at the separator's
    last token (default separator "\n").
    """

    mode: Literal["head", "token"] = "head"
    step_separator: str | None = None
    step_tag: str | None = None
    good_token: str = "+"
    bad_token: str = "-"
    prompt_template: str | None = None  # None: the task's prompt; otherwise formatted with {question}
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if self.step_tag == "":
            raise ValueError("PRM format: step_tag is empty; give the tag token, or leave it unset")
        if not self.separator:
            raise ValueError("PRM format: step_separator is empty; the score is read at its last token")
        if self.step_tag is not None and self.step_tag not in self.separator:
            raise ValueError(
                f"PRM format: step_tag {self.step_tag!r} is not in step_separator {self.separator!r}; the score is "
                f"read at the tag, so the separator must write it (e.g. {' ' + self.step_tag + chr(10)!r})"
            )

    @property
    def separator(self) -> str:
        """What follows each step."""
        if self.step_separator is not None:
            return self.step_separator
        return f" {self.step_tag}\n" if self.step_tag else "\n"

    def save(self, directory: str | Path) -> None:
        (Path(directory) / FORMAT_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> PRMFormat:
        """The format saved with a local checkpoint (defaults otherwise), with `overrides` applied."""
        file = Path(path) / FORMAT_FILE
        saved = json.loads(file.read_text()) if file.is_file() else {}
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown PRM format options: {', '.join(sorted(unknown))}")
        return cls(**{**saved, **overrides})


def encode_steps(tokenizer, prompt: str, segments: Sequence[str], fmt: PRMFormat) -> tuple[list[int], list[int]]:
    """Token ids of prompt + each segment followed by the separator, and the position read for each segment:
    the token that holds the step tag in the segment's separator, or the separator's last token.

    The whole text is tokenized once, as the model reads it (a SentencePiece tokenizer adds no space token per
    step), and positions are found by character offsets; training and scoring share this function.
    """
    text, spans = prompt, []
    for segment in segments:
        text += segment
        if fmt.step_tag is not None:
            start = len(text) + fmt.separator.rindex(fmt.step_tag)
            spans.append((start, start + len(fmt.step_tag)))
        else:
            spans.append((len(text) + len(fmt.separator) - 1, len(text) + len(fmt.separator)))
        text += fmt.separator
    try:
        encoded = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
    except NotImplementedError:
        raise ValueError("PRM scoring needs a fast tokenizer (character offsets); this one is not") from None
    offsets = encoded["offset_mapping"]
    return list(encoded["input_ids"]), [read_position(offsets, span, fmt.step_tag) for span in spans]


def read_position(offsets: Sequence[tuple[int, int]], span: tuple[int, int], tag: str | None) -> int:
    """The token covering the characters `span` (the tag must be exactly one token; else the last one)."""
    start, end = span
    covering = [t for t, (a, b) in enumerate(offsets) if b > a and a < end and b > start]
    if tag is not None and len(covering) != 1:
        raise ValueError(
            f"the PRM step tag {tag!r} is {len(covering)} tokens for this tokenizer, not one: "
            "give the tag the checkpoint was trained with (its token is where the score is read)"
        )
    if not covering:
        raise ValueError(f"no token covers the PRM step separator at characters {start}-{end}")
    return covering[-1]


def token_id(tokenizer, text: str) -> int:
    """The id of a single-token string."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"'{text}' is not one token for this tokenizer ({ids})")
    return ids[0]


def load_prm_model(path: str, fmt: PRMFormat, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """The checkpoint as the model class its format reads."""
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForTokenClassification

    if fmt.mode == "token":
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=fmt.trust_remote_code)
    auto = AutoModel if fmt.trust_remote_code else AutoModelForTokenClassification
    return auto.from_pretrained(path, dtype=dtype, trust_remote_code=fmt.trust_remote_code)


def read_scores(logits: torch.Tensor, fmt: PRMFormat, good_bad: tuple[int, int] | None = None) -> torch.Tensor:
    """Scores in [0, 1] from the logits at the read positions ([positions, labels or vocabulary])."""
    if fmt.mode == "token":
        assert good_bad is not None
        return logits[:, list(good_bad)].float().softmax(-1)[:, 0]
    if logits.shape[-1] == 1:
        return logits[:, 0].float().sigmoid()
    return logits.float().softmax(-1)[:, 1]


def step_logits(logits: torch.Tensor, fmt: PRMFormat, good_bad: tuple[int, int] | None = None) -> torch.Tensor:
    """One real-valued logit per read position, whose sigmoid is the score (what training losses act on)."""
    if fmt.mode == "token":
        assert good_bad is not None
        return logits[:, good_bad[0]] - logits[:, good_bad[1]]
    if logits.shape[-1] == 1:
        return logits[:, 0]
    return logits[:, 1] - logits[:, 0]


class PRMVerifier(Verifier):
    """Scores each step with a process reward model loaded from a local directory or a Hugging Face id."""

    name = "prm"

    def __init__(
        self,
        path: str,
        task: Task,
        device: str = "auto",
        batch_size: int = 32,
        **format_options: Any,
    ):
        from transformers import AutoTokenizer

        super().__init__()
        self.task = task
        self.format = PRMFormat.load(path, **format_options)
        self.device = device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=self.format.trust_remote_code)
        self.model = load_prm_model(path, self.format, dtype).to(self.device).eval()
        self.num_parameters = self.model.num_parameters(exclude_embeddings=True)
        self.batch_size = batch_size
        self.good_bad = None
        if self.format.mode == "token":
            self.good_bad = (
                token_id(self.tokenizer, self.format.good_token),
                token_id(self.tokenizer, self.format.bad_token),
            )

    def prompt(self, problem: Problem) -> str:
        """The text the solution follows: the task's prompt (or the template), then any context a strategy put
        before the solution (`problem.meta["context"]`, e.g. a revision's previous attempts)."""
        template = self.format.prompt_template
        base = self.task.format_prompt(problem) if template is None else template.format(question=problem.question)
        return base + problem.meta.get("context", "")

    def segments(self, steps: Sequence[str]) -> list[str]:
        """The pieces that are each followed by the separator and read: one per step."""
        return list(steps)

    def score(self, problems: Sequence[Problem], step_lists: Sequence[Sequence[str]]) -> list[list[float]]:
        return self.score_items(problems, step_lists)[0]

    def score_items(
        self, problems: Sequence[Problem], step_lists: Sequence[Sequence[str]]
    ) -> tuple[list[list[float]], list[Usage]]:
        """Step scores and each solution's own cost: one call over its own tokens (prompt and steps)."""
        encoded = [
            encode_steps(self.tokenizer, self.prompt(p), self.segments(s), self.format)
            for p, s in zip(problems, step_lists)
        ]
        scores: list[list[float]] = [[] for _ in encoded]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            for i, values in zip(batch, self._score_batch([encoded[i] for i in batch])):
                scores[i] = values
        costs = []
        for ids, _ in encoded:
            cost = Usage()
            cost.add_verified(len(ids), self.num_parameters)
            self.usage += cost
            costs.append(cost)
        return [self.expand(s, len(steps)) for s, steps in zip(scores, step_lists)], costs

    def expand(self, scores: list[float], steps: int) -> list[float]:
        """Scores per step from scores per segment (one each here)."""
        return scores

    @torch.inference_mode()
    def _score_batch(self, encoded: list[tuple[list[int], list[int]]]) -> list[list[float]]:
        width = max(len(ids) for ids, _ in encoded)
        pad = self.tokenizer.pad_token_id or 0
        input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in encoded], device=self.device)
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in encoded], device=self.device)
        logits = self.model(input_ids=input_ids, attention_mask=mask)[0]
        rows = torch.tensor([r for r, (_, pos) in enumerate(encoded) for _ in pos], dtype=torch.long)
        cols = torch.tensor([p for _, pos in encoded for p in pos], dtype=torch.long)
        values = read_scores(logits[rows, cols], self.format, self.good_bad).tolist() if len(cols) else []
        out, start = [], 0
        for _, pos in encoded:
            out.append(values[start : start + len(pos)])
            start += len(pos)
        return out
