"""Engines: one protocol, several backends, built from a ModelConfig."""

from __future__ import annotations

from reasonscale.config import ModelConfig
from reasonscale.engines.base import Engine, SampleRequest


def build_engine(cfg: ModelConfig) -> Engine:
    """The engine the config names. Backends import lazily so optional extras stay optional."""
    if cfg.engine == "hf":
        from reasonscale.engines.hf import HFEngine

        return HFEngine(
            cfg.path,
            device=cfg.device,
            dtype=cfg.dtype,
            max_batch_size=cfg.max_batch_size,
            prefix_cache_bytes=cfg.prefix_cache_mb << 20,
            revision=cfg.revision,
        )
    if cfg.engine == "vllm":
        from reasonscale.engines.vllm import VLLMEngine

        return VLLMEngine.from_config(cfg)
    if cfg.engine == "openai":
        from reasonscale.engines.openai import OpenAIEngine

        return OpenAIEngine.from_config(cfg)
    if cfg.engine == "ray":
        from reasonscale.engines.ray import RayEngine

        return RayEngine.from_config(cfg)
    raise ValueError(f"unknown engine '{cfg.engine}'")


def engine_identity(cfg: ModelConfig) -> str:
    """What the engine `cfg` describes computes, known without loading it: the model's content identity (files or
    hub commit; for a server its name and the user's revision string), the backend and the dtype it samples in.
    Part of every run's identity; throughput settings are not."""
    if cfg.engine == "openai":
        return f"openai-{cfg.api}:{cfg.served_model_name or cfg.path}@{cfg.revision or ''}"
    from reasonscale.identity import model_identity

    weights = model_identity(cfg.path, cfg.revision)
    if cfg.engine == "ray" and cfg.replica_engine == "hf" or cfg.engine == "hf":
        from reasonscale.engines.hf import resolve_device, resolve_dtype

        dtype = str(resolve_dtype(cfg.dtype, resolve_device(cfg.device))).removeprefix("torch.")
        return f"hf:{weights}:{dtype}"
    return f"vllm:{weights}:{cfg.dtype}"


__all__ = ["Engine", "SampleRequest", "build_engine", "engine_identity"]
