"""Everything an Azure environment needs around its models, composed in dependency order:

    resource group -> Monitoring -> Network -> [CustomerManagedKey] -> OpenAIAccount -> Storage -> Access
    -> Alerts (metric alerts per serving deployment, the action group, the traffic query)

and what the model chain needs from it: the provider target of the account (endpoint + ARM id,
Entra auth: no key ever), the deployer, and the resources that must exist before the data plane
is reachable (the account, its private endpoint, the role that lets the deployer fine-tune).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_azure_native as an

from ftops.components.access import Access
from ftops.components.account import OpenAIAccount
from ftops.components.alerts import Alerts
from ftops.components.azure_deployer import azure_deployer
from ftops.components.encryption import CustomerManagedKey
from ftops.components.model import Deployer
from ftops.components.monitoring import Monitoring
from ftops.components.network import Network
from ftops.components.placement import Placement
from ftops.components.storage import Storage
from ftops.config.naming import names_for
from ftops.config.schema import Environment
from ftops.config.site import ARM_ENDPOINT


class AzureInfrastructure:
    """Not a component itself: its parts are top-level components, so their URNs stay short and
    a reader of `pulumi preview` sees Network, OpenAIAccount, Storage and Access side by side."""

    def __init__(self, env: Environment) -> None:
        if env.account is None or env.network is None or env.storage is None:
            raise ValueError(f"environment {env.name} is not an Azure environment")
        self.env = env
        self.names = names = names_for(env)
        tags = {**env.tags, "environment": env.name, "managed-by": "ftops"}
        if env.naming.resource_group is not None:
            self.resource_group: pulumi.Input[str] = env.naming.resource_group  # adopted, not managed
        else:
            self.resource_group = an.resources.ResourceGroup(
                "resource-group",
                resource_group_name=names.resource_group,
                location=env.location,
                tags=tags,
                opts=pulumi.ResourceOptions(protect=env.stage == "production"),
            ).name
        self.monitoring = Monitoring(
            names, self.resource_group, env.location, env.account.log_retention_days, tags
        )
        cmk = env.encryption is not None and env.encryption.mode == "customer_managed"
        own_vault = cmk and env.encryption is not None and env.encryption.key_vault.existing_id is None
        self.network = (
            Network(env.network, names, self.resource_group, env.location, tags, key_vault=own_vault)
            if env.network.mode == "private"
            else None
        )
        place = Placement(env, names, self.resource_group, self.network, self.monitoring.workspace_id, tags)
        # identity -> role on the key -> the account's and the storage's encryption (`key.ready`)
        self.encryption = CustomerManagedKey(place) if cmk else None
        if self.encryption is not None:
            place = dataclasses.replace(place, encryption=self.encryption.key)
        self.account = OpenAIAccount(place)
        self.storage = Storage(place)
        self.access = Access(
            env.access,
            names,
            self.account.account_id,
            {role: c.id for role, c in self.storage.containers.items()},
        )
        self.ready: list[pulumi.Resource] = [*self.account.ready, *self.access.assignments]
        self.alerts = (
            Alerts(
                env,
                names,
                self.resource_group,
                self.account.account_id,
                self.monitoring.workspace,
                served(env),
                tags,
            )
            if env.alerts.enabled and env.deployments
            else None
        )

    def target(self) -> Mapping[str, pulumi.Input[str]]:
        return {
            "endpoint": self.account.endpoint,
            "auth": "entra",
            "arm_id": self.account.account_id,
            "arm_endpoint": ARM_ENDPOINT,
        }

    def deployer(self) -> Deployer:
        policy = [self.account.rai_policy] if self.account.rai_policy is not None else []
        return azure_deployer(self.account.account_name, self.resource_group, policy)

    def outputs(self) -> dict[str, Any]:
        return {
            "endpoint": self.account.endpoint,
            "account_id": self.account.account_id,
            "resource_group": self.resource_group,
            "storage": {
                "account": self.storage.account.name,
                "blob_endpoint": self.storage.blob_endpoint,
                "containers": {role: c.name for role, c in self.storage.containers.items()},
            },
        }


def served(env: Environment) -> dict[str, tuple[str, str, int]]:
    """deployment -> (the base model it serves, SKU, capacity): what the alert thresholds scale with.
    (The fine-tuned id is known only after training or from the pin; its base is enough here.)"""
    out: dict[str, tuple[str, str, int]] = {}
    for name, dep in env.deployments.items():
        pin = env.releases.get(dep.model)
        base = env.base_of(dep.model) if dep.model in env.models else pin.model if pin else ""
        out[name] = (base, dep.sku.name, dep.sku.capacity)
    return out
