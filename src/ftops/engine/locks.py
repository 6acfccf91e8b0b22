"""A crashed update's lock: whose it is, and whether it provably belongs to no live update.

The file backend keeps one JSON file per running update under `.pulumi/locks/organization/
<project>/<stack>/` with the CLI's pid, user, host and start time. A lock is stale when it was taken
on this host by a process that no longer exists; only then is it cleared without being asked (for
other backends, a CI workflow whose concurrency group proves no other update runs says so with
`--break-lock`). Pulumi's own issues on stale locks in CI are open (pulumi/pulumi#9047, #3600).
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
                int(data.get("pid") or -1),
                str(data.get("username", "?")),
                str(data.get("hostname", "?")),
                _parse_time(data.get("timestamp")),
            )
        )
    return locks


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
