"""The local stack: the same chain as Azure's, against `ftops emulator` (no Azure resources)."""

from __future__ import annotations

from typing import Any

import pulumi

from ftops.components.model import Deployer
from ftops.config import DeploymentSpec, Environment, Sku
from ftops.providers.deployments import ModelDeployment

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"


def target(env: Environment) -> dict[str, str]:
    if env.emulator is None:
        raise ValueError(f"environment {env.name} has no emulator section")
    account = env.emulator.account
    return {
        "endpoint": f"{env.emulator.endpoint}/accounts/{account}",
        "auth": f"env:{env.emulator.api_key_env}",
        "arm_id": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-{env.naming.prefix}-{env.name}/providers/"
        f"Microsoft.CognitiveServices/accounts/{account}",
        "arm_endpoint": env.emulator.endpoint,
    }


def deployer(account_target: dict[str, str]) -> Deployer:
    def deploy(
        resource_name: str,
        deployment_name: str,
        model: Any,
        sku: Sku,
        spec: DeploymentSpec,
        depends_on: list[pulumi.Resource],
        parent: pulumi.Resource,
    ) -> pulumi.Resource:
        return ModelDeployment(
            resource_name,
            inputs={
                "target": account_target,
                "deployment_name": deployment_name,
                "model": {"name": model, "version": "1"},
                "sku": {"name": sku.name, "capacity": sku.capacity},
                "rai_policy": spec.rai_policy,
                "version_upgrade_option": spec.version_upgrade_option,
            },
            opts=pulumi.ResourceOptions(parent=parent, depends_on=depends_on),
        )

    return deploy
