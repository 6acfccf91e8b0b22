"""Evaluating deployments that exist: what they serve and at what pace, the baseline to compare
with, the judge, and the run of a whole `GateRequest` into its evidence record. `pulumi up`
(the gate provider) and `ftops evaluate` both come through `evaluate`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pulumi

from ftops.azure.connection import Target, deployed
from ftops.catalog import base_of
from ftops.errors import GateError
from ftops.evaluation.request import TEACHER_AGREEMENT, Baseline, GateRequest
from ftops.evaluation.runner import Limits, Pacer
from ftops.evaluation.selection import Scored
from ftops.evaluation.usage import Prices
from ftops.evaluation.verdict import Endpoint, evidence_record, loss_curve, run_check
from ftops.ratelimit import limits_for

SERVING_SHARE = 0.5  # of a deployment that serves live traffic: the gate must not crowd users out


def pace(capacity: Any, model: str, sku: str = "", share: float = 1.0) -> Limits | None:
    """The pace for a deployment. Provisioned (PTU) capacity is not tokens per minute: there the
    runner paces by the service's 429s alone."""
    if not capacity or sku.lower().startswith("provisioned"):
        return None
    tpm, rpm = limits_for(int(capacity), model)
    return Limits(tpm * share, rpm * share)


@dataclass(frozen=True)
class Candidate:
    """The deployment a gate evaluates, and the share of its capacity the evaluation may use."""

    deployment: str
    model: str
    capacity: int
    sku: str
    share: float


def baseline_of(baseline: Baseline, target: Target, candidate: str) -> tuple[Endpoint | None, str]:
    """The deployment to compare against, and a note on what was chosen and why."""
    kind, name = baseline.kind, baseline.deployment or ""
    if kind == "none" or not name:
        return None, "none"
    if baseline.teacher is not None:
        # Declared, not read: the teacher may serve in an account whose deployments this identity
        # may call but not list. It serves live traffic, so the gate takes a share of its pace.
        teacher = baseline.teacher
        other = replace(target, endpoint=teacher.endpoint, arm_id="") if teacher.endpoint else None
        limits = pace(teacher.capacity, base_of(teacher.model), "", SERVING_SHARE)
        return Endpoint(
            name,
            teacher.model,
            limits,
            role="baseline (teacher)",
            client=other.client() if other else None,
        ), kind
    found = deployed(target, name)
    if found is None:
        if kind == "serving":
            return None, f"serving: nothing serves on {name} yet"
        raise GateError(
            f"baseline deployment {name} does not exist",
            fix="deploy the base model there or set the gate's baseline to none",
        )
    if found.model == candidate:
        return None, f"{kind}: {name} already serves the candidate"
    limits = pace(found.capacity, base_of(found.model), found.sku, SERVING_SHARE)
    return Endpoint(name, found.model, limits, role=f"baseline ({kind})"), kind


def training_of(client: Any, job: str | None) -> dict[str, Any] | None:
    """The job's loss curve from its results file, for the summary; None when there is none."""
    if not job:
        return None
    try:
        files = client.fine_tuning.jobs.retrieve(job).result_files or []
        text = client.files.content(files[0]).text if files else ""
    except Exception as exc:  # the curve is illustration; the gate must not fail for want of it
        pulumi.log.warn(f"could not read the results file of job {job}: {exc}")
        return None
    return {"job": job, "loss": [list(point) for point in loss_curve(text)]}


def evaluate(
    request: GateRequest,
    target: Target,
    candidate: Candidate,
    *,
    job: str | None = None,
    progress_dir: Path | None = None,
    on_answer: Callable[[str, int, int], None] | None = None,
    prices: Mapping[str, Prices | None] | None = None,
) -> dict[str, Any]:
    """Run every check against the candidate deployment (and the baseline); the evidence record.
    `job`: the fine-tuning job whose loss curve the summary shows; `prices`: each side's inference
    rates ("candidate", "baseline"), for the cost per 1k requests the evidence reports."""
    client = target.client()
    model = candidate.model
    limits = pace(candidate.capacity, base_of(model), candidate.sku, candidate.share)
    endpoint = Endpoint(candidate.deployment, model, limits)
    baseline, baseline_kind = baseline_of(request.baseline, target, model)
    policy = request.policy
    outcomes = []
    last_logged: dict[str, int] = {}

    def log_progress(label: str, done: int, total: int) -> None:
        step = max(1, total // 5)
        if done == total or done // step != last_logged.get(label, -1):
            last_logged[label] = done // step
            pulumi.log.info(f"gate {request.name}: {label} {done}/{total} answers")

    pacers: dict[str, Pacer] = {}
    for check in request.checks:
        judge = judge_of(client, check.judge_deployment) if check.judge_deployment else None
        paired = None if baseline_kind == "teacher" and check.name == TEACHER_AGREEMENT else baseline
        outcomes.append(
            run_check(
                check,
                policy,
                client,
                endpoint,
                paired,
                progress_dir,
                judge,
                on_answer or log_progress,
                pacers,
            )
        )
    return evidence_record(
        gate=request.name,
        environment=request.environment or None,
        candidate=endpoint,
        baseline=baseline,
        baseline_kind=baseline_kind,
        policy=policy,
        outcomes=outcomes,
        training=training_of(client, job),
        prices=prices,
    )


def judge_of(client: Any, deployment: str) -> Any:
    import openai

    options: dict[str, Any] = {"seed": 0, "max_completion_tokens": 60, "temperature": 0}

    def ask(messages: list[dict[str, str]]) -> str:
        try:
            reply = client.chat.completions.create(model=deployment, messages=messages, **options)
        except openai.BadRequestError as exc:
            if "temperature" not in str(exc.message) or "temperature" not in options:
                raise GateError(
                    f"judge deployment {deployment}: {exc.message}", fix="check the judge"
                ) from None
            options.pop("temperature")  # o-series judges take none; ask again without it
            return ask(messages)
        except openai.APIStatusError as exc:
            raise GateError(
                f"judge deployment {deployment}: HTTP {exc.status_code}",
                fix="check gates.<model>.quality[].judge_deployment names a deployment in this account",
            ) from None
        return str(reply.choices[0].message.content or "")

    return ask


def score_candidates(
    request: GateRequest,
    target: Target,
    candidates: list[Candidate],
    labels: list[str],
    orders: list[int],
    *,
    progress_dir: Path | None = None,
) -> list[Scored]:
    """Each candidate scored with the gate's quality checks alone (no baseline, no safety): what
    `checkpoint: best_eval` chooses by. The answers go to the same progress files the gate keeps,
    so the full gate on the chosen candidate afterwards asks nothing twice."""
    client = target.client()
    quality = [c for c in request.checks if c.kind == "quality"]
    if not quality:
        raise GateError(
            f"gate {request.name}: best_eval scores checkpoints with quality checks, and it has none",
            fix="declare gates.<model>.quality, or use checkpoint: final",
        )
    scored = []
    pacers: dict[str, Pacer] = {}
    for candidate, label, order in zip(candidates, labels, orders, strict=True):
        limits = pace(candidate.capacity, base_of(candidate.model), candidate.sku, candidate.share)
        endpoint = Endpoint(candidate.deployment, candidate.model, limits, role=label)
        rows: list[list[bool]] = []
        per_check = {}

        def log_progress(what: str, done: int, total: int, label: str = label) -> None:
            if done == total:
                pulumi.log.info(f"gate {request.name}: {label}: {what} {done}/{total} answers")

        for check in quality:
            judge = judge_of(client, check.judge_deployment) if check.judge_deployment else None
            outcome = run_check(
                check, request.policy, client, endpoint, None, progress_dir, judge, log_progress, pacers
            )
            rows += outcome.candidate
            answers = sum(len(r) for r in outcome.candidate)
            per_check[check.name] = sum(map(sum, outcome.candidate)) / answers if answers else 0.0
        scored.append(Scored(label, candidate.model, candidate.deployment, order, rows, per_check))
    return scored
