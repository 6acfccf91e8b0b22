"""A gate as `evaluation` takes it: built once from the environment (`ftops.config.gates`),
carried through Pulumi as the gate resource's inputs (`wire` / `from_wire`, whose keys are these
fields' names), and evaluated the same way by `pulumi up` and `ftops evaluate`.

No field has a default here: the defaults are the environment schema's, so a value the
environment did not set cannot differ between the config, the provider and the evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

BaselineKind = Literal["serving", "base", "teacher", "none"]
# A distilled model's check against its teacher's answers on held-out prompts. Not compared with a
# teacher baseline: the teacher agrees with itself, so the pairing would say nothing.
TEACHER_AGREEMENT = "teacher-agreement"
QUALITY_ONLY = ("min_similarity", "judge_deployment")  # wire keys a safety check does not carry
SAFETY_ONLY = ("categories",)  # and a quality check does not


@dataclass(frozen=True)
class Check:
    name: str
    kind: str  # "quality" or "safety"
    grader: str
    threshold: float
    path: str  # an eval set file, or "builtin" / "pyrit" for the shipped suites
    digest: str  # what the plan saw: a set changed since then stops the gate
    categories: tuple[str, ...]
    min_similarity: float
    judge_deployment: str
    # An Azure (RFT) grader's canonical JSON ("" for a named grader) and the score at which one
    # answer passes (None: the grader's own pass_threshold). Carried only when set, so the state
    # of a gate with named graders keeps its keys.
    grader_spec: str
    pass_score: float | None

    def wire(self) -> dict[str, Any]:
        """As the gate's inputs carry it (and as its state holds it: the same keys as ever, so a
        new ftops does not re-run a gate whose inputs did not change)."""
        skip = SAFETY_ONLY if self.kind == "quality" else QUALITY_ONLY
        out = {k: v for k, v in asdict(self).items() if k not in skip}
        if not self.grader_spec:
            del out["grader_spec"], out["pass_score"]
        if self.kind == "safety":
            out["categories"] = list(self.categories)
        elif not self.judge_deployment:
            out["judge_deployment"] = None
        return out

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> Check:
        return cls(
            name=str(raw["name"]),
            kind=str(raw["kind"]),
            grader=str(raw["grader"]),
            threshold=float(raw["threshold"]),
            path=str(raw["path"]),
            digest=str(raw.get("digest") or ""),
            categories=tuple(raw.get("categories") or ()),
            # A safety check grades refusals: no similarity cut-off applies to it.
            min_similarity=float(raw["min_similarity"]) if raw["kind"] == "quality" else 0.0,
            judge_deployment=str(raw.get("judge_deployment") or ""),
            grader_spec=str(raw.get("grader_spec") or ""),
            pass_score=None if raw.get("pass_score") is None else float(raw["pass_score"]),
        )


@dataclass(frozen=True)
class Policy:
    confidence: float
    repeats: int
    temperature: float
    fail_on_uncertainty: bool
    max_regression: float
    concurrency: int
    seed: int  # repeats sample with seeds seed..seed+repeats-1 (the model's seed)


@dataclass(frozen=True)
class Teacher:
    """A distilled model's teacher as its gate compares with it: declared, not looked up (it may
    serve in another account, whose deployments this identity need not be allowed to read)."""

    model: str  # the model it serves: its rates and the pace its capacity allows
    capacity: int
    endpoint: str  # its account's endpoint; "" when it is the candidate's own account


@dataclass(frozen=True)
class Baseline:
    # serving: what serves now; base: a deployment kept for comparison; teacher: a distilled
    # model's teacher; none
    kind: BaselineKind
    deployment: str | None
    teacher: Teacher | None  # for kind teacher

    def wire(self) -> dict[str, Any]:
        """`teacher` only when set: the inputs of every other gate keep their keys (no re-run)."""
        out: dict[str, Any] = {"kind": self.kind, "deployment": self.deployment}
        if self.teacher is not None:
            out["teacher"] = asdict(self.teacher)
        return out

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> Baseline:
        teacher = raw.get("teacher")
        return cls(
            raw.get("kind") or "none",
            raw.get("deployment"),
            None
            if not teacher
            else Teacher(str(teacher["model"]), int(teacher["capacity"]), str(teacher.get("endpoint") or "")),
        )


@dataclass(frozen=True)
class GateRequest:
    name: str  # the gate's name: the model's key in the environment
    environment: str
    checks: tuple[Check, ...]
    policy: Policy
    baseline: Baseline

    def wire(self) -> dict[str, Any]:
        policy = {k: v for k, v in asdict(self.policy).items() if k != "seed"}
        return {
            "name": self.name,
            "environment": self.environment,
            "checks": [c.wire() for c in self.checks],
            "policy": policy,
            "baseline": self.baseline.wire(),
            "seed": self.policy.seed,
        }

    @classmethod
    def from_wire(cls, props: Mapping[str, Any]) -> GateRequest:
        """From the gate's inputs. A missing key is a KeyError: the provider's `check` reports
        which one before anything runs (`problems`)."""
        raw = props["policy"]
        # Pulumi's wire carries every number as a float: each field is cast to its type.
        policy = Policy(
            confidence=float(raw["confidence"]),
            repeats=int(raw["repeats"]),
            temperature=float(raw["temperature"]),
            fail_on_uncertainty=bool(raw["fail_on_uncertainty"]),
            max_regression=float(raw["max_regression"]),
            concurrency=int(raw["concurrency"]),
            seed=int(props.get("seed") or 0),
        )
        baseline = props.get("baseline") or {}
        return cls(
            name=str(props["name"]),
            environment=str(props.get("environment") or ""),
            checks=tuple(Check.from_wire(c) for c in props["checks"]),
            policy=policy,
            baseline=Baseline.from_wire(baseline),
        )

    @staticmethod
    def problems(props: Mapping[str, Any]) -> list[tuple[str, str]]:
        """What the gate's inputs lack for a request, as (key, reason)."""
        out = [(k, "is required") for k in ("name", "checks", "policy") if props.get(k) is None]
        policy = props.get("policy") or {}
        out += [
            (f"policy.{f.name}", "is required")
            for f in fields(Policy)
            if f.name != "seed" and isinstance(policy, Mapping) and f.name not in policy
        ]
        return out
