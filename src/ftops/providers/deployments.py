"""`ModelDeployment` for the local stack: the emulator's ARM-shaped deployments API.

(Azure stacks use azure-native's `cognitiveservices.Deployment`.) Writes on one account are
serialized: within this process by a lock per account, across processes by retrying Azure's
409 RequestConflict. A deployment that vanished (Azure deletes fine-tuned deployments after
15 days without traffic) is reported on refresh and created again by the next `pulumi up`.
"""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

from ftops.azure.connection import Target, arm_call, deployment_url, same_account
from ftops.errors import DeploymentError
from ftops.providers.args import ModelDeploymentArgs
from ftops.providers.base import inputs_of
from ftops.providers.spec import canonical

OUTPUTS = ("provisioning_state", "deployment_id", "rate_limits")
REPLACE_KEYS = ("deployment_name",)
PROVISION_SECONDS = 30 * 60


class _AccountLocks:
    """One lock per account for the life of the provider process (dill pickles this class by
    reference, so the locks are not part of the serialized provider)."""

    _guard = threading.Lock()
    _locks: ClassVar[dict[str, threading.Lock]] = {}

    @classmethod
    def of(cls, account: str) -> threading.Lock:
        with cls._guard:
            return cls._locks.setdefault(account, threading.Lock())


def _body(props: dict[str, Any]) -> dict[str, Any]:
    model = {k: v for k, v in (props.get("model") or {}).items() if v is not None}
    return {
        "sku": canonical(dict(props["sku"])),
        "properties": {
            "model": {"format": "OpenAI", **model},
            "raiPolicyName": props.get("rai_policy") or "Microsoft.DefaultV2",
            "versionUpgradeOption": props.get("version_upgrade_option") or "NoAutoUpgrade",
        },
    }


def _error(response: Any) -> str:
    try:
        error = response.json().get("error", {})
        return f"{error.get('code')}: {error.get('message')}" if isinstance(error, dict) else str(error)
    except ValueError:
        return str(response.text)[:300]


class ModelDeploymentProvider(ResourceProvider):
    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        target = Target.of(news)
        failures = [CheckFailure(p, r) for p, r in target.problems()]
        if "/providers/Microsoft.CognitiveServices/accounts/" not in target.arm_id:
            failures.append(CheckFailure("target.arm_id", "must be the account's ARM id"))
        sku = news.get("sku") or {}
        if not sku.get("name") or not isinstance(sku.get("capacity"), int | float) or sku["capacity"] < 1:
            failures.append(CheckFailure("sku", "needs a name and a capacity of at least 1"))
        if not (news.get("model") or {}).get("name"):
            failures.append(CheckFailure("model.name", "is required"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [k for k in REPLACE_KEYS if olds.get(k) != news.get(k)]
        if not same_account(olds, news):
            replaces.append("target")
        changed = replaces or [k for k in inputs_of(news, OUTPUTS) if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=True)

    def _put(self, props: dict[str, Any]) -> dict[str, Any]:
        target = Target.of(props)
        name = str(props["deployment_name"])
        url = deployment_url(target, name)
        headers = target.arm_headers()
        with _AccountLocks.of(target.arm_id):
            response = arm_call("PUT", url, headers, json=_body(props))
            if response.status_code not in (200, 201):
                raise DeploymentError(f"deployment {name}: {response.status_code} {_error(response)}")
            deadline = time.monotonic() + PROVISION_SECONDS
            delay = 0.5
            while True:
                doc = arm_call("GET", url, headers).json()
                state = doc.get("properties", {}).get("provisioningState")
                if state == "Succeeded":
                    break
                if state in ("Failed", "Canceled"):
                    raise DeploymentError(f"deployment {name}: provisioning {state}")
                if time.monotonic() > deadline:
                    raise DeploymentError(
                        f"deployment {name}: still {state} after {PROVISION_SECONDS // 60} min"
                    )
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
        pulumi.log.info(
            f"deployment {name}: serving {doc['properties']['model']['name']} "
            f"({doc['sku']['name']} x{doc['sku']['capacity']})"
        )
        return {
            "provisioning_state": "Succeeded",
            "deployment_id": doc.get("id"),
            "rate_limits": doc.get("properties", {}).get("rateLimits"),
        }

    def create(self, props: dict[str, Any]) -> CreateResult:
        outs = self._put(props)
        return CreateResult(str(props["deployment_name"]), {**inputs_of(props, OUTPUTS), **outs})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult({**inputs_of(news, OUTPUTS), **self._put(news)})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        target = Target.of(props)
        response = arm_call("GET", deployment_url(target, id_), target.arm_headers())
        if response.status_code == 404:
            pulumi.log.warn(
                f"deployment {id_} no longer exists: Azure deletes a fine-tuned deployment after 15 days "
                "without traffic (Developer-tier ones after 24 hours); the next `pulumi up` deploys the same "
                "model again, no training involved"
            )
            return ReadResult(None, {})
        if response.status_code != 200:
            raise DeploymentError(f"deployment {id_}: {response.status_code} {_error(response)}")
        doc = response.json()
        model = doc["properties"]["model"]
        inputs = inputs_of(props, OUTPUTS)
        inputs["sku"] = {"name": doc["sku"]["name"], "capacity": doc["sku"]["capacity"]}
        inputs["model"] = {
            **(props.get("model") or {}),
            "name": model.get("name"),
            "version": model.get("version"),
        }
        return ReadResult(
            id_,
            {
                **inputs,
                "provisioning_state": doc["properties"].get("provisioningState"),
                "deployment_id": doc.get("id"),
                "rate_limits": doc["properties"].get("rateLimits"),
            },
        )

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        target = Target.of(props)
        with _AccountLocks.of(target.arm_id):
            response = arm_call("DELETE", deployment_url(target, id_), target.arm_headers())
        if response.status_code not in (200, 202, 204, 404):
            raise DeploymentError(f"deleting deployment {id_}: {response.status_code} {_error(response)}")


class ModelDeployment(pulumi.dynamic.Resource):
    deployment_name: pulumi.Output[str]
    provisioning_state: pulumi.Output[str]

    def __init__(
        self, resource_name: str, args: ModelDeploymentArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        inputs = args.inputs()
        super().__init__(ModelDeploymentProvider(), resource_name, {**inputs, **dict.fromkeys(OUTPUTS)}, opts)
