"""The emulator's ASGI app: every route on both surfaces and for every emulated account.

Accounts: the default account is served at the root (`/openai/...`), any other at
`/accounts/<name>/openai/...`, and all of them on the ARM-shaped control plane
(`/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.CognitiveServices/accounts/<name>`).
Accounts come into being when first used, like a fresh resource.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ftops import __version__
from ftops.emulator import (
    chat_api,
    deployments_api,
    files_api,
    jobs_api,
    metrics_api,
    models_api,
    responses_api,
)
from ftops.emulator.faults import ASGIApp, FaultInjector, Message, Receive, Scope, Send
from ftops.emulator.http import (
    ApiError,
    Ctx,
    Surface,
    VersionError,
    check_key,
    check_version,
    error_response,
    internal_error,
    json_body,
    make_ctx,
    route_not_found,
)
from ftops.emulator.settings import Faults, Settings
from ftops.emulator.state import Emulator

Handler = Callable[[Emulator, Ctx, Request], Awaitable[Response]]

ACCOUNT_PREFIXES = ("", "/accounts/{account}")
# A Foundry project endpoint (`https://<resource>.services.ai.azure.com/api/projects/<project>`):
# `AIProjectClient(...).get_openai_client()` calls `<project endpoint>/openai/v1/...`, the
# same API as the account's, with Entra tokens (here: Bearer <key>).
PROJECT = "/api/projects/{project}"
ARM_ACCOUNT = (
    "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.CognitiveServices/"
    "accounts/{account}"
)

DATA_PLANE: list[tuple[str, str, Handler, tuple[Surface, ...]]] = [
    ("POST", "/files", files_api.upload, ("v1", "dated")),
    ("GET", "/files", files_api.listing, ("v1", "dated")),
    ("GET", "/files/{file_id}", files_api.retrieve, ("v1", "dated")),
    ("DELETE", "/files/{file_id}", files_api.delete, ("v1", "dated")),
    ("GET", "/files/{file_id}/content", files_api.content, ("v1", "dated")),
    ("POST", "/fine_tuning/jobs", jobs_api.create, ("v1", "dated")),
    ("GET", "/fine_tuning/jobs", jobs_api.listing, ("v1", "dated")),
    ("GET", "/fine_tuning/jobs/{job_id}", jobs_api.retrieve, ("v1", "dated")),
    ("DELETE", "/fine_tuning/jobs/{job_id}", jobs_api.delete, ("v1", "dated")),
    ("POST", "/fine_tuning/jobs/{job_id}/cancel", jobs_api.cancel, ("v1", "dated")),
    ("POST", "/fine_tuning/jobs/{job_id}/pause", jobs_api.pause, ("v1", "dated")),
    ("POST", "/fine_tuning/jobs/{job_id}/resume", jobs_api.resume, ("v1", "dated")),
    ("GET", "/fine_tuning/jobs/{job_id}/events", jobs_api.events, ("v1", "dated")),
    ("GET", "/fine_tuning/jobs/{job_id}/checkpoints", jobs_api.checkpoints, ("v1", "dated")),
    ("GET", "/models", models_api.listing, ("v1", "dated")),
    ("GET", "/models/{model:path}", models_api.retrieve, ("v1", "dated")),
    ("POST", "/chat/completions", chat_api.complete, ("v1",)),
    ("POST", "/deployments/{deployment}/chat/completions", chat_api.complete, ("dated",)),
    ("POST", "/responses", responses_api.create, ("v1", "dated")),
    ("GET", "/responses/{response_id}", responses_api.retrieve, ("v1", "dated")),
    ("DELETE", "/responses/{response_id}", responses_api.delete, ("v1", "dated")),
    ("GET", "/responses/{response_id}/input_items", responses_api.input_items, ("v1", "dated")),
]

CONTROL_PLANE: list[tuple[str, str, Handler]] = [
    ("GET", "", deployments_api.account),
    ("GET", "/deployments", deployments_api.listing),
    ("PUT", "/deployments/{deployment}", deployments_api.put),
    ("GET", "/deployments/{deployment}", deployments_api.get),
    ("DELETE", "/deployments/{deployment}", deployments_api.delete),
    ("GET", "/providers/Microsoft.Insights/metrics", metrics_api.metrics),
]


def _endpoint(handler: Handler, surface: Surface) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        emu: Emulator = request.app.state.emulator
        ctx = Ctx(surface, emu.settings.default_account, f"{request.url.scheme}://{request.url.netloc}")
        try:
            check_key(request, emu.settings.api_key)
            check_version(request, surface)
            ctx = make_ctx(request, surface)
            return await handler(emu, ctx, request)
        except ApiError as err:
            return error_response(ctx, err)
        except VersionError as err:
            return err.response()
        except _TooLargeError:
            raise  # BodyLimit answers 413
        except Exception as exc:  # Azure's JSON 500 with a request id, logged with the traceback
            return internal_error(request.method, request.url.path, exc)

    endpoint.__name__ = f"{surface}_{handler.__module__.rsplit('.', 1)[-1]}_{handler.__name__}"
    return endpoint


def _admin_routes(app: FastAPI) -> None:
    async def get_faults(request: Request) -> Response:
        emu: Emulator = request.app.state.emulator
        ctx = Ctx("arm", emu.settings.default_account, "")
        try:
            check_key(request, emu.settings.api_key)
        except ApiError as err:
            return error_response(ctx, err)
        return JSONResponse(emu.faults.faults.model_dump())

    async def put_faults(request: Request) -> Response:
        emu: Emulator = request.app.state.emulator
        ctx = Ctx("arm", emu.settings.default_account, "")
        try:
            check_key(request, emu.settings.api_key)
            body = await json_body(request)
            try:
                faults = Faults.model_validate(body)
            except ValueError as exc:
                raise ApiError(400, "invalidPayload", f"Invalid faults: {exc}") from None
        except ApiError as err:
            return error_response(ctx, err)
        emu.faults.set(faults)
        return JSONResponse(faults.model_dump())

    async def requests(request: Request) -> Response:
        emu: Emulator = request.app.state.emulator
        try:
            check_key(request, emu.settings.api_key)
        except ApiError as err:
            return error_response(Ctx("arm", emu.settings.default_account, ""), err)
        counts = request.app.state.counter.snapshot(reset=request.method == "DELETE")
        return JSONResponse({"total": sum(counts.values()), "requests": counts})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    app.add_api_route("/admin/faults", get_faults, methods=["GET"], include_in_schema=False)
    app.add_api_route("/admin/faults", put_faults, methods=["PUT"], include_in_schema=False)
    app.add_api_route("/admin/requests", requests, methods=["GET", "DELETE"], include_in_schema=False)
    app.add_api_route("/health", health, methods=["GET"], include_in_schema=False)


_IDS = re.compile(r"(file-|ftjob-|ftevent-|ftckpt_)[0-9a-f]{32}")


class RequestCounter:
    """Counts requests by method and path shape (ids folded), for tests and benchmarks that measure
    how many calls a client makes: `GET /admin/requests`, reset with `DELETE /admin/requests`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(("/admin/", "/health")):
            with self._lock:
                self.counts[f"{scope['method']} {_IDS.sub(lambda m: m.group(1) + '*', scope['path'])}"] += 1
        await self.app(scope, receive, send)

    def snapshot(self, reset: bool = False) -> dict[str, int]:
        with self._lock:
            counts = dict(self.counts)
            if reset:
                self.counts.clear()
        return counts


class BodyLimit:
    """413 before reading a body larger than allowed (uploads get the file limit, JSON far less)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        multipart = headers.get(b"content-type", b"").startswith(b"multipart/form-data")
        limit = self.settings.max_upload_bytes if multipart else self.settings.max_json_bytes
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(limit)(scope, receive, send)
            return
        seen = 0
        over = started = False

        async def limited() -> dict[str, object]:
            nonlocal seen, over
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                over = True
                raise _TooLargeError
            return dict(message)

        async def tracking(message: Message) -> None:
            nonlocal started
            if over:
                return  # the app's own error page for the exception; the 413 below replaces it
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, tracking)
        except _TooLargeError:
            if started:
                raise
        if over and not started:
            await _drain(receive)
            await _too_large(limit)(scope, receive, send)


DRAIN_BYTES = 32 * 1024 * 1024


async def _drain(receive: Receive) -> None:
    """Read (and drop) what the client is still sending, up to a bound: closing a socket with unread
    data makes the kernel reset it, and the client would see a broken connection instead of the 413."""
    drained = 0
    while drained < DRAIN_BYTES:
        message = await receive()
        drained += len(message.get("body", b""))
        if message.get("type") != "http.request" or not message.get("more_body"):
            return


class _TooLargeError(Exception):
    pass


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse(
        {
            "error": {
                "code": "RequestEntityTooLarge",
                "message": f"The request body is larger than the {limit:,} bytes allowed.",
            }
        },
        status_code=413,
    )


def create_app(settings: Settings) -> ASGIApp:
    emulator = Emulator(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        emulator.start()
        yield
        emulator.stop()

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, StarletteHTTPException) else 404
        return route_not_found(request.url.path, status)

    async def unexpected(request: Request, exc: Exception) -> Response:
        if isinstance(exc, _TooLargeError):
            return Response(status_code=413)  # dropped: BodyLimit sends its own 413
        return internal_error(request.method, request.url.path, exc)

    app = FastAPI(
        title="ftops emulator",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        exception_handlers={StarletteHTTPException: http_error, Exception: unexpected},
    )
    app.state.emulator = emulator
    for prefix in ACCOUNT_PREFIXES:
        for method, path, handler, surfaces in DATA_PLANE:
            for surface in surfaces:
                root = "/openai/v1" if surface == "v1" else "/openai"
                app.add_api_route(f"{prefix}{root}{path}", _endpoint(handler, surface), methods=[method])
                if surface == "v1":
                    app.add_api_route(
                        f"{prefix}{PROJECT}{root}{path}", _endpoint(handler, surface), methods=[method]
                    )
    for method, path, handler in CONTROL_PLANE:
        app.add_api_route(f"{ARM_ACCOUNT}{path}", _endpoint(handler, "arm"), methods=[method])
    _admin_routes(app)
    counter = RequestCounter(FaultInjector(BodyLimit(app, settings), emulator.faults))
    app.state.counter = counter
    return counter
