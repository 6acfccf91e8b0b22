"""What a deployment's answers cost and how long they took, per 1,000 requests, from the gate's
own requests (each answer's usage as the deployment counted it, and its measured latency).

A gate asks the candidate and its baseline the same prompts with the same sampling, so the two
figures compare like with like: for a distilled model, the student against its teacher (the
promise of distillation is that the student answers cheaper and faster while it keeps quality).
Prices come from the program (`ftops.cost`'s rates for each side's model): the evaluation only
multiplies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ftops.evaluation.runner import Answer


@dataclass(frozen=True)
class Prices:
    """Inference rates in USD per million tokens."""

    input_per_million: float
    output_per_million: float

    def wire(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any] | None) -> Prices | None:
        if not raw or raw.get("input_per_million") is None or raw.get("output_per_million") is None:
            return None
        return cls(float(raw["input_per_million"]), float(raw["output_per_million"]))


def prices_by_side(raw: Mapping[str, Any] | None) -> dict[str, Prices | None]:
    """The gate's `prices` input (as `ftops.cost.gate_prices` writes it) back as Prices by side."""
    return {side: Prices.from_wire(rates) for side, rates in (raw or {}).items()}


@dataclass(frozen=True)
class Usage:
    deployment: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    latency_mean_s: float
    latency_p95_s: float
    usd_per_1k: float | None  # None: no price known for the model

    def summary(self) -> dict[str, Any]:
        return asdict(self)


def measure(deployment: str, model: str, answers: Iterable[Answer], prices: Prices | None) -> Usage | None:
    """None when nothing was asked (a check with no items)."""
    rows = list(answers)
    if not rows:
        return None
    n = len(rows)
    prompt = sum(a.prompt_tokens for a in rows)
    completion = sum(a.completion_tokens for a in rows)
    latencies = sorted(a.latency for a in rows)
    usd = None
    if prices is not None:
        spent = prompt / 1e6 * prices.input_per_million + completion / 1e6 * prices.output_per_million
        usd = round(spent / n * 1000, 6)
    return Usage(
        deployment,
        model,
        n,
        prompt,
        completion,
        round(sum(latencies) / n, 4),
        round(latencies[min(n - 1, int(0.95 * n))], 4),
        usd,
    )


def comparison(candidate: Mapping[str, Any], baseline: Mapping[str, Any]) -> str | None:
    """One sentence: the candidate's cost and latency as a share of the baseline's."""
    parts = []
    if candidate.get("usd_per_1k") is not None and baseline.get("usd_per_1k"):
        share = candidate["usd_per_1k"] / baseline["usd_per_1k"]
        parts.append(f"costs {share:.0%} of the baseline per request")
    if baseline.get("latency_mean_s"):
        ratio = candidate["latency_mean_s"] / baseline["latency_mean_s"]
        parts.append(f"answers in {ratio:.2f}x the baseline's mean latency")
    return f"The candidate {' and '.join(parts)}." if parts else None
