"""`ftops validate`: training data checked before anything is uploaded."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

from ftops.catalog import REINFORCEMENT, default_base, resolve_base
from ftops.cli.common import app, err, one_line_errors, out, repo_root
from ftops.config.load import load_checked
from ftops.config.schema import Environment
from ftops.dataset.findings import MISSING_VALIDATION_FILE, Finding
from ftops.dataset.findings_report import FileReport, RuleReport, render_github, render_json, render_text
from ftops.dataset.split import split_file, split_paths
from ftops.dataset.validate import (
    DEFAULT_LINES_PER_RULE,
    DEFAULT_TOKEN_BUDGET,
    ValidateOptions,
    validate_file,
)
from ftops.errors import EXIT_INVALID, EXIT_OK, UsageError


class Method(StrEnum):
    supervised = "supervised"
    dpo = "dpo"
    reinforcement = "reinforcement"


class Format(StrEnum):
    text = "text"
    json = "json"
    github = "github"


@dataclass
class _Target:
    path: Path
    role: str  # training | validation
    method: str | None  # None: detect from the data
    base: str | None
    epochs: int | None
    training_type: str = "GlobalStandard"  # the tier that prices its training


def _shown(path: Path) -> Path:
    """A path relative to the working directory when it is below it (shorter in reports)."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def _targets_from_env(env: Environment, model: str | None, root: Path) -> list[_Target]:
    if model is not None and model not in env.models:
        raise UsageError(
            f"environment '{env.name}' trains no model '{model}'",
            fix=f"models there: {', '.join(env.models) or 'none'}",
        )
    if not env.models:
        raise UsageError(
            f"environment '{env.name}' trains no models (it takes release pins)",
            fix="validate the environment that trains them, e.g. --env dev",
        )
    targets = []
    for key, spec in env.models.items():
        if model is not None and key != model:
            continue
        epochs = spec.method.hyperparameters.n_epochs
        base = env.base_of(key)
        targets.append(
            _Target(
                _shown(root / spec.training_file),
                "training",
                spec.method.type,
                base,
                epochs if isinstance(epochs, int) else None,
                spec.training_type,
            )
        )
        if spec.validation_file:
            targets.append(
                _Target(_shown(root / spec.validation_file), "validation", spec.method.type, base, None)
            )
    return targets


@app.command()
@one_line_errors
def validate(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="JSONL training files.", show_default=False)
    ] = None,
    method: Annotated[Method | None, typer.Option(help="Fine-tuning method (default: detected).")] = None,
    base_model: Annotated[str | None, typer.Option(help="Base model; sets tokenizer and limits.")] = None,
    validation_file: Annotated[Path | None, typer.Option(help="Validation JSONL (required for RFT).")] = None,
    epochs: Annotated[
        int | None, typer.Option(min=1, max=50, help="Epochs for billed tokens (default: auto).")
    ] = None,
    token_budget: Annotated[int, typer.Option(min=1, help="Warn above this many tokens per example.")] = (
        DEFAULT_TOKEN_BUDGET
    ),
    price_per_million: Annotated[
        float | None,
        typer.Option(min=0, envvar="FTOPS_TRAINING_PRICE_PER_MILLION", help="USD per 1M training tokens."),
    ] = None,
    output_format: Annotated[Format, typer.Option("--format", help="Report format.")] = Format.text,
    max_lines: Annotated[int, typer.Option(min=1, help="Findings listed per rule.")] = DEFAULT_LINES_PER_RULE,
    env: Annotated[str | None, typer.Option(help="Validate the data of this environment's models.")] = None,
    model: Annotated[str | None, typer.Option(help="With --env: only this model.")] = None,
    split: Annotated[
        float | None, typer.Option(help="Write a train/validation split with this fraction.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for --split.")] = 0,
    out_dir: Annotated[
        Path | None, typer.Option(help="Where --split writes (default: next to the input).")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Let --split replace the files of an earlier split.")
    ] = False,
    fail_on_warning: Annotated[bool, typer.Option(help="Exit 1 on warnings too.")] = False,
    safety: Annotated[
        bool,
        typer.Option(
            "--safety",
            help="Also screen what the model would learn to say for harmful content (ftops[eval]).",
        ),
    ] = False,
) -> None:
    """Check training data before anything is uploaded.

    Format, roles, tools, images, exact token counts against the model's limits, duplicates,
    secrets and PII, billed tokens and the estimated cost. Exit 0 valid, 1 invalid, 2 usage error.
    """
    environment = load_checked(repo_root(), env) if env is not None else None
    targets = _collect_targets(paths, method, base_model, validation_file, epochs, environment, model)
    if split is not None and (len(targets) != 1 or environment):
        raise UsageError("--split takes exactly one file", fix="ftops validate FILE --split 0.1 --seed 7")
    if split is not None:
        split_paths(targets[0].path, split, out_dir, overwrite)  # refused before the file is read
    elif out_dir is not None or overwrite:
        raise UsageError("--out-dir and --overwrite go with --split", fix="add --split FRACTION")

    reports = []
    for target in targets:
        price = price_per_million
        if price is None and environment is not None and target.base is not None:
            from ftops.cost import rates_for

            price = rates_for(environment, target.base, target.training_type).training_per_million
        options = ValidateOptions(
            method=target.method,
            base_model=target.base,
            epochs=target.epochs,
            token_budget=token_budget,
            lines_per_rule=max_lines,
            price_per_million=price,
            role=target.role,
        )
        reports.append(_run_validation(target.path, options, show_progress=output_format is Format.text))
        if target.role == "training" and target.method is None:
            # The validation file is read as the method its training file was detected as.
            for later in targets:
                if later.role == "validation" and later.method is None:
                    later.method = reports[-1].method

    if environment is None and validation_file is None:
        # Azure refuses reinforcement fine-tuning without a validation file: one more error of the
        # training file's report, beside its own findings (an --env declaration is checked for it).
        reports = [
            _with_missing_validation_file(r) if r.method == REINFORCEMENT and r.role == "training" else r
            for r in reports
        ]
    if safety:
        from ftops.evaluation.screening import screen

        # The screening's findings join the file's report: every format shows what decides the exit.
        reports = [screen(t.path).added_to(r, max_lines) for t, r in zip(targets, reports, strict=True)]

    if output_format is Format.json:
        print(render_json(reports, fail_on_warning))
    elif output_format is Format.github:
        print(render_github(reports, fail_on_warning), end="")
    else:
        render_text(reports, out, fail_on_warning)

    invalid = not all(r.passes(fail_on_warning) for r in reports)
    if split is not None and not invalid:
        created = out_dir is not None and not out_dir.is_dir()
        replaced = overwrite and _split_exists(targets[0].path, split, out_dir)
        result = split_file(targets[0].path, split, seed, out_dir, overwrite)
        notes = [f"created {out_dir}"] if created else []
        notes += ["replaced the earlier split"] if replaced else []
        out.print(
            f"split {targets[0].path} (seed {seed}): {result.train_examples} -> {result.train_path}, "
            f"{result.valid_examples} -> {result.valid_path}" + (f" ({'; '.join(notes)})" if notes else ""),
            soft_wrap=True,
        )
    elif split is not None:
        err.print("not splitting: the file is invalid; fix the errors above first")
    if environment is not None and output_format is Format.text:
        _print_cost_plan(environment, model)
    if output_format is Format.text:
        n_files = len(reports)
        verdict = "invalid" if invalid else "valid"
        examples = sum(r.examples for r in reports)
        out.print(f"{n_files} file(s), {examples:,} examples: {verdict}")
    raise typer.Exit(EXIT_INVALID if invalid else EXIT_OK)


def _print_cost_plan(environment: Environment, model: str | None) -> None:
    """What the environment's declarations cost: the same lines as `ftops cost` and the PR comment."""
    from ftops import cost
    from ftops.cli.costs import render_text

    lines = [
        line
        for line in cost.plan_lines(environment, repo_root())
        if model is None or line.item.split(" ")[1] == model
    ]
    render_text(lines, f"cost plan of {environment.name}")


def _collect_targets(
    paths: list[Path] | None,
    method: Method | None,
    base_model: str | None,
    validation_file: Path | None,
    epochs: int | None,
    env: Environment | None,
    model: str | None,
) -> list[_Target]:
    if env is not None:
        if paths or validation_file or base_model or method:
            raise UsageError(
                "--env takes the files, base model and method from the environment",
                fix="drop the paths and --base-model/--method/--validation-file, or drop --env",
            )
        return _targets_from_env(env, model, repo_root())
    if model is not None:
        raise UsageError("--model needs --env", fix="ftops validate --env dev --model support-bot")
    if not paths:
        raise UsageError("nothing to validate", fix="pass JSONL files or --env ENV")
    chosen = method.value if method else None
    if base_model is not None:
        try:
            base = resolve_base(base_model)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if chosen is None and base.methods == {REINFORCEMENT}:
            chosen = REINFORCEMENT
    elif chosen is not None:
        base_model = default_base(chosen)  # --method reinforcement alone: the model that offers it
    targets = [_Target(p, "training", chosen, base_model, epochs) for p in paths]
    if validation_file is not None:
        targets.append(_Target(validation_file, "validation", chosen, base_model, None))
    return targets


def _with_missing_validation_file(report: FileReport) -> FileReport:
    missing = RuleReport.of(
        MISSING_VALIDATION_FILE,
        1,
        [Finding(MISSING_VALIDATION_FILE.code, 0, "reinforcement fine-tuning needs a validation file")],
    )
    return report.model_copy(update={"errors": [*report.errors, missing]})


def _split_exists(path: Path, fraction: float, out_dir: Path | None) -> bool:
    train, valid = split_paths(path, fraction, out_dir, overwrite=True)
    return train.exists() or valid.exists()


def _run_validation(path: Path, options: ValidateOptions, show_progress: bool) -> FileReport:
    if not (show_progress and err.is_terminal and path.is_file()):
        return validate_file(path, options)
    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(f"validating {path.name}", *columns, console=err, transient=True) as bar:
        task = bar.add_task("validate", total=path.stat().st_size)
        return validate_file(path, options, progress=lambda done: bar.update(task, completed=done))
