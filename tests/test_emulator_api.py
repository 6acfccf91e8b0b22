"""The emulator through the official openai SDK, on both surfaces: files, jobs, models, chat,
deployments, errors, and training for real (the tiny stand-in model keeps it fast)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from ftops.emulator.settings import DATED_API_VERSIONS
from tests.conftest import REPO, good_dpo, good_example, line_of, write_lines
from tests.emulator_process import KEY, Emulator, start, wait_file, wait_for

TRAIN = REPO / "data" / "support-bot" / "train.jsonl"
VALID = REPO / "data" / "support-bot" / "valid.jsonl"
DPO_TRAIN = REPO / "data" / "support-bot-dpo" / "train.jsonl"

# The workflow of ../shared/seeds/001_f53609496ce762a4.txt, steps 1-3 as written there (the seed's
# text lost its indentation; the statements are unchanged).
SEED_WORKFLOW = """
training_file = client.files.create(
    file=open("training_data.jsonl", "rb"),
    purpose="fine-tune"
)
print(f"File ID: {training_file.id}")
job = client.fine_tuning.jobs.create(
    training_file=training_file.id,
    model="gpt-4o-mini-2024-07-18",
    hyperparameters={
        "n_epochs": 3,
        "batch_size": "auto",
        "learning_rate_multiplier": "auto"
    }
)
print(f"Job ID: {job.id}")
print(f"Status: {job.status}")
job = client.fine_tuning.jobs.retrieve(job.id)
print(f"Status: {job.status}")
events = client.fine_tuning.jobs.list_events(job.id)
for event in events.data:
    print(f"{event.created_at}: {event.message}")
"""


def step_of(event: Any) -> int:
    return int(event.data["step"])


def upload(client: Any, path: Path) -> Any:
    with path.open("rb") as fh:
        created = client.files.create(file=fh, purpose="fine-tune")
    return wait_file(client, created.id)


def deploy(
    emu: Emulator,
    name: str,
    model: str,
    *,
    account: str = "local",
    capacity: int = 50,
    source: str | None = None,
    sku: str = "GlobalStandard",
    version: str = "1",
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sku": {"name": sku, "capacity": capacity},
        "properties": {"model": {"format": "OpenAI", "name": model, "version": version}},
    }
    if source:
        body["properties"]["model"]["source"] = source
    with emu.http() as http:
        url = f"{emu.arm(account)}/deployments/{name}?api-version=2024-10-01"
        for _ in range(100):
            response = http.put(url, json=body)
            if response.status_code != 409:
                break
            time.sleep(0.2)
        assert response.status_code in (200, 201), response.text
        for _ in range(100):
            doc = http.get(url).json()
            if doc["properties"]["provisioningState"] == "Succeeded":
                return dict(doc)
            time.sleep(0.1)
    raise AssertionError(f"deployment {name} never succeeded")


# ---------------------------------------------------------------- the seed's workflow, unmodified


@pytest.mark.parametrize("surface", ["dated", "v1"])
def test_seed_workflow_runs_unmodified(
    emu: Emulator, surface: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = emu.dated() if surface == "dated" else emu.v1()
    shutil.copy(TRAIN, tmp_path / "training_data.jsonl")
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        namespace: dict[str, Any] = {"client": client}
        exec(SEED_WORKFLOW, namespace)
    finally:
        os.chdir(old)
    printed = capsys.readouterr().out
    job = namespace["job"]
    assert job.id.startswith("ftjob-")
    assert "File ID: file-" in printed
    assert "Job created for gpt-4o-mini-2024-07-18 (supervised)" in printed
    done = wait_for(client, job.id, ("succeeded", "failed", "cancelled"))
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model == f"gpt-4o-mini-2024-07-18.ft-{job.id.removeprefix('ftjob-')}"
    assert done.hyperparameters.n_epochs == 3
    assert isinstance(done.hyperparameters.batch_size, int)  # "auto" resolved by training
    assert done.trained_tokens is not None
    assert done.trained_tokens > 0


# ---------------------------------------------------------------- files


def test_files_on_both_surfaces(emu: Emulator) -> None:
    dated, v1 = emu.dated(), emu.v1()
    with httpx.Client(base_url=emu.url, headers={"api-key": KEY}) as http:
        response = http.post(
            "/openai/files",
            params={"api-version": "2024-10-21"},
            files={"file": ("t.jsonl", TRAIN.read_bytes())},
            data={"purpose": "fine-tune"},
        )
    assert response.status_code == 201
    assert response.headers["location"].endswith(f"/openai/files/{response.json()['id']}")
    assert "expires_at" not in response.json()  # the dated shape
    f = wait_file(dated, response.json()["id"])
    assert (f.status, f.bytes, f.filename, f.purpose) == (
        "processed",
        TRAIN.stat().st_size,
        "t.jsonl",
        "fine-tune",
    )
    same = v1.files.retrieve(f.id)
    assert same.id == f.id
    assert dated.files.content(f.id).content == TRAIN.read_bytes()
    ids = [x.id for x in v1.files.list(purpose="fine-tune")]
    assert f.id in ids
    assert v1.files.delete(f.id).deleted is True
    with pytest.raises(openai.NotFoundError) as info:
        dated.files.retrieve(f.id)
    assert info.value.code == "notFound"
    with pytest.raises(openai.NotFoundError) as info:
        v1.files.retrieve(f.id)
    assert info.value.code == "not_found"


def test_file_listing_paginates(emu: Emulator, tmp_path: Path) -> None:
    client = emu.v1(account="pages")
    made = [upload(client, TRAIN).id for _ in range(3)]
    page = client.files.list(limit=2)
    assert len(page.data) == 2
    assert page.has_more is True
    assert sorted(f.id for f in client.files.list(limit=2)) == sorted(made)  # auto-pagination ends


def test_invalid_file_gets_error_status_with_reasons(emu: Emulator, tmp_path: Path) -> None:
    lines = [line_of(good_example(i)) for i in range(12)]
    lines[3] = b'{"messages": [{"role": "robot", "content": "hi"}]}'
    bad = write_lines(tmp_path / "bad.jsonl", lines)
    client = emu.dated()
    f = upload(client, bad)
    assert f.status == "error"
    assert "line 4: messages[0].role is 'robot'" in f.status_details
    # As on Azure, the job is accepted and then fails, naming the file and why.
    job = client.fine_tuning.jobs.create(training_file=f.id, model="gpt-4o-mini-2024-07-18")
    failed = wait_for(client, job.id, ("succeeded", "failed"), timeout=30)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.code == "invalid_training_file"
    assert failed.error.message.startswith(
        f"The job failed due to an invalid training file. The training file '{f.id}' failed validation: "
        "Invalid file format: line 4: messages[0].role is 'robot'"
    )
    assert failed.fine_tuned_model is None
    v1_job = emu.v1().fine_tuning.jobs.retrieve(job.id)
    assert v1_job.error is not None
    assert v1_job.error.param == "training_file"


def test_file_ids_cannot_escape_the_data_directory(emu: Emulator) -> None:
    with emu.http() as http:
        for path in ("/openai/files/..%2F..%2Femulator.sqlite3/content", "/openai/files/../emulator.sqlite3"):
            response = http.get(path, params={"api-version": "2024-10-21"})
            assert response.status_code == 404, path
            assert b"SQLite" not in response.content


# ---------------------------------------------------------------- errors, auth, versions, limits


def test_auth_is_required_on_every_surface(emu: Emulator) -> None:
    bad = openai.AzureOpenAI(azure_endpoint=emu.url, api_key="wrong", api_version="2024-10-21")
    with pytest.raises(openai.AuthenticationError) as info:
        bad.models.list()
    assert "Access denied due to invalid subscription key" in info.value.message
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{emu.url}/openai/v1", api_key="wrong").models.list()
    response = httpx.get(f"{emu.url}{emu.arm()}/deployments", params={"api-version": "2024-10-01"})
    assert response.status_code == 401
    # The v1 client's Bearer header and the dated client's api-key header both work.
    assert emu.v1().models.list().data
    assert emu.dated().models.list().data


def test_unknown_api_version_gets_azures_error_shape(emu: Emulator) -> None:
    client = openai.AzureOpenAI(azure_endpoint=emu.url, api_key=KEY, api_version="2023-01-01", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.models.list()
    assert info.value.body == {"code": "BadRequest", "message": "API version not supported"}
    assert info.value.response.json() == {
        "error": {"code": "BadRequest", "message": "API version not supported"}
    }
    with emu.http() as http:
        missing = http.get("/openai/models")
        assert (missing.status_code, missing.json()) == (
            404,
            {"error": {"code": "404", "message": "Resource not found"}},
        )
        wrong_v1 = http.get("/openai/v1/models", params={"api-version": "2024-10-21"})
        assert wrong_v1.status_code == 400
        assert wrong_v1.json()["error"]["message"] == "API version not supported"


@pytest.mark.parametrize("version", DATED_API_VERSIONS)
def test_every_documented_api_version_is_accepted(emu: Emulator, version: str) -> None:
    client = openai.AzureOpenAI(azure_endpoint=emu.url, api_key=KEY, api_version=version, max_retries=0)
    assert any(m.id == "gpt-4o-mini-2024-07-18" for m in client.models.list().data)
    assert client.fine_tuning.jobs.list(limit=1).has_more in (True, False)


def test_documented_versions_include_the_ones_clients_send() -> None:
    for version in ("2024-06-01", "2025-01-01-preview", "2025-02-01-preview", "2025-03-01-preview"):
        assert version in DATED_API_VERSIONS


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/openai/nothing-here"),
        ("GET", "/openai/v1/nothing/here"),
        ("POST", "/openai/deployments/x/embeddings?api-version=2024-10-21"),
        ("GET", "/"),
        ("GET", "/docs"),
        ("GET", "/openapi.json"),
    ],
)
def test_unknown_routes_answer_azures_404(emu: Emulator, method: str, path: str) -> None:
    with emu.http() as http:
        response = http.request(method, path)
    assert response.status_code == 404, path
    assert response.json() == {"error": {"code": "404", "message": "Resource not found"}}
    assert response.headers["content-type"] == "application/json"
    assert response.headers["apim-request-id"]


def test_unknown_arm_resource_type_answers_arm_404(emu: Emulator) -> None:
    with emu.http() as http:
        response = http.get(f"{emu.arm()}/raiPolicies/x", params={"api-version": "2024-10-01"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "InvalidResourceType"


def test_oversized_json_body_is_refused(emu: Emulator) -> None:
    with emu.http() as http:
        response = http.post(
            "/openai/v1/fine_tuning/jobs",
            content=b"x" * (16 * 1024 * 1024 + 10),
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "RequestEntityTooLarge"


def test_job_validation_errors(emu: Emulator) -> None:
    client = emu.v1(max_retries=0)
    f = upload(client, TRAIN)
    cases = [
        ({"model": "gpt-9"}, "The base model 'gpt-9' does not support fine-tuning here"),
        (
            {"model": "gpt-4o-mini-2024-07-18", "method": {"type": "dpo"}},
            "The model 'gpt-4o-mini-2024-07-18' does not support dpo fine-tuning (it supports supervised).",
        ),
        (
            {"model": "gpt-4o-mini-2024-07-18", "hyperparameters": {"n_epochs": 0}},
            "n_epochs must be 'auto' or a number from 1 to 50; got 0.",
        ),
        (
            {"model": "gpt-4o-mini-2024-07-18", "suffix": "has.dot"},
            "suffix must be 1-40 characters of letters, digits, '-' or '_'.",
        ),
        (
            {"model": "gpt-4o-mini-2024-07-18", "validation_file": "file-" + "0" * 32},
            "The validation_file 'file-00000000000000000000000000000000' could not be found.",
        ),
    ]
    for extra, message in cases:
        assert isinstance(extra, dict)
        with pytest.raises(openai.BadRequestError) as info:
            client.fine_tuning.jobs.create(training_file=f.id, **extra)
        assert message in info.value.message, extra
        assert info.value.code == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-" + "0" * 32)


def test_top_level_hyperparameters_beside_method_apply_as_on_azure(emu: Emulator) -> None:
    client = emu.v1(account="hyper", max_retries=0)
    f = upload(client, TRAIN)
    made = []
    # Microsoft's submit script: method names the type, the hyperparameters sit at the top level.
    job = client.fine_tuning.jobs.create(
        training_file=f.id,
        model="gpt-4.1-mini-2025-04-14",
        method={"type": "supervised"},
        hyperparameters={"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 0.1},
    )
    made.append(job.id)
    assert job.method is not None
    assert job.method.supervised is not None
    assert job.method.supervised.hyperparameters is not None
    assert job.method.supervised.hyperparameters.n_epochs == 2
    assert job.method.supervised.hyperparameters.batch_size == 4
    assert (job.hyperparameters.n_epochs, job.hyperparameters.learning_rate_multiplier) == (2, 0.1)
    # Both places, agreeing where they overlap: merged.
    both = client.fine_tuning.jobs.create(
        training_file=f.id,
        model="gpt-4.1-mini-2025-04-14",
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2, "n_epochs": 3}}},
        hyperparameters={"n_epochs": 3, "batch_size": 8},
    )
    made.append(both.id)
    assert both.method is not None
    assert both.method.dpo is not None
    assert both.method.dpo.hyperparameters is not None
    assert (both.method.dpo.hyperparameters.beta, both.method.dpo.hyperparameters.batch_size) == (0.2, 8)
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.jobs.create(
            training_file=f.id,
            model="gpt-4.1-mini-2025-04-14",
            method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
            hyperparameters={"n_epochs": 3},
        )
    assert isinstance(info.value.body, dict)
    assert info.value.body["message"] == (
        "hyperparameters.n_epochs (3) contradicts method.supervised.hyperparameters.n_epochs (2); "
        "give it in one place."
    )
    for job_id in made:
        client.fine_tuning.jobs.cancel(job_id)


@pytest.mark.parametrize(
    ("undated", "dated"),
    [
        ("gpt-4.1-mini", "gpt-4.1-mini-2025-04-14"),
        ("gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
        ("gpt-4o", "gpt-4o-2024-08-06"),
        ("gpt-4.1", "gpt-4.1-2025-04-14"),
        ("gpt-4.1-nano", "gpt-4.1-nano-2025-04-14"),
    ],
)
def test_undated_model_names_resolve_to_the_fine_tunable_version(
    emu: Emulator, undated: str, dated: str
) -> None:
    client = emu.dated(account="undated", max_retries=0)
    job = client.fine_tuning.jobs.create(training_file=upload(client, TRAIN).id, model=undated)
    try:
        assert job.model == dated  # the job records the resolved id
        messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id)]
        assert f"Model '{undated}' resolved to '{dated}'." in messages
    finally:
        client.fine_tuning.jobs.cancel(job.id)


def test_o4_mini_resolves_too_and_says_what_it_supports(emu: Emulator) -> None:
    client = emu.v1(max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.jobs.create(training_file=upload(client, TRAIN).id, model="o4-mini")
    assert isinstance(info.value.body, dict)
    assert info.value.body["message"] == (
        "The model 'o4-mini-2025-04-16' does not support supervised fine-tuning (it supports reinforcement)."
    )


def test_dated_surface_types_hyperparameters_as_numbers(emu: Emulator) -> None:
    v1 = emu.v1(account="typed")
    f = upload(v1, TRAIN)
    with emu.http() as http:
        created = http.post(
            "/accounts/typed/openai/fine_tuning/jobs",
            params={"api-version": "2024-10-21"},
            json={"model": "gpt-4o-mini", "training_file": f.id, "hyperparameters": {"n_epochs": 2}},
        )
        assert created.status_code == 201
        job = created.json()
        # -1 until training resolves them, as Azure sends; numbers, never "auto", per the spec.
        assert job["hyperparameters"] == {"n_epochs": 2, "batch_size": -1, "learning_rate_multiplier": -1}
        assert job["method"]["supervised"]["hyperparameters"]["batch_size"] == -1
        on_v1 = http.get(f"/accounts/typed/openai/v1/fine_tuning/jobs/{job['id']}").json()
        assert on_v1["hyperparameters"] == {
            "n_epochs": 2,
            "batch_size": "auto",
            "learning_rate_multiplier": "auto",
        }
    done = wait_for(v1, job["id"], ("succeeded", "failed"))
    assert done.status == "succeeded", done.error
    with emu.http() as http:
        final = http.get(
            f"/accounts/typed/openai/fine_tuning/jobs/{job['id']}", params={"api-version": "2024-10-21"}
        ).json()
    values = final["hyperparameters"]
    assert values["n_epochs"] == 2
    assert isinstance(values["batch_size"], int)
    assert values["batch_size"] >= 1
    assert isinstance(values["learning_rate_multiplier"], float)
    assert values["learning_rate_multiplier"] > 0


# ---------------------------------------------------------------- training, for real


def test_fine_tune_end_to_end_with_events_checkpoints_results(emu: Emulator) -> None:
    client = emu.dated()
    train, valid = upload(client, TRAIN), upload(client, VALID)
    job = client.fine_tuning.jobs.create(
        training_file=train.id,
        validation_file=valid.id,
        model="gpt-4.1-mini-2025-04-14",
        suffix="bot",
        seed=7,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 4, "batch_size": 16}}},
        metadata={"ftops-spec": "abc123"},
        extra_body={"trainingType": "GlobalStandard"},
    )
    assert job.status in ("pending", "created")
    done = wait_for(client, job.id, ("succeeded", "failed"))
    assert done.status == "succeeded", done.error
    hex_id = job.id.removeprefix("ftjob-")
    assert done.fine_tuned_model == f"gpt-4.1-mini-2025-04-14.ft-{hex_id}-bot"
    assert done.metadata == {"ftops-spec": "abc123"}
    assert done.model_extra is not None
    assert done.model_extra["trainingType"] == "GlobalStandard"

    events = list(client.fine_tuning.jobs.list_events(job.id, limit=5))  # auto-paginates, newest first
    messages = [e.message for e in events]
    assert messages[0] == "Job succeeded."
    assert "Job started." in messages
    metrics = [e for e in events if e.type == "metrics"]
    assert len(metrics) == 20  # 80 examples / batch 16 x 4 epochs
    losses = [e.data["train_loss"] for e in sorted(metrics, key=step_of)]
    assert sum(losses[-4:]) < sum(losses[:4]), losses  # real training lowers the loss

    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    # Azure keeps the last three epochs; the last one is the fine-tuned model itself.
    assert [c.step_number for c in checkpoints] == [20, 15, 10]
    assert [c.fine_tuned_model_checkpoint for c in checkpoints] == [
        done.fine_tuned_model,
        f"{done.fine_tuned_model}:ckpt-step-15",
        f"{done.fine_tuned_model}:ckpt-step-10",
    ]
    assert "Created checkpoint at step 5 (epoch 1)." in messages  # made, then let go of
    assert checkpoints[0].id.startswith("ftckpt_")
    assert set(checkpoints[0].metrics.model_dump(exclude_none=True)) == {
        "step",
        "train_loss",
        "train_mean_token_accuracy",
        "valid_loss",
        "valid_mean_token_accuracy",
        "full_valid_loss",
        "full_valid_mean_token_accuracy",
    }
    results = client.files.content(done.result_files[0]).text
    rows = list(csv.DictReader(io.StringIO(results)))
    assert list(rows[0]) == [
        "step",
        "train_loss",
        "train_mean_token_accuracy",
        "valid_loss",
        "validation_mean_token_accuracy",
        "full_valid_loss",
        "full_valid_mean_token_accuracy",
    ]
    assert len(rows) == 20
    assert rows[-1]["full_valid_loss"]  # filled at the end of each epoch
    result_file = client.files.retrieve(done.result_files[0])
    assert (result_file.purpose, result_file.filename) == ("fine-tune-results", "results.csv")

    models = {m.id: m for m in client.models.list()}
    assert done.fine_tuned_model in models
    assert models[done.fine_tuned_model].model_extra["capabilities"]["inference"] is True
    assert "gpt-4o-mini-2024-07-18" in models


def test_jobs_list_paginates_and_v1_names_statuses(emu: Emulator) -> None:
    client = emu.v1(account="listing")
    f = upload(client, TRAIN)
    made = [
        client.fine_tuning.jobs.create(
            training_file=f.id, model="tiny-test", hyperparameters={"n_epochs": 1}
        ).id
        for _ in range(3)
    ]
    page = client.fine_tuning.jobs.list(limit=2)
    assert [j.id for j in page.data] == made[::-1][:2]  # newest first
    assert page.has_more
    assert [j.id for j in client.fine_tuning.jobs.list(limit=2)] == made[::-1]
    statuses = {j.status for j in page.data}
    assert statuses <= {"queued", "running", "validating_files", "succeeded"}
    for job_id in made:
        client.fine_tuning.jobs.cancel(job_id)


def test_one_job_trains_at_a_time_per_account(emu: Emulator) -> None:
    client = emu.dated(account="queue")
    f = upload(client, TRAIN)
    first = client.fine_tuning.jobs.create(
        training_file=f.id, model="gpt-4o-mini-2024-07-18", hyperparameters={"n_epochs": 2}
    )
    second = client.fine_tuning.jobs.create(
        training_file=f.id, model="gpt-4o-mini-2024-07-18", hyperparameters={"n_epochs": 1}
    )
    wait_for(client, first.id, ("running",))
    assert str(client.fine_tuning.jobs.retrieve(second.id).status) == "pending"  # the dated name
    enqueued = [e.message for e in client.fine_tuning.jobs.list_events(second.id)]
    assert "Job enqueued. Waiting for jobs ahead to complete." in enqueued
    assert wait_for(client, first.id, ("succeeded",)).status == "succeeded"
    assert wait_for(client, second.id, ("succeeded",)).status == "succeeded"
    first_done = client.fine_tuning.jobs.retrieve(first.id).finished_at
    second_started = min(
        e.created_at for e in client.fine_tuning.jobs.list_events(second.id) if e.message == "Job started."
    )
    assert first_done is not None
    assert second_started >= first_done


def test_pause_resume_and_cancel(emu: Emulator) -> None:
    client = emu.v1(account="control", max_retries=0)
    f = upload(client, TRAIN)
    job = client.fine_tuning.jobs.create(
        training_file=f.id, model="tiny-test", hyperparameters={"n_epochs": 6}
    )
    with pytest.raises(openai.BadRequestError):  # not running yet / no step trained
        client.fine_tuning.jobs.pause(job.id)
    running = wait_for(client, job.id, ("running",))
    deadline = time.monotonic() + 60
    while not any(e.type == "metrics" for e in client.fine_tuning.jobs.list_events(job.id)):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    client.fine_tuning.jobs.pause(running.id)
    paused = wait_for(client, job.id, ("paused",))
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
    assert any(m.startswith("Job paused at step") for m in messages)
    client.fine_tuning.jobs.resume(paused.id)
    done = wait_for(client, job.id, ("succeeded",))
    steps = sorted(
        step_of(e) for e in client.fine_tuning.jobs.list_events(job.id, limit=1000) if e.type == "metrics"
    )
    assert steps == list(range(1, len(steps) + 1))  # resumed where it stopped: no step twice or missing
    assert done.fine_tuned_model

    other = client.fine_tuning.jobs.create(
        training_file=f.id, model="tiny-test", hyperparameters={"n_epochs": 8}
    )
    wait_for(client, other.id, ("running",))
    cancelled = client.fine_tuning.jobs.cancel(other.id)
    assert cancelled.status == "cancelled"
    time.sleep(2)
    final = client.fine_tuning.jobs.retrieve(other.id)
    assert final.status == "cancelled"
    assert final.fine_tuned_model is None
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.jobs.cancel(other.id)
    assert "already cancelled" in info.value.message


def test_dpo_and_continual_training(emu: Emulator) -> None:
    client = emu.dated(account="dpo")
    sft = client.fine_tuning.jobs.create(
        training_file=upload(client, TRAIN).id,
        model="gpt-4.1-mini-2025-04-14",
        hyperparameters={"n_epochs": 1},
    )
    sft_model = wait_for(client, sft.id, ("succeeded", "failed")).fine_tuned_model
    assert sft_model
    dpo_file = upload(client, DPO_TRAIN)
    dpo = client.fine_tuning.jobs.create(
        training_file=dpo_file.id,
        model=sft_model,
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2, "n_epochs": 1}}},
    )
    done = wait_for(client, dpo.id, ("succeeded", "failed"))
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model.startswith("gpt-4.1-mini-2025-04-14.ft-")
    assert done.method.dpo.hyperparameters.beta == 0.2
    # DPO data on a supervised job fails at validation, with the reason.
    wrong = client.fine_tuning.jobs.create(training_file=dpo_file.id, model="gpt-4.1-mini-2025-04-14")
    failed = wait_for(client, wrong.id, ("succeeded", "failed"))
    assert failed.status == "failed"
    assert failed.error.code == "invalid_training_file"
    assert 'no "messages" key' in failed.error.message


def test_dated_job_delete(emu: Emulator) -> None:
    client = emu.dated(account="deleting")
    job = client.fine_tuning.jobs.create(training_file=upload(client, TRAIN).id, model="tiny-test")
    with pytest.raises(openai.BadRequestError):
        client.delete(f"/fine_tuning/jobs/{job.id}", cast_to=type(None))
    client.fine_tuning.jobs.cancel(job.id)
    client.delete(f"/fine_tuning/jobs/{job.id}", cast_to=type(None))
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve(job.id)


# ---------------------------------------------------------------- deployments and chat


def test_deployments_serialize_writes_like_azure(emu: Emulator) -> None:
    with emu.http() as http:
        base = f"{emu.arm('writes')}/deployments"
        body = {
            "sku": {"name": "GlobalStandard", "capacity": 2},
            "properties": {"model": {"format": "OpenAI", "name": "gpt-4o-mini", "version": "2024-07-18"}},
        }
        first = http.put(f"{base}/one?api-version=2024-10-01", json=body)
        assert first.status_code == 201
        assert first.json()["properties"]["provisioningState"] == "Creating"
        second = http.put(f"{base}/two?api-version=2024-10-01", json=body)
        assert second.status_code == 409
        assert second.json() == {
            "error": {
                "code": "RequestConflict",
                "message": (
                    f"Another operation is being performed on the parent resource '{emu.arm('writes')}'. "
                    "Please try again later."
                ),
            }
        }
        time.sleep(0.6)
        got = http.get(f"{base}/one?api-version=2024-10-01").json()
        assert got["properties"]["provisioningState"] == "Succeeded"
        assert got["properties"]["rateLimits"] == [
            {"key": "request", "renewalPeriod": 10, "count": 2},
            {"key": "token", "renewalPeriod": 60, "count": 2000},
        ]
        assert http.put(f"{base}/two?api-version=2024-10-01", json=body).status_code == 201
        listed = http.get(f"{base}?api-version=2024-10-01").json()["value"]
        assert [d["name"] for d in listed] == ["one", "two"]
        time.sleep(0.6)
        assert http.delete(f"{base}/one?api-version=2024-10-01").status_code == 200
        assert http.get(f"{base}/one?api-version=2024-10-01").status_code == 404
        assert http.get(f"{base}?api-version=2024-10-01").status_code == 200
        missing = http.get(f"{base}/one")
        assert missing.status_code == 400
        assert missing.json()["error"]["code"] == "MissingApiVersionParameter"


def test_chat_on_base_and_fine_tuned_deployments(emu: Emulator) -> None:
    client = emu.dated(account="chat")
    job = client.fine_tuning.jobs.create(
        training_file=upload(client, TRAIN).id,
        model="gpt-4o-mini-2024-07-18",
        hyperparameters={"n_epochs": 4},
    )
    tuned = wait_for(client, job.id, ("succeeded", "failed")).fine_tuned_model
    assert tuned
    deploy(emu, "base", "gpt-4o-mini", version="2024-07-18", account="chat")
    deploy(emu, "tuned", tuned, account="chat")
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "How long is the return window?"}
    ]
    v1 = emu.v1(account="chat")
    a = client.chat.completions.create(model="tuned", messages=messages, temperature=0, max_tokens=12)
    b = v1.chat.completions.create(model="tuned", messages=messages, temperature=0, max_tokens=12)
    assert a.choices[0].message.content == b.choices[0].message.content  # greedy is deterministic
    assert a.usage is not None
    assert b.usage is not None
    assert a.usage.completion_tokens <= 12
    assert a.usage.total_tokens == a.usage.prompt_tokens + a.usage.completion_tokens
    assert a.model == tuned
    base = client.chat.completions.create(model="base", messages=messages, temperature=0, max_tokens=12)
    assert base.choices[0].message.content != a.choices[0].message.content  # training changed the model

    long = client.chat.completions.create(
        model="tuned", messages=messages, temperature=0, max_completion_tokens=1
    )
    assert long.choices[0].finish_reason == "length"  # the trained answer is longer than one token
    assert long.usage is not None
    assert long.usage.completion_tokens == 1
    seeded = [
        v1.chat.completions.create(model="tuned", messages=messages, temperature=1.0, seed=11, max_tokens=10)
        .choices[0]
        .message.content
        for _ in range(2)
    ]
    assert seeded[0] == seeded[1]

    stream = v1.chat.completions.create(
        model="tuned",
        messages=messages,
        temperature=0,
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == b.choices[0].message.content
    final = chunks[-1].usage
    assert final is not None
    assert final.completion_tokens == b.usage.completion_tokens

    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="nope", messages=messages)
    assert info.value.code == "DeploymentNotFound"


def test_capacity_sets_rate_limits_with_retry_after(emu: Emulator) -> None:
    deploy(emu, "tiny", "tiny-test", account="limits", capacity=1)
    client = emu.v1(account="limits", max_retries=0)
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
    client.chat.completions.create(
        model="tiny", messages=messages, max_tokens=5
    )  # capacity 1: 1 request / 10 s
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="tiny", messages=messages, max_tokens=5)
    retry_after = int(info.value.response.headers["retry-after"])
    assert 1 <= retry_after <= 10
    assert "Please retry after" in info.value.message
    patient = emu.v1(account="limits", max_retries=3)
    assert patient.chat.completions.create(model="tiny", messages=messages, max_tokens=5).choices


def test_cross_account_deployment_with_model_source(emu: Emulator) -> None:
    trainer = emu.dated(account="trainer")
    job = trainer.fine_tuning.jobs.create(
        training_file=upload(trainer, TRAIN).id,
        model="gpt-4o-mini-2024-07-18",
        hyperparameters={"n_epochs": 1},
    )
    tuned = wait_for(trainer, job.id, ("succeeded", "failed")).fine_tuned_model
    with emu.http() as http:
        url = f"{emu.arm('serving')}/deployments/bot?api-version=2024-10-01"
        body = {
            "sku": {"name": "GlobalStandard", "capacity": 5},
            "properties": {"model": {"format": "OpenAI", "name": tuned, "version": "1"}},
        }
        refused = http.put(url, json=body)
        assert refused.status_code == 400
        assert (
            "set properties.model.source to the account that trained it ('trainer')"
            in refused.json()["error"]["message"]
        )
    deploy(emu, "bot", tuned, account="serving", source=emu.arm("trainer"))
    reply = emu.v1(account="serving").chat.completions.create(
        model="bot", messages=[{"role": "user", "content": "Hello"}], max_tokens=5, temperature=0
    )
    assert reply.model == tuned


def test_fault_injection_by_admin_endpoint(emu: Emulator) -> None:
    with emu.http() as http:
        assert (
            http.put(
                "/admin/faults",
                json={"error_rate": 1.0, "error_codes": [503], "path_pattern": "/openai/v1/models"},
            ).status_code
            == 200
        )
        try:
            with pytest.raises(openai.InternalServerError) as info:
                emu.v1(max_retries=0).models.list()
            assert info.value.status_code == 503
            assert emu.dated().models.list().data  # other paths are untouched
            http.put("/admin/faults", json={"drop_rate": 1.0, "path_pattern": "/openai/v1/models"})
            with pytest.raises(openai.APIConnectionError):
                emu.v1(max_retries=0).models.list()
            http.put("/admin/faults", json={"latency_ms": 400, "path_pattern": "/openai/v1/models"})
            started = time.monotonic()
            emu.v1().models.list()
            assert time.monotonic() - started >= 0.4
        finally:
            assert http.put("/admin/faults", json={}).json()["error_rate"] == 0.0
        assert http.get("/admin/faults").json()["latency_ms"] == 0


def test_injected_training_failure_at_a_step(tmp_path: Path, model_cache: Path) -> None:
    server = start(tmp_path / "emu", model_cache, "--fault-fail-job-at-step", "3")
    try:
        client = server.v1()
        job = client.fine_tuning.jobs.create(training_file=upload(client, TRAIN).id, model="tiny-test")
        failed = wait_for(client, job.id, ("failed", "succeeded"))
        assert failed.status == "failed"
        assert failed.error.message == "injected failure at step 3"
        steps = [
            step_of(e) for e in client.fine_tuning.jobs.list_events(job.id, limit=100) if e.type == "metrics"
        ]
        assert sorted(steps) == [1, 2]
    finally:
        assert server.stop() == 0


def test_restart_keeps_state_and_resumes_training(tmp_path: Path, model_cache: Path) -> None:
    from tests.emulator_process import restart

    server = start(tmp_path / "emu", model_cache)
    try:
        client = server.dated()
        f = upload(client, TRAIN)
        finished = client.fine_tuning.jobs.create(
            training_file=f.id, model="tiny-test", hyperparameters={"n_epochs": 1}
        )
        tuned = wait_for(client, finished.id, ("succeeded",)).fine_tuned_model
        deploy(server, "kept", tuned)
        long = client.fine_tuning.jobs.create(
            training_file=f.id, model="tiny-test", hyperparameters={"n_epochs": 10}
        )
        wait_for(client, long.id, ("running",))
        while not any(e.type == "metrics" for e in client.fine_tuning.jobs.list_events(long.id)):
            time.sleep(0.2)
        server = restart(server)  # SIGTERM: the running job saves its state
        client = server.dated()
        assert client.files.retrieve(f.id).status == "processed"
        assert client.fine_tuning.jobs.retrieve(finished.id).fine_tuned_model == tuned
        with server.http() as http:
            kept = http.get(f"{server.arm()}/deployments/kept?api-version=2024-10-01")
        assert kept.status_code == 200
        done = wait_for(client, long.id, ("succeeded", "failed"))
        assert done.status == "succeeded", done.error
        messages = [e.message for e in client.fine_tuning.jobs.list_events(long.id, limit=1000)]
        assert any("resumes on restart" in m for m in messages)
        assert "Job resumed." in messages
        steps = sorted(
            step_of(e)
            for e in client.fine_tuning.jobs.list_events(long.id, limit=1000)
            if e.type == "metrics"
        )
        assert steps == list(range(1, len(steps) + 1))
    finally:
        assert server.stop() == 0


def test_killed_emulator_fails_the_job_honestly(tmp_path: Path, model_cache: Path) -> None:
    import signal

    from tests.emulator_process import start as start_again

    server = start(tmp_path / "emu", model_cache)
    client = server.v1()
    job = client.fine_tuning.jobs.create(
        training_file=upload(client, TRAIN).id, model="tiny-test", hyperparameters={"n_epochs": 10}
    )
    wait_for(client, job.id, ("running",))
    server.stop(signal.SIGKILL)
    port = int(server.url.rsplit(":", 1)[1])
    time.sleep(1)
    again = start_again(server.data_dir, model_cache, port=port)
    try:
        failed = wait_for(again.v1(), job.id, ("failed", "succeeded"))
        assert failed.status == "failed"
        assert "The emulator stopped while this job was running" in failed.error.message
        assert "create the job again" in failed.error.message
    finally:
        assert again.stop() == 0


def test_dpo_example_file_is_accepted(emu: Emulator, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "dpo.jsonl", [line_of(good_dpo(i)) for i in range(12)])
    f = upload(emu.v1(), path)
    assert f.status == "processed"
    assert json.loads(emu.v1().files.content(f.id).text.splitlines()[0])["input"]


def test_selftest_trains_deploys_and_queries_the_local_model(emu: Emulator) -> None:
    import subprocess
    import sys

    env = {**os.environ, "FTOPS_EMULATOR_KEY": KEY}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ftops",
            "emulator",
            "selftest",
            "--env",
            "local",
            "--endpoint",
            emu.url,
            "--prompts",
            "2",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )
    # The emulator here trains the tiny stand-in, which knows no language: whether two prompts'
    # answers moved toward the training answers is chance, so either verdict may come, each with
    # its own exit code (the verdict itself is tested without training in test_cli.py).
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert "Traceback" not in proc.stdout + proc.stderr
    if proc.returncode == 0:
        assert lines[-1].startswith("selftest: ok: gpt-4.1-mini-2025-04-14.ft-"), lines[-1]
        assert "its answers are closer to the training answers on" in lines[-1]
    else:
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert any("but answers did not move toward the training answers" in line for line in lines), lines
    with emu.http() as http:
        deployments = http.get(f"{emu.arm('local-dev')}/deployments?api-version=2024-10-01").json()["value"]
    assert sorted(d["name"] for d in deployments) == ["support-bot", "support-bot-base"]


def test_selftest_without_an_emulator_says_how_to_start_one() -> None:
    import subprocess
    import sys

    env = {**os.environ, "FTOPS_EMULATOR_KEY": KEY}
    proc = subprocess.run(
        [sys.executable, "-m", "ftops", "emulator", "selftest", "--endpoint", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr == "error: no emulator answers at http://127.0.0.1:9; start one with `ftops emulator`\n"
    )


def test_overlap_f1() -> None:
    from ftops.emulator.selftest import overlap_f1

    assert overlap_f1(
        "Returns are free for members.", "Returns are free for Trail Club members."
    ) == pytest.approx(2 * 1.0 * (5 / 7) / (1.0 + 5 / 7))
    assert overlap_f1("", "anything") == 0.0


def test_bad_faults_and_oversized_chunked_bodies_get_clear_errors(emu: Emulator) -> None:
    with emu.http() as http:
        empty = http.put("/admin/faults", json={"error_rate": 1.0, "error_codes": []})
        assert empty.status_code == 400
        assert "error_codes" in empty.json()["error"]["message"]
        regex = http.put("/admin/faults", json={"path_pattern": "(["})
        assert regex.status_code == 400
        assert "path_pattern is not a valid regular expression" in regex.json()["error"]["message"]

        def chunks() -> Iterator[bytes]:
            for _ in range(17):
                yield b"x" * (1024 * 1024)

        response = http.post(
            "/openai/v1/fine_tuning/jobs", content=chunks(), headers={"content-type": "application/json"}
        )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "RequestEntityTooLarge"
