"""`Experiment`: score the variants of a model (each its own FineTuningJob) with the gate's quality
checks and choose the one that goes on to the candidate deployment and the gate.

Azure answers only through a deployment, so each variant is deployed for its evaluation alone
(`<model>-exp-<n>`, the candidate's SKU: the Developer tier in development) and the deployment is
deleted as soon as its answers are in: the variants that lose never get a deployment that
outlives the evaluation, and their jobs and models are kept for the record. The answers go to
progress files, so a run cut off half-way asks only what is missing. The report (JSON, markdown,
charts) is written beside the gate's evidence; its digest is an output.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
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

from ftops.azure.connection import Target, same_account
from ftops.errors import FtopsError, GateFailedError
from ftops.evaluation import experiment_report
from ftops.evaluation.live import Candidate, score_candidates
from ftops.evaluation.request import GateRequest
from ftops.evaluation.selection import best_checkpoint, cheapest_not_worse
from ftops.providers.args import ExperimentArgs
from ftops.providers.base import PROVIDER_KEY, inputs_of
from ftops.providers.deployments import ModelDeploymentProvider
from ftops.providers.spec import canonical

OUTPUTS = (
    "model",
    "fine_tuned_model",
    "job_id",
    "label",
    "data_digest",
    "report_digest",
    "report",
    "selection",
)
POLICIES = ("cheapest_not_worse", "best")


def evaluation_deployment(name: str, index: int) -> str:
    return f"{name}-exp-{index}"


class ExperimentProvider(ResourceProvider):
    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = [CheckFailure(p, r) for p, r in Target.of(news).problems()]
        failures += [CheckFailure(p, r) for p, r in GateRequest.problems(news)]
        if not any(c.get("kind") == "quality" for c in news.get("checks") or []):
            failures.append(
                CheckFailure("checks", "variants are scored with quality checks: the gate has none")
            )
        if news.get("select") not in POLICIES:
            failures.append(CheckFailure("select", f"must be one of {', '.join(POLICIES)}"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        ignored = ("evidence_dir", "target", "sku")
        before = {k: v for k, v in inputs_of(olds, OUTPUTS).items() if k not in ignored}
        after = {k: v for k, v in inputs_of(news, OUTPUTS).items() if k not in ignored}
        for view in (before, after):
            view["checks"] = [{k: v for k, v in c.items() if k != "path"} for c in view.get("checks") or []]
        changed = [
            k for k in before.keys() | after.keys() if canonical(before.get(k)) != canonical(after.get(k))
        ]
        if not same_account(olds, news):
            changed.append("target")
        return DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def _run(self, props: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        request = GateRequest.from_wire(props)
        target = Target.of(props)
        name = str(props["name"])
        variants = [dict(v) for v in props["variants"]]  # annotated below; the inputs stay as given
        folder = Path(str(props["evidence_dir"]))
        sku = props.get("sku") or {}
        deployer = ModelDeploymentProvider()
        scored = []
        try:
            for index, variant in enumerate(variants):
                deployment = evaluation_deployment(name, index)
                inputs = {
                    "target": props["target"],
                    "deployment_name": deployment,
                    "model": {"name": variant["model"], "version": "1"},
                    "sku": {"name": sku.get("name"), "capacity": int(sku.get("capacity") or 1)},
                }
                pulumi.log.info(f"experiment {name}: evaluating {variant['label']} on {deployment}")
                deployer.create(inputs)
                try:
                    candidate = Candidate(
                        deployment,
                        str(variant["model"]),
                        int(inputs["sku"]["capacity"]),
                        str(sku.get("name")),
                        1.0,
                    )
                    (one,) = score_candidates(
                        request,
                        target,
                        [candidate],
                        [str(variant["label"])],
                        [index],
                        progress_dir=folder / "progress",
                    )
                finally:
                    with contextlib.suppress(FtopsError):  # a leftover is deleted by the next run's create
                        deployer.delete(deployment, inputs)
                scored.append(replace(one, cost=float(variant["billed_tokens"] or 0)))
        except FtopsError as exc:
            raise GateFailedError(
                f"experiment {name} could not score its variants: {exc.one_line()}"
            ) from None
        confidence = request.policy.confidence
        policy = str(props.get("select"))
        choice = (
            cheapest_not_worse(scored, confidence)
            if policy == "cheapest_not_worse"
            else best_checkpoint(scored, confidence)
        )
        rate = props.get("usd_per_million")
        for variant in variants:
            billed = int(variant["billed_tokens"] or 0)
            variant["usd"] = None if rate is None else round(billed * float(rate) / 1e6, 4)
        losses = {str(v["label"]): self._losses(target, str(v["job"])) for v in variants}
        record = experiment_report.report(name, choice, variants, losses, confidence, policy)
        digest, paths = experiment_report.write(canonical(record), folder / "experiments")
        chosen = next(v for v in variants if v["label"] == choice.chosen.label)
        pulumi.log.info(
            f"experiment {name}: {chosen['label']} chosen in {time.monotonic() - started:.0f} s; "
            + "; ".join(choice.notes)
        )
        return {
            "model": chosen["model"],
            "fine_tuned_model": chosen["model"],
            "job_id": chosen["job"],
            "label": chosen["label"],
            "data_digest": chosen.get("data_digest"),
            "report_digest": digest,
            "report": {k: str(v) for k, v in paths.items()},
            "selection": {"chosen": choice.chosen.label, "best": choice.best.label, "notes": choice.notes},
        }

    @staticmethod
    def _losses(target: Target, job: str) -> list[dict[str, float]]:
        client = target.client()
        try:
            files = client.fine_tuning.jobs.retrieve(job).result_files or []
            text = client.files.content(files[0]).text if files else ""
        except Exception as exc:  # the curves are illustration; the choice does not depend on them
            pulumi.log.warn(f"could not read the results file of job {job}: {exc}")
            return []
        return experiment_report.loss_rows(text)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(
            str(props["name"]) + "-experiment", {**inputs_of(props, OUTPUTS), **self._run(props)}
        )

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult({**inputs_of(news, OUTPUTS), **self._run(news)})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, {k: v for k, v in props.items() if k != PROVIDER_KEY})  # nothing remote


class Experiment(pulumi.dynamic.Resource):
    model: pulumi.Output[str]  # the chosen variant's model: what the candidate deployment takes
    fine_tuned_model: pulumi.Output[str]
    job_id: pulumi.Output[str]
    data_digest: pulumi.Output[str]
    report_digest: pulumi.Output[str]

    def __init__(
        self, resource_name: str, args: ExperimentArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        inputs = {**args.inputs(), **dict.fromkeys(OUTPUTS)}
        super().__init__(ExperimentProvider(), resource_name, inputs, opts)
