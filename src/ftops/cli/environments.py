"""`ftops env ...`: check, show and diff environment declarations."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ftops.cli.common import env_app, err, one_line_errors, out, repo_root
from ftops.config.load import check_environments, load_checked
from ftops.config.schema import Environment
from ftops.errors import EXIT_INVALID, EXIT_OK, UsageError


@env_app.command("check")
@one_line_errors
def env_check(
    names: Annotated[list[str] | None, typer.Argument(help="Environments (default: all).")] = None,
) -> None:
    """Validate environment declarations and release pins, and the promotion chain between them."""
    root = repo_root()
    checked = check_environments(root, names or None)
    # The named environments only: a source loaded to check the chain is checked when named.
    shown = [p for name in checked.names for p in checked.problems.get(name, [])]
    for problem in shown:
        err.print(problem, style="red", markup=False, soft_wrap=True)
    for name in checked.names:
        e = checked.envs.get(name)
        if e is None or not checked.valid(name):
            count = len(checked.problems.get(name, []))
            out.print(f"{name:<10} [red]invalid[/] ({count} problem(s))")
            continue
        serves = ", ".join(f"{k} ({d.sku.name} x{d.sku.capacity})" for k, d in e.deployments.items())
        source = f", promoted from {e.promotion.from_}" if e.promotion else ""
        out.print(
            f"{name:<10} {e.stage} on {e.target} in {e.location}{source}; "
            f"trains: {', '.join(e.models) or '-'}; "
            f"serves: {serves or '-'}; release pins: {', '.join(e.releases) or '-'}",
            soft_wrap=True,
        )
    valid = sum(checked.valid(name) for name in checked.names)
    out.print(f"{valid} of {len(checked.names)} environment(s) valid, {len(shown)} problem(s)")
    raise typer.Exit(EXIT_INVALID if shown else EXIT_OK)


@env_app.command("show")
@one_line_errors
def env_show(name: Annotated[str, typer.Argument(help="Environment name.")]) -> None:
    """Print an environment as validated, with every default filled in (JSON)."""
    env = load_checked(repo_root(), name)
    print(json.dumps(env.model_dump(mode="json", by_alias=True), indent=2))


@env_app.command("changed")
@one_line_errors
def env_changed(
    base: Annotated[
        str | None, typer.Option("--base", help="The git ref to compare HEAD with (the PR's base).")
    ] = None,
    deployed_tags: Annotated[
        str | None,
        typer.Option(
            "--deployed-tags",
            help="Compare each environment with its own tag PREFIX<env>, the commit it was last "
            "deployed at (the deploy workflow uses ftops-deployed/); no tag means changed.",
            metavar="PREFIX",
        ),
    ] = None,
    local: Annotated[bool, typer.Option("--local", help="Include local (emulator) environments.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list, for a CI matrix.")] = False,
) -> None:
    """Environments whose plan the changes since BASE can alter, sources of the promotion chain first."""
    from ftops.gitops.changes import changed_environments

    if (base is None) == (deployed_tags is None):
        raise UsageError(
            "give one of --base or --deployed-tags",
            fix="ftops env changed --base origin/main, or --deployed-tags ftops-deployed/",
        )
    names = changed_environments(repo_root(), base, include_local=local, deployed_tags=deployed_tags)
    out.print(json.dumps(names) if as_json else "\n".join(names), soft_wrap=True)


@env_app.command("schema")
@one_line_errors
def env_schema() -> None:
    """Print the JSON Schema of `ftops:environment` (for editor completion)."""
    schema = Environment.model_json_schema(by_alias=True)
    schema["properties"].pop("releases", None)
    print(json.dumps(schema, indent=2))
