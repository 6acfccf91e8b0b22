"""Choosing among candidates scored on the same items: checkpoints (best_eval) and experiment
variants (the cheaper among those not significantly worse than the best)."""

from __future__ import annotations

from ftops.evaluation.selection import Scored, best_checkpoint, cheapest_not_worse


def scored(label: str, passes: int, items: int = 20, order: int = 0, cost: float | None = None) -> Scored:
    """`passes` of `items` pass (the first ones), one repeat each."""
    outcomes = [[i < passes] for i in range(items)]
    return Scored(label, f"model-{label}", f"dep-{label}", order, outcomes, cost=cost)


def test_best_eval_takes_the_higher_score_and_says_whether_it_is_significant() -> None:
    early, middle, final = scored("e1", 10, order=5), scored("e2", 19, order=10), scored("e3", 6, order=15)
    choice = best_checkpoint([early, middle, final], 0.95)
    assert choice.chosen is middle
    assert "significantly better (one-sided McNemar" in choice.notes[-1]  # 13 items regressed, none improved
    assert [r["score"] for r in choice.rows] == [0.5, 0.95, 0.3]
    assert [r["significantly_worse"] for r in choice.rows] == [True, False, True]
    close = best_checkpoint([scored("e2", 12, order=10), scored("e3", 11, order=15)], 0.95)
    assert close.chosen.label == "e2"
    assert "not significantly better (p=0.5000); chosen on the point estimate" in close.notes[-1]


def test_best_eval_ties_go_to_the_later_checkpoint_and_are_reported() -> None:
    choice = best_checkpoint(
        [scored("e1", 8, order=5), scored("e2", 8, order=10), scored("e3", 8, order=15)], 0.95
    )
    assert choice.chosen.label == "e3"
    assert choice.notes == [
        "tie at score 0.400 between e1, e2, e3: the later, e3, is chosen",
        "the final checkpoint (e3) scores best",
    ]


def test_the_cheaper_variant_wins_when_it_is_not_significantly_worse() -> None:
    big = scored("lr1-100%", 15, order=1, cost=2000)
    small = scored("lr1-50%", 14, order=2, cost=1000)
    bad = scored("lr2-25%", 3, order=3, cost=500)
    choice = cheapest_not_worse([big, small, bad], 0.95)
    assert choice.best is big
    assert choice.chosen is small
    assert choice.notes == [
        "lr1-50% (0.700, cost 1000) is not significantly worse than the best, lr1-100% (0.750, cost 2000), "
        "and costs less: chosen",
        "also not significantly worse than the best at 95%: lr1-100% (the evidence does not separate them: "
        "more eval items would)",
    ]
    assert [r["significantly_worse"] for r in choice.rows] == [False, False, True]


def test_without_costs_the_best_wins_and_ties_are_named() -> None:
    a, b = scored("a", 12, order=1), scored("b", 12, order=2)
    choice = cheapest_not_worse([a, b], 0.95)
    assert choice.chosen is b
    assert choice.notes[0] == "tie at the best score 0.600 between a, b"
