"""Model identity is the content of the weights, never the path or a prefix of the files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from reasonscale.config import ModelConfig
from reasonscale.engines import engine_identity
from reasonscale.engines.hf import HFEngine
from reasonscale.identity import model_identity, module_identity


@pytest.fixture(autouse=True)
def _private_hash_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REASONSCALE_CACHE", str(tmp_path / "cache"))


def _change_last_byte_of_weights(directory: Path) -> None:
    """Change one weight near the end of the file (past the first MiB of a >1 MiB file, if it is one)."""
    file = directory / "model.safetensors"
    tensors = load_file(file)
    name = sorted(tensors)[-1]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[-1] += 1.0
    stat = file.stat()
    save_file(tensors, file, metadata={"format": "pt"})
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime: only the size+content may tell


def test_identity_follows_full_weight_content_not_path(tiny_model_dir: Path, tmp_path: Path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    assert model_identity(str(copy)).split("@")[1] == model_identity(str(tiny_model_dir)).split("@")[1]
    before = model_identity(str(copy))
    os.environ["REASONSCALE_CACHE"] = str(tmp_path / "fresh-cache")  # size and mtime unchanged: bypass the memo
    _change_last_byte_of_weights(copy)
    assert model_identity(str(copy)) != before


def test_hash_cache_is_keyed_by_size_and_mtime(tiny_model_dir: Path, tmp_path: Path):
    copy = tmp_path / "m"
    shutil.copytree(tiny_model_dir, copy)
    first = model_identity(str(copy))
    tensors = load_file(copy / "model.safetensors")
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1
    save_file(tensors, copy / "model.safetensors", metadata={"format": "pt"})  # new mtime
    assert model_identity(str(copy)) != first


def test_missing_local_path_is_a_clear_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model_identity(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model_identity("./runs/some/model")


def test_in_memory_models_are_named_by_their_tensors(tiny_model_dir: Path):
    from transformers import AutoModelForCausalLM

    a = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    b = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert module_identity(a) == module_identity(b)
    with torch.no_grad():
        next(b.parameters()).view(-1)[-1] += 1e-3
    assert module_identity(a) != module_identity(b)


def test_engine_identity_includes_dtype_and_matches_the_engine(tiny_model_dir: Path):
    fp32 = ModelConfig(path=str(tiny_model_dir), device="cpu", dtype="float32")
    bf16 = fp32.model_copy(update={"dtype": "bfloat16"})
    assert engine_identity(fp32) != engine_identity(bf16)
    engines = [HFEngine(str(tiny_model_dir), device="cpu", dtype=d) for d in ("float32", "bfloat16")]
    assert engines[0].model_id != engines[1].model_id
    assert engine_identity(fp32) == f"hf:{engines[0].model_id}"


def test_openai_identity_is_name_plus_user_revision():
    a = ModelConfig(path="m", engine="openai", base_url="http://127.0.0.1:1/v1")
    b = a.model_copy(update={"revision": "v2"})
    assert engine_identity(a) != engine_identity(b)
