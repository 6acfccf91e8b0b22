"""`ftops evaluate`: the gate on demand, with a progress bar and the summary a PR comment shows."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ftops.cli.common import answer_progress, app, err, one_line_errors, repo_root
from ftops.config.load import load_environment
from ftops.errors import EXIT_INVALID


@app.command("evaluate")
@one_line_errors
def evaluate_command(
    env: Annotated[str, typer.Option("--env", help="The environment whose gate to run.")],
    model: Annotated[str, typer.Option("--model", help="The model's key, as declared in the environment.")],
    deployment: Annotated[
        str | None,
        typer.Option(help="The deployment to evaluate (default: the model's first serving deployment)."),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Where evidence goes (default: .ftops/evidence/<env>).")
    ] = None,
) -> None:
    """Run the model's gate now and print its summary; exit 1 when the gate fails.

    Writes <digest>.json (the evidence), .md (this summary) and .junit.xml; a rerun resumes
    where an interrupted one stopped.
    """
    from ftops.config.site import evidence_folder
    from ftops.gitops.on_demand import run

    root = repo_root()
    environment = load_environment(root, env)
    folder = out_dir or evidence_folder(root, env)
    with answer_progress() as on_answer:
        result = run(root, environment, model, deployment=deployment, out=folder, on_answer=on_answer)
    print(result.markdown(), end="")
    err.print(result.one_line(), markup=False, highlight=False, soft_wrap=True)
    if not result.passed:
        raise typer.Exit(EXIT_INVALID)
