"""`AuditEntry`: appends a record to the environment's audit log when what it watches changes.

One entry follows one thing (a model's training job, its gate, a deployment) and depends on it,
so Pulumi creates or updates the entry only after that change was applied: a record means the
change happened. The record says from which model to which, with the evidence digest, the
actor, commit and CI run (see `ftops.auditlog`). Replacing nothing, reading nothing: the log
itself is the state, append-only.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult

from ftops.auditlog import Change, open_log
from ftops.providers.args import AuditEntryArgs
from ftops.providers.base import inputs_of

WATCHED = ("to_model", "evidence_digest")  # a change in these is a change worth a record
ACTIONS = ("train", "gate", "deploy")


def _change(props: dict[str, Any], from_model: str | None, to_model: str | None) -> Change:
    return Change(
        environment=str(props["environment"]),
        model=str(props["model"]),
        action=props["action"],
        resource=props.get("resource"),
        from_model=from_model,
        to_model=to_model,
        evidence_digest=props.get("evidence_digest"),
        details=dict(props.get("details") or {}),
    )


class AuditEntryProvider(ResourceProvider):
    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        if news.get("action") not in ACTIONS:
            failures.append(CheckFailure("action", f"must be one of {', '.join(ACTIONS)}"))
        audit = news.get("audit") or {}
        if audit.get("kind") not in ("file", "blob"):
            failures.append(CheckFailure("audit.kind", "must be 'file' or 'blob'"))
        for key in ("environment", "model"):
            if not news.get(key):
                failures.append(CheckFailure(key, "is required"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return DiffResult(changes=any(olds.get(k) != news.get(k) for k in (*WATCHED, "details")), replaces=[])

    def create(self, props: dict[str, Any]) -> CreateResult:
        record = open_log(props["audit"]).append(
            _change(props, None, props.get("to_model"))  # a first record: from nothing
        )
        pulumi.log.info(f"audit: {record.action} {record.model}: -> {record.to_model} (record {record.seq})")
        return CreateResult(
            f"{props['environment']}/{props['action']}/{props['model']}",
            {**inputs_of(props, ("seq",)), "seq": record.seq},
        )

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        seq = olds.get("seq")
        if any(olds.get(k) != news.get(k) for k in WATCHED):
            record = open_log(news["audit"]).append(_change(news, olds.get("to_model"), news.get("to_model")))
            pulumi.log.info(
                f"audit: {record.action} {record.model}: {record.from_model} -> {record.to_model} "
                f"(record {record.seq})"
            )
            seq = record.seq
        return UpdateResult({**inputs_of(news, ("seq",)), "seq": seq})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        if props.get("action") == "deploy":  # a deployment removed is a change of what serves
            open_log(props["audit"]).append(_change(props, props.get("to_model"), None))


class AuditEntry(pulumi.dynamic.Resource):
    seq: pulumi.Output[int]

    def __init__(self, name: str, args: AuditEntryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(AuditEntryProvider(), name, {**args.inputs(), "seq": None}, opts)
