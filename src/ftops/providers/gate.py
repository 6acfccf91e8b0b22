"""`EvaluationGate`: evaluate the model on its candidate deployment; stop `pulumi up` if it fails.

The serving deployment takes its model from this resource's `model` output, so a model that did
not pass cannot be served: the gate is structural, not advisory. Its evidence (every item,
answer and grade) is written as JSON whose sha256 is the `evidence_digest` a release pin carries.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
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

from ftops.evaluation.evalset import load
from ftops.evaluation.graders import GRADERS
from ftops.providers.base import PROVIDER_KEY, inputs_of
from ftops.providers.connection import Target
from ftops.providers.spec import sha256_file

OUTPUTS = ("model", "scores", "evidence_digest", "evidence_path", "verdict")
DEFAULT_MAX_TOKENS = 256


class GateFailedError(Exception):
    """The candidate did not clear a threshold; the message names metric, threshold and value."""


def evaluate(props: dict[str, Any]) -> dict[str, Any]:
    """Run every check against the candidate deployment; the evidence record and the outputs."""
    client = Target.of(props).client()
    deployment, model = str(props["deployment"]), str(props["candidate_model"])
    seed = int(props.get("seed") or 0)
    reasoning = model.startswith(("o1", "o3", "o4"))
    checks, failures = [], []
    for check in props.get("checks") or []:
        path = Path(check["path"])
        actual = sha256_file(str(path))
        if actual != check["digest"]:
            raise GateFailedError(f"eval set {path} changed after the plan was made; run `pulumi up` again")
        grader = GRADERS[check["grader"]]
        results = []
        for index, item in enumerate(load(path)):
            options: dict[str, Any] = {
                "seed": seed,
                "max_completion_tokens": int(item.get("max_tokens", DEFAULT_MAX_TOKENS)),
            }
            if not reasoning:  # o-series models take no temperature
                options["temperature"] = 0
            reply = client.chat.completions.create(model=deployment, messages=item["messages"], **options)

            answer = reply.choices[0].message.content or ""
            grade = grader.grade(answer, item)
            results.append(
                {
                    "index": index,
                    "answer": answer,
                    "passed": grade.passed,
                    "score": grade.score,
                    "detail": grade.detail,
                }
            )
        passed = sum(1 for r in results if r["passed"])
        rate = passed / len(results)
        summary = {
            "name": check["name"],
            "eval_set": str(path),
            "eval_set_digest": f"sha256:{actual}",
            "grader": grader.name,
            "grader_version": grader.version,
            "threshold": float(check["threshold"]),
            "pass_rate": rate,
            "passed": passed,
            "items": len(results),
            "results": results,
        }
        checks.append(summary)
        if rate < float(check["threshold"]):
            failures.append(
                f"{check['name']} ({grader.name} on {path.name}): pass rate {rate:.3f} < threshold "
                f"{float(check['threshold']):.3f} ({passed}/{len(results)} items)"
            )
    evidence = {
        "format": "ftops.evidence/1",
        "model": model,
        "deployment": deployment,
        "environment": props.get("environment"),
        "seed": seed,
        "checks": checks,
        "verdict": "fail" if failures else "pass",
        "failures": failures,
    }
    return evidence


def _digest(evidence: dict[str, Any]) -> tuple[str, bytes]:
    body = json.dumps(evidence, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(body).hexdigest(), body


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
        for i, check in enumerate(news.get("checks") or []):
            if check.get("grader") not in GRADERS:
                failures.append(CheckFailure(f"checks[{i}].grader", f"must be one of {', '.join(GRADERS)}"))
            threshold = check.get("threshold")
            if not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
                failures.append(CheckFailure(f"checks[{i}].threshold", "must be a number from 0 to 1"))
            if not os.path.isfile(str(check.get("path", ""))):
                failures.append(CheckFailure(f"checks[{i}].path", f"no such eval set '{check.get('path')}'"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # A change re-runs the evaluation in place (the gate's identity is its name). Where the files
        # sit on this machine is not a change: the eval sets are compared by digest, so running from
        # another checkout (CI, a laptop) does not pay for the evaluation again.
        def comparable(props: dict[str, Any]) -> dict[str, Any]:
            view = {k: v for k, v in inputs_of(props, OUTPUTS).items() if k != "evidence_dir"}
            view["checks"] = [{k: v for k, v in c.items() if k != "path"} for c in props.get("checks") or []]
            return view

        before, after = comparable(olds), comparable(news)
        changed = [k for k in after if before.get(k) != after.get(k)]
        return DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def _run(self, props: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        evidence = evaluate(props)
        digest, body = _digest(evidence)
        path = ""
        if props.get("evidence_dir"):
            folder = Path(str(props["evidence_dir"]))
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / f"{digest.removeprefix('sha256:')}.json"
            target.write_bytes(body)
            path = str(target)
        scores = {c["name"]: c["pass_rate"] for c in evidence["checks"]}
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
            "verdict": "pass",
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

    def __init__(
        self, resource_name: str, *, inputs: dict[str, Any], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(EvaluationGateProvider(), resource_name, {**inputs, **dict.fromkeys(OUTPUTS)}, opts)
