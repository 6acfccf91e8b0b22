"""The canary's verdict: what serves now, graded again, against the evidence its gate recorded.

A gate decided once, on the day the model was promoted. The canary asks the same questions of the
serving deployment later (same eval sets, seeds, repeats and temperature as that evidence), so an
unchanged model gives the same answers and anything else is drift: a swapped model, a platform
change, a content filter edited in the portal. Each check is compared item by item with the
gate's answers (the exact paired test of `stats.compare`), and also held to its threshold again.
Both are plain functions of two evidence records, so they are tested without a deployment.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ftops.evaluation import evidence_files
from ftops.evaluation.request import Policy
from ftops.evaluation.stats import compare

CANARY_FORMAT = "ftops.canary/1"


def policy_of(evidence: dict[str, Any], concurrency: int) -> Policy:
    """The sampling the gate used: the canary must ask exactly as it did for a paired test."""
    p = evidence["policy"]
    return Policy(
        confidence=float(p["confidence"]),
        repeats=int(p["repeats"]),
        temperature=float(p["temperature"]),
        fail_on_uncertainty=bool(p["fail_on_uncertainty"]),
        max_regression=float(p["max_regression"]),
        concurrency=concurrency,
        seed=int(p["seed"]),
    )


@dataclass(frozen=True)
class CheckVerdict:
    name: str
    metric: str
    now: float
    low: float
    high: float
    threshold: float
    then: float | None  # the gate's rate on the same items; None when not comparable
    delta: float | None
    regressions: int
    improvements: int
    p_value: float | None
    regressed: bool  # significantly worse than the gate's answers, beyond max_regression
    below_threshold: bool
    note: str = ""  # why it was not compared, when it was not


def _outcomes(results: list[dict[str, Any]]) -> dict[str, list[bool]]:
    return {
        item: [bool(r["passed"]) for r in sorted(rows, key=lambda r: int(r.get("repeat", 0)))]
        for item, rows in evidence_files.rows_by_item(results).items()
    }


def judge(now: dict[str, Any], reference: dict[str, Any] | None) -> list[CheckVerdict]:
    """Each check of the canary's evidence `now`, paired with the same check of the gate's
    `reference` evidence where both graded the same eval set."""
    policy = now["policy"]
    alpha = 1 - float(policy["confidence"])
    earlier = {c["name"]: c for c in (reference or {}).get("checks", [])}
    out = []
    for check in now["checks"]:
        s = check["summary"]
        then = earlier.get(check["name"])
        below = not s["passed"]  # the canary runs with no baseline: only the threshold fails a check
        common = {
            "name": check["name"],
            "metric": s["metric"],
            "now": s["pass_rate"],
            "low": s["low"],
            "high": s["high"],
            "threshold": float(check["threshold"]),
            "below_threshold": below,
        }
        if reference is None or then is None or then["eval_set_digest"] != check["eval_set_digest"]:
            note = (
                "no gate evidence to compare with"
                if reference is None
                else f"the gate had no check {check['name']}"
                if then is None
                else "its eval set changed since the gate ran"
            )
            out.append(
                CheckVerdict(
                    **common,
                    then=None,
                    delta=None,
                    regressions=0,
                    improvements=0,
                    p_value=None,
                    regressed=False,
                    note=note,
                )
            )
            continue
        mine, theirs = _outcomes(check["results"]), _outcomes(then["results"])
        items = [i for i in mine if i in theirs]
        result = compare([mine[i] for i in items], [theirs[i] for i in items])
        out.append(
            CheckVerdict(
                **common,
                then=round(result.baseline_rate, 6),
                delta=round(result.delta, 6),
                regressions=result.regressions,
                improvements=result.improvements,
                p_value=round(result.p_value, 6),
                regressed=result.p_value < alpha and result.delta < -float(policy["max_regression"]),
            )
        )
    return out


@dataclass(frozen=True)
class CanaryReport:
    environment: str
    model: str  # the model's key in the environment
    deployment: str
    served: str  # the model id the deployment serves
    reference_digest: str | None  # the gate evidence compared with
    reference_where: str  # where it was read, or why there is none
    evidence_digest: str  # the canary's own evidence (gate format)
    evidence_where: str
    share: float
    checks: list[CheckVerdict]
    rollback: str  # the command (or step) that restores the previous model

    @property
    def failures(self) -> list[str]:
        out = []
        for c in self.checks:
            if c.regressed and c.then is not None and c.delta is not None:
                out.append(
                    f"{c.name}: {c.metric} {c.now:.3f} now vs {c.then:.3f} at the gate "
                    f"(delta {c.delta:+.3f}); "
                    f"{c.regressions} items regressed, {c.improvements} improved, one-sided McNemar "
                    f"p={c.p_value:.4f}"
                )
            if c.below_threshold:
                out.append(
                    f"{c.name}: {c.metric} {c.now:.3f} [{c.low:.3f}, {c.high:.3f}] below threshold "
                    f"{c.threshold:.3f}"
                )
        return out

    @property
    def passed(self) -> bool:
        return not self.failures

    def record(self) -> dict[str, Any]:
        return {
            "format": CANARY_FORMAT,
            **{k: v for k, v in asdict(self).items() if k != "checks"},
            "checks": [asdict(c) for c in self.checks],
            "verdict": "pass" if self.passed else "fail",
            "failures": self.failures,
        }

    def one_line(self) -> str:
        if self.passed:
            scores = "; ".join(
                f"{c.name} {c.now:.3f}" + (f" (gate {c.then:.3f})" if c.then is not None else f" ({c.note})")
                for c in self.checks
            )
            return f"canary {self.environment}/{self.model}: pass: {scores} (evidence {self.evidence_where})"
        return (
            f"canary {self.environment}/{self.model}: REGRESSION on {self.deployment} ({self.served}): "
            + "; ".join(self.failures)
            + f" (evidence {self.evidence_where}; gate evidence {self.reference_where}); "
            + f"roll back: {self.rollback}"
        )

    def markdown(self) -> str:
        verdict = "✅ pass" if self.passed else "❌ regression"
        lines = [
            f"### Canary `{self.environment}/{self.model}`: {verdict}",
            "",
            f"Deployment `{self.deployment}` serves `{self.served}`; asked again at {self.share:.0%} of its "
            "capacity with the gate's eval sets, seeds and repeats.",
            f"Gate evidence: `{self.reference_digest or 'none'}` ({self.reference_where}).",
            f"Canary evidence: `{self.evidence_digest}` ({self.evidence_where}).",
            "",
            "| check | now | interval | threshold | at the gate | Δ | regressed / improved | p | result |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for c in self.checks:
            then = f"{c.then:.3f}" if c.then is not None else f"— ({c.note})"
            delta = f"{c.delta:+.3f}" if c.delta is not None else ""
            p_value = f"{c.p_value:.4f}" if c.p_value is not None else ""
            bad = c.regressed or c.below_threshold
            lines.append(
                f"| {c.name} ({c.metric}) | {c.now:.3f} | [{c.low:.3f}, {c.high:.3f}] | {c.threshold:.3f} "
                f"| {then} | {delta} | {c.regressions} / {c.improvements} | {p_value} "
                f"| {'**fail**' if bad else 'pass'} |"
            )
        if not self.passed:
            lines += ["", "**Failures**", ""] + [f"- {f}" for f in self.failures]
            lines += [
                "",
                "Nothing was changed. To serve the previous model:",
                "",
                "```",
                self.rollback,
                "```",
            ]
        return "\n".join(lines) + "\n"
