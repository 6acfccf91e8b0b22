"""The one cost model and the budget check: figures computed by hand from the rates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ftops import cost
from ftops.auditlog import open_log, records
from ftops.config.load import load_environment
from ftops.config.schema import Environment, Sku
from ftops.dataset.validate import ValidateOptions, validate_file
from ftops.providers.budget import BudgetProvider, new_jobs, problems
from tests.conftest import REPO


def env_with(**changes: Any) -> Environment:
    base = load_environment(REPO, "local").model_dump(mode="json", by_alias=True, exclude={"releases"})
    base.update(changes)
    return Environment.model_validate(base)


def test_default_rates_follow_the_training_tier() -> None:
    env = env_with()
    glob = cost.rates_for(env, "gpt-4.1-mini-2025-04-14", "GlobalStandard")
    assert glob.training_per_million == 5.00
    assert glob.source == f"list prices of {cost.PRICES_AS_OF}"
    assert cost.rates_for(env, "gpt-4.1-mini-2025-04-14", "Standard").training_per_million == pytest.approx(
        6.25
    )
    assert cost.rates_for(env, "gpt-4.1-mini-2025-04-14", "Developer").training_per_million == 2.50
    # A fine-tuned model is priced as its base.
    tuned = cost.rates_for(env, "gpt-4.1-mini-2025-04-14.ft-0123456789abcdef0123456789abcdef-x")
    assert (tuned.input_per_million, tuned.output_per_million) == (0.40, 1.60)
    assert cost.rates_for(env, "o4-mini-2025-04-16").training_per_million is None  # RFT only


def test_declared_rates_win_per_model_over_environment_over_defaults() -> None:
    env = env_with(
        pricing={
            "training_per_million_tokens": 4.0,
            "hosting_per_hour": 2.0,
            "models": {"gpt-4.1-nano": {"training_per_million_tokens": 1.0}},
        }
    )
    mini = cost.rates_for(env, "gpt-4.1-mini-2025-04-14", "Standard")
    assert mini.training_per_million == 4.0  # a declared rate is the tier's own: no tier factor
    assert mini.source == "pricing"
    assert cost.rates_for(env, "gpt-4.1-nano-2025-04-14").training_per_million == 1.0
    assert mini.hosting_usd_per_hour(Sku(name="GlobalStandard", capacity=10)) == 2.0
    assert mini.hosting_usd_per_hour(Sku(name="Developer", capacity=50)) == 0.0
    assert mini.hosting_usd_per_hour(Sku(name="ProvisionedManaged", capacity=15)) == 15 * cost.PTU_PER_HOUR


def test_the_training_line_is_tokens_times_epochs_times_rate() -> None:
    env = load_environment(REPO, "local")
    spec = env.models["support-bot"]
    assert spec.training_file is not None
    report = validate_file(
        REPO / spec.training_file, ValidateOptions(base_model=env.base_of("support-bot"), epochs=1)
    )
    [line] = [ln for ln in cost.plan_lines(env, REPO) if ln.kind == "training"]
    # 6 epochs declared, Standard training of gpt-4.1-mini: $5.00 / 0.8 per 1M billed tokens.
    assert line.usd == pytest.approx(report.billed_tokens * 6 / 1e6 * 6.25)
    assert (
        f"{report.billed_tokens:,} tokens x 6 epochs = {report.billed_tokens * 6:,} billed tokens"
        in line.basis
    )


def test_rft_is_priced_by_estimated_hours() -> None:
    hours = cost.rft_hours(100_000, n_epochs=2, compute_multiplier=1.5, reasoning_effort="low", examples=200)
    assert hours == pytest.approx(2 * 1.5 * 4 * (100_000 + 200 * 500) / 2_000_000)
    rates = cost.rates_for(env_with(), "o4-mini-2025-04-16")
    assert rates.rft_usd(hours) == pytest.approx(hours * 100.0)


def test_every_environment_is_priced_and_hosting_is_per_month() -> None:
    for name in ("local", "dev", "staging", "prod"):
        env = load_environment(REPO, name)
        lines = cost.plan_lines(env, REPO)
        hosting = [ln for ln in lines if ln.kind == "hosting"]
        deployments = [ln for ln in hosting if ln.item.startswith("hosting ")]
        assert len(deployments) == 2 * len(env.deployments)  # serving and the gate's candidate
        alerts = [ln for ln in hosting if ln.item.startswith("alerts ")]
        assert len(alerts) == (len(env.deployments) if env.target == "azure" else 0)
        for line in hosting:
            assert line.per == "month"
            assert line.usd is not None
        assert {ln.kind for ln in lines} >= {"hosting", "evaluation"}
        payload = json.loads(cost.as_json(lines))
        monthly = [ln for ln in lines if ln.per == "month"]  # hosting, alerts and the nightly canary
        assert payload["totals"]["month"] == pytest.approx(sum(ln.usd or 0 for ln in monthly))
    dev = load_environment(REPO, "dev")
    [candidate] = [ln for ln in cost.plan_lines(dev, REPO) if "support-bot candidate" in ln.item]
    assert candidate.usd == 0.0
    assert "Developer" in candidate.item


def job(identity: str, usd: float | None) -> dict[str, Any]:
    return {"identity": identity, "usd": usd, "basis": "1,000 tokens x 2 epochs"}


def budget(jobs: dict[str, Any], limit: float | None = 10.0, **more: Any) -> dict[str, Any]:
    return {
        "environment": "dev",
        "training_limit_usd": limit,
        "hosting_limit_usd": None,
        "override": None,
        "jobs": jobs,
        "hosting": {"usd_per_month": 0.0, "basis": ""},
        "audit": None,
        **more,
    }


def test_only_jobs_a_change_starts_count_against_the_budget() -> None:
    olds = budget({"a": job("1", 8.0), "b": job("2", 8.0)})
    same = budget({"a": job("1", 8.0), "b": job("2", 8.0)})
    assert new_jobs(olds, same) == {}
    assert problems(olds, same) == []
    one_new = budget({"a": job("1", 8.0), "b": job("3", 8.0)})
    assert list(new_jobs(olds, one_new)) == ["b"]
    assert problems(olds, one_new) == []
    both_new = budget({"a": job("4", 8.0), "b": job("3", 8.0)})
    [(prop, line)] = problems(olds, both_new)
    assert prop == "jobs"
    assert line.startswith(
        "training this change costs $16.00, over budget.training_usd_per_change $10.00: a $8.00"
    )
    assert problems({}, budget({"a": job("1", 8.0)}, limit=None)) == []  # no limit, no check


def test_an_override_raises_the_limit_for_the_change_and_is_audited(tmp_path: Path) -> None:
    override = {"reason": "the first training of the bot", "up_to_usd": 20.0}
    audit = {"kind": "file", "path": str(tmp_path / "audit.jsonl")}
    news = budget({"a": job("1", 16.0)}, override=override, audit=audit)
    assert problems({}, news) == []
    assert problems({}, budget({"a": job("1", 26.0)}, override=override))[0][1].startswith(
        "training this change costs $26.00, over budget.override.up_to_usd $20.00"
    )
    created = BudgetProvider().create(news)
    assert created.outs is not None
    assert created.outs["override_used"] is True
    assert created.outs["spent_usd"] == 16.0
    [record] = records(open_log(audit))
    assert record.action == "budget-override"
    assert record.details == {
        "reason": override["reason"],
        "spent_usd": 16.0,
        "limit_usd": 10.0,
        "up_to_usd": 20.0,
    }
    # Within the limit the override is not used, and nothing is recorded.
    BudgetProvider().update(
        "dev/budget", news, budget({"a": job("1", 16.0), "b": job("2", 1.0)}, audit=audit)
    )
    assert len(records(open_log(audit))) == 1


def test_unpriced_jobs_and_hosting_over_budget_are_reported() -> None:
    [(_, line)] = problems({}, budget({"a": job("1", None)}))
    assert "no rate prices the training of a" in line
    assert "pricing.training_per_million_tokens" in line
    over = budget({}, hosting_limit_usd=1000.0, hosting={"usd_per_month": 1241.0, "basis": "x $1,241.00"})
    [(prop, line)] = problems({}, over)
    assert prop == "hosting"
    assert line.startswith(
        "the deployments cost $1,241.00 per month, over budget.hosting_usd_per_month $1,000.00"
    )


def test_a_deployment_billed_by_the_hour_that_nobody_calls_is_idle() -> None:
    from ftops.gitops.status import Row

    row = Row("d", "m", None, "x", "pass", "x", "", cost_per_hour=1.7, requests=0)
    assert row.idle
    assert not Row("d", "m", None, "x", "pass", "x", "", cost_per_hour=1.7, requests=3).idle
    assert not Row("d", "m", None, "x", "pass", "x", "", cost_per_hour=0.0, requests=0).idle  # Developer tier
    assert not Row("d", "m", None, "x", "pass", "x", "", cost_per_hour=1.7, requests=None).idle  # unknown


def test_rft_grader_model_tokens_are_a_line_of_their_own() -> None:
    judge = {
        "type": "score_model",
        "model": "gpt-4o-2024-08-06",
        "input": [{"role": "user", "content": "Score 0-1: {{sample.output_text}} vs {{item.answer}}"}],
        "sampling_params": {"max_completions_tokens": 10},
    }
    exact = {
        "type": "string_check",
        "input": "{{sample.output_text}}",
        "reference": "{{item.answer}}",
        "operation": "eq",
    }
    env = env_with(
        graders={
            "both": {
                "type": "multi",
                "graders": {"judge": judge, "exact": exact},
                "calculate_output": "judge",
            }
        },
        models={
            "adder": {
                "base_model": "o4-mini-2025-04-16",
                "method": {
                    "type": "reinforcement",
                    "grader": {"ref": "both"},
                    "hyperparameters": {"n_epochs": 2},
                },
                "training_file": "data/rft-digits/train.jsonl",
                "validation_file": "data/rft-digits/valid.jsonl",
            }
        },
        deployments={},
        gates={},
    )
    report = validate_file(
        REPO / "data/rft-digits/train.jsonl",
        ValidateOptions(method="reinforcement", base_model="o4-mini-2025-04-16", epochs=1),
    )
    spec = env.models["adder"]
    [grading] = cost.grading_lines(env, "adder", spec, report.examples, report.billed_tokens)
    from ftops.tokenizer import TokenCounter

    calls = 24 * 2 * 4  # prompts x epochs x samples per prompt (compute_multiplier 1)
    template = TokenCounter("o200k_base").count(judge["input"][0]["content"])  # type: ignore[index]
    per_call = template + report.billed_tokens // 24 + cost.GRADER_ANSWER_TOKENS
    # gpt-4o list prices: $2.50 per 1M input, $10.00 per 1M output tokens.
    assert grading.usd == pytest.approx(calls * per_call * 2.50 / 1e6 + calls * 10 * 10.00 / 1e6)
    assert "192 samples graded" in grading.basis
    assert grading.item == "grading adder (judge)"
    # One line per job (the budget and the preview count them so): the RFT hours plus the grading.
    [line] = [ln for ln in cost.plan_lines(env, REPO) if ln.kind == "training"]
    hours = cost.training_line(env, "adder", spec, report.examples, report.billed_tokens)
    assert hours.usd is not None
    assert grading.usd is not None
    assert line.usd == pytest.approx(hours.usd + grading.usd)
    assert line.item == "training adder"
    assert "grader-model tokens: judge: $" in line.basis
    assert "192 samples graded" in line.basis


def test_alerts_and_the_canary_are_priced_per_month_on_azure() -> None:
    prod = load_environment(REPO, "prod")
    lines = {ln.item: ln for ln in cost.plan_lines(prod, REPO)}
    # Five rules; the 429 rule watches one status code and the 5xx rule four: 8 series at $0.10.
    assert lines["alerts support-bot"].usd == pytest.approx(8 * 0.10)
    gate = lines["evaluation gate support-bot"]
    canary = lines["canary support-bot"]
    # A canary run asks the serving deployment only (no baseline): half a gate run, 30 times a month.
    assert canary.usd == pytest.approx(gate.usd / 2 * 30)  # type: ignore[operator]


def test_the_budget_counts_an_experiment_grid_as_the_jobs_it_starts() -> None:
    from ftops.program import budget_args

    env = env_with(budget={"training_usd_per_change": 0.01})
    spec = env.models["support-bot"].model_dump(mode="json", exclude_unset=True)
    spec["experiments"] = {"grid": {"learning_rate_multiplier": [1.0, 2.0]}, "fractions": [0.5, 1.0]}
    env = env_with(budget={"training_usd_per_change": 0.01}, models={"support-bot": spec})
    args = budget_args(env, REPO, None)
    assert args is not None
    [grid] = [
        ln for ln in cost.plan_lines(env, REPO) if ln.item.startswith("training support-bot experiment grid")
    ]
    assert args.jobs["support-bot"]["usd"] == grid.usd
    assert grid.usd is not None
    [(prop, line)] = problems({}, args.inputs())
    assert prop == "jobs"
    assert line.startswith(
        f"training this change costs ${grid.usd:,.2f}, over budget.training_usd_per_change"
    )
