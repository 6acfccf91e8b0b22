"""Files: multipart upload, list, get, content, delete. Uploads are validated in the background
with `ftops validate`'s rules: status goes pending -> processed, or error with the reasons."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import FileResponse, Response
from starlette.datastructures import UploadFile

from ftops.catalog import MAX_FILE_BYTES, REINFORCEMENT, default_base
from ftops.emulator import ids
from ftops.emulator.http import ApiError, Ctx, bad_request, not_found
from ftops.emulator.state import Emulator
from ftops.emulator.store import Doc

UPLOAD_PURPOSES = ("fine-tune", "evals", "batch", "assistants")
LIST_PURPOSES = (*UPLOAD_PURPOSES, "fine-tune-results", "assistants_output", "batch_output")


def file_doc(ctx: Ctx, doc: Doc) -> Doc:
    out = dict(doc)
    out.pop("sha256", None)  # kept for the emulator's own bookkeeping; Azure reports no digest
    if ctx.dated:
        out.pop("expires_at", None)
    # v1 declares expires_at and status_details as non-null: absent until they have a value.
    return out


def _validate_upload(emu: Emulator, file_id: str, path: Path) -> None:
    from ftops.dataset.validate import ValidateOptions, validate_file

    try:
        report = validate_file(path, ValidateOptions(workers=1))
        if not report.valid:
            # The upload does not say what the file is for: data that is valid RFT data (chat that
            # ends with the user's turn, extra fields for the grader) is a valid fine-tune file.
            rft_base = default_base(REINFORCEMENT)
            rft = validate_file(path, ValidateOptions(method=REINFORCEMENT, base_model=rft_base, workers=1))
            report = rft if rft.valid else report
    except Exception as exc:  # a file that cannot even be read is an invalid file, not a crash
        details = f"The file could not be read as JSONL: {exc}"
    else:
        if report.valid:
            emu.store.update_file(file_id, lambda d: d.update(status="processed"))
            return
        reasons = []
        for rule in report.errors[:5]:
            first = rule.first[0]
            where = f"line {first.line}: " if first.line else ""
            reasons.append(f"{where}{first.message} ({rule.code}, {rule.count} in all)")
        details = "Invalid file format: " + "; ".join(reasons)
    emu.store.update_file(file_id, lambda d: d.update(status="error", status_details=details))


async def upload(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise bad_request("Files are uploaded as multipart/form-data with 'file' and 'purpose' fields.")
    form = await request.form(max_part_size=emu.settings.max_upload_bytes)
    upload = form.get("file")
    purpose = form.get("purpose")
    if not isinstance(upload, UploadFile):
        raise bad_request("The 'file' field is required and must be a file.", param="file")
    if purpose not in UPLOAD_PURPOSES:
        raise bad_request(f"purpose must be one of {', '.join(UPLOAD_PURPOSES)}.", param="purpose")
    expires_at = _expiry(form.get("expires_after[anchor]"), form.get("expires_after[seconds]"))
    file_id = ids.new("file")
    target = emu.file_path(file_id)
    digest = hashlib.sha256()
    tmp = target.with_name(f".{file_id}.part")
    size = 0
    with tmp.open("wb") as out:
        while chunk := await upload.read(1 << 20):
            size += len(chunk)
            if size >= MAX_FILE_BYTES:
                out.close()
                tmp.unlink(missing_ok=True)
                raise bad_request(
                    "The file is too large: fine-tuning files must be smaller than 512 MB.", "file"
                )
            digest.update(chunk)
            out.write(chunk)
    os.replace(tmp, target)
    doc: Doc = {
        "id": file_id,
        "object": "file",
        "bytes": size,
        "created_at": ids.now(),
        "filename": os.path.basename(upload.filename or "upload.jsonl"),
        "purpose": purpose,
        "status": "pending" if purpose == "fine-tune" else "processed",
        "sha256": digest.hexdigest(),
    }
    if expires_at is not None:
        doc["expires_at"] = expires_at
    emu.store.add_file(ctx.account, doc)
    if purpose == "fine-tune":
        emu.background.submit(_validate_upload, emu, file_id, target)
    return ctx.created(file_doc(ctx, doc), f"/openai/files/{file_id}")


def _expiry(anchor: Any, seconds: Any) -> int | None:
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise bad_request("expires_after[anchor] must be 'created_at'.", param="expires_after")
    try:
        value = int(str(seconds))
    except ValueError:
        raise bad_request("expires_after[seconds] must be a whole number.", param="expires_after") from None
    # Azure's documented range (OpenAI allows from 3,600 s; the strictest range avoids surprises).
    if not 1_209_600 <= value <= 2_592_000:
        raise bad_request(
            "expires_after[seconds] must be between 1209600 and 2592000.", param="expires_after"
        )
    return ids.now() + value


def _get(emu: Emulator, ctx: Ctx, file_id: str) -> Doc:
    doc = emu.store.get_file(ctx.account, file_id) if ids.valid("file", file_id) else None
    if doc is None:
        raise not_found("file", file_id, "file_id")
    return doc


async def retrieve(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    return ctx.json(file_doc(ctx, _get(emu, ctx, request.path_params["file_id"])))


async def content(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    doc = _get(emu, ctx, request.path_params["file_id"])
    path = emu.file_path(doc["id"])
    if not path.is_file():
        raise ApiError(404, "notFound", f"The content of file '{doc['id']}' is no longer available.")
    return FileResponse(path, media_type="application/octet-stream", filename=doc["filename"])


async def listing(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    q = request.query_params
    purpose = q.get("purpose")
    if purpose is not None and purpose not in LIST_PURPOSES:
        raise bad_request(f"purpose must be one of {', '.join(LIST_PURPOSES)}.", param="purpose")
    limit = _limit(q.get("limit"), 10_000)
    page = emu.store.list_files(ctx.account, purpose, q.get("after"), limit)
    docs = [file_doc(ctx, d) for d in page.docs]
    if q.get("order") == "asc":
        docs.reverse()
    return ctx.page(docs, page.has_more, ids_too=True)


async def delete(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    doc = _get(emu, ctx, request.path_params["file_id"])
    emu.store.delete_file(ctx.account, doc["id"])
    emu.file_path(doc["id"]).unlink(missing_ok=True)
    return ctx.json({"id": doc["id"], "object": "file", "deleted": True})


def _limit(raw: str | None, default: int, maximum: int = 10_000) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"limit must be a whole number, not '{raw}'.", param="limit") from None
    if not 1 <= value <= maximum:
        raise bad_request(f"limit must be between 1 and {maximum}.", param="limit")
    return value
