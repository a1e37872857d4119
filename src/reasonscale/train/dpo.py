"""Direct preference optimisation through TRL's DPOTrainer, with the reference model chosen explicitly.

The reference is what the policy starts from: with a fresh LoRA, the base with adapters switched off (no second
copy; when the base is a merged SFT model, that SFT model); when training continues an adapter (`model.adapter`,
e.g. weak-to-strong stage II), a frozen copy of that adapter, which TRL keeps as a second adapter named `ref`;
without LoRA, a frozen copy of the model. `dpo.nll_weight` adds TRL's `sft` loss (RPO: a length-normalised NLL
on the chosen response) against the known fall of the chosen likelihood during DPO on math. Chosen and rejected
log-probabilities are logged (`logps/chosen`, `logps/rejected`) to the loss curve.
"""

from __future__ import annotations

import copy
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
from reasonscale.train.config import DPOConfig
from reasonscale.train.data import build_dataset


def frozen_copy(model):
    reference = copy.deepcopy(model).eval()
    reference.requires_grad_(False)
    return reference


def train_dpo(cfg: DPOConfig, progress: bool = True, callbacks: Sequence = ()) -> TrainResult:
    """Train `cfg.model` on preference pairs (prompt, chosen, rejected) and save it to `cfg.output_dir`."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig as TRLDPOConfig
    from trl import DPOTrainer

    with session(cfg, progress):
        dataset, fingerprint, examples = build_dataset(cfg.data, ["prompt", "chosen", "rejected"])
        job = plan("dpo", cfg, fingerprint, examples)
        if done := job.finished():
            return done
        losses, weights = [cfg.dpo.loss_type], [1.0]
        if cfg.dpo.nll_weight > 0:
            losses, weights = losses + ["sft"], weights + [cfg.dpo.nll_weight]
        args = trainer_args(TRLDPOConfig, job, progress, beta=cfg.dpo.beta, loss_type=losses, loss_weights=weights)
        tokenizer = load_tokenizer(cfg)
        model, peft_config = setup_lora(cfg, load_model(cfg, AutoModelForCausalLM), "CAUSAL_LM")
        if peft_config is not None:
            reference, described = None, "base with adapters off"
        elif isinstance(model, PeftModel):
            reference, described = None, "frozen copy of the starting adapter"
        else:
            reference, described = frozen_copy(model), "frozen copy of the starting model"
        trainer = DPOTrainer(
            model=model,
            ref_model=reference,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=list(callbacks),
        )
        return run(job, trainer, tokenizer, progress, extra={"reference": described})
