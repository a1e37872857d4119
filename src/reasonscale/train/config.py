"""One config for every trainer (SFT, DPO, reward model, PRM): pydantic sections, unknown keys are errors.

A run's identity (what decides the trained weights) is the base model's content, the data's fingerprint and every
setting here except the `log` section and `output_dir`, which only change how the run is watched and where the
result lands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from reasonscale.config import Section
from reasonscale.config_loading import load_config


class BaseModelSettings(Section):
    path: str = Field(description="local directory or Hugging Face id of the model to fine-tune")
    revision: str | None = Field(None, description="hub id: revision to load (default main, resolved to its commit)")
    adapter: str | None = Field(
        None,
        description="a LoRA adapter directory to start from (e.g. an SFT adapter): trained further when lora is on, "
        "merged into the base first when it is off",
    )
    trust_remote_code: bool = False


class FieldNames(Section):
    """Column names in the JSONL files, for each field a method reads."""

    prompt: str = "prompt"
    completion: str = "completion"
    chosen: str = "chosen"
    rejected: str = "rejected"
    response: str = "response"
    label: str = "label"


class DataSettings(Section):
    path: str | list[str] = Field(description="JSONL file(s), read in order")
    fields: FieldNames = Field(default_factory=FieldNames)
    chat_template: bool = Field(
        False, description="wrap prompt and responses as a user and an assistant turn in the model's chat template"
    )
    limit: int | None = Field(None, ge=1, description="use only the first examples")

    @property
    def paths(self) -> list[Path]:
        return [Path(p) for p in ([self.path] if isinstance(self.path, str) else self.path)]


class LoraSettings(Section):
    enabled: bool = True
    r: int = Field(16, ge=1)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | None = Field(
        None, description="module names to adapt (default: every linear layer of the blocks, per architecture)"
    )
    merge: bool = Field(True, description="save the adapter merged into the weights (the adapter is kept beside)")


class OptimSettings(Section):
    learning_rate: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup: float = Field(0.0, ge=0, description="warm-up steps (a value below 1: fraction of all steps)")
    scheduler: str = Field("linear", description="transformers lr_scheduler_type: linear, cosine, constant...")
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="optimizer steps (overrides epochs)")
    batch_size: int = Field(8, ge=1, description="examples (or pairs) per device per step")
    grad_accum: int = Field(1, ge=1)
    max_grad_norm: float = Field(1.0, gt=0)
    max_length: int | None = Field(1024, ge=1, description="tokens per sequence (SFT, DPO truncate; reward drops)")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 on a GPU that has it")
    gradient_checkpointing: bool = False
    seed: int = 0


class LogSettings(Section):
    """How a run is watched, checkpointed and scheduled; not part of its identity."""

    logging_steps: int = Field(10, ge=1)
    save_steps: int = Field(100, ge=1, description="checkpoint every this many steps (resume point)")
    save_total_limit: int | None = Field(2, ge=1, description="checkpoints kept")
    report_to: list[str] = Field(default_factory=lambda: ["none"], description="TRL/transformers: tensorboard, wandb")
    cpu_threads: int | None = Field(
        None, ge=1, description="torch CPU threads while training (tiny models train fastest on 1; default: torch's)"
    )


class TrainConfig(Section):
    model: BaseModelSettings
    data: DataSettings
    lora: LoraSettings = Field(default_factory=LoraSettings)
    optim: OptimSettings = Field(default_factory=OptimSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    output_dir: str = Field(description="the finished model's directory")


class SFTConfig(TrainConfig):
    """Supervised fine-tuning on prompt + completion; the loss covers completion tokens only."""


# TRL 1.16's DPO losses (it checks the name only at the first step, so we check it here); `sft` is `nll_weight`.
DPOLoss = Literal[
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot", "aot_unpaired",
    "apo_zero", "apo_down", "discopop", "sigmoid_norm",
]


class DPOSettings(Section):
    beta: float = Field(0.1, gt=0)
    loss_type: DPOLoss = Field("sigmoid", description="TRL's DPO loss")
    nll_weight: float = Field(
        0.0, ge=0, description="RPO: weight of a length-normalised NLL term on chosen responses (0: off)"
    )


class DPOConfig(TrainConfig):
    """Direct preference optimisation on prompt, chosen, rejected."""

    dpo: DPOSettings = Field(default_factory=DPOSettings)


class RewardSettings(Section):
    format: Literal["pairs", "labels"] = Field(
        "pairs", description="pairs: prompt/chosen/rejected; labels: prompt/response/label (pairs formed per prompt)"
    )
    center_rewards_coefficient: float | None = Field(None, ge=0, description="pull rewards toward zero mean")


class RewardConfig(TrainConfig):
    """A scalar reward model (Bradley-Terry on pairs), loadable as an `orm` verifier."""

    reward: RewardSettings = Field(default_factory=RewardSettings)


class PRMSettings(Section):
    """The PRM's loss and step format (`verifiers.prm.PRMFormat`, saved with the model)."""

    mode: Literal["head", "token"] = Field("head", description="value head at step ends, or good/bad token logits")
    target: Literal["soft", "hard"] = Field("soft", description="train on the soft (fraction) or hard (any) labels")
    rank_weight: float = Field(0.0, ge=0, description="weight of a pairwise ranking loss between steps of a problem")
    solution_rank_weight: float = Field(
        0.0, ge=0, description="weight of a pairwise ranking loss between the last-step scores of a problem's "
        "solutions (the score best-of-N selects by), ordered by their last labels"
    )
    batching: Literal["random", "problem"] = Field(
        "random", description="random: examples shuffled alone; problem: each batch holds whole problems (all their "
        "examples, cut at batch_size), so the ranking losses compare a problem's solutions"
    )
    step_separator: str | None = Field(None, description="what follows each step (default: newline, or ' TAG\\n')")
    step_tag: str | None = Field(None, description="the token in the separator where the score is read")
    good_token: str = Field("+", description="token mode: the token whose logit means a good step")
    bad_token: str = Field("-", description="token mode: the token whose logit means a bad step")
    device: str = Field("auto", description="where the loop trains: auto (CUDA when available), cpu, cuda, cuda:1...")

    @model_validator(mode="after")
    def _format(self) -> PRMSettings:
        self.format()  # a bad separator/tag pair is an error here, before anything loads
        return self

    def format(self):
        from reasonscale.verifiers.prm import PRMFormat

        return PRMFormat(self.mode, self.step_separator, self.step_tag, self.good_token, self.bad_token)


class PRMConfig(TrainConfig):
    """A process reward model on PRM examples (JSONL as `data.prm_labels.save_examples` writes), loadable as a
    `prm` verifier."""

    prm: PRMSettings = Field(default_factory=PRMSettings)

    @model_validator(mode="after")
    def _loadable(self) -> PRMConfig:
        if self.data.chat_template:
            raise ValueError("data.chat_template: PRM prompts are read as written (the verifier reads them so)")
        if self.lora.enabled and not self.lora.merge:
            raise ValueError("lora.merge: a PRM is saved merged (the prm verifier loads full weights)")
        return self


CONFIGS: dict[str, type[TrainConfig]] = {
    "sft": SFTConfig, "dpo": DPOConfig, "reward": RewardConfig, "prm": PRMConfig,
}


def load_train_config(method: str, path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read and validate a training config for `method` (sft, dpo, reward or prm)."""
    if method not in CONFIGS:
        raise ValueError(f"unknown training method '{method}': use one of {', '.join(CONFIGS)}")
    return load_config(path, overrides, model=CONFIGS[method])
