"""How an emulator instance is configured: where it listens, its key, its data, its faults."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ftops.catalog import BASE_MODELS

StandIn = Literal["smollm2-135m-instruct", "tiny-test"]
STAND_INS: tuple[StandIn, ...] = ("smollm2-135m-instruct", "tiny-test")
DEFAULT_STAND_IN: StandIn = "smollm2-135m-instruct"
# Every api-version Azure documents for the dated data plane (the `/openai/...` routes the emulator
# serves: files, fine-tuning, models, chat completions). Source: the version folders of
# github.com/Azure/azure-rest-api-specs, specification/cognitiveservices/data-plane/AzureOpenAI/
# inference/{stable,preview}/<version>/ and authoring/{stable,preview}/<version>/, as listed on
# learn.microsoft.com/azure/ai-foundry/openai/api-version-lifecycle. Any other value gets Azure's
# 400 "API version not supported"; a missing one Azure's 404 "Resource not found".
DATED_API_VERSIONS = (
    # GA
    "2022-12-01",
    "2023-05-15",
    "2024-02-01",
    "2024-06-01",
    "2024-10-21",
    # previews
    "2022-03-01-preview",
    "2022-06-01-preview",
    "2023-03-15-preview",
    "2023-06-01-preview",
    "2023-07-01-preview",
    "2023-08-01-preview",
    "2023-09-01-preview",
    "2023-10-01-preview",
    "2023-12-01-preview",
    "2024-02-15-preview",
    "2024-03-01-preview",
    "2024-04-01-preview",
    "2024-05-01-preview",
    "2024-07-01-preview",
    "2024-08-01-preview",
    "2024-09-01-preview",
    "2024-10-01-preview",
    "2024-12-01-preview",
    "2025-01-01-preview",
    "2025-02-01-preview",
    "2025-03-01-preview",
    "2025-04-01-preview",
)
# The v1 surface takes no api-version, or one of these (SPEC-V1's optional `api-version` query).
V1_API_VERSIONS = ("v1", "preview", "latest")


def all_stand_ins(name: str) -> dict[str, StandIn]:
    """Every Azure base model trained and served by the same local model."""
    for known in STAND_INS:
        if name == known:
            return dict.fromkeys(BASE_MODELS, known)
    raise ValueError(f"unknown stand-in model '{name}'; use one of: {', '.join(STAND_INS)}")


class Faults(BaseModel):
    """Injected failures for reliability tests; every field off by default."""

    model_config = ConfigDict(extra="forbid")

    error_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    error_codes: Annotated[list[Literal[429, 500, 502, 503]], Field(min_length=1)] = [429, 500, 503]
    latency_ms: Annotated[int, Field(ge=0, le=120_000)] = 0
    drop_rate: Annotated[float, Field(ge=0, le=1)] = 0.0  # close the connection without a response
    path_pattern: str = ""  # a regex the request path must match; "" matches everything
    fail_job_at_step: Annotated[int, Field(ge=1)] | None = None  # every job started from now on fails there
    seed: int | None = None  # make the random draws repeatable
    # Deny every request as an unassigned role would (401 PermissionDenied on the data plane, 403
    # AuthorizationFailed on ARM) until this many seconds after the faults were set: a role
    # assignment made in the same `pulumi up` that Azure has not propagated yet.
    rbac_delay_s: Annotated[float, Field(ge=0, le=3600)] = 0.0
    # The serving model drifts without any deployment write (what a canary must catch): "base"
    # answers with the base model, as if the fine-tuned weights were swapped out; "noise" samples
    # at `drift_temperature` whatever the request asked. Only chat completions on the deployments
    # named in `drift_deployments` (every deployment when empty).
    drift: Literal["base", "noise"] | None = None
    drift_deployments: list[str] = []
    drift_temperature: Annotated[float, Field(gt=0, le=2)] = 2.0

    @field_validator("path_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"path_pattern is not a valid regular expression: {exc}") from None
        return value


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8790
    api_key: str = Field(default_factory=lambda: secrets.token_hex(16))
    data_dir: Path = Path(".ftops/emulator")
    model_cache: Path | None = None  # materialized local models; default <data_dir>/models
    default_account: str = "local"
    # Azure base model -> the local model that stands in for it (training and inference).
    stand_in: dict[str, StandIn] = Field(default_factory=lambda: all_stand_ins(DEFAULT_STAND_IN))
    # How long a deployment write keeps the account busy (Azure answers other writes with 409).
    provisioning_seconds: Annotated[float, Field(ge=0, le=600)] = 2.0
    max_upload_bytes: int = 512 * 1024 * 1024 + 1024 * 1024  # the file limit plus multipart framing
    max_json_bytes: int = 16 * 1024 * 1024
    faults: Faults = Faults()

    @property
    def db_path(self) -> Path:
        return self.data_dir / "emulator.sqlite3"

    @property
    def cache_dir(self) -> Path:
        """Materialized local models, shared by the workers and the server."""
        return self.model_cache or self.data_dir / "models"
