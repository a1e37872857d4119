"""DPO through TRL: the reference model in each setting, the RPO/NLL switch, logged log-probs, held-out margin."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from reasonscale.engines.hf import HFEngine
from reasonscale.train import train_dpo, train_sft
from reasonscale.train.common import ADAPTER_DIR
from reasonscale.train.data import write_jsonl
from test_train_common import Snapshot, logged, make_config, preference_rows


def margin(path: Path, rows: list[dict[str, str]]) -> float:
    """Mean log p(chosen | prompt) - log p(rejected | prompt), EOS included, as DPO scores them."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()

    def logp(prompt: str, response: str) -> float:
        start = len(tokenizer(prompt)["input_ids"])
        ids = torch.tensor([tokenizer(prompt + response + tokenizer.eos_token)["input_ids"]])
        with torch.no_grad():
            logits = model(ids).logits[0, start - 1 : -1].log_softmax(-1)
        return logits.gather(1, ids[0, start:, None]).sum().item()

    return sum(logp(r["prompt"], r["chosen"]) - logp(r["prompt"], r["rejected"]) for r in rows) / len(rows)


@pytest.mark.parametrize("use_lora", [True, False])
def test_dpo_trains_and_raises_the_held_out_margin(tmp_path: Path, tiny_model_dir: Path, use_lora: bool) -> None:
    data = write_jsonl(preference_rows(16, seed=0), tmp_path / "pairs.jsonl")
    snapshot = Snapshot()
    cfg = make_config("dpo", tiny_model_dir, data, tmp_path / "out", use_lora, optim={"max_steps": 6})
    result = train_dpo(cfg, progress=False, callbacks=[snapshot])
    assert not snapshot.unchanged() and snapshot.before
    log = logged(result.path)
    # At the first step the policy is its reference: the base with adapters off, or a frozen copy.
    assert log[0]["rewards/chosen"] == 0 and log[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert result.info["reference"] == ("base with adapters off" if use_lora else "frozen copy of the starting model")
    assert log[-1]["loss"] < log[0]["loss"] and log[-1]["logps/chosen"] > log[0]["logps/chosen"]
    assert all("logps/rejected" in entry for entry in log)
    held_out = preference_rows(8, seed=1)
    assert margin(result.path, held_out) > margin(tiny_model_dir, held_out) + 0.5
    engine = HFEngine(str(result.path), device="cpu")
    assert engine.model_id != HFEngine(str(tiny_model_dir), device="cpu").model_id


def test_dpo_continuing_an_sft_adapter_uses_it_as_reference(tmp_path: Path, tiny_model_dir: Path) -> None:
    rows = preference_rows(8, seed=2)
    sft_data = write_jsonl([{"prompt": r["prompt"], "completion": "yes"} for r in rows], tmp_path / "sft.jsonl")
    sft = train_sft(make_config("sft", tiny_model_dir, sft_data, tmp_path / "sft"), progress=False)
    assert margin(sft.path, rows) > margin(tiny_model_dir, rows) + 1  # the SFT adapter moved the policy
    data = write_jsonl(rows, tmp_path / "pairs.jsonl")
    cfg = make_config(
        "dpo",
        tiny_model_dir,
        data,
        tmp_path / "dpo",
        model={"adapter": str(sft.path / ADAPTER_DIR)},
        dpo={"nll_weight": 1.0},
        optim={"max_steps": 2},
    )
    result = train_dpo(cfg, progress=False)
    first = logged(result.path)[0]
    assert result.info["reference"] == "frozen copy of the starting adapter"
    assert first["rewards/chosen"] == 0 and first["rewards/rejected"] == 0  # reference = the SFT model, not the base
    # RPO: the loss adds the chosen response's mean token NLL to DPO's log 2 at the start.
    nll = -first["logps/chosen"] / 4  # per token of "yes" + EOS
    assert first["loss"] == pytest.approx(math.log(2) + nll, rel=1e-3)
    assert result.info["base"]["adapter_identity"] and result.info["settings"]["dpo"]["nll_weight"] == 1.0
