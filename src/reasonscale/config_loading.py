"""Loading a config: one YAML file, dotted `--set` overrides, and one clear error naming the place of a bad key."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from reasonscale.config import ConfigError, RunConfig


def _closest(key: str, model: type[BaseModel] | None) -> str:
    if model is None:
        return ""
    match = difflib.get_close_matches(key, list(model.model_fields), n=1, cutoff=0.5)
    return f"; did you mean '{match[0]}'?" if match else f"; valid keys: {', '.join(model.model_fields)}"


def _section_at(model: type[BaseModel], path: tuple[Any, ...], data: Any) -> type[BaseModel] | None:
    """The config class that holds the key at `path` in `data` (for suggestions)."""
    current: Any = model
    for part in path:
        data = _child(data, part)
        if not isinstance(part, int):
            field = current.model_fields.get(part)
            current = None if field is None else _model_in(field.annotation)
            if current is None:
                return None
        if isinstance(data, dict) and hasattr(current, "section_for"):
            current = current.section_for(data)
    return current


def _child(data: Any, part: Any) -> Any:
    try:
        return data[part]
    except (KeyError, IndexError, TypeError):
        return None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The config class inside an annotation (list[X], X | None, Annotated[X, ...]...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for m in map(_model_in, get_args(annotation)) if m is not None), None)


def describe_errors(error: ValidationError, model: type[BaseModel], source: str, data: Any = None) -> str:
    lines = []
    for item in error.errors():
        loc = tuple(item["loc"])
        dotted = ".".join(str(p) for p in loc)
        if item["type"] == "extra_forbidden":
            hint = _closest(str(loc[-1]), _section_at(model, loc[:-1], data))
            lines.append(f"{source}: unknown key '{dotted}'{hint}")
        elif not dotted:
            lines.append(f"{source}: {item['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"{source}: '{dotted}': {item['msg'].removeprefix('Value error, ')}")
    return "\n".join(lines)


def parse_override(text: str) -> tuple[list[str], Any]:
    """'search.n=16' -> (['search', 'n'], 16); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.path=value")
    key, value = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(value)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each `key.path=value` in `data`; a path through a missing list item or into a scalar is an error."""
    for text in overrides:
        path, value = parse_override(text)
        node: Any = data
        for depth, part in enumerate(path):
            where = ".".join(path[: depth + 1])
            last = depth == len(path) - 1
            if isinstance(node, list):
                if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
                    raise ConfigError(f"override '{text}': '{where}' is not an item of a list of {len(node)}")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise ConfigError(f"override '{text}': '{'.'.join(path[:depth])}' is a value, not a section")
    return data


def validate(model: type[BaseModel], data: dict[str, Any], source: str):
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ConfigError(describe_errors(error, model, source, data)) from None


def load_config(path: str | Path, overrides: list[str] | None = None, model: type[BaseModel] = RunConfig):
    """Read a YAML config, apply `key.path=value` overrides, and validate it (before any model loads)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    return validate(model, apply_overrides(data, overrides or []), str(path))
