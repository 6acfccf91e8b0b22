"""The pure logic behind the training resources: identities, adoption, statuses, checkpoints.

A training job's identity is a hash of everything that decides what it trains (the base model,
the *bytes* of its data, the method and hyperparameters, seed, suffix, training type and the
explicit retrain counter). The hash goes into the job's `metadata` and a short form into its
suffix, so a provider that crashed after creating a job finds and adopts it instead of paying
for a second one. Files are content-addressed the same way, through their name.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from ftops.providers.args import FineTuningJobArgs

SPEC_KEYS = FineTuningJobArgs.spec_keys()
METADATA_SPEC = "ftops-spec"
METADATA_MODEL = "ftops-model"
SHORT = 7
TERMINAL = ("succeeded", "failed", "cancelled")
_FILE_NAME = re.compile(r"\.sha256-(?P<digest>[0-9a-f]{64})\.jsonl$")


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def canonical(value: Any) -> Any:
    """Numbers as the engine does not keep them: Pulumi's wire format (protobuf Struct) turns every
    number into a float, so 3 and 3.0 must be the same value here."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    return value


def spec_hash(spec: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the identity inputs; the same spec always hashes the same."""
    identity = canonical({k: spec.get(k) for k in SPEC_KEYS})
    return hashlib.sha256(json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def job_suffix(suffix: str | None, spec: str) -> str:
    """The user's suffix plus the short spec hash (at most 10 + 1 + 7 = 18 characters)."""
    return f"{suffix}-{spec[:SHORT]}" if suffix else spec[:SHORT]


def file_name(original: str, digest: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", original.rsplit("/", 1)[-1].removesuffix(".jsonl"))[:60]
    return f"{stem}.sha256-{digest}.jsonl"


def digest_in_name(name: str) -> str | None:
    match = _FILE_NAME.search(name or "")
    return match.group("digest") if match else None


def status_of(raw: str) -> str:
    """One vocabulary for both surfaces: v1's queued/validating_files and the dated pending/created."""
    return {
        "validating_files": "queued",
        "created": "queued",
        "pending": "queued",
        "queued": "queued",
        "resuming": "running",
        "pausing": "running",
    }.get(raw, raw)


def is_job_for(job: Any, spec: str, base_model: str) -> bool:
    """Whether a listed job is the one this spec created (metadata first, then the suffix)."""
    metadata = getattr(job, "metadata", None) or {}
    if metadata.get(METADATA_SPEC):
        return bool(metadata[METADATA_SPEC] == spec)
    extra = getattr(job, "model_extra", None) or {}
    suffix = getattr(job, "user_provided_suffix", None) or extra.get("suffix") or ""
    return bool(getattr(job, "model", None) == base_model and str(suffix).endswith(spec[:SHORT]))


@dataclass(frozen=True)
class Checkpoint:
    step: int
    model: str
    metrics: dict[str, float]
    id: str = ""  # the service's checkpoint id: what a deployment names to serve this checkpoint


KEPT = 3  # Azure keeps the checkpoints of the last three epochs


def kept_checkpoints(method: dict[str, Any]) -> int | None:
    """How many checkpoints a job of this method keeps: known only when n_epochs is a number."""
    epochs = canonical((method.get("hyperparameters") or {}).get("n_epochs"))
    return min(KEPT, epochs) if isinstance(epochs, int) and epochs > 0 else None


def deployable(final_model: str, checkpoints: list[Checkpoint]) -> list[dict[str, Any]]:
    """The kept checkpoints, oldest first, each with the name a deployment serves it by: the
    checkpoint id, except the last, which is the fine-tuned model itself."""
    ordered = sorted(checkpoints, key=lambda c: c.step)[-KEPT:]
    return [
        {
            "id": c.id,
            "step": c.step,
            "name": c.model,
            "deploy": final_model if i == len(ordered) - 1 else (c.id or c.model),
            "final": i == len(ordered) - 1,
            "valid_loss": c.metrics.get("full_valid_loss", c.metrics.get("valid_loss")),
            "train_loss": c.metrics.get("train_loss"),
        }
        for i, c in enumerate(ordered)
    ]


def choose_model(final_model: str, checkpoints: list[Checkpoint], policy: str) -> tuple[str, int | None]:
    """(model id to serve, its step). `best_valid_reward` (RFT) takes the checkpoint with the highest
    full validation reward; `best_valid_loss` takes the checkpoint with the lowest full
    validation loss (validation loss when Azure gave no full one); `final` the finished model."""
    if policy not in ("best_valid_loss", "best_valid_reward"):
        return final_model, max((c.step for c in checkpoints), default=None)

    def loss(c: Checkpoint) -> float | None:
        if policy == "best_valid_reward":  # RFT: the highest reward, as a loss to minimise
            reward = c.metrics.get("full_valid_reward_mean", c.metrics.get("valid_reward_mean"))
            return None if reward is None else -float(reward)
        value = c.metrics.get("full_valid_loss", c.metrics.get("valid_loss"))
        return None if value is None else float(value)

    scored = [(loss(c), c) for c in checkpoints if loss(c) is not None]
    if not scored:
        return final_model, max((c.step for c in checkpoints), default=None)
    best_loss = min(score for score, _ in scored if score is not None)
    best = max((c for score, c in scored if score == best_loss), key=lambda c: c.step)  # ties: the later one
    last_step = max(c.step for c in checkpoints)
    return (final_model if best.step == last_step else best.model), best.step
