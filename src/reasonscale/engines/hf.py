"""In-process transformers engine (CPU or GPU): the embedded default backend.

It batches requests across prompts and samples and decodes them with the model's KV cache (left padding). Sampling
adds Gumbel noise from a counter-based hash of (sample seed, step, token) and takes the argmax, so each sample is
reproducible on its own, whatever batch it lands in, and greedy decoding picks the sample. Rows that stop leave
the batch, and a bounded prefix cache keeps the keys and values of finished sequences, so a prompt that extends
one (the next step of a step-wise search, a continuation) only encodes its new tokens.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache
from transformers.cache_utils import DynamicLayer

from reasonscale.engines.base import Engine, SampleRequest, cut_at_stop, sample_seed
from reasonscale.engines.prefix_cache import KV, PrefixCache
from reasonscale.identity import model_identity, module_identity
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


def seeded_choice(
    logits: torch.Tensor, seeds: torch.Tensor, step: int, temperature: float, top_p: float
) -> torch.Tensor:
    """Each row's next token: the argmax when greedy, else a temperature / top-p sample by the Gumbel-max trick,
    with noise that is a pure function of (the row's seed, step, token), so a row samples alike in any batch."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop_sorted = cumulative - sorted_logits.softmax(dim=-1) >= top_p  # keeps the top token
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    gumbel = counter_uniform(seeds, step, logits.shape[-1]).log_().neg_().log_().neg_()
    return logits.add_(gumbel.to(logits.dtype)).argmax(dim=-1)


@dataclass
class Rows:
    """Sequences decoded together, left-padded to one width: each row's request index, whether it is still
    generating, the cache, the attention mask and the logits of its next token."""

    which: torch.Tensor
    live: torch.Tensor
    cache: DynamicCache
    mask: torch.Tensor
    logits: torch.Tensor

    def select(self, keep: torch.Tensor) -> None:
        """Keep (or repeat) the rows that `keep` (a mask or indices) picks."""
        index = keep.nonzero().flatten() if keep.dtype == torch.bool else keep
        self.which, self.live, self.mask, self.logits = (
            t[index] for t in (self.which, self.live, self.mask, self.logits)
        )
        select_rows(self.cache, index)


def select_rows(cache: DynamicCache, index: torch.Tensor) -> None:
    """Keep (or repeat) the cache rows `index` picks; index_select is several times faster than the layers' own."""
    for layer in cache.layers:
        if type(layer) is DynamicLayer:
            layer.keys, layer.values = layer.keys.index_select(0, index), layer.values.index_select(0, index)
        else:
            layer.batch_select_indices(index)


def context_length(config) -> int | None:
    """The longest sequence (prompt + completion) the model was built for, when its config says."""
    text = config.get_text_config()
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(text, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


class HFEngine(Engine):
    """Runs a transformers causal LM in this process.

    `prefix_cache_bytes` bounds the prefix cache: the keys and values of finished sequences, kept on the model's
    device across calls (0 turns it off; models whose cache is not a plain per-layer one never use it).
    """

    def __init__(
        self,
        path: str,
        device: str = "auto",
        dtype: str = "auto",
        max_batch_size: int = 64,
        model: torch.nn.Module | None = None,
        tokenizer=None,
        prefix_cache_bytes: int = 512 << 20,
        revision: str | None = None,
    ):
        # A model built in memory is named by its tensors; one loaded from a path by its files (or hub commit).
        weights = model_identity(path, revision) if model is None else module_identity(model)
        self.device = resolve_device(device)
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(path, revision=revision)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if model is None:
            model = AutoModelForCausalLM.from_pretrained(
                path, revision=revision, dtype=resolve_dtype(dtype, self.device)
            )
        self.model = model.to(self.device).eval()
        self.max_batch_size = max_batch_size
        self.model_id = f"{weights}:{str(self.model.dtype).removeprefix('torch.')}"
        self.num_parameters = self.model.num_parameters(exclude_embeddings=True)
        self.context_length = context_length(self.model.config)
        eos = self.model.generation_config.eos_token_id or self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        self._eos = torch.tensor(sorted(self.eos_ids), dtype=torch.long, device=self.device)
        plain_layers = all(type(layer) is DynamicLayer for layer in self._new_cache().layers)
        self.prefix_cache = PrefixCache(prefix_cache_bytes if plain_layers else 0)
        accepts = inspect.signature(self.model.forward).parameters
        self._last_logits = {"logits_to_keep": 1} if "logits_to_keep" in accepts else {}
        # transformers 5 names the cache argument `cache` (`past_key_values` is deprecated, removed in 5.40)
        self._cache_arg = "cache" if "cache" in accepts else "past_key_values"
        self._stop_tables: dict[tuple[str, ...], torch.Tensor] = {}
        self.encoded_tokens = 0  # prompt tokens run through the model (each distinct prompt once, cached part not)

    @property
    def preferred_batch(self) -> int:
        return self.max_batch_size

    @property
    def caches_prefixes(self) -> bool:
        return self.prefix_cache.max_bytes > 0

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

    def token_ids(self, prompts: Sequence[str]) -> list[list[int]]:
        """Each prompt's token ids; a prompt that already starts with the BOS text gets no second BOS."""
        bos = self.tokenizer.bos_token
        ids: dict[str, list[int]] = {}
        for special in (True, False):
            group = [p for p in prompts if (not (bos and p.startswith(bos))) == special]
            if group:
                ids.update(zip(group, self.tokenizer(group, add_special_tokens=special)["input_ids"]))
        return [ids[p] for p in prompts]

    @torch.inference_mode()
    def _complete_batch(self, prompts: list[str], seeds: list[int], params: SamplingParams) -> list[Completion]:
        unique = {p: k for k, p in enumerate(dict.fromkeys(prompts))}  # rows sharing a prompt share its encoding
        ids = dict(zip(unique, self.token_ids(list(unique))))
        rows = self._prefill(list(ids.values()), [unique[p] for p in prompts])
        made, lengths = self._decode(rows, [ids[p] for p in prompts], seeds, params)
        produced = [length if length is not None else params.max_tokens for length in lengths]
        raws = self.tokenizer.batch_decode([t[:n] for t, n in zip(made, produced)], skip_special_tokens=True)
        completions = []
        for prompt, raw, length, n in zip(prompts, raws, lengths, produced):
            text, stop = cut_at_stop(raw, params.stop)
            completions.append(
                Completion(
                    text=text,
                    finish_reason="stop" if length is not None else "length",
                    prompt_tokens=len(ids[prompt]),
                    completion_tokens=n,
                    stop=stop,
                )
            )
        return completions

    def _new_cache(self, layers: KV | None = None) -> DynamicCache:
        return DynamicCache(layers, config=self.model.config)

    def _prefill(self, prompts: list[list[int]], rows: list[int]) -> Rows:
        """Rows for `prompts[rows[k]]`, with the logits of their next token: each prompt is encoded once, left-padded
        to one width. The columns that every prompt has in the prefix cache are copied from it, the rest are run."""
        found = [self.prefix_cache.longest_prefix(p[:-1]) for p in prompts]  # at least the last token is run
        missing = [p[:-1] for p, (n, _) in zip(prompts, found) if n < len(p) - 1]
        if self.prefix_cache.max_bytes and 0 < len(missing) < len(prompts):
            # cache the prompts the cache lacks first, so that the others need not encode their cached columns
            self._save(self._prefill(missing, list(range(len(missing)))), missing)
            found = [self.prefix_cache.longest_prefix(p[:-1]) for p in prompts]
        width = max(map(len, prompts))
        start = min(width - len(p) + n for p, (n, _) in zip(prompts, found))
        run = width - start  # the columns to run, each prompt's last `run` tokens (or all of it, left-padded)
        ids = torch.tensor([[self.tokenizer.pad_token_id] * (run - len(p)) + p[-run:] for p in prompts])
        lengths = torch.tensor([len(p) for p in prompts])
        mask = (torch.arange(width) >= width - lengths[:, None]).long().to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = self._new_cache(self._cached_columns(prompts, found, start) if start else None)
        self.encoded_tokens += int(mask[:, start:].sum())
        out = self.model(
            input_ids=ids.to(self.device),
            attention_mask=mask,
            position_ids=positions[:, start:],
            use_cache=True,
            **{self._cache_arg: cache},
            **self._last_logits,
        )
        index = torch.tensor(rows, device=self.device)
        select_rows(cache, index)  # the model filled `cache` in place
        which = torch.arange(len(rows), device=self.device)
        live = torch.ones(len(rows), dtype=torch.bool, device=self.device)
        return Rows(which, live, cache, mask[index], out.logits[index, -1].float())

    def _cached_columns(self, prompts: list[list[int]], found: list[tuple[int, KV | None]], start: int) -> KV:
        """Per layer, keys and values of the batch's first `start` columns, copied from the prefix cache."""
        width = max(map(len, prompts))
        like = next(kv for _, kv in found if kv)
        layers = [
            (
                k.new_zeros(len(prompts), k.shape[0], start, k.shape[2]),
                v.new_zeros(len(prompts), v.shape[0], start, v.shape[2]),
            )
            for k, v in like
        ]
        for row, (prompt, (_, kv)) in enumerate(zip(prompts, found)):
            take = start - (width - len(prompt))  # this row's tokens among the first `start` columns
            if take <= 0:
                continue
            for (keys, values), (k, v) in zip(layers, kv):
                keys[row, :, start - take :] = k[:, :take]
                values[row, :, start - take :] = v[:, :take]
        return layers

    def _decode(
        self, rows: Rows, prompts: list[list[int]], seeds: list[int], params: SamplingParams
    ) -> tuple[list[list[int]], list[int | None]]:
        """Each row's generated tokens, and its length where it stopped (None: it reached max_tokens).

        Rows that stopped leave the batch once they are a quarter of it, so the others do not carry them for long
        (each leaving costs a copy of the cache); their sequences go to the prefix cache.
        """
        tokens = torch.full((len(prompts), params.max_tokens), self.tokenizer.pad_token_id, device=self.device)
        lengths: list[int | None] = [None] * len(prompts)
        row_seeds = torch.tensor([_int64(s) for s in seeds], dtype=torch.int64, device=self.device)
        stops = tuple(s for s in params.stop if s)
        for step in range(params.max_tokens):
            chosen = seeded_choice(rows.logits, row_seeds[rows.which], step, params.temperature, params.top_p)
            tokens[rows.which, step] = chosen
            ended = self._ended(rows, chosen, tokens, step, stops)
            for row in rows.which[ended].tolist():
                lengths[row] = step + 1
            rows.live &= ~ended
            if step + 1 == params.max_tokens or not rows.live.any():
                break
            if 4 * int((~rows.live).sum()) >= len(rows.live):
                stopped = ~rows.live
                self._save(rows, self._run_tokens(rows.which[stopped], prompts, tokens, lengths), stopped)
                chosen = chosen[rows.live]
                rows.select(rows.live)
            self._advance(rows, chosen)
        self._save(rows, self._run_tokens(rows.which, prompts, tokens, lengths))
        return tokens.tolist(), lengths

    @staticmethod
    def _run_tokens(
        which: torch.Tensor, prompts: list[list[int]], tokens: torch.Tensor, lengths: list[int | None]
    ) -> list[list[int]]:
        """The tokens the model has run for requests `which`: the prompt and the output but its last token."""
        outputs = tokens[which].tolist()
        return [prompts[k] + out[: (lengths[k] or len(out)) - 1] for k, out in zip(which.tolist(), outputs)]

    def _advance(self, rows: Rows, tokens: torch.Tensor) -> None:
        """Run the rows' latest tokens through the model: the next logits, and the cache one column longer."""
        rows.mask = torch.cat([rows.mask, rows.mask.new_ones(len(tokens), 1)], dim=1)
        positions = rows.mask.sum(dim=1, keepdim=True) - 1
        out = self.model(
            input_ids=tokens[:, None],
            attention_mask=rows.mask,
            position_ids=positions,
            use_cache=True,
            **{self._cache_arg: rows.cache},
        )
        rows.logits = out.logits[:, -1].float()

    def _ended(
        self, rows: Rows, chosen: torch.Tensor, tokens: torch.Tensor, step: int, stops: tuple[str, ...]
    ) -> torch.Tensor:
        """Which live rows end with their latest token (`chosen`, now in `tokens[:, step]`): an end-of-sequence
        token, or one that completes a stop string. Only rows whose token may complete a stop decode their tail."""
        ended = torch.isin(chosen, self._eos) & rows.live
        if not stops:
            return ended
        table = self._stop_table(stops, rows.logits.shape[-1])
        maybe = (table[chosen] & rows.live & ~ended).nonzero().flatten()
        if not len(maybe):
            return ended
        tail = max(map(len, stops)) + 2
        windows = tokens[rows.which[maybe], max(0, step + 1 - tail) : step + 1].tolist()
        for row, text in zip(maybe.tolist(), self.tokenizer.batch_decode(windows, skip_special_tokens=True)):
            ended[row] = any(s in text for s in stops)
        return ended

    def _stop_table(self, stops: tuple[str, ...], vocab: int) -> torch.Tensor:
        """Per token id, whether it may complete one of `stops`: its text holds a stop's last character, or it has
        no whole text of its own (a special token, part of a character, an id the tokenizer lacks)."""
        if stops not in self._stop_tables:
            if len(self._stop_tables) >= 16:
                self._stop_tables.clear()
            last = {s[-1] for s in stops}
            known = min(vocab, len(self.tokenizer))
            texts = self.tokenizer.batch_decode([[i] for i in range(known)], skip_special_tokens=True)
            flags = [not t or "\ufffd" in t or any(c in t for c in last) for t in texts] + [True] * (vocab - known)
            self._stop_tables[stops] = torch.tensor(flags, device=self.device)
        return self._stop_tables[stops]

    def _save(self, rows: Rows, sequences: list[list[int]], which: torch.Tensor | None = None) -> None:
        """Copy rows' keys and values to the prefix cache, keyed by the tokens run for them: `sequences` has one
        entry per row of the batch, or per row that the mask `which` selects."""
        if not self.prefix_cache.max_bytes:
            return
        batch_rows = torch.arange(len(rows.which), device=self.device) if which is None else which.nonzero().flatten()
        pads = (rows.mask[batch_rows] == 0).sum(dim=1).tolist()
        for row, pad, ids in zip(batch_rows.tolist(), pads, sequences):
            key = tuple(ids)
            if key in self.prefix_cache:
                continue
            columns = slice(pad, pad + len(ids))
            kv = [
                (layer.keys[row, :, columns].clone(), layer.values[row, :, columns].clone())
                for layer in rows.cache.layers
            ]
            self.prefix_cache.add(key, kv)
