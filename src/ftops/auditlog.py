"""The append-only audit log: one JSON record per applied change, each carrying the hash of the
one before it, so that removing, reordering or editing any record breaks the chain at that point.

Two stores with the same format (JSON Lines, one record per line):
- a local file for the local stack (`.ftops/audit/<env>.jsonl`), appended under an exclusive lock;
- an Azure append blob per environment in the storage account's audit container (immutable with
  protected append writes), appended with an append-position condition so two writers cannot
  interleave: the loser re-reads the tail and chains onto it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import random
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

GENESIS = "sha256:" + "0" * 64
# canary: a check of what serves against its gate evidence (it changes nothing, it is recorded);
# budget-override: a change allowed to spend over its training budget, with the reason
Action = Literal["train", "gate", "deploy", "promote", "rollback", "canary", "budget-override"]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seq: int
    time: str
    actor: str
    commit: str | None
    run_url: str | None
    environment: str
    model: str  # the declared model (key in the environment)
    action: Action
    resource: str | None = None  # the deployment or job the change applied to
    from_model: str | None
    to_model: str | None
    evidence_digest: str | None = None
    details: dict[str, Any] = {}
    stack_version: str | None = None
    nonce: str = ""  # one per change: a retried append finds its own earlier write instead of repeating it
    prev_hash: str
    hash: str

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"hash"})


def record_hash(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Change:
    """What a caller knows about a change; the log adds sequence, time, who and where."""

    environment: str
    model: str
    action: Action
    from_model: str | None
    to_model: str | None
    resource: str | None = None
    evidence_digest: str | None = None
    details: dict[str, Any] | None = None


def _git_user_name() -> str | None:
    """git's `user.name`: who a commit would name, where no variable says (a container, cron)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["git", "config", "user.name"], capture_output=True, text=True, check=False, timeout=10
        )
        return done.stdout.strip() or None if done.returncode == 0 else None
    return None


def context() -> dict[str, str | None]:
    """Who and where: GitHub Actions' variables in CI, git and the user name elsewhere."""
    env = os.environ
    run_url = None
    if env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        run_url = f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
    commit = env.get("GITHUB_SHA")
    if not commit:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(
                ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False, timeout=10
            )
            commit = done.stdout.strip() or None if done.returncode == 0 else None
    actor = (
        env.get("FTOPS_ACTOR")
        or env.get("GITHUB_ACTOR")
        or env.get("USER")
        or env.get("LOGNAME")
        or _git_user_name()
        or "unknown"
    )
    return {
        "actor": actor,
        "commit": commit,
        "run_url": run_url,
        "stack_version": env.get("FTOPS_STACK_VERSION"),
    }


def make_record(
    change: Change, seq: int, prev_hash: str, when: dt.datetime | None = None, nonce: str = ""
) -> Record:
    ctx = context()
    body = {
        "seq": seq,
        "time": (when or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds"),
        "actor": ctx["actor"],
        "commit": ctx["commit"],
        "run_url": ctx["run_url"],
        "environment": change.environment,
        "model": change.model,
        "action": change.action,
        "resource": change.resource,
        "from_model": change.from_model,
        "to_model": change.to_model,
        "evidence_digest": change.evidence_digest,
        "details": change.details or {},
        "stack_version": ctx["stack_version"],
        "nonce": nonce or secrets.token_hex(8),
        "prev_hash": prev_hash,
    }
    return Record(**body, hash=record_hash(body))


@dataclass(frozen=True)
class Broken:
    line: int  # 1-based line of the first bad record
    reason: str


def verify(lines: list[str]) -> Broken | None:
    """The first link that does not hold: unparsable, edited (hash), out of order or cut (prev_hash, seq)."""
    prev, expected_seq = GENESIS, 1
    for number, line in enumerate(lines, 1):
        try:
            record = Record.model_validate_json(line)
        except ValueError as exc:
            return Broken(number, f"not a valid record ({str(exc).splitlines()[0]})")
        if record_hash(record.body()) != record.hash:
            return Broken(number, f"record {record.seq} was changed after it was written (hash mismatch)")
        if record.prev_hash != prev:
            return Broken(
                number, f"record {record.seq} does not follow the record before it (prev_hash mismatch)"
            )
        if record.seq != expected_seq:
            return Broken(
                number, f"record {record.seq} where {expected_seq} was expected (a record is missing)"
            )
        prev, expected_seq = record.hash, expected_seq + 1
    return None


class AuditLog(Protocol):
    def append(self, change: Change) -> Record: ...
    def lines(self) -> list[str]: ...
    def where(self) -> str: ...


def records(log: AuditLog) -> list[Record]:
    return [Record.model_validate_json(line) for line in log.lines()]


def _tail(lines: list[str], where: str = "the audit log") -> tuple[int, str]:
    if not lines:
        return 1, GENESIS
    try:
        last = Record.model_validate_json(lines[-1])
    except ValueError:
        raise RuntimeError(
            f"{where}: the last record (line {len(lines)}) is unreadable, so nothing can be chained onto it; "
            "`ftops audit --verify` shows it; restore the log from its blob version or backup"
        ) from None
    return last.seq + 1, last.hash


class FileAuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def where(self) -> str:
        return str(self.path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[Any]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield fh
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def lines(self) -> list[str]:
        if not self.path.exists():
            return []
        return [line for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def append(self, change: Change) -> Record:
        with self._locked() as fh:
            fh.seek(0)
            seq, prev = _tail([line for line in fh.read().splitlines() if line.strip()], self.where())
            record = make_record(change, seq, prev)
            fh.seek(0, os.SEEK_END)
            fh.write(record.model_dump_json() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return record


class BlobAuditLog:
    """One append blob per environment. `client` is an azure.storage.blob BlobClient (Entra
    credential on Azure; Azurite's well-known development account in tests)."""

    ATTEMPTS = 40

    def __init__(self, client: Any) -> None:
        self.client = client

    def where(self) -> str:
        return str(self.client.url)

    def lines(self) -> list[str]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            text = self.client.download_blob().readall().decode("utf-8")
        except ResourceNotFoundError:
            return []
        return [line for line in text.splitlines() if line.strip()]

    def append(self, change: Change) -> Record:
        from azure.core.exceptions import HttpResponseError, ResourceExistsError

        with contextlib.suppress(ResourceExistsError):
            self.client.create_append_blob(if_none_match="*")
        nonce = secrets.token_hex(8)
        for attempt in range(self.ATTEMPTS):
            raw = self.client.download_blob().readall()
            lines = [line for line in raw.decode("utf-8").splitlines() if line.strip()]
            mine = [line for line in lines if f'"nonce":"{nonce}"' in line]
            if mine:  # an earlier attempt was written although its response was lost
                return Record.model_validate_json(mine[-1])
            seq, prev = _tail(lines, self.where())
            record = make_record(change, seq, prev, nonce=nonce)
            try:
                # Only if nobody appended since we read: else re-read and chain onto theirs.
                self.client.append_block(
                    (record.model_dump_json() + "\n").encode(), appendpos_condition=len(raw)
                )
            except HttpResponseError as exc:
                if exc.status_code == 412:
                    time.sleep(random.uniform(0, 0.05 * (attempt + 1)))  # jitter: writers stop colliding
                    continue
                raise
            return record
        raise RuntimeError(f"{self.where()}: could not append after {self.ATTEMPTS} attempts (busy log)")


def open_log(spec: dict[str, Any]) -> AuditLog:
    """An audit log from its description in a provider's inputs or a stack output:
    {"kind": "file", "path": ...} or {"kind": "blob", "account_url": ..., "container": ..., "blob": ...}."""
    if spec.get("kind") == "file":
        return FileAuditLog(Path(spec["path"]))
    if spec.get("kind") == "blob":
        from ftops.azure.connection import container_client

        return BlobAuditLog(container_client(spec).get_blob_client(spec["blob"]))
    raise ValueError(f"unknown audit log kind {spec.get('kind')!r}: expected 'file' or 'blob'")
