"""`DistillationDataset`: a student's training data captured from a teacher deployment.

Its identity is what it was made from: the prompt set's sha256 (or the stored-completions
filter), the teacher (account, deployment, model), the sampling and the split. The same inputs
are the same dataset (no capture, no new file, no new job); a changed prompt set or teacher
replaces it, which changes the training file's digest and so plans a new job in the same preview.
A capture killed half-way is resumed from its journal (one line per answered prompt, keyed by
the prompt's digest): re-running asks only the prompts not answered yet.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

from ftops.azure.connection import Target, account_of
from ftops.evaluation import distillation as distill
from ftops.providers.args import DistillationDatasetArgs
from ftops.providers.base import PROVIDER_KEY, inputs_of, unknown
from ftops.providers.spec import sha256_file

OUTPUTS = (
    "train_path",
    "train_digest",
    "valid_path",
    "valid_digest",
    "heldout_path",
    "heldout_digest",
    "counts",
    "dropped",
    "usage",
)
# Where the files are kept on this machine, and how the key is found: not what the dataset is.
NOT_IDENTITY = ("folder", "target", "teacher_target", "prompts_path", "concurrency")


def identity(props: dict[str, Any]) -> str:
    """The sha256 of everything that decides the dataset's content."""
    view = {k: v for k, v in inputs_of(props, OUTPUTS).items() if k not in NOT_IDENTITY}
    view["teacher_account"] = account_of({"target": props.get("teacher_target") or {}})
    return hashlib.sha256(json.dumps(view, sort_keys=True, default=str).encode()).hexdigest()


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(str(value)) if value else None


def build(props: dict[str, Any]) -> dict[str, Any]:
    """Capture (or read) the teacher's answers and write the dataset; the outputs."""
    key = identity(props)
    folder = Path(str(props["folder"])) / key[:16]
    teacher = props["teacher"]
    sampling = props["sampling"]
    client = Target.of({"target": props["teacher_target"]}).client()
    seed = int(sampling.get("seed") or 0)
    max_examples = int(props["max_examples"]) if props.get("max_examples") else None
    split = float(props["validation_split"])
    held_out = int(props["held_out"])
    dropped: dict[str, int] = {}
    usage: dict[str, float] = {}
    if props.get("source") == "stored":
        stored = props["stored"] or {}
        examples = distill.read_stored(
            client,
            distill.StoredFilter(
                dict(stored.get("metadata") or {}),
                stored.get("model"),
                _time(stored.get("created_after")),
                _time(stored.get("created_before")),
            ),
        )
        roles = distill.stored_roles(examples, max_examples, split, held_out, seed)
        examples = [e for e in examples if e.digest in roles]
    else:
        path = Path(str(props["prompts_path"]))
        actual = sha256_file(str(path))
        if actual != props["prompts_digest"]:
            raise ValueError(
                f"{path} changed after the plan was made (sha256 {actual[:12]}...); run `pulumi up` again"
            )
        planned = distill.plan(
            path,
            max_tokens=int(sampling["max_tokens"]),
            max_examples=max_examples,
            validation_split=split,
            held_out=held_out,
            seed=seed,
        )
        call = distill.TeacherCall(
            str(teacher["deployment"]),
            str(teacher["model"]),
            int(teacher["capacity"]),
            float(sampling["temperature"]),
            seed,
            int(props.get("concurrency") or 8),
        )
        teacher_account = "/".join(account_of({"target": props["teacher_target"]}))
        journal = distill.journal_path(folder, planned.prompts, call, teacher_account)
        total = len(planned.prompts.items)
        step = max(1, total // 10)

        def progress(done: int, of: int) -> None:
            if done == of or done % step == 0:
                pulumi.log.info(f"{props['name']}: teacher {call.deployment} answered {done}/{of} prompts")

        answers, runner, recovered = distill.capture(client, call, planned.prompts, journal, progress)
        if runner.stats.resumed:
            pulumi.log.info(
                f"{props['name']}: {runner.stats.resumed} answers taken from the journal {journal} "
                f"({recovered} of them read back from the teacher's stored completions)"
            )
        stats = runner.stats
        pulumi.log.info(
            f"{props['name']}: {stats.requests} request(s) to the teacher, {stats.throttled} throttled "
            f"(429), {stats.retried} retried (timeouts, 5xx)"
        )
        examples, blocked = distill.examples_from(planned.prompts, answers)
        dropped["content_filter"] = blocked
        roles = planned.roles
        usage = distill.usage_of(answers.values())
        quality = props.get("quality_filter")
        if quality:
            examples, failed = distill.quality_filter(
                examples, str(quality["grader"]), float(quality.get("min_similarity") or 0.75)
            )
            dropped["quality_filter"] = failed
    dataset = distill.write(
        folder, examples, roles, seed, str(props["student_base"]), int(sampling.get("max_tokens") or 256)
    )
    dataset.dropped, dataset.usage = dropped, usage
    (folder / "manifest.json").write_text(json.dumps(dataset.manifest(), indent=2, sort_keys=True))
    pulumi.log.info(
        f"{props['name']}: dataset {dataset.digests['train'][:12]}: "
        + ", ".join(f"{role} {n}" for role, n in dataset.counts.items())
        + (f"; dropped {dropped}" if any(dropped.values()) else "")
    )
    out: dict[str, Any] = {"counts": dataset.counts, "dropped": dropped, "usage": usage}
    for role in ("train", "valid", "heldout"):
        out[f"{role}_path"] = str(dataset.files[role]) if role in dataset.files else None
        out[f"{role}_digest"] = dataset.digests.get(role)
    return out


class DistillationDatasetProvider(ResourceProvider):
    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = [CheckFailure(p, r) for p, r in Target.of(news).problems()]
        failures += [
            CheckFailure(f"teacher_target.{p.split('.', 1)[1]}", r)
            for p, r in Target.of({"target": news.get("teacher_target")}).problems()
        ]
        source = news.get("source")
        if source not in ("prompts", "stored"):
            failures.append(CheckFailure("source", "must be 'prompts' or 'stored'"))
        if source == "prompts":
            path = news.get("prompts_path")
            if not unknown(path) and not Path(str(path)).is_file():
                failures.append(CheckFailure("prompts_path", f"no such prompt set '{path}'"))
        for key in ("deployment", "model", "capacity"):
            if not (news.get("teacher") or {}).get(key):
                failures.append(CheckFailure(f"teacher.{key}", "is required"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = identity(olds) != identity(news)
        missing = any(
            olds.get(f"{role}_path") and not Path(str(olds[f"{role}_path"])).is_file()
            for role in ("train", "valid", "heldout")
        )
        replaces = ["prompts_digest"] if changed or missing else []
        return DiffResult(changes=bool(replaces), replaces=replaces, delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(identity(props)[:32], {**inputs_of(props, OUTPUTS), **build(props)})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        keep = {k: olds.get(k) for k in OUTPUTS}
        return UpdateResult({**inputs_of(news, OUTPUTS), **keep})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        for role in ("train", "valid", "heldout"):
            path = props.get(f"{role}_path")
            if path and (
                not Path(str(path)).is_file() or sha256_file(str(path)) != props.get(f"{role}_digest")
            ):
                pulumi.log.warn(
                    f"{props.get('name')}: the {role} file {path} is gone or changed here; the next "
                    "`pulumi up` captures it again (answers already in the journal are not asked twice)"
                )
        return ReadResult(id_, {k: v for k, v in props.items() if k != PROVIDER_KEY})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        # The files and the journal stay: they are the record of what the teacher said.
        pulumi.log.info(f"{props.get('name')}: keeping the captured dataset in {props.get('folder')}")


class DistillationDataset(pulumi.dynamic.Resource):
    train_path: pulumi.Output[str]
    train_digest: pulumi.Output[str]
    valid_path: pulumi.Output[str | None]
    valid_digest: pulumi.Output[str | None]
    heldout_path: pulumi.Output[str | None]
    heldout_digest: pulumi.Output[str | None]
    usage: pulumi.Output[dict[str, float]]

    def __init__(
        self, name: str, args: DistillationDatasetArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            DistillationDatasetProvider(), name, {**args.inputs(), **dict.fromkeys(OUTPUTS)}, opts
        )
