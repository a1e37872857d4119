"""Scalar reward models through TRL's RewardTrainer (Bradley-Terry loss on chosen vs rejected).

Data is prompt/chosen/rejected, or prompt/response/label (`reward.format: labels`), from which every good
response of a prompt is paired with every bad one. The model is saved with `reasonscale_reward.json`, so
`build_verifier("orm", task, path)` scores with it as it was trained.
"""

from __future__ import annotations

from collections.abc import Sequence

from reasonscale.train.common import (
    TrainResult,
    load_model,
    load_tokenizer,
    plan,
    run,
    session,
    setup_lora,
    trainer_args,
)
from reasonscale.train.config import RewardConfig
from reasonscale.train.data import build_dataset
from reasonscale.verifiers.reward import RewardFormat


def train_reward(cfg: RewardConfig, progress: bool = True, callbacks: Sequence = ()) -> TrainResult:
    """Train a one-output reward head (and LoRA or all weights) on `cfg.data` and save it to `cfg.output_dir`."""
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig as TRLRewardConfig
    from trl import RewardTrainer

    with session(cfg, progress):
        labelled = cfg.reward.format == "labels"
        fields = ["prompt", "response", "label"] if labelled else ["prompt", "chosen", "rejected"]
        dataset, fingerprint, examples = build_dataset(cfg.data, fields, labelled=labelled)
        job = plan("reward", cfg, fingerprint, examples)
        if done := job.finished():
            return done
        args = trainer_args(  # checked before models load
            TRLRewardConfig, job, progress, center_rewards_coefficient=cfg.reward.center_rewards_coefficient
        )
        tokenizer = load_tokenizer(cfg)
        base = load_model(cfg, AutoModelForSequenceClassification, num_labels=1)
        base.config.pad_token_id = tokenizer.pad_token_id
        model, peft_config = setup_lora(cfg, base, "SEQ_CLS")
        trainer = RewardTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=list(callbacks),
        )
        fmt = RewardFormat(chat_template=cfg.data.chat_template)
        return run(job, trainer, tokenizer, progress, save=fmt.save)
