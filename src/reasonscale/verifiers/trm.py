"""The multi-task topological reward model (M-TRM, our design for SOLAR) and its verifier.

One shared backbone (a transformer without its LM head) and two heads read the hidden state of the last token:
the topology head reads the question alone (the task's prompt) and predicts, for every topology it was trained on,
its topo label (the chance that topology answers the question right); the answer head reads the prompt followed by
a response and predicts the response's correctness. Both are sigmoid outputs in [0, 1]. A model trained with one
head's loss only is a single-task TRM of the same shape.

Saved as a Hugging Face backbone directory plus `trm_heads.safetensors` and `reasonscale_trm.json` (topologies, text
format), so `build_verifier("orm", task, path)` scores responses with the answer head and the `topological` strategy
can read the topology head.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from reasonscale.tasks.base import Task
from reasonscale.types import Problem, Usage
from reasonscale.verifiers.base import Verifier
from reasonscale.verifiers.reward import RewardFormat, encode

TRM_FILE = "reasonscale_trm.json"
HEADS_FILE = "trm_heads.safetensors"


@dataclass(frozen=True)
class TRMFormat:
    topologies: list[str] = field(default_factory=list)  # the topology head's outputs, in order
    chat_template: bool = False

    def save(self, directory: str | Path) -> None:
        (Path(directory) / TRM_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, directory: str | Path) -> TRMFormat:
        return cls(**json.loads((Path(directory) / TRM_FILE).read_text()))


def is_trm(path: str | Path) -> bool:
    """Whether `path` holds a TRM saved by `reasonscale.train.trm`."""
    return (Path(path) / TRM_FILE).is_file()


class TRM(torch.nn.Module):
    """Backbone + topology head + answer head."""

    def __init__(self, backbone: torch.nn.Module, hidden: int, fmt: TRMFormat):
        super().__init__()
        self.backbone, self.format = backbone, fmt
        self.topology_head = torch.nn.Linear(hidden, max(len(fmt.topologies), 1))
        self.answer_head = torch.nn.Linear(hidden, 1)

    def last_hidden(self, batch: list[list[int]], pad: int) -> torch.Tensor:
        """The final layer's state at each row's last token (rows right-padded)."""
        device = next(self.parameters()).device
        width = max(map(len, batch))
        ids = torch.tensor([row + [pad] * (width - len(row)) for row in batch], device=device)
        mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in batch], device=device)
        states = self.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        return states[torch.arange(len(batch), device=device), mask.sum(1) - 1].float()

    def topology_logits(self, batch: list[list[int]], pad: int) -> torch.Tensor:
        return self.topology_head(self.last_hidden(batch, pad))

    def answer_logits(self, batch: list[list[int]], pad: int) -> torch.Tensor:
        return self.answer_head(self.last_hidden(batch, pad))[:, 0]

    def save_heads(self, directory: str | Path) -> None:
        from safetensors.torch import save_file

        heads = {f"topology.{k}": v for k, v in self.topology_head.state_dict().items()}
        heads |= {f"answer.{k}": v for k, v in self.answer_head.state_dict().items()}
        save_file({k: v.detach().cpu().contiguous() for k, v in heads.items()}, str(Path(directory) / HEADS_FILE))
        self.format.save(directory)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> TRM:
        from safetensors.torch import load_file
        from transformers import AutoModel

        backbone = AutoModel.from_pretrained(str(path), dtype=torch.float32)
        model = cls(backbone, backbone.config.hidden_size, TRMFormat.load(path))
        heads = load_file(str(Path(path) / HEADS_FILE))
        model.topology_head.load_state_dict({k[9:]: v for k, v in heads.items() if k.startswith("topology.")})
        model.answer_head.load_state_dict({k[7:]: v for k, v in heads.items() if k.startswith("answer.")})
        return model.to(device).eval()


def encode_question(tokenizer, fmt: TRMFormat, prompt: str) -> list[int]:
    """The topology head's input: the prompt alone (a user turn awaiting the answer, in a chat template)."""
    if fmt.chat_template:
        messages = [{"role": "user", "content": prompt}]
        return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"])
    return list(tokenizer(prompt)["input_ids"])


def encode_answer(tokenizer, fmt: TRMFormat, prompt: str, response: str) -> list[int]:
    """The answer head's input: prompt + response, as a reward model reads them."""
    return encode(tokenizer, RewardFormat(chat_template=fmt.chat_template), prompt, response)


class TRMVerifier(Verifier):
    """The answer head as an outcome verifier (one score per solution, given to each step); `topology_scores`
    reads the topology head."""

    name = "orm"

    def __init__(self, path: str, task: Task, device: str = "auto", batch_size: int = 32):
        from transformers import AutoTokenizer

        super().__init__()
        self.task = task
        self.device = device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = TRM.load(path, self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.num_parameters = self.model.backbone.num_parameters(exclude_embeddings=True)
        self.batch_size = batch_size

    @property
    def topologies(self) -> list[str]:
        return list(self.model.format.topologies)

    def answer_scores(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        fmt = self.model.format
        encoded = [encode_answer(self.tokenizer, fmt, p, r) for p, r in zip(prompts, responses, strict=True)]
        return self._run(encoded, self.model.answer_logits)[0]

    def topology_scores(self, prompts: Sequence[str]) -> tuple[list[dict[str, float]], list[Usage]]:
        """Per prompt, each topology's predicted topo label, and the cost of reading it."""
        encoded = [encode_question(self.tokenizer, self.model.format, p) for p in prompts]
        rows, costs = self._run(encoded, self.model.topology_logits)
        return [dict(zip(self.topologies, row)) for row in rows], costs

    def score_items(
        self, problems: Sequence[Problem], step_lists: Sequence[Sequence[str]]
    ) -> tuple[list[list[float]], list[Usage]]:
        asked = [i for i, steps in enumerate(step_lists) if steps]
        fmt, prompt, join = self.model.format, self.task.format_prompt, self.task.join_steps
        encoded = [encode_answer(self.tokenizer, fmt, prompt(problems[i]), join(step_lists[i])) for i in asked]
        values, spent = self._run(encoded, self.model.answer_logits)
        scores: list[list[float]] = [[] for _ in step_lists]
        costs = [Usage() for _ in step_lists]
        for i, value, cost in zip(asked, values, spent):
            scores[i], costs[i] = [value] * len(step_lists[i]), cost
        return scores, costs

    def score(self, problems: Sequence[Problem], step_lists: Sequence[Sequence[str]]) -> list[list[float]]:
        return self.score_items(problems, step_lists)[0]

    @torch.inference_mode()
    def _run(self, encoded: list[list[int]], head) -> tuple[list, list[Usage]]:
        """The head's sigmoid outputs per row, and each row's cost (one call over its tokens)."""
        out: list = []
        for start in range(0, len(encoded), self.batch_size):
            out += torch.sigmoid(head(encoded[start : start + self.batch_size], self.pad)).tolist()
        costs = []
        for ids in encoded:
            cost = Usage()
            cost.add_verified(len(ids), self.num_parameters)
            self.usage += cost
            costs.append(cost)
        return out, costs
