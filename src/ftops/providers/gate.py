"""`EvaluationGate`: evaluate the model on its candidate deployment; stop `pulumi up` if it fails.

The serving deployment takes its model from this resource's `model` output, so a model that did
not pass cannot be served: the gate is structural, not advisory. Its evidence (every item,
answer and grade) is written as JSON whose sha256 is the `evidence_digest` a release pin carries.
"""

from __future__ import annotations

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

from ftops.auditlog import context
from ftops.azure.connection import Target, same_account
from ftops.errors import FtopsError, GateFailedError
from ftops.evaluation import evidence_files
from ftops.evaluation.evidence_store import upload
from ftops.evaluation.graders import registry
from ftops.evaluation.live import Candidate, evaluate, score_candidates
from ftops.evaluation.request import GateRequest
from ftops.evaluation.selection import best_checkpoint
from ftops.evaluation.usage import prices_by_side
from ftops.evaluation.verdict import BUILTIN_SUITE, PYRIT_SUITE
from ftops.providers.args import EvaluationGateArgs
from ftops.providers.base import PROVIDER_KEY, inputs_of, unknown
from ftops.providers.spec import canonical

OUTPUTS = (
    "model",
    "scores",
    "evidence_digest",
    "evidence_path",
    "evidence_url",
    "verdict",
    "commit",
    "checkpoint",
    "selection",
)


class EvaluationGateProvider(ResourceProvider):
    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = [CheckFailure(p, r) for p, r in Target.of(news).problems()]
        failures += [CheckFailure(p, r) for p, r in GateRequest.problems(news)]
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
            if unknown(named):
                continue  # a distilled model's held-out set: written by its dataset, checked when run
            if named not in (BUILTIN_SUITE, PYRIT_SUITE) and not os.path.isfile(str(named or "")):
                failures.append(CheckFailure(f"checks[{i}].path", f"no such eval set '{check.get('path')}'"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # A change re-runs the evaluation in place (the gate's identity is its name). Where the files
        # sit on this machine is not a change: the eval sets are compared by digest, so running from
        # another checkout (CI, a laptop) does not pay for the evaluation again. Neither is where the
        # evidence is kept, nor the candidate's capacity (it only sets the pace).
        def comparable(props: dict[str, Any]) -> dict[str, Any]:
            # Nor are the prices: they price the report, and decide nothing.
            ignored = ("evidence_dir", "evidence_store", "capacity", "target", "prices")
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
            pace = props.get("capacity") or {}
            candidate = Candidate(
                str(props["deployment"]),
                str(props["candidate_model"]),
                int(pace.get("capacity") or 0),
                str(pace.get("sku") or ""),
                float(pace.get("share") or 1),
            )
            request = GateRequest.from_wire(props)
            progress = folder / "progress" if folder else None
            selection: dict[str, Any] | None = None
            if props.get("candidates"):
                candidate, selection = choose_checkpoint(request, props, candidate, progress)
            evidence = evaluate(
                request,
                Target.of(props),
                candidate,
                job=props.get("job"),
                progress_dir=progress,
                prices=prices_by_side(props.get("prices")),
            )
            if selection is not None:
                evidence["checkpoints"] = selection
        except FtopsError as exc:
            raise GateFailedError(
                f"gate {props.get('name', 'gate')} could not decide: {exc.one_line()}"
            ) from None
        digest, _ = evidence_files.digest_of(evidence)
        path = url = ""
        if folder is not None:
            digest, written = evidence_files.write(evidence, folder)
            path = str(written)
            if props.get("evidence_store"):
                url = upload(
                    props["evidence_store"], written, str(props.get("environment")), str(props.get("name"))
                )
        scores = {c["name"]: c["summary"]["pass_rate"] for c in evidence["checks"]}
        chosen = (selection or {}).get("chosen") or {}
        name = props.get("name", "gate")
        if evidence["failures"]:
            raise GateFailedError(
                f"gate {name} failed for model {candidate.model} on deployment "
                f"{candidate.deployment}: " + "; ".join(evidence["failures"]) + f" (evidence {digest})"
            )
        if selection is not None:
            pulumi.log.info(f"gate {name}: best_eval: " + "; ".join(selection["notes"]))
        pulumi.log.info(
            f"gate {name} passed for {candidate.model} in {time.monotonic() - started:.0f} s: "
            + ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
        )
        return {
            "model": candidate.model,
            # The checkpoint that serves when best_eval chose one before the final model ("" else).
            "checkpoint": "" if chosen.get("final", True) else str(chosen.get("id") or candidate.model),
            "selection": selection,
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


def choose_checkpoint(
    request: GateRequest, props: dict[str, Any], final: Candidate, progress: Path | None
) -> tuple[Candidate, dict[str, Any]]:
    """`checkpoint: best_eval`: score each kept checkpoint on its own candidate deployment with the
    quality checks, and return the best as the candidate the gate then decides on (against the
    baseline, with every check, exactly as for a single model), with the record of the choice."""
    wired = sorted(props["candidates"], key=lambda c: int(c["step"]))
    candidates = [
        Candidate(str(c["deployment"]), str(c["model"]), final.capacity, final.sku, final.share)
        for c in wired
    ]
    labels = [f"epoch {int(c['epoch'])} (step {int(c['step'])})" for c in wired]
    scored = score_candidates(
        request, Target.of(props), candidates, labels, [int(c["step"]) for c in wired], progress_dir=progress
    )
    choice = best_checkpoint(scored, request.policy.confidence)
    index = scored.index(choice.chosen)
    chosen = {**{k: wired[index][k] for k in ("id", "step", "epoch", "final")}, "label": labels[index]}
    rows = [
        {**row, **{k: c.get(k) for k in ("id", "step", "epoch", "final", "train_loss", "valid_loss")}}
        for row, c in zip(choice.rows, wired, strict=True)
    ]
    record = {"policy": "best_eval", "chosen": chosen, "notes": choice.notes, "candidates": rows}
    return candidates[index], canonical(record)


class EvaluationGate(pulumi.dynamic.Resource):
    model: pulumi.Output[str]  # the model that passed: what the serving deployment takes
    scores: pulumi.Output[dict[str, float]]
    evidence_digest: pulumi.Output[str]
    commit: pulumi.Output[str]
    checkpoint: pulumi.Output[str]

    def __init__(
        self, resource_name: str, args: EvaluationGateArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        inputs = {**args.inputs(), **dict.fromkeys(OUTPUTS)}
        super().__init__(EvaluationGateProvider(), resource_name, inputs, opts)
