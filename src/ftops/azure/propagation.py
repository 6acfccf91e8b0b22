"""Waiting out Azure RBAC propagation.

A first `pulumi up` creates the role assignments (`Access`) and, in the same run, uploads the
training file, starts the job, appends to the audit blob and runs the gate as the principal those
assignments are for. Azure takes minutes to apply a new assignment (up to 10, by its docs), and
until then answers with the denial codes below. Those are retried for `FTOPS_RBAC_WAIT` seconds
(default 600; 0 turns it off) with each wait in the log; any other 401/403 (a bad key, a token
for the wrong audience, a storage firewall) fails at once, and so does a denial that outlasts
the wait. The waiting sits in the clients' `send` (openai SDK, `arm_call`) and in the blob
clients' transport, so proxies, timeouts and the SDK's own retries stay as they are.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx2 as httpx
import openai
import pulumi
from azure.core.pipeline.transport import RequestsTransport

from ftops.azure.failures import is_loopback, unreachable
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


def _send_waiting(
    send: Callable[[], httpx.Response], request: httpx.Request, sleep: Callable[[float], None]
) -> httpx.Response:
    def denied(response: httpx.Response) -> str | None:
        if response.status_code not in (401, 403):
            return None  # never read other bodies here: a chat stream stays a stream
        return denial_code(response.status_code, response.headers, response.read())

    what = f"{request.method} {request.url.host}{request.url.path}"
    # JSON and bytes (ByteStream) and multipart over bytes or seekable files replay; an iterator or
    # a file given as content would silently send an empty body the second time.
    if not (
        isinstance(request.stream, httpx.ByteStream) or type(request.stream).__name__ == "MultipartStream"
    ):
        response = send()
        code = denied(response)
        if code is not None:
            pulumi.log.warn(f"{what}: {code}; its body cannot be sent again, so it is not waited out")
        return response
    return wait_out(send, denied, lambda r: r.close(), what, sleep=sleep)


class PropagationClient(openai.DefaultHttpxClient):
    """An httpx client with the openai SDK's defaults (timeouts, limits, proxies from the
    environment) whose requests wait out RBAC denials: under the SDK and `arm_call`."""

    def __init__(self, *args: Any, sleep: Callable[[float], None] = time.sleep, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sleep = sleep

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        try:
            return _send_waiting(
                lambda: super(PropagationClient, self).send(request, **kwargs), request, self._sleep
            )
        except httpx.ConnectError as exc:
            if is_loopback(str(request.url)):  # nothing listens here: retrying will not start it
                raise unreachable(str(request.url), "connection refused") from exc
            raise


class PropagationBlobTransport(RequestsTransport):  # type: ignore[misc]
    """azure-core's requests transport (with the timeouts azure-storage-blob sets on its own),
    waiting out RBAC denials: for the audit and evidence blobs."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(connection_timeout=20, read_timeout=60, connection_data_block_size=256 * 1024)
        self._sleep = sleep

    def send(self, request: Any, **kwargs: Any) -> Any:
        def denied(response: Any) -> str | None:
            if response.status_code not in (401, 403):
                return None
            try:
                body = response.body() or b""
            except Exception:  # a streamed download's body is not read yet; storage sets the header
                body = b""
            return denial_code(response.status_code, response.headers, body)

        def close(response: Any) -> None:
            with contextlib.suppress(Exception):
                response.internal_response.close()

        from azure.core.exceptions import ServiceRequestError

        def send() -> Any:
            try:
                return super(PropagationBlobTransport, self).send(request, **kwargs)
            except ServiceRequestError as exc:
                if is_loopback(str(request.url)):  # Azurite or a local store that is not running
                    raise unreachable(str(request.url), "connection refused") from exc
                raise

        return wait_out(
            send,
            denied,
            close,
            f"{request.method} {str(request.url).split('?', 1)[0]}",
            sleep=self._sleep,
        )
