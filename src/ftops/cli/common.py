"""What every command shares: the app, the consoles, the one-line error handler, the repository."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import click
import typer
from rich.console import Console
from typer.core import TyperOption
from typer.exceptions import TyperException

from ftops.azure.failures import translate
from ftops.errors import EXIT_INVALID, FtopsError, UsageError

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
P = ParamSpec("P")
R = TypeVar("R")
_debug = {"on": False}  # set by the --debug option before any command runs
PASS_THROUGH = (
    typer.Exit,
    typer.Abort,
    TyperException,
    click.exceptions.ClickException,
    click.exceptions.Abort,
)


def one_line_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Any failure of the command becomes one line on stderr and its exit code: an FtopsError as
    it is, a library's exception through the Azure edge's mapping (`ftops.azure.failures`), and
    anything else as an unexpected error. `--debug` shows the traceback instead."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (
            typer.Exit,
            typer.Abort,
            TyperException,
            click.exceptions.ClickException,
            click.exceptions.Abort,
        ):
            raise  # typer's own (it vendors click) and click's: their usage errors print as they do
        except Exception as exc:  # the single handler: every command comes through here
            if _debug["on"]:
                raise
            error = exc if isinstance(exc, FtopsError) else translate(exc)
            if error is None:
                detail = " ".join(str(exc).split())[:300]
                error = FtopsError(
                    f"unexpected {type(exc).__name__}: {detail}",
                    fix="rerun with --debug for the traceback, and report it",
                )
                error.exit_code = EXIT_INVALID
            # A failed stack operation names each failed resource on a line of its own first.
            for failure in getattr(error, "failures", []):
                err.print(f"error: {failure}", style="red", markup=False, highlight=False, soft_wrap=True)
            err.print(
                f"error: {error.one_line()}", style="red", markup=False, highlight=False, soft_wrap=True
            )
            raise typer.Exit(error.exit_code) from None

    return run


def _flag_type(self: TyperOption, ctx: Any) -> str | None:  # typer's own (vendored) click.Context
    """No type after a flag in --help: typer prints `<bool>` after every one, as if it took a value."""
    return None if self.is_flag else _option_type(self, ctx)


_option_type = TyperOption.display_type_rich
TyperOption.display_type_rich = _flag_type  # type: ignore[method-assign]

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


def _print_version(asked: bool) -> None:
    if asked:
        from ftops import __version__

        out.print(f"ftops {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print the version and exit."),
    ] = False,
) -> None:
    _debug["on"] = debug
    if not debug:
        # azure-identity logs every credential it tried, at length; the commands say what failed
        # in one line of their own.
        logging.getLogger("azure").setLevel(logging.CRITICAL)


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


def debug_on() -> bool:
    """Whether --debug was given: tracebacks are shown instead of one-line errors."""
    return _debug["on"]


@contextmanager
def answer_progress() -> Iterator[Callable[[str, int, int], None]]:
    """One transient progress bar per check on stderr, fed by the eval runner's `on_answer`
    (label, answered, total): what `ftops evaluate` and `ftops canary` show while they ask."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def on_answer(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = progress.add_task(label, total=total)
            progress.update(tasks[label], completed=done)

        yield on_answer
