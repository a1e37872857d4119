"""Supervised fine-tuning through TRL's SFTTrainer: prompt + completion, the loss on completion tokens only."""

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
from reasonscale.train.config import SFTConfig
from reasonscale.train.data import build_dataset


def train_sft(cfg: SFTConfig, progress: bool = True, callbacks: Sequence = ()) -> TrainResult:
    """Fine-tune `cfg.model` on `cfg.data` (prompt, completion) and save it to `cfg.output_dir`.

    Plain prompts are tokenized as text (BOS added as the tokenizer does, EOS appended to the completion); with
    `data.chat_template` they become a user and an assistant turn. Reuses an identical finished model; resumes.
    """
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    with session(cfg, progress):
        dataset, fingerprint, examples = build_dataset(cfg.data, ["prompt", "completion"])
        job = plan("sft", cfg, fingerprint, examples)
        if done := job.finished():
            return done
        args = trainer_args(TRLSFTConfig, job, progress, completion_only_loss=True)  # checked before models load
        tokenizer = load_tokenizer(cfg)
        model, peft_config = setup_lora(cfg, load_model(cfg, AutoModelForCausalLM), "CAUSAL_LM")
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=list(callbacks),
        )
        return run(job, trainer, tokenizer, progress)
