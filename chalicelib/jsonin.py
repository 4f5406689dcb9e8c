"""JSON from clients: parsed with a nesting limit, so no input can exhaust the stack.

Python's decoder recurses once per level and raises RecursionError (not
ValueError) past ~1,000 levels: every parse of client input goes through here.
"""

from __future__ import annotations

import json
from typing import Any

MAX_JSON_DEPTH = 32  # docs/limits.md; no command or REST body needs more than 3


def load_json(text: str | bytes) -> Any:
    """json.loads, with ValueError for anything nested deeper than MAX_JSON_DEPTH."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"JSON nested more than {MAX_JSON_DEPTH} levels") from None
    if _too_deep(value):
        raise ValueError(f"JSON nested more than {MAX_JSON_DEPTH} levels")
    return value


def _too_deep(value: Any) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: list[Any] = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
