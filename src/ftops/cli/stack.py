"""`ftops up / preview / refresh / destroy --env NAME` and `ftops engine install`: the Pulumi
engine on an environment's stack, its progress as lines, one summary line at the end."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ftops.cli.common import app, debug_on, one_line_errors, out, repo_root
from ftops.engine import install
from ftops.errors import FtopsError

if TYPE_CHECKING:  # pulumi.automation is imported only by the commands that drive the engine
    from ftops.engine.stack import Operation, StackResult

EnvOption = Annotated[str, typer.Option("--env", help="The environment (its stack has the same name).")]
BreakLock = Annotated[
    bool,
    typer.Option(
        "--break-lock",
        help="Clear the stack's lock even when ftops cannot prove its update dead (only when no other "
        "update can run, e.g. inside the deploy workflow's concurrency group).",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of lines.")]


def _changes(result: StackResult) -> str:
    verbs = {"create": "created", "update": "updated", "delete": "deleted", "replace": "replaced"}
    if result.operation == "preview":
        verbs = {k: f"to {k}" for k in verbs}
    parts = [f"{n} {verbs.get(op, op)}" for op, n in sorted(result.changes.items()) if op != "same" and n]
    same = result.changes.get("same", 0)
    if not parts:
        return f"no changes ({same} unchanged)" if same else "no changes"
    return ", ".join(parts) + (f", {same} unchanged" if same else "")


def _gate_lines(root: Path, result: StackResult) -> list[str]:
    """Each gate's verdict with its intervals, read back from the evidence the stack points at."""
    from ftops.engine.stack import shown
    from ftops.gitops.on_demand import Evaluation

    lines = []
    for gate, digest in sorted((result.outputs.get("evidence") or {}).items()):
        # Evidence files are named by the hex of their digest (`sha256:<hex>` in the outputs).
        from ftops.config.site import evidence_folder

        path = evidence_folder(root, result.env.name) / f"{str(digest).split(':')[-1]}.json"
        try:
            evidence = json.loads(path.read_text())
        except (OSError, ValueError):
            lines.append(f"gate {gate}: evidence {digest} (not on this machine)")
            continue
        lines.append(Evaluation(evidence, str(digest), shown(path)).one_line())
    return lines


def summary_line(root: Path, result: StackResult) -> str:
    took = f"{result.seconds:.0f} s"
    head = f"{result.operation}: stack {result.env.name}: {_changes(result)} in {took}"
    if result.operation == "up":
        deployments = result.outputs.get("deployments") or {}
        served = "; ".join(f"{name} serves {model}" for name, model in sorted(deployments.items()))
        tail = [served] if served else []
        tail += _gate_lines(root, result)
        return "; ".join([head, *tail])
    if result.operation == "preview":
        return "; ".join([head, *_cost_part(root, result)])
    return head


NEW_JOB_STEPS = ("create", "replace", "create-replacement")


def _cost_part(root: Path, result: StackResult) -> list[str]:
    """What the previewed change would spend: the jobs it starts, and the hosting it declares."""
    from ftops import cost

    try:
        lines = cost.plan_lines(result.env, root)
    except FtopsError:
        return []  # the preview itself said what is wrong with the environment
    training = {line.item.removeprefix("training "): line for line in lines if line.kind == "training"}
    new = [key for key in training if result.planned.get(f"{key}-job") in NEW_JOB_STEPS]
    spend = sum(training[k].usd or 0.0 for k in new)
    monthly = cost.totals(lines)["month"]
    trains = f"trains {', '.join(new)} for {cost.usd(spend)}" if new else "trains nothing"
    hosting = f"deployments {cost.usd(monthly)}/month"
    return [f"cost: this change {trains}; {hosting} (ftops cost --env {result.env.name})"]


def operate(operation: Operation, env: str, break_lock: bool, as_json: bool) -> None:
    from ftops.engine.stack import StackRequest, run

    root = repo_root()

    def say(line: str) -> None:
        if not as_json:
            out.print(line, markup=False, highlight=False, soft_wrap=True)
        elif line.startswith("engine:"):  # a cleared lock is said even when stdout is JSON
            print(line, file=sys.stderr)

    result = run(StackRequest(root, env, operation, break_lock=break_lock, debug=debug_on()), say)
    if as_json:
        print(
            json.dumps(
                {
                    "operation": operation,
                    "stack": env,
                    "changes": result.changes,
                    "seconds": round(result.seconds, 1),
                    "outputs": result.outputs,
                },
                indent=2,
                default=str,
            )
        )
    else:
        out.print(summary_line(root, result), markup=False, highlight=False, soft_wrap=True)


@app.command("up")
@one_line_errors
def up_command(env: EnvOption, break_lock: BreakLock = False, as_json: AsJson = False) -> None:
    """Reconcile an environment through the Pulumi engine: refresh, then upload, train, gate and
    deploy what changed (`pulumi up --stack ENV`, the program run inline). Exit 1 when a resource
    fails (a gate, a job), 2 when it could not run."""
    operate("up", env, break_lock, as_json)


@app.command("preview")
@one_line_errors
def preview_command(env: EnvOption, break_lock: BreakLock = False, as_json: AsJson = False) -> None:
    """Show what `ftops up` would change, after a refresh that reports drift."""
    operate("preview", env, break_lock, as_json)


@app.command("refresh")
@one_line_errors
def refresh_command(env: EnvOption, break_lock: BreakLock = False, as_json: AsJson = False) -> None:
    """Read every resource of the stack back and report drift (deleted jobs, files, deployments)."""
    operate("refresh", env, break_lock, as_json)


@app.command("destroy")
@one_line_errors
def destroy_command(env: EnvOption, break_lock: BreakLock = False, as_json: AsJson = False) -> None:
    """Remove the stack's deployments and gates; fine-tuned models and the audit log are kept."""
    operate("destroy", env, break_lock, as_json)


engine_app = typer.Typer(help="The Pulumi CLI that `ftops up` drives.", no_args_is_help=True)
app.add_typer(engine_app, name="engine")


@engine_app.command("install")
@one_line_errors
def engine_install() -> None:
    """Use an installed Pulumi CLI, or build the pinned one (engine/go.mod) with Go into a cache
    outside the work tree; instant when it is already there."""
    install.ensure(repo_root(), lambda line: out.print(line, markup=False, highlight=False, soft_wrap=True))
