"""`Storage`: training data, evaluation evidence and the audit log, reachable by Entra ID only.

No shared keys, no anonymous blobs, TLS 1.2, versioning and soft delete; the audit container is
write-once: a time-based immutability policy that still allows appends to append blobs (the
audit log is one append blob per environment), so records can be added but never changed.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_azure_native as an

from ftops.components.encryption import EncryptionKey
from ftops.components.monitoring import diagnostics
from ftops.components.placement import Placement


class Storage(pulumi.ComponentResource):
    account: an.storage.StorageAccount
    containers: dict[str, an.storage.BlobContainer]
    blob_endpoint: pulumi.Output[str]

    def __init__(self, place: Placement, opts: pulumi.ResourceOptions | None = None) -> None:
        env, names, resource_group = place.env, place.names, place.resource_group
        network, workspace_id, tags = place.network, place.workspace_id, place.tags
        super().__init__("ftops:azure:Storage", names.env, None, opts)
        spec, net = env.storage, env.network
        if spec is None or net is None:
            raise ValueError(f"environment {env.name} has no storage or network section")
        child = pulumi.ResourceOptions(parent=self)
        private = net.mode == "private"
        self.account = an.storage.StorageAccount(
            "storage",
            resource_group_name=resource_group,
            account_name=names.storage,
            location=env.location,
            kind="StorageV2",
            sku=an.storage.SkuArgs(name=spec.sku),
            allow_blob_public_access=False,
            allow_shared_key_access=False,
            default_to_o_auth_authentication=True,
            allow_cross_tenant_replication=False,
            minimum_tls_version="TLS1_2",
            enable_https_traffic_only=True,
            public_network_access="Disabled" if private else "Enabled",
            network_rule_set=an.storage.NetworkRuleSetArgs(
                default_action=an.storage.DefaultAction.DENY,
                bypass="AzureServices",
                ip_rules=[an.storage.IPRuleArgs(i_p_address_or_range=str(r)) for r in net.allowed_ip_ranges],
            ),
            tags=tags,
            **_encrypted(place.encryption),
            opts=pulumi.ResourceOptions(
                parent=self,
                protect=env.stage == "production",
                depends_on=place.encryption.ready if place.encryption else [],
            ),
        )
        self.blob_endpoint = self.account.primary_endpoints.apply(lambda e: e.blob)
        blob_service = an.storage.BlobServiceProperties(
            "blob-service",
            resource_group_name=resource_group,
            account_name=self.account.name,
            blob_services_name="default",
            is_versioning_enabled=True,
            delete_retention_policy=an.storage.DeleteRetentionPolicyArgs(
                enabled=True, days=spec.soft_delete_days
            ),
            container_delete_retention_policy=an.storage.DeleteRetentionPolicyArgs(
                enabled=True, days=spec.soft_delete_days
            ),
            opts=child,
        )
        self.containers = {}
        for role, name in spec.containers.items():
            self.containers[role] = an.storage.BlobContainer(
                f"container-{role}",
                resource_group_name=resource_group,
                account_name=self.account.name,
                container_name=name,
                public_access=an.storage.PublicAccess.NONE,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[blob_service]),
            )
        an.storage.BlobContainerImmutabilityPolicy(
            "audit-immutability",
            resource_group_name=resource_group,
            account_name=self.account.name,
            container_name=self.containers["audit"].name,
            immutability_policy_name="default",
            immutability_period_since_creation_in_days=spec.audit_retention_days,
            allow_protected_append_writes=True,
            opts=child,
        )
        diagnostics(
            "blob",
            self.account.id.apply(lambda i: f"{i}/blobServices/default"),
            workspace_id,
            "Transaction",
            self,
        )
        if network is not None and private:
            network.private_endpoint(
                "storage", names, resource_group, env.location, self.account.id, "blob", tags, self
            )
        self.register_outputs(
            {
                "account_name": self.account.name,
                "blob_endpoint": self.blob_endpoint,
                "containers": {role: c.name for role, c in self.containers.items()},
            }
        )


def _encrypted(key: EncryptionKey | None) -> dict[str, Any]:
    """Identity and encryption of the storage account under the customer-managed key. No key
    version: storage follows the key's newest version by itself after a rotation."""
    if key is None:
        return {}
    return {
        "identity": an.storage.IdentityArgs(type="UserAssigned", user_assigned_identities=[key.identity_id]),
        "encryption": an.storage.EncryptionArgs(
            key_source="Microsoft.Keyvault",
            key_vault_properties=an.storage.KeyVaultPropertiesArgs(
                key_name=key.key_name, key_vault_uri=key.vault_uri
            ),
            encryption_identity=an.storage.EncryptionIdentityArgs(
                encryption_user_assigned_identity=key.identity_id
            ),
            services=an.storage.EncryptionServicesArgs(
                blob=an.storage.EncryptionServiceArgs(enabled=True, key_type="Account"),
                file=an.storage.EncryptionServiceArgs(enabled=True, key_type="Account"),
            ),
        ),
    }
