"""Gate requests for tests that build one by hand: the values a test does not care about are
spelled once here (the environment schema's defaults live in ftops.config.schema; the request
itself has none, on purpose)."""

from __future__ import annotations

from typing import Any

from ftops.evaluation.request import Check, Policy

POLICY: dict[str, Any] = {
    "confidence": 0.95,
    "repeats": 1,
    "temperature": 0.0,
    "fail_on_uncertainty": True,
    "max_regression": 0.0,
    "concurrency": 8,
}


def a_policy(**overrides: Any) -> Policy:
    return Policy(**{**POLICY, "seed": 0, **overrides})


def a_check(name: str, kind: str, grader: str, threshold: float, path: str, **overrides: Any) -> Check:
    fields: dict[str, Any] = {
        "digest": "",
        "categories": (),
        "min_similarity": 0.75,
        "judge_deployment": "",
        "grader_spec": "",
        "pass_score": None,
    }
    return Check(name, kind, grader, threshold, path, **{**fields, **overrides})


def wire_check(name: str, path: str, digest: str, grader: str, threshold: float) -> dict[str, Any]:
    """A quality check as the gate provider's inputs carry it."""
    return a_check(name, "quality", grader, threshold, path, digest=digest).wire()
