"""The typed arguments of ftops' dynamic resources: one dataclass per resource, imported by the
components that declare resources and by the providers that read them back. Field names are the
wire names (the keys of the resource's inputs and state), so a key is spelled once, here.

Values may be Pulumi inputs (outputs of other resources); `inputs()` hands them to the engine
as they are, unresolved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import pulumi

from ftops.evaluation.request import GateRequest

Target = Mapping[str, pulumi.Input[str]]  # {"endpoint", "auth", "arm_id", "arm_endpoint"}
SPEC = {"spec": True}  # marks a job field that is part of what the job trains (its identity)


class Args:
    """What every resource's arguments share: their fields as the engine's inputs."""

    def inputs(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class FineTuningJobArgs(Args):
    target: Target
    name: str  # the model's key in the environment
    base_model: pulumi.Input[str] = field(metadata=SPEC)  # a base model, or the model it continues from
    training_file: pulumi.Input[str]
    training_digest: pulumi.Input[str] = field(metadata=SPEC)
    validation_file: pulumi.Input[str] | None
    validation_digest: pulumi.Input[str] | None = field(metadata=SPEC)
    method: dict[str, Any] = field(metadata=SPEC)
    seed: int | None = field(metadata=SPEC)
    suffix: str | None = field(metadata=SPEC)
    training_type: str | None = field(metadata=SPEC)
    checkpoint: str
    wait_timeout_minutes: int
    attempt: int = field(metadata=SPEC)  # the explicit retrain counter
    retain: bool  # keep the job and its model when the resource is deleted
    releases_dir: str  # read before a delete: a pinned model is never deleted

    @classmethod
    def spec_keys(cls) -> tuple[str, ...]:
        """The inputs that decide what the job trains: a change in any of them is a new job."""
        return tuple(f.name for f in fields(cls) if f.metadata.get("spec"))


@dataclass(frozen=True)
class ModelDeploymentArgs(Args):
    target: Target
    deployment_name: str
    model: Mapping[str, pulumi.Input[str]]  # {"name", "version", "source"?}
    sku: Mapping[str, Any]  # {"name", "capacity"}
    rai_policy: str | None
    version_upgrade_option: str


@dataclass(frozen=True)
class EvaluationGateArgs(Args):
    target: Target
    request: GateRequest  # on the wire as its own keys (name, checks, policy, baseline, seed, ...)
    deployment: str  # the candidate deployment
    candidate_model: pulumi.Input[str]
    capacity: Mapping[str, Any]  # {"sku", "capacity", "share"?}: the pace the evaluation keeps
    job: pulumi.Input[str] | None  # the job whose loss curve the summary shows
    evidence_dir: str
    evidence_store: Mapping[str, pulumi.Input[str]] | None
    # checkpoint: best_eval: one candidate deployment per kept checkpoint, {deployment, model, id,
    # step, epoch, final, train_loss, valid_loss}; the gate scores them all and decides on the best.
    candidates: pulumi.Input[list[dict[str, Any]]] | None = None
    # Each side's inference rates, {"candidate"|"baseline": {"input_per_million", "output_per_million"}}:
    # the evidence prices 1,000 requests of each (the student against its teacher, say).
    prices: Mapping[str, Mapping[str, float] | None] | None = None

    def inputs(self) -> dict[str, Any]:
        plain = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "request"}
        return {**plain, **self.request.wire()}


@dataclass(frozen=True)
class AuditEntryArgs(Args):
    audit: Mapping[str, Any]  # the log as `open_log` takes it
    environment: str
    model: str  # the model's key in the environment
    action: str  # train, gate or deploy
    resource: str | None  # the deployment or job the change applied to
    to_model: pulumi.Input[str]
    evidence_digest: pulumi.Input[str] | None
    details: Mapping[str, pulumi.Input[str]]


@dataclass(frozen=True)
class BudgetArgs(Args):
    environment: str
    training_limit_usd: float | None
    hosting_limit_usd: float | None
    override: Mapping[str, Any] | None  # {"reason", "up_to_usd"}
    jobs: Mapping[str, Mapping[str, Any]]  # model key -> {"identity", "usd", "basis"}
    hosting: Mapping[str, Any]  # {"usd_per_month", "basis"}
    audit: Mapping[str, Any] | None  # where an override's use is recorded


@dataclass(frozen=True)
class DistillationDatasetArgs(Args):
    target: Target  # the student's account
    name: str  # the student's key in the environment
    source: str  # "prompts" (ftops asks the teacher) or "stored" (production captured its answers)
    prompts_path: str | None
    prompts_digest: str | None  # sha256 of the prompt set: its identity, not its path
    stored: Mapping[str, Any] | None  # {"metadata", "model", "created_after", "created_before"}
    teacher_target: Target  # the teacher's account
    teacher: Mapping[str, Any]  # {"deployment", "model", "capacity"}
    sampling: Mapping[str, Any]  # {"temperature", "max_tokens", "seed"}
    max_examples: int | None
    quality_filter: Mapping[str, Any] | None  # {"grader", "min_similarity"}
    validation_split: float
    held_out: int
    student_base: str  # the student's base model: the rules its training file is validated with
    folder: str  # where the files and the journal are kept on this machine
    concurrency: int


@dataclass(frozen=True)
class ExperimentArgs(Args):
    target: Target
    request: GateRequest  # the model's gate: its quality checks score the variants
    variants: pulumi.Input[list[dict[str, Any]]]  # {label, setting, fraction, epochs, job, model, ...}
    sku: Mapping[str, Any]  # {"name", "capacity"}: each variant's short-lived evaluation deployment
    select: str  # the selection policy: cheapest_not_worse or best
    usd_per_million: float | None  # the training rate, for the report's cost column
    evidence_dir: str

    def inputs(self) -> dict[str, Any]:
        plain = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "request"}
        return {**plain, **self.request.wire()}
