"""What an environment's stack says and where its audit log is, outside a Pulumi run: both come
from its `Site`, the stack's outputs through the engine `ftops up` drives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftops.auditlog import AuditLog, open_log
from ftops.azure.connection import Target
from ftops.config.schema import Environment
from ftops.config.site import Site


def audit_log(root: Path, env: Environment) -> AuditLog:
    return open_log(Site(env, root).audit())


def stack_outputs(root: Path, stack: str) -> dict[str, Any] | None:
    """The stack's outputs through the engine `ftops up` drives (same CLI, backend and passphrase),
    or None when the CLI or the stack's state cannot be reached here."""
    from ftops.engine.stack import read_outputs  # the engine loads pulumi.automation: only when asked

    return read_outputs(root, stack)


def account_target(root: Path, env: Environment) -> Target | None:
    """The environment's account: the emulator's, or the Azure account its stack created (None
    until it has)."""
    site = Site(env, root)
    return site.target(None if site.local else stack_outputs(root, env.name))
