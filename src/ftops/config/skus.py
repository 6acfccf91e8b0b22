"""The SKU of the gate's candidate deployment: read by the component that declares it and by the
cost model that prices it, so both agree on what the gate's deployment costs."""

from __future__ import annotations

from ftops.catalog import resolve_base
from ftops.config.schema import DeploymentSpec, Environment, Sku


def candidate_sku(env: Environment, base_model: str, deployment: DeploymentSpec) -> Sku:
    """The gate's candidate: what the environment says, else the cheapest way to serve the model.
    In development that is the Developer tier (no hosting fee) where Azure offers it; staging and
    production gate on the serving SKU type at small capacity, because Developer tier gives no
    data-residency guarantee and their eval prompts may be as confidential as their traffic."""
    if deployment.candidate_sku is not None:
        return deployment.candidate_sku
    if (
        env.stage == "development"
        and env.target == "azure"
        and "Developer" in resolve_base(base_model).deploy_skus
    ):
        return Sku(name="Developer", capacity=50)
    return Sku(name=deployment.sku.name, capacity=min(deployment.sku.capacity, 5))
