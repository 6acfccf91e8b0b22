"""What the Pulumi program runs: validate the stack's environment before any resource exists,
then compose the models of the environment (`infra/__main__.py` stays a short root)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pulumi

from ftops import cost
from ftops.components import local
from ftops.components.infrastructure import AzureInfrastructure
from ftops.components.model import FineTunedModel, PromotedModel, Wiring
from ftops.config.load import check_promotion_chain, load_environment, read_stack_node, validate_environment
from ftops.config.schema import DeploymentSpec, Environment, Reinforcement
from ftops.config.site import Site
from ftops.config.yamlfiles import environment_names
from ftops.errors import ConfigError, FtopsError
from ftops.evaluation import rft_graders
from ftops.providers.args import BudgetArgs
from ftops.providers.budget import Budget
from ftops.providers.spec import sha256_file


def load_stack_environment(root: Path, stack: str, raw: Any) -> Environment:
    """Validate `ftops:environment` as the engine passed it; fail the update with every problem."""
    try:
        node = read_stack_node(root, stack)
    except FtopsError:
        node = None  # line numbers are a courtesy; the engine's value is what gets validated
    try:
        env = validate_environment(root, stack, raw, node)
        others, invalid = {}, set()
        for name in environment_names(root):
            if name != stack:
                try:
                    others[name] = load_environment(root, name)
                except FtopsError:
                    invalid.add(name)  # its own stack reports why; this chain says it is invalid
        problems = check_promotion_chain(root, {**others, stack: env}, only=stack, invalid=invalid)
        if problems:
            raise ConfigError(problems)
    except ConfigError as exc:
        # RunError prints the message without a Python traceback.
        raise pulumi.RunError("invalid environment:\n  " + "\n  ".join(exc.problems)) from None
    return env


def summary(env: Environment) -> dict[str, Any]:
    """What the stack exports until the components land: the validated plan in brief."""
    return {
        "name": env.name,
        "stage": env.stage,
        "target": env.target,
        "location": env.location,
        "models": {
            key: {
                "base_model": env.base_of(key),
                "continue_from": spec.continue_from,
                "method": spec.method.type,
                "training_file": spec.training_file,
                "validation_file": spec.validation_file,
            }
            for key, spec in env.models.items()
        },
        "deployments": {
            key: {"model": d.model, "sku": d.sku.name, "capacity": d.sku.capacity}
            for key, d in env.deployments.items()
        },
        "releases": {key: pin.model for key, pin in env.releases.items()},
    }


def training_order(env: Environment) -> list[str]:
    """Models ordered so that one trained `continue_from` another comes after it."""
    ordered: list[str] = []
    for key in env.models:
        chain = [key]
        while (parent := env.models[chain[-1]].continue_from) is not None and parent not in ordered:
            chain.append(parent)
        ordered.extend(k for k in reversed(chain) if k not in ordered)
    return ordered


Built = FineTunedModel | PromotedModel


def build_models(env: Environment, wiring: Wiring) -> dict[str, Built]:
    """One FineTunedModel per declared model and one PromotedModel per release pin this environment
    serves; every deployment on the account chained after the previous one."""
    served: dict[str, list[tuple[str, DeploymentSpec]]] = {}
    for name, dep in env.deployments.items():
        served.setdefault(dep.model, []).append((name, dep))
    built: dict[str, Built] = {}
    after: pulumi.Resource | None = None
    for key in training_order(env):
        spec = env.models[key]
        parent = built[spec.continue_from] if spec.continue_from else None
        base: pulumi.Input[str] = (
            parent.job.fine_tuned_model if isinstance(parent, FineTunedModel) else str(spec.base_model)
        )
        model = FineTunedModel(
            key,
            spec,
            wiring,
            base_model=base,
            deployments=served.get(key, []),
            after=after,
        )
        after = model.last_deployment
        built[key] = model
    for key, pin in env.releases.items():
        if key in served and key not in built:
            promoted = PromotedModel(key, pin, wiring, deployments=served[key], after=after)
            after = promoted.last_deployment
            built[key] = promoted
    return built


def model_outputs(env: Environment, built: dict[str, Built]) -> dict[str, Any]:
    """What promotion, `ftops status` and the PR comment read from a stack."""
    gates = {key: m.gate for key, m in built.items() if m.gate is not None}
    return {
        "models": {key: m.job.model for key, m in built.items() if isinstance(m, FineTunedModel)},
        "jobs": {key: m.job.job_id for key, m in built.items() if isinstance(m, FineTunedModel)},
        "deployments": {
            name: gates[dep.model].model for name, dep in env.deployments.items() if dep.model in gates
        },
        "evidence": {key: gate.evidence_digest for key, gate in gates.items()},
        # What `ftops promote` copies into the next environment's release pin.
        "gated": {
            key: {
                "model": gates[key].model,
                "evidence_digest": gates[key].evidence_digest,
                "commit": gates[key].commit,
                **m.provenance,
            }
            for key, m in built.items()
            if key in gates
        },
    }


def job_identity(env: Environment, key: str, root: Path) -> str:
    """What makes a model's job a new one for the budget: its declaration and its data's bytes
    (a parent's identity for a model that continues another)."""
    spec = env.models[key]
    body = {
        "spec": spec.model_dump(
            mode="json", exclude={"wait_timeout_minutes", "retain_on_delete", "checkpoint"}
        ),
        "data": [sha256_file(str(root / f)) for f in spec.data_files()],  # a distilled model's prompt set too
        "parent": job_identity(env, spec.continue_from, root) if spec.continue_from else None,
    }
    if isinstance(spec.method, Reinforcement):  # a grader named by ref counts by its content
        body["grader"] = rft_graders.canonical(env.grader(spec.method.grader))
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def declare_budget(env: Environment, root: Path, audit: dict[str, Any] | None) -> Budget | None:
    """The budget check every upload waits for; none when the environment sets no limit."""
    args = budget_args(env, root, audit)
    return Budget("budget", args) if args is not None else None


def budget_args(env: Environment, root: Path, audit: dict[str, Any] | None) -> BudgetArgs | None:
    """What the budget checks: each model's job (identity, cost) and the declared hosting."""
    limits = env.budget
    if limits.training_usd_per_change is None and limits.hosting_usd_per_month is None:
        return None
    lines = cost.plan_lines(env, root)
    # A distilled model's capture is a training-kind line of its own; the job's line is "training <key>",
    # or "training <key> experiment grid (...)" for an experiment: its variants' jobs start together.
    training = [ln for ln in lines if ln.kind == "training"]

    def job_line(key: str) -> cost.CostLine:
        return next(
            ln
            for ln in training
            if ln.item == f"training {key}" or ln.item.startswith(f"training {key} experiment ")
        )

    jobs = {
        key: {"identity": job_identity(env, key, root), "usd": line.usd, "basis": line.basis}
        for key, line in ((key, job_line(key)) for key in env.models)
    }
    hosting = [ln for ln in lines if ln.kind == "hosting"]
    return BudgetArgs(
        environment=env.name,
        training_limit_usd=limits.training_usd_per_change,
        hosting_limit_usd=limits.hosting_usd_per_month,
        override=limits.override.model_dump() if limits.override else None,
        jobs=jobs,
        hosting={
            "usd_per_month": round(sum(ln.usd or 0.0 for ln in hosting), 2),
            "basis": "; ".join(f"{ln.item} {ln.label()}" for ln in hosting),
        },
        audit=audit,
    )


def build_stack(env: Environment, root: Path) -> dict[str, Any]:
    """Declare the environment's resources; the stack outputs."""
    site = Site(env, root)
    outputs: dict[str, Any] = {"environment": summary(env), "audit": site.audit()}
    evidence_dir = str(site.evidence_folder())
    budget = declare_budget(env, root, site.audit())
    checked = (budget,) if budget is not None else ()
    if site.local:
        account = site.emulator_account()
        wiring = Wiring(
            env=env,
            root=root,
            target=account,
            deploy=local.deployer(account),
            evidence_dir=evidence_dir,
            ready=checked,
            audit=site.audit(),
        )
        outputs["endpoint"] = account["endpoint"]
    else:
        infra = AzureInfrastructure(env)
        wiring = Wiring(
            env=env,
            root=root,
            target=infra.target(),
            deploy=infra.deployer(),
            evidence_dir=evidence_dir,
            ready=(*infra.ready, *checked),
            audit=site.audit(),
            evidence_store=site.evidence_store(),
        )
        outputs.update(infra.outputs())
    outputs.update(model_outputs(env, build_models(env, wiring)))
    return outputs
