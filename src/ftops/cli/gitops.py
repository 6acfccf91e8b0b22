"""`ftops promote`, `rollback`, `audit` and `status`: the GitOps side of the command line."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from ftops.auditlog import Record, verify
from ftops.catalog import short_id
from ftops.cli.common import app, one_line_errors, out, repo_root
from ftops.config.load import load_environment
from ftops.errors import EXIT_INVALID, CheckFailedError, UsageError

if TYPE_CHECKING:  # the GitOps modules reach Azure's clients: imported by the commands that use them
    from ftops.gitops.release import Outcome
    from ftops.gitops.status import Row


class TableFormat(StrEnum):
    table = "table"
    markdown = "markdown"


_FORMAT_HELP = "table (full width when not a terminal) or markdown (for a job summary or PR comment)."


@app.command("promote")
@one_line_errors
def promote_command(
    model: Annotated[str, typer.Argument(help="The model's key, as declared in the environments.")],
    source: Annotated[str, typer.Option("--from", help="The environment the model passed its gates in.")],
    target: Annotated[str, typer.Option("--to", help="The environment whose release pin to write.")],
    pr: Annotated[bool, typer.Option("--pr", help="Commit on a new branch and open a pull request.")] = False,
) -> None:
    """Pin a model that passed its gates in one environment into the next one's release file."""
    from ftops.gitops.release import promote

    _report(out, "promote", promote(repo_root(), model, source, target, pr=pr))


@app.command("rollback")
@one_line_errors
def rollback_command(
    model: Annotated[str, typer.Argument(help="The model's key.")],
    env: Annotated[str, typer.Option("--env", help="The environment to roll back.")],
    reason: Annotated[str, typer.Option("--reason", help="Why; recorded in the commit.")],
    to: Annotated[
        str | None,
        typer.Option("--to", help="A model id pinned earlier, or a git ref; default: the previous pin."),
    ] = None,
    pr: Annotated[bool, typer.Option("--pr", help="Commit on a new branch and open a pull request.")] = False,
) -> None:
    """Restore an earlier release pin as a new commit (history is never rewritten)."""
    from ftops.gitops.release import rollback

    _report(out, "rollback", rollback(repo_root(), model, env, to=to, reason=reason, pr=pr))


@app.command("audit")
@one_line_errors
def audit_command(
    env: Annotated[str, typer.Option("--env", help="Environment whose log to read.")],
    model: Annotated[str | None, typer.Option("--model", help="Only this model's records.")] = None,
    check: Annotated[
        bool, typer.Option("--verify", help="Check the hash chain; exit 1 at the first break.")
    ] = False,
    output_format: Annotated[TableFormat, typer.Option("--format", help=_FORMAT_HELP)] = TableFormat.table,
) -> None:
    """The append-only audit log of applied changes (train, gate, deploy)."""
    root = repo_root()
    from ftops.gitops.logs import audit_log

    log = audit_log(root, load_environment(root, env))
    lines = log.lines()
    if check:
        broken = verify(lines)
        if broken is not None:
            raise CheckFailedError(f"{log.where()}: line {broken.line}: {broken.reason}")
    shown = [r for r in _parsed(lines) if model is None or r.model == model]
    columns = ("#", "time", "actor", "action", "model", "resource", "from -> to", "evidence", "commit")
    rows = [
        (
            str(r.seq),
            r.time,
            r.actor,
            r.action,
            r.model,
            r.resource or "",
            f"{_short(r.from_model)} -> {_short(r.to_model)}",
            (r.evidence_digest or "")[:19],
            (r.commit or "")[:7],
        )
        for r in shown
    ]
    _emit(f"audit log of {env} ({log.where()})", columns, rows, output_format)
    if check:
        out.print(f"audit: ok: {len(lines)} records, chain intact from the first to the last")


@app.command("deltas")
@one_line_errors
def deltas_command(
    base: Annotated[str, typer.Option("--base", help="The git ref to compare with (the PR's base).")],
    env: Annotated[
        list[str] | None, typer.Option("--env", help="Only these environments (repeatable).")
    ] = None,
    evidence: Annotated[
        list[Path] | None,
        typer.Option(
            "--evidence",
            help="A folder of gate evidence (e.g. downloaded gate-evidence-* artifacts), searched first.",
        ),
    ] = None,
) -> None:
    """Eval deltas of the release pins a change moves, as markdown for the PR comment."""
    from ftops.gitops.deltas import deltas_markdown

    folders = evidence or []
    missing = [f for f in folders if not f.is_dir()]
    if missing:
        raise UsageError(
            f"--evidence {missing[0]}: no such folder", fix="pass a folder of <digest>.json files"
        )
    print(deltas_markdown(repo_root(), base, env, folders), end="")


@app.command("status")
@one_line_errors
def status_command(
    env: Annotated[str, typer.Option("--env", help="Environment to inspect.")],
    output_format: Annotated[TableFormat, typer.Option("--format", help=_FORMAT_HELP)] = TableFormat.table,
    idle_days: Annotated[
        int,
        typer.Option(
            "--idle-days", min=1, max=90, help="Flag deployments with no requests in this many days."
        ),
    ] = 7,
) -> None:
    """What each deployment serves now, its gate verdict, whether git, state and service agree,
    what it costs per hour and whether anyone calls it."""
    root = repo_root()
    from ftops.gitops.status import status_rows

    rows = status_rows(root, load_environment(root, env), idle_days)
    columns = (
        "deployment",
        "model",
        "git says",
        "last applied",
        "gate",
        "service serves",
        "agree",
        "cost/h",
        f"requests ({idle_days} d)",
    )
    cells = [
        (
            row.deployment,
            row.model,
            _short(row.git),
            _short(row.applied),
            row.gate,
            _short(row.serving) if row.serving is not None else row.service_note,
            "yes" if row.agree else "NO",
            f"${row.cost_per_hour:,.2f}",
            row.requests_note
            if row.requests is None
            else (
                f"none: IDLE, ${row.cost_per_hour * 24 * idle_days:,.2f} billed"
                if row.idle
                else f"{row.requests:,}"
            ),
        )
        for row in rows
    ]
    _emit(f"{env}: git, state and service", columns, cells, output_format)
    idle = [row for row in rows if row.idle]
    if idle and output_format is TableFormat.table:
        out.print(
            f"{len(idle)} deployment(s) billed by the hour with no requests in {idle_days} days: "
            f"{', '.join(r.deployment for r in idle)}; remove them from the environment if nobody needs them "
            "(Azure may also delete fine-tuned deployments idle for 15 days)",
            soft_wrap=True,
        )
    if not all(row.agree for row in rows):
        raise typer.Exit(EXIT_INVALID)


def _traffic(row: Row, days: int) -> str:
    if row.requests is None:
        return row.requests_note
    if row.idle:
        return f"none: IDLE, ${row.cost_per_hour * 24 * days:,.2f} billed"
    return f"{row.requests:,}"


def _emit(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], fmt: TableFormat) -> None:
    if fmt is TableFormat.markdown:
        print(markdown_table(title, columns, rows), end="")
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    if out.is_terminal:
        out.print(table)
        return
    # Not a terminal (a CI log, a pipe): Rich would wrap every cell at 80 columns; print the table
    # at its natural width instead, one line per row.
    natural = out.measure(table, options=out.options.update_width(10_000)).maximum
    Console(file=out.file, width=max(natural, 80), highlight=False).print(table)


def markdown_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A heading and a GitHub table, for a job summary or a PR comment."""

    def cell(text: str) -> str:
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ") or " "

    lines = [f"### {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    if not rows:
        lines += ["", "_(no rows)_"]
    return "\n".join(lines) + "\n"


def _parsed(lines: list[str]) -> list[Record]:
    parsed = []
    for line in lines:
        try:
            parsed.append(Record.model_validate_json(line))
        except ValueError:
            continue  # --verify names it; the listing shows what can be read
    return parsed


def _report(out: Console, verb: str, o: Outcome) -> None:
    old = o.old.model if o.old else "(none)"
    out.print(f"{verb}: {o.key} in {o.env}: {old} -> {o.new.model}", soft_wrap=True)
    out.print(f"  wrote {o.path}", soft_wrap=True)
    if o.commit:
        out.print(
            f"  commit {o.commit[:12]}" + (f" on branch {o.branch}" if o.branch else ""), soft_wrap=True
        )
    if o.branch and o.pr_opened:
        out.print("  pull request opened", soft_wrap=True)
    elif o.branch:
        out.print("  open the pull request with:", soft_wrap=True)
        for command in o.pr_commands:
            out.print(f"    {command}", soft_wrap=True)
    elif not o.commit:
        out.print("  review the diff, then commit it on a branch and open a pull request (or use --pr)")


def _short(model: str | None) -> str:
    return short_id(model) if model else "-"
