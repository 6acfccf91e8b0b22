"""What every emulator endpoint shares: the two surfaces, accounts, auth, errors, JSON bodies.

Azure serves the same operations on two surfaces that differ in details the SDK notices:
the dated one (`/openai/...?api-version=2024-10-21`) answers creates with 201 and a Location,
omits absent fields and spells error codes in camelCase; v1 (`/openai/v1/...`) answers 200,
sends nulls, and uses OpenAI's status names. Handlers build one document and `Ctx` renders it.
"""

from __future__ import annotations

import hmac
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from ftops.emulator import ids
from ftops.emulator.settings import DATED_API_VERSIONS, V1_API_VERSIONS

log = logging.getLogger("ftops.emulator")

Surface = Literal["v1", "dated", "arm"]

AUTH_MESSAGE = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key "
    "for an active subscription and use a correct regional API endpoint for your resource."
)

# Error codes per surface: the dated spec's camelCase enum, OpenAI-style names on v1.
_CODES = {
    "invalidPayload": ("invalidPayload", "invalid_request_error"),
    "notFound": ("notFound", "not_found"),
    "unexpectedEntityState": ("unexpectedEntityState", "invalid_request_error"),
    "quotaExceeded": ("quotaExceeded", "quota_exceeded"),
    "tooManyRequests": ("429", "rate_limit_exceeded"),
    "unauthorized": ("401", "unauthorized"),
    "internalFailure": ("internalFailure", "server_error"),
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.param = status, code, message, param
        self.headers = headers or {}
        # Inference errors (chat, responses) come in OpenAI's shape on every surface, with a type.
        self.kind = kind


def bad_request(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, "invalidPayload", message, param=param)


def not_found(what: str, value: str, param: str | None = None) -> ApiError:
    return ApiError(404, "notFound", f"The specified {what} '{value}' could not be found.", param=param)


def wrong_state(message: str) -> ApiError:
    # 400, not 409: the SDK retries 409 three times, which would only repeat the refusal.
    return ApiError(400, "unexpectedEntityState", message)


@dataclass(frozen=True)
class Ctx:
    surface: Surface
    account: str
    base_url: str  # the request's own scheme://host:port, for Location headers

    @property
    def dated(self) -> bool:
        return self.surface == "dated"

    def error_body(self, err: ApiError) -> dict[str, Any]:
        if self.surface == "arm":
            return {"error": {"code": err.code, "message": err.message}}
        if err.kind is not None:
            return {"error": {"message": err.message, "type": err.kind, "param": err.param, "code": err.code}}
        dated_code, v1_code = _CODES.get(err.code, (err.code, err.code))
        if self.dated:
            body: dict[str, Any] = {"code": dated_code, "message": err.message}
            if err.param:
                body["target"] = err.param
            return {"error": body}
        # SPEC-V1's AzureErrorResponse: param is a string when a parameter is at fault, else absent.
        body = {"code": v1_code, "message": err.message, "type": "error"}
        if err.param is not None:
            body["param"] = err.param
        return {"error": body}

    def render(self, doc: Any) -> Any:
        """The dated surface declares nothing nullable: absent values are omitted there."""
        if not self.dated:
            return doc
        if isinstance(doc, dict):
            return {k: self.render(v) for k, v in doc.items() if v is not None}
        if isinstance(doc, list):
            return [self.render(v) for v in doc]
        return doc

    def json(self, doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(
            self.render(doc), status_code=status, headers={**_request_ids(), **(headers or {})}
        )

    def created(self, doc: Any, location: str) -> JSONResponse:
        """Create answers: 201 + Location on the dated surface, 200 on v1."""
        if self.dated:
            return self.json(doc, 201, {"Location": f"{self.base_url}{location}"})
        return self.json(doc)

    def page(self, docs: list[Any], has_more: bool, *, ids_too: bool = False) -> JSONResponse:
        # `has_more` always: without it the SDK keeps asking for the next page.
        body: dict[str, Any] = {"object": "list", "data": docs, "has_more": has_more}
        if ids_too and not self.dated:
            body["first_id"] = docs[0]["id"] if docs else None
            body["last_id"] = docs[-1]["id"] if docs else None
        return self.json(body)


def _request_ids(rid: str | None = None) -> dict[str, str]:
    rid = rid or str(uuid.uuid4())
    return {"x-request-id": rid, "apim-request-id": rid}


def error_response(ctx: Ctx, err: ApiError) -> JSONResponse:
    return JSONResponse(
        ctx.error_body(err), status_code=err.status, headers={**_request_ids(), **err.headers}
    )


# What Azure OpenAI answers a path it does not serve (and a dated path without api-version).
ROUTE_NOT_FOUND = {"error": {"code": "404", "message": "Resource not found"}}
VERSION_NOT_SUPPORTED = {"error": {"code": "BadRequest", "message": "API version not supported"}}


def route_not_found(path: str, status: int = 404) -> JSONResponse:
    """Azure's answer to a path no route serves: the data plane's `Resource not found`, or on the
    ARM control plane the resource provider's `InvalidResourceType`."""
    if path.startswith("/subscriptions/"):
        body = {
            "error": {
                "code": "InvalidResourceType",
                "message": "The resource type could not be found in the namespace "
                "'Microsoft.CognitiveServices'.",
            }
        }
        return JSONResponse(body, status_code=404, headers=_request_ids())
    if status == 405:
        body = {"error": {"code": "405", "message": "Method not allowed"}}
        return JSONResponse(body, status_code=405, headers=_request_ids())
    return JSONResponse(ROUTE_NOT_FOUND, status_code=404, headers=_request_ids())


def internal_error(method: str, path: str, exc: BaseException) -> JSONResponse:
    """An unexpected failure, answered as Azure does (JSON, a request id to quote) and logged with
    its traceback under that id; never a plain-text 500."""
    rid = str(uuid.uuid4())
    log.error("request %s %s %s failed", rid, method, path, exc_info=exc)
    body = {
        "error": {
            "code": "InternalServerError",
            "message": "The server had an error while processing your request. Sorry about that! "
            f"You can retry your request, or contact us if the error persists, quoting the request "
            f"ID {rid}.",
        }
    }
    return JSONResponse(body, status_code=500, headers=_request_ids(rid))


def check_key(request: Request, api_key: str) -> None:
    given = request.headers.get("api-key")
    if given is None:
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
    if not given or not hmac.compare_digest(given.encode(), api_key.encode()):
        raise ApiError(401, "unauthorized", AUTH_MESSAGE)


class VersionError(Exception):
    """An api-version Azure refuses before routing: the body is Azure's, whatever the surface."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body["error"]["message"])
        self.status, self.body = status, body

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status, headers=_request_ids())


def check_version(request: Request, surface: Surface) -> None:
    version = request.query_params.get("api-version")
    if surface == "dated":
        if version is None:
            raise VersionError(404, ROUTE_NOT_FOUND)
        if version not in DATED_API_VERSIONS:
            raise VersionError(400, VERSION_NOT_SUPPORTED)
    elif surface == "v1" and version is not None and version not in V1_API_VERSIONS:
        raise VersionError(400, VERSION_NOT_SUPPORTED)
    elif surface == "arm" and not version:
        raise ApiError(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )


def make_ctx(request: Request, surface: Surface) -> Ctx:
    account = request.path_params.get("account") or request.app.state.emulator.settings.default_account
    if not ids.ACCOUNT.match(account):
        raise ApiError(404, "404", f"Resource not found: '{account}' is not a valid account name.")
    base = f"{request.url.scheme}://{request.url.netloc}"
    return Ctx(surface, account, base)


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise bad_request(f"The request body is not valid JSON: {exc.msg} at position {exc.pos}.") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


def no_content() -> Response:
    return Response(status_code=204, headers=_request_ids())
