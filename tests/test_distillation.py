"""Distillation without a service: the declaration's rules (one line naming file, key and line),
the split and the dataset's identity as plain functions, the agreement statistics, and the dev
stack's graph under mocks (dataset -> training file -> job, the gate's teacher-agreement check)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftops import cost
from ftops.cli import app
from ftops.config.load import load_environment
from ftops.errors import ConfigError, UsageError
from ftops.evaluation import distillation as distill
from ftops.evaluation.runner import Answer
from tests.conftest import REPO
from tests.test_infra import stack_run

D = "environments/Pulumi.dev.yaml: ftops:environment."


def _edit(root: Path, old: str, new: str) -> None:
    path = root / "environments" / "Pulumi.dev.yaml"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def _problems(root: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_environment(root, "dev")
    return info.value.problems


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "          prompts: data/support-bot-distill/prompts.jsonl\n",
            "          prompts: data/support-bot-distill/prompts.jsonl\n          stored:\n            model: gpt-4.1\n",
            "models.support-mini.distill_from: set exactly one of prompts or stored (line 70)",
        ),
        (
            "        base_model: gpt-4.1-nano-2025-04-14\n        distill_from:",
            "        base_model: gpt-4.1-nano-2025-04-14\n        training_file: data/support-bot/train.jsonl\n"
            "        distill_from:",
            "models.support-mini: set exactly one of training_file or distill_from (the teacher's answers) "
            "(line 66)",
        ),
        (
            "            capacity: 50  # 50,000",
            "            capcity: 50  # 50,000",
            "models.support-mini.distill_from.teacher.capcity: unknown key; did you mean 'capacity'? allowed "
            "keys: deployment, model, capacity, account (line 74)",
        ),
        (
            "            grader: regex  # policy",
            "            grader: llm_judge  # policy",
            "models.support-mini.distill_from.quality_filter.grader: unknown grader 'llm_judge' for a "
            "distillation filter; use one of exact, json_schema, normalized, refusal, regex, similarity (line 80)",
        ),
        (
            "          prompts: data/support-bot-distill/prompts.jsonl",
            "          prompts: data/support-bot-distill/prompt.jsonl",
            "models.support-mini.distill_from.prompts: no such file 'data/support-bot-distill/prompt.jsonl'; "
            "fix the path or add the file (line 75)",
        ),
        (
            "      support-bot:\n        baseline: serving\n",
            "      support-bot:\n        baseline: teacher\n",
            "gates.support-bot.baseline: baseline: teacher compares with the teacher of a distilled model; "
            "'support-bot' has no distill_from here (use serving, base or none) (line 107)",
        ),
    ],
)
def test_a_bad_distill_from_is_one_line_with_file_key_and_line(
    repo_copy: Path, old: str, new: str, expected: str
) -> None:
    _edit(repo_copy, old, new)
    assert _problems(repo_copy) == [D + expected]


def prompts_file(path: Path, n: int, *, twice: int = 0) -> Path:
    rows = [{"messages": [{"role": "user", "content": f"Question {i}?"}]} for i in range(n)]
    rows += rows[:twice]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_the_split_depends_on_content_not_order_and_holds_out_before_training(tmp_path: Path) -> None:
    path = prompts_file(tmp_path / "a.jsonl", 60, twice=3)
    planned = distill.plan(path, max_tokens=50, max_examples=None, validation_split=0.2, held_out=8, seed=1)
    assert planned.duplicates == 3
    assert (planned.count("heldout"), planned.count("valid"), planned.count("train")) == (8, 10, 42)
    reordered = tmp_path / "b.jsonl"
    reordered.write_text("".join(reversed(path.read_text().splitlines(keepends=True))))
    again = distill.plan(
        reordered, max_tokens=50, max_examples=None, validation_split=0.2, held_out=8, seed=1
    )
    assert again.roles == planned.roles
    capped = distill.plan(path, max_tokens=50, max_examples=20, validation_split=0.2, held_out=8, seed=1)
    assert capped.count("train") + capped.count("valid") == 20
    assert {d for d, r in capped.roles.items() if r == "heldout"} == {
        d for d, r in planned.roles.items() if r == "heldout"
    }  # a cap never moves a held-out prompt into training


def test_a_prompt_set_that_cannot_be_split_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = prompts_file(tmp_path / "few.jsonl", 25)
    with pytest.raises(UsageError, match="Azure needs at least 10") as info:
        distill.plan(path, max_tokens=50, max_examples=None, validation_split=0.1, held_out=8, seed=0)
    assert "validation_split: 0" in str(info.value.fix)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    )
    with pytest.raises(UsageError, match="ends with an assistant message"):
        distill.plan(bad, max_tokens=5, max_examples=None, validation_split=0, held_out=0, seed=0)


def test_the_same_answers_are_the_same_bytes_and_a_filter_drops_what_a_prompt_says_is_wrong(
    tmp_path: Path,
) -> None:
    rows = [
        {
            "messages": [{"role": "user", "content": f"How many days to return item {i}?"}],
            "pattern": "60 days",
        }
        for i in range(30)
    ]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    planned = distill.plan(path, max_tokens=40, max_examples=None, validation_split=0, held_out=5, seed=0)
    answers = {
        str(item.id): Answer(str(item.id), 0, "You have 60 days." if i % 3 else "You have 30 days.")
        for i, item in enumerate(planned.prompts.items)
    }
    examples, blocked = distill.examples_from(planned.prompts, answers)
    kept, failed = distill.quality_filter(examples, "regex", 0.75)
    assert (blocked, failed, len(kept)) == (0, 10, 20)
    one = distill.write(tmp_path / "one", kept, planned.roles, 0, "gpt-4.1-mini-2025-04-14")
    two = distill.write(tmp_path / "two", list(reversed(kept)), planned.roles, 0, "gpt-4.1-mini-2025-04-14")
    assert one.digests == two.digests
    assert one.counts["train"] + one.counts["heldout"] == 20


def test_agreement_is_a_paired_test_of_wins_against_losses() -> None:
    student = [True] * 12 + [False] * 4
    untrained = [False] * 14 + [True] * 2
    result = distill.agreement(student, untrained)
    assert (result.wins, result.losses) == (12, 2)
    assert result.rate == 0.75
    assert result.p_value < 0.01
    same = distill.agreement(student, student)
    assert same.p_value == 1.0
    with pytest.raises(ValueError, match="same"):
        distill.agreement(student, untrained[:3])


def test_the_dev_stack_trains_the_student_on_the_dataset_and_gates_it_against_the_teacher() -> None:
    result = stack_run("dev")
    dataset = result.named("support-mini-distilled")
    training = result.named("support-mini-training")
    validation = result.named("support-mini-validation")
    job = result.named("support-mini-job")
    gate = result.named("support-mini-gate")
    assert training.inputs["path"] == dataset.outputs["train_path"], training.urn
    assert training.inputs["digest"] == dataset.outputs["train_digest"], training.urn
    assert validation.inputs["digest"] == dataset.outputs["valid_digest"], validation.urn
    assert job.inputs["training_digest"] == dataset.outputs["train_digest"], job.urn
    assert dataset.inputs["teacher"] == {
        "deployment": "support-gpt41",
        "model": "gpt-4.1-2025-04-14",
        "capacity": 50,
    }
    assert (
        dataset.inputs["prompts_digest"]
        == __import__("hashlib")
        .sha256((REPO / "data/support-bot-distill/prompts.jsonl").read_bytes())
        .hexdigest()
    )
    agreement = next(c for c in gate.inputs["checks"] if c["name"] == "teacher-agreement")
    assert agreement["path"] == dataset.outputs["heldout_path"], gate.urn
    assert agreement["digest"] == "sha256:" + dataset.outputs["heldout_digest"], gate.urn
    assert (agreement["grader"], agreement["threshold"]) == ("similarity", 0.8)
    assert [c["name"] for c in gate.inputs["checks"]] == ["policy-facts", "safety", "teacher-agreement"]
    # A distilled model's gate compares with its teacher unless told otherwise: declared, not looked
    # up, and priced at the teacher's rates (the evidence reports 1,000 requests of each).
    assert gate.inputs["baseline"] == {
        "kind": "teacher",
        "deployment": "support-gpt41",
        "teacher": {"model": "gpt-4.1-2025-04-14", "capacity": 50, "endpoint": ""},
    }
    prices = gate.inputs["prices"]
    assert prices["candidate"]["output_per_million"] < prices["baseline"]["output_per_million"]
    # Every other gate's baseline keeps the keys it always had: an upgrade re-runs no gate.
    assert result.named("support-bot-gate").inputs["baseline"] == {
        "kind": "serving",
        "deployment": "support-bot",
    }


def test_an_explicit_baseline_wins_over_the_teacher_and_another_account_is_reached_by_name(
    repo_copy: Path,
) -> None:
    from ftops.config.gates import gate_request

    _edit(repo_copy, "        max_regression: 0.05\n", "        baseline: none\n")
    env = load_environment(repo_copy, "dev")
    assert gate_request(env, "support-mini", repo_copy, "support-mini", 0).baseline.kind == "none"
    _edit(repo_copy, "        baseline: none\n", "")
    _edit(
        repo_copy,
        "            capacity: 50  #",
        "            account: oai-contoso-prod\n            capacity: 50  #",
    )
    env = load_environment(repo_copy, "dev")
    teacher = gate_request(env, "support-mini", repo_copy, "support-mini", 0).baseline.teacher
    assert teacher is not None
    assert teacher.endpoint == "https://oai-contoso-prod.openai.azure.com"
    line = next(
        line for line in cost.plan_lines(env, repo_copy) if line.item == "evaluation gate support-mini"
    )
    assert "x candidate and baseline (teacher)" in line.basis


def test_distill_dry_run_prints_prompts_tokens_and_costs_before_anything_runs() -> None:
    result = CliRunner().invoke(app, ["distill", "--env", "dev", "--model", "support-mini", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "82 prompt(s) to ask teacher support-gpt41 (gpt-4.1-2025-04-14, capacity 50)" in result.output
    assert "split: 52 train, 10 validation, 20 held out" in result.output
    assert "at most 24,600 answer (300 per prompt)" in result.output
    assert "teacher cost: $" in result.output
    assert "student training: $" in result.output
    unknown = CliRunner().invoke(app, ["distill", "--env", "dev", "--model", "support-bot", "--dry-run"])
    assert unknown.exit_code == 2
    assert "no distilled model 'support-bot'" in unknown.output
    assert "distilled models there: support-mini" in unknown.output


def test_the_budget_prices_a_distilled_job_and_a_new_prompt_set_is_a_new_job(repo_copy: Path) -> None:
    from ftops.config.schema import Budget
    from ftops.program import job_identity

    env = load_environment(REPO, "dev").model_copy(update={"budget": Budget(training_usd_per_change=100.0)})
    before = job_identity(env, "support-mini", REPO)
    assert job_identity(env, "support-bot", REPO) == job_identity(env, "support-bot", repo_copy)
    prompts = repo_copy / "data" / "support-bot-distill" / "prompts.jsonl"
    prompts.write_text(
        prompts.read_text() + prompts.read_text().splitlines(keepends=True)[0].replace("p001", "p999")
    )
    assert job_identity(env, "support-mini", repo_copy) != before
    # The capture is a training-kind cost line of its own: the budget still finds each model's job
    # line (it paired lines with models by position, and a distilled model put them out of step).
    from ftops.program import budget_args

    args = budget_args(env, REPO, None)
    assert args is not None
    assert set(args.jobs) == set(env.models)
    lines = {ln.item: ln for ln in cost.plan_lines(env, REPO)}
    assert args.jobs["support-mini"]["usd"] == lines["training support-mini"].usd


def test_a_preview_before_the_capture_checks_what_it_can_and_leaves_the_rest_for_create() -> None:
    from pulumi.runtime.rpc import UNKNOWN

    from ftops.providers.files import TrainingFileProvider
    from ftops.providers.gate import EvaluationGateProvider

    where = {
        "endpoint": "http://127.0.0.1:8790/accounts/a",
        "auth": "env:K",
        "arm_id": "",
        "arm_endpoint": "",
    }
    pending = {"target": where, "path": UNKNOWN, "digest": UNKNOWN, "purpose": "fine-tune"}
    assert TrainingFileProvider().check({}, pending).failures == []
    missing = {**pending, "path": "/nowhere/train.jsonl", "digest": "0" * 64}
    assert [f.property for f in TrainingFileProvider().check({}, missing).failures] == ["path"]
    check = {"name": "teacher-agreement", "kind": "quality", "grader": "similarity", "threshold": 0.8}
    gate = {
        "target": where,
        "name": "m",
        "policy": {
            "confidence": 0.95,
            "repeats": 1,
            "temperature": 0.0,
            "fail_on_uncertainty": True,
            "max_regression": 0.0,
            "concurrency": 1,
        },
        "deployment": "m-candidate",
        "candidate_model": UNKNOWN,
    }
    assert EvaluationGateProvider().check({}, {**gate, "checks": [{**check, "path": UNKNOWN}]}).failures == []
    failures = (
        EvaluationGateProvider().check({}, {**gate, "checks": [{**check, "path": "/nowhere.jsonl"}]}).failures
    )
    assert [f.property for f in failures] == ["checks[0].path"]
