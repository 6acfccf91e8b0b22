"""The local stack: the same chain as Azure's, against `ftops emulator` (no Azure resources)."""

from __future__ import annotations

import pulumi

from ftops.components.model import Deployer, DeployRequest
from ftops.config.schema import Environment
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
    def deploy(req: DeployRequest) -> pulumi.Resource:
        model: dict[str, pulumi.Input[str]] = {"name": req.model, "version": "1"}
        if req.source is not None:
            model["source"] = req.source
        return ModelDeployment(
            req.resource_name,
            inputs={
                "target": account_target,
                "deployment_name": req.deployment_name,
                "model": model,
                "sku": {"name": req.sku.name, "capacity": req.sku.capacity},
                "rai_policy": req.spec.rai_policy,
                "version_upgrade_option": req.spec.version_upgrade_option,
            },
            opts=pulumi.ResourceOptions(parent=req.parent, depends_on=req.depends_on),
        )

    return deploy
