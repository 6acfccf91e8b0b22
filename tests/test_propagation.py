"""RBAC propagation: denials Azure gives while a new role assignment spreads are waited out (and
logged); every other 401/403 fails at once; a denial that outlasts FTOPS_RBAC_WAIT is returned."""

from __future__ import annotations

import json
from typing import Any

import httpx2 as httpx
import pytest
from azure.core.pipeline import PipelineContext, PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import HTTPPolicy
from azure.core.rest import HttpRequest

from ftops.errors import UsageError
from ftops.providers.propagation import PropagationPolicy, PropagationWait, denial_code, pauses, wait_limit

DENIED = {
    "error": {"code": "PermissionDenied", "message": "Principal does not have access to API/Operation."}
}
BAD_KEY = {"error": {"code": "401", "message": "Access denied due to invalid subscription key."}}


class Server:
    """A MockTransport handler answering `denials` denials, then 200; it keeps every body it got."""

    def __init__(self, denials: int, status: int = 401, body: dict[str, Any] = DENIED) -> None:
        self.denials, self.status, self.body = denials, status, body
        self.bodies: list[bytes] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(request.read())
        if len(self.bodies) <= self.denials:
            return httpx.Response(self.status, json=self.body)
        return httpx.Response(200, json={"ok": True})


def client(server: Server, slept: list[float]) -> httpx.Client:
    return httpx.Client(transport=PropagationWait(httpx.MockTransport(server), sleep=slept.append))


def test_pauses_back_off_to_15_s_and_add_up_to_the_limit() -> None:
    assert list(pauses(40)) == [1, 2, 4, 8, 15, 10]
    assert sum(pauses(600)) == 600
    assert list(pauses(0)) == []


def test_a_denial_is_waited_out_and_the_same_body_sent_again(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FTOPS_RBAC_WAIT", raising=False)
    server, slept = Server(denials=3), list[float]()
    files = {"file": ("train.jsonl", b'{"messages": []}\n', "application/jsonl")}
    response = client(server, slept).post("https://oai.example/openai/v1/files", files=files)
    assert response.status_code == 200
    assert slept == [1, 2, 4]
    assert len(server.bodies) == 4
    assert len(set(server.bodies)) == 1, "the multipart upload is re-sent byte for byte"
    assert b'{"messages": []}' in server.bodies[0]
    log = capsys.readouterr().err
    assert "POST oai.example/openai/v1/files: PermissionDenied; waiting 1 s" in log
    assert "allowed after 7 s" in log


def test_other_401s_and_403s_fail_at_once() -> None:
    for status, body in ((401, BAD_KEY), (403, {"error": {"code": "Forbidden", "message": "no"}})):
        server, slept = Server(denials=5, status=status, body=body), list[float]()
        assert client(server, slept).get("https://oai.example/openai/v1/models").status_code == status
        assert (slept, len(server.bodies)) == ([], 1)


def test_a_denial_that_outlasts_the_wait_is_returned_with_a_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FTOPS_RBAC_WAIT", "20")
    server, slept = (
        Server(denials=100, status=403, body={"error": {"code": "AuthorizationFailed"}}),
        list[float](),
    )
    response = client(server, slept).get("https://management.example/subscriptions/s")
    assert response.status_code == 403
    assert sum(slept) == 20
    assert "still AuthorizationFailed after 20 s" in capsys.readouterr().err
    monkeypatch.setenv("FTOPS_RBAC_WAIT", "0")
    off, none_slept = Server(denials=1), list[float]()
    assert client(off, none_slept).get("https://oai.example/x").status_code == 401
    assert none_slept == []
    monkeypatch.setenv("FTOPS_RBAC_WAIT", "ten minutes")
    with pytest.raises(UsageError, match="FTOPS_RBAC_WAIT='ten minutes': not a number of seconds"):
        wait_limit()


def test_denial_codes_come_from_the_storage_header_or_the_error_body() -> None:
    assert denial_code(403, {"x-ms-error-code": "AuthorizationPermissionMismatch"}, b"") == (
        "AuthorizationPermissionMismatch"
    )
    assert denial_code(401, {}, json.dumps(DENIED).encode()) == "PermissionDenied"
    assert denial_code(401, {}, json.dumps(BAD_KEY).encode()) is None
    assert denial_code(403, {}, b"<html>not json</html>") is None
    assert denial_code(404, {}, json.dumps(DENIED).encode()) is None


class _Storage(HTTPPolicy):  # type: ignore[type-arg]
    """The end of an azure-core pipeline: 403 AuthorizationPermissionMismatch `denials` times."""

    def __init__(self, denials: int) -> None:
        super().__init__()
        self.denials, self.calls = denials, 0

    def send(self, request: PipelineRequest) -> PipelineResponse:  # type: ignore[type-arg]
        self.calls += 1
        answer = _Answer(403 if self.calls <= self.denials else 201)
        return PipelineResponse(request.http_request, answer, request.context)


class _Answer:
    def __init__(self, status: int) -> None:
        self.status_code = status
        self.headers = {"x-ms-error-code": "AuthorizationPermissionMismatch"} if status == 403 else {}

    def body(self) -> bytes:
        return b""


def test_blob_writes_wait_out_a_storage_denial() -> None:
    slept: list[float] = []
    policy, storage = PropagationPolicy(sleep=slept.append), _Storage(denials=2)
    policy.next = storage
    url = "https://st.blob.core.windows.net/audit/dev.jsonl?comp=appendblock"
    request = PipelineRequest(HttpRequest("PUT", url), PipelineContext(None))
    assert policy.send(request).http_response.status_code == 201
    assert (storage.calls, slept) == (3, [1, 2])
