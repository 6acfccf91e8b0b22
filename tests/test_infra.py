"""The Azure stacks under Pulumi mocks: security invariants of every environment file in the
repository, the wiring of the model chain, and a reviewed snapshot of each plan.

Every assertion names the URN it is about, so a failure says which resource broke the rule.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from ftops.config.load import load_environment, read_stack_node
from ftops.config.yamlfiles import environment_names, plain
from tests.conftest import REPO
from tests.pulumi_harness import Registration, Run, run

ACCOUNT = "azure-native:cognitiveservices:Account"
DEPLOYMENT = "azure-native:cognitiveservices:Deployment"
STORAGE = "azure-native:storage:StorageAccount"
CONTAINER = "azure-native:storage:BlobContainer"
ENDPOINT = "azure-native:network:PrivateEndpoint"
ZONE_GROUP = "azure-native:network:PrivateDnsZoneGroup"
ZONE = "azure-native:privatedns:PrivateZone"
ROLE = "azure-native:authorization:RoleAssignment"
ZONES = {
    "privatelink.openai.azure.com",
    "privatelink.cognitiveservices.azure.com",
    "privatelink.blob.core.windows.net",
}
ALLOWED_ROLES = {
    "a001fd3d-188f-4b5d-821b-7da978bf7442",  # Cognitive Services OpenAI Contributor
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe",  # Storage Blob Data Contributor
    "e147488a-f6f5-4113-8e2d-b22465e65bf6",  # Key Vault Crypto Service Encryption User (CMK)
}
VAULT_ZONE = "privatelink.vaultcore.azure.net"
SNAPSHOTS = Path(__file__).parent / "snapshots"
AZURE_STACKS = [n for n in environment_names(REPO) if load_environment(REPO, n).target == "azure"]
_runs: dict[str, Run] = {}


def stack_run(stack: str) -> Run:
    """The repository's own stack file as the engine would pass it (one run per stack per session)."""
    if stack not in _runs:
        _runs[stack] = run(stack, plain(read_stack_node(REPO, stack)))
    return _runs[stack]


def edited(stack: str, change: Any) -> Run:
    raw = plain(read_stack_node(REPO, stack))
    change(raw)
    return run(stack, raw)


def zones_of(result: Run, endpoint: Registration) -> set[str]:
    groups = [g for g in result.of_type(ZONE_GROUP) if g.parent == endpoint.urn]
    assert len(groups) == 1, f"{endpoint.urn}: {len(groups)} DNS zone groups"
    ids = {c["privateDnsZoneId"] for c in groups[0].inputs["privateDnsZoneConfigs"]}
    return {i.rsplit("/", 1)[-1] for i in ids}


def test_every_environment_file_is_checked() -> None:
    assert AZURE_STACKS == ["dev", "prod", "staging"]


@pytest.mark.parametrize("stack", AZURE_STACKS)
def test_accounts_are_locked_down_as_the_environment_says(stack: str) -> None:
    env = load_environment(REPO, stack)
    assert env.account is not None
    assert env.network is not None
    result = stack_run(stack)
    (account,) = result.of_type(ACCOUNT)
    props = account.inputs["properties"]
    assert props["disableLocalAuth"] is True, f"{account.urn}: keys must be off"
    assert props["publicNetworkAccess"] == env.account.public_network_access, account.urn
    assert props["networkAcls"]["defaultAction"] == "Deny", f"{account.urn}: ACLs must deny by default"
    assert props["customSubDomainName"], f"{account.urn}: Entra auth and private endpoints need a subdomain"
    cmk = env.encryption is not None and env.encryption.mode == "customer_managed"
    expected_identity = (
        env.account.identity if not cmk else "SystemAssigned, UserAssigned"
    )  # the key's identity joins the declared one
    assert account.inputs["identity"]["type"] == expected_identity, account.urn
    if env.stage == "production":
        assert props["publicNetworkAccess"] == "Disabled", f"{account.urn}: production is private only"
    endpoints = result.of_type(ENDPOINT)
    if env.network.mode == "private":
        (to_account,) = [
            e for e in endpoints if e.inputs["privateLinkServiceConnections"][0]["groupIds"] == ["account"]
        ]
        link = to_account.inputs["privateLinkServiceConnections"][0]
        assert link["privateLinkServiceId"] == account.outputs["id"], to_account.urn
        assert zones_of(result, to_account) == {
            "privatelink.openai.azure.com",
            "privatelink.cognitiveservices.azure.com",
        }, to_account.urn
        (to_blob,) = [
            e for e in endpoints if e.inputs["privateLinkServiceConnections"][0]["groupIds"] == ["blob"]
        ]
        assert zones_of(result, to_blob) == {"privatelink.blob.core.windows.net"}, to_blob.urn
        assert {z.inputs["privateZoneName"] for z in result.of_type(ZONE)} == ZONES | (
            {VAULT_ZONE} if cmk else set()
        )
    else:
        assert endpoints == [], [e.urn for e in endpoints]
        ranges = [r["value"] for r in props["networkAcls"]["ipRules"]]
        assert ranges == [str(r) for r in env.network.allowed_ip_ranges], account.urn


@pytest.mark.parametrize("stack", AZURE_STACKS)
def test_storage_denies_shared_keys_and_public_blobs(stack: str) -> None:
    result = stack_run(stack)
    (storage,) = result.of_type(STORAGE)
    inputs = storage.inputs
    assert inputs["allowSharedKeyAccess"] is False, f"{storage.urn}: shared keys must be off"
    assert inputs["allowBlobPublicAccess"] is False, f"{storage.urn}: no anonymous blobs"
    assert inputs["minimumTlsVersion"] == "TLS1_2", storage.urn
    assert inputs["networkRuleSet"]["defaultAction"] == "Deny", storage.urn
    for container in result.of_type(CONTAINER):
        assert container.inputs["publicAccess"] == "None", container.urn
    (policy,) = result.of_type("azure-native:storage:BlobContainerImmutabilityPolicy")
    assert policy.inputs["containerName"] == "audit-log", policy.urn
    assert policy.inputs["allowProtectedAppendWrites"] is True, policy.urn
    env = load_environment(REPO, stack)
    assert env.storage is not None
    assert policy.inputs["immutabilityPeriodSinceCreationInDays"] == env.storage.audit_retention_days, (
        policy.urn
    )
    (service,) = result.of_type("azure-native:storage:BlobServiceProperties")
    assert service.inputs["isVersioningEnabled"] is True, service.urn
    assert service.inputs["deleteRetentionPolicy"] == {"enabled": True, "days": env.storage.soft_delete_days}


@pytest.mark.parametrize("stack", AZURE_STACKS)
def test_roles_are_least_privilege_and_never_at_subscription_scope(stack: str) -> None:
    result = stack_run(stack)
    roles = result.of_type(ROLE)
    assert roles, f"{stack}: no role assignments"
    names = set()
    for role in roles:
        scope = role.inputs["scope"]
        assert re.match(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/.+", scope), (
            f"{role.urn}: scope {scope} is wider than a resource"
        )
        assert role.inputs["roleDefinitionId"].rsplit("/", 1)[-1] in ALLOWED_ROLES, role.urn
        names.add(role.inputs["roleAssignmentName"])
    assert len(names) == len(roles), "role assignment names collide"
    # Deterministic: a second run of the same program names them the same.
    again = run(stack, plain(read_stack_node(REPO, stack)))
    assert {r.inputs["roleAssignmentName"] for r in again.of_type(ROLE)} == names


SECRET_KEY = re.compile(
    r"(^|[_-])(password|secret|api[_-]?key|access[_-]?key|key[12]?|token|connection[_-]?string|sas)([_-]|$)",
    re.I,
)
KEY_LIKE = re.compile(r"[0-9a-f]{32}|[A-Za-z0-9+/]{40,}={0,2}")  # Azure OpenAI keys; base64 keys
SECRET_VALUE = re.compile(r"(AccountKey=|SharedAccessSignature|sig=|-----BEGIN|sk-[A-Za-z0-9]{20})")


def _walk(node: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [item for k, v in node.items() for item in _walk(v, f"{path}.{k}")] + [(path, node)]
    if isinstance(node, list):
        return [item for i, v in enumerate(node) for item in _walk(v, f"{path}[{i}]")]
    return [(path, node)]


@pytest.mark.parametrize("stack", [*AZURE_STACKS, "local"])
def test_no_secret_in_plain_config_or_in_any_input(stack: str) -> None:
    text = (REPO / "environments" / f"Pulumi.{stack}.yaml").read_text()
    assert not SECRET_VALUE.search(text), f"environments/Pulumi.{stack}.yaml holds a credential"
    for path, value in _walk(plain(read_stack_node(REPO, stack))):
        key = path.rsplit(".", 1)[-1]
        # api_key_env names a variable; encryption.key_* name and rotate a key that stays in its vault
        if SECRET_KEY.search(key) and not key.endswith("_env") and not path.startswith(".encryption."):
            pytest.fail(f"environments/Pulumi.{stack}.yaml: {path} looks like a secret in plain config")
        if isinstance(value, str) and KEY_LIKE.fullmatch(value):
            pytest.fail(f"environments/Pulumi.{stack}.yaml: {path} holds what looks like a key")
    for reg in stack_run(stack).registrations:
        dumped = json.dumps({k: v for k, v in reg.inputs.items() if k != "__provider"}, default=str)
        assert not SECRET_VALUE.search(dumped), f"{reg.urn}: an input holds a credential"
        target = reg.inputs.get("target")
        if isinstance(target, dict):
            assert target["auth"] == ("entra" if stack != "local" else "env:FTOPS_EMULATOR_KEY"), reg.urn


def _deployment_chain(result: Run) -> list[Registration]:
    """The deployments of the account in the order their dependencies force; fails unless the
    dependencies make one line (any two deployments ordered)."""
    deployments = result.of_type(DEPLOYMENT)
    urns = {d.urn for d in deployments}
    before = {d.urn: set(d.dependencies) & urns for d in deployments}
    reg = result.by_urn()
    # Transitive closure through non-deployment resources (the gate sits between two of them).
    for d in deployments:
        seen, todo = set(), list(d.dependencies)
        while todo:
            urn = todo.pop()
            if urn in seen or urn not in reg:
                continue
            seen.add(urn)
            if urn in urns:
                before[d.urn].add(urn)
            todo.extend(reg[urn].dependencies)
    ordered = sorted(deployments, key=lambda d: len(before[d.urn]))
    for i, d in enumerate(ordered):
        assert before[d.urn] == {o.urn for o in ordered[:i]}, (
            f"{d.urn} may be written at the same time as another deployment on the account: "
            f"after {sorted(before[d.urn])}"
        )
    return ordered


def test_dev_serving_deployment_serves_the_gates_output_and_deployments_form_a_chain() -> None:
    env = load_environment(REPO, "dev")
    result = stack_run("dev")
    job = result.named("support-bot-job")
    gate = result.named("support-bot-gate")
    assert job.inputs["base_model"] == result.named("support-sft-job").outputs["fine_tuned_model"], job.urn
    candidate = result.named("support-bot-candidate")
    serving = result.named("support-bot-support-bot")
    assert candidate.inputs["properties"]["model"]["name"] == job.outputs["model"], candidate.urn
    assert gate.inputs["candidate_model"] == job.outputs["model"], gate.urn
    assert serving.inputs["properties"]["model"]["name"] == gate.outputs["model"], serving.urn
    assert gate.urn in serving.dependencies, f"{serving.urn} must wait for {gate.urn}"
    assert [d.name for d in _deployment_chain(result)] == ["support-bot-candidate", "support-bot-support-bot"]
    # The gate's evidence goes to the evidence container, it compares with what serves now, and
    # its safety check is the shipped suite.
    evidence = result.named("container-evidence")
    assert gate.inputs["evidence_store"]["container"] == evidence.outputs["name"], gate.urn
    assert gate.inputs["baseline"] == {"kind": "serving", "deployment": "support-bot"}, gate.urn
    assert [(c["name"], c["grader"]) for c in gate.inputs["checks"]][-1] == ("safety", "refusal"), gate.urn
    declared = env.deployments["support-bot"]
    assert serving.inputs["sku"] == {"name": declared.sku.name, "capacity": declared.sku.capacity}, (
        serving.urn
    )
    # The declared candidate is the Developer tier, in ARM's spelling.
    assert candidate.inputs["sku"] == {"name": "DeveloperTier", "capacity": 50}, candidate.urn
    for dep in (candidate, serving):
        model = dep.inputs["properties"]["model"]
        assert (model["format"], model["version"]) == ("OpenAI", "1"), dep.urn
        assert "source" not in model, f"{dep.urn}: a model trained here needs no source"
        assert dep.inputs["properties"]["versionUpgradeOption"] == "NoAutoUpgrade", dep.urn


def test_data_plane_calls_wait_for_the_account_and_the_deployers_role() -> None:
    result = stack_run("dev")
    (account,) = result.of_type(ACCOUNT)
    roles = {r.urn for r in result.of_type(ROLE) if r.inputs["scope"] == account.outputs["id"]}
    assert len(roles) == 2, roles
    for reg in result.of_type("TrainingFileProvider"):
        missing = ({account.urn} | roles) - set(reg.dependencies)
        assert not missing, f"{reg.urn} may call the data plane before {sorted(missing)}"
        assert reg.inputs["target"]["endpoint"] == "https://oai-ftops-dev.openai.azure.com/", reg.urn
        assert reg.inputs["target"]["arm_id"] == account.outputs["id"], reg.urn


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_a_release_pin_deploys_from_the_source_account_and_trains_nothing(stack: str) -> None:
    env = load_environment(REPO, stack)
    pin = env.releases["support-bot"]
    result = stack_run(stack)
    for kind in ("TrainingFileProvider", "FineTuningJobProvider"):
        assert result.of_type(kind) == [], [r.urn for r in result.of_type(kind)]
    chain = _deployment_chain(result)
    assert [d.name for d in chain] == ["support-bot-candidate", "support-bot-support-bot"]
    candidate, serving = chain
    gate = result.named("support-bot-gate")
    assert gate.inputs["candidate_model"] == pin.model, gate.urn
    assert candidate.inputs["properties"]["model"] == {
        "format": "OpenAI",
        "name": pin.model,
        "version": "1",
        "source": pin.source_account,
    }, candidate.urn
    assert serving.inputs["properties"]["model"]["name"] == gate.outputs["model"], serving.urn
    assert serving.inputs["properties"]["model"]["source"] == pin.source_account, serving.urn
    declared = env.deployments["support-bot"]
    assert serving.inputs["sku"] == {"name": declared.sku.name, "capacity": declared.sku.capacity}, (
        serving.urn
    )
    # No Developer tier outside development: it gives no data-residency guarantee.
    assert candidate.inputs["sku"] == {"name": declared.sku.name, "capacity": 5}, candidate.urn
    assert result.outputs["deployments"] == {"support-bot": gate.outputs["model"]}
    assert result.outputs["evidence"] == {"support-bot": gate.outputs["evidence_digest"]}
    assert result.outputs["endpoint"] == f"https://oai-ftops-{stack}.openai.azure.com/"


def test_prod_deployments_wait_for_the_custom_content_filter() -> None:
    result = stack_run("prod")
    (policy,) = result.of_type("azure-native:cognitiveservices:RaiPolicy")
    filters = {(f["name"], f["source"]): f for f in policy.inputs["properties"]["contentFilters"]}
    assert filters[("violence", "Completion")]["severityThreshold"] == "Low", policy.urn
    assert "severityThreshold" not in filters[("jailbreak", "Prompt")], policy.urn
    for dep in result.of_type(DEPLOYMENT):
        assert dep.inputs["properties"]["raiPolicyName"] == "ftops-strict", dep.urn
        assert policy.urn in dep.dependencies, f"{dep.urn} must wait for {policy.urn}"


def test_bring_your_own_vnet_and_zones() -> None:
    subnet = (
        "/subscriptions/9a8b7c6d-0000-4000-8000-000000000000/resourceGroups/rg-hub/providers/"
        "Microsoft.Network/virtualNetworks/vnet-hub/subnets/snet-pe"
    )
    zone = (
        "/subscriptions/9a8b7c6d-0000-4000-8000-000000000000/resourceGroups/rg-hub/providers/"
        "Microsoft.Network/privateDnsZones/privatelink.openai.azure.com"
    )

    def bring(raw: dict[str, Any]) -> None:
        raw["network"]["existing_subnet_id"] = subnet
        raw["network"]["existing_dns_zone_ids"] = {"privatelink.openai.azure.com": zone}

    result = edited("staging", bring)
    assert result.of_type("azure-native:network:VirtualNetwork") == []
    assert result.of_type("azure-native:network:Subnet") == []
    created = {z.inputs["privateZoneName"] for z in result.of_type(ZONE)}
    assert created == (ZONES | {VAULT_ZONE}) - {"privatelink.openai.azure.com"}  # staging: its own vault
    for link in result.of_type("azure-native:privatedns:VirtualNetworkLink"):
        assert link.inputs["virtualNetwork"]["id"] == subnet.split("/subnets/", maxsplit=1)[0], link.urn
    for endpoint in result.of_type(ENDPOINT):
        assert endpoint.inputs["subnet"]["id"] == subnet, endpoint.urn
    groups = [g for g in result.of_type(ZONE_GROUP) if g.parent.endswith("::pe-account")]
    assert zone in {c["privateDnsZoneId"] for c in groups[0].inputs["privateDnsZoneConfigs"]}


def test_user_assigned_identity_is_created_and_attached() -> None:
    def user_assigned(raw: dict[str, Any]) -> None:
        raw["account"]["identity"] = "SystemAssigned, UserAssigned"

    result = edited("prod", user_assigned)
    identities = result.of_type("azure-native:managedidentity:UserAssignedIdentity")
    (identity,) = [i for i in identities if i.name == "identity"]
    (key_identity,) = [i for i in identities if i.name == "encryption-identity"]  # prod's CMK
    (account,) = result.of_type(ACCOUNT)
    assert account.inputs["identity"]["type"] == "SystemAssigned, UserAssigned", account.urn
    assert list(account.inputs["identity"]["userAssignedIdentities"]) == [
        identity.outputs["id"],
        key_identity.outputs["id"],
    ], account.urn


def test_an_adopted_resource_group_is_not_managed() -> None:
    def adopt(raw: dict[str, Any]) -> None:
        raw["naming"]["resource_group"] = "rg-platform-shared"

    result = edited("dev", adopt)
    assert result.of_type("azure-native:resources:ResourceGroup") == []
    (account,) = result.of_type(ACCOUNT)
    assert account.inputs["resourceGroupName"] == "rg-platform-shared", account.urn


def plan_lines(result: Run) -> list[str]:
    """type, name and parent of every resource: what a reviewer needs to see change."""
    return sorted(f"{r.typ}  {r.name}  (parent: {r.parent_name})" for r in result.registrations)


@pytest.mark.parametrize("stack", [*AZURE_STACKS, "local"])
def test_plan_matches_the_reviewed_snapshot(stack: str) -> None:
    lines = plan_lines(stack_run(stack))
    snapshot = SNAPSHOTS / f"{stack}.txt"
    if os.environ.get("FTOPS_UPDATE_SNAPSHOTS") == "1":
        snapshot.parent.mkdir(exist_ok=True)
        snapshot.write_text("\n".join(lines) + "\n")
    assert snapshot.exists(), f"no snapshot for {stack}: run FTOPS_UPDATE_SNAPSHOTS=1 pytest {__file__}"
    expected = snapshot.read_text().splitlines()
    added = sorted(set(lines) - set(expected))
    removed = sorted(set(expected) - set(lines))
    assert lines == expected, (
        f"the {stack} plan changed (review it, then FTOPS_UPDATE_SNAPSHOTS=1 to accept):\n"
        + "\n".join([*(f"+ {a}" for a in added), *(f"- {r}" for r in removed)])
    )


@pytest.mark.parametrize("stack", AZURE_STACKS)
def test_applied_changes_are_recorded_in_the_audit_container(stack: str) -> None:
    result = stack_run(stack)
    entries = result.of_type("AuditEntryProvider")
    (storage,) = result.of_type(STORAGE)
    by_urn = result.by_urn()
    for entry in entries:
        assert entry.inputs["audit"] == {
            "kind": "blob",
            "account_url": storage.outputs["primaryEndpoints"]["blob"],
            "container": "audit-log",
            "blob": f"{stack}.jsonl",
        }, entry.urn
        watched = [
            by_urn[d] for d in entry.dependencies if d in by_urn and by_urn[d].typ != "AuditEntryProvider"
        ]
        assert watched, f"{entry.urn} is written before what it records"
    deployed = result.named("support-bot-support-bot-deployed")
    assert result.named("support-bot-support-bot").urn in deployed.dependencies, deployed.urn
    gated = result.named("support-bot-gated")
    assert gated.inputs["details"]["account_id"].endswith(("/accounts/oai-ftops-dev",)), gated.urn
    assert result.outputs["gated"]["support-bot"]["account_id"] == gated.inputs["details"]["account_id"]


# ---------------------------------------------------------------- customer-managed keys

KEY = "azure-native:keyvault:Key"
VAULT = "azure-native:keyvault:Vault"
CRYPTO_USER = "e147488a-f6f5-4113-8e2d-b22465e65bf6"


def _depends_on(result: Run, urn: str, target: str) -> bool:
    """Whether `urn` waits for `target`, directly or through what it waits for."""
    reg, seen, todo = result.by_urn(), set(), [urn]
    while todo:
        here = todo.pop()
        if here == target:
            return True
        if here in seen or here not in reg:
            continue
        seen.add(here)
        todo.extend(reg[here].dependencies)
    return False


@pytest.mark.parametrize("stack", AZURE_STACKS)
def test_account_and_storage_are_encrypted_as_declared_with_the_role_on_the_key_first(stack: str) -> None:
    env = load_environment(REPO, stack)
    result = stack_run(stack)
    (account,) = result.of_type(ACCOUNT)
    (storage,) = result.of_type(STORAGE)
    cmk = env.encryption is not None and env.encryption.mode == "customer_managed"
    if env.stage == "production":
        assert cmk, f"{stack}: production must use customer-managed keys"
    if not cmk:
        assert account.inputs["properties"].get("encryption") is None, account.urn
        assert storage.inputs.get("encryption") is None, storage.urn
        assert result.of_type(KEY) == [], stack
        return
    assert env.encryption is not None
    (key,) = result.of_type(KEY)
    (vault,) = result.of_type(VAULT)
    props = vault.inputs["properties"]
    assert props["enableRbacAuthorization"] is True, vault.urn
    assert props["enableSoftDelete"] is True, vault.urn
    assert props["enablePurgeProtection"] is True, vault.urn
    assert vault.inputs["location"] == env.location, f"{vault.urn}: the vault must be in the account's region"
    assert env.network is not None
    if env.network.mode == "private":
        assert props["publicNetworkAccess"] == "Disabled", vault.urn
        (to_vault,) = [
            e
            for e in result.of_type(ENDPOINT)
            if e.inputs["privateLinkServiceConnections"][0]["groupIds"] == ["vault"]
        ]
        assert zones_of(result, to_vault) == {VAULT_ZONE}, to_vault.urn
    policy = key.inputs["properties"]["rotationPolicy"]
    rotate = [a for a in policy["lifetimeActions"] if a["action"]["type"] == "rotate"]
    assert rotate == [
        {
            "action": {"type": "rotate"},
            "trigger": {"timeAfterCreate": f"P{env.encryption.key_rotation_days}D"},
        }
    ], key.urn
    # Exactly one role on the key: Crypto Service Encryption User, to the key's identity, scoped to
    # the key itself (not the vault, never the subscription).
    crypto = [r for r in result.of_type(ROLE) if r.inputs["roleDefinitionId"].endswith(CRYPTO_USER)]
    (role,) = crypto
    assert role.inputs["scope"] == key.outputs["id"], (
        f"{role.urn}: scope {role.inputs['scope']} is not the key"
    )
    assert "/keys/" in role.inputs["scope"], role.urn
    (identity,) = [
        i
        for i in result.of_type("azure-native:managedidentity:UserAssignedIdentity")
        if i.name == "encryption-identity"
    ]
    assert role.inputs["principalId"] == identity.outputs["principalId"], role.urn
    encryption = account.inputs["properties"]["encryption"]
    assert encryption["keySource"] == "Microsoft.KeyVault", account.urn
    assert encryption["keyVaultProperties"]["keyName"] == env.encryption.key_name, account.urn
    assert encryption["keyVaultProperties"]["identityClientId"] == identity.outputs["clientId"], account.urn
    assert identity.outputs["id"] in account.inputs["identity"]["userAssignedIdentities"], account.urn
    assert storage.inputs["encryption"]["keySource"] == "Microsoft.Keyvault", storage.urn
    assert storage.inputs["encryption"]["keyVaultProperties"]["keyName"] == env.encryption.key_name, (
        storage.urn
    )
    assert (
        storage.inputs["encryption"]["encryptionIdentity"]["encryptionUserAssignedIdentity"]
        == (identity.outputs["id"])
    ), storage.urn
    # The order Azure needs: identity -> role on the key -> the encryption that uses it.
    assert _depends_on(result, role.urn, identity.urn), role.urn
    for encrypted in (account, storage):
        assert _depends_on(result, encrypted.urn, role.urn), f"{encrypted.urn} does not wait for {role.urn}"


def test_an_existing_vault_is_used_and_none_is_created() -> None:
    vault_id = (
        "/subscriptions/9a8b7c6d-0000-4000-8000-000000000000/resourceGroups/rg-keys/providers/"
        "Microsoft.KeyVault/vaults/kv-central"
    )

    def bring(raw: dict[str, Any]) -> None:
        raw["encryption"]["key_vault"] = {"existing_id": vault_id, "location": raw["location"]}

    result = edited("prod", bring)
    assert result.of_type(VAULT) == []
    assert VAULT_ZONE not in {z.inputs["privateZoneName"] for z in result.of_type(ZONE)}
    (key,) = result.of_type(KEY)
    assert (key.inputs["vaultName"], key.inputs["resourceGroupName"]) == ("kv-central", "rg-keys"), key.urn
    (account,) = result.of_type(ACCOUNT)
    vault_uri = account.inputs["properties"]["encryption"]["keyVaultProperties"]["keyVaultUri"]
    assert vault_uri == "https://kv-central.vault.azure.net/", account.urn


# ---------------------------------------------------------------- alerts

ALERT = "azure-native:monitor:MetricAlert"
# Valid for Microsoft.CognitiveServices/accounts (Azure Monitor's supported-metrics reference);
# the legacy Cognitive Services metrics (Latency, ServerErrors, BlockedCalls) say "do not use for
# Azure OpenAI" there.
OPENAI_METRICS = {
    "AzureOpenAIRequests",
    "AzureOpenAITimeToResponse",
    "RAIRejectedRequests",
    "TokenTransaction",
    "AzureOpenAIProvisionedManagedUtilizationV2",
}


@pytest.mark.parametrize("stack", AZURE_STACKS)
def test_every_serving_deployment_has_its_alerts_scoped_to_the_account(stack: str) -> None:
    from ftops.config.alerts import rules_for
    from ftops.ratelimit import limits_for

    env = load_environment(REPO, stack)
    result = stack_run(stack)
    (account,) = result.of_type(ACCOUNT)
    alerts = result.of_type(ALERT)
    for name, dep in env.deployments.items():
        mine = {
            a.name.removeprefix(f"alert-{name}-"): a for a in alerts if a.name.startswith(f"alert-{name}-")
        }
        assert set(mine) == {"throttled", "server-errors", "latency", "content-filter", "capacity"}, stack
        for kind, alert in mine.items():
            assert alert.inputs["scopes"] == [account.outputs["id"]], alert.urn
            assert alert.inputs["windowSize"] == f"PT{env.alerts.window_minutes}M", alert.urn
            (criterion,) = alert.inputs["criteria"]["allOf"]
            assert criterion["metricName"] in OPENAI_METRICS, alert.urn
            assert criterion["metricNamespace"] == "Microsoft.CognitiveServices/accounts", alert.urn
            dims = {d["name"]: d["values"] for d in criterion["dimensions"]}
            assert dims["ModelDeploymentName"] == [name], alert.urn
            if kind == "throttled":
                assert dims["StatusCode"] == ["429"], alert.urn
                _, rpm = limits_for(dep.sku.capacity, "gpt-4.1-mini")
                expected = max(1, -(-rpm * env.alerts.window_minutes * env.alerts.throttled_percent // 100))
                assert criterion["threshold"] == expected, alert.urn
            if kind == "capacity":
                tpm = dep.sku.capacity * 1000
                assert criterion["metricName"] == "TokenTransaction", alert.urn
                assert (
                    criterion["threshold"]
                    == tpm * env.alerts.window_minutes * env.alerts.token_usage_percent / 100
                )
            if kind == "latency":
                assert (criterion["metricName"], criterion["timeAggregation"]) == (
                    "AzureOpenAITimeToResponse",
                    "Average",
                ), alert.urn
        # What the README prices: 8 monitored time series per deployment (server errors: 4 codes).
        assert sum(r.series for r in rules_for(env.alerts, "", dep.sku.name, dep.sku.capacity)) == 8
    groups = result.of_type("azure-native:monitor:ActionGroup")
    if env.alerts.emails or env.alerts.webhooks:
        (group,) = groups
        assert [r["emailAddress"] for r in group.inputs["emailReceivers"]] == env.alerts.emails, group.urn
        for alert in alerts:
            assert alert.inputs["actions"] == [{"actionGroupId": group.outputs["id"]}], alert.urn
    else:
        assert groups == [], stack
    (query,) = result.of_type("azure-native:operationalinsights:SavedSearch")
    assert "modelDeploymentName" in query.inputs["query"], query.urn
    assert "percentile(DurationMs, 95)" in query.inputs["query"], query.urn


def test_provisioned_deployments_alert_on_utilisation_and_alerts_can_be_off() -> None:
    def provisioned(raw: dict[str, Any]) -> None:
        raw["deployments"]["support-bot"]["sku"] = {"name": "ProvisionedManaged", "capacity": 50}
        raw["alerts"]["webhooks"] = ["https://hooks.example.com/ftops"]

    result = edited("prod", provisioned)
    (capacity,) = [a for a in result.of_type(ALERT) if a.name.endswith("-capacity")]
    (criterion,) = capacity.inputs["criteria"]["allOf"]
    assert (criterion["metricName"], criterion["threshold"]) == (
        "AzureOpenAIProvisionedManagedUtilizationV2",
        80.0,
    )
    (group,) = result.of_type("azure-native:monitor:ActionGroup")
    assert [w["serviceUri"] for w in group.inputs["webhookReceivers"]] == ["https://hooks.example.com/ftops"]

    def off(raw: dict[str, Any]) -> None:
        raw["alerts"] = {"enabled": False}

    quiet = edited("dev", off)
    assert quiet.of_type(ALERT) == []
    assert quiet.of_type("azure-native:monitor:ActionGroup") == []
