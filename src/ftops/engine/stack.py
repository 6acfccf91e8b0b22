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
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pulumi import automation as auto

from ftops.azure.failures import translate
from ftops.config.load import load_checked
from ftops.config.schema import Environment
from ftops.config.site import evidence_folder
from ftops.config.yamlfiles import environment_names
from ftops.engine import install, locks
from ftops.engine.events import Renderer
from ftops.errors import EngineError, FtopsError, StackFailedError, StackInterruptedError, UsageError

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
    planned: dict[str, str] = field(default_factory=dict)  # resource name -> step


def shown(path: Path) -> Path:
    """A path relative to the working directory when it is below it (shorter in messages)."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def state_dir(root: Path) -> Path:
    """Where the local stack's state lives: beside the emulator's, so a second run finds both."""
    return root / ".ftops" / "pulumi-state"


def engine_environment(root: Path, env: Environment, engine: install.Engine) -> dict[str, str]:
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
            state_dir(root).mkdir(parents=True, exist_ok=True)
            extra["PULUMI_BACKEND_URL"] = state_dir(root).as_uri()
        if not {"PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE"} & os.environ.keys():
            # The local stack holds no secret; its committed encryptionsalt is for the empty passphrase.
            extra["PULUMI_CONFIG_PASSPHRASE"] = ""
    return extra


def _backend_url(extra: dict[str, str]) -> str:
    return extra.get("PULUMI_BACKEND_URL") or os.environ.get("PULUMI_BACKEND_URL", "")


def _workspace(root: Path, engine: install.Engine, extra: dict[str, str]) -> auto.LocalWorkspaceOptions:
    """The repository as the workspace: its Pulumi.yaml (stackConfigDir, refresh) and stack files."""
    try:
        # Asked here first with its output captured: PulumiCommand lets a failing CLI's stderr through.
        subprocess.run([str(engine.cli), "version"], capture_output=True, text=True, timeout=60, check=True)
        command = auto.PulumiCommand(root=str(engine.root), skip_version_check=True)
    except subprocess.CalledProcessError as exc:
        said = (exc.stderr or exc.stdout or "").strip().splitlines()
        raise EngineError(
            f"the Pulumi CLI at {engine.cli} does not run: `pulumi version` exited {exc.returncode}"
            + (f" ({said[-1]})" if said else ""),
            fix=install.INSTALL_HINT,
        ) from None
    except (OSError, subprocess.SubprocessError, auto.InvalidVersionError) as exc:
        raise EngineError(
            f"the Pulumi CLI at {engine.cli} does not run ({exc})", fix=install.INSTALL_HINT
        ) from None
    return auto.LocalWorkspaceOptions(work_dir=str(root), pulumi_command=command, env_vars=extra)


def _hint(env: Environment, extra: dict[str, str], message: str) -> str | None:
    """The fix for what the CLI said when it could not start the operation."""
    if "incorrect passphrase" in message and env.target == "local":
        return (
            "the local stack's committed encryptionsalt is for the empty passphrase: "
            "unset PULUMI_CONFIG_PASSPHRASE"
        )
    if "passphrase" in message:
        return "set PULUMI_CONFIG_PASSPHRASE (or _FILE) to the stack's passphrase"
    if env.target != "local":
        where = _backend_url(extra) or "the Pulumi CLI's login"
        return f"check the state backend ({where}); README: Running against Azure"
    return None


def select(req: StackRequest, env: Environment, engine: install.Engine, extra: dict[str, str]) -> auto.Stack:
    """The stack of the environment. Only the local stack is created on first use: an Azure stack
    that is not in the backend means the wrong backend, and creating an empty one there would train
    and deploy everything again next to what already runs."""
    main = req.root / "infra" / "__main__.py"

    def program() -> None:
        runpy.run_path(str(main), run_name="__main__")

    opts = _workspace(req.root, engine, extra)
    try:
        if env.target == "local":
            return auto.create_or_select_stack(
                stack_name=req.env, project_name=PROJECT, program=program, opts=opts
            )
        return auto.select_stack(stack_name=req.env, project_name=PROJECT, program=program, opts=opts)
    except auto.StackNotFoundError:
        where = _backend_url(extra) or "the backend the Pulumi CLI is logged in to"
        raise EngineError(
            f"stack {req.env} does not exist in {where}",
            fix="point PULUMI_BACKEND_URL at the environment's state backend, or create the stack once "
            f"with `pulumi stack init {req.env}` (README: One-time Azure set-up)",
        ) from None
    except auto.CommandError as exc:
        message = _cli_error(exc)
        raise EngineError(
            f"could not select stack {req.env}: {message}", fix=_hint(env, extra, message)
        ) from exc


def _cli_error(exc: auto.CommandError) -> str:
    """The CLI's own `error:` lines out of a CommandError's dump of stdout and stderr."""
    text = str(exc)
    found = [line.split("error:", 1)[1].strip() for line in text.splitlines() if "error:" in line]
    if found:
        return "; ".join(dict.fromkeys(found))
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and line.strip() not in ("stdout:", "stderr:")
    ]
    return lines[-1] if lines else "the Pulumi CLI failed without a message"


def _run_once(stack: auto.Stack, req: StackRequest, renderer: Renderer) -> dict[str, Any]:
    def echo(line: str) -> None:
        print(line, file=sys.stderr)

    # --debug: the CLI's own display and stderr too.
    streams: dict[str, Any] = {"on_output": echo, "on_error": echo} if req.debug else {}
    if req.operation == "up":
        up = stack.up(on_event=renderer, color="never", **streams)
        return {k: v.value for k, v in up.outputs.items()}
    if req.operation == "preview":
        stack.preview(on_event=renderer, color="never", refresh=True, **streams)
        return {}
    if req.operation == "refresh":
        stack.refresh(on_event=renderer, color="never", **streams)
        return {k: v.value for k, v in stack.outputs().items()}
    stack.destroy(on_event=renderer, color="never", **streams)
    return {}


def _clear_stale_lock(
    stack: auto.Stack, req: StackRequest, extra: dict[str, str], say: Callable[[str], None]
) -> None:
    """Remove a crashed update's lock when it provably belongs to no live update; else refuse.

    On a file or Azure Blob backend only the locks found dead are deleted (`pulumi cancel` deletes
    every lock, which could be a live update's that started since they were read). Elsewhere only
    `--break-lock` clears, through `pulumi cancel`."""
    try:
        store = locks.store_of(_backend_url(extra))
        held = None if store is None else store.locks(PROJECT, req.env)
    except Exception as exc:  # the state container's answer, mapped at the Azure edge
        error = translate(exc)
        if error is None:
            raise
        raise EngineError(f"cannot read the locks of stack {req.env}: {error.one_line()}") from exc
    if held == []:
        return  # released since the engine refused: just try again
    owners = ", ".join(f"{lock.owner()}, {lock.age()}" for lock in held or []) or "an update"
    fix = (
        f"when no other update of {req.env} runs, `ftops {req.operation} --env {req.env} --break-lock` "
        f"(or `pulumi cancel --stack {req.env} --yes`) clears it"
    )
    dead = held is not None and not any(lock.alive() for lock in held)
    if not dead and not req.break_lock:
        raise EngineError(f"stack {req.env} is locked by {owners}, which may still be running", fix=fix)
    try:
        if store is not None and held is not None:
            for lock in held:
                store.remove(lock)
        else:
            stack.cancel()
    except (OSError, auto.CommandError, FtopsError) as exc:
        raise EngineError(f"could not clear the lock on stack {req.env}: {exc}", fix=fix) from None
    reason = "its process is gone from this host" if dead else "as asked (--break-lock)"
    say(f"engine: cleared the lock of a crashed update of {req.env} ({owners}): {reason}")
    orphans = locks.orphaned_providers(req.root)
    if orphans:
        # Left alone they would go on waiting on a job (and hold its memory) next to the new update.
        locks.stop(orphans)
        say(
            f"engine: stopped {len(orphans)} provider process group(s) that crashed updates left running "
            f"(pgid {', '.join(map(str, orphans))})"
        )


def _quiet_readers_on_interrupt() -> None:
    """After Ctrl+C the Automation API's output readers (threads named `... (consumer)`) fail on the
    closed pipes with a traceback of their own; the interruption is said once, by `run`."""
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        thread = args.thread.name if args.thread is not None else ""
        if args.exc_type is ValueError and thread.endswith("(consumer)"):
            return
        previous(args)

    threading.excepthook = hook
    # Its event-log watcher warns too, with the interrupt's empty message; any other error still shows.
    warnings.filterwarnings("ignore", message=r"Error in event stream: $", category=UserWarning)


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
    extra = engine_environment(req.root, env, engine)
    stack = select(req, env, engine, extra)
    if not req.debug:
        _quiet_readers_on_interrupt()
    started = time.monotonic()
    for attempt in (1, 2, 3):
        renderer = Renderer(say, verb=req.operation)
        try:
            outputs = _run_once(stack, req, renderer)
            break
        except KeyboardInterrupt:
            raise StackInterruptedError(
                f"{req.operation} of stack {req.env} interrupted",
                fix=f"run `ftops {req.operation} --env {req.env}` again: it clears the lock once this "
                "update's processes are gone and adopts a job that was started",
            ) from None
        except auto.ConcurrentUpdateError as exc:
            if attempt == 3:
                raise EngineError(f"stack {req.env} is still locked: {_cli_error(exc)}") from exc
            _clear_stale_lock(stack, req, extra, say)
        except auto.CommandError as exc:
            lines = renderer.failure_lines()
            if not lines:
                # Nothing ran: the CLI refused before the engine started (config, passphrase, backend).
                message = _cli_error(exc)
                raise EngineError(
                    f"{req.operation} of stack {req.env} could not start: {message}",
                    fix=_hint(env, extra, message),
                ) from exc
            hint = "--debug shows the engine's own output"
            if any(" gate " in f" {line}" for line in lines):
                hint = f"the gate's evidence is under {shown(evidence_folder(req.root, req.env))}; {hint}"
            raise StackFailedError(
                f"{req.operation} of stack {req.env} failed", failures=lines, fix=hint
            ) from exc
    return StackResult(
        operation=req.operation,
        env=env,
        changes=renderer.changes,
        planned=renderer.planned,
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
    extra = engine_environment(root, env, engine)
    try:
        stack = auto.select_stack(
            stack_name=env_name,
            project_name=PROJECT,
            program=lambda: None,
            opts=_workspace(root, engine, extra),
        )
        return {k: v.value for k, v in stack.outputs().items()}
    except (auto.CommandError, EngineError, OSError, subprocess.SubprocessError):
        return None


BOOTSTRAP_PROJECT = "ftops-bootstrap"  # bootstrap/Pulumi.yaml's name


def bootstrap_environment(root: Path, engine: install.Engine) -> dict[str, str]:
    """The bootstrap's first run keeps its state on this machine (`.ftops/bootstrap-state`) until it
    is moved into the container it made (README: One-time Azure set-up); it holds no secret, so the
    passphrase may be empty. GITHUB_TOKEN for pulumi-github comes from `gh auth token` when unset:
    it reaches the provider's environment, never the config or the state."""
    extra = {
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PATH": f"{engine.plugin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    if "PULUMI_BACKEND_URL" not in os.environ:
        folder = root / ".ftops" / "bootstrap-state"
        folder.mkdir(parents=True, exist_ok=True)
        extra["PULUMI_BACKEND_URL"] = folder.as_uri()
    if not {"PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE"} & os.environ.keys():
        extra["PULUMI_CONFIG_PASSPHRASE"] = ""
    if "GITHUB_TOKEN" not in os.environ:
        try:
            token = subprocess.run(
                ["gh", "auth", "token"], capture_output=True, text=True, timeout=30, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            token = ""
        if not token:
            raise UsageError(
                "no GitHub credential for the bootstrap", fix="run `gh auth login` (or set GITHUB_TOKEN)"
            )
        extra["GITHUB_TOKEN"] = token
    return extra


def run_bootstrap(
    req: StackRequest, say: Callable[[str], None]
) -> tuple[dict[str, int], dict[str, Any], float]:
    """`ftops bootstrap up/preview/refresh --stack NAME`: bootstrap/__main__.py run inline, with
    bootstrap/Pulumi.yaml; the stack is created on first use. Returns changes, outputs, seconds."""
    from ftops.bootstrap.settings import BOOTSTRAP_DIR, load_settings

    load_settings(req.root, req.env)  # file:line errors before the engine starts
    engine = install.require(req.root)
    extra = bootstrap_environment(req.root, engine)
    main = req.root / BOOTSTRAP_DIR / "__main__.py"

    def program() -> None:
        runpy.run_path(str(main), run_name="__main__")

    opts = _workspace(req.root / BOOTSTRAP_DIR, engine, extra)
    try:
        stack = auto.create_or_select_stack(
            stack_name=req.env, project_name=BOOTSTRAP_PROJECT, program=program, opts=opts
        )
    except auto.CommandError as exc:
        raise EngineError(
            f"could not select bootstrap stack {req.env}: {_cli_error(exc)}",
            fix=f"check the state backend ({_backend_url(extra)})",
        ) from exc
    if not req.debug:
        _quiet_readers_on_interrupt()
    started = time.monotonic()
    renderer = Renderer(say, verb=req.operation)
    try:
        outputs = _run_once(stack, req, renderer)
    except KeyboardInterrupt:
        raise StackInterruptedError(
            f"{req.operation} of bootstrap stack {req.env} interrupted",
            fix=f"run `ftops bootstrap {req.operation} --stack {req.env}` again",
        ) from None
    except auto.ConcurrentUpdateError as exc:
        raise EngineError(
            f"bootstrap stack {req.env} is locked: {_cli_error(exc)}",
            fix=f"when no other update runs, `pulumi cancel --stack {req.env} --yes` in bootstrap/",
        ) from exc
    except auto.CommandError as exc:
        lines = renderer.failure_lines()
        if not lines:
            raise EngineError(
                f"{req.operation} of bootstrap stack {req.env} could not start: {_cli_error(exc)}"
            ) from exc
        raise StackFailedError(
            f"{req.operation} of bootstrap stack {req.env} failed",
            failures=lines,
            fix="--debug shows the engine's own output",
        ) from exc
    seconds = renderer.seconds if renderer.seconds is not None else time.monotonic() - started
    return renderer.changes, outputs, seconds
