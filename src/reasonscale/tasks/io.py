"""Reading task data: JSONL files with errors that name `file:line`, and the shared data folder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """A problem with a data file; the message names the file, and the line where there is one."""


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSONL file."""
    path = Path(path)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read: {error.strerror}") from None
    with handle:
        for number, raw in enumerate(handle, 1):
            if raw.strip():
                yield number, _decode(raw, f"{path}:{number}")


def _decode(raw: bytes, where: str) -> dict[str, Any]:
    try:
        row = json.loads(raw.rstrip(b"\r\n"))
    except UnicodeDecodeError:
        raise DataError(f"{where}: not valid UTF-8") from None
    except json.JSONDecodeError as error:
        raise DataError(f"{where}: not valid JSON: {error.msg} (column {error.pos + 1})") from None
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    return row


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """The objects of a JSONL file, one per non-blank line."""
    return (row for _, row in iter_jsonl(path))


def require(row: dict[str, Any], key: str, where: str, allow_null: bool = False) -> Any:
    """row[key], or a DataError naming `where` (file:line) and the missing (or null) field."""
    if key not in row:
        raise DataError(f"{where}: missing field '{key}'")
    if row[key] is None and not allow_null:
        raise DataError(f"{where}: field '{key}' is null")
    return row[key]


def find_data_dir(name: str) -> Path:
    """`shared/data/<name>` in the nearest folder above the working directory or above this package."""
    starts = [Path.cwd().resolve(), Path(__file__).resolve().parent]
    for start in starts:
        for folder in (start, *start.parents):
            candidate = folder / "shared" / "data" / name
            if candidate.is_dir():
                return candidate
    raise DataError(f"no shared/data/{name} folder above {starts[0]} or {starts[1]}: set task.path to the JSONL file")
