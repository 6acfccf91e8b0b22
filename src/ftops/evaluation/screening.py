"""Training-data screening before upload: would this file teach the model harmful content?

Azure screens training files and fails the job with the harm categories it found; finding out
here costs nothing. What is screened is what the model learns to say: the assistant turns
(SFT) and the preferred outputs (DPO). An assistant turn that answers, without refusing, a user
turn closely resembling one of the shipped safety probes is harmful (an error). One that only
matches a category's lexicon of compliance phrasing is a warning: words like "detonation" or
"launder money" also occur in engine manuals and compliance training, so a person decides
(`--fail-on-warning` makes warnings fail too). A harmful question answered with a refusal is not
harmful: that is exactly the data that teaches a model to refuse.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ftops.dataset.findings import HARM_VOCABULARY, HARMFUL_CONTENT, SCREENING_RULES, Finding
from ftops.dataset.findings_report import FileReport, RuleReport, SafetyScreening
from ftops.errors import UsageError

CONTENT_CATEGORIES = ("violence", "self_harm", "hate", "sexual", "illegal_activity")
PROBE_SIMILARITY = 0.72  # a user turn this close to a harmful probe asks the same thing


@dataclass(frozen=True)
class Flag:
    line: int
    category: str
    reason: str


@dataclass
class Screening:
    path: Path
    examples: int = 0
    screened_turns: int = 0
    refusals: int = 0  # harmful-looking asks answered with a refusal: allowed, counted
    flags: list[Flag] = field(default_factory=list)  # errors: compliance with a harmful request
    warnings: list[Flag] = field(default_factory=list)  # harm vocabulary alone

    def categories(self, warnings: bool = False) -> dict[str, list[int]]:
        found: dict[str, list[int]] = defaultdict(list)
        for flag in self.warnings if warnings else self.flags:
            if flag.line not in found[flag.category]:
                found[flag.category].append(flag.line)
        return dict(sorted(found.items()))

    def summary(self) -> str:
        def listed(categories: dict[str, list[int]]) -> str:
            return "; ".join(
                f"{name} ({len(lines)} example(s): line {', '.join(map(str, lines[:5]))}"
                + (", ..." if len(lines) > 5 else "")
                + ")"
                for name, lines in categories.items()
            )

        lines = []
        if self.flags:
            lines.append(
                f"{self.path}: harmful content the model would learn to produce: "
                f"{listed(self.categories())}; remove or rewrite those examples"
            )
        if self.warnings:
            lines.append(
                f"{self.path}: warning: harm vocabulary in assistant turns, check them: "
                f"{listed(self.categories(warnings=True))}"
            )
        if not lines:
            lines.append(
                f"{self.path}: safety screening: no harmful content in {self.screened_turns} assistant "
                f"turns of {self.examples} examples ({self.refusals} refusal(s) of harmful asks)"
            )
        return "\n".join(lines)

    def added_to(self, report: FileReport, lines_per_rule: int) -> FileReport:
        """The file's validation report with this screening in it: harmful content among its
        errors, harm vocabulary among its warnings (one finding per line and category), so every
        report format holds what decides the exit code."""

        def rule_report(code: str, found: list[Finding]) -> list[RuleReport]:
            if not found:
                return []
            return [RuleReport.of(SCREENING_RULES[code], len(found), found[:lines_per_rule])]

        harmful = [Finding(HARMFUL_CONTENT, f.line, f.reason) for f in self.flags]
        vocabulary = [Finding(HARM_VOCABULARY, f.line, f"{f.category}: {f.reason}") for f in self.warnings]
        return report.model_copy(
            update={
                "errors": [*report.errors, *rule_report(HARMFUL_CONTENT, harmful)],
                "warnings": [*report.warnings, *rule_report(HARM_VOCABULARY, vocabulary)],
                "safety": SafetyScreening(
                    examples=self.examples, screened_turns=self.screened_turns, refusals=self.refusals
                ),
            }
        )


@lru_cache(maxsize=1)
def lexicon() -> dict[str, list[re.Pattern[str]]]:
    raw = json.loads(
        resources.files("ftops.evaluation")
        .joinpath("suites", "harm_lexicon.json")
        .read_text(encoding="utf-8")
    )
    return {name: [re.compile(p, re.IGNORECASE) for p in raw[name]] for name in CONTENT_CATEGORIES}


@lru_cache(maxsize=1)
def _probes() -> tuple[list[str], np.ndarray]:
    from ftops.evaluation.embeddings import embed
    from ftops.evaluation.verdict import builtin_suite

    items = [i for i in builtin_suite().items if i.category in CONTENT_CATEGORIES]
    asks = [next(m.content for m in reversed(i.messages) if m.role == "user") for i in items]
    return [i.category for i in items], embed(asks)


def _learned_turns(example: dict[str, Any]) -> list[tuple[str, str]]:
    """(user turn before it, assistant text) for each text the model is trained to produce."""
    pairs = []
    if isinstance(example.get("preferred_output"), list):  # DPO
        messages = (example.get("input") or {}).get("messages") or []
        ask = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "")
        for message in example["preferred_output"]:
            if isinstance(message.get("content"), str):
                pairs.append((str(ask or ""), message["content"]))
        return pairs
    ask = ""
    for message in example.get("messages") or []:
        content = message.get("content")
        text = content if isinstance(content, str) else ""
        if message.get("role") == "user":
            ask = text
        elif message.get("role") == "assistant" and message.get("weight", 1) != 0 and text:
            pairs.append((ask, text))
    return pairs


def screen(path: Path) -> Screening:
    """Screen one JSONL training file. Lines that are not JSON are skipped: `ftops validate`
    reports them with their own rule."""
    from ftops.evaluation.embeddings import embed
    from ftops.evaluation.graders import refusal_score

    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such training file", fix="check the path") from None
    result = Screening(path)
    turns: list[tuple[int, str, str]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            example = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(example, dict):
            continue
        result.examples += 1
        turns += [(number, ask, answer) for ask, answer in _learned_turns(example)]
    result.screened_turns = len(turns)
    if not turns:
        return result
    categories, probes = _probes()
    asks = embed([ask or "-" for _, ask, _ in turns])
    closest = asks @ probes.T
    for (number, ask, answer), scores in zip(turns, closest, strict=True):
        refused = refusal_score(answer)[0]
        best = int(np.argmax(scores))
        harmful_ask = bool(ask) and float(scores[best]) >= PROBE_SIMILARITY
        if refused:
            result.refusals += int(harmful_ask)
            continue
        for name, patterns in lexicon().items():
            hit = next((p for p in patterns if p.search(answer)), None)
            if hit is not None:
                result.warnings.append(Flag(number, name, f"assistant text matches /{hit.pattern}/"))
        if harmful_ask:
            result.flags.append(
                Flag(
                    number,
                    categories[best],
                    f"answers without refusing a {categories[best]} request (similarity {scores[best]:.2f})",
                )
            )
    return result
