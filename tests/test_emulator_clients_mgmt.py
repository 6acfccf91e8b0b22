"""Deploying with `azure-mgmt-cognitiveservices`, as Microsoft's fine-tuning notebooks and scripts
do after training: the long-running `begin_create_or_update` for a checkpoint (by its model name
and by its checkpoint id) and for the final model, listing, chatting with each, deleting."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.mgmt.cognitiveservices import CognitiveServicesManagementClient
from azure.mgmt.cognitiveservices.models import Deployment, DeploymentModel, DeploymentProperties, Sku

from tests.emulator_process import KEY, Emulator, start, wait_for
from tests.test_emulator_api import TRAIN, upload
from tests.test_emulator_clients_foundry import EmulatorKeyCredential

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "rg-local"


class BearerOverHttp(SansIOHTTPPolicy):  # type: ignore[type-arg]
    """The credential's token as `Authorization: Bearer`, also over the emulator's plain http
    (azure-core's own bearer policy refuses non-TLS URLs)."""

    def on_request(self, request: PipelineRequest[Any]) -> None:
        token = EmulatorKeyCredential().get_token("https://management.azure.com/.default").token
        request.http_request.headers["Authorization"] = f"Bearer {token}"


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    server = start(tmp_path_factory.mktemp("emulator"), tmp_path_factory.mktemp("models"))
    yield server
    assert server.stop() == 0


@pytest.fixture(scope="module")
def trained(emu: Emulator) -> Any:
    client = emu.dated()
    job = client.fine_tuning.jobs.create(
        training_file=upload(client, TRAIN).id,
        model="gpt-4.1-mini",
        hyperparameters={"n_epochs": 4, "batch_size": 16},
    )
    done = wait_for(client, job.id, ("succeeded", "failed"))
    assert done.status == "succeeded", done.error
    return done


def mgmt(emu: Emulator) -> CognitiveServicesManagementClient:
    return CognitiveServicesManagementClient(
        credential=EmulatorKeyCredential(),
        subscription_id=SUBSCRIPTION,
        base_url=emu.url,
        authentication_policy=BearerOverHttp(),
    )


def deployment(model: str, capacity: int = 50) -> Deployment:
    return Deployment(
        sku=Sku(name="Standard", capacity=capacity),
        properties=DeploymentProperties(model=DeploymentModel(format="OpenAI", name=model, version="1")),
    )


def test_deploy_checkpoints_and_the_final_model_with_begin_create_or_update(
    emu: Emulator, trained: Any
) -> None:
    client = emu.dated()
    checkpoints = client.fine_tuning.jobs.checkpoints.list(trained.id).data
    assert len(checkpoints) == 3  # four epochs trained, the last three kept
    final, previous = checkpoints[0], checkpoints[1]
    assert final.fine_tuned_model_checkpoint == trained.fine_tuned_model  # the final is the model itself
    assert previous.fine_tuned_model_checkpoint.endswith(f":ckpt-step-{previous.step_number}")

    arm = mgmt(emu)
    started = time.monotonic()
    for name, model in (
        ("ft-final", trained.fine_tuned_model),
        ("ft-checkpoint", previous.fine_tuned_model_checkpoint),
        ("ft-by-id", checkpoints[2].id),
    ):
        poller = arm.deployments.begin_create_or_update(RESOURCE_GROUP, "local", name, deployment(model))
        made = poller.result()
        assert made.properties is not None
        assert made.properties.provisioning_state == "Succeeded", name
        assert made.properties.model is not None
        assert made.properties.model.name == model
        assert made.sku is not None
        assert made.sku.capacity == 50
    assert time.monotonic() - started < 25  # Retry-After paces the pollers (their default is 30 s)

    listed = {d.name for d in arm.deployments.list(RESOURCE_GROUP, "local")}
    assert {"ft-final", "ft-checkpoint", "ft-by-id"} <= listed
    got = arm.deployments.get(RESOURCE_GROUP, "local", "ft-final")
    assert got.id is not None
    assert got.id.endswith("/accounts/local/deployments/ft-final")

    prompt: list[Any] = [{"role": "user", "content": "How long is the return window?"}]
    answers = {}
    for name in ("ft-final", "ft-checkpoint", "ft-by-id"):
        reply = client.chat.completions.create(model=name, messages=prompt, temperature=0, max_tokens=12)
        answers[name] = reply.choices[0].message.content
        assert reply.model == arm.deployments.get(RESOURCE_GROUP, "local", name).properties.model.name  # type: ignore[union-attr]
    assert answers["ft-final"] != answers["ft-by-id"]  # an earlier epoch is another model

    # Cleanup as the notebooks end: delete the deployments.
    for name in ("ft-final", "ft-checkpoint", "ft-by-id"):
        for _ in range(50):
            try:
                arm.deployments.begin_delete(RESOURCE_GROUP, "local", name).result()
                break
            except Exception as exc:  # 409 RequestConflict while the account is busy: Azure's too
                if "RequestConflict" not in str(exc):
                    raise
                time.sleep(0.3)
    assert not {d.name for d in arm.deployments.list(RESOURCE_GROUP, "local")} & {"ft-final", "ft-checkpoint"}
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="ft-final", messages=prompt, max_tokens=3)


def test_a_model_that_does_not_exist_is_refused_by_arm(emu: Emulator) -> None:
    from azure.core.exceptions import HttpResponseError

    with pytest.raises(HttpResponseError) as info:
        mgmt(emu).deployments.begin_create_or_update(
            RESOURCE_GROUP, "local", "nope", deployment("gpt-4.1-mini-2025-04-14.ft-" + "0" * 32)
        ).result()
    assert info.value.status_code == 400
    assert info.value.error is not None
    assert info.value.error.code == "DeploymentModelNotSupported"
    assert KEY not in str(info.value)
