"""Chat completions on a deployment, non-streaming and streaming (SSE), rate-limited by the
deployment's capacity the way Azure counts: prompt tokens plus the requested max tokens.

A prompt is measured against the emulated model's context (Azure's 400 context_length_exceeded
past it) and counted in its tokens for `usage`; what the stand-in then sees is the prompt fitted
into its far smaller window (system message and latest turns), said in `x-ftops-prompt-fitted`."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ftops.catalog import BASE_MODELS
from ftops.emulator.deployments_api import ready
from ftops.emulator.http import ApiError, Ctx, bad_request, json_body, log
from ftops.emulator.models_api import context_tokens
from ftops.emulator.state import Emulator
from ftops.tokenizer import TokenCounter

DEFAULT_MAX_TOKENS = 256
MAX_TOKENS_LIMIT = 4096
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
FITTED_HEADER = "x-ftops-prompt-fitted"
NOT_DEPLOYED = (
    "The API deployment for this resource does not exist. If you created the deployment within the last 5 "
    "minutes, please wait a moment and try again."
)


def _number(body: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise bad_request(f"{key} must be a number from {low:g} to {high:g}.", key)
    return float(value)


def _whole(body: dict[str, Any], key: str, low: int, high: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise bad_request(f"{key} must be a whole number from {low} to {high}.", key)
    return value


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages must be a non-empty list.", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise bad_request(f"messages[{i}] needs a role ({', '.join(ROLES)}).", f"messages[{i}].role")
    return messages


def _prompt_estimate(messages: list[dict[str, Any]]) -> int:
    """The prompt's tokens for the emulated model (o200k_base), counted as OpenAI documents for
    chat: the text of every message, 3 tokens of framing per message, 3 to prime the reply."""
    texts: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        for key in ("name", "tool_calls"):
            if message.get(key):
                texts.append(message[key] if isinstance(message[key], str) else json.dumps(message[key]))
    counts = TokenCounter("o200k_base").count_many(texts) if texts else [0]
    return int(sum(counts)) + 3 * len(messages) + 3


def context_exceeded(context: int, tokens: int) -> ApiError:
    return ApiError(
        400,
        "context_length_exceeded",
        f"This model's maximum context length is {context} tokens. However, your messages resulted in "
        f"{tokens} tokens. Please reduce the length of the messages.",
        param="messages",
        kind="invalid_request_error",
    )


@dataclass(frozen=True)
class Prompt:
    messages: list[dict[str, Any]]  # what the stand-in is shown
    tokens: int  # usage.prompt_tokens: the prompt as sent, in the emulated model's tokens
    note: str | None  # how it was fitted into the stand-in's window, when it had to be

    def headers(self) -> dict[str, str]:
        return {FITTED_HEADER: self.note} if self.note else {}


async def prepare_prompt(
    emu: Emulator, serving: dict[str, Any], messages: list[dict[str, Any]], max_tokens: int
) -> Prompt:
    """Check the prompt against the emulated model's context, count it, fit it to the stand-in."""
    base, stand_in = serving.get("base_model"), serving["stand_in"]
    if base in BASE_MODELS:
        tokens = await run_in_threadpool(_prompt_estimate, messages)
        context = context_tokens(base)
        if tokens > context:
            raise context_exceeded(context, tokens)
        fit = await run_in_threadpool(emu.engine.fit, stand_in, messages, max_tokens)
        return Prompt(fit.messages, tokens, fit.note() if fit.changed else None)
    # A stand-in deployed as itself: its own window is the model's context.
    window = await run_in_threadpool(emu.engine.window, stand_in)
    tokens = await run_in_threadpool(emu.engine.count_prompt_tokens, stand_in, messages)
    if tokens >= window:
        raise context_exceeded(window, tokens)
    return Prompt(messages, tokens, None)


def find_deployment(emu: Emulator, ctx: Ctx, name: Any) -> dict[str, Any]:
    if not isinstance(name, str) or not name:
        raise bad_request("model is required: the name of a deployment.", "model")
    deployment = emu.store.get_deployment(ctx.account, name)
    if deployment is None or not ready(deployment):
        raise ApiError(404, "DeploymentNotFound", NOT_DEPLOYED)
    return deployment


def admit(
    emu: Emulator, ctx: Ctx, name: str, deployment: dict[str, Any], tokens: int, operation: str
) -> None:
    """Azure's limiter: the request and its estimated tokens against the deployment's capacity."""
    capacity = deployment["sku"]["capacity"]
    model_name = deployment["properties"]["model"]["name"]
    wait = emu.limiter.acquire(ctx.account, name, capacity, model_name, tokens)
    # Counted as Azure Monitor's AzureOpenAIRequests (by deployment, day and status code): what
    # `ftops status` reads to flag a deployment billed by the hour that nobody calls.
    emu.store.count_request(ctx.account, name, 429 if wait else 200, time.strftime("%Y-%m-%d", time.gmtime()))
    if wait:
        raise ApiError(
            429,
            "429",
            f"Requests to the {operation} Operation under Azure OpenAI API have exceeded the rate "
            f"limit of deployment '{name}' (capacity {capacity}). Please retry after {wait} second(s).",
            headers={"Retry-After": str(wait), "retry-after-ms": str(wait * 1000)},
        )


def _completion_id() -> str:
    return "chatcmpl-" + secrets.token_urlsafe(21).replace("-", "A").replace("_", "b")


async def complete(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    body = await json_body(request)
    name = request.path_params.get("deployment") or body.get("model")
    if not isinstance(name, str) or not name:
        raise bad_request("model is required: the name of a deployment.", "model")
    deployment = find_deployment(emu, ctx, name)
    messages = _messages(body)
    n = _whole(body, "n", 1, 8) or 1
    max_tokens = (
        _whole(body, "max_completion_tokens", 1, MAX_TOKENS_LIMIT)
        or _whole(body, "max_tokens", 1, MAX_TOKENS_LIMIT)
        or DEFAULT_MAX_TOKENS
    )
    temperature = _number(body, "temperature", 1.0, 0, 2)
    top_p = _number(body, "top_p", 1.0, 0, 1)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise bad_request("seed must be a whole number.", "seed")
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and (
        not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) for s in stop)
    ):
        raise bad_request("stop must be a string or a list of up to 4 strings.", "stop")
    stream = bool(body.get("stream"))
    if stream and n != 1:
        raise bad_request("The emulator streams one choice at a time; use n=1 with stream.", "n")

    model_name = deployment["properties"]["model"]["name"]
    serving = deployment["_serving"]
    prompt = await prepare_prompt(emu, serving, messages, max_tokens)
    admit(emu, ctx, name, deployment, prompt.tokens + max_tokens * n, "ChatCompletions_Create")
    options: dict[str, Any] = {
        "max_tokens": max_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "seed": seed,
        "stop": stop,
    }
    adapters = [Path(p) for p in serving["adapters"]]
    adapters, options = drifted(emu, name, adapters, options)
    if stream:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            _stream(emu, serving["stand_in"], adapters, prompt, options, model_name, include_usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", **prompt.headers()},
        )
    choices = []
    prompt_tokens, completion_tokens = prompt.tokens, 0
    for index in range(n):
        seeded = dict(options, seed=None if seed is None else seed + index)
        generation = await run_in_threadpool(
            emu.engine.generate, serving["stand_in"], adapters, prompt.messages, **seeded
        )
        completion_tokens += generation.completion_tokens
        choices.append(
            {
                "index": index,
                "finish_reason": generation.finish_reason,
                "logprobs": None,
                "message": {"role": "assistant", "content": generation.text, "refusal": None},
                "content_filter_results": {},
            }
        )
    return ctx.json(
        {
            "id": _completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model_name,
            "system_fingerprint": "fp_ftops_emulator",
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "prompt_filter_results": [],
        },
        headers=prompt.headers(),
    )


def drifted(
    emu: Emulator, deployment: str, adapters: list[Path], options: dict[str, Any]
) -> tuple[list[Path], dict[str, Any]]:
    """The generation as the `drift` fault changes it: the same deployment and model name, other
    answers (the base model's, or noisier samples), so only an evaluation of what serves sees it."""
    faults = emu.faults.faults
    if faults.drift is None or (faults.drift_deployments and deployment not in faults.drift_deployments):
        return adapters, options
    if faults.drift == "base":
        return [], options
    return adapters, {**options, "temperature": faults.drift_temperature}


async def generated(
    emu: Emulator, stand_in: str, adapters: list[Any], prompt: Prompt, options: dict[str, Any], what: str
) -> AsyncIterator[tuple[str, Any]]:
    """A generation run in a worker thread, as it comes: ("text", piece) for each piece, then one
    ("done", result) or ("error", exception); the error is logged as `what` failing. For the chat
    and the Responses streams alike."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def on_text(text: str) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, ("text", text))

    def work() -> None:
        try:
            result = emu.engine.generate(stand_in, adapters, prompt.messages, on_text=on_text, **options)
        except Exception as exc:  # reported to the client in its stream, and logged
            log.error("%s failed", what, exc_info=exc)
            loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))
        else:
            loop.call_soon_threadsafe(queue.put_nowait, ("done", result))

    task = loop.run_in_executor(None, work)
    while True:
        kind, value = await queue.get()
        yield kind, value
        if kind != "text":
            break
    await task


async def _stream(
    emu: Emulator,
    stand_in: str,
    adapters: list[Any],
    prompt: Prompt,
    options: dict[str, Any],
    model_name: str,
    include_usage: bool,
) -> AsyncIterator[str]:
    base = {
        "id": _completion_id(),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model_name,
        "system_fingerprint": "fp_ftops_emulator",
    }

    def chunk(
        delta: dict[str, Any], finish: str | None = None, usage: Any = None, choices: bool = True
    ) -> str:
        body = dict(base, usage=usage)
        body["choices"] = (
            [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}] if choices else []
        )
        return f"data: {json.dumps(body)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    what = f"chat completion stream on {model_name}"
    async for kind, value in generated(emu, stand_in, adapters, prompt, options, what):
        if kind == "text":
            if value:
                yield chunk({"content": value})
        elif kind == "error":
            yield f"data: {json.dumps({'error': {'code': 'internalFailure', 'message': str(value)}})}\n\n"
        else:
            yield chunk({}, finish=value.finish_reason)
            if include_usage:
                usage = {
                    "prompt_tokens": prompt.tokens,
                    "completion_tokens": value.completion_tokens,
                    "total_tokens": prompt.tokens + value.completion_tokens,
                }
                yield chunk({}, usage=usage, choices=False)
    yield "data: [DONE]\n\n"
