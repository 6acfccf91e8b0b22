"""Eval sets as JSONL: one item per line with the prompt `messages` and what to grade against
(`reference` answer, regex `pattern`, JSON `schema`, `forbidden` text), plus `category` and `tags`.

Every line is checked when the set is loaded, so a typo stops the gate before the first request
rather than after a paid run; the error names the file, the line and the key.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ftops.errors import UsageError


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant"]
    content: str


class EvalItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    messages: Annotated[list[Message], Field(min_length=1)]
    reference: str | None = None  # the expected answer (exact, normalized, similarity, judge)
    pattern: str | None = None  # a regex the answer must match (regex)
    schema_: dict[str, Any] | None = Field(None, alias="schema")  # JSON Schema the answer must satisfy
    forbidden: str | None = None  # a regex the answer must not match (a leaked canary, PII)
    category: str = "general"
    tags: list[str] = []
    max_tokens: Annotated[int, Field(ge=1, le=32_768)] = 256
    # The whole line, as an Azure (RFT) grader's `{{item.*}}` sees it; filled by `parse(fields=True)`.
    fields: dict[str, Any] = {}

    @field_validator("pattern", "forbidden")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regex ({exc})") from None
        return value

    @field_validator("schema_")
    @classmethod
    def _schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                Draft202012Validator.check_schema(value)
            except SchemaError as exc:
                raise ValueError(f"not a valid JSON Schema ({exc.message})") from None
        return value

    def messages_json(self) -> list[dict[str, str]]:
        return [m.model_dump() for m in self.messages]


@dataclass(frozen=True)
class EvalSet:
    name: str
    digest: str  # sha256 of the bytes the items came from: what evidence records
    items: list[EvalItem]

    def only(self, categories: set[str] | None) -> EvalSet:
        if not categories:
            return self
        return EvalSet(self.name, self.digest, [i for i in self.items if i.category in categories])


def parse(data: bytes, source: str, fields: bool = False) -> EvalSet:
    """`fields`: the set is RFT-shaped data graded by an Azure grader, whose lines carry fields of
    their own (`{{item.answer}}`); they are kept in `fields` instead of being refused."""
    items = []
    for number, line in enumerate(data.decode("utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(
                f"{source}:{number}: not valid JSON ({exc.msg})", fix="one JSON object per line"
            ) from None
        if fields and isinstance(raw, dict):
            known = {f.alias or n for n, f in EvalItem.model_fields.items()} - {"fields"}
            raw = {**{k: v for k, v in raw.items() if k in known}, "fields": raw}
        try:
            item = EvalItem.model_validate(raw)
        except ValidationError as exc:
            error = exc.errors()[0]
            key = ".".join(str(p) for p in error["loc"]) or "item"
            raise UsageError(
                f"{source}:{number}: {key}: {error['msg']}",
                fix='write {"messages": [{"role": "user", "content": "..."}], "reference": "..."}',
            ) from None
        if item.id is None:
            item = item.model_copy(update={"id": f"{Path(source).stem}-{number}"})
        items.append(item)
    if not items:
        raise UsageError(f"{source}: the eval set is empty", fix="add at least one item")
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise UsageError(f"{source}: item id '{item.id}' appears twice", fix="give every item its own id")
        seen.add(str(item.id))
    return EvalSet(Path(source).name, "sha256:" + hashlib.sha256(data).hexdigest(), items)


def load(path: Path, fields: bool = False) -> EvalSet:
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise UsageError(f"{path}: no such eval set", fix="fix the path in the environment's gates") from None
    return parse(data, str(path), fields)
