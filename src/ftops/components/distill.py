"""A distilled model's data: DistillationDataset -> TrainingFile(s), and the gate's comparison
with the teacher (agreement on the held-out prompts the student never trained on)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from ftops.config.schema import DistillFrom, Environment, ModelSpec
from ftops.config.site import account_endpoint
from ftops.evaluation.request import TEACHER_AGREEMENT
from ftops.providers.args import DistillationDatasetArgs, EvaluationGateArgs
from ftops.providers.distillation import DistillationDataset
from ftops.providers.files import TrainingFile
from ftops.providers.spec import sha256_file

AGREEMENT_CHECK = TEACHER_AGREEMENT
AGREEMENT_GRADER = "similarity"


def distill_folder(root: Path, environment: str, key: str) -> Path:
    """Where a distilled model's captured data and journal are kept."""
    return root / ".ftops" / "distill" / environment / key


def teacher_target(
    env: Environment, target: Mapping[str, pulumi.Input[str]], distill: DistillFrom
) -> dict[str, pulumi.Input[str]]:
    """The teacher's account: the student's own, or another one ftops reaches (an emulated account
    next to it; on Azure an account by its custom subdomain, with the same Entra identity)."""
    account = distill.teacher.account
    if account is None:
        return dict(target)
    endpoint = account_endpoint(env, account)
    if env.target == "local":
        return {**target, "endpoint": endpoint, "arm_id": ""}
    return {"endpoint": endpoint, "auth": "entra", "arm_id": ""}


def dataset_args(
    env: Environment, root: Path, key: str, spec: ModelSpec, target: Mapping[str, pulumi.Input[str]]
) -> DistillationDatasetArgs:
    distill = spec.distill_from
    if distill is None:
        raise ValueError(f"model {key} is not distilled")
    prompts = str(root / distill.prompts) if distill.prompts else None
    stored = distill.stored.model_dump(mode="json") if distill.stored else None
    return DistillationDatasetArgs(
        target=dict(target),
        name=key,
        source="prompts" if prompts else "stored",
        prompts_path=prompts,
        prompts_digest=sha256_file(prompts) if prompts else None,
        stored=stored,
        teacher_target=teacher_target(env, target, distill),
        teacher=distill.teacher.model_dump(mode="json", exclude={"account"}),
        sampling=distill.sampling.model_dump(mode="json"),
        max_examples=distill.max_examples,
        quality_filter=distill.quality_filter.model_dump(mode="json") if distill.quality_filter else None,
        validation_split=distill.validation_split,
        held_out=distill.held_out,
        student_base=env.base_of(key),
        folder=str(distill_folder(root, env.name, key)),
        concurrency=8,
    )


@dataclass
class DistilledData:
    dataset: DistillationDataset
    files: dict[str, TrainingFile]
    agreement: dict[str, Any] | None  # the gate's teacher-agreement check, as the gate's inputs carry it


def distilled_files(
    key: str,
    spec: ModelSpec,
    env: Environment,
    root: Path,
    target: Mapping[str, pulumi.Input[str]],
    opts: pulumi.ResourceOptions,
) -> DistilledData:
    """The dataset and the training (and validation) file uploaded from it."""
    distill = spec.distill_from
    if distill is None:
        raise ValueError(f"model {key} is not distilled")
    dataset = DistillationDataset(f"{key}-distilled", dataset_args(env, root, key, spec, target), opts)
    after = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[dataset]))
    files = {
        "training": TrainingFile(
            f"{key}-training", target=target, path=dataset.train_path, digest=dataset.train_digest, opts=after
        )
    }
    if distill.validation_split > 0:
        files["validation"] = TrainingFile(
            f"{key}-validation",
            target=target,
            path=dataset.valid_path.apply(lambda p: p or ""),
            digest=dataset.valid_digest.apply(lambda d: d or ""),
            opts=after,
        )
    agreement = None
    if distill.held_out > 0:
        agreement = {
            "name": AGREEMENT_CHECK,
            "kind": "quality",
            "grader": AGREEMENT_GRADER,
            "threshold": distill.agreement,
            "path": dataset.heldout_path,
            "digest": dataset.heldout_digest.apply(lambda d: f"sha256:{d}"),
            "min_similarity": distill.agreement_similarity,
            "judge_deployment": None,
        }
    return DistilledData(dataset, files, agreement)


@dataclass(frozen=True)
class GateWithTeacher(EvaluationGateArgs):
    """A distilled model's gate: its declared checks, plus agreement with the teacher."""

    agreement: Mapping[str, Any] | None = None

    def inputs(self) -> dict[str, Any]:
        out = {k: v for k, v in super().inputs().items() if k != "agreement"}
        if self.agreement is not None:
            out["checks"] = [*out["checks"], dict(self.agreement)]
        return out
