"""Every response body the emulator sends on a route the official specs describe is validated
against them with a JSON Schema validator: the dated surface against the 2024-10-21 authoring spec
(Swagger 2.0), the v1 surface against the v1 spec (OpenAPI 3.0, `nullable` honoured). What Azure
itself sends differently from its spec is listed in ALLOWED below, with why."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import jsonschema
import pytest

from tests.emulator_process import KEY, Emulator, start, wait_for
from tests.test_emulator_api import TRAIN, VALID, deploy

SPECS = Path(__file__).resolve().parent / "specs"  # vendored, with their provenance
DATED_SPEC = SPECS / "2024-10-21_azureopenai.json"
V1_SPEC = SPECS / "azure-v1-v1-generated.json"

# (surface, JSON path pattern of the value, why it may differ from the spec). Nothing else is
# excused: nulls the dated spec does not declare are omitted, v1's nullables are honoured.
ALLOWED: list[tuple[str, str, str]] = [
    (
        "dated",
        "error/code",
        "an api-version Azure does not serve is refused before the service by its gateway, with "
        "{'code': 'BadRequest', 'message': 'API version not supported'}: outside the spec's ErrorCode enum",
    ),
]


def _nullable(node: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` as JSON Schema: the value may also be null."""
    if isinstance(node, list):
        return [_nullable(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable(v) for k, v in node.items()}
    if out.pop("nullable", False):
        return {"anyOf": [out, {"type": "null"}]}
    return out


def _spec(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


class Contract:
    """The response schemas of one spec, by (method, path template, status)."""

    def __init__(self, surface: str, spec: dict[str, Any]) -> None:
        self.surface = surface
        self.spec = spec
        self.root = _nullable(spec) if surface == "v1" else spec
        self.templates = [
            (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$"), p) for p in spec["paths"]
        ]

    def schema(self, method: str, path: str, status: int) -> dict[str, Any]:
        path = path.removeprefix("/openai/v1" if self.surface == "v1" else "/openai")
        for pattern, template in self.templates:
            if pattern.match(path):
                operation = self.root["paths"][template][method.lower()]
                responses = operation["responses"]
                response = responses.get(str(status)) or responses["default"]
                if self.surface == "v1":
                    schema: dict[str, Any] = response["content"]["application/json"]["schema"]
                else:
                    schema = response["schema"]
                return schema
        raise AssertionError(f"{method} {path} is not in the {self.surface} spec")

    def errors(self, method: str, path: str, status: int, body: Any) -> list[str]:
        return [e for where, e in self._errors(method, path, status, body) if not self.excused(where)]

    def errors_unexcused(self, method: str, path: str, status: int, body: Any) -> list[str]:
        return [e for _, e in self._errors(method, path, status, body)]

    def excused(self, where: str) -> bool:
        return any(s == self.surface and re.fullmatch(p, where) for s, p, _ in ALLOWED)

    def _errors(self, method: str, path: str, status: int, body: Any) -> list[tuple[str, str]]:
        schema = dict(self.schema(method, path, status))
        key = "components" if self.surface == "v1" else "definitions"
        schema[key] = self.root[key]
        validator = jsonschema.Draft4Validator(schema)
        found = []
        for error in validator.iter_errors(body):
            where = "/".join(str(p) for p in error.absolute_path)
            found.append((where, f"{method} {path} -> {status}: at '{where}': {error.message[:300]}"))
        return found


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    server = start(tmp_path_factory.mktemp("emulator"), tmp_path_factory.mktemp("models"))
    yield server
    assert server.stop() == 0


def exchange(
    http: httpx.Client, calls: list[tuple[str, str, int, Any]], method: str, path: str, **kw: Any
) -> Any:
    response = http.request(method, path, **kw)
    assert response.headers["content-type"].startswith("application/json"), (path, response.text)
    body = response.json()
    calls.append((method, path, response.status_code, body))
    return body


def test_every_body_conforms_to_the_official_specs(emu: Emulator) -> None:
    dated = Contract("dated", _spec(DATED_SPEC))
    v1 = Contract("v1", _spec(V1_SPEC))
    d_calls: list[tuple[str, str, int, Any]] = []
    v_calls: list[tuple[str, str, int, Any]] = []
    q = {"api-version": "2024-10-21"}
    with httpx.Client(base_url=emu.url, headers={"api-key": KEY}, timeout=120) as http:
        # Files, on both surfaces.
        for calls, root, params in ((d_calls, "/openai", q), (v_calls, "/openai/v1", {})):
            made = exchange(
                http,
                calls,
                "POST",
                f"{root}/files",
                params=params,
                files={"file": ("t.jsonl", TRAIN.read_bytes())},
                data={"purpose": "fine-tune"},
            )
            exchange(http, calls, "GET", f"{root}/files", params=params)
            while (
                exchange(http, calls, "GET", f"{root}/files/{made['id']}", params=params)["status"]
                == "pending"
            ):
                time.sleep(0.2)
            exchange(http, calls, "GET", f"{root}/files/nope", params=params)
        refused = exchange(http, d_calls, "GET", "/openai/models", params={"api-version": "2031-01-01"})
        assert refused == {"error": {"code": "BadRequest", "message": "API version not supported"}}
        valid = exchange(
            http,
            d_calls,
            "POST",
            "/openai/files",
            params=q,
            files={"file": ("v.jsonl", VALID.read_bytes())},
            data={"purpose": "fine-tune"},
        )
        training = d_calls[0][3]["id"]
        # A job that trains, one that is cancelled, one refused.
        job = exchange(
            http,
            d_calls,
            "POST",
            "/openai/fine_tuning/jobs",
            params=q,
            json={
                "model": "gpt-4o-mini",
                "training_file": training,
                "validation_file": valid["id"],
                "hyperparameters": {"n_epochs": 2, "batch_size": 16},
                "suffix": "spec",
            },
        )
        exchange(http, v_calls, "GET", f"/openai/v1/fine_tuning/jobs/{job['id']}")
        exchange(
            http,
            d_calls,
            "POST",
            "/openai/fine_tuning/jobs",
            params=q,
            json={"model": "gpt-9", "training_file": training},
        )
        exchange(
            http,
            v_calls,
            "POST",
            "/openai/v1/fine_tuning/jobs",
            json={"model": "gpt-9", "training_file": training},
        )
        wait_for(emu.v1(), job["id"], ("succeeded", "failed"))
        second = exchange(
            http,
            v_calls,
            "POST",
            "/openai/v1/fine_tuning/jobs",
            json={"model": "gpt-4.1-mini", "training_file": training},
        )
        exchange(http, v_calls, "POST", f"/openai/v1/fine_tuning/jobs/{second['id']}/cancel")
        for calls, root, params in ((d_calls, "/openai", q), (v_calls, "/openai/v1", {})):
            exchange(http, calls, "GET", f"{root}/fine_tuning/jobs", params=params)
            done = exchange(http, calls, "GET", f"{root}/fine_tuning/jobs/{job['id']}", params=params)
            exchange(http, calls, "GET", f"{root}/fine_tuning/jobs/{job['id']}/events", params=params)
            exchange(http, calls, "GET", f"{root}/fine_tuning/jobs/{job['id']}/checkpoints", params=params)
            exchange(http, calls, "GET", f"{root}/fine_tuning/jobs/ftjob-{'0' * 32}", params=params)
            exchange(http, calls, "GET", f"{root}/models", params=params)
            exchange(http, calls, "GET", f"{root}/models/gpt-4o-mini-2024-07-18", params=params)
            exchange(http, calls, "GET", f"{root}/models/{done['fine_tuned_model']}", params=params)
            exchange(http, calls, "GET", f"{root}/files/{done['result_files'][0]}", params=params)
        assert done["status"] == "succeeded"
        # Inference on v1: chat completions and responses (the dated chat route is in the inference spec).
        deploy(emu, "spec", done["fine_tuned_model"])
        exchange(
            http,
            v_calls,
            "POST",
            "/openai/v1/chat/completions",
            json={"model": "spec", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
        )
        made = exchange(
            http,
            v_calls,
            "POST",
            "/openai/v1/responses",
            json={"model": "spec", "input": "hi", "max_output_tokens": 16},
        )
        exchange(http, v_calls, "GET", f"/openai/v1/responses/{made['id']}")
        exchange(http, v_calls, "GET", f"/openai/v1/responses/{made['id']}/input_items")
        exchange(http, v_calls, "DELETE", f"/openai/v1/responses/{made['id']}")
        exchange(http, v_calls, "GET", f"/openai/v1/responses/{made['id']}")
        for calls, root, params in ((d_calls, "/openai", q), (v_calls, "/openai/v1", {})):
            exchange(http, calls, "DELETE", f"{root}/files/{training}", params=params)
    assert len(d_calls) >= 18
    assert len(v_calls) >= 24
    assert dated.errors("GET", "/openai/models", 400, refused) == []  # excused by ALLOWED only
    assert len(Contract("dated", dated.spec).errors_unexcused("GET", "/openai/models", 400, refused)) == 1
    problems = [e for m, p, s, b in d_calls for e in dated.errors(m, p, s, b)]
    problems += [e for m, p, s, b in v_calls for e in v1.errors(m, p, s, b)]
    assert not problems, "\n".join(problems)
