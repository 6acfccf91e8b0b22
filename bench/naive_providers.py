"""Providers as they are commonly written, for bench/bench_providers.py to compare against: every
read re-lists what the account has (all jobs, all files, all deployments) and picks its own."""

from __future__ import annotations

from typing import Any

from pulumi.dynamic import ReadResult

from ftops.azure.connection import Target, arm_call
from ftops.providers.deployments import ModelDeploymentProvider
from ftops.providers.files import TrainingFileProvider
from ftops.providers.jobs import FineTuningJobProvider


class NaiveFileProvider(TrainingFileProvider):
    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        client = Target.of(props).client()
        mine = [f for f in client.files.list() if f.id == id_]  # every file, every time
        list(client.fine_tuning.jobs.list())
        return ReadResult(id_, {**props, "status": mine[0].status if mine else "deleted"})


class NaiveJobProvider(FineTuningJobProvider):
    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        client = Target.of(props).client()
        mine = [j for j in client.fine_tuning.jobs.list() if j.id == id_]  # every job, every page
        list(client.files.list())
        list(client.fine_tuning.jobs.checkpoints.list(id_))
        return ReadResult(id_, {**props, "status": mine[0].status if mine else "deleted"})


class NaiveDeploymentProvider(ModelDeploymentProvider):
    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        target = Target.of(props)
        url = f"{target.arm_endpoint}{target.arm_id}/deployments"
        listed = arm_call("GET", url, target.arm_headers()).json()["value"]
        mine = [d for d in listed if d["name"] == id_]
        return ReadResult(id_ if mine else None, props if mine else {})
