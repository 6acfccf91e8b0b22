"""`ftops emulator`: the local Azure OpenAI emulator and its selftest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ftops import __version__
from ftops.cli.common import app, one_line_errors, out, repo_root
from ftops.config.load import load_checked
from ftops.errors import CheckFailedError, UsageError

emulator_app = typer.Typer(
    help="Run the local Azure OpenAI emulator until Ctrl+C, or `selftest` a running one.",
    no_args_is_help=False,
)
app.add_typer(emulator_app, name="emulator")


@emulator_app.callback(invoke_without_command=True)
@one_line_errors
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
    rft_pause_after_seconds: Annotated[
        float | None,
        typer.Option(min=0, help="Pause RFT jobs after this much training, as Azure does at $5,000."),
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
        rft_pause_after_seconds=rft_pause_after_seconds,
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
@one_line_errors
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
    if not outcome.moved:
        raise CheckFailedError(
            outcome.summary(),
            fix="raise n_epochs or learning_rate_multiplier of the model, or check the stand-in",
        )
    out.print(outcome.summary(), soft_wrap=True)
