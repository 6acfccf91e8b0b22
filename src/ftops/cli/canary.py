"""`ftops canary`: the gate's checks against what serves now, compared with the gate's evidence."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ftops.cli.common import answer_progress, app, err, one_line_errors, repo_root
from ftops.config.load import load_environment
from ftops.errors import EXIT_INVALID


@app.command("canary")
@one_line_errors
def canary_command(
    env: Annotated[str, typer.Option("--env", help="The environment whose serving deployments to check.")],
    model: Annotated[
        str | None, typer.Option("--model", help="Only this model (default: every gated model it serves).")
    ] = None,
    share: Annotated[
        float,
        typer.Option(
            "--share",
            min=0.01,
            max=0.5,
            help="Share of the serving deployment's capacity to use (default 0.1).",
        ),
    ] = 0.1,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Where evidence goes (default: .ftops/evidence/<env>/canary)."),
    ] = None,
    issue: Annotated[
        bool, typer.Option("--issue", help="On a regression, open or update one GitHub issue (needs gh).")
    ] = False,
) -> None:
    """Ask each serving deployment its gate's questions again and compare with the gate's evidence.

    Exit 1 on a regression (or a check below its threshold), with the numbers, where the evidence
    is and the rollback command; nothing is ever changed. Every run is appended to the audit log.
    """
    from ftops.gitops.canary import open_issue, run

    root = repo_root()
    environment = load_environment(root, env)
    with answer_progress() as on_answer:
        reports = run(
            root,
            environment,
            models=[model] if model else None,
            share=share,
            out=out_dir,
            on_answer=on_answer,
        )
    for report in reports:
        print(report.markdown(), end="")
        err.print(report.one_line(), markup=False, highlight=False, soft_wrap=True)
        if issue and not report.passed:
            err.print(open_issue(root, report), markup=False, highlight=False, soft_wrap=True)
    if any(not r.passed for r in reports):
        raise typer.Exit(EXIT_INVALID)
