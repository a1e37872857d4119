"""Ray engine: data-parallel replicas of another engine (hf or vllm), each a Ray actor.

Requests are ordered by prompt length, cut into chunks of `chunk_size` and handed to whichever replica is free;
completions come back in request order. Every sample keeps its own seed (`sample_seed`), so the results equal the
single-process engine's whichever replica ran them. Ray starts locally unless it is already initialised or an
address names an existing cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reasonscale.config import ModelConfig
from reasonscale.engines.base import Engine, SampleRequest
from reasonscale.types import Completion, SamplingParams


class Replica:
    """One engine inside a Ray actor, built from its ModelConfig in the actor's process."""

    def __init__(self, cfg: dict[str, Any]):
        from reasonscale.engines import build_engine

        self.engine = build_engine(ModelConfig(**cfg))

    def identity(self) -> tuple[str, int, bool]:
        return self.engine.model_id, self.engine.num_parameters, self.engine.caches_prefixes

    def complete(self, requests: list[SampleRequest], params: SamplingParams) -> list[Completion]:
        return self.engine.complete(requests, params)

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        return self.engine.render_chat(messages)


class RayEngine(Engine):
    """Fans requests out to `replicas` copies of the engine `replica_cfg` describes."""

    def __init__(
        self,
        replica_cfg: ModelConfig,
        replicas: int = 2,
        address: str | None = None,
        cpus_per_replica: float = 1.0,
        gpus_per_replica: float | None = None,
        chunk_size: int = 64,
    ):
        """`gpus_per_replica` None: see `default_gpus`."""
        import ray
        from ray.util import ActorPool

        if not ray.is_initialized():
            ray.init(**({"address": address} if address else {"include_dashboard": False}))
        if gpus_per_replica is None:
            gpus_per_replica = default_gpus(replica_cfg, ray.cluster_resources())
        check_resources(ray.available_resources(), replicas, cpus_per_replica, gpus_per_replica)
        actor = ray.remote(Replica).options(num_cpus=cpus_per_replica, num_gpus=gpus_per_replica)
        self.actors = [actor.remote(replica_cfg.model_dump()) for _ in range(replicas)]
        try:
            identities = ray.get([a.identity.remote() for a in self.actors])
        except ray.exceptions.RayError as error:
            self.close()
            raise RuntimeError(f"a '{replica_cfg.engine}' replica failed to start: {error}") from None
        self.model_id, self.num_parameters, self.caches_prefixes = identities[0]
        self.chunk_size = chunk_size
        self.pool = ActorPool(self.actors)

    @property
    def preferred_batch(self) -> int:
        return self.chunk_size * len(self.actors)  # one chunk per replica

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> RayEngine:
        return cls(
            cfg.model_copy(update={"engine": cfg.replica_engine}),
            replicas=cfg.replicas,
            address=cfg.ray_address,
            cpus_per_replica=cfg.cpus_per_replica,
            gpus_per_replica=cfg.gpus_per_replica,
            chunk_size=cfg.max_batch_size,
        )

    def complete(self, requests: Sequence[SampleRequest], params: SamplingParams) -> list[Completion]:
        order = sorted(range(len(requests)), key=lambda k: len(requests[k].prompt))
        chunks = [order[i : i + self.chunk_size] for i in range(0, len(order), self.chunk_size)]
        outputs = self.pool.map(
            lambda actor, chunk: actor.complete.remote([requests[k] for k in chunk], params), chunks
        )
        results: list[Completion | None] = [None] * len(requests)
        for chunk, made in zip(chunks, outputs):
            for k, completion in zip(chunk, made):
                results[k] = completion
        return results  # type: ignore[return-value]

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        import ray

        return ray.get(self.actors[0].render_chat.remote(messages))

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []


def check_resources(free: dict[str, float], replicas: int, cpus: float, gpus: float) -> None:
    """Fail at once, rather than wait forever, when the cluster's free CPUs or GPUs cannot hold all the replicas."""
    for name, each in (("CPU", cpus), ("GPU", gpus)):
        if replicas * each > free.get(name, 0.0):
            raise RuntimeError(
                f"{replicas} replicas need {replicas * each:g} {name}s but the Ray cluster has "
                f"{free.get(name, 0.0):g} free; lower model.replicas or model.{name.lower()}s_per_replica"
            )


def default_gpus(replica_cfg: ModelConfig, cluster: dict[str, float]) -> float:
    """GPUs per replica when the config gives none: vLLM's tensor-parallel size on a cluster that has GPUs, else 0
    (hf replicas, or vLLM replicas of its CPU build on a cluster without GPUs)."""
    has_gpus = cluster.get("GPU", 0.0) > 0
    return float(replica_cfg.tensor_parallel_size) if replica_cfg.engine == "vllm" and has_gpus else 0.0
