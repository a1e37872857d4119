"""Content identity: what a cached sample, a stored result or a trained model was produced by.

A model is named by the content of its files, never by its path: a local directory by a SHA-256 over the full
bytes of every file that changes what it computes (config, weights, tokenizer), a hub id by its commit revision,
an in-memory model by its tensors. Hashing a file is cached by (path, size, mtime), so a large checkpoint is read
once, not on every run.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

# Files whose bytes decide what a model directory computes (checkpoints, optimizer state and logs do not).
MODEL_FILE_SUFFIXES = frozenset({".json", ".safetensors", ".bin", ".model", ".txt", ".tiktoken", ".jinja", ".py"})
IGNORED_FILES = frozenset({"trainer_state.json", "training_args.bin", "optimizer.pt", "scheduler.pt"})
_HASH_CHUNK = 8 << 20
_lock = threading.Lock()


def digest(value: Any, length: int = 16) -> str:
    """A short stable hash of any JSON-serialisable value (keys sorted)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:length]


def _hash_cache_file() -> Path:
    root = os.environ.get("REASONSCALE_CACHE") or Path.home() / ".cache" / "reasonscale"
    return Path(root) / "file_hashes.json"


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's full content, remembered by (absolute path, size, mtime) across processes."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    cache_file = _hash_cache_file()
    with _lock:
        cache = _read_json(cache_file)
        if key in cache:
            return cache[key]
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            h.update(chunk)
    value = h.hexdigest()
    with _lock:
        cache = _read_json(cache_file)
        cache[key] = value
        _write_json_atomic(cache_file, cache)
    return value


def _read_json(path: Path) -> dict[str, str]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_json_atomic(path: Path, data: dict[str, str]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)
    except OSError:
        pass  # the cache only saves time; hashing again is always correct


def directory_identity(path: Path) -> str:
    """`name@hash` of a model directory: every model file's relative name and full content."""
    h = hashlib.sha256()
    files = sorted(
        f
        for f in path.rglob("*")
        if f.is_file()
        and f.suffix in MODEL_FILE_SUFFIXES
        and f.name not in IGNORED_FILES
        and ".cache" not in f.relative_to(path).parts
    )
    if not files:
        raise FileNotFoundError(f"no model files in {path}")
    for f in files:
        h.update(str(f.relative_to(path)).encode() + b"\0" + file_sha256(f).encode() + b"\0")
    return f"{path.name}@{h.hexdigest()[:16]}"


def hub_revision(repo_id: str, revision: str | None = None) -> str:
    """The commit hash a hub id (at `revision`, default main) resolves to: from the local hub cache if the model
    is there, else from the hub. Raises when neither can say."""
    from huggingface_hub import snapshot_download

    try:
        local = snapshot_download(repo_id, revision=revision, local_files_only=True)
        return Path(local).name
    except Exception:  # noqa: BLE001 - not cached; ask the hub
        pass
    try:
        from huggingface_hub import HfApi

        sha = HfApi().model_info(repo_id, revision=revision).sha
    except Exception as error:  # noqa: BLE001
        raise ValueError(
            f"cannot resolve the model '{repo_id}': it is not a local directory, not in the local hub cache, and "
            f"the hub did not answer ({type(error).__name__}). Give a local path."
        ) from None
    if not sha:
        raise ValueError(f"the hub gave no commit for '{repo_id}'")
    return sha


def model_identity(name_or_path: str, revision: str | None = None) -> str:
    """The content identity of a model: a local directory by its files' bytes, a hub id by its commit."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return directory_identity(path)
    if path.exists() or name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise FileNotFoundError(f"model path does not exist or is not a directory: {name_or_path}")
    return f"{name_or_path}@{hub_revision(name_or_path, revision)}"


def module_identity(model: Any) -> str:
    """The identity of an in-memory torch model: a hash of its config and every tensor's dtype, shape and bytes."""
    h = hashlib.sha256()
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_json_string"):
        h.update(config.to_json_string(use_diff=False).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(_byte_dtype()).numpy().tobytes())
    return f"module@{h.hexdigest()[:16]}"


def _byte_dtype():
    import torch

    return torch.uint8
