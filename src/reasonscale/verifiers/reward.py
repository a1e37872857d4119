"""Scalar reward models (`reasonscale train reward`) as outcome verifiers: one score for a whole solution.

A reward model is a sequence-classification checkpoint with one output, trained on preference pairs, so its raw
reward has no fixed scale; the verifier reports sigmoid(reward), which keeps the ranking and lies in [0, 1]. It reads
the solution exactly as the trainer did (`reasonscale_reward.json`): the task's prompt followed by the solution and
the EOS token, or a user turn and an assistant turn in the model's chat template.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from reasonscale.tasks.base import Task
from reasonscale.types import Problem, Usage
from reasonscale.verifiers.base import Verifier

FORMAT_FILE = "reasonscale_reward.json"


@dataclass(frozen=True)
class RewardFormat:
    """How a reward model reads a solution."""

    chat_template: bool = False  # prompt as a user turn, solution as an assistant turn
    append_eos: bool = True  # plain text ends with the EOS token (TRL appends it in training)

    def save(self, directory: str | Path) -> None:
        (Path(directory) / FORMAT_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, directory: str | Path) -> RewardFormat:
        return cls(**json.loads((Path(directory) / FORMAT_FILE).read_text()))


def is_reward_model(path: str | Path) -> bool:
    """Whether `path` is a reward model saved by `reasonscale.train.reward`."""
    return (Path(path) / FORMAT_FILE).is_file()


def encode(tokenizer, fmt: RewardFormat, prompt: str, solution: str) -> list[int]:
    """Token ids of prompt + solution as the reward trainer built them."""
    if fmt.chat_template:
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": solution}]
        return list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])
    eos = tokenizer.eos_token if fmt.append_eos and not solution.endswith(tokenizer.eos_token) else ""
    return list(tokenizer(prompt + solution + eos)["input_ids"])


class RewardModelVerifier(Verifier):
    """Scores each whole solution once with a scalar reward model and gives that score to each of its steps."""

    name = "orm"

    def __init__(self, path: str, task: Task, device: str = "auto", batch_size: int = 32):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        super().__init__()
        self.task = task
        self.format = RewardFormat.load(path)
        self.device = device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path, dtype=dtype).to(self.device).eval()
        self.num_parameters = self.model.num_parameters(exclude_embeddings=True)
        self.pad = self.model.config.pad_token_id if self.model.config.pad_token_id is not None else 0
        self.batch_size = batch_size

    def rewards(self, prompts: Sequence[str], solutions: Sequence[str]) -> tuple[list[float], list[Usage]]:
        """The raw reward of each (prompt, solution), and each one's own cost (one call over its tokens)."""
        encoded = [encode(self.tokenizer, self.format, p, s) for p, s in zip(prompts, solutions, strict=True)]
        out: list[float] = []
        for start in range(0, len(encoded), self.batch_size):
            out += self._forward(encoded[start : start + self.batch_size])
        flops = 2.0 * self.num_parameters
        costs = [Usage(verifier_calls=1, verifier_tokens=len(ids), flops=flops * len(ids)) for ids in encoded]
        for cost in costs:
            self.usage += cost
        return out, costs

    def score_items(
        self, problems: Sequence[Problem], step_lists: Sequence[Sequence[str]]
    ) -> tuple[list[list[float]], list[Usage]]:
        asked = [i for i, steps in enumerate(step_lists) if steps]
        rewards, spent = self.rewards(
            [self.task.format_prompt(problems[i]) + problems[i].meta.get("context", "") for i in asked],
            [self.task.join_steps(step_lists[i]) for i in asked],
        )
        scores: list[list[float]] = [[] for _ in step_lists]
        costs = [Usage() for _ in step_lists]
        for i, reward, cost in zip(asked, rewards, spent):
            scores[i], costs[i] = [float(torch.sigmoid(torch.tensor(reward)))] * len(step_lists[i]), cost
        return scores, costs

    def score(self, problems: Sequence[Problem], step_lists: Sequence[Sequence[str]]) -> list[list[float]]:
        return self.score_items(problems, step_lists)[0]

    @torch.inference_mode()
    def _forward(self, batch: list[list[int]]) -> list[float]:
        width = max(map(len, batch))
        ids = torch.tensor([row + [self.pad] * (width - len(row)) for row in batch], device=self.device)
        mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in batch], device=self.device)
        return self.model(input_ids=ids, attention_mask=mask).logits[:, 0].float().tolist()
