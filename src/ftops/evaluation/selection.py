"""Choosing among models scored on the same held-out items: the checkpoints of one job
(`checkpoint: best_eval`) or the variants of an experiment grid.

A model's score is its pass rate over every quality check's items pooled (items x repeats), with
the gate's interval (Wilson over the effective sample size, `stats.pass_rate`). Because every
candidate answers the same items, two candidates are compared paired, with the exact McNemar test
the gate uses against its baseline (`stats.compare`): "significantly worse" means that test at the
gate's confidence, never a difference of point estimates.

Nothing is hidden: every choice comes with notes saying which candidates tied, which were not
significantly worse than the best, and whether the winner is significantly better than the
default it replaced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ftops.evaluation import stats


@dataclass(frozen=True)
class Scored:
    """One candidate's answers to the quality checks, pooled."""

    label: str  # what people read: "epoch 2 (step 10)", "lr 0.5 x 50% data"
    model: str  # what a deployment serves it by
    deployment: str  # where it was evaluated
    order: int  # later is larger (a checkpoint's step); ties go to the larger
    outcomes: list[list[bool]]  # per item (over every quality check), its repeats
    per_check: dict[str, float] = field(default_factory=dict)
    cost: float | None = None  # what cheaper means (billed training tokens); None: not compared
    extra: dict[str, Any] = field(default_factory=dict)

    def rate(self, confidence: float) -> stats.Rate:
        return stats.pass_rate(self.outcomes, confidence)


@dataclass(frozen=True)
class Choice:
    chosen: Scored
    best: Scored  # the highest score (the chosen one unless a cheaper one was not worse)
    notes: list[str]
    rows: list[dict[str, Any]]  # the table: one row per candidate, in the given order


def _score(s: Scored) -> float:
    return s.rate(0.95).rate  # the point estimate does not depend on the confidence


def _best(scored: Sequence[Scored]) -> tuple[Scored, list[Scored]]:
    top = max(_score(s) for s in scored)
    tied = [s for s in scored if _score(s) == top]
    return max(tied, key=lambda s: s.order), tied


def worse_than(candidate: Scored, best: Scored, confidence: float) -> tuple[bool, float]:
    """Whether `candidate` is significantly worse than `best` on the same items, and the p-value."""
    if candidate is best:
        return False, 1.0
    comparison = stats.compare(candidate.outcomes, best.outcomes)
    return comparison.p_value < 1 - confidence, comparison.p_value


def _row(s: Scored, confidence: float, best: Scored) -> dict[str, Any]:
    rate = s.rate(confidence)
    worse, p_value = worse_than(s, best, confidence)
    return {
        "label": s.label,
        "model": s.model,
        "deployment": s.deployment,
        "order": s.order,
        "score": round(rate.rate, 6),
        "low": round(rate.low, 6),
        "high": round(rate.high, 6),
        "items": rate.items,
        "answers": rate.total,
        "per_check": {k: round(v, 6) for k, v in s.per_check.items()},
        "cost": s.cost,
        "p_vs_best": round(p_value, 6),
        "significantly_worse": worse,
        **s.extra,
    }


def best_checkpoint(scored: Sequence[Scored], confidence: float) -> Choice:
    """The highest score; ties go to the later checkpoint (the final one when it is among them).
    The last of `scored` (by order) is the final model: the notes say whether the chosen one is
    significantly better than it."""
    if not scored:
        raise ValueError("no checkpoints to choose from")
    chosen, tied = _best(scored)
    final = max(scored, key=lambda s: s.order)
    notes = []
    if len(tied) > 1:
        notes.append(
            f"tie at score {_score(chosen):.3f} between {', '.join(s.label for s in tied)}: "
            f"the later, {chosen.label}, is chosen"
        )
    if chosen is final:
        notes.append(f"the final checkpoint ({final.label}) scores best")
    else:
        better, p_value = worse_than(final, chosen, confidence)
        notes.append(
            f"{chosen.label} scores {_score(chosen):.3f} against the final {final.label}'s "
            f"{_score(final):.3f}: "
            + (
                f"significantly better (one-sided McNemar p={p_value:.4f} < {1 - confidence:g})"
                if better
                else f"not significantly better (p={p_value:.4f}); chosen on the point estimate"
            )
        )
    return Choice(chosen, chosen, notes, [_row(s, confidence, chosen) for s in scored])


def cheapest_not_worse(scored: Sequence[Scored], confidence: float) -> Choice:
    """Among the candidates not significantly worse than the best, the one that costs least (ties
    in cost: the higher score, then the later). Without costs, the best."""
    if not scored:
        raise ValueError("no variants to choose from")
    best, tied = _best(scored)
    notes = []
    if len(tied) > 1:
        notes.append(f"tie at the best score {_score(best):.3f} between {', '.join(s.label for s in tied)}")
    contenders = [s for s in scored if not worse_than(s, best, confidence)[0]]
    costed = [s for s in contenders if s.cost is not None]
    if costed and best.cost is not None:
        chosen = min(costed, key=lambda s: (s.cost, -_score(s), -s.order))
    else:
        chosen = best
    others = [s.label for s in contenders if s is not chosen]
    if chosen is best:
        notes.append(f"{best.label} scores best ({_score(best):.3f})")
    else:
        notes.append(
            f"{chosen.label} ({_score(chosen):.3f}, cost {chosen.cost:g}) is not significantly worse "
            f"than the best, {best.label} ({_score(best):.3f}, cost {best.cost:g}), and costs less: chosen"
        )
    if others:
        notes.append(
            f"also not significantly worse than the best at {confidence:.0%}: {', '.join(others)} "
            "(the evidence does not separate them: more eval items would)"
        )
    return Choice(chosen, best, notes, [_row(s, confidence, best) for s in scored])
