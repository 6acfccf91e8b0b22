"""An environment's gate for one model as the request `evaluation` runs: built here, once, for
`pulumi up` (the gate resource's inputs) and `ftops evaluate` alike."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ftops.config.schema import Environment, GateSpec, GraderRef, QualityCheck
from ftops.config.site import account_endpoint
from ftops.evaluation import rft_graders
from ftops.evaluation.request import Baseline, Check, GateRequest, Policy, Teacher
from ftops.evaluation.verdict import BUILTIN_SUITE, PYRIT_SUITE, suite

SAFETY_GRADER = "refusal"


def _digest(path: Path) -> str:
    with path.open("rb") as fh:
        return "sha256:" + hashlib.file_digest(fh, "sha256").hexdigest()


def _azure_grader(env: Environment | None, check: QualityCheck) -> tuple[str, str]:
    """(grader name, canonical JSON) of a `{ref: ...}` check: the same object the RFT job trains on."""
    if not isinstance(check.grader, GraderRef):
        return check.grader, ""
    if env is None:
        raise ValueError(f"check {check.name}: a grader ref needs its environment")
    grader = env.grader(check.grader)
    spec = json.dumps(rft_graders.canonical(grader), sort_keys=True, separators=(",", ":"))
    return f"azure:{check.grader.ref}", spec


def checks(gate: GateSpec | None, root: Path, env: Environment | None = None) -> tuple[Check, ...]:
    """Each eval set goes with the digest the plan saw: a set edited between plan and apply stops
    the gate instead of grading against other items."""
    if gate is None:
        return ()
    graders = {q.name: _azure_grader(env, q) for q in gate.quality}
    out = [
        Check(
            name=q.name,
            kind="quality",
            grader=graders[q.name][0],
            threshold=q.threshold,
            path=str(root / q.eval_set),
            digest=_digest(root / q.eval_set),
            categories=(),
            min_similarity=q.min_similarity,
            judge_deployment=q.judge_deployment or "",
            grader_spec=graders[q.name][1],
            pass_score=q.pass_score,
        )
        for q in gate.quality
    ]
    if gate.safety is not None:
        named = gate.safety.suite
        path = named if named in (BUILTIN_SUITE, PYRIT_SUITE) else str(root / named)
        out.append(
            Check(
                name="safety",
                kind="safety",
                grader=SAFETY_GRADER,
                threshold=gate.safety.threshold,
                path=path,
                digest=suite(path).digest,
                categories=tuple(gate.safety.categories or ()),
                min_similarity=0.0,  # refusals are graded, not similarity
                judge_deployment="",
                grader_spec="",
                pass_score=None,
            )
        )
    return tuple(out)


def gate_request(env: Environment, key: str, root: Path, serving: str, seed: int) -> GateRequest:
    """The gate of model `key`; `serving` is the deployment a `baseline: serving` compares with.
    A model without a gate gets one with no checks, which the gate resource refuses by name."""
    spec = env.gates.get(key)
    settings = spec or GateSpec(safety=None)
    kind = env.gate_baseline(key)
    return GateRequest(
        name=key,
        environment=env.name,
        checks=checks(spec, root, env),
        policy=Policy(
            confidence=settings.confidence,
            repeats=settings.repeats,
            temperature=settings.temperature,
            fail_on_uncertainty=settings.fail_on_uncertainty,
            max_regression=settings.max_regression,
            concurrency=settings.concurrency,
            seed=seed,
        ),
        baseline=baseline_of(env, key, kind, settings, serving),
    )


def baseline_of(env: Environment, key: str, kind: str, settings: GateSpec, serving: str) -> Baseline:
    if kind == "teacher":
        distill = env.models[key].distill_from
        if distill is None:  # the schema allows baseline: teacher only on a distilled model
            raise ValueError(f"model {key} has no teacher")
        teacher = distill.teacher
        endpoint = account_endpoint(env, teacher.account) if teacher.account else ""
        return Baseline("teacher", teacher.deployment, Teacher(teacher.model, teacher.capacity, endpoint))
    if kind == "serving":
        return Baseline("serving", serving, None)
    if kind == "base":
        return Baseline("base", settings.baseline_deployment, None)
    return Baseline("none", None, None)
