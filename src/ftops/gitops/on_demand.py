"""`ftops evaluate`: run an environment's gate for a model on demand, against a deployment that
exists now, exactly as `pulumi up` runs it (same checks, repeats, statistics and evidence)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftops.azure.connection import deployed
from ftops.config.gates import gate_request
from ftops.config.schema import Environment
from ftops.cost import gate_prices
from ftops.errors import UsageError
from ftops.evaluation import evidence_files
from ftops.evaluation.live import SERVING_SHARE, Candidate, evaluate
from ftops.evaluation.usage import prices_by_side
from ftops.gitops.logs import account_target


@dataclass(frozen=True)
class Evaluation:
    evidence: dict[str, Any]
    digest: str
    path: Path

    @property
    def passed(self) -> bool:
        return bool(self.evidence["verdict"] == "pass")

    def markdown(self) -> str:
        return evidence_files.markdown(self.evidence, self.digest)

    def one_line(self) -> str:
        checks = "; ".join(
            f"{c['name']} {s['pass_rate']:.3f} [{s['low']:.3f}, {s['high']:.3f}] vs {c['threshold']:g}"
            for c in self.evidence["checks"]
            for s in [c["summary"]]
        )
        return f"gate {self.evidence['gate']}: {self.evidence['verdict']}: {checks} (evidence {self.path})"


def run(
    root: Path,
    env: Environment,
    model: str,
    *,
    deployment: str | None,
    out: Path,
    on_answer: Callable[[str, int, int], None] | None = None,
) -> Evaluation:
    serving = [name for name, spec in env.deployments.items() if spec.model == model]
    if model not in env.gates:
        raise UsageError(
            f"{env.name} declares no gate for '{model}'",
            fix=f"declare gates.{model} in environments/Pulumi.{env.name}.yaml",
        )
    if deployment is None and not serving:
        raise UsageError(f"{env.name} serves '{model}' on no deployment", fix="name one with --deployment")
    name = deployment or serving[0]
    target = account_target(root, env)
    if target is None:
        raise UsageError(
            f"{env.name} has no account in the stack outputs yet", fix=f"run `pulumi up -s {env.name}` first"
        )
    found = deployed(target, name)
    if found is None:
        raise UsageError(
            f"deployment {name} does not exist in {env.name}", fix="check the name with ftops status"
        )
    seed = (env.models[model].seed or 0) if model in env.models else 0
    request = gate_request(env, model, root, serving[0] if serving else name, seed)
    # A serving deployment carries live traffic: the evaluation takes only part of it.
    share = SERVING_SHARE if name in serving else 1
    candidate = Candidate(name, found.model, found.capacity, found.sku, share)
    teacher = request.baseline.teacher
    prices = prices_by_side(gate_prices(env, found.model, teacher.model if teacher else None))
    evidence = evaluate(
        request, target, candidate, progress_dir=out / "progress", on_answer=on_answer, prices=prices
    )
    digest, path = evidence_files.write(evidence, out)
    return Evaluation(evidence, digest, path)
