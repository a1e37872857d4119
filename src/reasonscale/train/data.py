"""Training data: JSONL records read with their file:line, renamed to TRL's columns, fingerprinted by content."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from reasonscale.identity import digest
from reasonscale.tasks.io import iter_jsonl
from reasonscale.train.config import DataSettings

Record = dict[str, Any]


def read_records(data: DataSettings, required: list[str]) -> list[Record]:
    """Every line of the data files as {field: value} for the `required` fields (our names, not the file's).

    A line that is not a JSON object or lacks a field is an error naming file:line; so is a set with no lines.
    """
    names = {field: getattr(data.fields, field) for field in required}
    records: list[Record] = []
    for path in data.paths:
        if not path.is_file():
            raise FileNotFoundError(f"data file not found: {path}")
        for number, item in iter_jsonl(path):
            records.append(_record(item, names, f"{path}:{number}"))
            if data.limit is not None and len(records) >= data.limit:
                return records
    if not records:
        raise ValueError(f"no training examples in {', '.join(map(str, data.paths))}")
    return records


def _record(item: dict[str, Any], names: dict[str, str], where: str) -> Record:
    missing = [column for column in names.values() if column not in item]
    if missing:
        raise ValueError(f"{where}: missing field {', '.join(repr(m) for m in missing)} (has: {', '.join(item)})")
    wrong = [column for field, column in names.items() if field != "label" and not isinstance(item[column], str)]
    if wrong:
        raise ValueError(f"{where}: field {', '.join(repr(w) for w in wrong)} must be a string")
    if "label" in names and not isinstance(item[names["label"]], (bool, int, float)):
        raise ValueError(f"{where}: field '{names['label']}' must be a number or true/false")
    return {field: item[column] for field, column in names.items()}


def fingerprint(records: list[Record]) -> str:
    """A short hash of the records' content (not of the file names)."""
    return digest(records)


def pairs_from_labels(records: list[Record]) -> list[Record]:
    """Preference pairs from labelled responses: every good response of a prompt against every bad one.

    A label above 0.5 (1, true) marks a good response; prompts with only good or only bad responses give no pairs.
    """
    groups: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for r in records:
        groups[r["prompt"]][0 if r["label"] > 0.5 else 1].append(r["response"])
    pairs = [
        {"prompt": prompt, "chosen": good, "rejected": bad}
        for prompt, (goods, bads) in groups.items()
        for good in goods
        for bad in bads
    ]
    if not pairs:
        raise ValueError("the labelled data has no prompt with both a good and a bad response: no pairs to train on")
    return pairs


def as_chat(records: list[Record]) -> list[Record]:
    """Prompt as a user turn, each response field as an assistant turn (TRL's conversational format)."""
    out = []
    for r in records:
        turns = {k: [{"role": "assistant", "content": v}] for k, v in r.items() if k != "prompt"}
        out.append({"prompt": [{"role": "user", "content": r["prompt"]}], **turns})
    return out


def build_dataset(data: DataSettings, required: list[str], labelled: bool = False) -> tuple[Any, str, int]:
    """The `datasets.Dataset` a TRL trainer takes, the data fingerprint and the number of examples."""
    from datasets import Dataset

    records = read_records(data, required)
    data_print = fingerprint(records)
    if labelled:
        records = pairs_from_labels(records)
    rows = as_chat(records) if data.chat_template else records
    return Dataset.from_list(rows), data_print, len(rows)


def write_jsonl(rows: list[Record], path: str | Path) -> Path:
    """Write records as JSONL (for tests, benchmarks and pipelines that build data)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
