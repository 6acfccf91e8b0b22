"""Graders (preview): `POST /fine_tuning/alpha/graders/validate` and `/run`, run by the code the RFT
trainer and the gates use (`ftops.evaluation.rft_graders`), so a grader tried here scores as it
rewards and gates. A `score_model`'s model is answered by its stand-in, as chat completions are."""

from __future__ import annotations

import time
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ftops.catalog import BASE_MODELS
from ftops.emulator.http import Ctx, bad_request, json_body
from ftops.emulator.jobs_api import checked_grader, grader_models
from ftops.emulator.state import Emulator
from ftops.evaluation import rft_graders


async def validate(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    body = await json_body(request)
    return ctx.json({"grader": checked_grader(body.get("grader"), "grader")})


async def run(emu: Emulator, ctx: Ctx, request: Request) -> Response:
    body = await json_body(request)
    grader = rft_graders.parse(checked_grader(body.get("grader"), "grader"))
    sample = body.get("model_sample")
    if not isinstance(sample, str):
        raise bad_request("model_sample must be a string: the model's output to grade.", "model_sample")
    item = body.get("item") or {}
    if not isinstance(item, dict):
        raise bad_request("item must be an object: the data line the grader's {{item.*}} read.", "item")

    def judge(model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> str:
        stand_in = emu.settings.stand_in[model]  # checked_grader made sure it is a base model
        return emu.engine.generate(
            stand_in,
            [],
            list(messages),
            max_tokens=int(params.get("max_completions_tokens") or 32),
            temperature=float(params.get("temperature", 1.0)),
            top_p=float(params.get("top_p", 1.0)),
            seed=params.get("seed"),
        ).text

    started = time.monotonic()
    uses_model = bool(grader_models(grader))
    score = await run_in_threadpool(
        rft_graders.grade, grader, rft_graders.Sample.of(sample), item, judge if uses_model else None
    )
    python_error = score.error if isinstance(grader, rft_graders.Python) else ""
    errors = {
        "formula_parse_error": False,
        "invalid_variable_error": False,
        "model_grader_parse_error": uses_model and bool(score.error),
        "model_grader_refusal_error": False,
        "model_grader_server_error": False,
        "model_grader_server_error_details": None,
        "other_error": bool(score.error) and not python_error and not uses_model,
        "python_grader_runtime_error": bool(python_error),
        "python_grader_runtime_error_details": python_error or None,
        "python_grader_server_error": False,
        "python_grader_server_error_type": None,
        "sample_parse_error": False,
        "truncated_observation_error": False,
        "unresponsive_reward_error": False,
    }
    return ctx.json(
        {
            "reward": score.value,
            "sub_rewards": dict(score.by_grader),
            "metadata": {
                "name": getattr(grader, "name", "") or grader.type,
                "type": grader.type,
                "errors": errors,
                "execution_time": time.monotonic() - started,
                "scores": dict(score.by_grader) or {grader.name or grader.type: score.value},
                "token_usage": None,
                "sampled_model_name": None,
            },
            "model_grader_token_usage_per_model": {m: {} for m in grader_models(grader) if m in BASE_MODELS},
        }
    )
