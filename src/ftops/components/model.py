"""`FineTunedModel`: one declared model, from its data to the deployment that serves it.

    TrainingFile(s) -> FineTuningJob -> candidate deployment -> EvaluationGate -> serving deployment

The serving deployment takes its model name from the gate's output, so Pulumi's dependency
graph itself guarantees that nothing serves a model that did not pass (and that nothing tries to
serve a model that is not trained yet). Deployments on one account are written one at a time
(`after`): Azure answers concurrent deployment writes with 409 RequestConflict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from ftops.catalog import resolve_base
from ftops.config import DeploymentSpec, Environment, GateSpec, ModelSpec, Sku
from ftops.providers.files import TrainingFile
from ftops.providers.gate import EvaluationGate
from ftops.providers.jobs import FineTuningJob
from ftops.providers.spec import sha256_file

# (resource name, deployment name, model (may be an Output), sku, the declared deployment, depends on, parent)
# -> the deployment resource: the emulator's for the local stack, azure-native's for Azure.
Deployer = Callable[
    [str, str, Any, Sku, DeploymentSpec, list[pulumi.Resource], pulumi.Resource], pulumi.Resource
]


@dataclass(frozen=True)
class Wiring:
    """What a FineTunedModel needs from the stack around it."""

    env: Environment
    root: Path
    target: dict[str, str]  # the provider target of the account (endpoint, auth, ARM id)
    deploy: Deployer
    evidence_dir: str
    protected_models: list[str]


def candidate_sku(env: Environment, base_model: str, deployment: DeploymentSpec) -> Sku:
    """The gate's candidate: what the environment says, else the cheapest way to serve the model:
    Developer tier (no hosting fee) where Azure offers it for this base model, else one unit."""
    if deployment.candidate_sku is not None:
        return deployment.candidate_sku
    if env.target == "azure" and "Developer" in resolve_base(base_model).deploy_skus:
        return Sku(name="Developer", capacity=50)
    return Sku(name=deployment.sku.name, capacity=min(deployment.sku.capacity, 5))


def gate_checks(gate: GateSpec | None, root: Path) -> list[dict[str, Any]]:
    if gate is None:
        return []
    return [
        {
            "name": q.name,
            "path": str(root / q.eval_set),
            "digest": sha256_file(str(root / q.eval_set)),
            "grader": q.grader,
            "threshold": q.threshold,
        }
        for q in gate.quality
    ]


class FineTunedModel(pulumi.ComponentResource):
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
        child = pulumi.ResourceOptions(parent=self)
        files = {}
        for role, path in (("training", spec.training_file), ("validation", spec.validation_file)):
            if path is not None:
                full = str(root / path)
                files[role] = TrainingFile(
                    f"{key}-{role}", target=wiring.target, path=full, digest=sha256_file(full), opts=child
                )
        validation = files.get("validation")
        self.job = FineTuningJob(
            f"{key}-job",
            inputs={
                "target": wiring.target,
                "name": key,
                "base_model": base_model,
                "training_file": files["training"].file_id,
                "training_digest": files["training"].digest,
                "validation_file": validation.file_id if validation else None,
                "validation_digest": validation.digest if validation else None,
                "method": {
                    "type": spec.method.type,
                    "hyperparameters": spec.method.hyperparameters.model_dump(mode="json"),
                },
                "seed": spec.seed,
                "suffix": spec.suffix,
                "training_type": spec.training_type,
                "checkpoint": spec.checkpoint,
                "wait_timeout_minutes": spec.wait_timeout_minutes,
                "attempt": spec.attempt,
                "retain": spec.retain_on_delete,
                "protected_models": wiring.protected_models,
            },
            opts=child,
        )
        self.gate = None
        self.serving = []
        self.last_deployment = after
        outputs: dict[str, Any] = {"job_id": self.job.job_id, "model": self.job.model}
        if deployments:
            first, first_spec = deployments[0]
            sku = candidate_sku(env, env.base_of(key), first_spec)
            chain = [after] if after is not None else []
            candidate = wiring.deploy(
                f"{key}-candidate", f"{first}-candidate", self.job.model, sku, first_spec, chain, self
            )
            self.gate = EvaluationGate(
                f"{key}-gate",
                inputs={
                    "target": wiring.target,
                    "name": key,
                    "deployment": f"{first}-candidate",
                    "candidate_model": self.job.model,
                    "checks": gate_checks(env.gates.get(key), root),
                    "seed": spec.seed or 0,
                    "evidence_dir": wiring.evidence_dir,
                    "environment": env.name,
                },
                opts=pulumi.ResourceOptions(parent=self, depends_on=[candidate]),
            )
            previous: pulumi.Resource = candidate
            for name, dep in deployments:
                # The serving model is the gate's output: only a model that passed can be served.
                previous = wiring.deploy(
                    f"{key}-{name}", name, self.gate.model, dep.sku, dep, [previous], self
                )
                self.serving.append(previous)
            self.last_deployment = previous
            outputs.update(
                deployments=[name for name, _ in deployments],
                serving_model=self.gate.model,
                evidence_digest=self.gate.evidence_digest,
            )
        self.register_outputs(outputs)
