"""`ftops distill`: a distilled model's capture, priced before it runs (--dry-run) or run now."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from ftops.cli.common import app, one_line_errors, out, repo_root
from ftops.config.load import load_checked
from ftops.errors import UsageError


@app.command("distill")
@one_line_errors
def distill_command(
    env: Annotated[str, typer.Option("--env", help="The environment that declares the model.")],
    model: Annotated[str, typer.Option("--model", help="The distilled model's key (it has distill_from).")],
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Only print what the capture would ask and cost; ask nothing."),
    ] = False,
) -> None:
    """Capture the teacher's answers for a distilled model (what `ftops up` does first), or with
    --dry-run print how many prompts would be asked, the teacher's estimated tokens and cost, and
    the student's training cost, before anything runs."""
    from ftops import cost
    from ftops.components.distill import dataset_args
    from ftops.gitops.logs import account_target
    from ftops.providers.distillation import build

    root = repo_root()
    environment = load_checked(root, env)
    spec = environment.models.get(model)
    if spec is None or spec.distill_from is None:
        distilled = [k for k, m in environment.models.items() if m.distill_from is not None]
        raise UsageError(
            f"environment '{env}' has no distilled model '{model}'",
            fix=f"distilled models there: {', '.join(distilled) or 'none (declare distill_from on one)'}",
        )
    distill = spec.distill_from
    teacher = distill.teacher
    where = f"account {teacher.account}" if teacher.account else "this environment's account"
    if distill.stored is not None:
        wanted = distill.stored.model_dump(mode="json", exclude_none=True)
        out.print(
            f"{model}: reads the stored completions of {where} matching {wanted}; asks the teacher nothing",
            soft_wrap=True,
            highlight=False,
        )
    planned, estimate = cost.distillation_estimate(spec, root)
    capture = cost.distillation_line(environment, model, spec, root)
    examples, tokens = cost.training_tokens(environment, model, spec, root)
    training = cost.training_line(environment, model, spec, examples, tokens)
    if distill.prompts is not None:
        out.print(
            f"{model}: {estimate.prompts} prompt(s) to ask teacher {teacher.deployment} ({teacher.model}, "
            f"capacity {teacher.capacity}) on {where}"
            + (f"; {planned.duplicates} duplicate(s) asked once" if planned.duplicates else ""),
            soft_wrap=True,
            highlight=False,
        )
        out.print(
            f"  split: {planned.count('train')} train, {planned.count('valid')} validation, "
            f"{planned.count('heldout')} held out for the gate's teacher-agreement check",
            soft_wrap=True,
            highlight=False,
        )
        out.print(
            f"  teacher tokens: {estimate.input_tokens:,} prompt + at most "
            f"{estimate.output_tokens_max:,} answer ({distill.sampling.max_tokens} per prompt)",
            soft_wrap=True,
            highlight=False,
        )
    out.print(
        f"  teacher cost: {capture.label()} per capture ({capture.basis})", soft_wrap=True, highlight=False
    )
    out.print(
        f"  student training: {training.label()} per job ({training.basis}; answers counted at their most)",
        soft_wrap=True,
        highlight=False,
    )
    if dry_run:
        return
    target = account_target(root, environment)
    if target is None:
        raise UsageError(
            f"{env} has no account in the stack outputs yet", fix=f"run `ftops up --env {env}` first"
        )
    args = dataset_args(environment, root, model, spec, asdict(target))
    outputs = build(args.inputs())
    counts = outputs["counts"]
    out.print(
        f"{model}: dataset {str(outputs['train_digest'])[:12]} in {outputs['train_path']}: "
        f"{counts.get('train', 0)} train, {counts.get('valid', 0)} validation, "
        f"{counts.get('heldout', 0)} held out",
        soft_wrap=True,
        highlight=False,
    )
    usage = outputs.get("usage") or {}
    if usage.get("requests"):
        # What the teacher cost and how long it took per request, from its own usage counts: the
        # figures a distilled student is meant to beat.
        n = int(usage["requests"])
        spent = cost.rates_for(environment, teacher.model).inference_usd(
            int(usage["prompt_tokens"]), int(usage["completion_tokens"])
        )
        out.print(
            f"  teacher {teacher.model}: {cost.usd(None if spent is None else spent / n * 1000)} per 1k "
            f"requests, {float(usage['mean_latency_s']):.3f} s mean latency ({n} requests measured)",
            soft_wrap=True,
            highlight=False,
        )
