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


__all__ = ["Engine", "SampleRequest", "build_engine"]
