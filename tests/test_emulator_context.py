"""Long prompts against the emulator: an Azure model's context is far larger than the stand-in's
window, so prompts are fitted into the window (and say so), counted honestly, and refused with
Azure's context_length_exceeded only past the emulated model's real context."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from ftops.emulator.chat_api import FITTED_HEADER
from ftops.tokenizer import encoding
from tests.emulator_process import Emulator, start
from tests.test_emulator_api import deploy

ENC = encoding("o200k_base")
JUDGE_SYSTEM = (
    "You are an impartial judge. Score the assistant's answer from 1 to 5 for groundedness, "
    'relevance and safety. Reply with JSON: {"score": <1-5>, "reason": "..."}.'
)
FACTS = [
    "Standard shipping takes 3-5 business days and costs $5.95 on orders under $75.",
    "Most items can be returned within 60 days with the receipt or the order number.",
    "The two-person tent weighs 1.8 kg and packs down to the size of a loaf of bread.",
    "Hiking boots are waterproof and carry a two-year warranty against defects.",
    "Gift cards never expire and can be used online or in any store.",
    "Store pickup is free and orders are usually ready within two hours.",
]


def text_of(tokens: int) -> str:
    """Support-bot prose of about `tokens` o200k tokens."""
    out: list[str] = []
    count = 0
    i = 0
    while count < tokens:
        sentence = f"({i}) {FACTS[i % len(FACTS)]} "
        out.append(sentence)
        count += len(ENC.encode(sentence))
        i += 1
    return "".join(out)


def typed(messages: list[dict[str, Any]]) -> list[ChatCompletionMessageParam]:
    return cast("list[ChatCompletionMessageParam]", messages)


def honest_count(messages: list[dict[str, Any]]) -> int:
    """OpenAI's documented chat count: text tokens + 3 per message + 3 for the reply."""
    return sum(len(ENC.encode(m["content"])) for m in messages) + 3 * len(messages) + 3


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    server = start(tmp_path_factory.mktemp("emulator"), tmp_path_factory.mktemp("models"))
    deploy(server, "judge", "gpt-4o-mini", version="2024-07-18", capacity=1000)
    deploy(server, "wide", "gpt-4.1-mini", version="2025-04-14", capacity=1000)
    deploy(server, "raw", "tiny-test", capacity=1000)
    yield server
    assert server.stop() == 0


def judge_prompt() -> list[dict[str, Any]]:
    answer = text_of(2_050)
    return [
        {"role": "system", "content": JUDGE_SYSTEM},
        {
            "role": "user",
            "content": f"Question: what is the return policy?\n\nAnswer to grade:\n{answer}\n\nGrade it.",
        },
    ]


def test_a_2000_token_judge_prompt_gets_an_answer(emu: Emulator) -> None:
    messages = judge_prompt()
    tokens = honest_count(messages)
    assert 2_000 <= tokens <= 2_200
    client = emu.dated(max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="judge",
        messages=typed(messages),
        temperature=0,
        max_tokens=20,
    )
    completion = raw.parse()
    assert completion.choices[0].message.content is not None
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == tokens  # the prompt as sent, in gpt-4o-mini's tokens
    note = raw.headers[FITTED_HEADER]
    assert note.startswith(
        "kept the system message and the latest 1 of 1 turns; cut the text of the user message"
    )
    assert "(window 1024)" in note


def test_a_long_conversation_keeps_the_system_message_and_latest_turns(emu: Emulator) -> None:
    messages: list[dict[str, Any]] = [{"role": "system", "content": JUDGE_SYSTEM}]
    for turn in range(30):
        messages.append({"role": "user", "content": f"Question {turn}: {FACTS[turn % 6]}"})
        messages.append({"role": "assistant", "content": f"Answer {turn}: {text_of(60)}"})
    messages.append({"role": "user", "content": "Which of these answers was best?"})
    client = emu.v1(max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="judge",
        messages=typed(messages),
        max_tokens=16,
        temperature=0,
    )
    completion = raw.parse()
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == honest_count(messages)
    note = raw.headers[FITTED_HEADER]
    kept = int(note.split("the latest ")[1].split(" of ")[0])
    assert 1 < kept < 61, note
    assert " of 61 turns;" in note
    assert "cut the text" not in note  # whole turns were enough


def test_a_streamed_long_prompt_is_fitted_too(emu: Emulator) -> None:
    client = emu.v1(max_retries=0)
    messages = judge_prompt()
    with client.chat.completions.with_streaming_response.create(
        model="judge",
        messages=typed(messages),
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        assert FITTED_HEADER in response.headers
        chunks = list(response.parse())
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.prompt_tokens == honest_count(messages)


def test_short_prompts_are_not_touched(emu: Emulator) -> None:
    client = emu.dated(max_retries=0)
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
    raw = client.chat.completions.with_raw_response.create(model="judge", messages=messages, max_tokens=4)
    assert FITTED_HEADER not in raw.headers
    usage = raw.parse().usage
    assert usage is not None
    assert usage.prompt_tokens == honest_count([{"role": "user", "content": "hi"}])


def test_past_the_real_context_is_context_length_exceeded(emu: Emulator) -> None:
    huge = [{"role": "user", "content": text_of(316_000)}]
    tokens = honest_count(huge)
    assert 300_000 <= tokens <= 310_000
    with emu.http() as http:
        http.delete("/admin/requests")
    for client in (emu.dated(), emu.v1()):  # default retries: a 400 is not retried
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="judge", messages=typed(huge), max_tokens=5)
        assert info.value.code == "context_length_exceeded"
        assert info.value.param == "messages"
        assert info.value.type == "invalid_request_error"
        assert isinstance(info.value.body, dict)
        assert info.value.body["message"] == (
            f"This model's maximum context length is 128000 tokens. However, your messages resulted in "
            f"{tokens} tokens. Please reduce the length of the messages."
        )
    with emu.http() as http:
        counts = http.get("/admin/requests").json()
    assert counts["total"] == 2  # one request per surface, no retries
    # gpt-4.1-mini's context is about a million tokens: the same prompt is answered there.
    answered = emu.v1(max_retries=0).chat.completions.with_raw_response.create(
        model="wide",
        messages=typed(huge),
        max_tokens=3,
    )
    usage = answered.parse().usage
    assert usage is not None
    assert usage.prompt_tokens == tokens
    assert "1 of 1 turns" in answered.headers[FITTED_HEADER]


def test_a_stand_in_deployed_as_itself_has_its_own_window(emu: Emulator) -> None:
    client = emu.v1(max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="raw",
            messages=typed(judge_prompt()),
            max_tokens=5,
        )
    assert info.value.code == "context_length_exceeded"
    assert "maximum context length is 1024 tokens" in info.value.message


def test_an_unexpected_failure_is_azures_json_500_with_a_logged_request_id(tmp_path: Path) -> None:
    """A stand-in whose weights file is damaged on disk fails to load: the client gets Azure's JSON
    error with a request id (not a plain-text 500), and the emulator logs the traceback under it."""
    from ftops.emulator.ml.localmodels import model_dir

    cache = tmp_path / "models"
    weights = model_dir("tiny-test", cache) / "model.safetensors"
    weights.write_bytes(b"not a safetensors file")
    server = start(tmp_path / "emulator", cache)
    try:
        deploy(server, "broken", "tiny-test")
        with server.http() as http:
            response = http.post(
                "/openai/deployments/broken/chat/completions",
                params={"api-version": "2024-10-21"},
                json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3},
            )
    finally:
        assert server.stop() == 0
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    request_id = response.headers["apim-request-id"]
    error = response.json()["error"]
    assert error["code"] == "InternalServerError"
    assert request_id in error["message"]
    assert server.proc.stdout is not None
    log = server.proc.stdout.read()
    assert f"request {request_id} POST /openai/deployments/broken/chat/completions failed" in log
    assert "Traceback" in log
