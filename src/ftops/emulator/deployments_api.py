"""The ARM-shaped control plane for deployments, with Azure's behaviour that IaC trips over:
a write keeps the account busy while it provisions, and any other deployment write on that
account meanwhile gets 409 RequestConflict; `model.source` deploys a model another account
trained; capacity sets the deployment's rate limits."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from ftops.catalog import BASE_MODELS, MAX_FINE_TUNED_DEPLOYMENTS
from ftops.emulator import ids
from ftops.emulator.http import ApiError, Ctx, json_body
from ftops.emulator.models_api import Resolved, resolve
from ftops.emulator.state import Emulator
from ftops.emulator.store import Doc
from ftops.ratelimit import limits_for

PROVIDER = "providers/Microsoft.CognitiveServices/accounts"
SKUS = {
    s.lower(): s
    for s in (
        "Standard",
        "GlobalStandard",
        "DataZoneStandard",
        "ProvisionedManaged",
        "GlobalProvisionedManaged",
        "DataZoneProvisionedManaged",
        "DeveloperTier",
    )
} | {"developer": "DeveloperTier"}


def account_id(request: Request) -> str:
    p = request.path_params
    return (
        f"/subscriptions/{p['subscription']}/resourceGroups/{p['resource_group']}/{PROVIDER}/{p['account']}"
    )


def _arm_error(status: int, code: str, message: str) -> ApiError:
    return ApiError(status, code, message)


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def render(doc: Doc) -> Doc:
    out = {k: v for k, v in doc.items() if not k.startswith("_")}
    props = dict(out["properties"])
    if time.time() < doc["_ready_at"]:
        props["provisioningState"] = doc["_pending_state"]
    else:
        props["provisioningState"] = "Succeeded"
    out["properties"] = props
    return out


def ready(doc: Doc) -> bool:
    return time.time() >= float(doc["_ready_at"])


def _retry_after(doc: Doc) -> dict[str, str]:
    """While a deployment provisions, ARM tells pollers (azure-mgmt's begin_create_or_update, the az
    CLI) when to look again; without it they wait their default 30 s between polls."""
    left = float(doc["_ready_at"]) - time.time()
    return {} if left <= 0 else {"Retry-After": str(max(1, math.ceil(left)))}


def _source_account(model: Doc) -> str | None:
    source = model.get("source") or model.get("sourceAccount")
    if source is None:
        return None
    if not isinstance(source, str) or f"/{PROVIDER}/" not in source:
        raise _arm_error(
            400,
            "InvalidResourceProperties",
            "properties.model.source must be the ARM id of a Cognitive Services account.",
        )
    return source.rstrip("/").rsplit("/", 1)[-1]


def _resolve_model(emu: Emulator, account: str, model: Any) -> Resolved:
    if (
        not isinstance(model, dict)
        or model.get("format") != "OpenAI"
        or not isinstance(model.get("name"), str)
    ):
        raise _arm_error(
            400, "InvalidResourceProperties", "properties.model needs format 'OpenAI', a name and a version."
        )
    name, version = model["name"], str(model.get("version") or "")
    candidates = [name] + ([f"{name}-{version}"] if version and version != "1" else [])
    source = _source_account(model) or account
    for candidate in candidates:
        found = resolve(emu, candidate)
        if found is None:
            continue
        if found.account is not None and found.account != source:
            raise _arm_error(
                400,
                "DeploymentModelNotSupported",
                f"The model '{name}' was not found in account '{source}'; set properties.model.source "
                f"to the account that trained it ('{found.account}').",
            )
        return found
    raise _arm_error(
        400,
        "DeploymentModelNotSupported",
        f"The model '{name}' version '{version}' is not available for deployment in this resource.",
    )


async def put(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    name = request.path_params["deployment"]
    if not ids.DEPLOYMENT.match(name):
        raise _arm_error(400, "InvalidResourceName", f"'{name}' is not a valid deployment name.")
    body = await json_body(request)
    sku = body.get("sku") or {}
    sku_name = SKUS.get(str(sku.get("name", "")).lower())
    capacity = sku.get("capacity", 1)
    if sku_name is None:
        raise _arm_error(400, "InvalidSkuName", f"sku.name '{sku.get('name')}' is not a deployment SKU.")
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise _arm_error(400, "InvalidCapacity", "sku.capacity must be a whole number of at least 1.")
    props = body.get("properties") or {}
    served = _resolve_model(emu, ctx.account, props.get("model"))
    fine_tuned = served.account is not None
    if fine_tuned and served.base_model in BASE_MODELS:
        allowed = BASE_MODELS[served.base_model].deploy_skus
        if ("Developer" if sku_name == "DeveloperTier" else sku_name) not in allowed:
            raise _arm_error(
                400,
                "InvalidResourceProperties",
                f"Fine-tuned {served.base_model} models deploy as {', '.join(sorted(allowed))}.",
            )
    existing = emu.store.get_deployment(ctx.account, name)
    if fine_tuned and existing is None:
        tuned = [d for d in emu.store.list_deployments(ctx.account) if d["_fine_tuned"]]
        if len(tuned) >= MAX_FINE_TUNED_DEPLOYMENTS:
            raise _arm_error(
                409,
                "InsufficientQuota",
                f"This resource already has {len(tuned)} fine-tuned deployments, the most Azure allows.",
            )
    parent = account_id(request)
    busy = emu.store.begin_account_write(ctx.account, emu.settings.provisioning_seconds, f"deployment {name}")
    if busy is not None:
        raise _arm_error(
            409,
            "RequestConflict",
            f"Another operation is being performed on the parent resource '{parent}'. "
            "Please try again later.",
        )
    tpm, rpm = limits_for(capacity, served.base_model or name)
    now = _now_iso()
    doc: Doc = {
        "id": f"{parent}/deployments/{name}",
        "name": name,
        "type": "Microsoft.CognitiveServices/accounts/deployments",
        "sku": {"name": sku_name, "capacity": capacity},
        "systemData": {
            "createdAt": existing["systemData"]["createdAt"] if existing else now,
            "createdBy": "ftops-emulator",
            "lastModifiedAt": now,
            "lastModifiedBy": "ftops-emulator",
        },
        "properties": {
            "model": {k: v for k, v in (props.get("model") or {}).items()},
            "raiPolicyName": props.get("raiPolicyName", "Microsoft.DefaultV2"),
            "versionUpgradeOption": props.get("versionUpgradeOption", "OnceNewDefaultVersionAvailable"),
            "currentCapacity": capacity,
            "capabilities": {"chatCompletion": "true"},
            "rateLimits": [
                {"key": "request", "renewalPeriod": 10, "count": max(1, rpm // 6)},
                {"key": "token", "renewalPeriod": 60, "count": tpm},
            ],
        },
        "_ready_at": time.time() + emu.settings.provisioning_seconds,
        "_pending_state": "Updating" if existing else "Creating",
        "_fine_tuned": fine_tuned,
        "_serving": {
            "stand_in": served.stand_in,
            "adapters": [str(p) for p in served.adapters],
            "base_model": served.base_model,
        },
    }
    emu.store.put_deployment(ctx.account, name, doc)
    return ctx.json(render(doc), 200 if existing else 201, headers=_retry_after(doc))


async def get(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    name = request.path_params["deployment"]
    doc = emu.store.get_deployment(ctx.account, name)
    if doc is None:
        raise _arm_error(404, "DeploymentNotFound", f"Deployment '{name}' could not be found.")
    return ctx.json(render(doc), headers=_retry_after(doc))


async def listing(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    return ctx.json({"value": [render(d) for d in emu.store.list_deployments(ctx.account)]})


async def delete(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    name = request.path_params["deployment"]
    if emu.store.get_deployment(ctx.account, name) is None:
        return Response(status_code=204)
    busy = emu.store.begin_account_write(ctx.account, emu.settings.provisioning_seconds, f"delete {name}")
    if busy is not None:
        raise _arm_error(
            409,
            "RequestConflict",
            f"Another operation is being performed on the parent resource '{account_id(request)}'. "
            "Please try again later.",
        )
    emu.store.delete_deployment(ctx.account, name)
    return Response(status_code=200)


async def account(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    prefix = "" if ctx.account == emu.settings.default_account else f"/accounts/{ctx.account}"
    return ctx.json(
        {
            "id": account_id(request),
            "name": ctx.account,
            "type": "Microsoft.CognitiveServices/accounts",
            "kind": "OpenAI",
            "location": "local",
            "sku": {"name": "S0"},
            "properties": {
                "endpoint": f"{ctx.base_url}{prefix}/",
                "customSubDomainName": ctx.account,
                "provisioningState": "Succeeded",
                "publicNetworkAccess": "Enabled",
            },
        }
    )
