"""Waiting out Azure RBAC propagation.

A first `pulumi up` creates the role assignments (`Access`) and, in the same run, uploads the
training file, starts the job, appends to the audit blob and runs the gate as the principal those
assignments are for. Azure takes minutes to apply a new assignment (up to 10, by its docs), and
until then answers with the denial codes below. Those are retried for `FTOPS_RBAC_WAIT` seconds
(default 600; 0 turns it off) with each wait in the log; any other 401/403 (a bad key, a token
for the wrong audience) fails at once, and so does a denial that outlasts the wait.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx2 as httpx
import pulumi
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import HTTPPolicy

from ftops.errors import UsageError

DENIALS = frozenset(
    {
        "PermissionDenied",  # Azure OpenAI, 401: "Principal does not have access to API/Operation."
        "AuthorizationPermissionMismatch",  # Blob storage, 403
        "AuthorizationFailed",  # Azure Resource Manager, 403
        "LinkedAuthorizationFailed",  # ARM, 403 for a linked resource (a `model.source` account)
    }
)
DEFAULT_WAIT = 600.0
VARIABLE = "FTOPS_RBAC_WAIT"

R = TypeVar("R")


def wait_limit() -> float:
    raw = os.environ.get(VARIABLE)
    if raw is None or not raw.strip():
        return DEFAULT_WAIT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value < 0:
        raise UsageError(
            f"{VARIABLE}={raw!r}: not a number of seconds",
            fix=f"export {VARIABLE}=600 (0 fails at the first denial)",
        )
    return value


def pauses(limit: float) -> Iterator[float]:
    """1, 2, 4, 8, then every 15 s, trimmed so the total is `limit`."""
    spent, pause = 0.0, 1.0
    while spent < limit:
        step = min(pause, limit - spent)
        yield step
        spent += step
        pause = min(15.0, pause * 2)


def denial_code(status: int, headers: Any, body: bytes) -> str | None:
    """The RBAC denial code of a response, or None when it is something else."""
    if status not in (401, 403):
        return None
    code = headers.get("x-ms-error-code") if headers is not None else None
    if not code:
        try:
            error = json.loads(body or b"{}").get("error") or {}
            code = error.get("code") if isinstance(error, dict) else None
        except (ValueError, AttributeError):
            code = None
    return str(code) if code in DENIALS else None


def wait_out(
    send: Callable[[], R],
    denied: Callable[[R], str | None],
    close: Callable[[R], None],
    what: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
    say: Callable[[str], None] | None = None,
) -> R:
    """`send()` again while its answer is an RBAC denial, for up to `FTOPS_RBAC_WAIT` seconds.
    Each wait goes to the Pulumi log (stderr outside a Pulumi run)."""
    say = say or pulumi.log.warn
    response = send()
    code = denied(response)
    if code is None:
        return response
    limit, waited = wait_limit(), 0.0
    for pause in pauses(limit):
        close(response)
        say(
            f"{what}: {code}; waiting {pause:.0f} s for a new role assignment to propagate "
            f"({waited:.0f} of {limit:.0f} s, {VARIABLE})"
        )
        sleep(pause)
        waited += pause
        response = send()
        code = denied(response)
        if code is None:
            say(f"{what}: allowed after {waited:.0f} s")
            return response
    if limit:
        say(
            f"{what}: still {code} after {waited:.0f} s: check that the principal holds the role "
            f"(`Access` in the stack), or raise {VARIABLE} and re-run"
        )
    return response


class PropagationWait(httpx.BaseTransport):
    """An httpx transport that waits out RBAC denials: under the openai SDK and `arm_call`."""

    def __init__(
        self, inner: httpx.BaseTransport | None = None, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.inner = inner or httpx.HTTPTransport()
        self.sleep = sleep

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        def denied(response: httpx.Response) -> str | None:
            if response.status_code not in (401, 403):
                return None  # never read other bodies here: a chat stream stays a stream
            return denial_code(response.status_code, response.headers, response.read())

        # The SDK's bodies (JSON, bytes, multipart over bytes or a seekable file) can be sent again.
        return wait_out(
            lambda: self.inner.handle_request(request),
            denied,
            lambda r: r.close(),
            f"{request.method} {request.url.host}{request.url.path}",
            sleep=self.sleep,
        )

    def close(self) -> None:
        self.inner.close()


class PropagationPolicy(HTTPPolicy):  # type: ignore[type-arg]
    """The same wait for azure-core clients (the audit and evidence blobs)."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__()
        self.sleep = sleep

    def send(self, request: PipelineRequest) -> PipelineResponse:  # type: ignore[type-arg]
        def denied(response: PipelineResponse) -> str | None:  # type: ignore[type-arg]
            http = response.http_response
            if http.status_code not in (401, 403):
                return None
            try:
                body = http.body() or b""
            except Exception:  # a streamed download's body is not read yet; storage sets the header
                body = b""
            return denial_code(http.status_code, http.headers, body)

        url = request.http_request.url
        return wait_out(
            lambda: self.next.send(request),
            denied,
            lambda _r: None,
            f"{request.http_request.method} {url.split('?', 1)[0]}",
            sleep=self.sleep,
        )
