"""`ftops status`: for each deployment, what git declares, what was last applied (the audit log),
what the gate said, and what the service actually serves; they agree or the row says NO."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ftops.auditlog import records
from ftops.azure.connection import Target, deployed, requests_by_deployment
from ftops.azure.failures import translate
from ftops.config.pins import load_releases
from ftops.config.schema import Environment
from ftops.cost import rates_for
from ftops.errors import FtopsError, UsageError
from ftops.gitops.logs import account_target, audit_log


@dataclass(frozen=True)
class Row:
    deployment: str
    model: str
    git: str | None  # the pinned model; None where the environment trains it
    applied: str | None  # what the last deploy record put there
    gate: str
    serving: str | None
    service_note: str  # why `serving` is None
    cost_per_hour: float  # what hosting it is billed per hour, used or not
    requests: int | None  # inference requests over the idle window; None: metrics unreadable
    requests_note: str = ""  # why `requests` is None

    @property
    def idle(self) -> bool:
        """Billed by the hour and called by nobody over the window."""
        return self.requests == 0 and self.cost_per_hour > 0

    @property
    def agree(self) -> bool:
        wanted = {m for m in (self.git, self.applied) if m is not None}
        return len(wanted) == 1 and self.serving in wanted


def _serving(target: Target | None, name: str) -> tuple[str | None, str]:
    if target is None:
        return None, "unknown (stack outputs unreachable: install the Pulumi CLI and log in)"
    try:
        found = deployed(target, name)
    except UsageError as exc:  # no credential, nothing listening
        return None, f"unreachable ({exc.message})"
    except FtopsError as exc:  # it answered, with an error
        return None, f"error ({exc.message})"
    if found is None:
        return None, "absent (deleted? Azure removes fine-tuned deployments idle for 15 days)"
    return found.model, ""


def _requests(target: Target | None, days: int) -> tuple[dict[str, int] | None, str]:
    if target is None:
        return None, "unknown"
    try:
        return requests_by_deployment(target, days), ""
    except FtopsError as exc:
        return None, f"unknown ({exc.message})"


def status_rows(root: Path, env: Environment, idle_days: int = 7) -> list[Row]:
    pins = load_releases(root, env.name)
    try:
        log = records(audit_log(root, env))
    except Exception as exc:
        error = exc if isinstance(exc, FtopsError) else translate(exc)
        if error is None:
            raise
        # Say where, and keep the fix and the exit code (a missing credential is a usage error).
        where = FtopsError(f"cannot read the audit log of {env.name}: {error.message}", fix=error.fix)
        where.exit_code = error.exit_code
        raise where from exc
    target = account_target(root, env)
    traffic, traffic_note = _requests(target, idle_days)
    rows = []
    for name, dep in env.deployments.items():
        deploys = [r for r in log if r.action == "deploy" and r.resource == name]
        gates = [r for r in log if r.action == "gate" and r.model == dep.model]
        pin = pins.get(dep.model)
        gate = (
            f"pass ({gates[-1].evidence_digest[:19]}…)"
            if gates and gates[-1].evidence_digest
            else "no record"
        )
        serving, note = _serving(target, name)
        model = (
            serving
            or (pin.model if pin else None)
            or (env.base_of(dep.model) if dep.model in env.models else None)
        )
        hourly = rates_for(env, model).hosting_usd_per_hour(dep.sku) if model else 0.0
        rows.append(
            Row(
                deployment=name,
                model=dep.model,
                git=pin.artifact if pin else None,
                applied=deploys[-1].to_model if deploys else None,
                gate=gate,
                serving=serving,
                service_note=note,
                cost_per_hour=hourly,
                requests=None if traffic is None else traffic.get(name, 0),
                requests_note=traffic_note,
            )
        )
    return rows
