"""Which audit log belongs to an environment, and what a stack's outputs say, without Pulumi's state
at hand: the local stack's log is a file in the repository's `.ftops/`, an Azure environment's
is the append blob `<env>.jsonl` in its storage account's audit container."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from ftops.auditlog import AuditLog, open_log
from ftops.config.schema import Environment
from ftops.naming import names_for


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
    """The stack's outputs through the engine `ftops up` drives (same CLI, backend and passphrase),
    or None when the CLI or the stack's state cannot be reached here."""
    from ftops.engine.stack import read_outputs  # the engine loads pulumi.automation: only when asked

    return read_outputs(root, stack)
