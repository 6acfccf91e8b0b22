"""Choosing among candidates scored on the same items: checkpoints (best_eval) and experiment
variants (the cheaper among those not significantly worse than the best)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ftops.config.experiments import method_for, variants
from ftops.config.schema import Experiments
from ftops.dataset.subsets import subset_lines, write_subset
from ftops.evaluation.experiment_report import learning_curves, loss_rows, overfitting
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


# ---------------------------------------------------------------- experiments: plans, subsets, report


def test_a_grid_expands_to_every_combination_for_each_fraction_with_stable_labels() -> None:
    grid = Experiments.model_validate(
        {"grid": {"learning_rate_multiplier": [0.5, 2], "n_epochs": [2]}, "fractions": [0.25, 1]}
    )
    plans = variants(grid)
    assert [p.label for p in plans] == ["lr0p5-ep2-f25", "lr0p5-ep2-f100", "lr2-ep2-f25", "lr2-ep2-f100"]
    assert plans[0].hyperparameters == {"learning_rate_multiplier": 0.5, "n_epochs": 2}
    assert isinstance(plans[0].hyperparameters["n_epochs"], int)  # Azure takes whole epochs
    method = {"type": "supervised", "hyperparameters": {"batch_size": 4, "n_epochs": 3}}
    assert method_for(method, plans[0])["hyperparameters"] == {
        "batch_size": 4,
        "n_epochs": 2,
        "learning_rate_multiplier": 0.5,
    }
    listed = Experiments.model_validate({"variants": [{"beta": 0.2}, {"beta": 0.4, "fraction": 0.5}]})
    assert [p.label for p in variants(listed)] == ["beta0p2-f100", "beta0p4-f50"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"grid": {"n_epochs": [2]}}, "an experiment needs at least two variants"),
        ({"grid": {"n_epochs": [1, 2]}, "variants": [{}, {}]}, "declare either grid/fractions or a list"),
        (
            {"grid": {"n_epochs": [1, 2, 3, 4, 5, 6, 7]}, "fractions": [0.5, 0.75, 1]},
            "21 variants; at most 20",
        ),
        ({"grid": {"temperature": [1, 2]}}, "temperature"),
        ({"fractions": [0, 1]}, "greater than 0"),
    ],
)
def test_experiment_mistakes_are_named(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        Experiments.model_validate(raw)
    assert message in str(info.value)


def test_subsets_are_nested_deterministic_and_content_addressed(tmp_path: Path) -> None:
    source = tmp_path / "train.jsonl"
    source.write_text("".join(json.dumps({"n": i}) + "\n" for i in range(40)))
    quarter = write_subset(source, 0.25, 7, tmp_path / "out")
    half = write_subset(source, 0.5, 7, tmp_path / "out")
    assert write_subset(source, 1.0, 7, tmp_path / "out") == source
    q, h = quarter.read_text().splitlines(), half.read_text().splitlines()
    assert (len(q), len(h)) == (10, 20)
    assert set(q) <= set(h)  # the 25 % subset is inside the 50 % one
    assert q == [line for line in h if line in set(q)]  # in the original order
    assert hashlib.sha256(quarter.read_bytes()).hexdigest()[:16] in quarter.name
    before = quarter.stat().st_mtime_ns
    assert write_subset(source, 0.25, 7, tmp_path / "out") == quarter  # a re-run writes nothing new
    assert quarter.stat().st_mtime_ns == before
    other = write_subset(source, 0.25, 8, tmp_path / "out")
    assert other != quarter  # another seed, other examples
    lines = source.read_bytes().splitlines()
    assert subset_lines(lines, 0.25, 7) == subset_lines(list(reversed(lines)), 0.25, 7)[::-1]


def test_the_overfitting_flag_and_the_doubling_gain() -> None:
    csv_text = "step,train_loss,valid_loss\n" + "".join(
        f"{s},{t},{v}\n"
        for s, t, v in [
            (1, 2.0, 2.0),
            (2, 1.5, 1.6),
            (3, 1.0, 1.2),
            (4, 0.8, 1.3),
            (5, 0.5, 1.5),
            (6, 0.3, 1.8),
        ]
    )
    rows = loss_rows(csv_text)
    flagged = overfitting(rows, epochs=3)
    assert flagged == {
        "flag": True,
        "why": "last epoch: train loss 0.900 -> 0.400, validation loss 1.250 -> 1.650",
    }
    assert overfitting(loss_rows("step,train_loss\n1,2\n2,1\n"), 2)["flag"] is None  # no validation loss
    curves = learning_curves(
        [
            {"setting": "lr1", "fraction": 0.25, "score": 0.4, "low": 0.2, "high": 0.6},
            {"setting": "lr1", "fraction": 0.5, "score": 0.5, "low": 0.3, "high": 0.7},
            {"setting": "lr1", "fraction": 1.0, "score": 0.6, "low": 0.4, "high": 0.8},
        ]
    )
    assert curves[0]["doubling_gain"] == pytest.approx(0.1)
    assert curves[0]["doubling_projection"] == pytest.approx(0.7)


def test_the_plan_prices_the_grid_and_the_checkpoint_scoring(repo_copy: Path) -> None:
    from ftops.config.load import load_environment
    from ftops.cost import plan_lines

    path = repo_copy / "environments" / "Pulumi.local.yaml"
    text = path.read_text().replace(
        "        checkpoint: final",
        "        experiments:\n          grid: {learning_rate_multiplier: [1, 2]}\n          fractions: [0.5, 1]\n"
        "        checkpoint: final",
    )
    path.write_text(text)
    lines = {line.item: line for line in plan_lines(load_environment(repo_copy, "local"), repo_copy)}
    grid = lines["training support-bot experiment grid (4 variants)"]
    assert grid.usd is not None
    assert grid.basis.startswith("lr1-f50: $")
    assert "evaluation support-bot experiment (4 variants)" in lines
    assert "training support-bot" not in lines  # the grid replaces the single job
    path.write_text(
        text.replace(
            "        experiments:\n          grid: {learning_rate_multiplier: [1, 2]}\n          fractions: [0.5, 1]\n",
            "",
        ).replace("checkpoint: final", "checkpoint: best_eval")
    )
    lines = {line.item: line for line in plan_lines(load_environment(repo_copy, "local"), repo_copy)}
    assert "evaluation support-bot checkpoints (3, best_eval)" in lines
    assert lines["evaluation support-bot checkpoints (3, best_eval)"].basis.startswith("3 x (")
