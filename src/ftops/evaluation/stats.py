"""The statistics a gate decides with: pass rates with Wilson intervals over an honest sample size,
and an exact paired test against a baseline.

Repeats of one item are not independent draws: at temperature 0 a model gives the same answer
every time, and even when sampling, an item it cannot answer stays unanswerable. Counting
items x repeats as the sample size would make the interval look narrower than the evidence is.
So the interval uses the effective sample size n / (1 + (m - 1) * icc) (Kish's design effect, with
the intra-item correlation estimated from the repeats): identical repeats count as one item, fully
independent ones count in full.

The Wilson interval is written out here rather than taken from scipy's `binomtest`, which only
takes whole counts; the effective sample size is not whole.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy.stats import binomtest, norm


@dataclass(frozen=True)
class Rate:
    passed: float  # passes over all items and repeats
    total: int  # items x repeats
    items: int
    effective_n: float
    icc: float
    low: float
    high: float

    @property
    def rate(self) -> float:
        return self.passed / self.total if self.total else 0.0


def wilson(successes: float, n: float, confidence: float) -> tuple[float, float]:
    """Two-sided Wilson score interval; (0, 1) when there is no data."""
    if n <= 0:
        return 0.0, 1.0
    z = float(norm.ppf(1 - (1 - confidence) / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def intra_item_correlation(outcomes: Sequence[Sequence[bool]]) -> float:
    """One-way ANOVA estimate of how alike an item's repeats are, clamped to [0, 1].

    1.0 (the cautious answer) when it cannot be estimated: one repeat, or every outcome equal.
    """
    k = len(outcomes)
    m = min((len(o) for o in outcomes), default=0)
    if k < 2 or m < 2:
        return 1.0
    means = [sum(o[:m]) / m for o in outcomes]
    grand = sum(means) / k
    between = m * sum((x - grand) ** 2 for x in means) / (k - 1)
    within = sum(m * x * (1 - x) for x in means) / (k * (m - 1))
    denominator = between + (m - 1) * within
    if denominator <= 0:
        return 1.0
    return min(1.0, max(0.0, (between - within) / denominator))


def pass_rate(outcomes: Sequence[Sequence[bool]], confidence: float) -> Rate:
    """`outcomes[i]` holds item i's result on each repeat."""
    total = sum(len(o) for o in outcomes)
    passed = float(sum(sum(o) for o in outcomes))
    m = total / len(outcomes) if outcomes else 1.0
    icc = intra_item_correlation(outcomes)
    effective = total / (1 + (m - 1) * icc) if total else 0.0
    low, high = wilson(passed / total * effective if total else 0.0, effective, confidence)
    return Rate(passed, total, len(outcomes), effective, icc, low, high)


@dataclass(frozen=True)
class Comparison:
    """Candidate against baseline on the same items (each item's majority verdict over repeats)."""

    candidate_rate: float
    baseline_rate: float
    regressions: int  # items the baseline passed and the candidate fails
    improvements: int
    p_value: float  # one-sided exact McNemar: probability of this many regressions if no worse

    @property
    def delta(self) -> float:
        return self.candidate_rate - self.baseline_rate


def majority(outcomes: Sequence[bool]) -> bool:
    return sum(outcomes) * 2 > len(outcomes)


def compare(candidate: Sequence[Sequence[bool]], baseline: Sequence[Sequence[bool]]) -> Comparison:
    """Exact McNemar test on paired items: only items where the two disagree carry information."""
    if len(candidate) != len(baseline):
        raise ValueError("candidate and baseline must be graded on the same items")
    pairs = [(majority(c), majority(b)) for c, b in zip(candidate, baseline, strict=True)]
    regressions = sum(1 for c, b in pairs if b and not c)
    improvements = sum(1 for c, b in pairs if c and not b)
    discordant = regressions + improvements
    p_value = (
        1.0
        if discordant == 0
        else float(binomtest(regressions, discordant, 0.5, alternative="greater").pvalue)
    )

    def rate(rows: Sequence[Sequence[bool]]) -> float:
        total = sum(len(r) for r in rows)
        return sum(sum(r) for r in rows) / total if total else 0.0

    return Comparison(rate(candidate), rate(baseline), regressions, improvements, p_value)
