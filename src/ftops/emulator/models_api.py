"""Models: Azure's fine-tunable base models (each served by a local stand-in) and this resource's
fine-tuned models. Both surfaces get the union of the v1 and dated shapes, which the SDK reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from fastapi.responses import Response

from ftops.catalog import BASE_MODELS, FINE_TUNED_ID
from ftops.emulator import ids
from ftops.emulator.http import Ctx, not_found
from ftops.emulator.settings import STAND_INS
from ftops.emulator.state import Emulator
from ftops.emulator.store import Doc

# Release dates of the base versions, as unix seconds (the version in the id).
_CREATED = {
    "2024-07-18": 1721260800,
    "2024-08-06": 1722902400,
    "2025-04-14": 1744588800,
    "2025-04-16": 1744761600,
}
# Input context of each base model family on Azure, in its own tokens (o200k_base): what a
# prompt may take before Azure answers 400 context_length_exceeded. Fine-tuned models keep
# their base's context. Sources: MicrosoftDocs/azure-ai-docs articles/ai-foundry/openai/includes/
# fine-tune-models.md (gpt-4o, gpt-4o-mini: input 128,000) and concepts/models.md (gpt-4.1 family
# 1,047,576; o4-mini 200,000).
CONTEXT_TOKENS = {
    "gpt-4o-mini": 128_000,
    "gpt-4o": 128_000,
    "gpt-4.1": 1_047_576,
    "gpt-4.1-mini": 1_047_576,
    "gpt-4.1-nano": 1_047_576,
    "o4-mini": 200_000,
}
# Undated names Azure resolves to the version it currently serves (one per family here).
UNDATED = {m.family: m.id for m in BASE_MODELS.values()}
_RETIRE = 1798761600  # 2027-01-01: a fixed, far deprecation date for every base model
_CAPS = {
    "fine_tune": True,
    "inference": True,
    "completion": False,
    "chat_completion": True,
    "embeddings": False,
}


@dataclass(frozen=True)
class Resolved:
    """What serves a model name: a local stand-in plus the LoRA adapters to apply, in order."""

    stand_in: str
    adapters: list[Path]
    base_model: str | None  # the Azure base it stands for
    account: str | None  # the account that trained it (fine-tuned models)


def context_tokens(base_model: str) -> int:
    return CONTEXT_TOKENS[BASE_MODELS[base_model].family]


def base_doc(model_id: str) -> Doc:
    version = model_id.rsplit("-", 3)[-3:]
    created = _CREATED.get("-".join(version), 1700000000)
    return {
        "id": model_id,
        "object": "model",
        "created": created,
        "created_at": created,
        "owned_by": "system",
        "status": "succeeded",
        "capabilities": dict(_CAPS),
        "lifecycle_status": "generally-available",
        "deprecation": {"fine_tune": _RETIRE, "inference": _RETIRE},
    }


def tuned_doc(doc: Doc, internal: Doc) -> Doc:
    return {
        "id": doc["id"],
        "object": "model",
        "created": doc["created_at"],
        "created_at": doc["created_at"],
        "owned_by": "organization-owner",
        "status": "succeeded",
        "model": internal.get("base_model") or internal["stand_in"],
        "fine_tune": internal["job_id"],
        "capabilities": dict(_CAPS),
        "lifecycle_status": "generally-available",
        "deprecation": {"inference": _RETIRE},
    }


AZURE_CHECKPOINT = "ftchkpt-"


def resolve(emu: Emulator, name: str) -> Resolved | None:
    """A base model (dated or undated), a stand-in, a fine-tuned model or one of its checkpoints."""
    name = UNDATED.get(name, name)
    if name in BASE_MODELS:
        return Resolved(emu.settings.stand_in[name], [], name, None)
    if name in STAND_INS:
        return Resolved(name, [], None, None)
    found = emu.store.get_model(name)
    if found is not None:
        account, _, internal = found
        return Resolved(
            internal["stand_in"], [Path(p) for p in internal["adapters"]], internal.get("base_model"), account
        )
    if name.startswith(AZURE_CHECKPOINT):
        # Azure's deployment docs name a checkpoint `ftchkpt-<hex>` where the API lists `ftckpt_<hex>`:
        # both deploy the same checkpoint.
        name = "ftckpt_" + name.removeprefix(AZURE_CHECKPOINT)
    if ids.valid("checkpoint", name) and (checkpoint := emu.store.checkpoint_by_id(name)) is not None:
        name = checkpoint[0]["fine_tuned_model_checkpoint"]  # deployed by its checkpoint id
        if (final := emu.store.get_model(name)) is not None:
            account, _, internal = final
            return Resolved(
                internal["stand_in"],
                [Path(p) for p in internal["adapters"]],
                internal.get("base_model"),
                account,
            )
    model, _, step = name.partition(":ckpt-step-")
    if step and (parent := emu.store.get_model(model)) is not None:
        path = emu.store.checkpoint_path(name)
        if path is not None:
            account, _, internal = parent
            chain = [Path(p) for p in internal["adapters"][:-1]] + [path]
            return Resolved(internal["stand_in"], chain, internal.get("base_model"), account)
    return None


async def listing(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    docs = [base_doc(m) for m in BASE_MODELS]
    for model in emu.store.list_models(ctx.account):
        found = emu.store.get_model(model["id"])
        if found is not None:
            docs.append(tuned_doc(found[1], found[2]))
    return ctx.json({"object": "list", "data": docs})


async def retrieve(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    name = request.path_params["model"]
    if name in BASE_MODELS:
        return ctx.json(base_doc(name))
    found = emu.store.get_model(name) if FINE_TUNED_ID.match(name) or ".ft-" in name else None
    if found is None or found[0] != ctx.account:
        raise not_found("model", name, "model")
    return ctx.json(tuned_doc(found[1], found[2]))
