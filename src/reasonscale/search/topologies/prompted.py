"""Prompt-driven operations of the topologies for instruct models: filling a prompt file's templates, rendering a
prompt in the chat template when the run's prompts are, and bounded parses of the model's replies (a vote's chosen
number, a numbered list of sub-questions). Model output is only ever matched by bounded regular expressions."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from reasonscale.engines.base import Engine
from reasonscale.prompts import load_prompt
from reasonscale.tasks.base import Task
from reasonscale.types import Problem

VOTE_READ = 200  # characters of a vote read for its number
LIST_READ = 4000  # characters of a split reply read for its list
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_BEST = re.compile(r"best choice\W{0,8}(?:is\W{0,8})?(\d{1,3})(?!\d)", re.IGNORECASE)
_NUMBER = re.compile(r"(?<!\d)(\d{1,3})(?!\d)")
_ITEM = re.compile(r"\s{0,8}\(?(\d{1,2})[.):]\s+(\S.*)")


def fill(template: str, **fields: str) -> str:
    """The template with each `{name}` of `fields` replaced in one pass (the values are not read again, and any
    other braces, e.g. `\\boxed{}`, stay as written)."""
    return _PLACEHOLDER.sub(lambda m: fields.get(m.group(1), m.group(0)), template)


def prompt_entry(spec: str | Mapping[str, Any], needs: Sequence[str], where: str) -> dict[str, Any]:
    """A prompt given by name (`NAME` or `FILE.yaml#NAME`) or inline, with the keys `needs` checked."""
    entry = load_prompt(spec) if isinstance(spec, str) else dict(spec)
    missing = [k for k in needs if k not in entry]
    if missing:
        raise ValueError(f"{where}: the prompt lacks {', '.join(missing)}")
    return entry


def uses_chat(task: Task, problems: Sequence[Problem], prompts: Sequence[str]) -> bool:
    """Whether the run wrapped its prompts in the model's chat template (`model.chat_template`): its prompt of a
    problem is not the task's plain prompt."""
    return bool(problems) and prompts[0] != task.format_prompt(problems[0])


def render(engine: Engine, text: str, chat: bool) -> str:
    """`text` as a user turn of the chat template (and the assistant's turn opened), or as it is."""
    return engine.render_chat([{"role": "user", "content": text}]) if chat else text  # type: ignore[attr-defined]


def parse_vote(text: str, choices: int) -> int | None:
    """The 0-based choice a vote names in its first 200 characters ("The best choice is 2", else its first
    number of at most three digits); None when it names none of 1..choices."""
    head = text[:VOTE_READ]
    match = _BEST.search(head) or _NUMBER.search(head)
    if match is None:
        return None
    number = int(match.group(1))
    return number - 1 if 1 <= number <= choices else None


def parse_list(text: str, limit: int, max_chars: int) -> list[str]:
    """The items of the numbered list in a reply's first 4000 characters ("1. ...", "2) ...", "(3) ..."), in
    order, without repeats: at most `limit`, each cut to `max_chars` characters."""
    items: list[str] = []
    for line in text[:LIST_READ].splitlines():
        match = _ITEM.match(line)
        if match is None:
            continue
        item = match.group(2).strip()[:max_chars]
        if item not in items:
            items.append(item)
        if len(items) == limit:
            break
    return items
