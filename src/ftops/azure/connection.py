"""Where a provider talks to and how it authenticates, built inside each provider method.

Inputs carry only the endpoint and *how* to authenticate (Entra ID, or the name of an
environment variable holding the emulator's key); the credential itself is read from the
environment of the process running the provider, so it never lands in inputs or state.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx2 as httpx
import openai

from ftops.azure import credential
from ftops.azure.failures import GuardedCredential
from ftops.azure.propagation import PropagationBlobTransport, PropagationClient
from ftops.errors import ServiceError, UsageError

COGNITIVE_SCOPE = "https://cognitiveservices.azure.com/.default"
MANAGEMENT_SCOPE = "https://management.azure.com/.default"
ARM_API_VERSION = "2024-10-01"
RETRIES = 6
TRANSIENT = (429, 500, 502, 503, 504)
UNKNOWN = "<unknown until the account exists>"  # a preview's placeholder for an unresolved output
CONFLICT_CODES = ("RequestConflict", "AnotherOperationInProgress")  # Azure's and azure-native's spellings


@dataclass(frozen=True)
class Target:
    """An Azure OpenAI account (or an emulated one) as provider inputs describe it."""

    endpoint: (
        str  # the account's endpoint, e.g. https://oai-x.openai.azure.com or http://127.0.0.1:8790/accounts/a
    )
    auth: str  # "entra", or "env:<VARIABLE>" holding a key
    arm_id: str = ""  # /subscriptions/.../accounts/<name>: where deployments live
    arm_endpoint: str = "https://management.azure.com"

    @classmethod
    def of(cls, props: dict[str, Any]) -> Target:
        raw = props.get("target") or {}
        return cls(
            endpoint=_known(raw.get("endpoint")),
            auth=_known(raw.get("auth")),
            arm_id=_known(raw.get("arm_id")),
            arm_endpoint=_known(raw.get("arm_endpoint")) or "https://management.azure.com",
        )

    @staticmethod
    def unknown(props: dict[str, Any]) -> bool:
        """True while a preview does not know the account yet (its values are Pulumi's Unknown)."""
        raw = props.get("target")
        if not isinstance(raw, dict):
            return raw is not None
        return any(v is not None and not isinstance(v, str) for v in raw.values())

    def problems(self) -> list[tuple[str, str]]:
        """What is wrong with the target as far as it is known: during a preview the endpoint and ARM
        id of an account that does not exist yet are unknown, and are checked at create time."""
        out = []
        if self.endpoint != UNKNOWN and not _safe_url(self.endpoint):
            out.append(("target.endpoint", "must be an https:// endpoint (or a local emulator on 127.0.0.1)"))
        if self.arm_id and self.arm_endpoint != UNKNOWN and not _safe_url(self.arm_endpoint):
            out.append(
                ("target.arm_endpoint", "must be an https:// endpoint (or a local emulator on 127.0.0.1)")
            )
        if self.auth not in ("entra", UNKNOWN) and not (self.auth.startswith("env:") and len(self.auth) > 4):
            out.append(
                ("target.auth", "must be 'entra' or 'env:<VARIABLE>' naming the variable that holds a key")
            )
        return out

    def _key(self) -> str:
        variable = self.auth.removeprefix("env:")
        key = os.environ.get(variable)
        if not key:
            raise UsageError(
                f"the environment variable {variable} holding the API key is not set",
                fix=f"export {variable}=<key> in the shell that runs pulumi",
            )
        return key

    def client(self, max_retries: int = RETRIES) -> openai.OpenAI:
        """The v1 data plane (metadata on jobs needs it); the SDK retries 429/5xx honouring Retry-After."""
        base_url = f"{self.endpoint.rstrip('/')}/openai/v1"
        if self.auth == "entra":
            from azure.identity import get_bearer_token_provider

            token = get_bearer_token_provider(azure_credential(), COGNITIVE_SCOPE)
            return openai.OpenAI(
                base_url=base_url, api_key=token, max_retries=max_retries, http_client=_http_client()
            )
        return openai.OpenAI(
            base_url=base_url, api_key=self._key(), max_retries=max_retries, http_client=_http_client()
        )

    def dated_client(self, max_retries: int = RETRIES) -> openai.AzureOpenAI:
        """The dated surface, for what only it has (deleting a job)."""
        if self.auth == "entra":
            from azure.identity import get_bearer_token_provider

            token = get_bearer_token_provider(azure_credential(), COGNITIVE_SCOPE)
            return openai.AzureOpenAI(
                azure_endpoint=self.endpoint,
                azure_ad_token_provider=token,
                api_version="2024-10-21",
                max_retries=max_retries,
                http_client=_http_client(),
            )
        return openai.AzureOpenAI(
            azure_endpoint=self.endpoint,
            api_key=self._key(),
            api_version="2024-10-21",
            max_retries=max_retries,
            http_client=_http_client(),
        )

    def arm_headers(self) -> dict[str, str]:
        if self.auth == "entra":
            token = azure_credential().get_token(MANAGEMENT_SCOPE).token
            return {"Authorization": f"Bearer {token}"}
        return {"api-key": self._key()}


def azure_credential() -> GuardedCredential:
    """Entra ID for every client ftops builds (GitHub OIDC refreshed on demand in Actions, else
    DefaultAzureCredential's chain: `credential`), failing at once, in one line and without
    retries, when it cannot sign in."""
    return GuardedCredential(credential.azure_credential())


def _http_client() -> httpx.Client:
    """The SDK's own client, waiting out RBAC propagation."""
    return PropagationClient()


def deployment_url(target: Target, name: str) -> str:
    """The ARM address of a deployment on the target's account."""
    return f"{target.arm_endpoint.rstrip('/')}{target.arm_id}/deployments/{name}"


@dataclass(frozen=True)
class Deployed:
    model: str
    capacity: int
    sku: str


def deployed(target: Target, name: str) -> Deployed | None:
    """What a deployment serves now and at what capacity; None when there is no such deployment.
    Any other answer is a ServiceError that says what came back."""
    url = deployment_url(target, name)
    response = arm_call("GET", url, target.arm_headers())
    if response.status_code == 404:
        return None
    if response.status_code >= 400:
        detail = " ".join(response.text[:200].split())
        raise ServiceError(
            f"reading deployment {name}: HTTP {response.status_code} {detail}".rstrip(),
            fix="check that the deployment exists and this identity may read it",
        )
    try:
        body = response.json()
        sku = body.get("sku") or {}
        return Deployed(
            str(body["properties"]["model"]["name"]), int(sku.get("capacity") or 0), str(sku.get("name", ""))
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ServiceError(
            f"reading deployment {name}: the answer from {url} is not a deployment "
            f"({' '.join(response.text[:120].split()) or 'empty'})"
        ) from None


def retry_after(response: httpx.Response | None) -> float | None:
    """How long the service asked us to wait: `retry-after-ms` (Azure OpenAI's, finer) before
    `retry-after` (seconds); None when it said nothing usable."""
    if response is None:
        return None
    for header, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = response.headers.get(header)
        if value is not None:
            try:
                return max(0.0, float(value) / scale)
            except ValueError:
                continue
    return None


MONITOR_API_VERSION = "2023-10-01"


def requests_by_deployment(target: Target, days: int) -> dict[str, int]:
    """Inference requests per deployment over the last `days` UTC days, from Azure Monitor's
    AzureOpenAIRequests metric split by ModelDeploymentName (a deployment nobody called is absent)."""
    now = dt.datetime.now(dt.UTC)
    start = (now - dt.timedelta(days=days)).strftime("%Y-%m-%dT00:00:00Z")
    url = f"{target.arm_endpoint.rstrip('/')}{target.arm_id}/providers/Microsoft.Insights/metrics"
    params = {
        "api-version": MONITOR_API_VERSION,
        "metricnames": "AzureOpenAIRequests",
        "timespan": f"{start}/{now.strftime('%Y-%m-%dT%H:%M:%SZ')}",
        "interval": "P1D",
        "aggregation": "Total",
        "$filter": "ModelDeploymentName eq '*'",
    }
    response = arm_call("GET", url, target.arm_headers(), params=params)
    if response.status_code >= 400:
        detail = " ".join(response.text[:200].split())
        raise ServiceError(
            f"reading request metrics: HTTP {response.status_code} {detail}".rstrip(),
            fix="this identity needs Monitoring Reader (or Reader) on the account",
        )
    counts: dict[str, int] = {}
    try:
        for metric in response.json()["value"]:
            for series in metric["timeseries"]:
                names = [
                    m["value"]
                    for m in series["metadatavalues"]
                    if m["name"]["value"].lower() == "modeldeploymentname"
                ]
                if names:
                    total = sum(float(point.get("total") or 0) for point in series["data"])
                    counts[names[0]] = counts.get(names[0], 0) + int(total)
    except (ValueError, KeyError, TypeError):
        raise ServiceError(f"reading request metrics: the answer from {url} is not Azure Monitor's") from None
    return counts


def arm_call(
    method: str,
    url: str,
    headers: dict[str, str],
    *,
    json: Any = None,
    params: dict[str, str] | None = None,
    retries: int = RETRIES,
    sleep: Callable[[float], None] = time.sleep,
) -> httpx.Response:
    """One ARM request, retried on 409 RequestConflict (another write on the account), 429 and 5xx,
    waiting what Retry-After says or backing off exponentially with jitter; an RBAC denial is
    waited out underneath (propagation.PropagationClient)."""
    params = params or {"api-version": ARM_API_VERSION}
    attempt = 0
    with PropagationClient(timeout=60, sleep=sleep) as http:
        while True:
            response: httpx.Response | None = None
            try:
                response = http.request(method, url, headers=headers, params=params, json=json)
            except httpx.TransportError:
                if attempt >= retries:
                    raise
            if response is not None:
                conflict = response.status_code == 409 and _code(response) in CONFLICT_CODES
                if not (conflict or response.status_code in TRANSIENT) or attempt >= retries:
                    return response
            server_wait = retry_after(response) if response is not None else None
            sleep(server_wait if server_wait else backoff(attempt))
            attempt += 1


def backoff(attempt: int) -> float:
    """Exponential backoff with jitter, capped at 30 s."""
    return min(30.0, 0.5 * 2.0**attempt) * random.uniform(0.75, 1.0)


def _code(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", {}).get("code", ""))
    except ValueError:
        return ""


def _safe_url(url: str) -> bool:
    """https anywhere; plain http only to this machine (the emulator), so a key never travels unencrypted."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


def account_of(props: dict[str, Any]) -> tuple[str, str]:
    """What identifies the account a resource lives in (how it authenticates does not)."""
    target = Target.of(props)
    parts = urlsplit(target.endpoint.rstrip("/"))
    host = (parts.hostname or "").lower().replace("localhost", "127.0.0.1")
    return f"{parts.scheme}://{host}:{parts.port or ''}{parts.path}", target.arm_id.lower()


def same_account(olds: dict[str, Any], news: dict[str, Any]) -> bool:
    """Whether both sides name the same account. Unknown during a preview counts as the same: the
    engine diffs again with the real values before it changes anything, and a preview that showed
    a retrain because an output was not resolved yet would be a false alarm."""
    if Target.unknown(olds) or Target.unknown(news):
        return True
    return account_of(olds) == account_of(news)


def _known(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else UNKNOWN


def container_client(spec: dict[str, Any]) -> Any:
    """A blob container as inputs and stack outputs describe it ({"account_url", "container"}):
    Entra ID on Azure, or the connection string in `connection_string_env` (Azurite in tests)."""
    from azure.storage.blob import ContainerClient

    if spec.get("connection_string_env"):
        return ContainerClient.from_connection_string(
            os.environ[spec["connection_string_env"]], spec["container"], transport=PropagationBlobTransport()
        )
    return ContainerClient(
        spec["account_url"],
        spec["container"],
        credential=azure_credential(),
        transport=PropagationBlobTransport(),
    )
