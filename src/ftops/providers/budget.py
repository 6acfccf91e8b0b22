"""`Budget`: the environment's spending limits, checked before anything is uploaded or trained.

A training budget is per change: what the jobs this update starts cost. Which jobs are new is
what Pulumi knows and the program does not: `check` receives the inputs of the last successful
update (`olds`), so a job whose identity is not among them is one this change pays for. Every
upload depends on this resource, so a check failure stops `pulumi preview` and `pulumi up`
before any file leaves the machine, with one line naming the items and the numbers.

The hosting budget is per month for everything declared: a declaration over it fails every
preview until it is fixed. `budget.override` lets one change spend up to a stated amount; its
use is appended to the audit log with the reason.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult

from ftops.auditlog import Change, open_log
from ftops.providers.args import BudgetArgs
from ftops.providers.base import inputs_of

OUTPUTS = ("spent_usd", "new_jobs", "override_used")


def _usd(value: float) -> str:
    return f"${value:,.2f}"


def new_jobs(olds: dict[str, Any], news: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The jobs of `news` that the last update did not have: the ones this change starts."""
    before = {k: v.get("identity") for k, v in (olds.get("jobs") or {}).items()}
    return {k: v for k, v in (news.get("jobs") or {}).items() if before.get(k) != v.get("identity")}


def problems(olds: dict[str, Any], news: dict[str, Any]) -> list[tuple[str, str]]:
    """(property, one line) per limit the change would break."""
    out: list[tuple[str, str]] = []
    fresh = new_jobs(olds, news)
    spend = sum(float(v["usd"]) for v in fresh.values() if v.get("usd") is not None)
    limit = news.get("training_limit_usd")
    override = news.get("override") or {}
    allowed = max(float(limit), float(override.get("up_to_usd") or 0)) if limit is not None else None
    if allowed is not None and spend > allowed:
        items = "; ".join(
            f"{k} {_usd(float(v['usd']))} ({v['basis']})" for k, v in fresh.items() if v.get("usd")
        )
        what = "budget.override.up_to_usd" if override else "budget.training_usd_per_change"
        over = f"{what} {_usd(allowed)}"
        out.append(
            (
                "jobs",
                f"training this change costs {_usd(spend)}, over {over}: {items}. Fix: train less "
                "(fewer epochs, less data, a smaller base), raise the budget, or add budget.override "
                "{reason, up_to_usd} to this change (the audit log records it)",
            )
        )
    unpriced = [k for k, v in fresh.items() if v.get("usd") is None]
    if limit is not None and unpriced:
        out.append(
            (
                "jobs",
                f"no rate prices the training of {', '.join(unpriced)}, so the budget cannot be checked: "
                "declare pricing.training_per_million_tokens (or rft_per_hour) for its base model",
            )
        )
    hosting_limit = news.get("hosting_limit_usd")
    hosting = news.get("hosting") or {}
    monthly = float(hosting.get("usd_per_month") or 0)
    if hosting_limit is not None and monthly > float(hosting_limit):
        out.append(
            (
                "hosting",
                f"the deployments cost {_usd(monthly)} per month, over budget.hosting_usd_per_month "
                f"{_usd(float(hosting_limit))}: {hosting.get('basis', '')}. Fix: fewer or smaller "
                "deployments (Developer tier for candidates where offered), or raise the budget",
            )
        )
    return out


class BudgetProvider(ResourceProvider):
    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(news, [CheckFailure(p, line) for p, line in problems(olds, news)])

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = ("jobs", "hosting", "training_limit_usd", "hosting_limit_usd", "override")
        return DiffResult(changes=any(olds.get(k) != news.get(k) for k in keys), replaces=[])

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(f"{props['environment']}/budget", self._apply({}, props))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._apply(olds, news))

    @staticmethod
    def _apply(olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        fresh = new_jobs(olds, news)
        spend = sum(float(v["usd"]) for v in fresh.values() if v.get("usd") is not None)
        limit = news.get("training_limit_usd")
        override = news.get("override")
        used = bool(override) and limit is not None and spend > float(limit)
        if fresh:
            pulumi.log.info(
                f"budget: this change starts {len(fresh)} job(s) for {_usd(spend)}"
                + (f" (limit {_usd(float(limit))})" if limit is not None else "")
            )
        if used and news.get("audit"):
            # The override is a decision to spend over the limit: who, when and why go on record.
            record = open_log(news["audit"]).append(
                Change(
                    environment=str(news["environment"]),
                    model=",".join(sorted(fresh)),
                    action="budget-override",
                    from_model=None,
                    to_model=None,
                    details={
                        "reason": override["reason"],  # type: ignore[index]
                        "spent_usd": round(spend, 2),
                        "limit_usd": float(limit),  # type: ignore[arg-type]
                        "up_to_usd": float(override["up_to_usd"]),  # type: ignore[index]
                    },
                )
            )
            pulumi.log.warn(
                f"budget: over the limit by override ({override['reason']}); audit record {record.seq}"  # type: ignore[index]
            )
        return {
            **inputs_of(news, OUTPUTS),
            "spent_usd": spend,
            "new_jobs": sorted(fresh),
            "override_used": used,
        }


class Budget(pulumi.dynamic.Resource):
    spent_usd: pulumi.Output[float]

    def __init__(self, name: str, args: BudgetArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(
            BudgetProvider(),
            name,
            {**args.inputs(), "spent_usd": None, "new_jobs": None, "override_used": None},
            opts,
        )
