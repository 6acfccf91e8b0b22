"""A crashed update's lock: whose it is, and whether it provably belongs to no live update.

The file and Azure Blob backends keep one JSON object per running update under
`.pulumi/locks/organization/<project>/<stack>/` (a file, or a blob in the state container) with
the CLI's pid, user, host and start time. A lock is stale when it was taken on this host by a
process that no longer exists; only then is it cleared without being asked (for other backends,
a CI workflow whose concurrency group proves no other update runs says so with `--break-lock`).
Pulumi's own issues on stale locks in CI are open (pulumi/pulumi#9047, #3600).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse


@dataclass(frozen=True)
class Lock:
    where: str  # the lock file, or the lock blob's name in the state container
    pid: int
    username: str
    hostname: str
    started: datetime | None

    def owner(self) -> str:
        return f"{self.username}@{self.hostname} pid {self.pid}"

    def age(self, now: datetime | None = None) -> str:
        if self.started is None:
            return "of unknown age"
        seconds = max(0, int(((now or datetime.now(UTC)) - self.started).total_seconds()))
        if seconds < 120:
            return f"{seconds} s old"
        if seconds < 7200:
            return f"{seconds // 60} min old"
        return f"{seconds // 3600} h old"

    def alive(self) -> bool:
        """Could the update that took this lock still be running?"""
        if self.hostname != socket.gethostname():
            return True  # another machine's process: nothing here can prove it gone
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # exists, owned by someone else
        # A killed CLI whose parent died too lingers as a zombie until init reaps it: not running.
        try:
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        return state != "Z"


def file_backend_dir(backend_url: str) -> Path | None:
    parsed = urlparse(backend_url)
    if parsed.scheme != "file":
        return None
    return Path(unquote(parsed.netloc + parsed.path)).expanduser()


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _lock(where: str, raw: bytes | None) -> Lock:
    try:
        data = json.loads(raw or b"")
        return Lock(
            where,
            int(data.get("pid") or -1),
            str(data.get("username", "?")),
            str(data.get("hostname", "?")),
            _parse_time(data.get("timestamp")),
        )
    except (ValueError, AttributeError, TypeError):
        return Lock(where, -1, "?", "?", None)  # unreadable: treated as held


def _prefix(project: str, stack: str) -> str:
    return f".pulumi/locks/organization/{project}/{stack}/"


class FileLocks:
    """The locks of a `file://` backend."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def locks(self, project: str, stack: str) -> list[Lock]:
        found = []
        for path in sorted((self.base / _prefix(project, stack)).glob("*.json")):
            try:
                raw: bytes | None = path.read_bytes()
            except OSError:
                raw = None
            found.append(_lock(str(path), raw))
        return found

    def remove(self, lock: Lock) -> None:
        Path(lock.where).unlink(missing_ok=True)


class BlobLocks:
    """The locks of an `azblob://<container>` backend, read with the credentials the CLI takes
    (AZURE_STORAGE_KEY or _SAS_TOKEN for the account in AZURE_STORAGE_ACCOUNT, else Entra ID) at
    the address it would use (`domain`, `protocol` and `localemu` as the URL says: Azurite's form)."""

    def __init__(self, container: Any) -> None:
        self.container = container

    @classmethod
    def of(cls, backend_url: str) -> BlobLocks | None:
        parsed = urlparse(backend_url)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        account = query.get("storage_account") or os.environ.get("AZURE_STORAGE_ACCOUNT", "")
        if not parsed.netloc or not account:
            return None
        protocol, domain = query.get("protocol", "https"), query.get("domain", "blob.core.windows.net")
        local = query.get("localemu", "").lower() in ("true", "1")
        account_url = f"{protocol}://{domain}/{account}" if local else f"{protocol}://{account}.{domain}"
        from azure.storage.blob import ContainerClient

        from ftops.azure.connection import azure_credential

        credential: Any
        if os.environ.get("AZURE_STORAGE_KEY"):
            credential = {"account_name": account, "account_key": os.environ["AZURE_STORAGE_KEY"]}
        elif os.environ.get("AZURE_STORAGE_SAS_TOKEN"):
            credential = os.environ["AZURE_STORAGE_SAS_TOKEN"]
        else:
            credential = azure_credential()
        return cls(ContainerClient(account_url, parsed.netloc, credential=credential))

    def locks(self, project: str, stack: str) -> list[Lock]:
        from azure.core.exceptions import ResourceNotFoundError

        found = []
        for blob in sorted(
            b.name for b in self.container.list_blobs(name_starts_with=_prefix(project, stack))
        ):
            if not blob.endswith(".json"):
                continue
            try:
                raw: bytes | None = self.container.download_blob(blob).readall()
            except ResourceNotFoundError:
                continue  # released since it was listed
            found.append(_lock(blob, raw))
        return found

    def remove(self, lock: Lock) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        with contextlib.suppress(ResourceNotFoundError):
            self.container.delete_blob(lock.where)


LockStore = FileLocks | BlobLocks


def store_of(backend_url: str) -> LockStore | None:
    """Where a backend keeps its locks, when ftops can read them there (file and Azure Blob)."""
    base = file_backend_dir(backend_url)
    if base is not None:
        return FileLocks(base)
    if urlparse(backend_url).scheme == "azblob":
        return BlobLocks.of(backend_url)
    return None


def stack_locks(backend_url: str, project: str, stack: str) -> list[Lock] | None:
    """The locks on a stack; None when the backend is not one ftops can read."""
    store = store_of(backend_url)
    return None if store is None else store.locks(project, stack)


def _under_a_live_cli(pid: int) -> bool:
    """Whether a Pulumi CLI is among the process's ancestors: the plugin runs under a `sh` wrapper
    (`pulumi-resource-pulumi-python`) that the CLI starts. The CLI is told by its executable's name
    (`pulumi`, or a packager's wrapped `.pulumi-wrapped`), read from /proc/<pid>/exe."""
    for _ in range(4):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        if pid <= 1:
            return False
        try:
            name = Path(os.readlink(f"/proc/{pid}/exe")).name
        except OSError:
            return True  # cannot tell: count it as live, never stop what might be in use
        if name == "pulumi" or name.startswith(".pulumi"):
            return True
    return False


def orphaned_providers(root: Path) -> list[int]:
    """The process groups of dynamic-provider hosts (`python -m pulumi.dynamic`) that a dead update
    left running in this repository: the CLI starts each plugin in a process group of its own, so a
    crash that kills the CLI's group leaves them inside their create(), waiting on a job. Linux
    only (reads /proc); the plugin runs in the program's folder, below the repository."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    here = root.resolve()
    groups = set()
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if b"pulumi.dynamic" not in argv:
                continue
            cwd = Path(os.readlink(entry / "cwd")).resolve()
            if cwd != here and here not in cwd.parents:
                continue
            if _under_a_live_cli(int(entry.name)):
                continue  # a live update's provider
            groups.add(os.getpgid(int(entry.name)))
        except (OSError, ValueError, IndexError):
            continue
    return sorted(groups)


def stop(groups: list[int], grace: float = 5.0) -> None:
    """SIGTERM each process group, then SIGKILL what is still there after `grace` seconds."""
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + grace
    alive = list(groups)
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [g for g in alive if _group_alive(g)]
    for group in alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True
