"""Foundry's notebooks, unmodified but for the endpoint: `AIProjectClient(...).get_openai_client()`
calls the project endpoint's `/openai/v1/...`, and a deployment is tried with the Responses API
(`client.responses.create(model=deployment, input=...)`), streamed, read back and deleted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from azure.ai.projects import AIProjectClient
from azure.core.credentials import AccessToken
from openai.types.responses import Response

from tests.emulator_process import KEY, Emulator, start
from tests.test_emulator_api import deploy


class EmulatorKeyCredential:
    """A TokenCredential whose token is the emulator's key (it takes `Authorization: Bearer <key>`
    as Azure takes an Entra token); DefaultAzureCredential plays this part against Azure."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(KEY, 4_102_444_800)

    def get_token_info(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessTokenInfo

        return AccessTokenInfo(KEY, 4_102_444_800)


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    server = start(tmp_path_factory.mktemp("emulator"), tmp_path_factory.mktemp("models"))
    deploy(server, "gpt-4.1-mini", "gpt-4.1-mini", version="2025-04-14", capacity=500)
    yield server
    assert server.stop() == 0


def project_client(emu: Emulator) -> openai.OpenAI:
    project = AIProjectClient(
        endpoint=f"{emu.url}/api/projects/contoso-proj", credential=EmulatorKeyCredential()
    )
    client = project.get_openai_client()
    assert str(client.base_url) == f"{emu.url}/api/projects/contoso-proj/openai/v1/"
    return client


def test_responses_through_the_project_endpoint(emu: Emulator) -> None:
    client = project_client(emu)
    response = client.responses.create(
        model="gpt-4.1-mini", input="What is the return window?", max_output_tokens=24, temperature=0
    )
    assert isinstance(response, Response)
    assert response.id.startswith("resp_")
    assert response.status in ("completed", "incomplete")
    assert response.output[0].type == "message"
    assert response.output_text == response.output[0].content[0].text  # type: ignore[union-attr]
    assert response.usage is not None
    assert response.usage.input_tokens > 0
    assert 0 < response.usage.output_tokens <= 24
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens

    again = client.responses.retrieve(response.id)
    assert again.output_text == response.output_text
    assert again.model_dump() == response.model_dump()
    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.retrieve(response.id)
    assert info.value.code == "not_found"


def test_responses_with_instructions_messages_and_a_previous_response(emu: Emulator) -> None:
    client = project_client(emu)
    first = client.responses.create(
        model="gpt-4.1-mini",
        instructions="You are Contoso Outdoor's support assistant.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Do gift cards expire?"}]}],
        max_output_tokens=16,
        temperature=0,
    )
    assert first.instructions == "You are Contoso Outdoor's support assistant."
    second = client.responses.create(
        model="gpt-4.1-mini", previous_response_id=first.id, input="And store pickup?", max_output_tokens=16
    )
    assert second.previous_response_id == first.id
    assert second.usage is not None
    assert first.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens  # the earlier turns are part of the input
    items = client.responses.input_items.list(second.id)
    texts = [c.text for item in items.data for c in item.content]  # type: ignore[union-attr]
    assert "Do gift cards expire?" in texts
    assert "And store pickup?" in texts


def test_streamed_responses_events(emu: Emulator) -> None:
    client = project_client(emu)
    events = list(
        client.responses.create(model="gpt-4.1-mini", input="Hello!", max_output_tokens=20, stream=True)
    )
    types = [e.type for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:-1] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert types[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == deltas
    assert client.responses.retrieve(final.id).output_text == deltas


def test_chat_and_errors_through_the_project_endpoint(emu: Emulator) -> None:
    client = project_client(emu)
    chat = client.chat.completions.create(
        model="gpt-4.1-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    assert chat.choices[0].message.role == "assistant"
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model="not-deployed", input="hi")
    assert info.value.code == "DeploymentNotFound"
    # The plain account endpoint serves the same responses (v1 and a dated preview version).
    made = client.responses.create(model="gpt-4.1-mini", input="hi", max_output_tokens=16)
    assert emu.v1().responses.retrieve(made.id).id == made.id
    dated = openai.AzureOpenAI(azure_endpoint=emu.url, api_key=KEY, api_version="2025-03-01-preview")
    assert dated.responses.retrieve(made.id).id == made.id
