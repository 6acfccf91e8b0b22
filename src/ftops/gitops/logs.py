"""Which audit log belongs to an environment, and what a stack's outputs say, without Pulumi's state
at hand: the local stack's log is a file in the repository's `.ftops/`, an Azure environment's
is the append blob `<env>.jsonl` in its storage account's audit container."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Literal

from ftops.components.naming import names_for
from ftops.config import Environment
from ftops.gitops.audit import AuditLog, open_log


def storage_container(env: Environment, role: Literal["training", "evidence", "audit"]) -> dict[str, Any]:
    """An Azure environment's container (`audit`, `evidence`, ...) as `container_client` takes it."""
    assert env.storage is not None  # an azure environment always has storage (validated)
    return {
        "account_url": f"https://{names_for(env).storage}.blob.core.windows.net",
        "container": env.storage.containers[role],
    }


def audit_spec(root: Path, env: Environment) -> dict[str, Any]:
    if env.target == "local":
        return {"kind": "file", "path": str(root / ".ftops" / "audit" / f"{env.name}.jsonl")}
    return {"kind": "blob", **storage_container(env, "audit"), "blob": f"{env.name}.jsonl"}


def audit_log(root: Path, env: Environment) -> AuditLog:
    return open_log(audit_spec(root, env))


def stack_outputs(root: Path, stack: str) -> dict[str, Any] | None:
    """`pulumi stack output --json` when the Pulumi CLI and the stack's state are reachable."""
    if shutil.which("pulumi") is None:
        return None
    try:
        done = subprocess.run(
            ["pulumi", "stack", "output", "--json", "--stack", stack],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    try:
        outputs = json.loads(done.stdout)
    except ValueError:
        return None
    return outputs if isinstance(outputs, dict) else None
