"""`CustomerManagedKey`: the key that encrypts the account's and the storage's data at rest.

A Key Vault with RBAC authorisation (no access policies), soft delete and purge protection (Azure
refuses a CMK from a vault without them), public access off and a private endpoint in private
environments; or your vault, named by ARM id. In it an RSA key with a rotation policy. A
user-assigned identity holds the one role Azure needs to use the key, Key Vault Crypto Service
Encryption User (wrap, unwrap, read the key; role e147488a-f6f5-4113-8e2d-b22465e65bf6), at the
key's scope, not the vault's: it can use this key and no other. (The key itself is an ARM
resource, `Microsoft.KeyVault/vaults/keys/write`: the deployer's Contributor creates it, no
data-plane role is granted to anyone.)

Why user-assigned: both the account and the storage account are created with their encryption
set. A system-assigned identity exists only once its resource does, so its role could be granted
only after the resource had been created without the key; a user-assigned identity can hold the
role first. Ordering Azure needs, as `depends_on`: identity -> role on the key -> account and
storage encryption (`ready`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_azure_native as an

from ftops.components.access import role_definition, subscription_of
from ftops.components.monitoring import diagnostics
from ftops.components.placement import Placement
from ftops.config.naming import key_vault_name, role_assignment_name

CRYPTO_SERVICE_ENCRYPTION_USER = "e147488a-f6f5-4113-8e2d-b22465e65bf6"


@dataclass(frozen=True)
class EncryptionKey:
    """What the account and the storage take to encrypt with the key."""

    identity_id: pulumi.Output[str]  # the user-assigned identity's ARM id
    identity_client_id: pulumi.Output[str]
    vault_uri: pulumi.Output[str]
    key_name: str
    key_version: pulumi.Output[str]
    ready: list[pulumi.Resource]  # the role on the key: the encryption waits for it


class CustomerManagedKey(pulumi.ComponentResource):
    key: EncryptionKey
    key_id: pulumi.Output[str]
    vault_id: pulumi.Output[str]

    def __init__(self, place: Placement, opts: pulumi.ResourceOptions | None = None) -> None:
        env, names, resource_group, tags = place.env, place.names, place.resource_group, place.tags
        super().__init__("ftops:azure:CustomerManagedKey", names.env, None, opts)
        spec, net = env.encryption, env.network
        if spec is None or spec.mode != "customer_managed" or net is None:
            raise ValueError(f"environment {env.name} declares no customer-managed key")
        # Losing the vault or the key makes every encrypted byte unreadable: protected in production.
        keep = pulumi.ResourceOptions(parent=self, protect=env.stage == "production")
        if spec.key_vault.existing_id is not None:
            vault_id: pulumi.Input[str] = spec.key_vault.existing_id
            parts = spec.key_vault.existing_id.split("/")
            vault_group, vault_name = parts[4], parts[8]
            self.vault_id = pulumi.Output.from_input(spec.key_vault.existing_id)
            vault_uri = pulumi.Output.from_input(f"https://{vault_name}.vault.azure.net/")
            depends: list[pulumi.Resource] = []
        else:
            private = net.mode == "private"
            vault_name = key_vault_name(names.prefix, names.env)
            vault_group = resource_group  # type: ignore[assignment]
            vault = an.keyvault.Vault(
                "key-vault",
                resource_group_name=resource_group,
                vault_name=vault_name,
                location=env.location,
                properties=an.keyvault.VaultPropertiesArgs(
                    tenant_id=an.authorization.get_client_config_output().tenant_id,
                    sku=an.keyvault.SkuArgs(family="A", name=an.keyvault.SkuName(spec.key_vault.sku)),
                    enable_rbac_authorization=True,  # roles, not access policies: least privilege per key
                    enable_soft_delete=True,
                    soft_delete_retention_in_days=spec.key_vault.soft_delete_days,
                    enable_purge_protection=True,  # cannot be turned off again, by design
                    public_network_access="Disabled" if private else "Enabled",
                    network_acls=an.keyvault.NetworkRuleSetArgs(
                        # The account and storage reach the key as trusted services.
                        default_action="Deny",
                        bypass="AzureServices",
                        ip_rules=[an.keyvault.IPRuleArgs(value=str(r)) for r in net.allowed_ip_ranges],
                    ),
                ),
                tags=tags,
                opts=keep,
            )
            vault_id = vault.id
            self.vault_id = vault.id
            vault_uri = vault.properties.apply(
                lambda p: p.vault_uri or f"https://{vault_name}.vault.azure.net/"
            )
            depends = [vault]
            diagnostics("key-vault", vault.id, place.workspace_id, "AllMetrics", self)
            if place.network is not None and private:
                depends.append(
                    place.network.private_endpoint(
                        "key-vault", names, resource_group, env.location, vault.id, "vault", tags, self
                    )
                )
        days = spec.key_rotation_days
        key = an.keyvault.Key(
            "key",
            resource_group_name=vault_group,
            vault_name=vault_name,
            key_name=spec.key_name,
            properties=an.keyvault.KeyPropertiesArgs(
                kty="RSA",
                key_size=3072,  # storage takes RSA 2048, 3072 or 4096
                key_ops=["wrapKey", "unwrapKey"],
                rotation_policy=an.keyvault.RotationPolicyArgs(
                    # A new version every `days`; each version expires after two periods, so the
                    # previous one still decrypts while the services move to the new one.
                    attributes=an.keyvault.KeyRotationPolicyAttributesArgs(expiry_time=f"P{2 * days}D"),
                    lifetime_actions=[
                        an.keyvault.LifetimeActionArgs(
                            action=an.keyvault.ActionArgs(
                                type=an.keyvault.KeyRotationPolicyActionType.ROTATE
                            ),
                            trigger=an.keyvault.TriggerArgs(time_after_create=f"P{days}D"),
                        ),
                        an.keyvault.LifetimeActionArgs(
                            action=an.keyvault.ActionArgs(
                                type=an.keyvault.KeyRotationPolicyActionType.NOTIFY
                            ),
                            trigger=an.keyvault.TriggerArgs(time_before_expiry="P30D"),
                        ),
                    ],
                ),
            ),
            tags=tags,
            opts=pulumi.ResourceOptions(
                parent=self,
                protect=env.stage == "production",
                depends_on=depends,
                ignore_changes=["properties.attributes"],
            ),
        )
        self.key_id = key.id
        identity = an.managedidentity.UserAssignedIdentity(
            "encryption-identity",
            resource_group_name=resource_group,
            resource_name_=f"{names.identity}-cmk",
            location=env.location,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        role = an.authorization.RoleAssignment(
            "encryption-identity-key",
            role_assignment_name=role_assignment_name(
                f"{names.resource_group}/{names.prefix}/{names.env}/key/{spec.key_name}",
                CRYPTO_SERVICE_ENCRYPTION_USER,
                f"{names.identity}-cmk",
            ),
            principal_id=identity.principal_id,
            principal_type="ServicePrincipal",
            role_definition_id=role_definition(subscription_of(vault_id), CRYPTO_SERVICE_ENCRYPTION_USER),
            scope=key.id,  # this key only: not the vault, never the subscription
            description=f"ftops {names.env}: encrypt the account and storage with {spec.key_name}",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[identity]),
        )
        self.key = EncryptionKey(
            identity_id=identity.id,
            identity_client_id=identity.client_id,
            vault_uri=vault_uri,
            key_name=spec.key_name,
            # The version the key has now (`keyUriWithVersion` ends in it).
            key_version=key.key_uri_with_version.apply(lambda u: (u or "").rsplit("/", 1)[-1]),
            ready=[role],
        )
        self.register_outputs({"key_id": self.key_id, "vault_id": self.vault_id})
