"""Fault injection: errors, latency and dropped connections in front of the whole API.

It wraps the ASGI app from the outside so it sees uvicorn's own `send`, which is what makes a
real dropped connection possible (the transport is aborted, the client sees a reset, not a 500).
`/admin/*` is never faulted, so a test can always turn faults off again.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ftops.emulator.settings import Faults

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ERROR_BODIES = {
    429: (
        "429",
        "Requests to the emulator have exceeded the injected rate limit. Please retry after 1 second.",
    ),
    500: ("InternalServerError", "The server had an error while processing your request. (injected fault)"),
    502: ("BadGateway", "Bad gateway. (injected fault)"),
    503: (
        "ServiceUnavailable",
        "The service is temporarily unable to process your request. (injected fault)",
    ),
}
DENIED = {
    # What Azure answers a principal whose role assignment has not reached the service yet.
    401: ("PermissionDenied", "Principal does not have access to API/Operation."),
    403: (
        "AuthorizationFailed",
        "The client does not have authorization to perform action over scope. If access was "
        "recently granted, please refresh your credentials. (injected: role not propagated yet)",
    ),
}


class FaultState:
    """The current faults, changed at run time by the admin endpoint."""

    def __init__(self, faults: Faults) -> None:
        self._lock = threading.Lock()
        self.set(faults)

    def set(self, faults: Faults) -> None:
        with self._lock:
            self.faults = faults
            self._pattern = re.compile(faults.path_pattern) if faults.path_pattern else None
            self._rng = random.Random(faults.seed)
            self._granted_at = time.monotonic() + faults.rbac_delay_s

    def draw(self, path: str) -> tuple[float, str | None, int]:
        """(latency seconds, "drop" | "error" | None, status) for one request."""
        with self._lock:
            f = self.faults
            if self._pattern is not None and not self._pattern.search(path):
                return 0.0, None, 0
            if time.monotonic() < self._granted_at:
                return f.latency_ms / 1000, "error", 403 if path.startswith("/subscriptions/") else 401
            if self._rng.random() < f.drop_rate:
                return f.latency_ms / 1000, "drop", 0
            if self._rng.random() < f.error_rate:
                return f.latency_ms / 1000, "error", self._rng.choice(f.error_codes)
            return f.latency_ms / 1000, None, 0


class FaultInjector:
    def __init__(self, app: ASGIApp, state: FaultState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/admin/"):
            await self.app(scope, receive, send)
            return
        delay, action, status = self.state.draw(scope["path"])
        if delay:
            await asyncio.sleep(delay)
        if action == "drop" and _abort(send):
            return
        if action is not None:
            await _error(send, status or 500)
            return
        await self.app(scope, receive, send)


def _abort(send: Send) -> bool:
    """Reset the TCP connection under uvicorn; False when the server does not expose it."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        return False
    transport.abort()
    return True


async def _error(send: Send, status: int) -> None:
    code, message = {**ERROR_BODIES, **DENIED}[status]
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 429:
        headers += [(b"retry-after", b"1"), (b"retry-after-ms", b"1000")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
