"""`ftops cost`: what an environment's declarations cost, before anything runs."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from ftops.cli.common import app, one_line_errors, out, repo_root
from ftops.config.load import load_checked

if TYPE_CHECKING:
    from ftops.cost import CostLine


class CostFormat(StrEnum):
    table = "table"
    markdown = "markdown"
    json = "json"


def render_text(lines: list[CostLine], title: str) -> None:
    from ftops.cli.gitops import TableFormat, _emit
    from ftops.cost import totals, usd

    rows = [(line.item, line.label(), f"per {line.per}", line.basis) for line in lines]
    _emit(title, ("item", "cost", "paid", "basis"), rows, TableFormat.table)
    total = totals(lines)
    out.print(
        f"total: {usd(total['change'])} per change (training), {usd(total['month'])} per month "
        f"(hosting), {usd(total['run'])} per gate run (evaluation)",
        soft_wrap=True,
    )


@app.command("cost")
@one_line_errors
def cost_command(
    env: Annotated[str, typer.Option("--env", help="Environment to price.")],
    output_format: Annotated[
        CostFormat,
        typer.Option("--format", help="table, markdown (the PR comment's cost section) or json."),
    ] = CostFormat.table,
) -> None:
    """What the environment costs: each model's training job, each deployment per month, each gate
    run, from `pricing:` over dated list prices (the table in the README)."""
    from ftops import cost

    root = repo_root()
    environment = load_checked(root, env)
    lines = cost.plan_lines(environment, root)
    if environment.target == "local":
        env = f"{env} (what Azure would bill; the emulator bills nothing)"
    if output_format is CostFormat.json:
        print(cost.as_json(lines))
    elif output_format is CostFormat.markdown:
        print(cost.markdown(lines, f"Cost of {env}"), end="")
    else:
        render_text(lines, f"cost of {env}")
