"""In-process transformers engine (CPU or GPU): the embedded default backend.

It batches requests across prompts and samples into `model.generate` (KV cache, left padding). Sampling is
done by a logits processor that adds Gumbel noise from a counter-based hash of (sample seed, step, token), so
each sample is reproducible on its own, whatever batch it lands in, and greedy decoding picks the sample.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)

from reasonscale.engines.base import Engine, SampleRequest, cut_at_stop, sample_seed
from reasonscale.types import Completion, SamplingParams

_MASK53 = (1 << 53) - 1


def _int64(value: int) -> int:
    """`value` modulo 2**64 as a signed 64-bit integer (torch int64 arithmetic wraps the same way)."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


_MIXERS = [(30, _int64(0xBF58476D1CE4E5B9)), (27, _int64(0x94D049BB133111EB)), (31, _int64(0x2545F4914F6CDD1D))]


def counter_uniform(seeds: torch.Tensor, step: int, vocab_size: int) -> torch.Tensor:
    """Uniform numbers in (0, 1) of shape (len(seeds), vocab_size), a pure function of (seed, step, token)."""
    tokens = torch.arange(vocab_size, device=seeds.device, dtype=torch.int64).mul_(0x2545F491)
    row = seeds * _int64(0x9E3779B97F4A7C15) + _int64((step + 1) * 0x632BE59BD9B4E019)
    x = row[:, None] + tokens[None, :]
    for shift, mult in _MIXERS:  # a splitmix-style mixer over wrapping int64 arithmetic, in place
        x.bitwise_xor_(x >> shift).mul_(mult)
    x.bitwise_xor_(x >> 29).bitwise_and_(_MASK53)
    return x.to(torch.float64).add_(0.5).div_(float(1 << 53))


class SeededSampler(LogitsProcessor):
    """Turns greedy decoding into temperature / top-p sampling with one reproducible noise stream per row."""

    def __init__(self, row_seeds: torch.Tensor, temperature: float, top_p: float, prompt_width: int):
        self.row_seeds = row_seeds
        self.temperature = temperature
        self.top_p = top_p
        self.prompt_width = prompt_width

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        logits = scores.float() / self.temperature
        if self.top_p < 1.0:
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
            drop_sorted = cumulative - sorted_logits.softmax(dim=-1) >= self.top_p  # keeps the top token
            drop = drop_sorted.scatter(-1, order, drop_sorted)
            logits = logits.masked_fill(drop, float("-inf"))
        step = input_ids.shape[1] - self.prompt_width
        gumbel = counter_uniform(self.row_seeds, step, logits.shape[-1]).log_().neg_().log_().neg_()
        return logits.add_(gumbel.to(logits.dtype))


class StopTracker(StoppingCriteria):
    """Stops each row at end-of-sequence or once a stop string appears, and records how many tokens it made."""

    def __init__(self, tokenizer, stops: Sequence[str], eos_ids: set[int], prompt_width: int, rows: int):
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.eos_ids = eos_ids
        self.prompt_width = prompt_width
        self.tail = max((len(s) for s in self.stops), default=0) + 2
        self.lengths: list[int | None] = [None] * rows

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        produced = input_ids.shape[1] - self.prompt_width
        window = input_ids[:, -min(self.tail, produced) :].tolist()  # one transfer for the whole batch
        for row, ids in enumerate(window):
            if self.lengths[row] is None and (ids[-1] in self.eos_ids or self._has_stop(ids)):
                self.lengths[row] = produced
        return torch.tensor([n is not None for n in self.lengths], device=input_ids.device)

    def _has_stop(self, ids: list[int]) -> bool:
        if not self.stops:
            return False
        tail = self.tokenizer.decode(ids, skip_special_tokens=True)
        return any(s in tail for s in self.stops)


def model_identity(name_or_path: str) -> str:
    """A cache identity for a model: a local path is fingerprinted by its config and weight files."""
    path = Path(name_or_path)
    if not path.is_dir():
        return name_or_path
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.suffix in {".json", ".safetensors", ".bin", ".model"} and f.is_file():
            h.update(f.name.encode())
            h.update(str(f.stat().st_size).encode())
            with f.open("rb") as fh:
                h.update(fh.read(1 << 20))
    return f"{path.name}@{h.hexdigest()[:16]}"


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


class HFEngine(Engine):
    """Runs a transformers causal LM in this process."""

    def __init__(
        self,
        path: str,
        device: str = "auto",
        dtype: str = "auto",
        max_batch_size: int = 64,
        model: torch.nn.Module | None = None,
        tokenizer=None,
    ):
        if model is None and not Path(path).exists() and Path(path).is_absolute():
            raise FileNotFoundError(f"model path does not exist: {path}")
        self.device = resolve_device(device)
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if model is None:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(dtype, self.device))
        self.model = model.to(self.device).eval()
        self.max_batch_size = max_batch_size
        self.model_id = model_identity(path)
        self.num_parameters = self.model.num_parameters(exclude_embeddings=True)
        eos = self.model.generation_config.eos_token_id or self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        """The prompt string for a chat, with the model's chat template and a generation prompt."""
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def complete(self, requests: Sequence[SampleRequest], params: SamplingParams) -> list[Completion]:
        seeds = [sample_seed(params.seed, r.prompt, r.index) for r in requests]
        return self.complete_seeded([r.prompt for r in requests], seeds, params)

    def complete_seeded(self, prompts: Sequence[str], seeds: Sequence[int], params: SamplingParams) -> list[Completion]:
        """One completion per prompt, each sampled from its own noise stream `seeds[k]` (unused when greedy).

        `complete` derives the seeds with `sample_seed`; a server that receives per-sample seeds calls this directly.
        """
        order = sorted(range(len(prompts)), key=lambda k: len(prompts[k]))
        results: list[Completion | None] = [None] * len(prompts)
        for start in range(0, len(order), self.max_batch_size):
            batch = order[start : start + self.max_batch_size]
            made = self._complete_batch([prompts[k] for k in batch], [seeds[k] for k in batch], params)
            for k, completion in zip(batch, made):
                results[k] = completion
        return results  # type: ignore[return-value]

    def _encode(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """Left-padded ids; a prompt that already starts with the BOS text gets no second BOS."""
        bos = self.tokenizer.bos_token
        ids = [self.tokenizer(p, add_special_tokens=not (bos and p.startswith(bos)))["input_ids"] for p in prompts]
        enc = self.tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def _prefilled(self, prompts: list[str], enc: dict[str, torch.Tensor]) -> dict[str, object]:
        """Generate inputs where rows that share a prompt share one prefill of it (all but its last token).

        Sampling n times from a prompt, or expanding a beam M ways, then encodes the prompt once, not n times.
        """
        unique = list(dict.fromkeys(prompts))
        if len(unique) == len(prompts) or enc["input_ids"].shape[1] < 2:
            return dict(enc)
        first = {p: k for k, p in reversed(list(enumerate(prompts)))}
        heads = torch.tensor([first[p] for p in unique], device=self.device)
        rows = torch.tensor([unique.index(p) for p in prompts], device=self.device)
        ids, mask = enc["input_ids"][heads, :-1], enc["attention_mask"][heads, :-1]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True).past_key_values
        cache.batch_select_indices(rows)
        return {**enc, "past_key_values": cache}

    @torch.inference_mode()
    def _complete_batch(self, prompts: list[str], seeds: list[int], params: SamplingParams) -> list[Completion]:
        enc = self._encode(prompts)
        width = enc["input_ids"].shape[1]
        tracker = StopTracker(self.tokenizer, params.stop, self.eos_ids, width, len(prompts))
        processors = LogitsProcessorList()
        if params.temperature > 0:
            row_seeds = torch.tensor([_int64(s) for s in seeds], dtype=torch.int64, device=self.device)
            processors.append(SeededSampler(row_seeds, params.temperature, params.top_p, width))
        config = GenerationConfig(
            max_new_tokens=params.max_tokens,
            do_sample=False,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=sorted(self.eos_ids),
        )
        out = self.model.generate(
            **self._prefilled(prompts, enc),
            generation_config=config,
            logits_processor=processors,
            stopping_criteria=StoppingCriteriaList([tracker]),
        )
        prompt_tokens = enc["attention_mask"].sum(dim=1).tolist()
        completions = []
        for row, length in enumerate(tracker.lengths):
            produced = length if length is not None else out.shape[1] - width
            ids = out[row, width : width + produced].tolist()
            raw = self.tokenizer.decode(ids, skip_special_tokens=True)
            text, stop = cut_at_stop(raw, params.stop)
            finished = length is not None
            completions.append(
                Completion(
                    text=text,
                    finish_reason="stop" if finished else "length",
                    prompt_tokens=int(prompt_tokens[row]),
                    completion_tokens=produced,
                    stop=stop,
                )
            )
        return completions
