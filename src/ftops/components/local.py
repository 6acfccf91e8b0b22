"""The local stack's deployer: the same chain as Azure's, against `ftops emulator` (no Azure resources)."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi

from ftops.components.model import Deployer, DeployRequest
from ftops.providers.args import ModelDeploymentArgs
from ftops.providers.deployments import ModelDeployment


def deployer(account_target: Mapping[str, str]) -> Deployer:
    def deploy(req: DeployRequest) -> pulumi.Resource:
        model: dict[str, pulumi.Input[str]] = {"name": req.model, "version": "1"}
        if req.source is not None:
            model["source"] = req.source
        return ModelDeployment(
            req.resource_name,
            ModelDeploymentArgs(
                target=dict(account_target),
                deployment_name=req.deployment_name,
                model=model,
                sku={"name": req.sku.name, "capacity": req.sku.capacity},
                rai_policy=req.spec.rai_policy,
                version_upgrade_option=req.spec.version_upgrade_option,
            ),
            opts=pulumi.ResourceOptions(parent=req.parent, depends_on=req.depends_on),
        )

    return deploy
