"""The providers' logic with no Pulumi engine and no network: identities, adoption, statuses,
checkpoint choice, and the dill round trip the engine puts every provider through."""

from __future__ import annotations

import base64
from types import SimpleNamespace
from typing import Any

import dill
import pytest
from pulumi.dynamic.dynamic import serialize_provider

from ftops.providers.deployments import ModelDeploymentProvider
from ftops.providers.files import TrainingFileProvider
from ftops.providers.gate import EvaluationGateProvider
from ftops.providers.jobs import FineTuningJobProvider
from ftops.providers.spec import (
    SPEC_KEYS,
    Checkpoint,
    choose_model,
    digest_in_name,
    file_name,
    is_job_for,
    job_suffix,
    spec_hash,
    status_of,
)

BASE = "gpt-4.1-mini-2025-04-14"
SPEC: dict[str, Any] = {
    "base_model": "gpt-4.1-mini-2025-04-14",
    "training_digest": "a" * 64,
    "validation_digest": None,
    "method": {"type": "supervised", "hyperparameters": {"n_epochs": 3, "batch_size": "auto"}},
    "seed": 42,
    "suffix": "support",
    "training_type": "Standard",
    "attempt": 0,
}


def test_spec_hash_is_stable_and_ignores_what_does_not_train() -> None:
    h = spec_hash(SPEC)
    assert h == spec_hash(dict(reversed(list(SPEC.items()))))
    assert h == spec_hash({**SPEC, "training_file": "file-x", "name": "bot", "wait_timeout_minutes": 5})
    # Pulumi's wire format makes every number a float; the identity must not move.
    assert h == spec_hash(
        {
            **SPEC,
            "seed": 42.0,
            "method": {"type": "supervised", "hyperparameters": {"n_epochs": 3.0, "batch_size": "auto"}},
        }
    )


@pytest.mark.parametrize("key", SPEC_KEYS)
def test_every_identity_input_changes_the_hash(key: str) -> None:
    changed = {**SPEC, key: "something else"}
    assert spec_hash(changed) != spec_hash(SPEC), key


def test_suffix_stays_within_azures_strictest_limit() -> None:
    h = spec_hash(SPEC)
    assert job_suffix("abcdefghij", h) == f"abcdefghij-{h[:7]}"
    assert len(job_suffix("abcdefghij", h)) == 18
    assert job_suffix(None, h) == h[:7]


def test_adoption_by_metadata_then_by_suffix() -> None:
    h = spec_hash(SPEC)
    by_metadata = SimpleNamespace(metadata={"ftops-spec": h}, model="x", user_provided_suffix=None)
    other = SimpleNamespace(
        metadata={"ftops-spec": "0" * 64}, model=BASE, user_provided_suffix=f"support-{h[:7]}"
    )
    by_suffix = SimpleNamespace(metadata=None, model=BASE, user_provided_suffix=f"support-{h[:7]}")
    wrong_model = SimpleNamespace(
        metadata=None, model="gpt-4o-2024-08-06", user_provided_suffix=f"support-{h[:7]}"
    )
    assert is_job_for(by_metadata, h, BASE)
    assert not is_job_for(other, h, BASE)  # metadata wins over a look-alike suffix
    assert is_job_for(by_suffix, h, BASE)
    assert not is_job_for(wrong_model, h, BASE)


def test_statuses_from_both_surfaces() -> None:
    assert [status_of(s) for s in ("validating_files", "created", "pending", "queued")] == ["queued"] * 4
    assert [status_of(s) for s in ("running", "resuming", "pausing")] == ["running"] * 3
    assert [status_of(s) for s in ("paused", "succeeded", "failed", "cancelled")] == [
        "paused",
        "succeeded",
        "failed",
        "cancelled",
    ]


def test_checkpoint_choice() -> None:
    final = "m.ft-1"
    points = [
        Checkpoint(8, "m.ft-1:ckpt-step-8", {"valid_loss": 1.2, "full_valid_loss": 1.1}),
        Checkpoint(16, "m.ft-1:ckpt-step-16", {"valid_loss": 0.8, "full_valid_loss": 0.9}),
        Checkpoint(24, "m.ft-1:ckpt-step-24", {"valid_loss": 0.7, "full_valid_loss": 1.0}),
    ]
    assert choose_model(final, points, "final") == (final, 24)
    assert choose_model(final, points, "best_valid_loss") == ("m.ft-1:ckpt-step-16", 16)  # full loss decides
    tie = [*points[:2], Checkpoint(24, "m.ft-1:ckpt-step-24", {"full_valid_loss": 0.9})]
    assert choose_model(final, tie, "best_valid_loss") == (
        final,
        24,
    )  # a tie goes to the later: the final model
    no_validation = [Checkpoint(8, "a", {"train_loss": 1.0})]
    assert choose_model(final, no_validation, "best_valid_loss") == (final, 8)
    assert choose_model(final, [], "best_valid_loss") == (final, None)


def test_file_names_carry_the_digest() -> None:
    digest = "b" * 64
    name = file_name("data/support bot/train.jsonl", digest)
    assert name == f"train.sha256-{digest}.jsonl"
    assert digest_in_name(name) == digest
    assert digest_in_name("train.jsonl") is None


@pytest.mark.parametrize(
    "provider",
    [TrainingFileProvider(), FineTuningJobProvider(), EvaluationGateProvider(), ModelDeploymentProvider()],
)
def test_providers_survive_the_engines_dill_round_trip(provider: object) -> None:
    restored = dill.loads(base64.b64decode(serialize_provider(provider)))
    assert type(restored) is type(provider)
    assert vars(restored) == {}  # no state rides along in the serialized provider
    result = restored.check({}, {"target": {"endpoint": "ftp://x", "auth": "password"}})  # type: ignore[attr-defined]
    assert ("target.auth", "must be 'entra' or 'env:<VARIABLE>' naming the variable that holds a key") in [
        (f.property, f.reason) for f in result.failures
    ]


def test_endpoints_must_be_https_or_this_machine() -> None:
    from ftops.azure.connection import Target

    def problems(endpoint: str, arm: str = "https://management.azure.com") -> list[str]:
        t = Target(endpoint=endpoint, auth="entra", arm_id="/subscriptions/x", arm_endpoint=arm)
        return [p for p, _ in t.problems()]

    assert problems("https://oai-x.openai.azure.com") == []
    assert problems("http://127.0.0.1:8790/accounts/a") == []
    assert problems("http://127.0.0.1.evil.example/") == ["target.endpoint"]  # a key never leaves unencrypted
    assert problems("http://oai-x.openai.azure.com") == ["target.endpoint"]
    assert problems("https://oai-x.openai.azure.com", arm="http://example.com") == ["target.arm_endpoint"]


def test_a_preview_with_the_account_still_unknown_checks_and_diffs_cleanly() -> None:
    from pulumi.output import Unknown

    from ftops.azure.connection import Target, same_account

    placeholder = Unknown()  # type: ignore[no-untyped-call]
    unknown = {"target": {"endpoint": placeholder, "auth": "entra", "arm_id": placeholder}}
    known = {"target": {"endpoint": "https://oai-x.openai.azure.com/", "auth": "entra", "arm_id": "/s/a"}}
    assert Target.of(unknown).problems() == []
    assert same_account(unknown, known)  # no false "replace" (a retrain) in the preview
    assert Target.of({"target": {"endpoint": "http://example.com", "auth": "entra"}}).problems() == [
        ("target.endpoint", "must be an https:// endpoint (or a local emulator on 127.0.0.1)")
    ]
