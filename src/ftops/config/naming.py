"""Azure names for an environment's resources, derived from `naming.prefix` and the environment.

Names are physical and stable (a rename is a replacement in Azure), so they are computed here
once, following the Cloud Adoption Framework abbreviations, and never auto-suffixed by Pulumi.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from ftops.config.schema import Environment

# uuid5 namespace for role-assignment names: the same (scope, role, principal) always maps to the
# same assignment, so a re-run adopts it instead of failing with RoleAssignmentExists.
ROLE_NAMESPACE = uuid.UUID("0d3f4c7e-5a1b-4c2d-9e8f-7a6b5c4d3e2f")


@dataclass(frozen=True)
class Names:
    prefix: str
    env: str
    resource_group: str
    account: str
    subdomain: str
    storage: str
    workspace: str
    vnet: str
    subnet: str
    identity: str

    def private_endpoint(self, target: str) -> str:
        return f"pe-{target}"


def names_for(env: Environment) -> Names:
    prefix, name = env.naming.prefix, env.name
    account = f"oai-{prefix}-{name}"
    subdomain = env.account.custom_subdomain if env.account and env.account.custom_subdomain else account
    return Names(
        prefix=prefix,
        env=name,
        resource_group=env.naming.resource_group or f"rg-{prefix}-{name}",
        account=account,
        subdomain=subdomain,
        storage=storage_account_name(prefix, name),
        workspace=f"log-{prefix}-{name}",
        vnet=f"vnet-{prefix}-{name}",
        subnet="snet-private-endpoints",
        identity=f"id-{prefix}-{name}",
    )


def storage_account_name(prefix: str, env: str) -> str:
    """3-24 lowercase letters and digits, globally unique: `st` + prefix + environment, cut to fit."""
    return ("st" + re.sub(r"[^a-z0-9]", "", f"{prefix}{env}"))[:24]


def role_assignment_name(scope_key: str, role_id: str, principal_id: str) -> str:
    """A GUID that depends only on what the assignment grants (scope key is a stable logical name:
    the scope's ARM id is not known before the resource exists)."""
    return str(uuid.uuid5(ROLE_NAMESPACE, f"{scope_key}|{role_id}|{principal_id}".lower()))


def key_vault_name(prefix: str, env: str) -> str:
    """3-24 letters, digits and hyphens, globally unique: `kv-` + prefix + environment, cut to fit."""
    return f"kv-{prefix}-{env}"[:24].rstrip("-")
