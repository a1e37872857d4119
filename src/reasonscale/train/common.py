"""What every trainer shares: the run's identity and directories, model and LoRA setup, TRL arguments, and the
finish (merge, save, loss curve, how-it-was-trained JSON, atomic publish).

A run trains in `<output_dir>.work-<key>/` (checkpoints there; a killed run resumes from the last one) and, once
done, assembles the model in `final/` and renames it to `output_dir`, so a finished model is only ever replaced by
another finished one. `key` digests the base model's content, the data fingerprint and the settings; a run whose
key matches the `reasonscale_train.json` in `output_dir` is skipped.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from reasonscale.identity import digest, model_identity
from reasonscale.train.config import TrainConfig

INFO_FILE = "reasonscale_train.json"
LOSS_FILE = "loss.jsonl"
PLOT_FILE = "loss.png"
ADAPTER_DIR = "adapter"
CHECKPOINTS = "checkpoints"
# Logged values that count from the start of a process, so a resumed run logs other ones (TRL does not restore them).
RUN_LOCAL_METRICS = frozenset({"num_tokens"})


@dataclass
class TrainResult:
    path: Path
    info: dict[str, Any]  # the saved reasonscale_train.json
    trained: bool  # False when an identical finished model was reused


@dataclass
class Job:
    """A run resolved before anything loads: what it is (key) and where it trains and lands."""

    method: str
    cfg: TrainConfig
    base_identity: str
    adapter_identity: str | None
    data_fingerprint: str
    examples: int
    precision: str

    @property
    def settings(self) -> dict[str, Any]:
        """Every setting that decides the weights besides the base's and the data's content (paths, log and
        output_dir do not)."""
        where = {"model": {"path", "revision", "adapter"}, "data": {"path"}, "log": True, "output_dir": True}
        return {"method": self.method, "precision": self.precision, **self.cfg.model_dump(exclude=where)}

    @property
    def key(self) -> str:
        parts = [self.base_identity, self.adapter_identity, self.data_fingerprint, self.settings]
        return digest(parts)

    @property
    def output(self) -> Path:
        return Path(self.cfg.output_dir)

    @property
    def work(self) -> Path:
        return self.output.with_name(f"{self.output.name}.work-{self.key}")

    def finished(self) -> TrainResult | None:
        """The identical finished model, if `output_dir` holds one."""
        info = read_info(self.output)
        return TrainResult(self.output, info, trained=False) if info and info.get("key") == self.key else None


@contextmanager
def session(cfg: TrainConfig, progress: bool) -> Iterator[None]:
    """The run's process settings: torch CPU threads (`log.cpu_threads`) and, without progress, no bars or reports."""
    before = torch.get_num_threads()
    if cfg.log.cpu_threads:
        torch.set_num_threads(cfg.log.cpu_threads)
    try:
        with quiet(not progress):
            yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def quiet(enabled: bool) -> Iterator[None]:
    """Silence the progress bars and load reports of datasets and transformers while `enabled`."""
    if not enabled:
        yield
        return
    import datasets
    from transformers.utils import logging as hf_logging

    bars, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    data_bars = datasets.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        if data_bars:
            datasets.enable_progress_bars()


def read_info(path: str | Path) -> dict[str, Any] | None:
    file = Path(path) / INFO_FILE
    return json.loads(file.read_text()) if file.is_file() else None


def resolve_precision(precision: str) -> str:
    if precision != "auto":
        return precision
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"


def plan(method: str, cfg: TrainConfig, data_fingerprint: str, examples: int) -> Job:
    """The job, after checking that the base model (and adapter) exist: one clear error otherwise."""
    try:
        base = model_identity(cfg.model.path, cfg.model.revision)
        adapter = model_identity(cfg.model.adapter) if cfg.model.adapter else None
    except (FileNotFoundError, ValueError) as error:
        raise FileNotFoundError(f"model: {error}") from None
    output = Path(cfg.output_dir)
    if output.is_file() or (output.is_dir() and any(output.iterdir()) and read_info(output) is None):
        raise ValueError(f"output_dir {output} holds something other than a trained model; it is never replaced")
    return Job(method, cfg, base, adapter, data_fingerprint, examples, resolve_precision(cfg.optim.precision))


def base_path(cfg: TrainConfig) -> str:
    """The base as given, made absolute when local (an unmerged adapter records where its base is)."""
    path = Path(cfg.model.path).expanduser()
    return str(path.resolve()) if path.is_dir() else cfg.model.path


def load_tokenizer(cfg: TrainConfig):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        base_path(cfg), revision=cfg.model.revision, trust_remote_code=cfg.model.trust_remote_code
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if cfg.data.chat_template and not tokenizer.chat_template:
        raise ValueError(f"data.chat_template is on but the model {cfg.model.path} has no chat template")
    return tokenizer


def load_model(cfg: TrainConfig, auto_class, **kwargs: Any) -> torch.nn.Module:
    """The base in float32 (mixed precision comes from the trainer), seeded first so a new head is reproducible."""
    from transformers import set_seed

    set_seed(cfg.optim.seed)
    return auto_class.from_pretrained(
        base_path(cfg),
        revision=cfg.model.revision,
        trust_remote_code=cfg.model.trust_remote_code,
        dtype=torch.float32,
        **kwargs,
    )


def linear_module_names(model: torch.nn.Module) -> set[str]:
    from transformers.pytorch_utils import Conv1D

    return {name for name, module in model.named_modules() if isinstance(module, (torch.nn.Linear, Conv1D))}


def check_targets(model: torch.nn.Module, targets: Sequence[str]) -> None:
    """Every LoRA target names a linear module of the model (PEFT matches full names or dotted suffixes)."""
    names = linear_module_names(model)
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        short = sorted({n.rsplit(".", 1)[-1] for n in names})
        raise ValueError(
            f"lora.target_modules: {', '.join(missing)} not in {type(model).__name__}; "
            f"its linear modules are: {', '.join(short)}"
        )


def setup_lora(cfg: TrainConfig, model: torch.nn.Module, task_type: str):
    """(model, peft_config for the trainer): a new LoRA config, a loaded adapter to train on, or full fine-tuning.

    Starting from `model.adapter`, the adapter keeps training (LoRA on) or is merged into the base first (LoRA off).
    """
    from peft import LoraConfig, PeftModel

    if cfg.model.adapter:
        model = PeftModel.from_pretrained(model, cfg.model.adapter, is_trainable=cfg.lora.enabled)
        return (model, None) if cfg.lora.enabled else (model.merge_and_unload(), None)
    if not cfg.lora.enabled:
        return model, None
    if cfg.lora.target_modules:
        check_targets(model, cfg.lora.target_modules)
    lora = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules or "all-linear",
        task_type=task_type,
    )
    return model, lora


def trainer_args(args_class, job: Job, progress: bool, **method: Any):
    """TRL's config for this job: our settings, checkpoints in the work directory, and the method's own."""
    o, log = job.cfg.optim, job.cfg.log
    return args_class(
        output_dir=str(job.work / CHECKPOINTS),
        learning_rate=o.learning_rate,
        weight_decay=o.weight_decay,
        warmup_steps=o.warmup,
        lr_scheduler_type=o.scheduler,
        num_train_epochs=o.epochs,
        max_steps=o.max_steps or -1,
        per_device_train_batch_size=o.batch_size,
        gradient_accumulation_steps=o.grad_accum,
        max_grad_norm=o.max_grad_norm,
        max_length=o.max_length,
        bf16=job.precision == "bf16",
        seed=o.seed,
        data_seed=o.seed,
        logging_steps=log.logging_steps,
        save_strategy="steps",
        save_steps=log.save_steps,
        save_total_limit=log.save_total_limit,
        report_to=log.report_to,
        disable_tqdm=not progress,
        **{checkpointing_field(args_class): o.gradient_checkpointing},
        **method,
    )


def checkpointing_field(args_class) -> str:
    """transformers 5 renamed gradient_checkpointing to activation_checkpointing (the old name warns)."""
    from dataclasses import fields

    names = {f.name for f in fields(args_class)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def last_checkpoint(job: Job) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    folder = job.work / CHECKPOINTS
    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def run(job: Job, trainer, tokenizer, progress: bool, extra: dict[str, Any] | None = None, save=None) -> TrainResult:
    """Train (resuming from the work directory's last checkpoint), then save and publish the model.

    `save(directory)` writes what a loader needs besides the weights (e.g. a reward model's format).
    """
    if not progress:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    trainer.train(resume_from_checkpoint=last_checkpoint(job))
    if trainer.accelerator.is_main_process:  # under `accelerate launch`, one process saves
        history = [entry for entry in trainer.state.log_history if "loss" in entry]
        model = trainer.accelerator.unwrap_model(trainer.model)
        finish(job, model, tokenizer, history, trainer.state.global_step, extra or {}, save)
    trainer.accelerator.wait_for_everyone()
    return TrainResult(job.output, read_info(job.output) or {}, trained=True)


def finish(job: Job, model, tokenizer, history: list[dict], steps: int, extra: dict[str, Any], save=None) -> None:
    """Assemble the trained model in the work directory, publish it at `output_dir`, drop the checkpoints.

    Trainers with their own loop (the PRM trainer) call this too, with `history` as [{step, loss, ...}].
    """
    final = job.work / "final"
    shutil.rmtree(final, ignore_errors=True)
    targets = save_model(model, final, job.cfg.lora.merge)
    tokenizer.save_pretrained(final)
    if save is not None:
        save(final)
    write_curve(history, final)
    if (logs := job.work / CHECKPOINTS / "runs").is_dir():  # TensorBoard's default log directory
        shutil.move(logs, final / "runs")
    info = build_info(job, history, steps, targets, extra)
    (final / INFO_FILE).write_text(json.dumps(info, indent=2))
    publish(final, job.output)
    shutil.rmtree(job.work, ignore_errors=True)


def save_model(model, directory: Path, merge: bool) -> list[str] | None:
    """Save the weights; a LoRA model as its adapter, merged into the weights with the adapter in `adapter/`
    (`merge`), or as the adapter alone. Returns the adapted module names (None without LoRA)."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        model.save_pretrained(directory)
        return None
    targets = sorted({name.rsplit(".", 1)[-1] for name in model.peft_config["default"].target_modules})
    model.save_pretrained(directory / ADAPTER_DIR if merge else directory, selected_adapters=["default"])
    if merge:
        model.merge_and_unload().save_pretrained(directory)
    return targets


def build_info(job: Job, history: list[dict], steps: int, targets: list[str] | None, extra: dict) -> dict[str, Any]:
    """How the model was trained: base, data, settings, final losses and metrics (deterministic for a seed)."""
    import peft
    import transformers
    import trl

    return {
        "method": job.method,
        "key": job.key,
        "base": {"path": job.cfg.model.path, "identity": job.base_identity, "adapter": job.cfg.model.adapter,
                 "adapter_identity": job.adapter_identity},
        "data": {"paths": [str(p) for p in job.cfg.data.paths], "fingerprint": job.data_fingerprint,
                 "examples": job.examples},
        "settings": job.settings,
        "lora_target_modules": targets,
        "steps": steps,
        "final": {k: v for k, v in (history[-1] if history else {}).items() if k not in RUN_LOCAL_METRICS},
        "versions": {"trl": trl.__version__, "peft": peft.__version__, "transformers": transformers.__version__,
                     "torch": torch.__version__},
        **extra,
    }


def write_curve(history: list[dict], directory: Path) -> None:
    """The logged losses and metrics as JSONL, and a PNG of the loss (and of chosen/rejected log-probs if any)."""
    from matplotlib.figure import Figure

    (directory / LOSS_FILE).write_text("".join(json.dumps(entry) + "\n" for entry in history))
    if not history:
        return
    extras = [k for k in ("logps/chosen", "logps/rejected", "accuracy", "margin") if k in history[-1]]
    figure = Figure(figsize=(10 if extras else 5, 3.5))
    axes = figure.subplots(1, 2 if extras else 1, squeeze=False)[0]
    steps = [entry["step"] for entry in history]
    axes[0].plot(steps, [entry["loss"] for entry in history])
    axes[0].set(xlabel="step", ylabel="loss", title="training loss")
    for key in extras:
        axes[1].plot(steps, [entry.get(key, float("nan")) for entry in history], label=key)
    if extras:
        axes[1].set(xlabel="step")
        axes[1].legend()
    figure.tight_layout()
    figure.savefig(directory / PLOT_FILE, dpi=100)


def publish(final: Path, output: Path) -> None:
    """Put the finished model at `output`, replacing an older one only now that the new one is complete."""
    output.parent.mkdir(parents=True, exist_ok=True)
    old = output.with_name(output.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if output.exists():
        output.rename(old)
    final.rename(output)
    shutil.rmtree(old, ignore_errors=True)
