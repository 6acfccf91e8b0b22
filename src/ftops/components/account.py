"""`OpenAIAccount`: the Azure OpenAI resource every model of the environment lives in.

Custom subdomain (Entra tokens and private endpoints need it), keys off, public access as the
environment says, network ACLs that deny by default, a managed identity, a private endpoint in
private mode, diagnostics to Log Analytics and, when declared, the content filter as code.
"""

from __future__ import annotations

import pulumi
import pulumi_azure_native as an

from ftops.components.encryption import EncryptionKey
from ftops.components.monitoring import diagnostics
from ftops.components.placement import Placement
from ftops.config.naming import Names
from ftops.config.schema import Account as AccountSpec
from ftops.config.schema import ContentFilter

# Harm categories are graded by severity; the others are detectors that are on or off.
SEVERITY_FILTERS = frozenset({"hate", "sexual", "violence", "selfharm"})


class OpenAIAccount(pulumi.ComponentResource):
    account: an.cognitiveservices.Account
    account_id: pulumi.Output[str]
    account_name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    rai_policy: an.cognitiveservices.RaiPolicy | None
    ready: list[pulumi.Resource]  # what must exist before the data plane is reachable

    def __init__(self, place: Placement, opts: pulumi.ResourceOptions | None = None) -> None:
        env, names, resource_group = place.env, place.names, place.resource_group
        network, workspace_id, tags = place.network, place.workspace_id, place.tags
        super().__init__("ftops:azure:OpenAIAccount", names.env, None, opts)
        spec = env.account
        if spec is None or env.network is None:
            raise ValueError(f"environment {env.name} has no account or network section")
        identity = self._identity(spec, names, resource_group, env.location, tags)
        key = place.encryption
        if key is not None:
            # The customer-managed key's identity joins whatever identity the account declares.
            declared = str(getattr(identity.type, "value", identity.type))
            kinds = {k.strip() for k in declared.split(",")} | {"UserAssigned"}
            identity = an.cognitiveservices.IdentityArgs(
                type=an.cognitiveservices.ResourceIdentityType(
                    "SystemAssigned, UserAssigned" if "SystemAssigned" in kinds else "UserAssigned"
                ),
                user_assigned_identities=[*(identity.user_assigned_identities or []), key.identity_id],  # type: ignore[misc]
            )
        self.account = an.cognitiveservices.Account(
            "account",
            resource_group_name=resource_group,
            account_name=names.account,
            kind=spec.kind,
            location=env.location,
            sku=an.cognitiveservices.SkuArgs(name=spec.sku),
            identity=identity,
            properties=an.cognitiveservices.AccountPropertiesArgs(
                custom_sub_domain_name=names.subdomain,
                disable_local_auth=spec.disable_local_auth,
                public_network_access=spec.public_network_access,
                network_acls=an.cognitiveservices.NetworkRuleSetArgs(
                    default_action="Deny",
                    # Trusted Azure services (e.g. the account's own fine-tuning pipeline reading
                    # from its storage) keep working; everything else needs a rule or the PE.
                    bypass="AzureServices",
                    ip_rules=[
                        an.cognitiveservices.IpRuleArgs(value=str(r)) for r in env.network.allowed_ip_ranges
                    ],
                ),
                encryption=_encryption(key),
            ),
            tags=tags,
            # Keys come back if somebody flips disable_local_auth in the portal; refresh shows it.
            # With a customer-managed key: after its identity holds the role on the key.
            opts=pulumi.ResourceOptions(
                parent=self, protect=env.stage == "production", depends_on=key.ready if key else []
            ),
        )
        self.account_id = self.account.id
        self.account_name = self.account.name
        # `properties.endpoint` is https://<subdomain>.openai.azure.com/ for kind OpenAI.
        self.endpoint = self.account.properties.apply(lambda p: p.endpoint)
        self.ready = [self.account]
        diagnostics("account", self.account.id, workspace_id, "AllMetrics", self)
        if network is not None and env.network.mode == "private":
            self.ready.append(
                network.private_endpoint(
                    "account", names, resource_group, env.location, self.account.id, "account", tags, self
                )
            )
        self.rai_policy = None
        if spec.rai_policy is not None:
            self.rai_policy = an.cognitiveservices.RaiPolicy(
                "content-filter",
                resource_group_name=resource_group,
                account_name=self.account.name,
                rai_policy_name=spec.rai_policy.name,
                properties=an.cognitiveservices.RaiPolicyPropertiesArgs(
                    base_policy_name=spec.rai_policy.base_policy,
                    mode=spec.rai_policy.mode,
                    content_filters=[_filter(f) for f in spec.rai_policy.filters],
                ),
                # After the private endpoint: Azure takes one write on the account at a time.
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(self.ready)),
            )
        self.register_outputs(
            {"account_id": self.account_id, "endpoint": self.endpoint, "account_name": self.account_name}
        )

    def _identity(
        self,
        spec: AccountSpec,
        names: Names,
        resource_group: pulumi.Input[str],
        location: str,
        tags: dict[str, str],
    ) -> an.cognitiveservices.IdentityArgs:
        if "UserAssigned" not in spec.identity:
            return an.cognitiveservices.IdentityArgs(
                type=an.cognitiveservices.ResourceIdentityType(spec.identity)
            )
        # A user-assigned identity outlives the account: the checkpoint copy between accounts and
        # storage access can be granted to it before the account exists.
        uai = an.managedidentity.UserAssignedIdentity(
            "identity",
            resource_group_name=resource_group,
            resource_name_=names.identity,
            location=location,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        # PAN takes the user-assigned identities as a list of ARM ids (ARM itself uses a dict).
        return an.cognitiveservices.IdentityArgs(
            type=an.cognitiveservices.ResourceIdentityType(spec.identity), user_assigned_identities=[uai.id]
        )


def _encryption(key: EncryptionKey | None) -> an.cognitiveservices.EncryptionArgs | None:
    """The account's data (training files, fine-tuned weights) under the customer-managed key. The
    account pins a key version (as Azure Verified Modules do): a rotation shows as a change in the
    next preview, applied by the next `pulumi up`."""
    if key is None:
        return None  # Microsoft-managed keys
    return an.cognitiveservices.EncryptionArgs(
        key_source="Microsoft.KeyVault",
        key_vault_properties=an.cognitiveservices.KeyVaultPropertiesArgs(
            identity_client_id=key.identity_client_id,
            key_name=key.key_name,
            key_vault_uri=key.vault_uri,
            key_version=key.key_version,
        ),
    )


def _filter(f: ContentFilter) -> an.cognitiveservices.RaiPolicyContentFilterArgs:
    return an.cognitiveservices.RaiPolicyContentFilterArgs(
        name=f.name,
        source=f.source,
        enabled=f.enabled,
        blocking=f.blocking,
        severity_threshold=f.severity_threshold if f.name in SEVERITY_FILTERS else None,
    )
