"""Graders: each turns (answer, eval item) into pass/fail with a score and a reason.

A grader has a name and a version; both go into the evidence, so a changed grader is visible
in the evidence digest. New graders register in GRADERS.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Grade:
    passed: bool
    score: float
    detail: str = ""


class Grader(Protocol):
    name: str
    version: str

    def grade(self, answer: str, item: dict[str, Any]) -> Grade: ...


def normalize(text: str) -> str:
    """Case, accents, punctuation and spacing folded away."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return " ".join(re.sub(r"[^a-z0-9$%.]+", " ", text).replace(". ", " ").split()).strip(" .")


class Exact:
    name, version = "exact", "1"

    def grade(self, answer: str, item: dict[str, Any]) -> Grade:
        reference = str(item.get("reference", ""))
        ok = answer.strip() == reference.strip()
        return Grade(ok, float(ok), "" if ok else "answer differs from the reference")


class Normalized:
    name, version = "normalized", "1"

    def grade(self, answer: str, item: dict[str, Any]) -> Grade:
        ok = normalize(answer) == normalize(str(item.get("reference", "")))
        return Grade(ok, float(ok), "" if ok else "answer differs from the reference after normalizing")


class Regex:
    """The answer must match `pattern` (a Python regex, searched case-insensitively)."""

    name, version = "regex", "1"

    def grade(self, answer: str, item: dict[str, Any]) -> Grade:
        pattern = item.get("pattern")
        if not isinstance(pattern, str):
            return Grade(False, 0.0, "the eval item has no 'pattern'")
        ok = re.search(pattern, answer, flags=re.IGNORECASE) is not None
        return Grade(ok, float(ok), "" if ok else f"no match for /{pattern}/")


GRADERS: dict[str, Grader] = {g.name: g for g in (Exact(), Normalized(), Regex())}
