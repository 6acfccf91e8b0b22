"""Eval sets as JSONL: one item per line with the prompt `messages` and what to grade against
(`reference` answer, regex `pattern`, ...), plus optional `category` and `tags`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ftops.errors import UsageError


def load(path: Path) -> list[dict[str, Any]]:
    items = []
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such eval set", fix="fix the path in the environment's gates") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(
                f"{path}:{number}: not valid JSON ({exc.msg})", fix="one JSON object per line"
            ) from None
        messages = item.get("messages") if isinstance(item, dict) else None
        if not isinstance(messages, list) or not messages:
            raise UsageError(
                f'{path}:{number}: an eval item needs a non-empty "messages" list',
                fix='write {"messages": [...], "reference": "..."}',
            )
        items.append(item)
    if not items:
        raise UsageError(f"{path}: the eval set is empty", fix="add at least one item")
    return items
