"""What each bootstrap identity may do, as data: built-in role ids, the custom roles' actions and
the ABAC conditions, plain values the components declare and the tests read.

Least privilege, from the environment stacks' own components (src/ftops/components/):
- the deploying identity of an environment gets `DEPLOYER_ACTIONS` (what Network, OpenAIAccount,
  Storage, Monitoring, Access and the deployments declare) on its resource group only, and the
  right to assign roles only through `ROLE_ASSIGNER_ACTIONS` with `delegation_condition`: write and
  delete of role assignments of the roles `Access` assigns, nothing else (no Owner, no
  unconstrained User Access Administrator, never the subscription);
- the read-only identity gets Reader and Cognitive Services OpenAI User on each resource group and
  Storage Blob Data Reader there, limited by `container_condition` to the evidence and audit
  containers;
- the canary's identity gets what the read-only one gets on the resource groups, and
  `BLOB_WRITER_DATA_ACTIONS` (create and append, never delete) there, limited by
  `writer_condition` to the same two containers.
"""

from __future__ import annotations

import uuid

# Built-in roles (ids are the same in every tenant).
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
USER_ACCESS_ADMINISTRATOR = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
RBAC_ADMINISTRATOR = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
OPENAI_CONTRIBUTOR = "a001fd3d-188f-4b5d-821b-7da978bf7442"
OPENAI_USER = "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd"
BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
KEY_VAULT_SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"

# Roles no bootstrap identity may hold, anywhere.
FORBIDDEN = frozenset({OWNER, CONTRIBUTOR, USER_ACCESS_ADMINISTRATOR, RBAC_ADMINISTRATOR})

# The roles the environment stacks assign (components/access.py assigns the contributors; the
# read-only ones are here so a stack may grant them to reviewers later): the only roles the
# deploying identity may assign or remove.
DELEGABLE = (OPENAI_CONTRIBUTOR, OPENAI_USER, BLOB_DATA_CONTRIBUTOR, BLOB_DATA_READER)

ROLE_ASSIGNMENT_WRITE = "Microsoft.Authorization/roleAssignments/write"
ROLE_ASSIGNMENT_DELETE = "Microsoft.Authorization/roleAssignments/delete"

# Control-plane actions the environment stacks' resources need, by component. No wildcard: a new
# resource type in a component is a reviewed change here too.
DEPLOYER_ACTIONS = (
    # the resource group exists (made here); the stack adopts it
    "Microsoft.Resources/subscriptions/resourceGroups/read",
    # OpenAIAccount, deployments, content filters, private endpoint approval
    "Microsoft.CognitiveServices/accounts/read",
    "Microsoft.CognitiveServices/accounts/write",
    "Microsoft.CognitiveServices/accounts/delete",
    "Microsoft.CognitiveServices/accounts/deployments/read",
    "Microsoft.CognitiveServices/accounts/deployments/write",
    "Microsoft.CognitiveServices/accounts/deployments/delete",
    "Microsoft.CognitiveServices/accounts/raiPolicies/read",
    "Microsoft.CognitiveServices/accounts/raiPolicies/write",
    "Microsoft.CognitiveServices/accounts/raiPolicies/delete",
    "Microsoft.CognitiveServices/accounts/privateEndpointConnectionsApproval/action",
    # Storage: account, blob service, containers, the audit container's immutability policy
    "Microsoft.Storage/storageAccounts/read",
    "Microsoft.Storage/storageAccounts/write",
    "Microsoft.Storage/storageAccounts/delete",
    "Microsoft.Storage/storageAccounts/privateEndpointConnectionsApproval/action",
    "Microsoft.Storage/storageAccounts/blobServices/read",
    "Microsoft.Storage/storageAccounts/blobServices/write",
    "Microsoft.Storage/storageAccounts/blobServices/containers/read",
    "Microsoft.Storage/storageAccounts/blobServices/containers/write",
    "Microsoft.Storage/storageAccounts/blobServices/containers/delete",
    "Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies/read",
    "Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies/write",
    "Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies/delete",
    # Network: its own VNet, subnet, zones and links, or the runner network's (joined, see
    # SUBNET_JOIN_ACTIONS); private endpoints and their zone groups
    "Microsoft.Network/virtualNetworks/read",
    "Microsoft.Network/virtualNetworks/write",
    "Microsoft.Network/virtualNetworks/delete",
    "Microsoft.Network/virtualNetworks/subnets/read",
    "Microsoft.Network/virtualNetworks/subnets/write",
    "Microsoft.Network/virtualNetworks/subnets/delete",
    "Microsoft.Network/virtualNetworks/subnets/join/action",
    "Microsoft.Network/privateDnsZones/read",
    "Microsoft.Network/privateDnsZones/write",
    "Microsoft.Network/privateDnsZones/delete",
    "Microsoft.Network/privateDnsZones/join/action",
    "Microsoft.Network/privateDnsZones/virtualNetworkLinks/read",
    "Microsoft.Network/privateDnsZones/virtualNetworkLinks/write",
    "Microsoft.Network/privateDnsZones/virtualNetworkLinks/delete",
    "Microsoft.Network/virtualNetworks/join/action",
    "Microsoft.Network/privateEndpoints/read",
    "Microsoft.Network/privateEndpoints/write",
    "Microsoft.Network/privateEndpoints/delete",
    "Microsoft.Network/privateEndpoints/privateDnsZoneGroups/read",
    "Microsoft.Network/privateEndpoints/privateDnsZoneGroups/write",
    "Microsoft.Network/privateEndpoints/privateDnsZoneGroups/delete",
    "Microsoft.Network/networkInterfaces/read",
    # Monitoring: the workspace and the diagnostic settings that feed it
    "Microsoft.OperationalInsights/workspaces/read",
    "Microsoft.OperationalInsights/workspaces/write",
    "Microsoft.OperationalInsights/workspaces/delete",
    "Microsoft.Insights/diagnosticSettings/read",
    "Microsoft.Insights/diagnosticSettings/write",
    "Microsoft.Insights/diagnosticSettings/delete",
    # the account's user-assigned identity (account.identity: UserAssigned)
    "Microsoft.ManagedIdentity/userAssignedIdentities/read",
    "Microsoft.ManagedIdentity/userAssignedIdentities/write",
    "Microsoft.ManagedIdentity/userAssignedIdentities/delete",
    "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action",
    # reading what Access assigned (writing is the role assigner's, under its condition)
    "Microsoft.Authorization/roleAssignments/read",
)

# An environment that puts its private endpoints in the runner network (network.existing_subnet_id,
# existing_dns_zone_ids) joins that subnet and those zones; granted there, on each, not on the group.
SUBNET_JOIN_ACTIONS = (
    "Microsoft.Network/virtualNetworks/subnets/read",
    "Microsoft.Network/virtualNetworks/subnets/join/action",
)
ZONE_JOIN_ACTIONS = (
    "Microsoft.Network/privateDnsZones/read",
    "Microsoft.Network/privateDnsZones/join/action",
)

ROLE_ASSIGNER_ACTIONS = (
    "Microsoft.Authorization/roleAssignments/read",
    ROLE_ASSIGNMENT_WRITE,
    ROLE_ASSIGNMENT_DELETE,
)

BLOB_READ = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"
BLOB_WRITE = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write"
BLOB_ADD = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action"
BLOB_DELETE = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete"

# The canary's writes: an evidence upload (Put Blob, If-None-Match: *) and the audit record (create
# the append blob once, then Append Block). A custom role rather than Storage Blob Data Contributor:
# that role also carries blobs/delete and blobs/move and, on the control plane, containers/write
# and containers/delete, and a role assignment's condition is evaluated on data actions only, so no
# condition could keep it from deleting the evidence container through ARM. This role has no
# control-plane action and no delete: the audit container's immutability policy already refuses
# any rewrite of the log, and nothing here can remove evidence. (An overwrite of an evidence blob
# is still a blobs/write; blob versioning keeps what it replaced.)
BLOB_WRITER_DATA_ACTIONS = (BLOB_WRITE, BLOB_ADD)

ROLE_NAMESPACE = uuid.UUID("6c1f6a0e-3b59-4b8e-9d0a-2f7e5d1c9b44")


def stable_guid(*parts: str) -> str:
    """A GUID that depends only on what it names, so a re-run adopts what a crashed run created."""
    return str(uuid.uuid5(ROLE_NAMESPACE, "|".join(parts).lower()))


def _guids(roles: tuple[str, ...]) -> str:
    return "{" + ", ".join(roles) + "}"


def delegation_condition(roles: tuple[str, ...] = DELEGABLE) -> str:
    """ABAC (version 2.0): role assignments may be written and deleted only for `roles`. Write is
    checked on the request's role definition, delete on the existing assignment's (Azure's
    "Constrain roles" example for delegating role assignment management)."""
    return (
        "(\n"
        f" (\n  !(ActionMatches{{'{ROLE_ASSIGNMENT_WRITE}'}})\n )\n"
        " OR\n"
        " (\n  @Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] "
        f"ForAnyOfAnyValues:GuidEquals {_guids(roles)}\n )\n"
        ")\n"
        "AND\n"
        "(\n"
        f" (\n  !(ActionMatches{{'{ROLE_ASSIGNMENT_DELETE}'}})\n )\n"
        " OR\n"
        " (\n  @Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] "
        f"ForAnyOfAnyValues:GuidEquals {_guids(roles)}\n )\n"
        ")"
    )


def container_condition(containers: tuple[str, ...]) -> str:
    """ABAC (version 2.0): blobs may be read only in the named containers (Azure's "Read, write, or
    delete blobs in named containers" example, read only)."""
    names = ", ".join(f"'{c}'" for c in containers)
    return (
        "(\n"
        f" (\n  !(ActionMatches{{'{BLOB_READ}'}})\n )\n"
        " OR\n"
        " (\n  @Resource[Microsoft.Storage/storageAccounts/blobServices/containers:name] "
        f"ForAnyOfAnyValues:StringEquals {{{names}}}\n )\n"
        ")"
    )


def writer_condition(containers: tuple[str, ...]) -> str:
    """ABAC (version 2.0): blobs may be written and appended to only in the named containers (Azure's
    "Read, write, or delete blobs in named containers" example, write and add only; the role it
    conditions has no delete to allow)."""
    names = ", ".join(f"'{c}'" for c in containers)
    return (
        "(\n"
        f" (\n  !(ActionMatches{{'{BLOB_WRITE}'}})\n  AND\n  !(ActionMatches{{'{BLOB_ADD}'}})\n )\n"
        " OR\n"
        " (\n  @Resource[Microsoft.Storage/storageAccounts/blobServices/containers:name] "
        f"ForAnyOfAnyValues:StringEquals {{{names}}}\n )\n"
        ")"
    )


def role_definition_id(subscription_id: str, role: str) -> str:
    return f"/subscriptions/{subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{role}"
