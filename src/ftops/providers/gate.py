"""`EvaluationGate`: evaluate the model on its candidate deployment; stop `pulumi up` if it fails.

The serving deployment takes its model from this resource's `model` output, so a model that did
not pass cannot be served: the gate is structural, not advisory. Its evidence (every item,
answer and grade) is written as JSON whose sha256 is the `evidence_digest` a release pin carries.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

from ftops.auditlog import context
from ftops.azure.connection import Target, arm_call, deployment_url, same_account
from ftops.catalog import base_of
from ftops.errors import FtopsError
from ftops.evaluation import report
from ftops.evaluation.evidence_store import upload
from ftops.evaluation.gate import (
    BUILTIN_SUITE,
    PYRIT_SUITE,
    Check,
    Endpoint,
    GateError,
    Policy,
    evidence_record,
    loss_curve,
    run_check,
)
from ftops.evaluation.graders import registry
from ftops.evaluation.runner import Limits, Pacer
from ftops.providers.base import PROVIDER_KEY, inputs_of
from ftops.ratelimit import limits_for

OUTPUTS = ("model", "scores", "evidence_digest", "evidence_path", "evidence_url", "verdict", "commit")
SAFETY_GRADER = "refusal"


class GateFailedError(Exception):
    """The candidate did not clear a threshold; the message names metric, threshold and value."""


def checks_of(props: dict[str, Any]) -> list[Check]:
    return [
        Check(
            name=str(c["name"]),
            kind=str(c.get("kind") or "quality"),
            grader=str(c["grader"]),
            threshold=float(c["threshold"]),
            eval_set=str(c["path"]),
            digest=str(c.get("digest") or ""),
            categories=tuple(c.get("categories") or ()),
            min_similarity=float(c.get("min_similarity") or 0.75),
            judge_deployment=str(c.get("judge_deployment") or ""),
        )
        for c in props.get("checks") or []
    ]


def policy_of(props: dict[str, Any]) -> Policy:
    raw = props.get("policy") or {}
    return Policy(
        confidence=float(raw.get("confidence", 0.95)),
        repeats=int(raw.get("repeats", 1)),
        temperature=float(raw.get("temperature", 0.0)),
        seed=int(props.get("seed") or 0),
        fail_on_uncertainty=bool(raw.get("fail_on_uncertainty", True)),
        max_regression=float(raw.get("max_regression", 0.0)),
        concurrency=int(raw.get("concurrency", 8)),
    )


SERVING_SHARE = 0.5  # of a deployment that serves live traffic: the gate must not crowd users out


def _limits(capacity: Any, model: str, sku: str = "", share: float = 1.0) -> Limits | None:
    """The pace for a deployment. Provisioned (PTU) capacity is not tokens per minute: there the
    runner paces by the service's 429s alone."""
    if not capacity or sku.lower().startswith("provisioned"):
        return None
    tpm, rpm = limits_for(int(capacity), model)
    return Limits(tpm * share, rpm * share)


@dataclass(frozen=True)
class Deployed:
    model: str
    capacity: int
    sku: str


def deployed(target: Target, name: str) -> Deployed | None:
    """What a deployment serves now and at what capacity; None when there is no such deployment."""
    response = arm_call("GET", deployment_url(target, name), target.arm_headers())
    if response.status_code == 404:
        return None
    if response.status_code >= 400:
        detail = " ".join(response.text[:200].split())
        raise GateError(
            f"reading deployment {name}: HTTP {response.status_code} {detail}",
            fix="check that the deployment exists and this identity may read it",
        )
    body = response.json()
    sku = body.get("sku") or {}
    return Deployed(
        str(body["properties"]["model"]["name"]), int(sku.get("capacity") or 0), str(sku.get("name", ""))
    )


def baseline_of(props: dict[str, Any], target: Target, candidate: str) -> tuple[Endpoint | None, str]:
    """The deployment to compare against, and a note on what was chosen and why."""
    raw = props.get("baseline") or {}
    kind, name = str(raw.get("kind") or "none"), str(raw.get("deployment") or "")
    if kind == "none" or not name:
        return None, "none"
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
    limits = _limits(found.capacity, base_of(found.model), found.sku, SERVING_SHARE)
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
    props: dict[str, Any],
    progress_dir: Path | None = None,
    on_answer: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Run every check against the candidate deployment (and the baseline); the evidence record."""
    target = Target.of(props)
    client = target.client()
    model = str(props["candidate_model"])
    pace = props.get("capacity") or {}
    limits = _limits(
        pace.get("capacity"), base_of(model), str(pace.get("sku") or ""), float(pace.get("share") or 1)
    )
    candidate = Endpoint(str(props["deployment"]), model, limits)
    baseline, baseline_kind = baseline_of(props, target, model)
    policy = policy_of(props)
    outcomes = []
    last_logged: dict[str, int] = {}

    def log_progress(label: str, done: int, total: int) -> None:
        step = max(1, total // 5)
        if done == total or done // step != last_logged.get(label, -1):
            last_logged[label] = done // step
            pulumi.log.info(f"gate {props.get('name')}: {label} {done}/{total} answers")

    pacers: dict[str, Pacer] = {}
    for check in checks_of(props):
        judge = _judge(client, check.judge_deployment) if check.judge_deployment else None
        outcomes.append(
            run_check(
                check,
                policy,
                client,
                candidate,
                baseline,
                progress_dir,
                judge,
                on_answer or log_progress,
                pacers,
            )
        )
    return evidence_record(
        gate=str(props.get("name", "gate")),
        environment=props.get("environment"),
        candidate=candidate,
        baseline=baseline,
        baseline_kind=baseline_kind,
        policy=policy,
        outcomes=outcomes,
        training=training_of(client, props.get("job")),
    )


def _judge(client: Any, deployment: str) -> Any:
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


class EvaluationGateProvider(ResourceProvider):
    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = [CheckFailure(p, r) for p, r in Target.of(news).problems()]
        if not news.get("checks"):
            failures.append(
                CheckFailure(
                    "checks",
                    "a gate needs at least one check: one with nothing to check would let any model through",
                )
            )
        for key in ("deployment", "candidate_model"):
            if news.get(key) == "":  # an unknown (preview) is not a str; empty is a mistake
                failures.append(CheckFailure(key, "is required"))
        graders = registry()
        for i, check in enumerate(news.get("checks") or []):
            if check.get("grader") not in graders:
                failures.append(CheckFailure(f"checks[{i}].grader", f"must be one of {', '.join(graders)}"))
            threshold = check.get("threshold")
            if not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
                failures.append(CheckFailure(f"checks[{i}].threshold", "must be a number from 0 to 1"))
            named = check.get("path")
            if named not in (BUILTIN_SUITE, PYRIT_SUITE) and not os.path.isfile(str(named or "")):
                failures.append(CheckFailure(f"checks[{i}].path", f"no such eval set '{check.get('path')}'"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # A change re-runs the evaluation in place (the gate's identity is its name). Where the files
        # sit on this machine is not a change: the eval sets are compared by digest, so running from
        # another checkout (CI, a laptop) does not pay for the evaluation again. Neither is where the
        # evidence is kept, nor the candidate's capacity (it only sets the pace).
        def comparable(props: dict[str, Any]) -> dict[str, Any]:
            ignored = ("evidence_dir", "evidence_store", "capacity", "target")
            view = {k: v for k, v in inputs_of(props, OUTPUTS).items() if k not in ignored}
            view["checks"] = [{k: v for k, v in c.items() if k != "path"} for c in props.get("checks") or []]
            view["policy"] = {k: v for k, v in (props.get("policy") or {}).items() if k != "concurrency"}
            return view

        before, after = comparable(olds), comparable(news)
        changed = [k for k in before.keys() | after.keys() if before.get(k) != after.get(k)]
        if not same_account(olds, news):  # how it authenticates, or a trailing slash, is no change
            changed.append("target")
        return DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def _run(self, props: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        folder = Path(str(props["evidence_dir"])) if props.get("evidence_dir") else None
        try:
            evidence = evaluate(props, folder / "progress" if folder else None)
        except (GateError, FtopsError) as exc:
            message = exc.one_line() if isinstance(exc, FtopsError) else str(exc)
            raise GateFailedError(f"gate {props.get('name', 'gate')} could not decide: {message}") from None
        digest, _ = report.digest_of(evidence)
        path = url = ""
        if folder is not None:
            digest, written = report.write(evidence, folder)
            path = str(written)
            if props.get("evidence_store"):
                url = upload(
                    props["evidence_store"], written, str(props.get("environment")), str(props.get("name"))
                )
        scores = {c["name"]: c["summary"]["pass_rate"] for c in evidence["checks"]}
        name = props.get("name", "gate")
        if evidence["failures"]:
            raise GateFailedError(
                f"gate {name} failed for model {props['candidate_model']} on deployment "
                f"{props['deployment']}: " + "; ".join(evidence["failures"]) + f" (evidence {digest})"
            )
        pulumi.log.info(
            f"gate {name} passed for {props['candidate_model']} in {time.monotonic() - started:.0f} s: "
            + ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
        )
        return {
            "model": props["candidate_model"],
            "scores": scores,
            "evidence_digest": digest,
            "evidence_path": path,
            "evidence_url": url,
            "verdict": "pass",
            # The commit whose program this verdict came from: what a promotion pins as its source,
            # not whatever commit happens to be checked out when it promotes.
            "commit": context()["commit"] or "",
        }

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(str(props.get("name", "gate")), {**inputs_of(props, OUTPUTS), **self._run(props)})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult({**inputs_of(news, OUTPUTS), **self._run(news)})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(
            id_, {k: v for k, v in props.items() if k != PROVIDER_KEY}
        )  # nothing remote to read


class EvaluationGate(pulumi.dynamic.Resource):
    model: pulumi.Output[str]  # the model that passed: what the serving deployment takes
    scores: pulumi.Output[dict[str, float]]
    evidence_digest: pulumi.Output[str]
    commit: pulumi.Output[str]

    def __init__(
        self, resource_name: str, *, inputs: dict[str, Any], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(EvaluationGateProvider(), resource_name, {**inputs, **dict.fromkeys(OUTPUTS)}, opts)
