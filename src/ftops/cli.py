"""The `ftops` command line. Errors become one line on stderr and a stable exit code:
0 ok, 1 the input was checked and is invalid, 2 the command could not run as asked."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

from ftops import __version__, cli_evaluate, cli_gitops, cli_stack
from ftops.catalog import REINFORCEMENT, resolve_base
from ftops.config import Environment
from ftops.config_load import environment_names, load_all, load_checked
from ftops.dataset.report import FileReport, render_github, render_json, render_text
from ftops.dataset.split import split_file
from ftops.dataset.validate import (
    DEFAULT_LINES_PER_RULE,
    DEFAULT_TOKEN_BUDGET,
    ValidateOptions,
    validate_file,
)
from ftops.errors import EXIT_INVALID, EXIT_OK, FtopsError, UsageError

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
P = ParamSpec("P")
R = TypeVar("R")
_debug = {"on": False}  # set by the --debug option before any command runs


def _one_line_errors(command: Callable[P, R]) -> Callable[P, R]:
    """An FtopsError from the command becomes one line on stderr and its exit code."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except FtopsError as exc:
            # A failed stack operation names each failed resource on a line of its own first.
            for failure in getattr(exc, "failures", []):
                err.print(f"error: {failure}", style="red", markup=False, highlight=False, soft_wrap=True)
            if _debug["on"]:
                raise
            err.print(f"error: {exc.one_line()}", style="red", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return run


app = typer.Typer(
    help="Fine-tuned Azure OpenAI models as code: validate data, check environments, and more.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
env_app = typer.Typer(
    help="Check and inspect environment declarations (environments/).", no_args_is_help=True
)
app.add_typer(env_app, name="env")


@app.callback()
def _options(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    _debug["on"] = debug
    if not debug:
        # azure-identity logs every credential it tried, at length; the commands say what failed
        # in one line of their own.
        logging.getLogger("azure").setLevel(logging.CRITICAL)


class Method(StrEnum):
    supervised = "supervised"
    dpo = "dpo"
    reinforcement = "reinforcement"


class Format(StrEnum):
    text = "text"
    json = "json"
    github = "github"


def repo_root() -> Path:
    """The directory holding Pulumi.yaml, from $FTOPS_ROOT or the working directory upwards."""
    if "FTOPS_ROOT" in os.environ:
        return Path(os.environ["FTOPS_ROOT"])
    here = Path.cwd()
    for candidate in (here, *here.parents):
        if (candidate / "Pulumi.yaml").is_file():
            return candidate
    raise UsageError(
        "not inside an ftops repository (no Pulumi.yaml here or above)",
        fix="cd into the repository or set FTOPS_ROOT",
    )


# ---------------------------------------------------------------- validate


@dataclass
class _Target:
    path: Path
    role: str  # training | validation
    method: str | None  # None: detect from the data
    base: str | None
    epochs: int | None


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
            )
        )
        if spec.validation_file:
            targets.append(
                _Target(_shown(root / spec.validation_file), "validation", spec.method.type, base, None)
            )
    return targets


@app.command()
@_one_line_errors
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

    price = price_per_million
    if price is None and environment is not None:
        price = environment.pricing.training_per_million_tokens
    reports = []
    for target in targets:
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

    if output_format is Format.json:
        print(render_json(reports))
    elif output_format is Format.github:
        print(render_github(reports), end="")
    else:
        render_text(reports, out)

    invalid = any(not r.valid for r in reports) or (fail_on_warning and any(r.warnings for r in reports))
    if safety:
        from ftops.evaluation.screening import screen

        for target in targets:
            screening = screen(target.path)
            # Beside a JSON or GitHub report the screening goes to stderr, keeping stdout parseable.
            console = out if output_format is Format.text else err
            console.print(screening.summary(), soft_wrap=True, markup=False, highlight=False)
            invalid = invalid or bool(screening.flags) or (fail_on_warning and bool(screening.warnings))
    if split is not None and not invalid:
        result = split_file(targets[0].path, split, seed, out_dir)
        out.print(
            f"split {targets[0].path} (seed {seed}): {result.train_examples} -> {result.train_path}, "
            f"{result.valid_examples} -> {result.valid_path}",
            soft_wrap=True,
        )
    elif split is not None:
        err.print("not splitting: the file is invalid; fix the errors above first")
    if output_format is Format.text:
        n_files = len(reports)
        verdict = "invalid" if invalid else "valid"
        examples = sum(r.examples for r in reports)
        out.print(f"{n_files} file(s), {examples:,} examples: {verdict}")
    raise typer.Exit(EXIT_INVALID if invalid else EXIT_OK)


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
    if chosen == REINFORCEMENT and validation_file is None:
        raise UsageError(
            "reinforcement fine-tuning needs a validation file (Azure requires one)",
            fix="pass --validation-file PATH",
        )
    targets = [_Target(p, "training", chosen, base_model, epochs) for p in paths]
    if validation_file is not None:
        targets.append(_Target(validation_file, "validation", chosen, base_model, None))
    return targets


def _run_validation(path: Path, options: ValidateOptions, show_progress: bool) -> FileReport:
    if not (show_progress and err.is_terminal and path.is_file()):
        return validate_file(path, options)
    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(f"validating {path.name}", *columns, console=err, transient=True) as bar:
        task = bar.add_task("validate", total=path.stat().st_size)
        return validate_file(path, options, progress=lambda done: bar.update(task, completed=done))


# ---------------------------------------------------------------- env


@env_app.command("check")
@_one_line_errors
def env_check(
    names: Annotated[list[str] | None, typer.Argument(help="Environments (default: all).")] = None,
) -> None:
    """Validate environment declarations and release pins, and the promotion chain between them."""
    root = repo_root()
    envs, problems = load_all(root, names or None)
    for problem in problems:
        err.print(problem, style="red", markup=False, soft_wrap=True)
    for name in names or environment_names(root):
        e = envs.get(name)
        if e is None:
            out.print(f"{name:<10} [red]invalid[/]")
            continue
        serves = ", ".join(f"{k} ({d.sku.name} x{d.sku.capacity})" for k, d in e.deployments.items())
        source = f", promoted from {e.promotion.from_}" if e.promotion else ""
        out.print(
            f"{name:<10} {e.stage} on {e.target} in {e.location}{source}; "
            f"trains: {', '.join(e.models) or '-'}; "
            f"serves: {serves or '-'}; release pins: {', '.join(e.releases) or '-'}",
            soft_wrap=True,
        )
    out.print(f"{len(envs)} environment(s) valid, {len(problems)} problem(s)")
    raise typer.Exit(EXIT_INVALID if problems else EXIT_OK)


@env_app.command("show")
@_one_line_errors
def env_show(name: Annotated[str, typer.Argument(help="Environment name.")]) -> None:
    """Print an environment as validated, with every default filled in (JSON)."""
    env = load_checked(repo_root(), name)
    print(json.dumps(env.model_dump(mode="json", by_alias=True), indent=2))


@env_app.command("changed")
@_one_line_errors
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
@_one_line_errors
def env_schema() -> None:
    """Print the JSON Schema of `ftops:environment` (for editor completion)."""
    schema = Environment.model_json_schema(by_alias=True)
    schema["properties"].pop("releases", None)
    print(json.dumps(schema, indent=2))


emulator_app = typer.Typer(help="The local Azure OpenAI emulator.", no_args_is_help=False)
app.add_typer(emulator_app, name="emulator")


@emulator_app.callback(invoke_without_command=True)
@_one_line_errors
def emulator(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option(help="Address to bind (keep 127.0.0.1 unless you mean it).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port; 0 picks a free one.")] = 8790,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="FTOPS_EMULATOR_KEY", help="Key clients must send (default: generated)."),
    ] = None,
    data_dir: Annotated[Path, typer.Option(help="Where files, jobs, models and SQLite state live.")] = Path(
        ".ftops/emulator"
    ),
    model_cache: Annotated[
        Path | None,
        typer.Option(
            envvar="FTOPS_MODEL_CACHE", help="Where local models are materialized (default: in data-dir)."
        ),
    ] = None,
    stand_in: Annotated[
        str,
        typer.Option(help="Local model behind every Azure base model: smollm2-135m-instruct or tiny-test."),
    ] = "smollm2-135m-instruct",
    provisioning_seconds: Annotated[
        float,
        typer.Option(min=0, help="How long a deployment write keeps its account busy (409s meanwhile)."),
    ] = 2.0,
    fault_error_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share of requests answered 429/500/503.")
    ] = 0,
    fault_latency_ms: Annotated[int, typer.Option(min=0, help="Latency added to every request.")] = 0,
    fault_drop_rate: Annotated[float, typer.Option(min=0, max=1, help="Share of connections dropped.")] = 0,
    fault_fail_job_at_step: Annotated[
        int | None, typer.Option(min=1, help="Every new job fails at this step.")
    ] = None,
) -> None:
    """Run the local Azure OpenAI emulator: files, fine-tuning (real training on the CPU), models,
    chat completions, and ARM-shaped deployments. Stops cleanly on Ctrl+C / SIGTERM."""
    if ctx.invoked_subcommand is not None:
        return
    from ftops.emulator.server import serve
    from ftops.emulator.settings import Faults, Settings, all_stand_ins

    try:
        stand_ins = all_stand_ins(stand_in)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    generated = api_key is None
    settings = Settings(
        host=host,
        port=port,
        data_dir=data_dir,
        model_cache=model_cache,
        stand_in=stand_ins,
        provisioning_seconds=provisioning_seconds,
        faults=Faults(
            error_rate=fault_error_rate,
            latency_ms=fault_latency_ms,
            drop_rate=fault_drop_rate,
            fail_job_at_step=fault_fail_job_at_step,
        ),
        **({} if api_key is None else {"api_key": api_key}),
    )

    def announce(bound_host: str, bound_port: int) -> None:
        url = f"http://{bound_host}:{bound_port}"
        key_note = " (generated; pass --api-key or set FTOPS_EMULATOR_KEY to fix it)" if generated else ""
        lines = [
            f"ftops emulator {__version__} listening on {url}",
            f'  AzureOpenAI(azure_endpoint="{url}", api_version="2024-10-21")',
            f'  OpenAI(base_url="{url}/openai/v1")',
            f"  other accounts: {url}/accounts/<name>",
            f"  deployments (ARM): {url}/subscriptions/<sub>/resourceGroups/<rg>/providers/"
            "Microsoft.CognitiveServices/accounts/<name>/deployments/<name>",
            f"  api key: {settings.api_key}{key_note}",
            f"  data: {data_dir}; base models trained and served as: {stand_in}",
            "Press Ctrl+C to stop.",
        ]
        print("\n".join(lines), flush=True)

    try:
        serve(settings, announce)
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror}", fix="pick another --port"
        ) from None


@emulator_app.command("selftest")
@_one_line_errors
def emulator_selftest(
    endpoint: Annotated[
        str, typer.Option(envvar="FTOPS_EMULATOR_ENDPOINT", help="The running emulator (default: the env's).")
    ] = "",
    api_key: Annotated[
        str, typer.Option(envvar="FTOPS_EMULATOR_KEY", help="The key the emulator printed.")
    ] = "",
    env: Annotated[str, typer.Option(help="A local environment; its first model is trained.")] = "local",
    prompts: Annotated[int, typer.Option(min=1, max=20, help="Training prompts to compare answers on.")] = 6,
) -> None:
    """Train, deploy and query one model of a local environment through a running emulator."""
    from ftops.emulator import selftest

    if not api_key:
        raise UsageError("no emulator key", fix="pass --api-key or set FTOPS_EMULATOR_KEY")
    root = repo_root()
    environment = load_checked(root, env)
    if environment.emulator is None:
        raise UsageError(f"environment '{env}' does not run on the emulator", fix="use --env local")
    outcome = selftest.run(
        environment, root, endpoint or environment.emulator.endpoint, api_key, out, prompts
    )
    out.print(
        f"selftest: ok: {outcome.model} trained {outcome.trained_tokens:,} tokens in {outcome.seconds:.0f} s "
        f"(loss {outcome.first_loss:.2f} -> {outcome.last_loss:.2f}); its answers are closer to the training "
        f"answers on {outcome.improved}/{outcome.prompts} prompts (word F1 {outcome.base_f1:.2f} -> "
        f"{outcome.tuned_f1:.2f})",
        soft_wrap=True,
    )


cli_gitops.register(app, _one_line_errors, repo_root, out)
cli_evaluate.register(app, _one_line_errors, repo_root, out, err)
cli_stack.register(app, _one_line_errors, repo_root, out, lambda: _debug["on"])


@app.command()
def version() -> None:
    """Print the ftops version."""
    out.print(f"ftops {__version__}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
