"""Fine-tuning jobs: create, list, get, cancel, pause, resume, delete, events, checkpoints."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError

from ftops.catalog import BASE_MODELS, DPO, REINFORCEMENT, SUPERVISED
from ftops.emulator import ids
from ftops.emulator.files_api import _limit
from ftops.emulator.http import ApiError, Ctx, bad_request, json_body, no_content, not_found, wrong_state
from ftops.emulator.models_api import UNDATED
from ftops.emulator.settings import STAND_INS
from ftops.emulator.state import Emulator
from ftops.emulator.store import ACTIVE, TERMINAL, Doc
from ftops.emulator.worker import add_event
from ftops.evaluation import rft_graders

# Dated statuses (Azure's FineTuningState) as the v1 surface names them.
V1_STATUS = {"created": "validating_files", "pending": "queued", "resuming": "running", "pausing": "running"}
MAX_QUEUED = 20  # per resource (quotas-limits.md)
SUFFIX = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_BOUNDS: dict[str, tuple[type, float, float]] = {
    "n_epochs": (int, 1, 50),
    "batch_size": (int, 1, 256),
    "learning_rate_multiplier": (float, 1e-6, 10),
    "beta": (float, 1e-6, 2),
    "compute_multiplier": (float, 1e-6, 10),
    "eval_interval": (int, 1, 2**31 - 1),
    "eval_samples": (int, 1, 2**31 - 1),
}
_ALLOWED = {
    SUPERVISED: ("n_epochs", "batch_size", "learning_rate_multiplier"),
    DPO: ("n_epochs", "batch_size", "learning_rate_multiplier", "beta"),
    REINFORCEMENT: (
        "n_epochs",
        "batch_size",
        "learning_rate_multiplier",
        "eval_interval",
        "eval_samples",
        "compute_multiplier",
        "reasoning_effort",
    ),
}
REASONING_EFFORTS = ("default", "low", "medium", "high")


# What the dated surface reports for a hyperparameter not chosen yet: the spec types them as numbers.
UNRESOLVED = -1


def _dated_hyper(hyper: Any) -> Any:
    if not isinstance(hyper, dict):
        return hyper
    return {k: UNRESOLVED if v == "auto" else v for k, v in hyper.items()}


def job_doc(ctx: Ctx, doc: Doc) -> Doc:
    out = dict(doc)
    if ctx.dated:
        out["hyperparameters"] = _dated_hyper(out.get("hyperparameters"))
        method = out.get("method")
        if isinstance(method, dict) and isinstance(method.get(method.get("type")), dict):
            kind = method["type"]
            section = dict(method[kind])
            section["hyperparameters"] = _dated_hyper(section.get("hyperparameters"))
            out["method"] = {**method, kind: section}
        return out
    out["status"] = V1_STATUS.get(out["status"], out["status"])
    out["organization_id"] = out.pop("organisation_id", "")
    out["user_provided_suffix"] = out.pop("suffix", None)
    out.pop("trainingType", None)
    for key in (
        "error",
        "fine_tuned_model",
        "finished_at",
        "trained_tokens",
        "validation_file",
        "metadata",
        "integrations",
        "estimated_finish",
    ):
        out.setdefault(key, None)
    return out


def event_doc(ctx: Ctx, doc: Doc) -> Doc:
    out = {k: v for k, v in doc.items() if k != "job_id"}
    if ctx.dated and out["level"] == "warn":
        out["level"] = "warning"
    if not out.get("data"):
        out["data"] = None
    return out


def _hyperparameters(raw: Any, method: str) -> dict[str, Any]:
    if raw is None:
        return dict.fromkeys(_ALLOWED[method], "auto")
    if not isinstance(raw, dict):
        raise bad_request("hyperparameters must be an object.", "hyperparameters")
    out: dict[str, Any] = {}
    for key in _ALLOWED[method]:
        value = raw.get(key, "default" if key == "reasoning_effort" else "auto")
        if key == "reasoning_effort":
            if value not in REASONING_EFFORTS:
                raise bad_request(
                    f"reasoning_effort must be one of {', '.join(REASONING_EFFORTS)}; got {value!r}.", key
                )
        elif value != "auto":
            kind, low, high = _BOUNDS[key]
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if kind is int and ok and float(value) != int(value):
                ok = False
            if not ok or not low <= float(value) <= high:
                raise bad_request(
                    f"{key} must be 'auto' or a number from {low:g} to {high:g}; got {value!r}.", key
                )
            value = kind(value)
        out[key] = value
    unknown = sorted(set(raw) - set(_ALLOWED[method]))
    if unknown:
        raise bad_request(f"Unknown hyperparameter(s) for {method}: {', '.join(unknown)}.", unknown[0])
    return out


def _method(body: Doc) -> tuple[str, dict[str, Any], Doc]:
    """(method type, hyperparameters, the method object to echo).

    The top-level `hyperparameters` (deprecated, still what many scripts send) apply when `method`
    carries none, as on Azure; given in both places they merge, and only a contradiction is an error."""
    method = body.get("method")
    top = body.get("hyperparameters")
    if top is not None and not isinstance(top, dict):
        raise bad_request("hyperparameters must be an object.", "hyperparameters")
    if method is None:
        hyper = _hyperparameters(top, SUPERVISED)
        return SUPERVISED, hyper, {"type": SUPERVISED, SUPERVISED: {"hyperparameters": hyper}}
    if not isinstance(method, dict) or method.get("type") not in (SUPERVISED, DPO, REINFORCEMENT):
        raise bad_request("method.type must be one of supervised, dpo, reinforcement.", "method")
    kind = method["type"]
    section = method.get(kind) or {}
    if not isinstance(section, dict):
        raise bad_request(f"method.{kind} must be an object.", f"method.{kind}")
    inner = section.get("hyperparameters")
    if inner is not None and not isinstance(inner, dict):
        raise bad_request(
            f"method.{kind}.hyperparameters must be an object.", f"method.{kind}.hyperparameters"
        )
    raw = dict(top or {})
    for key, value in (inner or {}).items():
        if key in raw and raw[key] != value:
            raise bad_request(
                f"hyperparameters.{key} ({raw[key]!r}) contradicts method.{kind}.hyperparameters.{key} "
                f"({value!r}); give it in one place.",
                "hyperparameters",
            )
        raw[key] = value
    hyper = _hyperparameters(raw if top is not None or inner is not None else None, kind)
    echoed: Doc = {"type": kind, kind: {"hyperparameters": hyper}}
    if kind == REINFORCEMENT:
        echoed[kind]["grader"] = checked_grader(section.get("grader"))
        if section.get("response_format") is not None:
            echoed[kind]["response_format"] = section["response_format"]
    return kind, hyper, echoed


def checked_grader(raw: Any, where: str = "method.reinforcement.grader") -> Doc:
    """The RFT grader, checked as Azure checks it (its shape, a python grader's source)."""
    if raw is None:
        raise bad_request(f"{where} is required.", where)
    try:
        grader = rft_graders.parse(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"][1:])  # [0] is the grader type's tag
        raise bad_request(f"{where}{'.' + key if key else ''}: {first['msg']}.", where) from None
    for model in grader_models(grader):
        if model not in BASE_MODELS:
            raise bad_request(
                f"{where}: the grader model '{model}' is not a model this resource serves; use one of "
                f"{', '.join(BASE_MODELS)}.",
                where,
            )
    return rft_graders.canonical(grader)


def grader_models(grader: Any) -> list[str]:
    if isinstance(grader, rft_graders.Multi):
        return [m for g in grader.graders.values() for m in grader_models(g)]
    return [grader.model] if isinstance(grader, rft_graders.ScoreModel) else []


def _base(emu: Emulator, ctx: Ctx, model: Any) -> tuple[str, str | None, list[str], str]:
    """(stand-in, Azure base model or None, parent adapters, name stem of the fine-tuned model)."""
    if not isinstance(model, str) or not model:
        raise bad_request("model is required.", "model")
    model = UNDATED.get(model, model)
    if model in BASE_MODELS:
        return emu.settings.stand_in[model], model, [], model
    if model in STAND_INS:
        return model, None, [], model
    found = emu.store.get_model(model)
    if found is not None and found[0] == ctx.account:
        internal = found[2]
        stem = internal.get("base_model") or internal["stand_in"]
        return internal["stand_in"], internal.get("base_model"), list(internal["adapters"]), stem
    raise bad_request(
        f"The base model '{model}' does not support fine-tuning here. Use one of: "
        f"{', '.join([*BASE_MODELS, *STAND_INS])} (or its undated name, {', '.join(UNDATED)}), or a "
        "fine-tuned model of this resource.",
        "model",
    )


def _training_input(emu: Emulator, ctx: Ctx, body: Doc, key: str, required: bool) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise bad_request(f"{key} is required.", key)
        return None
    if not isinstance(value, str) or not ids.valid("file", value):
        raise bad_request(f"{key} must be a file id like file-<32 hex>.", key)
    doc = emu.store.get_file(ctx.account, value)
    if doc is None:
        raise bad_request(f"The {key} '{value}' could not be found.", key)
    if doc["purpose"] != "fine-tune":
        raise bad_request(f"The {key} '{value}' has purpose '{doc['purpose']}', not 'fine-tune'.", key)
    # A file still being processed, or one that failed validation, is accepted: the job waits in
    # "created" (v1: validating_files) and then runs, or fails with invalid_training_file as on Azure.
    return value


def _metadata(raw: Any) -> dict[str, str] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or len(raw) > 16:
        raise bad_request("metadata must be an object of at most 16 string pairs.", "metadata")
    for key, value in raw.items():
        if not isinstance(value, str) or len(key) > 64 or len(value) > 512:
            raise bad_request("metadata keys are strings up to 64 characters, values up to 512.", "metadata")
    return dict(raw)


async def create(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    body = await json_body(request)
    stand_in, catalog_base, parents, stem = _base(emu, ctx, body.get("model"))
    asked = body["model"]
    model = UNDATED.get(asked, asked)  # the resolved id is what the job records
    kind, hyper, method = _method(body)
    if catalog_base is not None and kind not in BASE_MODELS[catalog_base].methods:
        allowed = ", ".join(sorted(BASE_MODELS[catalog_base].methods))
        raise bad_request(
            f"The model '{catalog_base}' does not support {kind} fine-tuning (it supports {allowed}).",
            "method",
        )
    training = _training_input(emu, ctx, body, "training_file", required=True)
    validation = _training_input(emu, ctx, body, "validation_file", required=kind == REINFORCEMENT)
    suffix = body.get("suffix")
    if suffix is not None and (not isinstance(suffix, str) or not SUFFIX.match(suffix)):
        raise bad_request("suffix must be 1-40 characters of letters, digits, '-' or '_'.", "suffix")
    seed = body.get("seed")
    if seed is None:
        seed = secrets.randbelow(2**31)
    elif isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 2**31 - 1:
        raise bad_request("seed must be a whole number from 0 to 2147483647.", "seed")
    training_type = body.get("trainingType")
    if training_type is not None and str(training_type).lower() not in (
        "standard",
        "globalstandard",
        "developer",
        "developertier",
    ):
        raise bad_request("trainingType must be Standard, GlobalStandard or Developer.", "trainingType")
    queued = [j for j in emu.store.jobs_with_status("created", "pending", "resuming") if j[1] == ctx.account]
    if len(queued) >= MAX_QUEUED:
        raise ApiError(
            429, "quotaExceeded", f"At most {MAX_QUEUED} jobs may wait in the queue of one resource."
        )

    job_id = ids.new("job")
    hex_id = job_id.removeprefix("ftjob-")
    model_id = f"{stem}.ft-{hex_id}" + (f"-{suffix}" if suffix else "")
    waiting = any(
        (f := emu.store.get_file(ctx.account, fid)) is not None and f["status"] != "processed"
        for fid in (training, validation)
        if fid
    )
    doc: Doc = {
        "id": job_id,
        "object": "fine_tuning.job",
        "created_at": ids.now(),
        "status": "created" if waiting else "pending",
        "model": model,
        "fine_tuned_model": None,
        "training_file": training,
        "validation_file": validation,
        "result_files": [],
        "hyperparameters": {k: v for k, v in hyper.items() if k in _ALLOWED[SUPERVISED]},
        "method": method,
        "seed": seed,
        "suffix": suffix,
        "metadata": _metadata(body.get("metadata")),
        "integrations": body.get("integrations"),
        "trainingType": training_type,
        "organisation_id": "",
        "error": None,
        "finished_at": None,
        "trained_tokens": None,
        "estimated_finish": None,
    }
    internal: Doc = {
        "account": ctx.account,
        "stand_in": stand_in,
        "catalog_base": catalog_base,
        "parent_adapters": parents,
        "method": kind,
        "hyperparameters": hyper,
        "model_id": model_id,
        "training_path": str(emu.file_path(training)) if training else None,
        "validation_path": str(emu.file_path(validation)) if validation else None,
        "work_dir": str(emu.jobs_dir / job_id),
        "cache_dir": str(emu.settings.cache_dir),
        "files_dir": str(emu.files_dir),
    }
    if kind == REINFORCEMENT:
        grader = method[kind]["grader"]
        internal["grader"] = grader
        # A score_model grader's model is served by its stand-in, as chat completions serve it.
        internal["grader_stand_ins"] = {
            m: emu.settings.stand_in[m] for m in grader_models(rft_graders.parse(grader))
        }
        internal["rft_pause_after_seconds"] = emu.settings.rft_pause_after_seconds
    ahead = emu.store.jobs_with_status(*ACTIVE, "created", "pending", "resuming")
    busy = any(a == ctx.account for _, a, _ in ahead)
    emu.store.add_job(ctx.account, doc, internal)
    if model != asked:
        add_event(emu.store, job_id, f"Model '{asked}' resolved to '{model}'.")
    add_event(emu.store, job_id, f"Job created for {model} ({kind}) on {training}.")
    if busy:
        add_event(emu.store, job_id, "Job enqueued. Waiting for jobs ahead to complete.")
    return ctx.created(job_doc(ctx, doc), f"/openai/fine_tuning/jobs/{job_id}")


def _job(emu: Emulator, ctx: Ctx, request: Request) -> tuple[Doc, Doc, str | None]:
    job_id = request.path_params["job_id"]
    found = emu.store.get_job(job_id, ctx.account) if ids.valid("job", job_id) else None
    if found is None:
        raise not_found("fine tuning job", job_id, "fine_tuning_job_id")
    return found


async def retrieve(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    return ctx.json(job_doc(ctx, _job(emu, ctx, request)[0]))


async def listing(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    q = request.query_params
    page = emu.store.list_jobs(ctx.account, q.get("after"), _limit(q.get("limit"), 20, 100))
    return ctx.page([job_doc(ctx, d) for d in page.docs], page.has_more)


def _transition(
    emu: Emulator,
    job_id: str,
    refuse: Callable[[Doc, Doc], str | None],
    apply: Callable[[Doc, Doc], None],
    control: str | None,
) -> Doc:
    """Check and change a job's state in one transaction: the worker may finish or pause it in between."""
    refusal: list[str] = []

    def change(doc: Doc, internal: Doc) -> bool | None:
        why = refuse(doc, internal)
        if why:
            refusal.append(why)
            return False
        apply(doc, internal)
        return None

    updated = emu.store.update_job(job_id, change, control=control)
    if refusal:
        raise wrong_state(refusal[0])
    if updated is None:
        raise not_found("fine tuning job", job_id, "fine_tuning_job_id")
    return updated[0]


async def cancel(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    doc, _, _ = _job(emu, ctx, request)

    def refuse(d: Doc, i: Doc) -> str | None:
        if d["status"] in TERMINAL:
            return f"The job '{d['id']}' is already {d['status']} and cannot be cancelled."
        return None

    def apply(d: Doc, i: Doc) -> None:
        d.update(status="cancelled", finished_at=ids.now(), estimated_finish=None)

    updated = _transition(emu, doc["id"], refuse, apply, control="cancel")
    add_event(emu.store, doc["id"], "Job cancelled by request.")
    return ctx.json(job_doc(ctx, updated))


async def pause(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    doc, _, _ = _job(emu, ctx, request)

    def refuse(d: Doc, i: Doc) -> str | None:
        if d["status"] != "running" or not i.get("step"):
            return (
                f"Only a running job that has trained at least one step can be paused; '{d['id']}' is "
                f"{d['status']}."
            )
        return None

    updated = _transition(emu, doc["id"], refuse, lambda d, i: d.update(status="pausing"), control="pause")
    add_event(emu.store, doc["id"], "Pause requested; the job pauses after the current step.")
    return ctx.json(job_doc(ctx, updated))


async def resume(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    doc, _, _ = _job(emu, ctx, request)

    def refuse(d: Doc, i: Doc) -> str | None:
        if d["status"] != "paused" or not i.get("resume_dir"):
            return f"Only a paused job can be resumed; '{d['id']}' is {d['status']}."
        return None

    updated = _transition(emu, doc["id"], refuse, lambda d, i: d.update(status="resuming"), control=None)
    add_event(emu.store, doc["id"], "Resume requested.")
    return ctx.json(job_doc(ctx, updated))


async def delete(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    if not ctx.dated:
        raise ApiError(404, "notFound", "Deleting a fine-tuning job is only available on the dated API.")
    doc, _, _ = _job(emu, ctx, request)
    if doc["status"] not in TERMINAL:
        raise wrong_state(f"The job '{doc['id']}' is {doc['status']}; cancel it before deleting it.")
    emu.store.delete_job(ctx.account, doc["id"])
    return no_content()


async def events(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    doc, _, _ = _job(emu, ctx, request)
    q = request.query_params
    page = emu.store.list_events(doc["id"], q.get("after"), _limit(q.get("limit"), 20, 1000))
    return ctx.page([event_doc(ctx, d) for d in page.docs], page.has_more)


async def checkpoints(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    doc, _, _ = _job(emu, ctx, request)
    q = request.query_params
    page = emu.store.list_checkpoints(doc["id"], q.get("after"), _limit(q.get("limit"), 10, 100))
    return ctx.page(page.docs, page.has_more, ids_too=True)
