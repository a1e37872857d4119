"""Trainers: SFT, DPO and reward models as thin wrappers over TRL + PEFT (one config, one output convention),
and the process reward model trainer (TRL has none)."""

from reasonscale.train.common import TrainResult
from reasonscale.train.config import CONFIGS, DPOConfig, RewardConfig, SFTConfig, TrainConfig, load_train_config
from reasonscale.train.dpo import train_dpo
from reasonscale.train.reward import train_reward
from reasonscale.train.sft import train_sft

TRAINERS = {"sft": train_sft, "dpo": train_dpo, "reward": train_reward}

__all__ = [
    "CONFIGS",
    "DPOConfig",
    "RewardConfig",
    "SFTConfig",
    "TRAINERS",
    "TrainConfig",
    "TrainResult",
    "load_train_config",
    "train_dpo",
    "train_reward",
    "train_sft",
]
