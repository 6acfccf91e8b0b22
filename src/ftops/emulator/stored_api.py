"""Stored chat completions, as Azure serves them for distillation and evaluation.

A chat completion created with `store: true` (and optionally `metadata`, up to 16 string pairs) is
kept, with the messages it was asked, for 30 days (Azure's retention for stored completions), and
served back: list (filters `metadata[k]=v`, `model`; `after`, `limit`, `order` asc by default), get
one, its request messages, update its metadata (POST, which replaces it), delete. On the dated
surface the feature exists from api-version 2024-10-01-preview (a GA version ignores `store`
and has none of these routes), on v1 always.
"""

from __future__ import annotations

import re
import time
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from ftops.emulator.http import ApiError, Ctx, bad_request, json_body, route_not_found
from ftops.emulator.state import Emulator

RETENTION_DAYS = 30
FIRST_DATED_VERSION = "2024-10-01-preview"
MAX_PAIRS, MAX_KEY, MAX_VALUE = 16, 64, 512
_METADATA_PARAM = re.compile(r"^metadata\[(.+)\]$")


def retention_start(now: float | None = None) -> float:
    """The oldest `created` still kept."""
    return (time.time() if now is None else now) - RETENTION_DAYS * 86400


def supported(ctx: Ctx, request: Request) -> bool:
    """Whether this surface and api-version know stored completions."""
    if not ctx.dated:
        return True
    version = request.query_params.get("api-version", "")
    return version.endswith("-preview") and version >= FIRST_DATED_VERSION


def check_metadata(value: Any, param: str = "metadata") -> dict[str, str]:
    """Azure's rule for `metadata`: at most 16 pairs of strings, keys up to 64 characters and values
    up to 512."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"{param} must be an object of string keys and string values.", param)
    if len(value) > MAX_PAIRS:
        raise bad_request(f"{param} may hold at most {MAX_PAIRS} key-value pairs.", param)
    for key, item in value.items():
        if not isinstance(item, str):
            raise bad_request(f"{param}.{key} must be a string.", f"{param}.{key}")
        if len(key) > MAX_KEY:
            raise bad_request(f"{param} keys may be at most {MAX_KEY} characters.", param)
        if len(item) > MAX_VALUE:
            raise bad_request(f"{param}.{key} may be at most {MAX_VALUE} characters.", f"{param}.{key}")
    return dict(value)


def keep(emu: Emulator, ctx: Ctx, doc: dict[str, Any], messages: list[dict[str, Any]]) -> None:
    """Store a finished completion (called by chat_api for `store: true`)."""
    emu.store.add_chat_completion(ctx.account, doc, messages)


def _not_found(completion_id: str) -> ApiError:
    return ApiError(
        404,
        "not_found",
        f"No chat completion found with id '{completion_id}'.",
        param="completion_id",
        kind="invalid_request_error",
    )


def _limit(raw: str | None, default: int = 20, maximum: int = 100) -> int:
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise bad_request(f"limit must be a whole number from 1 to {maximum}.", "limit")
    return int(raw)


def _order(raw: str | None) -> bool:
    if raw not in (None, "asc", "desc"):
        raise bad_request("order must be asc or desc.", "order")
    return raw != "desc"


def _stored(emu: Emulator, ctx: Ctx, request: Request) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    completion_id = request.path_params["completion_id"]
    found = emu.store.get_chat_completion(ctx.account, completion_id, retention_start())
    if found is None:
        raise _not_found(completion_id)
    return found


async def listing(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    if not supported(ctx, request):
        return route_not_found(request.url.path)
    q = request.query_params
    metadata: dict[str, str] = {}
    for name, value in q.multi_items():
        match = _METADATA_PARAM.match(name)
        if match:
            metadata[match.group(1)] = value
    emu.store.expire_chat_completions(retention_start())
    page = emu.store.list_chat_completions(
        ctx.account,
        retention_start(),
        metadata,
        q.get("model"),
        q.get("after"),
        _limit(q.get("limit")),
        _order(q.get("order")),
    )
    return ctx.page(page.docs, page.has_more, ids_too=True)


async def retrieve(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    if not supported(ctx, request):
        return route_not_found(request.url.path)
    return ctx.json(_stored(emu, ctx, request)[0])


async def update(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    if not supported(ctx, request):
        return route_not_found(request.url.path)
    body = await json_body(request)
    unknown = sorted(set(body) - {"metadata"})
    if unknown:
        raise bad_request(
            f"Only metadata can be updated on a stored completion, not {', '.join(unknown)}.", unknown[0]
        )
    if "metadata" not in body:
        raise bad_request("metadata is required.", "metadata")
    metadata = check_metadata(body["metadata"])
    completion_id = request.path_params["completion_id"]
    doc = emu.store.set_chat_completion_metadata(ctx.account, completion_id, metadata, retention_start())
    if doc is None:
        raise _not_found(completion_id)
    return ctx.json(doc)


async def delete(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    if not supported(ctx, request):
        return route_not_found(request.url.path)
    completion_id = request.path_params["completion_id"]
    _stored(emu, ctx, request)
    emu.store.delete_chat_completion(ctx.account, completion_id)
    return ctx.json({"object": "chat.completion.deleted", "id": completion_id, "deleted": True})


def _message(completion_id: str, index: int, message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    parts = None
    if isinstance(content, list):
        parts = content
        content = "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    out: dict[str, Any] = {
        "id": f"{completion_id}-{index}",
        "role": message.get("role"),
        "content": content,
        "content_parts": parts,
    }
    if message.get("name"):
        out["name"] = message["name"]
    return out


async def messages(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    if not supported(ctx, request):
        return route_not_found(request.url.path)
    doc, asked = _stored(emu, ctx, request)
    q = request.query_params
    items = [_message(doc["id"], i, m) for i, m in enumerate(asked)]
    if not _order(q.get("order")):
        items.reverse()
    after = q.get("after")
    if after is not None:
        at = next((i for i, m in enumerate(items) if m["id"] == after), None)
        items = [] if at is None else items[at + 1 :]
    limit = _limit(q.get("limit"))
    return ctx.page(items[:limit], len(items) > limit, ids_too=True)
