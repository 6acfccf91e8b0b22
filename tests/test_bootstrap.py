"""The bootstrap project (`bootstrap/`) under Pulumi mocks: its settings' one-line errors, and every
invariant of issue 22 on the registered resources: exact OIDC subjects, issuer and audience; no
role at subscription scope, no Owner, the role-assignment right only with its condition; the
state account; reviewers on staging and prod; the ruleset's checks; the runner's network and
identity; no secret in any input. Every assertion names the URN it is about.
"""

from __future__ import annotations

import asyncio
import json
import re
import runpy
import shutil
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from ftops.bootstrap import roles
from ftops.bootstrap.azure import GITHUB_AUDIENCE, GITHUB_ISSUER, STATE_CONTAINER
from ftops.bootstrap.github import GITHUB_ACTIONS_APP_ID, VARIABLES
from ftops.bootstrap.settings import CONFIG_KEY, load_settings, settings_file
from ftops.config.yamlfiles import plain, read_yaml
from ftops.errors import ConfigError, UsageError
from tests.conftest import REPO
from tests.pulumi_harness import SUBSCRIPTION, Mocks, RecordingMonitor, Registration, Run

SUB_ID = SUBSCRIPTION.split("/")[-1]
FED = "azure-native:managedidentity:FederatedIdentityCredential"
IDENTITY = "azure-native:managedidentity:UserAssignedIdentity"
ASSIGNMENT = "azure-native:authorization:RoleAssignment"
DEFINITION = "azure-native:authorization:RoleDefinition"
STORAGE = "azure-native:storage:StorageAccount"
GH_ENV = "github:index/repositoryEnvironment:RepositoryEnvironment"
GH_POLICY = "github:index/repositoryEnvironmentDeploymentPolicy:RepositoryEnvironmentDeploymentPolicy"
GH_VAR = "github:index/actionsEnvironmentVariable:ActionsEnvironmentVariable"
GH_RULESET = "github:index/repositoryRuleset:RepositoryRuleset"
GH_WORKFLOWS = "github:index/workflowRepositoryPermissions:WorkflowRepositoryPermissions"
JOB = "azure-native:app:Job"
MANAGED_ENV = "azure-native:app:ManagedEnvironment"
SECRET_VALUE = re.compile(
    r"(AccountKey=|SharedAccessSignature|sig=|-----BEGIN|sk-[A-Za-z0-9]{20}|gh[pousr]_[A-Za-z0-9]{20})"
)

# ARM ids for the types the environment stacks do not use (wire input names in braces).
EXTRA_IDS = {
    "azure-native:managedidentity:FederatedIdentityCredential": "{rg}/providers/Microsoft.ManagedIdentity/"
    "userAssignedIdentities/{resourceName}/federatedIdentityCredentials/{federatedIdentityCredentialResourceName}",
    "azure-native:containerregistry:Registry": "{rg}/providers/Microsoft.ContainerRegistry/registries/{registryName}",
    "azure-native:keyvault:Vault": "{rg}/providers/Microsoft.KeyVault/vaults/{vaultName}",
    "azure-native:app:ManagedEnvironment": "{rg}/providers/Microsoft.App/managedEnvironments/{environmentName}",
    "azure-native:app:Job": "{rg}/providers/Microsoft.App/jobs/{jobName}",
    "azure-native:authorization:RoleDefinition": "{scope}/providers/Microsoft.Authorization/roleDefinitions/"
    "{roleDefinitionId}",
    "azure-native:authorization:ManagementLockByScope": "{scope}/providers/Microsoft.Authorization/locks/{lockName}",
}


class BootstrapMocks(Mocks):
    """The harness's mocks, plus ids for the bootstrap's own types and identities' client and
    principal ids (distinct per identity, so a test can tell whose variable is whose)."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        if args.typ in EXTRA_IDS:
            self.resources.append(args)
            outputs = dict(args.inputs)
            values = {k: v for k, v in outputs.items() if isinstance(v, str)}
            rg = f"{SUBSCRIPTION}/resourceGroups/{outputs.get('resourceGroupName', 'rg-unknown')}"
            arm_id = EXTRA_IDS[args.typ].format_map({**values, "rg": rg})
            identity = dict(outputs.get("identity") or {})
            if identity.get("userAssignedIdentities"):  # PAN takes a list; ARM answers a map by id
                identity["userAssignedIdentities"] = {i: {} for i in identity["userAssignedIdentities"]}
                outputs["identity"] = identity
            return arm_id, {**outputs, "id": arm_id, "name": args.name}
        arm_id, outputs = super().new_resource(args)
        if args.typ == IDENTITY:
            outputs.update(clientId=f"client-{args.name}", principalId=f"principal-{args.name}")
        return arm_id, outputs


def run_bootstrap(stack: str, raw: dict[str, Any], root: Path = REPO) -> Run:
    mocks = BootstrapMocks()
    monitor = RecordingMonitor(mocks)
    pulumi_settings.ROOT.set(None)
    asyncio.set_event_loop(asyncio.new_event_loop())
    pulumi.runtime.set_mocks(mocks, project="ftops-bootstrap", stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config({CONFIG_KEY: json.dumps(raw)})

    def program_main() -> None:
        runpy.run_path(str(root / "bootstrap" / "__main__.py"), run_name="__main__")

    _sync_await(run_pulumi_func(program_main))
    stack_resource = pulumi_settings.get_root_resource()
    assert stack_resource is not None
    resolved = _sync_await(pulumi.Output.from_input(dict(stack_resource.outputs)).future())  # type: ignore[attr-defined]
    return Run(mocks, monitor.registrations, dict(resolved or {}))


def example_raw() -> dict[str, Any]:
    tree = read_yaml(settings_file(REPO, "example"), "bootstrap/Pulumi.example.yaml")
    raw: dict[str, Any] = plain(tree["config"][CONFIG_KEY])
    raw["subscription_id"] = SUB_ID
    return raw


@pytest.fixture(scope="module")
def boot() -> Run:
    return run_bootstrap("example", example_raw())


def _by_urn(run: Run) -> dict[str, Registration]:
    return run.by_urn()


def _identity_of(run: Run, principal: str) -> str:
    """The identity's resource name from the principal id the mocks gave it."""
    return principal.removeprefix("principal-")


def _assignments(run: Run, who: str | None = None) -> list[Registration]:
    found = run.of_type(ASSIGNMENT)
    return [r for r in found if who is None or r.inputs.get("principalId") == f"principal-{who}"]


def _role_of(reg: Registration) -> str:
    return str(reg.inputs["roleDefinitionId"]).rsplit("/", 1)[-1]


# ------------------------------------------------------------------ settings


def _write_stack(tmp_path: Path, text: str, name: str = "acme") -> Path:
    (tmp_path / "bootstrap").mkdir(exist_ok=True)
    path = tmp_path / "bootstrap" / f"Pulumi.{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _example_text() -> str:
    return (REPO / "bootstrap" / "Pulumi.example.yaml").read_text(encoding="utf-8")


def test_the_commented_example_is_a_valid_stack_file() -> None:
    settings = load_settings(REPO, "example")
    assert list(settings.environments) == ["dev", "staging", "prod"]
    assert [settings.reviewed(e) for e in settings.environments] == [False, True, True]
    assert settings.state_account == "stacmestate"


def test_an_unknown_key_names_the_file_the_line_and_the_closest_key(tmp_path: Path) -> None:
    _write_stack(tmp_path, _example_text().replace("      owner: acme", "      ownr: acme"))
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path, "acme")
    assert info.value.problems == [
        "bootstrap/Pulumi.acme.yaml: ftops:bootstrap.github.ownr: unknown key; did you mean 'owner'? "
        "allowed keys: owner, repository, branch, reviewers, prevent_self_review, required_approvals, "
        "required_checks (line 15)"
    ]


def test_wrong_values_each_get_one_line_with_what_is_allowed(tmp_path: Path) -> None:
    text = (
        _example_text()
        .replace("location: swedencentral        #", "location: swedencentrl        #")
        .replace("subscription_id: 00000000-0000-0000-0000-000000000000", "subscription_id: my-sub")
        .replace("runner_subnet: 10.40.0.0/27", "runner_subnet: 10.50.0.0/27")
        .replace("max_executions: 4", "max_executions: 0")
    )
    _write_stack(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path, "acme")
    assert info.value.problems == [
        "bootstrap/Pulumi.acme.yaml: ftops:bootstrap.subscription_id: must be a GUID in lowercase, like "
        "00000000-0000-0000-0000-000000000000 (line 8)",
        "bootstrap/Pulumi.acme.yaml: ftops:bootstrap.location: 'swedencentrl' is not an Azure region; did you "
        "mean 'swedencentral'? use the ARM name, e.g. swedencentral (line 10)",
        "bootstrap/Pulumi.acme.yaml: ftops:bootstrap.network.runner_subnet: 10.50.0.0/27 is not inside "
        "address_space 10.40.0.0/16 (line 34)",
        "bootstrap/Pulumi.acme.yaml: ftops:bootstrap.runner.max_executions: must be >= 1 (line 44)",
    ]


def test_a_reviewed_environment_needs_a_reviewer_and_read_only_names_are_reserved(tmp_path: Path) -> None:
    _write_stack(tmp_path, _example_text().replace("teams: [1234567]", "teams: []"))
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path, "acme")
    assert info.value.problems == [
        "bootstrap/Pulumi.acme.yaml: ftops:bootstrap.github.reviewers: name at least one team or user id; a "
        "reviewed environment with nobody to review would let anyone deploy (line 18)",
    ]
    _write_stack(tmp_path, _example_text().replace("      staging: {}", "      preview: {}"))
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path, "acme")
    assert info.value.problems == [
        "bootstrap/Pulumi.acme.yaml: ftops:bootstrap.environments.preview: 'preview' is the read-only identity's "
        "GitHub environment; deploying environments need other names (line 25)",
    ]


def test_the_canary_environment_name_is_reserved(tmp_path: Path) -> None:
    _write_stack(tmp_path, _example_text().replace("      staging: {}", "      canary: {}"))
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path, "acme")
    assert info.value.problems == [
        "bootstrap/Pulumi.acme.yaml: ftops:bootstrap.environments.canary: 'canary' is the canary identity's "
        "GitHub environment; deploying environments need other names (line 25)",
    ]


def test_a_missing_stack_file_says_where_the_example_is(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        load_settings(tmp_path, "acme")
    assert str(info.value) == "bootstrap/Pulumi.acme.yaml: no such bootstrap stack file"
    assert "bootstrap/Pulumi.example.yaml" in (info.value.fix or "")


def test_the_program_refuses_invalid_settings_with_the_same_lines(tmp_path: Path) -> None:
    shutil.copytree(REPO / "bootstrap", tmp_path / "bootstrap")
    raw = example_raw()
    raw["github"]["ownr"] = raw["github"].pop("owner")
    _write_stack(tmp_path, _example_text().replace("      owner: acme", "      ownr: acme"), "example")
    with pytest.raises(Exception, match=r"ftops:bootstrap\.github\.ownr: unknown key; did you mean 'owner'"):
        run_bootstrap("example", raw, tmp_path)


# ------------------------------------------------------------------ identities and OIDC


def test_each_deploying_identity_trusts_exactly_its_own_environment(boot: Run) -> None:
    creds = boot.of_type(FED)
    for env in ("dev", "staging", "prod"):
        identity = f"{env}-deploy"
        mine = [c for c in creds if c.inputs["resourceName"] == f"id-acme-{env}-deploy"]
        assert len(mine) == 1, [c.urn for c in mine]
        cred = mine[0]
        assert cred.inputs["subject"] == f"repo:acme/ftops:environment:{env}", cred.urn
        assert cred.inputs["issuer"] == GITHUB_ISSUER == "https://token.actions.githubusercontent.com", (
            cred.urn
        )
        assert cred.inputs["audiences"] == [GITHUB_AUDIENCE] == ["api://AzureADTokenExchange"], cred.urn
        assert boot.by_urn()[cred.parent].name == env, f"{cred.urn} is not in {identity}'s component"


def test_the_read_only_identity_is_trusted_only_from_preview_and_readonly(boot: Run) -> None:
    creds = [c for c in boot.of_type(FED) if c.inputs["resourceName"] == "id-acme-readonly"]
    assert sorted(c.inputs["subject"] for c in creds) == [
        "repo:acme/ftops:environment:preview",
        "repo:acme/ftops:environment:readonly",
    ]
    for cred in boot.of_type(FED):
        subject = cred.inputs["subject"]
        assert not re.search(r"\*|:ref:|pull_request", subject), cred.urn


def test_identities_live_in_the_ops_group_out_of_reach_of_their_own_rights(boot: Run) -> None:
    for reg in boot.of_type(IDENTITY):
        assert reg.inputs["resourceGroupName"] == "rg-acme-ops", reg.urn


# ------------------------------------------------------------------ least privilege


def test_no_role_assignment_at_subscription_scope_and_no_owner(boot: Run) -> None:
    assignments = _assignments(boot)
    assert len(assignments) > 20
    for reg in assignments:
        scope = str(reg.inputs["scope"])
        assert re.match(r"^/subscriptions/[^/]+/resourceGroups/[^/]+", scope), f"{reg.urn}: scope {scope}"
        assert _role_of(reg) not in roles.FORBIDDEN, (
            f"{reg.urn}: {_role_of(reg)} is Owner, Contributor or UAA"
        )
        assert reg.inputs["principalType"] == "ServicePrincipal", reg.urn


def test_the_role_assignment_right_comes_only_with_its_condition(boot: Run) -> None:
    definitions = {d.inputs["roleDefinitionId"]: d for d in boot.of_type(DEFINITION)}
    writers = {
        guid
        for guid, d in definitions.items()
        for p in d.inputs["permissions"]
        for action in p["actions"]
        if action in (roles.ROLE_ASSIGNMENT_WRITE, roles.ROLE_ASSIGNMENT_DELETE) or action.endswith("*")
    }
    assigner = roles.stable_guid(SUB_ID, "acme", "role-assigner")
    assert writers == {assigner}
    conditioned = [a for a in _assignments(boot) if _role_of(a) == assigner]
    assert len(conditioned) == 3  # one per environment
    for reg in conditioned:
        assert reg.inputs["condition"] == roles.delegation_condition(), reg.urn
        assert reg.inputs["conditionVersion"] == "2.0", reg.urn
        assert reg.inputs["scope"] == f"{SUBSCRIPTION}/resourceGroups/rg-acme-{reg.name.split('-')[0]}", (
            reg.urn
        )
    condition = roles.delegation_condition()
    for guid in roles.DELEGABLE:
        assert condition.count(guid) == 2, "write and delete both limited to the four roles"
    assert (
        "@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals"
        in condition
    )
    assert (
        "@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals"
        in condition
    )


def test_the_deployer_role_lists_exactly_the_actions_the_stacks_use(boot: Run) -> None:
    deployer = next(d for d in boot.of_type(DEFINITION) if d.name == "deployer")
    actions = deployer.inputs["permissions"][0]["actions"]
    assert actions == list(roles.DEPLOYER_ACTIONS)
    assert not [a for a in actions if "*" in a], deployer.urn
    assert roles.ROLE_ASSIGNMENT_WRITE not in actions, deployer.urn
    assert sorted(deployer.inputs["assignableScopes"]) == sorted(
        f"{SUBSCRIPTION}/resourceGroups/rg-acme-{env}" for env in ("dev", "staging", "prod")
    ), deployer.urn
    for definition in boot.of_type(DEFINITION):
        for scope in definition.inputs["assignableScopes"]:
            assert "/resourceGroups/" in scope, f"{definition.urn}: assignable at {scope}"


def test_a_deploying_identity_holds_its_group_the_network_joins_and_the_state_container(boot: Run) -> None:
    ids = {k: roles.stable_guid(SUB_ID, "acme", k) for k in ("deployer", "role-assigner", "network-joiner")}
    ops = f"{SUBSCRIPTION}/resourceGroups/rg-acme-ops"
    for env in ("dev", "staging", "prod"):
        held = sorted((_role_of(a), str(a.inputs["scope"])) for a in _assignments(boot, f"{env}-deploy"))
        vnet = f"{ops}/providers/Microsoft.Network/virtualNetworks/vnet-acme-ops"
        zones = f"{ops}/providers/Microsoft.Network/privateDnsZones"
        assert held == sorted(
            [
                (ids["deployer"], f"{SUBSCRIPTION}/resourceGroups/rg-acme-{env}"),
                (ids["role-assigner"], f"{SUBSCRIPTION}/resourceGroups/rg-acme-{env}"),
                (ids["network-joiner"], f"{vnet}/subnets/snet-private-endpoints"),
                (ids["network-joiner"], f"{zones}/privatelink.openai.azure.com"),
                (ids["network-joiner"], f"{zones}/privatelink.cognitiveservices.azure.com"),
                (ids["network-joiner"], f"{zones}/privatelink.blob.core.windows.net"),
                (
                    roles.BLOB_DATA_CONTRIBUTOR,
                    f"{ops}/providers/Microsoft.Storage/storageAccounts/stacmestate/blobServices/default/"
                    f"containers/{STATE_CONTAINER}",
                ),
            ]
        ), env


def test_the_read_only_identity_reads_and_nothing_more(boot: Run) -> None:
    held = _assignments(boot, "readonly")
    allowed = {roles.READER, roles.OPENAI_USER, roles.BLOB_DATA_READER}
    assert {_role_of(a) for a in held} == allowed
    for env in ("dev", "staging", "prod"):
        group = f"{SUBSCRIPTION}/resourceGroups/rg-acme-{env}"
        here = {_role_of(a): a for a in held if a.inputs["scope"] == group}
        assert set(here) == allowed, env
        blob = here[roles.BLOB_DATA_READER]
        assert blob.inputs["condition"] == roles.container_condition(("evaluation-evidence", "audit-log")), (
            blob.urn
        )
        assert blob.inputs["conditionVersion"] == "2.0", blob.urn
        assert "'evaluation-evidence', 'audit-log'" in blob.inputs["condition"]
        assert "condition" not in here[roles.READER].inputs, here[roles.READER].urn
    state = [a for a in held if str(a.inputs["scope"]).endswith(f"/containers/{STATE_CONTAINER}")]
    assert [_role_of(a) for a in state] == [roles.BLOB_DATA_READER]


def test_the_read_only_identity_still_has_no_role_that_writes_a_blob(boot: Run) -> None:
    custom = {d.inputs["roleDefinitionId"] for d in boot.of_type(DEFINITION)}
    for reg in _assignments(boot, "readonly"):
        role = _role_of(reg)
        # Only the three read roles; in particular no custom role (the writer is one).
        assert role in (roles.READER, roles.OPENAI_USER, roles.BLOB_DATA_READER), f"{reg.urn}: {role}"
        assert role not in custom, reg.urn
    creds = [c for c in boot.of_type(FED) if c.inputs["resourceName"] == "id-acme-readonly"]
    assert "repo:acme/ftops:environment:canary" not in [c.inputs["subject"] for c in creds]


# ------------------------------------------------------------------ the canary's identity


def test_the_canary_identity_is_trusted_only_from_the_canary_environment(boot: Run) -> None:
    identity = boot.named("canary")
    assert (identity.typ, identity.inputs["resourceGroupName"]) == (IDENTITY, "rg-acme-ops"), identity.urn
    creds = [c for c in boot.of_type(FED) if c.inputs["resourceName"] == "id-acme-canary"]
    assert [(c.inputs["subject"], c.inputs["issuer"], c.inputs["audiences"]) for c in creds] == [
        ("repo:acme/ftops:environment:canary", GITHUB_ISSUER, [GITHUB_AUDIENCE])
    ]
    canary_subjects = [
        c.urn for c in boot.of_type(FED) if c.inputs["subject"].endswith(":environment:canary")
    ]
    assert canary_subjects == [creds[0].urn], "no other identity trusts the canary environment"


def test_the_canary_identity_reads_like_readonly_and_appends_only_to_evidence_and_audit(boot: Run) -> None:
    writer = roles.stable_guid(SUB_ID, "acme", "evidence-writer")
    held = _assignments(boot, "canary")
    named = ("evaluation-evidence", "audit-log")
    for env in ("dev", "staging", "prod"):
        group = f"{SUBSCRIPTION}/resourceGroups/rg-acme-{env}"
        here = {_role_of(a): a for a in held if a.inputs["scope"] == group}
        assert set(here) == {roles.READER, roles.OPENAI_USER, roles.BLOB_DATA_READER, writer}, env
        assert here[roles.BLOB_DATA_READER].inputs["condition"] == roles.container_condition(named), env
        write = here[writer]
        assert write.inputs["condition"] == roles.writer_condition(named), write.urn
        assert write.inputs["conditionVersion"] == "2.0", write.urn
        assert "condition" not in here[roles.READER].inputs, here[roles.READER].urn
    state = [a for a in held if str(a.inputs["scope"]).endswith(f"/containers/{STATE_CONTAINER}")]
    assert [_role_of(a) for a in state] == [roles.BLOB_DATA_READER]
    assert len(held) == 3 * 4 + 1, "nothing else: no ops group, no Blob Data Contributor"
    writers = [a for a in _assignments(boot) if _role_of(a) == writer]
    assert sorted(a.name for a in writers) == [f"canary-{e}-blob-writer" for e in ("dev", "prod", "staging")]
    assert roles.BLOB_DATA_CONTRIBUTOR not in {_role_of(a) for a in held}


def test_the_writer_role_creates_and_appends_and_cannot_delete(boot: Run) -> None:
    definition = boot.named("evidence-writer")
    permissions = definition.inputs["permissions"]
    assert [p.get("actions", []) for p in permissions] == [[]], "no control-plane action (container delete)"
    assert [p["dataActions"] for p in permissions] == [[roles.BLOB_WRITE, roles.BLOB_ADD]], definition.urn
    assert not [a for p in permissions for a in p["dataActions"] if "*" in a or "delete" in a or "move" in a]
    assert sorted(definition.inputs["assignableScopes"]) == sorted(
        f"{SUBSCRIPTION}/resourceGroups/rg-acme-{env}" for env in ("dev", "staging", "prod")
    ), definition.urn
    condition = roles.writer_condition(("evaluation-evidence", "audit-log"))
    # Both write and add are targeted (an append is blobs/add/action), and they are allowed only
    # when the container is one of exactly these two.
    targeted = re.findall(r"ActionMatches\{'([^']+)'\}", condition)
    assert targeted == [roles.BLOB_WRITE, roles.BLOB_ADD]
    assert roles.BLOB_DELETE not in condition, "the condition allows no delete, anywhere"
    lists = re.findall(
        r"@Resource\[Microsoft\.Storage/storageAccounts/blobServices/containers:name\] "
        r"ForAnyOfAnyValues:StringEquals \{([^}]*)\}",
        condition,
    )
    assert lists == ["'evaluation-evidence', 'audit-log'"]
    assert condition.count("(") == condition.count(")")


# ------------------------------------------------------------------ state


def test_the_state_account_is_entra_only_versioned_locked_and_private(boot: Run) -> None:
    account = boot.named("state")
    i = account.inputs
    assert (i["allowBlobPublicAccess"], i["allowSharedKeyAccess"], i["minimumTlsVersion"]) == (
        False,
        False,
        "TLS1_2",
    )
    assert i["networkRuleSet"]["defaultAction"] == "Deny", account.urn
    rules = i["networkRuleSet"]["ipRules"]
    assert [r["iPAddressOrRange"] for r in rules] == ["203.0.113.7/32"], account.urn  # admin_ip_ranges only
    assert i["publicNetworkAccess"] == "Enabled", "admin_ip_ranges open the firewall to those ranges only"
    service = boot.named("state-blob-service").inputs
    assert service["isVersioningEnabled"] is True
    assert service["deleteRetentionPolicy"] == {"enabled": True, "days": 30}
    assert service["containerDeleteRetentionPolicy"] == {"enabled": True, "days": 30}
    container = boot.named("state-container")
    assert (container.inputs["containerName"], container.inputs["publicAccess"]) == (STATE_CONTAINER, "None")
    lock = boot.named("state-lock")
    assert (lock.inputs["level"], lock.inputs["scope"]) == ("CanNotDelete", account.outputs["id"]), lock.urn
    endpoint = boot.named("pe-state")
    connection = endpoint.inputs["privateLinkServiceConnections"][0]
    assert connection["groupIds"] == ["blob"]
    assert connection["privateLinkServiceId"] == account.outputs["id"]
    assert boot.outputs["backend_url"] == "azblob://pulumi-state?storage_account=stacmestate"


def test_without_admin_ranges_the_private_state_and_vault_take_no_public_traffic() -> None:
    raw = example_raw()
    raw["network"]["admin_ip_ranges"] = []
    result = run_bootstrap("example", raw)
    assert result.named("state").inputs["publicNetworkAccess"] == "Disabled"
    assert result.named("key-vault").inputs["properties"]["publicNetworkAccess"] == "Disabled"
    raw["network"]["private"] = False
    public = run_bootstrap("example", raw)
    assert not [r for r in public.registrations if r.typ == "azure-native:network:PrivateEndpoint"]


# ------------------------------------------------------------------ GitHub


def test_environments_reviewers_and_branch_policies(boot: Run) -> None:
    envs = {r.inputs["environment"]: r for r in boot.of_type(GH_ENV)}
    assert set(envs) == {"dev", "staging", "prod", "preview", "readonly", "canary"}
    for name in ("staging", "prod"):
        reg = envs[name]
        assert reg.inputs["reviewers"] == [{"teams": [1234567], "users": []}], reg.urn
        assert (reg.inputs["canAdminsBypass"], reg.inputs["preventSelfReview"]) == (False, True), reg.urn
    for name in ("dev", "preview", "readonly", "canary"):
        assert not envs[name].inputs.get("reviewers"), envs[name].urn
    for name in ("dev", "staging", "prod", "canary"):
        policy = envs[name].inputs["deploymentBranchPolicy"]
        assert policy == {"protectedBranches": False, "customBranchPolicies": True}, envs[name].urn
    for name in ("preview", "readonly"):
        assert not envs[name].inputs.get("deploymentBranchPolicy"), envs[name].urn
    branches = {r.inputs["environment"]: r.inputs["branchPattern"] for r in boot.of_type(GH_POLICY)}
    assert branches == {"dev": "main", "staging": "main", "prod": "main", "canary": "main"}


def test_each_environment_gets_exactly_the_variables_the_workflows_read(boot: Run) -> None:
    got: dict[str, dict[str, str]] = {}
    for reg in boot.of_type(GH_VAR):
        got.setdefault(reg.inputs["environment"], {})[reg.inputs["variableName"]] = reg.inputs["value"]
    common = {
        "AZURE_TENANT_ID": "00000000-0000-0000-0000-000000000000",
        "AZURE_SUBSCRIPTION_ID": SUB_ID,
        "PULUMI_BACKEND_URL": "azblob://pulumi-state?storage_account=stacmestate",
        "FTOPS_RUNNER": "ftops",
    }
    for env in ("dev", "staging", "prod"):
        assert got[env] == {**common, "AZURE_CLIENT_ID": f"client-{env}-deploy"}, env
    for env in ("preview", "readonly"):
        assert got[env] == {**common, "AZURE_CLIENT_ID": "client-readonly"}, env
    assert got["canary"] == {**common, "AZURE_CLIENT_ID": "client-canary"}
    assert set(VARIABLES) == set(got["dev"])
    assert not [r for r in boot.registrations if "Secret" in r.typ and r.typ.startswith("github:")]


def test_the_ruleset_requires_a_reviewed_pr_and_the_pr_workflow_checks(boot: Run) -> None:
    ruleset = boot.of_type(GH_RULESET)
    assert len(ruleset) == 1
    i = ruleset[0].inputs
    assert (i["target"], i["enforcement"]) == ("branch", "active")
    assert i["conditions"]["refName"] == {"includes": ["refs/heads/main"], "excludes": []}
    rules = i["rules"]
    assert rules["pullRequest"]["requiredApprovingReviewCount"] == 1
    assert rules["pullRequest"]["requireLastPushApproval"] is True
    assert rules["requiredStatusChecks"]["requiredChecks"] == [
        {"context": "test", "integrationId": GITHUB_ACTIONS_APP_ID}
    ]
    assert (rules["deletion"], rules["nonFastForward"]) == (True, True)
    permissions = boot.of_type(GH_WORKFLOWS)[0].inputs
    assert permissions["canApprovePullRequestReviews"] is True  # lets promote/rollback open PRs
    assert permissions["defaultWorkflowPermissions"] == "read"


def test_the_pr_workflow_has_the_required_checks() -> None:
    workflow = (REPO / ".github" / "workflows" / "pr.yml").read_text(encoding="utf-8")
    for check in load_settings(REPO, "example").github.required_checks:
        assert re.search(rf"^  {re.escape(check)}:$", workflow, re.MULTILINE), f"pr.yml has no job {check}"


# ------------------------------------------------------------------ runner


def test_the_runner_is_an_ephemeral_job_inside_the_vnet_with_its_own_identity(boot: Run) -> None:
    environment = boot.of_type(MANAGED_ENV)[0].inputs
    subnet = boot.named("runners")
    assert environment["vnetConfiguration"] == {
        "infrastructureSubnetId": subnet.outputs["id"],
        "internal": True,
    }
    assert subnet.inputs["delegations"][0]["serviceName"] == "Microsoft.App/environments"
    job = boot.of_type(JOB)[0]
    config = job.inputs["configuration"]
    runner_identity = boot.named("runner").outputs["id"]
    assert job.inputs["identity"] == {"type": "UserAssigned", "userAssignedIdentities": [runner_identity]}
    assert config["identitySettings"] == [{"identity": runner_identity, "lifecycle": "None"}], job.urn
    assert config["triggerType"] == "Event"
    assert config["replicaRetryLimit"] == 0
    scale = config["eventTriggerConfig"]["scale"]
    assert (scale["minExecutions"], scale["maxExecutions"]) == (0, 4)
    rule = scale["rules"][0]
    assert rule["type"] == "github-runner"
    assert rule["metadata"] == {
        "githubAPIURL": "https://api.github.com",
        "owner": "acme",
        "runnerScope": "repo",
        "repos": "ftops",
        "labels": "ftops",
        "targetWorkflowQueueLength": "1",
        "applicationID": "123456",
        "installationID": "7654321",
    }
    assert rule["auth"] == [{"secretRef": "github-app-key", "triggerParameter": "appKey"}]
    assert config["secrets"] == [
        {
            "name": "github-app-key",
            "keyVaultUrl": "https://kv-acme-ops.vault.azure.net/secrets/github-app-key",
            "identity": runner_identity,
        }
    ], "the App key is a Key Vault reference, never a value"
    assert config["registries"] == [{"server": "cracmeops.azurecr.io", "identity": runner_identity}]
    container = job.inputs["template"]["containers"][0]
    assert container["image"] == "cracmeops.azurecr.io/github-runner:2.321.0"
    env = {e["name"]: e for e in container["env"]}
    assert env["GITHUB_APP_PRIVATE_KEY"] == {"name": "GITHUB_APP_PRIVATE_KEY", "secretRef": "github-app-key"}
    assert env["RUNNER_LABELS"]["value"] == env["EPHEMERAL"]["value"].replace("true", "ftops")
    held = {(_role_of(a), str(a.inputs["scope"]).rsplit("/", 1)[-1]) for a in _assignments(boot, "runner")}
    assert held == {(roles.ACR_PULL, "cracmeops"), (roles.KEY_VAULT_SECRETS_USER, "kv-acme-ops")}
    registry = boot.named("registry").inputs
    assert (registry["adminUserEnabled"], registry["anonymousPullEnabled"]) == (False, False)
    vault = boot.named("key-vault").inputs["properties"]
    assert (vault["enableRbacAuthorization"], vault["enablePurgeProtection"]) == (True, True)
    assert boot.outputs["runner_label"] == "ftops"


def test_no_secret_in_any_input(boot: Run) -> None:
    for reg in boot.registrations:
        dumped = json.dumps(reg.inputs, default=str)
        assert not SECRET_VALUE.search(dumped), f"{reg.urn}: an input holds a credential"
        assert reg.typ != "azure-native:keyvault:Secret", f"{reg.urn}: the App key would be in the state"
    for app_secret in boot.of_type(JOB)[0].inputs["configuration"]["secrets"]:
        assert "value" not in app_secret
    text = _example_text()
    assert not SECRET_VALUE.search(text)


def test_outputs_are_what_the_environment_files_and_workflows_need(boot: Run) -> None:
    out = boot.outputs
    assert set(out) == {
        "backend_url",
        "tenant_id",
        "subscription_id",
        "runner_label",
        "readonly_client_id",
        "canary_client_id",
        "deploy_client_ids",
        "environment_files",
    }
    assert out["deploy_client_ids"] == {e: f"client-{e}-deploy" for e in ("dev", "staging", "prod")}
    assert (out["readonly_client_id"], out["canary_client_id"]) == ("client-readonly", "client-canary")
    prod = out["environment_files"]["prod"]
    assert prod["naming.resource_group"] == "rg-acme-prod"
    assert prod["access.ci_principal_id"] == "principal-prod-deploy"
    assert prod["network.existing_subnet_id"].endswith(
        "/virtualNetworks/vnet-acme-ops/subnets/snet-private-endpoints"
    )
    assert set(prod["network.existing_dns_zone_ids"]) == {
        "privatelink.openai.azure.com",
        "privatelink.cognitiveservices.azure.com",
        "privatelink.blob.core.windows.net",
    }
