"""Trainers: SFT, DPO and reward models as thin wrappers over TRL + PEFT, and the process reward model trainer
(TRL has none), all with one config and one output convention."""

from reasonscale.train.common import TrainResult
from reasonscale.train.config import (
    CONFIGS,
    DPOConfig,
    PRMConfig,
    RewardConfig,
    SFTConfig,
    TrainConfig,
    load_train_config,
)
from reasonscale.train.dpo import train_dpo
from reasonscale.train.prm import train_prm_run
from reasonscale.train.reward import train_reward
from reasonscale.train.sft import train_sft

TRAINERS = {"sft": train_sft, "dpo": train_dpo, "reward": train_reward, "prm": train_prm_run}

__all__ = [
    "CONFIGS",
    "DPOConfig",
    "PRMConfig",
    "RewardConfig",
    "SFTConfig",
    "TRAINERS",
    "TrainConfig",
    "TrainResult",
    "load_train_config",
    "train_dpo",
    "train_prm_run",
    "train_reward",
    "train_sft",
]
