"""`TrainingFile`: a training or validation file, identified by the sha256 of its bytes.

The same content is uploaded once: the digest is part of the uploaded file's name, so a provider
that crashed after uploading (or another stack) finds the file and adopts it. Editing the JSONL
changes the digest, which replaces the file and, through the job's spec, plans a new job.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import openai
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

from ftops.azure.connection import Target, backoff, same_account
from ftops.providers.base import inputs_of, unknown
from ftops.providers.spec import digest_in_name, file_name, sha256_file

WAIT_SECONDS = 30 * 60
UPLOAD_ATTEMPTS = 5


class TrainingFileProvider(ResourceProvider):
    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = [CheckFailure(p, r) for p, r in Target.of(news).problems()]
        digest = str(news.get("digest", ""))
        if unknown(news.get("digest")) or unknown(news.get("path")):
            # A distilled dataset's file is known once its capture ran: checked at create.
            return CheckResult(news, failures)
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            failures.append(CheckFailure("digest", "must be the file's sha256 as 64 lowercase hex digits"))
        if news.get("purpose", "fine-tune") != "fine-tune":
            failures.append(CheckFailure("purpose", "must be 'fine-tune'"))
        path = str(news.get("path", ""))
        if not os.path.isfile(path):
            failures.append(CheckFailure("path", f"no such file '{path}'"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [k for k in ("digest", "purpose") if olds.get(k) != news.get(k)]
        if not same_account(olds, news):
            replaces.append("target")
        if olds.get("drift") and "digest" not in replaces:
            replaces.append("digest")  # the uploaded copy is gone: upload the same bytes again
        # The path is where this checkout keeps the bytes (a laptop, a CI runner): not a change.
        changes = bool(replaces)
        return DiffResult(changes=changes, replaces=replaces, delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        target = Target.of(props)
        client = target.client()
        path, digest = str(props["path"]), str(props["digest"])
        actual = sha256_file(path)
        if actual != digest:
            raise ValueError(
                f"{path} changed after the plan was made (sha256 {actual[:12]}..., planned "
                f"{digest[:12]}...); run `pulumi up` again"
            )
        found = self._find(client, digest)
        if found is not None:
            pulumi.log.info(f"{path}: adopting {found.id}, uploaded earlier with the same content")
        else:
            found = self._upload(client, path, digest)
            pulumi.log.info(f"{path}: uploaded as {found.id}")
        done = self._wait(client, found.id, path)
        outs = {
            **inputs_of(props),
            "file_id": done.id,
            "bytes": done.bytes,
            "filename": done.filename,
            "status": done.status,
            "drift": "",
        }
        return CreateResult(done.id, outs)

    @staticmethod
    def _find(client: openai.OpenAI, digest: str) -> Any:
        for f in client.files.list(purpose="fine-tune"):
            if digest_in_name(f.filename) == digest and f.status not in ("deleted", "deleting"):
                return f
        return None

    def _upload(self, client: openai.OpenAI, path: str, digest: str) -> Any:
        """Upload once per attempt; before trying again, look for the copy a lost response may have
        left behind, so a flaky connection never leaves two copies."""
        once = client.with_options(max_retries=0)
        for attempt in range(UPLOAD_ATTEMPTS):
            try:
                with open(path, "rb") as fh:
                    return once.files.create(file=(file_name(path, digest), fh), purpose="fine-tune")
            except (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError) as exc:
                if attempt == UPLOAD_ATTEMPTS - 1:
                    raise
                pulumi.log.warn(f"{path}: upload failed ({type(exc).__name__}); checking for it and retrying")
                time.sleep(backoff(attempt))
                found = self._find(client, digest)
                if found is not None:
                    return found
        raise RuntimeError("unreachable")  # the loop returns or raises

    @staticmethod
    def _wait(client: openai.OpenAI, file_id: str, path: str) -> Any:
        delay, deadline = 0.5, time.monotonic() + WAIT_SECONDS
        while True:
            f = client.files.retrieve(file_id)
            if f.status == "processed":
                return f
            if f.status == "error":
                reason = getattr(f, "status_details", None) or "no reason given"
                raise ValueError(f"{path}: the service rejected file {file_id}: {reason}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{path}: file {file_id} is still {f.status} after {WAIT_SECONDS // 60} min"
                )
            time.sleep(delay)
            delay = min(delay * 2, 10.0)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        client = Target.of(props).client()
        try:
            f = client.files.retrieve(id_)
        except openai.NotFoundError:
            message = (
                f"file {id_} ({props.get('path')}) was deleted out of band; the next `pulumi up` uploads the "
                "same bytes again (jobs are identified by content, so none is retrained)"
            )
            pulumi.log.warn(message)
            return ReadResult(id_, {**inputs_of(props), "status": "deleted", "drift": message})
        return ReadResult(id_, {**inputs_of(props), "status": f.status, "bytes": f.bytes, "drift": ""})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        keep = {k: olds.get(k) for k in ("file_id", "bytes", "filename", "status", "drift")}
        return UpdateResult({**inputs_of(news), **keep})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        # Files are content-addressed and adopted by anyone with the same bytes (another model, another
        # stack on the account): deleting one resource must not pull the file from under the others.
        pulumi.log.info(
            f"{props.get('path')}: keeping file {id_} (shared by content; delete it by hand if unused)"
        )


class TrainingFile(pulumi.dynamic.Resource):
    file_id: pulumi.Output[str]
    digest: pulumi.Output[str]
    status: pulumi.Output[str]
    drift: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        target: Mapping[str, Any],
        path: pulumi.Input[str],
        digest: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "target": dict(target),
            "path": path,
            "digest": digest,
            "purpose": "fine-tune",
            "file_id": None,
            "bytes": None,
            "filename": None,
            "status": None,
            "drift": None,
        }
        super().__init__(TrainingFileProvider(), name, props, opts)
