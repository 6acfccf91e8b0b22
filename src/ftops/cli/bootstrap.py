"""`ftops bootstrap check|preview|up|refresh`: the one-time Azure and GitHub set-up (`bootstrap/`),
a Pulumi project of its own driven through the same engine as the environments' stacks."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ftops.cli.common import app, debug_on, one_line_errors, out, repo_root

bootstrap_app = typer.Typer(
    help="The one-time Azure and GitHub set-up as a Pulumi stack (`bootstrap/`).", no_args_is_help=True
)
app.add_typer(bootstrap_app, name="bootstrap")

StackOption = Annotated[
    str, typer.Option("--stack", help="The bootstrap stack (bootstrap/Pulumi.<stack>.yaml).")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of lines.")]


def _operate(operation: str, stack: str, as_json: bool) -> None:
    from ftops.engine.stack import StackRequest, run_bootstrap

    def say(line: str) -> None:
        if not as_json:
            out.print(line, markup=False, highlight=False, soft_wrap=True)

    request = StackRequest(repo_root(), stack, operation, debug=debug_on())  # type: ignore[arg-type]
    changes, outputs, seconds = run_bootstrap(request, say)
    if as_json:
        print(
            json.dumps(
                {"operation": operation, "stack": stack, "changes": changes, "outputs": outputs},
                indent=2,
                default=str,
            )
        )
        return
    moved = ", ".join(f"{n} {op}" for op, n in sorted(changes.items()) if n) or "no changes"
    out.print(
        f"bootstrap {operation}: stack {stack}: {moved} in {seconds:.0f} s", markup=False, highlight=False
    )
    if outputs:
        out.print(json.dumps(outputs, indent=2, default=str), markup=False, highlight=False)


@bootstrap_app.command("check")
@one_line_errors
def check_command(
    names: Annotated[list[str] | None, typer.Argument(help="Bootstrap stacks (default: all).")] = None,
) -> None:
    """Validate bootstrap stack files; exit 1 on any problem, each on one line."""
    from ftops.bootstrap.settings import load_settings, stack_names
    from ftops.errors import ConfigError

    root = repo_root()
    problems: list[str] = []
    for name in names or stack_names(root):
        try:
            settings = load_settings(root, name)
        except ConfigError as exc:
            problems += exc.problems
            continue
        out.print(
            f"{name:10} {settings.repository} in subscription {settings.subscription_id}; "
            f"environments: {', '.join(settings.environments)}; runner: {settings.runner.label}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    for line in problems:
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)


@bootstrap_app.command("preview")
@one_line_errors
def preview_command(stack: StackOption, as_json: AsJson = False) -> None:
    """Show what `ftops bootstrap up` would change, after a refresh that reports drift."""
    _operate("preview", stack, as_json)


@bootstrap_app.command("up")
@one_line_errors
def up_command(stack: StackOption, as_json: AsJson = False) -> None:
    """Create or reconcile the bootstrap: identities, roles, state, GitHub settings, the runner;
    prints the outputs the environment files and workflows need."""
    _operate("up", stack, as_json)


@bootstrap_app.command("refresh")
@one_line_errors
def refresh_command(stack: StackOption, as_json: AsJson = False) -> None:
    """Read the bootstrap's resources back and report drift (a reviewer removed, a role widened)."""
    _operate("refresh", stack, as_json)
