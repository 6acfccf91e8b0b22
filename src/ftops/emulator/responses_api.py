"""The Responses API on a deployment: `POST /responses` (string or message input, `instructions`,
`max_output_tokens`, `temperature`, `top_p`, `previous_response_id`, `store`, streaming events),
`GET` and `DELETE /responses/{id}`, in the shapes of the official SDK's `Response` types.

Generation is the chat engine's, on the same prompt handling as chat completions: measured
against the emulated model's context, fitted into the stand-in's window, rate-limited.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ftops.emulator.chat_api import (
    DEFAULT_MAX_TOKENS,
    MAX_TOKENS_LIMIT,
    Prompt,
    _number,
    _whole,
    admit,
    find_deployment,
    generated,
    prepare_prompt,
)
from ftops.emulator.http import ApiError, Ctx, bad_request, json_body
from ftops.emulator.ml.chatdata import content_text
from ftops.emulator.state import Emulator
from ftops.emulator.store import Doc

INPUT_ROLES = ("system", "developer", "user", "assistant")


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def _text(content: Any, where: str) -> str:
    """The text of an input message's content: a string, or parts (input_text, output_text, text)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") not in ("input_text", "output_text", "text"):
                raise bad_request(
                    f"{where}.content[{i}] must be a text part (input_text): the models here read text.",
                    f"{where}.content",
                )
            texts.append(str(part.get("text", "")))
        return "\n".join(texts)
    raise bad_request(f"{where}.content must be a string or a list of parts.", f"{where}.content")


def _input_messages(raw: Any) -> list[dict[str, Any]]:
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    if not isinstance(raw, list) or not raw:
        raise bad_request("input must be a string or a non-empty list of messages.", "input")
    messages = []
    for i, item in enumerate(raw):
        where = f"input[{i}]"
        if not isinstance(item, dict) or item.get("type", "message") != "message":
            raise bad_request(f"{where} must be a message (role and content).", where)
        if item.get("role") not in INPUT_ROLES:
            raise bad_request(f"{where}.role must be one of {', '.join(INPUT_ROLES)}.", f"{where}.role")
        messages.append({"role": item["role"], "content": _text(item.get("content"), where)})
    return messages


def _history(emu: Emulator, ctx: Ctx, previous: Any) -> list[dict[str, Any]]:
    """The conversation so far when `previous_response_id` continues a stored response."""
    if previous is None:
        return []
    if not isinstance(previous, str):
        raise bad_request("previous_response_id must be a string.", "previous_response_id")
    doc = emu.store.get_response(ctx.account, previous)
    if doc is None:
        raise _not_found(previous, "previous_response_id")
    internal = doc.get("_conversation") or []
    return list(internal)


def _not_found(response_id: str, param: str = "response_id") -> ApiError:
    return ApiError(404, "notFound", f"Response with id '{response_id}' not found.", param=param)


def _message_item(item_id: str, text: str | None, status: str) -> Doc:
    """An assistant output message; `text` None while it is still being written (no parts yet)."""
    content = (
        [] if text is None else [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    )
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def _usage(prompt: Prompt, output_tokens: int) -> Doc:
    return {
        "input_tokens": prompt.tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt.tokens + output_tokens,
    }


def _public(doc: Doc) -> Doc:
    return {k: v for k, v in doc.items() if not k.startswith("_")}


async def create(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    body = await json_body(request)
    deployment = find_deployment(emu, ctx, body.get("model"))
    name = str(body["model"])
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise bad_request("instructions must be a string.", "instructions")
    history = _history(emu, ctx, body.get("previous_response_id"))
    turns = [*history, *_input_messages(body.get("input"))]
    messages = ([{"role": "system", "content": instructions}] if instructions else []) + turns
    max_output = _whole(body, "max_output_tokens", 16, MAX_TOKENS_LIMIT)
    temperature = _number(body, "temperature", 1.0, 0, 2)
    top_p = _number(body, "top_p", 1.0, 0, 1)
    store = body.get("store", True)
    if not isinstance(store, bool):
        raise bad_request("store must be true or false.", "store")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict) or len(metadata) > 16:
        raise bad_request("metadata must be an object of at most 16 string pairs.", "metadata")
    stream = bool(body.get("stream"))

    serving = deployment["_serving"]
    budget = max_output or DEFAULT_MAX_TOKENS
    prompt = await prepare_prompt(emu, serving, messages, budget)
    admit(emu, ctx, name, deployment, prompt.tokens + budget, "Responses_Create")
    doc: Doc = {
        "id": _id("resp"),
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": instructions,
        "max_output_tokens": max_output,
        "metadata": metadata,
        "model": deployment["properties"]["model"]["name"],
        "output": [],
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": None,
        "store": store,
        "temperature": temperature,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": top_p,
        "truncation": "disabled",
        "usage": None,
        "user": None,
    }
    options: dict[str, Any] = {
        "max_tokens": budget,
        "temperature": temperature,
        "top_p": top_p,
        "seed": body.get("seed") if isinstance(body.get("seed"), int) else None,
    }
    adapters = [Path(p) for p in serving["adapters"]]
    item_id = _id("msg")

    def finish(text: str, finish_reason: str, output_tokens: int) -> Doc:
        done = dict(doc)
        done["status"] = "completed" if finish_reason == "stop" else "incomplete"
        if finish_reason != "stop":
            done["incomplete_details"] = {"reason": "max_output_tokens"}
        done["output"] = [
            _message_item(item_id, text, "completed" if finish_reason == "stop" else "incomplete")
        ]
        done["usage"] = _usage(prompt, output_tokens)
        if store:
            conversation = [*turns, {"role": "assistant", "content": text}]
            emu.store.add_response(ctx.account, {**done, "_conversation": conversation})
        return done

    if stream:
        return StreamingResponse(
            _events(emu, serving["stand_in"], adapters, prompt, options, doc, item_id, finish),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", **prompt.headers()},
        )
    generation = await run_in_threadpool(
        emu.engine.generate, serving["stand_in"], adapters, prompt.messages, **options
    )
    done = finish(generation.text, generation.finish_reason, generation.completion_tokens)
    return ctx.json(done, headers=prompt.headers())


async def _events(
    emu: Emulator,
    stand_in: str,
    adapters: list[Path],
    prompt: Prompt,
    options: dict[str, Any],
    doc: Doc,
    item_id: str,
    finish: Any,
) -> AsyncIterator[str]:
    """The Responses streaming events, in OpenAI's order, each with its sequence number."""
    sequence = 0

    def event(kind: str, **fields: Any) -> str:
        nonlocal sequence
        payload = {"type": kind, "sequence_number": sequence, **fields}
        sequence += 1
        return f"event: {kind}\ndata: {json.dumps(payload)}\n\n"

    yield event("response.created", response=doc)
    yield event("response.in_progress", response=doc)
    yield event(
        "response.output_item.added", output_index=0, item=_message_item(item_id, None, "in_progress")
    )
    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    yield event("response.content_part.added", item_id=item_id, output_index=0, content_index=0, part=part)
    async for kind, value in generated(emu, stand_in, adapters, prompt, options, f"response {doc['id']}"):
        if kind == "text":
            if value:
                yield event(
                    "response.output_text.delta",
                    item_id=item_id,
                    output_index=0,
                    content_index=0,
                    delta=value,
                    logprobs=[],
                )
            continue
        if kind == "error":
            failed = dict(doc, status="failed", error={"code": "server_error", "message": str(value)})
            yield event("response.failed", response=failed)
            continue
        done = finish(value.text, value.finish_reason, value.completion_tokens)
        item = done["output"][0]
        yield event(
            "response.output_text.done",
            item_id=item_id,
            output_index=0,
            content_index=0,
            text=value.text,
            logprobs=[],
        )
        yield event(
            "response.content_part.done",
            item_id=item_id,
            output_index=0,
            content_index=0,
            part=item["content"][0],
        )
        yield event("response.output_item.done", output_index=0, item=item)
        yield event(
            f"response.{'completed' if done['status'] == 'completed' else 'incomplete'}", response=done
        )


async def retrieve(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    response_id = request.path_params["response_id"]
    doc = emu.store.get_response(ctx.account, response_id)
    if doc is None:
        raise _not_found(response_id)
    return ctx.json(_public(doc))


async def delete(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    response_id = request.path_params["response_id"]
    if not emu.store.delete_response(ctx.account, response_id):
        raise _not_found(response_id)
    return ctx.json({"id": response_id, "object": "response.deleted", "deleted": True})


async def input_items(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    response_id = request.path_params["response_id"]
    doc = emu.store.get_response(ctx.account, response_id)
    if doc is None:
        raise _not_found(response_id)
    turns = (doc.get("_conversation") or [])[:-1]
    items = [
        {
            "id": f"msg_{response_id.removeprefix('resp_')[:40]}{i:04d}",
            "type": "message",
            "status": "completed",
            "role": t["role"],
            "content": [{"type": "input_text", "text": content_text(t["content"])}],
        }
        for i, t in enumerate(reversed(turns))
    ]
    return ctx.page(items, False, ids_too=True)
