"""Serving and candidate deployments on Azure: `azure-native` `cognitiveservices.Deployment`."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_azure_native as an

from ftops.components.model import Deployer, DeployRequest

# ftops' SKU names are the CLI's; ARM spells the Developer tier `DeveloperTier` (the REST sample
# in fine-tune-test.md writes it lower case; ARM compares SKU names case-insensitively).
ARM_SKU = {"Developer": "DeveloperTier"}


def azure_deployer(
    account_name: pulumi.Input[str],
    resource_group: pulumi.Input[str],
    also_after: Sequence[pulumi.Resource],
) -> Deployer:
    """Deployments of fine-tuned models on one account. The caller chains them (`depends_on`) so
    that Azure never sees two writes on the account at once; `also_after` holds what every
    deployment needs first (the custom content filter it names)."""

    def deploy(req: DeployRequest) -> pulumi.Resource:
        return an.cognitiveservices.Deployment(
            req.resource_name,
            resource_group_name=resource_group,
            account_name=account_name,
            deployment_name=req.deployment_name,
            sku=an.cognitiveservices.SkuArgs(
                name=ARM_SKU.get(req.sku.name, req.sku.name), capacity=req.sku.capacity
            ),
            properties=an.cognitiveservices.DeploymentPropertiesArgs(
                model=an.cognitiveservices.DeploymentModelArgs(
                    format="OpenAI", name=req.model, version="1", source=req.source
                ),
                rai_policy_name=req.spec.rai_policy,
                version_upgrade_option=req.spec.version_upgrade_option,
            ),
            opts=pulumi.ResourceOptions(parent=req.parent, depends_on=[*req.depends_on, *also_after]),
        )

    return deploy
