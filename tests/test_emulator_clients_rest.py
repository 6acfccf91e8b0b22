"""Plain REST with `requests`, as Microsoft's REST how-to and curl samples make the calls: multipart
upload, job creation on the dated surface (201 + Location) and on v1 (method + top-level
hyperparameters), polling, events, checkpoints, results.csv, an ARM deployment, chat and responses,
cleanup; and the errors a script sees (Azure's JSON shapes, never plain text)."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.emulator_process import KEY, Emulator, start
from tests.test_emulator_api import TRAIN, VALID

API = {"api-version": "2024-10-21"}


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    server = start(tmp_path_factory.mktemp("emulator"), tmp_path_factory.mktemp("models"))
    yield server
    assert server.stop() == 0


def upload(endpoint: str, path: Any) -> str:
    with open(path, "rb") as fh:
        r = requests.post(
            f"{endpoint}/openai/files",
            params=API,
            headers={"api-key": KEY},
            data={"purpose": "fine-tune"},
            files={"file": (path.name, fh, "application/json")},
        )
    assert r.status_code == 201, r.text
    file_id: str = r.json()["id"]
    while (
        f := requests.get(f"{endpoint}/openai/files/{file_id}", params=API, headers={"api-key": KEY}).json()
    )["status"] not in ("processed", "error"):
        time.sleep(0.2)
    assert f["status"] == "processed", f
    return file_id


def poll(url: str, params: dict[str, str], headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 300
    while True:
        job: dict[str, Any] = requests.get(url, params=params, headers=headers).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.5)


def deploy_arm(endpoint: str, name: str, model: str) -> None:
    """PUT an ARM deployment (again after a 409: another write on the account is provisioning) and
    wait until it has provisioned."""
    arm = (
        f"{endpoint}/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-local/providers/"
        f"Microsoft.CognitiveServices/accounts/local/deployments/{name}"
    )
    body: dict[str, Any] = {
        "sku": {"name": "GlobalStandard", "capacity": 50},
        "properties": {"model": {"format": "OpenAI", "name": model, "version": "1"}},
    }
    params, headers = {"api-version": "2024-10-01"}, {"api-key": KEY}
    deadline = time.monotonic() + 30
    while (put := requests.put(arm, params=params, headers=headers, json=body)).status_code == 409:
        assert time.monotonic() < deadline, put.text
        time.sleep(0.2)
    assert put.status_code in (200, 201), put.text
    while (
        requests.get(arm, params=params, headers=headers).json()["properties"]["provisioningState"]
        != "Succeeded"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_the_rest_how_to_end_to_end(emu: Emulator) -> None:
    endpoint = emu.url
    headers = {"api-key": KEY, "Content-Type": "application/json"}
    training, validation = upload(endpoint, TRAIN), upload(endpoint, VALID)

    r = requests.post(
        f"{endpoint}/openai/fine_tuning/jobs",
        params=API,
        headers=headers,
        json={
            "model": "gpt-4o-mini",
            "training_file": training,
            "validation_file": validation,
            "seed": 105,
            "hyperparameters": {"n_epochs": 3, "batch_size": 16},
        },
    )
    assert r.status_code == 201, r.text
    job = r.json()
    assert r.headers["Location"].endswith(f"/openai/fine_tuning/jobs/{job['id']}")
    assert job["model"] == "gpt-4o-mini-2024-07-18"
    assert job["hyperparameters"] == {"n_epochs": 3, "batch_size": 16, "learning_rate_multiplier": -1}
    done = poll(r.headers["Location"], API, headers)
    assert done["status"] == "succeeded", done
    model = done["fine_tuned_model"]

    events = requests.get(
        f"{endpoint}/openai/fine_tuning/jobs/{job['id']}/events", params=API, headers=headers
    )
    assert events.json()["data"][0]["message"] == "Job succeeded."
    checkpoints = requests.get(
        f"{endpoint}/openai/fine_tuning/jobs/{job['id']}/checkpoints", params=API, headers=headers
    ).json()["data"]
    assert [c["fine_tuned_model_checkpoint"] for c in checkpoints] == [
        model,
        f"{model}:ckpt-step-10",
        f"{model}:ckpt-step-5",
    ]
    results = requests.get(
        f"{endpoint}/openai/files/{done['result_files'][0]}/content", params=API, headers={"api-key": KEY}
    )
    rows = list(csv.DictReader(io.StringIO(results.text)))
    assert len(rows) == 15

    arm = (
        f"{endpoint}/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-local/providers/"
        "Microsoft.CognitiveServices/accounts/local/deployments/rest-ft"
    )
    bearer = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    body: dict[str, Any] = {
        "sku": {"name": "GlobalStandard", "capacity": 50},
        "properties": {"model": {"format": "OpenAI", "name": model, "version": "1"}},
    }
    put = requests.put(arm, params={"api-version": "2024-10-01"}, headers=bearer, json=body)
    assert put.status_code == 201, put.text
    assert put.headers["Retry-After"] == "1"
    while (
        requests.get(arm, params={"api-version": "2024-10-01"}, headers=bearer).json()["properties"][
            "provisioningState"
        ]
        != "Succeeded"
    ):
        time.sleep(0.2)

    chat = requests.post(
        f"{endpoint}/openai/deployments/rest-ft/chat/completions",
        params=API,
        headers=headers,
        json={"messages": [{"role": "user", "content": "How long is the return window?"}], "max_tokens": 12},
    )
    assert chat.status_code == 200, chat.text
    assert chat.json()["choices"][0]["message"]["role"] == "assistant"
    assert chat.json()["model"] == model
    answer = requests.post(
        f"{endpoint}/openai/v1/responses",
        headers=headers,
        json={"model": "rest-ft", "input": "How long is the return window?", "max_output_tokens": 16},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["object"] == "response"
    assert answer.json()["output"][0]["content"][0]["type"] == "output_text"
    assert requests.delete(f"{endpoint}/openai/v1/responses/{answer.json()['id']}", headers=headers).json()[
        "deleted"
    ]

    # Azure's deployment docs name a checkpoint `ftchkpt-<hex>` where the API lists `ftckpt_<hex>`:
    # the emulator deploys it by either, and serves that epoch's adapter, not the final model's.
    earlier = checkpoints[1]
    azure_name = "ftchkpt-" + earlier["id"].removeprefix("ftckpt_")
    said = {}
    for name, deployed in (
        ("rest-step10", earlier["fine_tuned_model_checkpoint"]),
        ("rest-ftchkpt", azure_name),
    ):
        deploy_arm(endpoint, name, deployed)
        reply = requests.post(
            f"{endpoint}/openai/deployments/{name}/chat/completions",
            params=API,
            headers=headers,
            json={
                "messages": [{"role": "user", "content": "Do you ship to Canada?"}],
                "max_tokens": 12,
                "temperature": 0,
            },
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["model"] == deployed
        said[name] = reply.json()["choices"][0]["message"]["content"]
    assert said["rest-ftchkpt"] == said["rest-step10"]

    time.sleep(0.6)  # the deployment write keeps the account busy briefly, as on Azure
    assert requests.delete(arm, params={"api-version": "2024-10-01"}, headers=bearer).status_code == 200
    assert (
        requests.delete(
            f"{endpoint}/openai/fine_tuning/jobs/{job['id']}", params=API, headers=headers
        ).status_code
        == 204
    )
    for file_id in (training, validation):
        gone = requests.delete(f"{endpoint}/openai/files/{file_id}", params=API, headers=headers)
        assert gone.json() == {"id": file_id, "object": "file", "deleted": True}


def test_v1_rest_with_method_and_top_level_hyperparameters(emu: Emulator) -> None:
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    training = upload(emu.url, TRAIN)
    r = requests.post(
        f"{emu.url}/openai/v1/fine_tuning/jobs",
        headers=headers,
        json={
            "model": "gpt-4.1-nano",
            "training_file": training,
            "method": {"type": "supervised"},
            "hyperparameters": {"n_epochs": 1, "batch_size": 16},
        },
    )
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["model"] == "gpt-4.1-nano-2025-04-14"
    assert job["method"]["supervised"]["hyperparameters"]["n_epochs"] == 1
    assert job["hyperparameters"]["learning_rate_multiplier"] == "auto"  # v1 keeps OpenAI's shape
    done = poll(f"{emu.url}/openai/v1/fine_tuning/jobs/{job['id']}", {}, headers)
    assert done["status"] == "succeeded", done
    assert isinstance(done["hyperparameters"]["learning_rate_multiplier"], float)


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        (
            "GET",
            "/openai/fine_tuning/jobs/ftjob-00000000000000000000000000000000?api-version=2024-10-21",
            404,
            "notFound",
        ),
        ("GET", "/openai/models?api-version=2031-01-01", 400, "BadRequest"),
        ("GET", "/openai/fine-tunes?api-version=2024-10-21", 404, "404"),
        ("POST", "/openai/v1/chat/completions", 404, "DeploymentNotFound"),
        ("PUT", "/openai/v1/files", 405, "405"),
    ],
)
def test_errors_a_script_sees_are_azures_json(
    emu: Emulator, method: str, path: str, status: int, code: str
) -> None:
    r = requests.request(
        method, f"{emu.url}{path}", headers={"api-key": KEY}, json={"model": "x", "messages": []}
    )
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json()["error"]["code"] == code
