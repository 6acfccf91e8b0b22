"""Run the Pulumi program under `pulumi.runtime.set_mocks` and keep what the engine would see.

One Mocks class keyed by type token (dynamic resources by provider class) answers with outputs
shaped like the real ones (ARM ids, endpoints, names), and a monitor records every registration
with its URN, parent and dependencies, so tests assert on the graph and name the URN they mean.
"""

from __future__ import annotations

import asyncio
import base64
import json
import runpy
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dill
import pulumi
from pulumi.runtime import rpc, settings
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from tests.conftest import REPO

DYNAMIC = "pulumi-python:dynamic:Resource"
SUBSCRIPTION = "/subscriptions/11111111-2222-3333-4444-555555555555"

# type token -> ARM id template (wire input names in braces; {rg} is the resource group's id)
ARM_IDS = {
    "azure-native:resources:ResourceGroup": "{rg}",
    "azure-native:cognitiveservices:Account": "{rg}/providers/Microsoft.CognitiveServices/accounts/{accountName}",
    "azure-native:cognitiveservices:Deployment": "{rg}/providers/Microsoft.CognitiveServices/accounts/{accountName}"
    "/deployments/{deploymentName}",
    "azure-native:cognitiveservices:RaiPolicy": "{rg}/providers/Microsoft.CognitiveServices/accounts/{accountName}"
    "/raiPolicies/{raiPolicyName}",
    "azure-native:network:VirtualNetwork": "{rg}/providers/Microsoft.Network/virtualNetworks/{virtualNetworkName}",
    "azure-native:network:Subnet": "{rg}/providers/Microsoft.Network/virtualNetworks/{virtualNetworkName}"
    "/subnets/{subnetName}",
    "azure-native:network:PrivateEndpoint": "{rg}/providers/Microsoft.Network/privateEndpoints/{privateEndpointName}",
    "azure-native:network:PrivateDnsZoneGroup": "{rg}/providers/Microsoft.Network/privateEndpoints/"
    "{privateEndpointName}/privateDnsZoneGroups/{privateDnsZoneGroupName}",
    "azure-native:privatedns:PrivateZone": "{rg}/providers/Microsoft.Network/privateDnsZones/{privateZoneName}",
    "azure-native:privatedns:VirtualNetworkLink": "{rg}/providers/Microsoft.Network/privateDnsZones/"
    "{privateZoneName}/virtualNetworkLinks/{virtualNetworkLinkName}",
    "azure-native:storage:StorageAccount": "{rg}/providers/Microsoft.Storage/storageAccounts/{accountName}",
    "azure-native:storage:BlobServiceProperties": "{rg}/providers/Microsoft.Storage/storageAccounts/{accountName}"
    "/blobServices/default",
    "azure-native:storage:BlobContainer": "{rg}/providers/Microsoft.Storage/storageAccounts/{accountName}"
    "/blobServices/default/containers/{containerName}",
    "azure-native:storage:BlobContainerImmutabilityPolicy": "{rg}/providers/Microsoft.Storage/storageAccounts/"
    "{accountName}/blobServices/default/containers/{containerName}/immutabilityPolicies/default",
    "azure-native:operationalinsights:Workspace": "{rg}/providers/Microsoft.OperationalInsights/workspaces"
    "/{workspaceName}",
    "azure-native:managedidentity:UserAssignedIdentity": "{rg}/providers/Microsoft.ManagedIdentity/"
    "userAssignedIdentities/{resourceName}",
    "azure-native:monitor:DiagnosticSetting": "{resourceUri}/providers/Microsoft.Insights/diagnosticSettings/{name}",
    "azure-native:authorization:RoleAssignment": "{scope}/providers/Microsoft.Authorization/roleAssignments"
    "/{roleAssignmentName}",
    "azure-native:keyvault:Vault": "{rg}/providers/Microsoft.KeyVault/vaults/{vaultName}",
    "azure-native:keyvault:Key": "{rg}/providers/Microsoft.KeyVault/vaults/{vaultName}/keys/{keyName}",
    "azure-native:monitor:ActionGroup": "{rg}/providers/Microsoft.Insights/actionGroups/{actionGroupName}",
    "azure-native:monitor:MetricAlert": "{rg}/providers/Microsoft.Insights/metricAlerts/{ruleName}",
    "azure-native:operationalinsights:SavedSearch": "{rg}/providers/Microsoft.OperationalInsights/workspaces"
    "/{workspaceName}/savedSearches/{savedSearchId}",
}
TENANT = "11111111-2222-3333-4444-555555555555"
NAME_KEYS = {
    "azure-native:resources:ResourceGroup": "resourceGroupName",
    "azure-native:cognitiveservices:Account": "accountName",
    "azure-native:cognitiveservices:Deployment": "deploymentName",
    "azure-native:cognitiveservices:RaiPolicy": "raiPolicyName",
    "azure-native:network:VirtualNetwork": "virtualNetworkName",
    "azure-native:network:Subnet": "subnetName",
    "azure-native:network:PrivateEndpoint": "privateEndpointName",
    "azure-native:network:PrivateDnsZoneGroup": "privateDnsZoneGroupName",
    "azure-native:privatedns:PrivateZone": "privateZoneName",
    "azure-native:privatedns:VirtualNetworkLink": "virtualNetworkLinkName",
    "azure-native:storage:StorageAccount": "accountName",
    "azure-native:storage:BlobContainer": "containerName",
    "azure-native:operationalinsights:Workspace": "workspaceName",
    "azure-native:managedidentity:UserAssignedIdentity": "resourceName",
    "azure-native:authorization:RoleAssignment": "roleAssignmentName",
    "azure-native:keyvault:Vault": "vaultName",
    "azure-native:keyvault:Key": "keyName",
    "azure-native:monitor:ActionGroup": "actionGroupName",
    "azure-native:monitor:MetricAlert": "ruleName",
}


def provider_of(inputs: dict[str, Any]) -> str:
    """Dynamic resources share one type token; the serialized provider says which one it is."""
    raw = inputs.get("__provider")
    if isinstance(raw, dict):  # the SDK sends it as a secret: {<secret signature>: ..., "value": ...}
        raw = raw.get("value")
    return type(dill.loads(base64.b64decode(raw))).__name__ if raw else ""


def kind_of(typ: str, inputs: dict[str, Any]) -> str:
    return provider_of(inputs) if typ == DYNAMIC else typ


@dataclass
class Registration:
    urn: str
    typ: str  # the type token, or the provider class for a dynamic resource
    name: str
    parent: str
    dependencies: list[str]
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def parent_name(self) -> str:
        if not self.parent or self.parent.split("::")[2] == "pulumi:pulumi:Stack":
            return "stack"
        return self.parent.rsplit("::", 1)[-1]


class Mocks(pulumi.runtime.Mocks):
    """Keyed by type token (and, for dynamic resources, by provider); outputs look like the real ones."""

    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        outputs = dict(args.inputs)
        kind = kind_of(args.typ, outputs)
        if kind == "TrainingFileProvider":
            outputs.update(file_id=f"file-{args.name}", status="processed", drift="")
        elif kind == "DistillationDatasetProvider":
            # The captured files, named by role, with digests of their own.
            for role, mark in (("train", "1"), ("valid", "2"), ("heldout", "3")):
                outputs.update(
                    {f"{role}_path": f"/distill/{args.name}/{role}.jsonl", f"{role}_digest": mark * 64}
                )
        elif kind == "FineTuningJobProvider":
            model = f"{outputs['base_model']}.ft-{args.name}"
            outputs.update(
                job_id=f"ftjob-{args.name}", status="succeeded", fine_tuned_model=model, model=model
            )
            epochs = ((outputs.get("method") or {}).get("hyperparameters") or {}).get("n_epochs")
            if isinstance(epochs, int | float):  # the kept checkpoints, as spec.deployable lists them
                kept = list(range(max(1, int(epochs) - 2), int(epochs) + 1))
                outputs["checkpoints"] = [
                    {
                        "id": f"ftckpt_{e:032x}",
                        "step": e * 10,
                        "deploy": model if e == epochs else f"ftckpt_{e:032x}",
                        "final": e == epochs,
                    }
                    for e in kept
                ]
        elif kind == "ExperimentProvider":  # this mock chooses the first variant
            first = outputs["variants"][0]
            outputs.update(
                model=first["model"],
                fine_tuned_model=first["model"],
                job_id=first["job"],
                label=first["label"],
                data_digest=first["data_digest"],
                report_digest="sha256:" + "f" * 64,
            )
        elif kind == "EvaluationGateProvider":
            # A mark of its own, so a test can tell a model that went through the gate.
            outputs.update(
                model=f"{outputs['candidate_model']}#gated",
                evidence_digest="sha256:" + "e" * 64,
                verdict="pass",
            )
            if outputs.get("candidates"):  # best_eval: this mock chooses the first (oldest) checkpoint
                first = outputs["candidates"][0]
                outputs.update(model=f"{first['model']}#gated", checkpoint=f"{first['id']}#gated")
        elif kind in ARM_IDS:
            values = {k: v for k, v in outputs.items() if isinstance(v, str)}
            rg = f"{SUBSCRIPTION}/resourceGroups/{outputs.get('resourceGroupName', 'rg-unknown')}"
            arm_id = ARM_IDS[kind].format_map({**_Blank(), **values, "rg": rg})
            name_key = NAME_KEYS.get(kind)
            outputs.update(id=arm_id, name=outputs.get(name_key, args.name) if name_key else args.name)
            if kind == "azure-native:cognitiveservices:Account":
                sub = outputs["properties"]["customSubDomainName"]
                outputs["properties"] = {
                    **outputs["properties"],
                    "endpoint": f"https://{sub}.openai.azure.com/",
                }
                identity = dict(outputs.get("identity") or {})
                if identity.get("userAssignedIdentities"):  # PAN takes a list; ARM answers a map by id
                    identity["userAssignedIdentities"] = {i: {} for i in identity["userAssignedIdentities"]}
                    outputs["identity"] = identity
            elif kind == "azure-native:managedidentity:UserAssignedIdentity":
                # The identity's ids, derived from its name: stable across runs, as Azure's are.
                guid = str(uuid.uuid5(uuid.NAMESPACE_URL, arm_id))
                outputs.update(principalId=guid, clientId=guid[::-1], tenantId=TENANT)
            elif kind == "azure-native:keyvault:Vault":
                outputs["properties"] = {
                    **outputs["properties"],
                    "vaultUri": f"https://{outputs['vaultName']}.vault.azure.net/",
                }
            elif kind == "azure-native:keyvault:Key":
                uri = f"https://{outputs['vaultName']}.vault.azure.net/keys/{outputs['keyName']}"
                outputs.update(keyUri=uri, keyUriWithVersion=f"{uri}/{'0' * 32}")
            elif kind == "azure-native:storage:StorageAccount":
                identity = dict(outputs.get("identity") or {})
                if identity.get("userAssignedIdentities"):  # a list in, a map by id out (as the account)
                    identity["userAssignedIdentities"] = {i: {} for i in identity["userAssignedIdentities"]}
                    outputs["identity"] = identity
                outputs["primaryEndpoints"] = {
                    "blob": f"https://{outputs['accountName']}.blob.core.windows.net/"
                }
            return arm_id, outputs
        return f"{args.name}_id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        if args.token == "azure-native:authorization:getClientConfig":
            subscription = SUBSCRIPTION.rsplit("/", 1)[-1]
            return {"tenantId": TENANT, "subscriptionId": subscription, "clientId": "", "objectId": ""}, []
        return {}, []


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return f"<{key}>"


class RecordingMonitor(MockMonitor):
    """The SDK's mock monitor, keeping each registration's parent and dependencies (URNs)."""

    def __init__(self, mocks: Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - the gRPC method's name
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            inputs = rpc.deserialize_properties(request.object)
            outputs = rpc.deserialize_properties(response.object) if response.object else {}
            self.registrations.append(
                Registration(
                    urn=response.urn,
                    typ=kind_of(request.type, inputs),
                    name=request.name,
                    parent=request.parent,
                    dependencies=list(request.dependencies),
                    inputs=inputs,
                    outputs=outputs,
                )
            )
        return response


@dataclass
class Run:
    mocks: Mocks
    registrations: list[Registration]
    outputs: dict[str, Any]

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.registrations if r.typ == typ]

    def named(self, name: str) -> Registration:
        found = [r for r in self.registrations if r.name == name]
        assert len(found) == 1, f"{len(found)} resources named {name}: {[r.urn for r in found]}"
        return found[0]

    def by_urn(self) -> dict[str, Registration]:
        return {r.urn: r for r in self.registrations}


def run(stack: str, environment: Any, root: Path = REPO) -> Run:
    """Run infra/__main__.py as the engine would, wait for every registration, resolve the outputs."""
    mocks = Mocks()
    monitor = RecordingMonitor(mocks)
    settings.ROOT.set(None)  # a new Stack resource named for this stack, not the previous run's
    # Pulumi's sync helpers need a current loop; an earlier test's asyncio.run() may have unset it.
    asyncio.set_event_loop(asyncio.new_event_loop())
    pulumi.runtime.set_mocks(mocks, project="ftops", stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config({"ftops:environment": json.dumps(environment)})
    program = root / "infra" / "__main__.py"

    def program_main() -> None:
        runpy.run_path(str(program), run_name="__main__")

    _sync_await(run_pulumi_func(program_main))
    stack_resource = settings.get_root_resource()
    assert stack_resource is not None
    exported = dict(stack_resource.outputs)  # type: ignore[attr-defined]
    resolved = _sync_await(pulumi.Output.from_input(exported).future())
    return Run(mocks, monitor.registrations, dict(resolved or {}))


def run_program(stack: str, environment: Any, root: Path = REPO) -> tuple[Mocks, dict[str, Any]]:
    result = run(stack, environment, root)
    return result.mocks, result.outputs
