"""`FineTunedModel`: one declared model, from its data to the deployment that serves it.

    TrainingFile(s) -> FineTuningJob -> candidate deployment -> EvaluationGate -> serving deployment

The serving deployment takes its model name from the gate's output, so Pulumi's dependency
graph itself guarantees that nothing serves a model that did not pass (and that nothing tries to
serve a model that is not trained yet). Deployments on one account are written one at a time
(`after`): Azure answers concurrent deployment writes with 409 RequestConflict.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from ftops.catalog import base_of
from ftops.components.distill import GateWithTeacher, distilled_files
from ftops.config.gates import gate_request
from ftops.config.schema import DeploymentSpec, Environment, ModelSpec, Reinforcement, ReleasePin, Sku
from ftops.config.skus import candidate_sku
from ftops.config.yamlfiles import RELEASES_DIR  # read by the job provider before it deletes a model
from ftops.evaluation import rft_graders
from ftops.providers.args import AuditEntryArgs, FineTuningJobArgs
from ftops.providers.audit import AuditEntry
from ftops.providers.files import TrainingFile
from ftops.providers.gate import EvaluationGate
from ftops.providers.jobs import FineTuningJob
from ftops.providers.spec import sha256_file


@dataclass(frozen=True)
class DeployRequest:
    """One deployment write; the deployer turns it into the emulator's or azure-native's resource."""

    resource_name: str
    deployment_name: str
    model: pulumi.Input[str]
    sku: Sku
    spec: DeploymentSpec
    depends_on: list[pulumi.Resource]
    parent: pulumi.Resource
    source: pulumi.Input[str] | None = None  # ARM id of the account the model was trained in


Deployer = Callable[[DeployRequest], pulumi.Resource]


@dataclass(frozen=True)
class Wiring:
    """What a FineTunedModel needs from the stack around it."""

    env: Environment
    root: Path
    target: Mapping[str, pulumi.Input[str]]  # the provider target of the account (endpoint, auth, ARM id)
    deploy: Deployer
    evidence_dir: str
    ready: tuple[pulumi.Resource, ...] = ()  # account, private endpoint, roles: before any data-plane call
    audit: Mapping[str, pulumi.Input[str]] | None = None  # where applied changes are recorded
    evidence_store: Mapping[str, pulumi.Input[str]] | None = None  # where gate evidence is uploaded

    def record(
        self,
        name: str,
        key: str,
        action: str,
        to_model: pulumi.Input[str],
        after: pulumi.Resource,
        parent: pulumi.Resource,
        *,
        resource: str | None = None,
        evidence_digest: pulumi.Input[str] | None = None,
        details: Mapping[str, pulumi.Input[str]] | None = None,
    ) -> None:
        """An audit record once `after` has been applied (nothing when the stack keeps no log)."""
        if self.audit is None:
            return
        AuditEntry(
            name,
            AuditEntryArgs(
                audit=dict(self.audit),
                environment=self.env.name,
                model=key,
                action=action,
                resource=resource,
                to_model=to_model,
                evidence_digest=evidence_digest,
                details=dict(details or {}),
            ),
            opts=pulumi.ResourceOptions(parent=parent, depends_on=[after]),
        )


def method_input(spec: ModelSpec, env: Environment) -> dict[str, Any]:
    """The method as the job provider takes it. Only hyperparameters the environment sets are part
    of it (and so of the job's identity): a default that changes in a later ftops must not look
    like a new spec and retrain everything. An RFT grader goes in whole, its `ref` resolved, so
    an edited grader (a python grader's source) is a new spec and plans a new job."""
    method = spec.method.model_dump(mode="json", exclude_unset=True, exclude={"type"})
    if isinstance(spec.method, Reinforcement):
        method["grader"] = rft_graders.canonical(env.grader(spec.method.grader))
    return {"type": spec.method.type, "hyperparameters": method.pop("hyperparameters", {}), **method}


def candidate_sku_for(env: Environment, model_id: str, deployment: DeploymentSpec) -> Sku:
    """The candidate SKU for a model known by its id (a release pin): its base is the id's prefix."""
    return candidate_sku(env, base_of(model_id), deployment)


@dataclass
class GatedServing:
    gate: EvaluationGate
    serving: list[pulumi.Resource]
    last: pulumi.Resource


def serve_through_gate(
    key: str,
    wiring: Wiring,
    parent: pulumi.Resource,
    *,
    model: pulumi.Input[str],
    candidate: Sku,
    deployments: list[tuple[str, DeploymentSpec]],
    after: pulumi.Resource | None,
    seed: int,
    provenance: Mapping[str, pulumi.Input[str]],
    source: pulumi.Input[str] | None = None,
    job: pulumi.Input[str] | None = None,
    agreement: Mapping[str, Any] | None = None,  # a distilled model's check against its teacher
) -> GatedServing:
    """candidate deployment -> EvaluationGate -> serving deployments, one write at a time.

    The serving deployments take the model from the gate's output: Pulumi cannot even start them
    before the gate passed, and a failing gate leaves what serves now untouched."""
    env = wiring.env
    first, first_spec = deployments[0]
    chain = [after] if after is not None else list(wiring.ready)
    previous = wiring.deploy(
        DeployRequest(
            f"{key}-candidate", f"{first}-candidate", model, candidate, first_spec, chain, parent, source
        )
    )
    gate = EvaluationGate(
        f"{key}-gate",
        GateWithTeacher(
            agreement=agreement,
            target=wiring.target,
            request=gate_request(env, key, wiring.root, first, seed),
            deployment=f"{first}-candidate",
            candidate_model=model,
            capacity={"sku": candidate.name, "capacity": candidate.capacity},
            job=job,
            evidence_dir=wiring.evidence_dir,
            evidence_store=wiring.evidence_store,
        ),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[previous]),
    )
    # What `ftops promote` reads when the stack's outputs are out of reach: the model that passed,
    # its evidence, and where it came from.
    wiring.record(
        f"{key}-gated",
        key,
        "gate",
        gate.model,
        gate,
        parent,
        evidence_digest=gate.evidence_digest,
        details=provenance,
    )
    serving = []
    for name, dep in deployments:
        previous = wiring.deploy(
            DeployRequest(f"{key}-{name}", name, gate.model, dep.sku, dep, [previous], parent, source)
        )
        wiring.record(
            f"{key}-{name}-deployed",
            key,
            "deploy",
            gate.model,
            previous,
            parent,
            resource=name,
            evidence_digest=gate.evidence_digest,
        )
        serving.append(previous)
    return GatedServing(gate, serving, previous)


class FineTunedModel(pulumi.ComponentResource):
    """A model this environment trains: its files, its job, and the gated chain that serves it."""

    provenance: dict[str, pulumi.Input[str]]  # job, data digest, account: what a release pin records
    job: FineTuningJob
    serving: list[pulumi.Resource]
    gate: EvaluationGate | None
    last_deployment: pulumi.Resource | None

    def __init__(
        self,
        key: str,
        spec: ModelSpec,
        wiring: Wiring,
        *,
        base_model: pulumi.Input[str],
        deployments: list[tuple[str, DeploymentSpec]],
        after: pulumi.Resource | None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ftops:models:FineTunedModel", key, None, opts)
        env, root = wiring.env, wiring.root
        child = pulumi.ResourceOptions(parent=self, depends_on=list(wiring.ready))
        distilled = distilled_files(key, spec, env, root, wiring.target, child) if spec.distill_from else None
        files = dict(distilled.files) if distilled else {}
        for role, path in (("training", spec.training_file), ("validation", spec.validation_file)):
            if path is not None:
                full = str(root / path)
                files[role] = TrainingFile(
                    f"{key}-{role}", target=wiring.target, path=full, digest=sha256_file(full), opts=child
                )
        validation = files.get("validation")
        self.job = FineTuningJob(
            f"{key}-job",
            FineTuningJobArgs(
                target=wiring.target,
                name=key,
                base_model=base_model,
                training_file=files["training"].file_id,
                training_digest=files["training"].digest,
                validation_file=validation.file_id if validation else None,
                validation_digest=validation.digest if validation else None,
                method=method_input(spec, env),
                seed=spec.seed,
                suffix=spec.suffix,
                training_type=spec.training_type,
                checkpoint=spec.checkpoint,
                wait_timeout_minutes=spec.wait_timeout_minutes,
                attempt=spec.attempt,
                retain=spec.retain_on_delete,
                releases_dir=RELEASES_DIR,
            ),
            opts=child,
        )
        self.provenance = provenance = {
            "job": self.job.job_id,
            "data_digest": files["training"].digest.apply(lambda d: f"sha256:{d}"),
            "account_id": wiring.target["arm_id"],
        }
        wiring.record(f"{key}-trained", key, "train", self.job.model, self.job, self, details=provenance)
        self.gate = None
        self.serving = []
        self.last_deployment = after
        outputs: dict[str, Any] = {"job_id": self.job.job_id, "model": self.job.model}
        if deployments:
            chain = serve_through_gate(
                key,
                wiring,
                self,
                model=self.job.model,
                candidate=candidate_sku(env, env.base_of(key), deployments[0][1]),
                deployments=deployments,
                after=after,
                seed=spec.seed or 0,
                provenance=provenance,
                job=self.job.job_id,
                agreement=distilled.agreement if distilled else None,
            )
            self.gate, self.serving, self.last_deployment = chain.gate, chain.serving, chain.last
            outputs.update(
                deployments=[name for name, _ in deployments],
                serving_model=self.gate.model,
                evidence_digest=self.gate.evidence_digest,
            )
        self.register_outputs(outputs)


class PromotedModel(pulumi.ComponentResource):
    """A model this environment takes from a release pin: no training, no upload. The pinned model
    is deployed from the account that trained it (`model.source`), gated again here on this
    environment's own candidate deployment, then served."""

    provenance: dict[str, pulumi.Input[str]]
    gate: EvaluationGate
    serving: list[pulumi.Resource]
    last_deployment: pulumi.Resource

    def __init__(
        self,
        key: str,
        pin: ReleasePin,
        wiring: Wiring,
        *,
        deployments: list[tuple[str, DeploymentSpec]],
        after: pulumi.Resource | None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ftops:models:PromotedModel", key, None, opts)
        self.provenance = {"job": pin.job, "data_digest": pin.data_digest, "account_id": pin.source_account}
        chain = serve_through_gate(
            key,
            wiring,
            self,
            model=pin.model,
            candidate=candidate_sku_for(wiring.env, pin.model, deployments[0][1]),
            deployments=deployments,
            after=after,
            seed=0,
            provenance=self.provenance,
            source=pin.source_account,
        )
        self.gate, self.serving, self.last_deployment = chain.gate, chain.serving, chain.last
        self.register_outputs(
            {
                "pinned_model": pin.model,
                "source_account": pin.source_account,
                "job": pin.job,
                "deployments": [name for name, _ in deployments],
                "serving_model": self.gate.model,
                "evidence_digest": self.gate.evidence_digest,
            }
        )
