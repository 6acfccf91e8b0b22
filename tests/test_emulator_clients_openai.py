"""Microsoft's fine-tuning script, as its notebooks run it with the `openai` SDK, on both surfaces
(`AzureOpenAI` with a dated api-version, `OpenAI` on `/openai/v1/`), with only the endpoint and key
pointed at the emulator: upload, submit SFT (undated model, `method` naming the type and the
hyperparameters at the top level, `trainingType` in extra_body), monitor, events, checkpoints,
download results.csv, deploy over ARM with `requests` as the notebook does, chat and responses
calls on the deployment, cleanup."""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import requests
from openai import AzureOpenAI, OpenAI

from tests.emulator_process import KEY, Emulator, start
from tests.test_emulator_api import TRAIN, VALID


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    server = start(tmp_path_factory.mktemp("emulator"), tmp_path_factory.mktemp("models"))
    yield server
    assert server.stop() == 0


@pytest.fixture
def env(emu: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", emu.url)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "training_set.jsonl").write_bytes(TRAIN.read_bytes())
    (tmp_path / "validation_set.jsonl").write_bytes(VALID.read_bytes())
    return tmp_path


def client_for(surface: str) -> AzureOpenAI | OpenAI:
    if surface == "dated":
        return AzureOpenAI(
            azure_endpoint=os.getenv("AZURE_OPENAI_ENDPOINT", ""),
            api_key=os.getenv("AZURE_OPENAI_API_KEY"),
            api_version="2025-02-01-preview",
        )
    return OpenAI(
        base_url=f"{os.getenv('AZURE_OPENAI_ENDPOINT')}/openai/v1/", api_key=os.getenv("AZURE_OPENAI_API_KEY")
    )


@pytest.mark.parametrize("surface", ["dated", "v1"])
def test_microsofts_fine_tuning_script_runs_unmodified(env: Path, emu: Emulator, surface: str) -> None:
    client = client_for(surface)

    # Upload the training and validation dataset files.
    training_response = client.files.create(file=open("training_set.jsonl", "rb"), purpose="fine-tune")  # noqa: SIM115
    training_file_id = training_response.id
    validation_response = client.files.create(file=open("validation_set.jsonl", "rb"), purpose="fine-tune")  # noqa: SIM115
    validation_file_id = validation_response.id
    client.files.wait_for_processing(training_file_id, poll_interval=0.2)
    client.files.wait_for_processing(validation_file_id, poll_interval=0.2)

    # Submit: the default SFT path (method names the type, hyperparameters at the top level).
    response = client.fine_tuning.jobs.create(
        training_file=training_file_id,
        validation_file=validation_file_id,
        model="gpt-4.1-mini",
        seed=105,
        suffix="contoso",
        method={"type": "supervised"},
        hyperparameters={"n_epochs": 3, "batch_size": 16},
        extra_body={"trainingType": "GlobalStandard"},
    )
    job_id = response.id
    assert response.model == "gpt-4.1-mini-2025-04-14"

    # Track training status.
    start_time = time.time()
    status = response.status
    while status not in ["succeeded", "failed", "cancelled"]:
        time.sleep(0.5)
        response = client.fine_tuning.jobs.retrieve(job_id)
        status = response.status
        assert time.time() - start_time < 300, status
    assert status == "succeeded", response.error
    fine_tuned_model = response.fine_tuned_model
    assert fine_tuned_model == f"gpt-4.1-mini-2025-04-14.ft-{job_id.removeprefix('ftjob-')}-contoso"

    events = client.fine_tuning.jobs.list_events(fine_tuning_job_id=job_id, limit=10)
    assert events.data[0].message == "Job succeeded."
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job_id).data
    assert [c.step_number for c in checkpoints] == [15, 10, 5]
    best = min(checkpoints, key=lambda c: c.metrics.full_valid_loss or 1e9)
    assert best.fine_tuned_model_checkpoint.startswith(fine_tuned_model)

    # Download results.csv and read it as the notebook does.
    assert response.result_files is not None
    result_file_id = response.result_files[0]
    client.files.content(result_file_id).write_to_file("results.csv")
    with open("results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 15
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])

    # Deploy with the REST call of the notebook (management endpoint -> the emulator's ARM).
    token = os.getenv("AZURE_OPENAI_API_KEY")  # DefaultAzureCredential's token against Azure
    deployment_name = f"contoso-{surface}"
    request_url = (
        f"{os.getenv('AZURE_OPENAI_ENDPOINT')}/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/"
        f"rg-local/providers/Microsoft.CognitiveServices/accounts/local/deployments/{deployment_name}"
    )
    deploy_data = {
        "sku": {"name": "standard", "capacity": 50},
        "properties": {"model": {"format": "OpenAI", "name": fine_tuned_model, "version": "1"}},
    }
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    r = requests.put(
        request_url, params={"api-version": "2024-10-01"}, headers=headers, data=json.dumps(deploy_data)
    )
    assert r.status_code == 201, r.text
    while r.json()["properties"]["provisioningState"] != "Succeeded":
        time.sleep(0.2)
        r = requests.get(request_url, params={"api-version": "2024-10-01"}, headers=headers)

    chat = client.chat.completions.create(
        model=deployment_name,
        messages=[
            {"role": "system", "content": "You are Contoso Outdoor's support assistant."},
            {"role": "user", "content": "How long is the return window?"},
        ],
    )
    assert chat.choices[0].message.content is not None
    assert chat.model == fine_tuned_model
    answer = client.responses.create(model=deployment_name, input="How long is the return window?")
    assert answer.output_text is not None
    assert answer.status in ("completed", "incomplete")

    # Cleanup.
    deleted = requests.delete(request_url, params={"api-version": "2024-10-01"}, headers=headers)
    assert deleted.status_code == 200, deleted.text
    client.files.delete(training_file_id)
    client.files.delete(validation_file_id)
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(training_file_id)
