"""The validation report: one pydantic model, rendered as text, JSON or GitHub markdown."""

from __future__ import annotations

import json

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel
from rich.console import Console

from ftops.dataset.findings import HARM_VOCABULARY, HARMFUL_CONTENT, Finding, Rule, Severity


class FindingOut(BaseModel):
    line: int
    message: str


class RuleReport(BaseModel):
    code: str
    severity: Severity
    count: int
    fix: str
    first: list[FindingOut]

    @classmethod
    def of(cls, rule: Rule, count: int, first: list[Finding]) -> RuleReport:
        return cls(
            code=rule.code,
            severity=rule.severity,
            count=count,
            fix=rule.fix,
            first=[FindingOut(line=f.line, message=f.message) for f in first],
        )


class TokenStats(BaseModel):
    total: int  # tokens in the file, one epoch
    min: int
    median: float
    p95: int
    max: int

    @classmethod
    def of(cls, lengths: npt.NDArray[np.int64], total: int) -> TokenStats:
        if not len(lengths):
            return cls(total=total, min=0, median=0, p95=0, max=0)
        return cls(
            total=total,
            min=int(lengths.min()),
            median=float(np.median(lengths)),
            p95=int(np.percentile(lengths, 95, method="higher")),
            max=int(lengths.max()),
        )


class SafetyScreening(BaseModel):
    """What `--safety` screened; what it found is among the errors and warnings, as rules."""

    examples: int
    screened_turns: int  # assistant turns the model would learn to say
    refusals: int  # harmful-looking asks answered with a refusal: allowed, counted


class FileReport(BaseModel):
    path: str
    role: str
    bytes: int
    method: str
    method_detected: bool
    base_model: str
    encoding: str
    examples: int
    image_examples: int
    tokens: TokenStats
    epochs: int
    epochs_auto: bool
    billed_tokens: int
    price_per_million: float | None
    estimated_cost_usd: float | None
    errors: list[RuleReport]
    warnings: list[RuleReport]
    safety: SafetyScreening | None = None  # None: not screened (no --safety)

    @property
    def valid(self) -> bool:
        return not self.errors

    def passes(self, fail_on_warning: bool = False) -> bool:
        """The verdict the exit code follows: no errors, and no warnings with --fail-on-warning."""
        return self.valid and not (fail_on_warning and self.warnings)

    def finding_lines(self) -> list[str]:
        """One line per kept finding: where, what, and the fix."""
        out = []
        for rule in [*self.errors, *self.warnings]:
            for f in rule.first:
                where = f"{self.path}:{f.line}" if f.line else self.path
                out.append(f"{where}: {rule.severity.value} [{rule.code}] {f.message}; fix: {rule.fix}")
            if rule.count > len(rule.first):
                out.append(f"{self.path}: ... {rule.count - len(rule.first)} more [{rule.code}]")
        return out


def _method_label(r: FileReport) -> str:
    return f"{r.method} (detected)" if r.method_detected else r.method


def _epochs_label(r: FileReport) -> str:
    if r.role != "training":
        return "n/a (not trained on)"
    return f"{r.epochs} (auto)" if r.epochs_auto else str(r.epochs)


def _cost_label(r: FileReport) -> str:
    if r.role != "training":
        return "n/a (not trained on)"
    if r.estimated_cost_usd is None:
        return "n/a (set --price-per-million)"
    return f"${r.estimated_cost_usd:,.2f} at ${r.price_per_million:g} per 1M tokens"


def _safety_label(r: FileReport) -> str:
    s = r.safety
    if s is None:
        return "not screened (--safety)"
    harmful = sum(e.count for e in r.errors if e.code == HARMFUL_CONTENT)
    vocabulary = sum(w.count for w in r.warnings if w.code == HARM_VOCABULARY)
    return (
        f"{s.screened_turns:,} assistant turns screened: {harmful:,} harmful, {vocabulary:,} to check, "
        f"{s.refusals:,} refusal(s) of harmful asks"
    )


def render_text(reports: list[FileReport], console: Console, fail_on_warning: bool = False) -> None:
    for r in reports:
        verdict = "[bold green]valid[/]" if r.passes(fail_on_warning) else "[bold red]invalid[/]"
        console.print(f"[bold]{r.path}[/] ({r.role}): {verdict}", soft_wrap=True)
        rows = [
            ("method", _method_label(r)),
            ("base model", f"{r.base_model} ({r.encoding})"),
            (
                "examples",
                f"{r.examples:,}" + (f" ({r.image_examples:,} with images)" if r.image_examples else ""),
            ),
            ("tokens", f"{r.tokens.total:,} per epoch"),
            (
                "per example",
                f"min {r.tokens.min:,}  median {r.tokens.median:,.0f}  "
                f"p95 {r.tokens.p95:,}  max {r.tokens.max:,}",
            ),
            ("epochs", _epochs_label(r)),
            ("billed tokens", f"{r.billed_tokens:,}"),
            ("estimated cost", _cost_label(r)),
            ("errors", f"{sum(e.count for e in r.errors):,}"),
            ("warnings", f"{sum(w.count for w in r.warnings):,}"),
        ]
        if r.safety is not None:
            rows.append(("safety", _safety_label(r)))
        # Plain lines, not a table: a table wraps its cells at 80 columns in a CI log.
        width = max(len(key) for key, _ in rows)
        for key, value in rows:
            console.print(f"  {key:<{width}}    {value}", markup=False, highlight=False, soft_wrap=True)
        for line in r.finding_lines():
            style = "red" if " error [" in line else "yellow"
            console.print(line, style=style, markup=False, highlight=False, soft_wrap=True)
        console.print()


def render_json(reports: list[FileReport], fail_on_warning: bool = False) -> str:
    """`valid` is the verdict the exit code follows (warnings count with `fail_on_warning`)."""
    payload = {
        "valid": all(r.passes(fail_on_warning) for r in reports),
        "fail_on_warning": fail_on_warning,
        "files": [{**r.model_dump(mode="json"), "valid": r.passes(fail_on_warning)} for r in reports],
    }
    return json.dumps(payload, indent=2)


def render_github(reports: list[FileReport], fail_on_warning: bool = False) -> str:
    ok = all(r.passes(fail_on_warning) for r in reports)
    out = [f"### Training data: {'✅ valid' if ok else '❌ invalid'}", ""]
    out.append(
        "| file | method | examples | tokens / epoch | epochs | billed tokens | cost | errors | warnings |"
    )
    out.append("|---|---|---:|---:|---:|---:|---|---:|---:|")
    for r in reports:
        cost = "n/a" if r.estimated_cost_usd is None else f"${r.estimated_cost_usd:,.2f}"
        out.append(
            f"| `{r.path}` | {_method_label(r)} | {r.examples:,} | {r.tokens.total:,} | {_epochs_label(r)} "
            f"| {r.billed_tokens:,} | {cost} | {sum(e.count for e in r.errors):,} "
            f"| {sum(w.count for w in r.warnings):,} |"
        )
    for r in reports:
        if not (r.errors or r.warnings):
            continue
        out += ["", f"<details><summary><code>{r.path}</code>: findings</summary>", ""]
        out.append("| severity | rule | count | first lines | fix |")
        out.append("|---|---|---:|---|---|")
        for rule in [*r.errors, *r.warnings]:
            lines = ", ".join(str(f.line) for f in rule.first if f.line) or "file"
            out.append(f"| {rule.severity.value} | `{rule.code}` | {rule.count:,} | {lines} | {rule.fix} |")
        out += ["", "</details>"]
    screened = [r for r in reports if r.safety is not None]
    if screened:
        out += ["", "Safety screening (what the model would learn to say):", ""]
        out += [f"- `{r.path}`: {_safety_label(r)}" for r in screened]
    out += ["", "Token distribution per example (min / median / p95 / max):", ""]
    for r in reports:
        t = r.tokens
        out.append(f"- `{r.path}`: {t.min:,} / {t.median:,.0f} / {t.p95:,} / {t.max:,}")
    return "\n".join(out) + "\n"
