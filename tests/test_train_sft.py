"""SFT through TRL: loss on completion tokens only, LoRA and full fine-tuning, lab memorisation, chat template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from reasonscale.engines.base import SampleRequest
from reasonscale.engines.hf import HFEngine
from reasonscale.identity import model_identity
from reasonscale.lab.splits import split_graphs
from reasonscale.train import train_sft
from reasonscale.train.common import ADAPTER_DIR, INFO_FILE, PLOT_FILE
from reasonscale.train.data import write_jsonl
from reasonscale.types import SamplingParams
from test_train_common import Snapshot, logged, make_config, sft_rows


class FirstBatch(TrainerCallback):
    """The first training batch, as the model sees it."""

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        self.batch = next(iter(train_dataloader))


def labelled_text(batch, tokenizer) -> list[str]:
    """The text of the tokens that carry a label, per row."""
    ids, labels = batch["input_ids"], batch["labels"]
    return [tokenizer.decode(row[lab != -100]) for row, lab in zip(ids, labels)]


def prompt_logits(path: Path, prompts: list[str]) -> torch.Tensor:
    engine = HFEngine(str(path), device="cpu")
    ids = engine.token_ids(prompts)
    with torch.no_grad():
        return torch.stack([engine.model(torch.tensor([row])).logits[0, -1] for row in ids])


@pytest.mark.parametrize("use_lora", [True, False])
def test_sft_trains_saves_and_reloads(tmp_path: Path, tiny_model_dir: Path, use_lora: bool) -> None:
    data = write_jsonl(sft_rows(), tmp_path / "sft.jsonl")
    snapshot, probe = Snapshot(), FirstBatch()
    cfg = make_config("sft", tiny_model_dir, data, tmp_path / "out", use_lora, optim={"max_steps": 6})
    result = train_sft(cfg, progress=False, callbacks=[snapshot, probe])
    assert not snapshot.unchanged() and snapshot.before
    losses = [entry["loss"] for entry in logged(result.path)]
    assert len(losses) == 6 and losses[-1] < losses[0]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(result.path)
    expected = {row["completion"] + "</s>" for row in sft_rows()}  # completion and EOS only, never the prompt
    assert probe.batch["labels"].shape[0] == 4 and set(labelled_text(probe.batch, tokenizer)) <= expected
    info = json.loads((result.path / INFO_FILE).read_text())
    assert info["base"]["identity"] == model_identity(str(tiny_model_dir)) and info["key"] == result.info["key"]
    assert info["data"]["examples"] == 8 and info["final"]["step"] == 6 and (result.path / PLOT_FILE).is_file()
    assert (result.path / ADAPTER_DIR / "adapter_config.json").is_file() == use_lora
    assert info["lora_target_modules"] == (
        ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"] if use_lora else None
    )
    prompts = [row["prompt"] for row in sft_rows()]
    assert not torch.allclose(prompt_logits(result.path, prompts), prompt_logits(tiny_model_dir, prompts))


def test_sft_memorises_lab_examples(tmp_path: Path, tiny_model_dir: Path) -> None:
    graphs = split_graphs("val", 1, 3)
    rows = [{"question": g.question + "\n", "solution": g.solution} for g in graphs]
    data = write_jsonl(rows, tmp_path / "lab.jsonl")
    cfg = make_config(
        "sft",
        tiny_model_dir,
        data,
        tmp_path / "out",
        use_lora=False,
        data={"fields": {"prompt": "question", "completion": "solution"}},
        optim={"learning_rate": 3e-3, "max_steps": 80, "batch_size": 3, "scheduler": "constant"},
        log={"logging_steps": 10},
    )
    result = train_sft(cfg, progress=False)
    engine = HFEngine(str(result.path), device="cpu")
    out = engine.complete([SampleRequest(r["question"], 0) for r in rows], SamplingParams(temperature=0, max_tokens=80))
    assert [c.text for c in out] == [g.solution for g in graphs]


def test_sft_chat_template_trains_on_the_assistant_turn(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = write_jsonl(sft_rows(4), tmp_path / "sft.jsonl")
    probe = FirstBatch()
    cfg = make_config(
        "sft", tiny_model_dir, data, tmp_path / "out", data={"chat_template": True}, lora={"merge": False}
    )
    result = train_sft(cfg, progress=False, callbacks=[probe])
    engine = HFEngine(str(result.path), device="cpu")  # an unmerged adapter loads like any model
    assert engine.tokenizer.chat_template and (result.path / "adapter_config.json").is_file()
    assert set(labelled_text(probe.batch, engine.tokenizer)) <= {f" {r['completion']}\n" for r in sft_rows(4)}
    rendered = engine.render_chat([{"role": "user", "content": "1+4="}])
    assert rendered == "user: 1+4=\nassistant:"
