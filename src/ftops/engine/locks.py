"""A crashed update's lock: whose it is, and whether it provably belongs to no live update.

The file backend keeps one JSON file per running update under `.pulumi/locks/organization/
<project>/<stack>/` with the CLI's pid, user, host and start time. A lock is stale when it was taken
on this host by a process that no longer exists; only then is it cleared without being asked (for
other backends, a CI workflow whose concurrency group proves no other update runs says so with
`--break-lock`). Pulumi's own issues on stale locks in CI are open (pulumi/pulumi#9047, #3600).
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlparse


@dataclass(frozen=True)
class Lock:
    path: Path
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
        return True


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


def stack_locks(backend_url: str, project: str, stack: str) -> list[Lock] | None:
    """The locks on a stack of a file backend; None when the backend is not one ftops can read."""
    base = file_backend_dir(backend_url)
    if base is None:
        return None
    folder = base / ".pulumi" / "locks" / "organization" / project / stack
    locks = []
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            locks.append(Lock(path, -1, "?", "?", None))  # unreadable: treated as held
            continue
        locks.append(
            Lock(
                path,
                int(data.get("pid", -1)),
                str(data.get("username", "?")),
                str(data.get("hostname", "?")),
                _parse_time(data.get("timestamp")),
            )
        )
    return locks
