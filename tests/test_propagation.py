"""RBAC propagation: denials Azure gives while a new role assignment spreads are waited out (and
logged); every other 401/403 fails at once; a denial that outlasts FTOPS_RBAC_WAIT is returned."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from ftops.azure.connection import container_client
from ftops.azure.propagation import (
    PropagationClient,
    denial_code,
    pauses,
    wait_limit,
)
from ftops.errors import UsageError

DENIED = {
    "error": {"code": "PermissionDenied", "message": "Principal does not have access to API/Operation."}
}
BAD_KEY = {"error": {"code": "401", "message": "Access denied due to invalid subscription key."}}


class Server(httpx.BaseTransport):
    """Answers `denials` denials, then 200, reading each body off the wire as a real transport
    does (httpx's MockTransport would cache it and make any body replayable)."""

    def __init__(self, denials: int, status: int = 401, body: dict[str, Any] = DENIED) -> None:
        self.denials, self.status, self.body = denials, status, body
        self.bodies: list[bytes] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(b"".join(request.stream))  # type: ignore[arg-type]
        if len(self.bodies) <= self.denials:
            return httpx.Response(self.status, json=self.body)
        return httpx.Response(200, json={"ok": True})


def client(server: Server, slept: list[float]) -> httpx.Client:
    return PropagationClient(transport=server, sleep=slept.append)


@pytest.fixture
def warnings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What goes to the Pulumi log (stderr when no engine is attached)."""
    said: list[str] = []
    monkeypatch.setattr("pulumi.log.warn", said.append)
    monkeypatch.delenv("FTOPS_RBAC_WAIT", raising=False)
    return said


def test_pauses_back_off_to_15_s_and_add_up_to_the_limit() -> None:
    assert list(pauses(40)) == [1, 2, 4, 8, 15, 10]
    assert sum(pauses(600)) == 600
    assert list(pauses(0)) == []


def test_a_denial_is_waited_out_and_the_same_body_sent_again(warnings: list[str], tmp_path: Path) -> None:
    server, slept = Server(denials=3), list[float]()
    data = tmp_path / "train.jsonl"
    data.write_bytes(b'{"messages": []}\n' * 1000)
    with data.open("rb") as handle:  # a file is streamed from disk, and sought back for a re-send
        files = {"file": ("train.jsonl", handle, "application/jsonl")}
        response = client(server, slept).post("https://oai.example/openai/v1/files", files=files)
    assert response.status_code == 200
    assert slept == [1, 2, 4]
    assert len(server.bodies) == 4
    assert len(set(server.bodies)) == 1, "the multipart upload is re-sent byte for byte"
    assert data.read_bytes() in server.bodies[0]
    assert warnings[0] == (
        "POST oai.example/openai/v1/files: PermissionDenied; waiting 1 s for a new role assignment "
        "to propagate (0 of 600 s, FTOPS_RBAC_WAIT)"
    )
    assert warnings[-1] == "POST oai.example/openai/v1/files: allowed after 7 s"


def test_a_body_that_cannot_be_sent_again_is_not_waited_out(warnings: list[str]) -> None:
    server = Server(denials=1)
    response = client(server, []).post("https://oai.example/openai/v1/files", content=iter([b"a", b"b"]))
    assert response.status_code == 401
    assert server.bodies == [b"ab"]  # never a second, empty, body
    assert warnings == [
        "POST oai.example/openai/v1/files: PermissionDenied; its body cannot be sent again, so it is not waited out"
    ]


def test_the_sdk_client_keeps_proxies_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert PropagationClient()._mounts, "a proxy from the environment is mounted"


def test_other_401s_and_403s_fail_at_once() -> None:
    for status, body in ((401, BAD_KEY), (403, {"error": {"code": "Forbidden", "message": "no"}})):
        server, slept = Server(denials=5, status=status, body=body), list[float]()
        assert client(server, slept).get("https://oai.example/openai/v1/models").status_code == status
        assert (slept, len(server.bodies)) == ([], 1)


def test_a_denial_that_outlasts_the_wait_is_returned_with_a_hint(
    warnings: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FTOPS_RBAC_WAIT", "20")
    server, slept = (
        Server(denials=100, status=403, body={"error": {"code": "AuthorizationFailed"}}),
        list[float](),
    )
    response = client(server, slept).get("https://management.example/subscriptions/s")
    assert response.status_code == 403
    assert sum(slept) == 20
    assert "still AuthorizationFailed after 20 s" in warnings[-1]
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


class _StorageStub(http.server.BaseHTTPRequestHandler):
    """Blob storage that denies the first two writes as a role still propagating would."""

    calls = 0

    def do_PUT(self) -> None:
        type(self).calls += 1
        self.rfile.read(int(self.headers.get("content-length") or 0))
        denied = type(self).calls <= 2
        self.send_response(403 if denied else 201)
        if denied:
            self.send_header("x-ms-error-code", "AuthorizationPermissionMismatch")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def storage() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StorageStub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
        f"BlobEndpoint=http://127.0.0.1:{server.server_address[1]}/devstoreaccount1;"
    )
    server.shutdown()


def test_blob_writes_wait_out_a_storage_denial(
    storage: str, warnings: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUB_STORAGE", storage)
    container = container_client({"connection_string_env": "STUB_STORAGE", "container": "audit"})
    container.create_container()  # through the helper every audit and evidence write uses
    assert _StorageStub.calls == 3
    assert warnings[0].startswith("PUT http://127.0.0.1:")
    assert "/devstoreaccount1/audit: AuthorizationPermissionMismatch; waiting 1 s" in warnings[0]
    assert warnings[-1].endswith("allowed after 3 s")
