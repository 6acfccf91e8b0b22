"""`ftops canary`: ask what serves now the questions its gate asked, and say when it answers worse.

For each model the environment gates and serves: read what its serving deployment serves, find
the gate record for that model in the environment's audit log and its evidence (by digest, local
folder or evidence container), run the gate's checks against the serving deployment at a small
share of its capacity with the gate's own seeds and repeats, and compare item by item
(`ftops.evaluation.canary`). The result is appended to the audit log (action `canary`) and its
evidence written beside the gates' (and uploaded to the evidence container on Azure). A canary
never writes a deployment or a pin: on a regression it says which command rolls back, and with
`--issue` opens (or updates) one GitHub issue saying so.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from ftops.auditlog import Change, records, verify
from ftops.azure.connection import deployed
from ftops.config.gates import gate_request
from ftops.config.schema import Environment
from ftops.config.site import Site
from ftops.errors import RefusedError, UsageError
from ftops.evaluation import evidence_files
from ftops.evaluation.canary import CanaryReport, judge, policy_of
from ftops.evaluation.live import Candidate, evaluate
from ftops.evaluation.request import Baseline
from ftops.gitops.deltas import evidence_by_digest
from ftops.gitops.logs import account_target, audit_log

# Of the serving deployment's tokens and requests per minute: live traffic keeps the rest. The
# gate's evaluation of a serving deployment takes half (SERVING_SHARE); a nightly check takes less.
CANARY_SHARE = 0.1


def rollback_step(env: Environment, key: str, served: str) -> str:
    """What restores the model before `served`: a pin rollback where the environment takes pins."""
    if env.promotion is not None:
        pr = " --pr" if env.promotion.require_approval else ""
        return f'ftops rollback {key} --env {env.name} --reason "canary: {served} regressed"{pr}'
    return (
        f"git revert the commit that changed models.{key} in environments/Pulumi.{env.name}.yaml, "
        f"then ftops up --env {env.name}"
    )


def run(
    root: Path,
    env: Environment,
    *,
    models: list[str] | None = None,
    share: float = CANARY_SHARE,
    out: Path | None = None,
    on_answer: Callable[[str, int, int], None] | None = None,
) -> list[CanaryReport]:
    site = Site(env, root)
    folder = out or site.evidence_folder() / "canary"
    serving = {
        key: [name for name, d in env.deployments.items() if d.model == key]
        for key in env.gates
        if any(d.model == key for d in env.deployments.values())
    }
    unknown = [m for m in models or [] if m not in serving]
    if unknown:
        raise UsageError(
            f"{env.name} serves no gated model '{unknown[0]}'",
            fix=f"name one of: {', '.join(serving) or 'none (declare deployments and gates)'}",
        )
    if not serving:
        raise UsageError(f"{env.name} serves no gated model", fix="declare deployments and their gates")
    target = account_target(root, env)
    if target is None:
        raise UsageError(
            f"{env.name} has no account in the stack outputs yet",
            fix=f"run `ftops up --env {env.name}` first",
        )
    log = audit_log(root, env)
    lines = log.lines()
    broken = verify(lines)
    if broken is not None:
        raise RefusedError(
            f"{log.where()}: line {broken.line}: {broken.reason}; a broken audit chain cannot say which "
            "evidence the serving model passed on",
            fix="restore the log from its blob version or backup (`ftops audit --verify` shows it)",
        )
    history = records(log)
    reports = []
    for key in models or list(serving):
        name = serving[key][0]
        found = deployed(target, name)
        if found is None:
            raise UsageError(
                f"deployment {name} does not exist in {env.name}: nothing serves {key} to check",
                fix=f"run `ftops up --env {env.name}` (a missing deployment is drift, see `ftops preview`)",
            )
        gated = [
            r
            for r in history
            if r.action == "gate" and r.model == key and r.to_model == found.model and r.evidence_digest
        ]
        reference, where = None, f"no gate record for {found.model} in {log.where()}"
        if gated:
            located = evidence_by_digest(root, env.name, key, str(gated[-1].evidence_digest), [])
            reference, where = located.evidence, located.where
        seed = (env.models[key].seed or 0) if key in env.models else 0
        request = gate_request(env, key, root, name, seed)
        gate = env.gates[key]
        policy = policy_of(reference, gate.concurrency) if reference is not None else request.policy
        # No baseline: the comparison is with the gate's recorded answers, not another deployment.
        request = dataclasses.replace(request, policy=policy, baseline=Baseline("none", None, None))
        candidate = Candidate(name, found.model, found.capacity, found.sku, share)
        # A fresh progress folder every run: the gate's resumable answers would otherwise be reused
        # (same items, seeds and deployment), and the canary would only ever re-read last night.
        with tempfile.TemporaryDirectory(prefix="ftops-canary-") as progress:
            evidence = evaluate(request, target, candidate, progress_dir=Path(progress), on_answer=on_answer)
        digest, path = evidence_files.write(evidence, folder)
        location = str(path)
        store = site.evidence_store()
        if store is not None:
            from ftops.evaluation.evidence_store import upload

            location = upload(store, path, env.name, f"{key}/canary") or location
        report = CanaryReport(
            environment=env.name,
            model=key,
            deployment=name,
            served=found.model,
            reference_digest=gated[-1].evidence_digest if gated else None,
            reference_where=where,
            evidence_digest=digest,
            evidence_where=location,
            share=share,
            checks=judge(evidence, reference),
            rollback=rollback_step(env, key, found.model),
        )
        path.with_name(path.name.removesuffix(".json") + ".canary.json").write_text(
            json.dumps(report.record(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        log.append(
            Change(
                environment=env.name,
                model=key,
                action="canary",
                resource=name,
                from_model=None,
                to_model=found.model,
                evidence_digest=digest,
                details={
                    "verdict": "pass" if report.passed else "fail",
                    "gate_evidence": report.reference_digest,
                    "share": share,
                    "checks": {
                        c.name: {"now": c.now, "gate": c.then, "p_value": c.p_value, "regressed": c.regressed}
                        for c in report.checks
                    },
                },
            )
        )
        reports.append(report)
    return reports


def issue_title(report: CanaryReport) -> str:
    return f"canary: {report.model} in {report.environment} answers worse than at its gate"


def open_issue(root: Path, report: CanaryReport, repo: str | None = None) -> str:
    """Open the regression's issue, or update the open one with the same title; what was done, in
    a line. Without `gh` nothing is opened, and the line says so."""
    gh = shutil.which("gh")
    if gh is None:
        return "gh (the GitHub CLI) is not installed: no issue opened; install it from https://cli.github.com"
    title = issue_title(report)
    where = ["--repo", repo] if repo else []

    def call(*args: str) -> str:
        try:
            done = subprocess.run(
                [gh, "issue", *args, *where],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise UsageError(f"gh issue {args[0]}: {exc}", fix="check `gh auth status`") from None
        if done.returncode != 0:
            detail = " ".join((done.stderr or done.stdout).split())[:200]
            raise UsageError(
                f"gh issue {args[0]} failed: {detail}", fix="check `gh auth status` and GH_TOKEN"
            )
        return done.stdout.strip()

    with tempfile.NamedTemporaryFile("w", suffix=".md", delete=False, encoding="utf-8") as body:
        body.write(report.markdown())
    try:
        number = call(
            "list",
            "--state",
            "open",
            "--search",
            f'in:title "{title}"',
            "--json",
            "number",
            "--jq",
            ".[0].number // empty",
        )
        if number:
            call("edit", number, "--body-file", body.name)
            return f"issue #{number} updated: {title}"
        return f"issue opened: {call('create', '--title', title, '--body-file', body.name)}"
    finally:
        Path(body.name).unlink(missing_ok=True)
