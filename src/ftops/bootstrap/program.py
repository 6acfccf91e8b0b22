"""What `bootstrap/__main__.py` runs: validate the stack's settings, then declare the Azure and
GitHub sides in dependency order, and export exactly what the environment files and the
workflows need, so nothing is copied by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pulumi_azure_native as an

from ftops.bootstrap.azure import (
    ENVIRONMENT_ZONES,
    CanaryIdentity,
    DeployIdentity,
    ReadOnlyIdentity,
    Roles,
    Runner,
    RunnerNetwork,
    StateStore,
)
from ftops.bootstrap.github import GitHubRepository
from ftops.bootstrap.settings import (
    CANARY_ENVIRONMENT,
    READ_ONLY_ENVIRONMENTS,
    Bootstrap,
    read_settings_node,
    validate_settings,
)
from ftops.errors import ConfigError, FtopsError


def load_stack_settings(root: Path, stack: str, raw: Any) -> Bootstrap:
    """Validate `ftops:bootstrap` as the engine passed it; fail the update with every problem."""
    try:
        node = read_settings_node(root, stack)
    except FtopsError:
        node = None  # line numbers are a courtesy; the engine's value is what gets validated
    try:
        return validate_settings(root, stack, raw, node)
    except ConfigError as exc:
        raise pulumi.RunError("invalid bootstrap settings:\n  " + "\n  ".join(exc.problems)) from None


def build_bootstrap(settings: Bootstrap) -> dict[str, Any]:
    tags = {**settings.tags, "managed-by": "ftops-bootstrap", "repository": settings.repository}
    # Pinned to the settings' subscription, whatever `az account show` says today.
    azure = an.Provider("azure", subscription_id=settings.subscription_id, tenant_id=settings.tenant_id)
    top = pulumi.ResourceOptions(providers={"azure-native": azure})
    ops_group = an.resources.ResourceGroup(
        "ops",
        resource_group_name=settings.ops_resource_group,
        location=settings.location,
        tags=tags,
        opts=pulumi.ResourceOptions.merge(top, pulumi.ResourceOptions(protect=True)),
    )
    groups = {
        env: an.resources.ResourceGroup(
            f"group-{env}",
            resource_group_name=settings.resource_group(env),
            location=settings.location_of(env),
            tags={**tags, "environment": env},
            opts=pulumi.ResourceOptions.merge(top, pulumi.ResourceOptions(protect=True)),
        )
        for env in settings.environments
    }
    # Everything below names the ops group through its output, so it waits for the group.
    network = RunnerNetwork(settings, ops_group.name, tags, top)
    state = StateStore(settings, network, tags, top)
    custom = Roles(settings, [g.id for g in groups.values()], ops_group.id, top)
    deployers = {
        env: DeployIdentity(settings, env, groups[env], custom, network, state, tags, top)
        for env in settings.environments
    }
    readonly = ReadOnlyIdentity(settings, groups, ops_group, state, tags, top)
    canary = CanaryIdentity(settings, groups, ops_group, custom, state, tags, top)
    runner = Runner(settings, network, tags, top)
    client_ids: dict[str, pulumi.Input[str]] = {env: d.identity.client_id for env, d in deployers.items()}
    client_ids |= {env: readonly.identity.client_id for env in READ_ONLY_ENVIRONMENTS}
    client_ids[CANARY_ENVIRONMENT] = canary.identity.client_id
    GitHubRepository(settings, client_ids, state.backend_url)
    return {
        # GitHub repository variables / what a person exports to run a stack by hand
        "backend_url": state.backend_url,
        "tenant_id": settings.tenant_id,
        "subscription_id": settings.subscription_id,
        "runner_label": runner.label,
        "readonly_client_id": readonly.identity.client_id,
        "canary_client_id": canary.identity.client_id,
        "deploy_client_ids": client_ids_of(deployers),
        # what each environments/Pulumi.<env>.yaml sets (keys of ftops:environment)
        "environment_files": {
            env: {
                "naming.resource_group": settings.resource_group(env),
                "access.ci_principal_id": deployers[env].identity.principal_id,
                # for network.mode: private, so the runner reaches the environment's endpoints
                "network.existing_subnet_id": network.endpoint_subnet.id,
                "network.existing_dns_zone_ids": {z: network.zones[z].id for z in ENVIRONMENT_ZONES},
            }
            for env in settings.environments
        },
    }


def client_ids_of(deployers: dict[str, DeployIdentity]) -> dict[str, pulumi.Output[str]]:
    return {env: d.identity.client_id for env, d in deployers.items()}
