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
from functools import partial
from pathlib import Path
from typing import Any

import pulumi

from ftops.catalog import base_of
from ftops.components.distill import GateWithTeacher, distilled_files
from ftops.config.experiments import method_for
from ftops.config.experiments import of as experiment_plans
from ftops.config.gates import gate_request
from ftops.config.schema import (
    DeploymentSpec,
    Environment,
    Experiments,
    ModelSpec,
    Reinforcement,
    ReleasePin,
    Sku,
)
from ftops.config.skus import candidate_sku
from ftops.config.yamlfiles import RELEASES_DIR  # read by the job provider before it deletes a model
from ftops.cost import gate_prices, rates_for
from ftops.dataset.subsets import write_subset
from ftops.evaluation import rft_graders
from ftops.providers.args import AuditEntryArgs, ExperimentArgs, FineTuningJobArgs
from ftops.providers.audit import AuditEntry
from ftops.providers.experiment import Experiment
from ftops.providers.files import TrainingFile
from ftops.providers.gate import EvaluationGate
from ftops.providers.jobs import FineTuningJob
from ftops.providers.spec import KEPT, sha256_file


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


def _deploy_name(index: int, kept: list[dict[str, Any]]) -> str:
    return str(kept[index]["deploy"])


@dataclass(frozen=True)
class CheckpointCandidates:
    """`checkpoint: best_eval`: one candidate deployment per checkpoint the job keeps (the last
    three epochs; their number is known from n_epochs before training), so the gate can score each
    and serve the best. The final epoch's candidate keeps the usual candidate deployment's name."""

    n_epochs: int
    checkpoints: pulumi.Output[list[dict[str, Any]]]  # the job's `checkpoints` output, oldest first
    fine_tuned_model: pulumi.Input[str]

    @property
    def epochs(self) -> list[int]:
        kept = min(KEPT, self.n_epochs)
        return list(range(self.n_epochs - kept + 1, self.n_epochs + 1))

    def deploy(
        self,
        key: str,
        wiring: Wiring,
        parent: pulumi.Resource,
        first: str,
        first_spec: DeploymentSpec,
        sku: Sku,
        chain: list[pulumi.Resource],
    ) -> tuple[list[pulumi.Resource], pulumi.Output[list[dict[str, Any]]]]:
        """The earlier epochs' candidate deployments (chained), and the gate's `candidates`."""
        names = [f"{first}-candidate" + ("" if e == self.n_epochs else f"-e{e}") for e in self.epochs]
        for index, epoch in enumerate(self.epochs[:-1]):
            model = self.checkpoints.apply(partial(_deploy_name, index))
            chain = [
                wiring.deploy(
                    DeployRequest(
                        f"{key}-candidate-e{epoch}", names[index], model, sku, first_spec, chain, parent
                    )
                )
            ]

        def wired(kept: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [
                {**c, "deployment": name, "epoch": epoch, "model": c["deploy"]}
                for c, name, epoch in zip(kept, names, self.epochs, strict=True)
            ]

        return chain, self.checkpoints.apply(wired)


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
    base: str,  # the candidate's base model: what its answers are priced at
    candidate: Sku,
    deployments: list[tuple[str, DeploymentSpec]],
    after: pulumi.Resource | None,
    seed: int,
    provenance: Mapping[str, pulumi.Input[str]],
    source: pulumi.Input[str] | None = None,
    job: pulumi.Input[str] | None = None,
    agreement: Mapping[str, Any] | None = None,  # a distilled model's check against its teacher
    checkpoints: CheckpointCandidates | None = None,
) -> GatedServing:
    """candidate deployment -> EvaluationGate -> serving deployments, one write at a time.

    The serving deployments take the model from the gate's output: Pulumi cannot even start them
    before the gate passed, and a failing gate leaves what serves now untouched."""
    env = wiring.env
    first, first_spec = deployments[0]
    chain = [after] if after is not None else list(wiring.ready)
    candidates: pulumi.Input[list[dict[str, Any]]] | None = None
    if checkpoints is not None:
        chain, candidates = checkpoints.deploy(key, wiring, parent, first, first_spec, candidate, chain)
    previous = wiring.deploy(
        DeployRequest(
            f"{key}-candidate", f"{first}-candidate", model, candidate, first_spec, chain, parent, source
        )
    )
    request = gate_request(env, key, wiring.root, first, seed)
    teacher = request.baseline.teacher
    gate = EvaluationGate(
        f"{key}-gate",
        GateWithTeacher(
            agreement=agreement,
            target=wiring.target,
            request=request,
            deployment=f"{first}-candidate",
            candidate_model=model,
            capacity={"sku": candidate.name, "capacity": candidate.capacity},
            job=job,
            evidence_dir=wiring.evidence_dir,
            evidence_store=wiring.evidence_store,
            candidates=candidates,
            prices=gate_prices(env, base, teacher.model if teacher else None),
        ),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[previous]),
    )
    if checkpoints is not None:
        # Which checkpoint passed and serves: what `ftops promote` pins (`checkpoint`).
        provenance = {
            **provenance,
            "fine_tuned_model": checkpoints.fine_tuned_model,
            "checkpoint": gate.checkpoint,
        }
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


def _variant(meta: dict[str, Any], values: list[Any]) -> dict[str, Any]:
    job, model, billed, digest = values
    return {**meta, "job": job, "model": model, "billed_tokens": billed, "data_digest": f"sha256:{digest}"}


def run_experiment(
    key: str,
    spec: ModelSpec,
    experiments: Experiments,
    wiring: Wiring,
    training: TrainingFile,
    train: Callable[[str, TrainingFile, dict[str, Any]], FineTuningJob],
    deployment: DeploymentSpec,
    child: pulumi.ResourceOptions,
) -> Experiment:
    """`experiments:`: a job per variant (a subset of the training data where the variant takes a
    fraction: nested, content-addressed), and the Experiment that scores them and picks the one
    the candidate deployment and the gate take. The variants' jobs are kept; only the chosen one's
    model is ever deployed beyond its evaluation."""
    env, root = wiring.env, wiring.root
    base = env.base_of(key)
    if spec.training_file is None:  # the config refuses experiments on a distilled model
        raise ValueError(f"model {key}: experiments need a training_file")
    full = root / spec.training_file
    variants = []
    uploads: dict[Path, TrainingFile] = {full: training}  # one upload per subset, shared by its variants
    for plan in experiment_plans(spec):
        subset = write_subset(
            full, plan.fraction, experiments.subset_seed, root / ".ftops" / "experiments" / key
        )
        if subset not in uploads:
            uploads[subset] = TrainingFile(
                f"{key}-f{round(plan.fraction * 100):g}-training",
                target=wiring.target,
                path=str(subset),
                digest=sha256_file(str(subset)),
                opts=child,
            )
        data = uploads[subset]
        job = train(f"{key}-{plan.label}-job", data, method_for(method_input(spec, env), plan))
        epochs = plan.hyperparameters.get("n_epochs", spec.method.hyperparameters.n_epochs)
        meta = {
            "label": plan.label,
            "setting": "-".join(plan.label.split("-")[:-1]) or "declared",
            "fraction": plan.fraction,
            "epochs": epochs if isinstance(epochs, int) else 0,
            "hyperparameters": plan.hyperparameters,
        }
        variants.append(
            pulumi.Output.all(job.job_id, job.fine_tuned_model, job.trained_tokens, data.digest).apply(
                partial(_variant, meta)
            )
        )
    return Experiment(
        f"{key}-experiment",
        ExperimentArgs(
            target=wiring.target,
            request=gate_request(env, key, root, key, spec.seed or 0),
            variants=pulumi.Output.all(*variants),
            sku=candidate_sku(env, base, deployment).model_dump(),
            select=experiments.select.policy,
            usd_per_million=rates_for(env, base, spec.training_type).training_per_million,
            evidence_dir=wiring.evidence_dir,
        ),
        opts=child,
    )


class FineTunedModel(pulumi.ComponentResource):
    """A model this environment trains: its files, its job, and the gated chain that serves it."""

    provenance: dict[str, pulumi.Input[str]]  # job, data digest, account: what a release pin records
    job: FineTuningJob | Experiment  # the chosen variant's, when the model declares experiments
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

        def train(name: str, training: TrainingFile, method: dict[str, Any]) -> FineTuningJob:
            return FineTuningJob(
                name,
                FineTuningJobArgs(
                    target=wiring.target,
                    name=key,
                    base_model=base_model,
                    training_file=training.file_id,
                    training_digest=training.digest,
                    validation_file=validation.file_id if validation else None,
                    validation_digest=validation.digest if validation else None,
                    method=method,
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

        if spec.experiments is not None and deployments:
            self.job = run_experiment(
                key, spec, spec.experiments, wiring, files["training"], train, deployments[0][1], child
            )
            data_digest: pulumi.Input[str] = self.job.data_digest
        else:
            self.job = train(f"{key}-job", files["training"], method_input(spec, env))
            data_digest = files["training"].digest.apply(lambda d: f"sha256:{d}")
        self.provenance = provenance = {
            "job": self.job.job_id,
            "data_digest": data_digest,
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
                base=env.base_of(key),
                candidate=candidate_sku(env, env.base_of(key), deployments[0][1]),
                deployments=deployments,
                after=after,
                seed=spec.seed or 0,
                provenance=provenance,
                job=self.job.job_id,
                agreement=distilled.agreement if distilled else None,
                checkpoints=self._checkpoints(spec),
            )
            self.gate, self.serving, self.last_deployment = chain.gate, chain.serving, chain.last
            if spec.checkpoint == "best_eval":
                self.provenance = {**self.provenance, "checkpoint": self.gate.checkpoint}
            outputs.update(
                deployments=[name for name, _ in deployments],
                serving_model=self.gate.model,
                evidence_digest=self.gate.evidence_digest,
            )
        self.register_outputs(outputs)

    def _checkpoints(self, spec: ModelSpec) -> CheckpointCandidates | None:
        epochs = spec.method.hyperparameters.n_epochs
        # The schema requires a number of epochs, and no experiments (they score final models).
        if spec.checkpoint != "best_eval" or not isinstance(epochs, int) or isinstance(self.job, Experiment):
            return None
        checkpoints = self.job.checkpoints
        self.provenance = {**self.provenance, "fine_tuned_model": self.job.fine_tuned_model}
        return CheckpointCandidates(epochs, checkpoints, self.job.fine_tuned_model)


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
        if pin.checkpoint:  # the pinned artifact is a checkpoint of the job's model: it moves on as one
            self.provenance.update(fine_tuned_model=pin.model, checkpoint=pin.checkpoint)
        chain = serve_through_gate(
            key,
            wiring,
            self,
            model=pin.artifact,
            base=base_of(pin.model),
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
