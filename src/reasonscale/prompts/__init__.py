"""Prompt files shipped with the library (`topologies.yaml`), and loading a named prompt from them or from a
user's file (`path/to/prompts.yaml#name`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

BUILTIN = Path(__file__).with_name("topologies.yaml")


def load_prompt(spec: str) -> dict[str, Any]:
    """The prompt `spec` names: `NAME` in the shipped topologies.yaml, or `FILE.yaml#NAME`."""
    file, _, name = spec.rpartition("#") if "#" in spec else (str(BUILTIN), "#", spec)
    path = Path(file)
    if not path.is_file():
        raise ValueError(f"prompt '{spec}': no such file {path}")
    try:
        prompts = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"prompt '{spec}': {path} is not valid YAML: {error}") from None
    if not isinstance(prompts, dict) or not isinstance(prompts.get(name), dict):
        names = ", ".join(prompts) if isinstance(prompts, dict) else "none"
        raise ValueError(f"prompt '{spec}': {path} has no prompt '{name}' (it has: {names})")
    return dict(prompts[name])
