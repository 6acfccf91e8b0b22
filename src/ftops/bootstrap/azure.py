"""The bootstrap's Azure side, as ComponentResources over `pulumi-azure-native` v3:

    ops resource group -> RunnerNetwork -> StateStore -> Roles
      -> DeployIdentity (per environment: resource group, identity, one federated credential, roles)
      -> ReadOnlyIdentity (preview + readonly) -> CanaryIdentity (canary)
      -> Runner (Container Apps job, registry, key vault)

Every identity lives in the ops resource group, out of reach of the rights it is given on an
environment's group (a deploying identity cannot add a federated credential to itself). Every
role assignment is at a resource group or narrower; names are stable GUIDs so a re-run adopts.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_azure_native as an

from ftops.bootstrap import roles
from ftops.bootstrap.settings import CANARY_ENVIRONMENT, READ_ONLY_ENVIRONMENTS, Bootstrap

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
GITHUB_AUDIENCE = "api://AzureADTokenExchange"
STATE_CONTAINER = "pulumi-state"
APP_KEY_SECRET_REF = "github-app-key"  # the Container Apps job's name for the Key Vault reference

# zone -> what resolves through it (the environments' account and storage, the state account,
# the key vault that holds the runner's App key)
ZONES = {
    "privatelink.openai.azure.com": "account",
    "privatelink.cognitiveservices.azure.com": "account",
    "privatelink.blob.core.windows.net": "blob",
    "privatelink.vaultcore.azure.net": "vault",
}
ENVIRONMENT_ZONES = (
    "privatelink.openai.azure.com",
    "privatelink.cognitiveservices.azure.com",
    "privatelink.blob.core.windows.net",
)


def subject(settings: Bootstrap, environment: str) -> str:
    """The OIDC subject GitHub puts in a token of a job that runs in `environment`."""
    return f"repo:{settings.repository}:environment:{environment}"


def federated_credential(
    name: str,
    settings: Bootstrap,
    identity: an.managedidentity.UserAssignedIdentity,
    environment: str,
    parent: pulumi.Resource,
) -> an.managedidentity.FederatedIdentityCredential:
    return an.managedidentity.FederatedIdentityCredential(
        name,
        resource_group_name=identity.id.apply(lambda i: i.split("/")[4]),
        resource_name_=identity.name,
        federated_identity_credential_resource_name=f"github-{environment}",
        issuer=GITHUB_ISSUER,
        subject=subject(settings, environment),
        audiences=[GITHUB_AUDIENCE],
        opts=pulumi.ResourceOptions(parent=parent),
    )


def assign(
    name: str,
    settings: Bootstrap,
    who: str,
    principal_id: pulumi.Input[str],
    role: str,
    scope: pulumi.Input[str],
    scope_key: str,
    parent: pulumi.Resource,
    condition: str | None = None,
    depends_on: Sequence[pulumi.Resource] | None = None,
) -> an.authorization.RoleAssignment:
    """One role assignment of a managed identity; `scope_key` names the scope stably (its ARM id
    is not known before the resource exists)."""
    return an.authorization.RoleAssignment(
        name,
        role_assignment_name=roles.stable_guid(settings.subscription_id, scope_key, role, who),
        principal_id=principal_id,
        principal_type="ServicePrincipal",
        role_definition_id=roles.role_definition_id(settings.subscription_id, role),
        scope=scope,
        condition=condition,
        condition_version="2.0" if condition else None,
        description=f"ftops bootstrap: {who}",
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on or [])),
    )


class RunnerNetwork(pulumi.ComponentResource):
    """The VNet the runner runs in, with a subnet delegated to Container Apps, one for private
    endpoints, and the private DNS zones linked to it. Private environments put their endpoints
    here (`network.existing_subnet_id`, `network.existing_dns_zone_ids`), so one runner reaches
    every private data plane, the state and the key vault."""

    def __init__(
        self,
        settings: Bootstrap,
        rg: pulumi.Input[str],
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("ftops:bootstrap:RunnerNetwork", settings.prefix, None, opts)
        self.rg = rg
        spec = settings.network
        child = pulumi.ResourceOptions(parent=self)
        self.vnet = an.network.VirtualNetwork(
            "vnet",
            resource_group_name=rg,
            virtual_network_name=f"vnet-{settings.prefix}-ops",
            location=settings.location,
            address_space=an.network.AddressSpaceArgs(address_prefixes=[str(spec.address_space)]),
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["subnets"]),
        )
        self.runner_subnet = an.network.Subnet(
            "runners",
            resource_group_name=rg,
            virtual_network_name=self.vnet.name,
            subnet_name="snet-runners",
            address_prefix=str(spec.runner_subnet),
            delegations=[
                an.network.DelegationArgs(name="container-apps", service_name="Microsoft.App/environments")
            ],
            opts=child,
        )
        self.endpoint_subnet = an.network.Subnet(
            "private-endpoints",
            resource_group_name=rg,
            virtual_network_name=self.vnet.name,
            subnet_name="snet-private-endpoints",
            address_prefix=str(spec.private_endpoint_subnet),
            private_endpoint_network_policies="Enabled",
            default_outbound_access=False,
            # Azure serializes writes to one VNet's subnets.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.runner_subnet]),
        )
        self.zones: dict[str, an.privatedns.PrivateZone] = {}
        for zone in ZONES:
            short = zone.split(".")[1]
            self.zones[zone] = an.privatedns.PrivateZone(
                f"zone-{short}",
                resource_group_name=rg,
                private_zone_name=zone,
                location="Global",
                tags=tags,
                opts=child,
            )
            an.privatedns.VirtualNetworkLink(
                f"link-{short}",
                resource_group_name=rg,
                private_zone_name=self.zones[zone].name,
                virtual_network_link_name=f"vnet-{settings.prefix}-ops-link",
                virtual_network=an.privatedns.SubResourceArgs(id=self.vnet.id),
                registration_enabled=False,
                location="Global",
                tags=tags,
                opts=child,
            )
        self.register_outputs(
            {"runner_subnet_id": self.runner_subnet.id, "endpoint_subnet_id": self.endpoint_subnet.id}
        )

    def private_endpoint(
        self,
        name: str,
        settings: Bootstrap,
        target_id: pulumi.Input[str],
        group: str,
        parent: pulumi.Resource,
    ) -> an.network.PrivateEndpoint:
        endpoint = an.network.PrivateEndpoint(
            f"pe-{name}",
            resource_group_name=self.rg,
            private_endpoint_name=f"pe-{name}",
            custom_network_interface_name=f"nic-pe-{name}",
            location=settings.location,
            subnet=an.network.SubnetArgs(id=self.endpoint_subnet.id),
            private_link_service_connections=[
                an.network.PrivateLinkServiceConnectionArgs(
                    name=f"pe-{name}", private_link_service_id=target_id, group_ids=[group]
                )
            ],
            opts=pulumi.ResourceOptions(parent=parent),
        )
        an.network.PrivateDnsZoneGroup(
            f"pe-{name}-dns",
            resource_group_name=self.rg,
            private_endpoint_name=endpoint.name,
            private_dns_zone_group_name="default",
            private_dns_zone_configs=[
                an.network.PrivateDnsZoneConfigArgs(name=zone.replace(".", "-"), private_dns_zone_id=z.id)
                for zone, z in self.zones.items()
                if ZONES[zone] == ("vault" if group == "vault" else group)
            ],
            opts=pulumi.ResourceOptions(parent=endpoint),
        )
        return endpoint


def _firewall_rules(settings: Bootstrap) -> list[str]:
    return [str(r) for r in settings.network.admin_ip_ranges]


def _public_access(settings: Bootstrap) -> str:
    """Off when private, unless a person must reach it from admin_ip_ranges (deny by default)."""
    return "Disabled" if settings.network.private and not settings.network.admin_ip_ranges else "Enabled"


class StateStore(pulumi.ComponentResource):
    """The Pulumi state of every stack: Entra ID only (the azblob backend signs in with it), no
    anonymous blobs, TLS 1.2, versioning and soft delete of blobs and containers, a CanNotDelete
    lock, a private endpoint when private, and one container, `pulumi-state`."""

    def __init__(
        self,
        settings: Bootstrap,
        network: RunnerNetwork,
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("ftops:bootstrap:StateStore", settings.prefix, None, opts)
        rg, child = network.rg, pulumi.ResourceOptions(parent=self)
        self.account = an.storage.StorageAccount(
            "state",
            resource_group_name=rg,
            account_name=settings.state_account,
            location=settings.location,
            kind="StorageV2",
            sku=an.storage.SkuArgs(name=settings.state.sku),
            allow_blob_public_access=False,
            allow_shared_key_access=False,
            default_to_o_auth_authentication=True,
            allow_cross_tenant_replication=False,
            minimum_tls_version="TLS1_2",
            enable_https_traffic_only=True,
            public_network_access=_public_access(settings),
            network_rule_set=an.storage.NetworkRuleSetArgs(
                default_action=an.storage.DefaultAction.DENY,
                bypass="None",
                ip_rules=[an.storage.IPRuleArgs(i_p_address_or_range=r) for r in _firewall_rules(settings)],
            ),
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, protect=True),
        )
        blob_service = an.storage.BlobServiceProperties(
            "state-blob-service",
            resource_group_name=rg,
            account_name=self.account.name,
            blob_services_name="default",
            is_versioning_enabled=True,
            delete_retention_policy=an.storage.DeleteRetentionPolicyArgs(
                enabled=True, days=settings.state.soft_delete_days
            ),
            container_delete_retention_policy=an.storage.DeleteRetentionPolicyArgs(
                enabled=True, days=settings.state.soft_delete_days
            ),
            opts=child,
        )
        self.container = an.storage.BlobContainer(
            "state-container",
            resource_group_name=rg,
            account_name=self.account.name,
            container_name=STATE_CONTAINER,
            public_access=an.storage.PublicAccess.NONE,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[blob_service], protect=True),
        )
        # A lock stops a delete of the account (and with it every stack's state) even by an Owner
        # in a hurry: removing it is a separate, deliberate step.
        an.authorization.ManagementLockByScope(
            "state-lock",
            scope=self.account.id,
            lock_name="ftops-state",
            level="CanNotDelete",
            notes="The Pulumi state of every ftops stack; remove this lock only to move the state.",
            opts=child,
        )
        if settings.network.private:
            network.private_endpoint("state", settings, self.account.id, "blob", self)
        self.backend_url = f"azblob://{STATE_CONTAINER}?storage_account={settings.state_account}"
        self.register_outputs({"backend_url": self.backend_url, "container_id": self.container.id})


class Roles(pulumi.ComponentResource):
    """The custom roles: what a deploying identity may do in its resource group, the role-assignment
    right (always assigned with `roles.delegation_condition`), joining the runner network, and the
    canary's blob create-and-append (always assigned with `roles.writer_condition`)."""

    def __init__(
        self,
        settings: Bootstrap,
        environment_groups: list[pulumi.Output[str]],
        ops_group: pulumi.Output[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("ftops:bootstrap:Roles", settings.prefix, None, opts)
        subscription = f"/subscriptions/{settings.subscription_id}"
        self.ids: dict[str, str] = {}
        self.definitions: list[an.authorization.RoleDefinition] = []
        for key, title, actions, scopes in (
            ("deployer", "deployer", roles.DEPLOYER_ACTIONS, environment_groups),
            ("role-assigner", "role assigner", roles.ROLE_ASSIGNER_ACTIONS, environment_groups),
            (
                "network-joiner",
                "runner network joiner",
                tuple(dict.fromkeys(roles.SUBNET_JOIN_ACTIONS + roles.ZONE_JOIN_ACTIONS)),
                [ops_group],
            ),
        ):
            guid = roles.stable_guid(settings.subscription_id, settings.prefix, key)
            self.ids[key] = guid
            self.definitions.append(
                an.authorization.RoleDefinition(
                    key,
                    role_definition_id=guid,
                    role_name=f"ftops {title} ({settings.prefix})",
                    description=f"ftops bootstrap of {settings.repository}: {title}",
                    role_type="CustomRole",
                    scope=subscription,
                    assignable_scopes=scopes,
                    permissions=[an.authorization.PermissionArgs(actions=list(actions))],
                    opts=pulumi.ResourceOptions(parent=self),
                )
            )
        # Data actions only (roles.BLOB_WRITER_DATA_ACTIONS says why not Blob Data Contributor).
        key = "evidence-writer"
        self.ids[key] = roles.stable_guid(settings.subscription_id, settings.prefix, key)
        self.definitions.append(
            an.authorization.RoleDefinition(
                key,
                role_definition_id=self.ids[key],
                role_name=f"ftops evidence and audit writer ({settings.prefix})",
                description=f"ftops bootstrap of {settings.repository}: evidence and audit writer",
                role_type="CustomRole",
                scope=subscription,
                assignable_scopes=environment_groups,
                permissions=[
                    an.authorization.PermissionArgs(
                        actions=[], data_actions=list(roles.BLOB_WRITER_DATA_ACTIONS)
                    )
                ],
                opts=pulumi.ResourceOptions(parent=self),
            )
        )
        self.register_outputs({"ids": self.ids})


class DeployIdentity(pulumi.ComponentResource):
    """An environment's resource group and the identity that deploys it: exactly one federated
    credential, `repo:<owner>/<repo>:environment:<env>`; the deployer role and the conditioned
    role-assignment right on its resource group; joining the runner network's endpoint subnet and
    zones; Blob Data Contributor on the state container and nothing else there."""

    def __init__(
        self,
        settings: Bootstrap,
        env: str,
        group: an.resources.ResourceGroup,
        custom: Roles,
        network: RunnerNetwork,
        state: StateStore,
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("ftops:bootstrap:DeployIdentity", env, None, opts)
        name = f"id-{settings.prefix}-{env}-deploy"
        self.identity = an.managedidentity.UserAssignedIdentity(
            f"{env}-deploy",
            resource_group_name=network.rg,
            resource_name_=name,
            location=settings.location,
            tags={**tags, "environment": env},
            opts=pulumi.ResourceOptions(parent=self),
        )
        federated_credential(f"{env}-deploy-github", settings, self.identity, env, self)
        principal = self.identity.principal_id
        who = f"{env}-deploy"
        after = custom.definitions
        self.assignments = [
            assign(
                f"{env}-deployer",
                settings,
                who,
                principal,
                custom.ids["deployer"],
                group.id,
                f"rg/{env}",
                self,
                depends_on=after,
            ),
            assign(
                f"{env}-role-assigner",
                settings,
                who,
                principal,
                custom.ids["role-assigner"],
                group.id,
                f"rg/{env}",
                self,
                condition=roles.delegation_condition(),
                depends_on=after,
            ),
            assign(
                f"{env}-join-subnet",
                settings,
                who,
                principal,
                custom.ids["network-joiner"],
                network.endpoint_subnet.id,
                "ops/snet-private-endpoints",
                self,
                depends_on=after,
            ),
            *[
                assign(
                    f"{env}-join-{zone.split('.')[1]}",
                    settings,
                    who,
                    principal,
                    custom.ids["network-joiner"],
                    network.zones[zone].id,
                    f"ops/{zone}",
                    self,
                    depends_on=after,
                )
                for zone in ENVIRONMENT_ZONES
            ],
            assign(
                f"{env}-state",
                settings,
                who,
                principal,
                roles.BLOB_DATA_CONTRIBUTOR,
                state.container.id,
                f"ops/{STATE_CONTAINER}",
                self,
            ),
        ]
        self.register_outputs({"client_id": self.identity.client_id, "principal_id": principal})


class ReadOnlyIdentity(pulumi.ComponentResource):
    """The identity of PR previews, drift checks and promotions: trusted only from the `preview`
    and `readonly` environments; Reader and Cognitive Services OpenAI User on each environment's
    group, Storage Blob Data Reader there only for its evidence and audit containers (a condition:
    the containers are the environment stack's, made later), and read access to the state."""

    def __init__(
        self,
        settings: Bootstrap,
        groups: dict[str, an.resources.ResourceGroup],
        ops_group: an.resources.ResourceGroup,
        state: StateStore,
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("ftops:bootstrap:ReadOnlyIdentity", settings.prefix, None, opts)
        name = f"id-{settings.prefix}-readonly"
        self.identity = an.managedidentity.UserAssignedIdentity(
            "readonly",
            resource_group_name=ops_group.name,
            resource_name_=name,
            location=settings.location,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        for environment in READ_ONLY_ENVIRONMENTS:
            federated_credential(f"readonly-github-{environment}", settings, self.identity, environment, self)
        principal, who = self.identity.principal_id, "readonly"
        for env, group in groups.items():
            containers = settings.environments[env].containers
            assign(
                f"readonly-{env}-reader", settings, who, principal, roles.READER, group.id, f"rg/{env}", self
            )
            assign(
                f"readonly-{env}-openai-user",
                settings,
                who,
                principal,
                roles.OPENAI_USER,
                group.id,
                f"rg/{env}",
                self,
            )
            assign(
                f"readonly-{env}-blob-reader",
                settings,
                who,
                principal,
                roles.BLOB_DATA_READER,
                group.id,
                f"rg/{env}",
                self,
                condition=roles.container_condition((containers.evidence, containers.audit)),
            )
        # The drift check refreshes the bootstrap stack too: it reads the ops group and the state.
        assign("readonly-ops-reader", settings, who, principal, roles.READER, ops_group.id, "rg/ops", self)
        assign(
            "readonly-state",
            settings,
            who,
            principal,
            roles.BLOB_DATA_READER,
            state.container.id,
            f"ops/{STATE_CONTAINER}",
            self,
        )
        self.register_outputs({"client_id": self.identity.client_id})


class CanaryIdentity(pulumi.ComponentResource):
    """The identity of the nightly canary (`canary.yml`): trusted only from the `canary`
    environment (main only). What the read-only identity holds on each environment's group
    (Reader, OpenAI User, Blob Data Reader on the evidence and audit containers), plus the
    evidence-and-audit writer role there under `roles.writer_condition`: create and append in
    those two containers, delete nowhere. Blob Data Reader on the state, for the stack outputs.
    Its own identity, so the read-only one (PR previews run code from any branch) stays read-only."""

    def __init__(
        self,
        settings: Bootstrap,
        groups: dict[str, an.resources.ResourceGroup],
        ops_group: an.resources.ResourceGroup,
        custom: Roles,
        state: StateStore,
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("ftops:bootstrap:CanaryIdentity", settings.prefix, None, opts)
        self.identity = an.managedidentity.UserAssignedIdentity(
            "canary",
            resource_group_name=ops_group.name,
            resource_name_=f"id-{settings.prefix}-canary",
            location=settings.location,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        federated_credential("canary-github", settings, self.identity, CANARY_ENVIRONMENT, self)
        principal, who = self.identity.principal_id, "canary"
        for env, group in groups.items():
            containers = settings.environments[env].containers
            named = (containers.evidence, containers.audit)
            for role, suffix in ((roles.READER, "reader"), (roles.OPENAI_USER, "openai-user")):
                assign(f"canary-{env}-{suffix}", settings, who, principal, role, group.id, f"rg/{env}", self)
            assign(
                f"canary-{env}-blob-reader",
                settings,
                who,
                principal,
                roles.BLOB_DATA_READER,
                group.id,
                f"rg/{env}",
                self,
                condition=roles.container_condition(named),
            )
            # At the group, with a condition naming the containers: they are the environment
            # stack's, made after this.
            assign(
                f"canary-{env}-blob-writer",
                settings,
                who,
                principal,
                custom.ids["evidence-writer"],
                group.id,
                f"rg/{env}",
                self,
                condition=roles.writer_condition(named),
                depends_on=custom.definitions,
            )
        assign(
            "canary-state",
            settings,
            who,
            principal,
            roles.BLOB_DATA_READER,
            state.container.id,
            f"ops/{STATE_CONTAINER}",
            self,
        )
        self.register_outputs({"client_id": self.identity.client_id})


class Runner(pulumi.ComponentResource):
    """The self-hosted runner inside the VNet: a Container Apps job in an internal environment on
    the runner subnet, started per queued workflow job with the label (KEDA `github-runner`
    scaler, ephemeral, zero executions when idle), its image pulled from the registry with its
    managed identity (no admin user, no password), registered with a GitHub App whose private key
    the job reads from Key Vault by reference: the key is in no input and no state."""

    def __init__(
        self,
        settings: Bootstrap,
        network: RunnerNetwork,
        tags: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("ftops:bootstrap:Runner", settings.prefix, None, opts)
        self.label = settings.runner.label
        spec, rg, prefix = settings.runner, network.rg, settings.prefix
        child = pulumi.ResourceOptions(parent=self)
        name = f"id-{prefix}-runner"
        self.identity = an.managedidentity.UserAssignedIdentity(
            "runner",
            resource_group_name=rg,
            resource_name_=name,
            location=settings.location,
            tags=tags,
            opts=child,
        )
        registry_name = f"cr{prefix}ops"
        self.login_server = f"{registry_name}.azurecr.io"
        registry = an.containerregistry.Registry(
            "registry",
            resource_group_name=rg,
            registry_name=registry_name,
            location=settings.location,
            sku=an.containerregistry.SkuArgs(name="Standard"),
            admin_user_enabled=False,
            anonymous_pull_enabled=False,
            tags=tags,
            opts=child,
        )
        vault_name = f"kv-{prefix}-ops"
        self.vault_url = f"https://{vault_name}.vault.azure.net/"
        vault = an.keyvault.Vault(
            "key-vault",
            resource_group_name=rg,
            vault_name=vault_name,
            location=settings.location,
            properties=an.keyvault.VaultPropertiesArgs(
                tenant_id=settings.tenant_id,
                sku=an.keyvault.SkuArgs(family="A", name=an.keyvault.SkuName.STANDARD),
                enable_rbac_authorization=True,
                enable_purge_protection=True,
                enable_soft_delete=True,
                soft_delete_retention_in_days=90,
                public_network_access=_public_access(settings),
                network_acls=an.keyvault.NetworkRuleSetArgs(
                    default_action="Deny",
                    bypass="AzureServices",
                    ip_rules=[an.keyvault.IPRuleArgs(value=r) for r in _firewall_rules(settings)],
                ),
            ),
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, protect=True),
        )
        if settings.network.private:
            network.private_endpoint("key-vault", settings, vault.id, "vault", self)
        pull = assign(
            "runner-acr-pull",
            settings,
            "runner",
            self.identity.principal_id,
            roles.ACR_PULL,
            registry.id,
            "ops/registry",
            self,
        )
        secrets = assign(
            "runner-key-reader",
            settings,
            "runner",
            self.identity.principal_id,
            roles.KEY_VAULT_SECRETS_USER,
            vault.id,
            "ops/key-vault",
            self,
        )
        if spec.key_admin_principal_id is not None:
            an.authorization.RoleAssignment(
                "key-admin",
                role_assignment_name=roles.stable_guid(
                    settings.subscription_id,
                    "ops/key-vault",
                    roles.KEY_VAULT_SECRETS_OFFICER,
                    spec.key_admin_principal_id,
                ),
                principal_id=spec.key_admin_principal_id,
                role_definition_id=roles.role_definition_id(
                    settings.subscription_id, roles.KEY_VAULT_SECRETS_OFFICER
                ),
                scope=vault.id,
                description="ftops bootstrap: uploads the runner's GitHub App key",
                opts=child,
            )
        environment = an.app.ManagedEnvironment(
            "runner-environment",
            resource_group_name=rg,
            environment_name=f"cae-{prefix}-ops",
            location=settings.location,
            vnet_configuration=an.app.VnetConfigurationArgs(
                infrastructure_subnet_id=network.runner_subnet.id, internal=True
            ),
            workload_profiles=[
                an.app.WorkloadProfileArgs(name="Consumption", workload_profile_type="Consumption")
            ],
            tags=tags,
            opts=child,
        )
        app_key = f"{self.vault_url}secrets/{spec.key_secret}"
        self.job = an.app.Job(
            "runner-job",
            resource_group_name=rg,
            job_name=f"caj-{prefix}-runner",
            location=settings.location,
            environment_id=environment.id,
            workload_profile_name="Consumption",
            identity=an.app.ManagedServiceIdentityArgs(
                type=an.app.ManagedServiceIdentityType.USER_ASSIGNED,
                user_assigned_identities=[self.identity.id],
            ),
            configuration=an.app.JobConfigurationArgs(
                trigger_type="Event",
                replica_timeout=spec.timeout_minutes * 60,
                replica_retry_limit=0,  # a failed job is re-run from GitHub, never by the platform
                # The identity pulls the image and reads the key for the platform only: a workflow
                # job on the runner (a PR's code too) gets no token for it.
                identity_settings=[
                    an.app.IdentitySettingsArgs(
                        identity=self.identity.id, lifecycle=an.app.IdentitySettingsLifeCycle.NONE
                    )
                ],
                secrets=[
                    an.app.SecretArgs(
                        name=APP_KEY_SECRET_REF, key_vault_url=app_key, identity=self.identity.id
                    )
                ],
                registries=[
                    an.app.RegistryCredentialsArgs(server=self.login_server, identity=self.identity.id)
                ],
                event_trigger_config=an.app.JobConfigurationEventTriggerConfigArgs(
                    parallelism=1,
                    replica_completion_count=1,
                    scale=an.app.JobScaleArgs(
                        min_executions=0,
                        max_executions=spec.max_executions,
                        polling_interval=30,
                        rules=[
                            an.app.JobScaleRuleArgs(
                                name="github-runner",
                                type="github-runner",
                                metadata={
                                    "githubAPIURL": "https://api.github.com",
                                    "owner": settings.github.owner,
                                    "runnerScope": "repo",
                                    "repos": settings.github.repository,
                                    "labels": spec.label,
                                    "targetWorkflowQueueLength": "1",
                                    "applicationID": str(spec.github_app_id),
                                    "installationID": str(spec.github_app_installation_id),
                                },
                                auth=[
                                    an.app.ScaleRuleAuthArgs(
                                        secret_ref=APP_KEY_SECRET_REF, trigger_parameter="appKey"
                                    )
                                ],
                            )
                        ],
                    ),
                ),
            ),
            template=an.app.JobTemplateArgs(
                containers=[
                    an.app.ContainerArgs(
                        name="runner",
                        image=f"{self.login_server}/{spec.image}",
                        resources=an.app.ContainerResourcesArgs(cpu=spec.cpu, memory=spec.memory),
                        # The image's contract (README: The runner image): trade the App key for a
                        # registration token, drop it from the environment, take one job, exit.
                        env=[
                            an.app.EnvironmentVarArgs(name="GITHUB_APP_ID", value=str(spec.github_app_id)),
                            an.app.EnvironmentVarArgs(
                                name="GITHUB_APP_INSTALLATION_ID", value=str(spec.github_app_installation_id)
                            ),
                            an.app.EnvironmentVarArgs(
                                name="GITHUB_APP_PRIVATE_KEY", secret_ref=APP_KEY_SECRET_REF
                            ),
                            an.app.EnvironmentVarArgs(
                                name="REPO_URL", value=f"https://github.com/{settings.repository}"
                            ),
                            an.app.EnvironmentVarArgs(name="RUNNER_LABELS", value=spec.label),
                            an.app.EnvironmentVarArgs(name="EPHEMERAL", value="true"),
                        ],
                    )
                ]
            ),
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[pull, secrets]),
        )
        self.register_outputs({"label": spec.label, "job": self.job.name})
