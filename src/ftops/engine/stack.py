"""`ftops up / preview / refresh / destroy`: the stack program (`infra/__main__.py`) run inline
through `pulumi.automation` against the Pulumi CLI, with the repository's Pulumi.yaml (stack files
in environments/, refresh always) and its stack config.

The Automation API serves the Python language runtime in-process (`--client`), so no
`pulumi-language-python` plugin is needed: the same commands run with a CLI built from Pulumi's Go
modules and with an official install.
"""

from __future__ import annotations

import os
import runpy
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pulumi import automation as auto

from ftops.config import Environment
from ftops.config_load import environment_names, load_checked
from ftops.engine import install, locks
from ftops.engine.events import Renderer
from ftops.errors import EngineError, FtopsError, StackFailedError, UsageError
from ftops.evaluation.evidence_store import local_folder

Operation = Literal["up", "preview", "refresh", "destroy"]
PROJECT = "ftops"  # Pulumi.yaml's name: the lock folder and stack URNs carry it


@dataclass(frozen=True)
class StackRequest:
    """One stack operation as the CLI asked for it."""

    root: Path
    env: str
    operation: Operation
    break_lock: bool = False  # the caller proves no other update runs (a CI concurrency group)
    debug: bool = False


@dataclass
class StackResult:
    operation: Operation
    env: Environment
    changes: dict[str, int]
    outputs: dict[str, Any]
    seconds: float


def shown(path: Path) -> Path:
    """A path relative to the working directory when it is below it (shorter in messages)."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def state_dir(root: Path) -> Path:
    """Where the local stack's state lives: beside the emulator's, so a second run finds both."""
    return root / ".ftops" / "pulumi-state"


def engine_environment(req: StackRequest, env: Environment, engine: install.Engine) -> dict[str, str]:
    """What the CLI and the providers it starts see, on top of this process's environment."""
    extra = {
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PATH": f"{engine.plugin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    # The dynamic providers run `python -m pulumi.dynamic` with the interpreter that runs ftops.
    if sys.prefix != sys.base_prefix:
        extra["PULUMI_RUNTIME_VIRTUALENV"] = sys.prefix
    else:
        extra["PULUMI_PYTHON_CMD"] = sys.executable
    if env.target == "local":
        if "PULUMI_BACKEND_URL" not in os.environ:
            state_dir(req.root).mkdir(parents=True, exist_ok=True)
            extra["PULUMI_BACKEND_URL"] = state_dir(req.root).as_uri()
        if not {"PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE"} & os.environ.keys():
            # The local stack holds no secret; its committed encryptionsalt is for the empty passphrase.
            extra["PULUMI_CONFIG_PASSPHRASE"] = ""
    return extra


def _backend_url(extra: dict[str, str]) -> str:
    return extra.get("PULUMI_BACKEND_URL") or os.environ.get("PULUMI_BACKEND_URL", "")


def _workspace(root: Path, engine: install.Engine, extra: dict[str, str]) -> auto.LocalWorkspaceOptions:
    """The repository as the workspace: its Pulumi.yaml (stackConfigDir, refresh) and stack files."""
    return auto.LocalWorkspaceOptions(
        work_dir=str(root),
        pulumi_command=auto.PulumiCommand(root=str(engine.root), skip_version_check=True),
        env_vars=extra,
    )


def select(req: StackRequest, env: Environment, engine: install.Engine, extra: dict[str, str]) -> auto.Stack:
    main = req.root / "infra" / "__main__.py"

    def program() -> None:
        runpy.run_path(str(main), run_name="__main__")

    try:
        return auto.create_or_select_stack(
            stack_name=req.env,
            project_name=PROJECT,
            program=program,
            opts=_workspace(req.root, engine, extra),
        )
    except auto.CommandError as exc:
        fix = None
        if env.target != "local" and not _backend_url(extra):
            fix = "set PULUMI_BACKEND_URL to the environment's state backend (README: Running against Azure)"
        raise EngineError(f"could not select stack {req.env}: {_cli_error(exc)}", fix=fix) from None


def _cli_error(exc: auto.CommandError) -> str:
    """The CLI's own `error:` lines out of a CommandError's dump of stdout and stderr."""
    text = str(exc)
    found = [line.split("error:", 1)[1].strip() for line in text.splitlines() if "error:" in line]
    return "; ".join(dict.fromkeys(found)) or text.strip().splitlines()[-1]


def _run_once(stack: auto.Stack, req: StackRequest, renderer: Renderer) -> dict[str, Any]:
    on_output = (lambda line: print(line, file=sys.stderr)) if req.debug else None
    if req.operation == "up":
        up = stack.up(on_event=renderer, on_output=on_output, color="never")
        return {k: v.value for k, v in up.outputs.items()}
    if req.operation == "preview":
        stack.preview(on_event=renderer, on_output=on_output, color="never", refresh=True)
        return {}
    if req.operation == "refresh":
        stack.refresh(on_event=renderer, on_output=on_output, color="never")
        return {k: v.value for k, v in stack.outputs().items()}
    stack.destroy(on_event=renderer, on_output=on_output, color="never")
    return {}


def _clear_stale_lock(
    stack: auto.Stack, req: StackRequest, extra: dict[str, str], say: Callable[[str], None]
) -> None:
    """Cancel a crashed update's lock when it provably belongs to no live update; else refuse."""
    held = locks.stack_locks(_backend_url(extra), PROJECT, req.env)
    owners = ", ".join(f"{lock.owner()}, {lock.age()}" for lock in held or []) or "an update"
    fix = (
        f"when no other update of {req.env} runs, `ftops {req.operation} --env {req.env} --break-lock` "
        f"(or `pulumi cancel --stack {req.env} --yes`) clears it"
    )
    if req.break_lock:
        reason = "as asked (--break-lock)"
    elif held and not any(lock.alive() for lock in held):
        reason = "its process is gone from this host"
    else:
        raise EngineError(f"stack {req.env} is locked by {owners}, which may still be running", fix=fix)
    try:
        stack.cancel()
    except auto.CommandError as exc:
        raise EngineError(
            f"could not clear the lock on stack {req.env}: {_cli_error(exc)}", fix=fix
        ) from None
    say(f"engine: cleared the lock of a crashed update of {req.env} ({owners}): {reason}")
    orphans = locks.orphaned_providers(req.root)
    if orphans:
        # Left alone they would go on waiting on the job (and hold its memory) next to the new update.
        locks.stop(orphans)
        say(
            f"engine: stopped {len(orphans)} provider process group(s) the crashed update left running "
            f"(pgid {', '.join(map(str, orphans))})"
        )


def run(req: StackRequest, say: Callable[[str], None]) -> StackResult:
    """Run one stack operation; StackFailedError names each failed resource in one line."""
    if req.env not in environment_names(req.root):
        raise UsageError(
            f"no environment '{req.env}' (environments/Pulumi.{req.env}.yaml)",
            fix=f"use one of: {', '.join(environment_names(req.root)) or 'none'}",
        )
    # The program validates too, but a bad file is said here with file:line before the engine starts.
    env = load_checked(req.root, req.env)
    engine = install.require(req.root)
    extra = engine_environment(req, env, engine)
    stack = select(req, env, engine, extra)
    started = time.monotonic()
    for attempt in (1, 2):
        renderer = Renderer(say, verb=req.operation)
        try:
            outputs = _run_once(stack, req, renderer)
            break
        except auto.ConcurrentUpdateError:
            if attempt == 2:
                raise EngineError(f"stack {req.env} is still locked after clearing its lock") from None
            _clear_stale_lock(stack, req, extra, say)
        except auto.CommandError as exc:
            lines = renderer.failure_lines() or [_cli_error(exc)]
            hint = "--debug shows the engine's own output"
            if any(" gate " in f" {line}" for line in lines):
                hint = f"the gate's evidence is under {shown(local_folder(req.root, req.env))}; {hint}"
            raise StackFailedError(
                f"{req.operation} of stack {req.env} failed", failures=lines, fix=hint
            ) from None
    return StackResult(
        operation=req.operation,
        env=env,
        changes=renderer.changes,
        outputs=outputs,
        seconds=renderer.seconds if renderer.seconds is not None else time.monotonic() - started,
    )


def read_outputs(root: Path, env_name: str) -> dict[str, Any] | None:
    """The stack's outputs as the last update left them (what `ftops up` would print), or None when
    the engine, the environment or the stack's state cannot be had here."""
    engine = install.find(root)
    if engine is None or env_name not in environment_names(root):
        return None
    try:
        env = load_checked(root, env_name)
    except FtopsError:
        return None
    if env.target == "local" and "PULUMI_BACKEND_URL" not in os.environ and not state_dir(root).is_dir():
        return None  # the local stack was never brought up here
    extra = engine_environment(StackRequest(root, env_name, "refresh"), env, engine)
    try:
        stack = auto.select_stack(
            stack_name=env_name,
            project_name=PROJECT,
            program=lambda: None,
            opts=_workspace(root, engine, extra),
        )
        return {k: v.value for k, v in stack.outputs().items()}
    except (auto.CommandError, OSError):
        return None
