"""What a gate decides, and from what: run each check on the candidate (and on the baseline), turn
the answers into pass rates with intervals, and pass only on what the statistics support.

A check passes when its pass rate clears the threshold: with `fail_on_uncertainty` (the default)
the whole confidence interval must clear it, so a small or noisy eval set cannot pass by luck.
Against a baseline, the gate fails when the candidate is significantly worse on the same items
(exact one-sided McNemar test at the gate's confidence) by more than `max_regression`.
The shared provider and `ftops evaluate` both come through here.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import openai

from ftops.errors import GateError
from ftops.evaluation import rft_graders, stats
from ftops.evaluation.evalset import EvalItem, EvalSet, load, parse
from ftops.evaluation.graders import Grade, Grader, GraderContext, make
from ftops.evaluation.request import Check, Policy
from ftops.evaluation.runner import Answer, Limits, Pacer, Runner, RunOptions, progress_key
from ftops.evaluation.usage import Prices, measure

EVIDENCE_FORMAT = "ftops.evidence/2"
BUILTIN_SUITE = "builtin"
PYRIT_SUITE = "pyrit"  # PyRIT's harmful-objective seed sets (the `redteam` extra)


@dataclass(frozen=True)
class Endpoint:
    """A deployment to send the eval set to."""

    deployment: str
    model: str
    limits: Limits | None = None
    role: str = "candidate"  # or "baseline (serving)", "baseline (base)", "baseline (teacher)"
    # Another account's client (a teacher that serves elsewhere); None: the gate's own account.
    client: Any = field(default=None, compare=False, repr=False)


@dataclass
class Outcome:
    check: Check
    evalset: EvalSet
    grader: Grader
    candidate: list[list[bool]]
    results: list[dict[str, Any]]
    baseline: list[list[bool]] | None = None
    baseline_results: list[dict[str, Any]] | None = None
    # Every answer each side gave (tokens and latency): what the cost per 1k requests is figured from.
    answers: list[Answer] = field(default_factory=list)
    baseline_answers: list[Answer] = field(default_factory=list)


def builtin_suite() -> EvalSet:
    data = resources.files("ftops.evaluation").joinpath("suites", "safety.jsonl").read_bytes()
    return parse(data, "builtin:safety.jsonl")


def pyrit_suite() -> EvalSet:
    from ftops.evaluation.pyrit_seeds import load_seeds

    lines = "".join(json.dumps(item, sort_keys=True) + "\n" for item in load_seeds())
    return parse(lines.encode(), "pyrit:seeds.jsonl")


def suite(name: str, fields: bool = False) -> EvalSet:
    """An eval set by what a check names: the shipped suite, PyRIT's seeds, or a file."""
    if name == BUILTIN_SUITE:
        return builtin_suite()
    if name == PYRIT_SUITE:
        return pyrit_suite()
    return load(Path(name), fields)


def load_check_set(check: Check) -> EvalSet:
    evalset = suite(check.path, fields=bool(check.grader_spec))
    if check.digest and evalset.digest != check.digest:
        raise GateError(f"eval set {check.path} changed after the plan was made", fix="run `pulumi up` again")
    evalset = evalset.only(set(check.categories) or None)
    if not evalset.items:
        raise GateError(
            f"check {check.name}: no eval items in categories {', '.join(check.categories)}",
            fix="name categories the eval set has",
        )
    return evalset


def grade_answer(grader: Grader, answer: Answer, item: EvalItem) -> Grade:
    if answer.filtered:  # the platform's content filter stopped it: a refusal, not an answer
        ok = grader.name == "refusal"
        return Grade(ok, float(ok), "blocked by the content filter")
    return grader.grade(answer.text, item)


def _grade_all(
    evalset: EvalSet, grader: Grader, answers: dict[tuple[str, int], Answer], repeats: int
) -> tuple[list[list[bool]], list[dict[str, Any]]]:
    outcomes, rows = [], []
    graded: dict[tuple[str, int], Grade] = {}
    if isinstance(grader, rft_graders.GateGrader):  # a python grader: one subprocess for the set
        keys = [
            (str(i.id), r)
            for i in evalset.items
            for r in range(repeats)
            if not answers[(str(i.id), r)].filtered
        ]
        by_id = {str(i.id): i for i in evalset.items}
        grades = grader.grade_many([(answers[k].text, by_id[k[0]]) for k in keys])
        graded = dict(zip(keys, grades, strict=True))
    for item in evalset.items:
        row = []
        for repeat in range(repeats):
            answer = answers[(str(item.id), repeat)]
            grade = graded.get((str(item.id), repeat)) or grade_answer(grader, answer, item)
            row.append(grade.passed)
            rows.append(
                {
                    "item": item.id,
                    "category": item.category,
                    "repeat": repeat,
                    "answer": answer.text,
                    "passed": grade.passed,
                    "score": round(grade.score, 4),
                    "detail": grade.detail,
                }
            )
        outcomes.append(row)
    return outcomes, rows


def check_grader(
    check: Check, client: openai.OpenAI, judge: Callable[[list[dict[str, str]]], str] | None = None
) -> Grader:
    """The check's grader: a named one, or an Azure grader whose grader model (score_model) is
    a deployment on the gate's endpoint."""
    if check.grader_spec:

        def grader_model(model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> str:
            sampling = {k: v for k, v in params.items() if k in ("temperature", "top_p", "seed")}
            if "max_completions_tokens" in params:
                sampling["max_tokens"] = params["max_completions_tokens"]
            reply = client.chat.completions.create(model=model, messages=messages, **sampling)  # type: ignore[arg-type]
            return reply.choices[0].message.content or ""

        spec = rft_graders.parse(json.loads(check.grader_spec))
        return rft_graders.GateGrader(spec, check.pass_score, grader_model)
    return make(
        check.grader,
        GraderContext(
            min_similarity=check.min_similarity, judge=judge, judge_deployment=check.judge_deployment
        ),
    )


def run_check(
    check: Check,
    policy: Policy,
    client: openai.OpenAI,
    candidate: Endpoint,
    baseline: Endpoint | None,
    progress_dir: Path | None,
    judge: Callable[[list[dict[str, str]]], str] | None = None,
    on_answer: Callable[[str, int, int], None] | None = None,
    pacers: dict[str, Pacer] | None = None,
) -> Outcome:
    """`pacers` carries each deployment's pacer from one check to the next."""
    pacers = {} if pacers is None else pacers
    evalset = load_check_set(check)
    grader = check_grader(check, client, judge)
    graded: list[tuple[list[list[bool]], list[dict[str, Any]]]] = []
    asked: list[list[Answer]] = []
    for endpoint in [candidate] + ([baseline] if baseline else []):
        options = RunOptions(
            deployment=endpoint.deployment,
            model=endpoint.model,
            seed=policy.seed,
            repeats=policy.repeats,
            temperature=policy.temperature,
            limits=endpoint.limits,
            concurrency=policy.concurrency,
        )
        account = endpoint.client or client
        key = progress_key(evalset, options, str(account.base_url))
        progress = progress_dir / f"{key}.jsonl" if progress_dir else None
        pacer = pacers.setdefault(f"{account.base_url} {endpoint.deployment}", Pacer(endpoint.limits))

        def report(done: int, total: int, role: str = endpoint.role) -> None:
            if on_answer:
                on_answer(f"{check.name} ({role})", done, total)

        runner = Runner(account, options, progress, report, pacer)
        answers = runner.run(evalset)
        outcomes, rows = _grade_all(evalset, grader, answers, policy.repeats)
        graded.append((outcomes, rows))
        asked.append(list(answers.values()))
    outcome = Outcome(check, evalset, grader, *graded[0], answers=asked[0])
    if baseline:
        outcome.baseline, outcome.baseline_results = graded[1][0], graded[1][1]
        outcome.baseline_answers = asked[1]
    return outcome


def _pct(value: float) -> str:
    return f"{value:.3f}"


def summarize(outcome: Outcome, policy: Policy) -> tuple[dict[str, Any], list[str]]:
    """The check's summary for the evidence, and what failed (one sentence each)."""
    check = outcome.check
    rate = stats.pass_rate(outcome.candidate, policy.confidence)
    decided_on = rate.low if policy.fail_on_uncertainty else rate.rate
    metric = "refusal rate" if check.kind == "safety" else "pass rate"
    where = f"{check.name} ({outcome.grader.name} on {outcome.evalset.name})"
    failures = []
    if decided_on < check.threshold:
        if policy.fail_on_uncertainty and rate.rate >= check.threshold:
            why = (
                f"{metric} {_pct(rate.rate)} clears threshold {_pct(check.threshold)} but its "
                f"{policy.confidence:.0%} interval [{_pct(rate.low)}, {_pct(rate.high)}] does not"
            )
        else:
            why = (
                f"{metric} {_pct(rate.rate)} < threshold {_pct(check.threshold)}, "
                f"{policy.confidence:.0%} interval [{_pct(rate.low)}, {_pct(rate.high)}]"
            )
        failures.append(
            f"{where}: {why} ({int(rate.passed)}/{rate.total} answers, {rate.items} items x "
            f"{policy.repeats} repeats, effective n {rate.effective_n:.1f})"
        )
    by_category: dict[str, list[list[bool]]] = defaultdict(list)
    for item, row in zip(outcome.evalset.items, outcome.candidate, strict=True):
        by_category[item.category].append(row)
    summary: dict[str, Any] = {
        "metric": metric,
        "pass_rate": round(rate.rate, 6),
        "low": round(rate.low, 6),
        "high": round(rate.high, 6),
        "passed_answers": int(rate.passed),
        "answers": rate.total,
        "items": rate.items,
        "effective_n": round(rate.effective_n, 3),
        "icc": round(rate.icc, 4),
        "by_category": {
            name: round(sum(map(sum, rows)) / sum(map(len, rows)), 6)
            for name, rows in sorted(by_category.items())
        },
    }
    if outcome.baseline is not None:
        comparison = stats.compare(outcome.candidate, outcome.baseline)
        alpha = 1 - policy.confidence
        base_rate = stats.pass_rate(outcome.baseline, policy.confidence)
        worse = comparison.p_value < alpha and comparison.delta < -policy.max_regression
        summary["baseline"] = {
            "pass_rate": round(comparison.baseline_rate, 6),
            "low": round(base_rate.low, 6),
            "high": round(base_rate.high, 6),
            "delta": round(comparison.delta, 6),
            "regressions": comparison.regressions,
            "improvements": comparison.improvements,
            "p_value": round(comparison.p_value, 6),
            "significantly_worse": worse,
        }
        if worse:
            failures.append(
                f"{where}: worse than the baseline: {metric} {_pct(comparison.candidate_rate)} vs "
                f"{_pct(comparison.baseline_rate)} (delta {comparison.delta:+.3f} beyond max_regression "
                f"{policy.max_regression:g}); {comparison.regressions} items regressed, "
                f"{comparison.improvements} improved, one-sided McNemar p={comparison.p_value:.4f} "
                f"< {alpha:g}"
            )
    summary["passed"] = not failures
    return summary, failures


def evidence_record(
    *,
    gate: str,
    environment: str | None,
    candidate: Endpoint,
    baseline: Endpoint | None,
    baseline_kind: str,
    policy: Policy,
    outcomes: list[Outcome],
    training: dict[str, Any] | None = None,
    prices: Mapping[str, Prices | None] | None = None,
) -> dict[str, Any]:
    """The evidence: everything needed to see why the gate decided as it did, and what each side's
    answers cost and how long they took (`usage`, per 1,000 requests; `prices` by side, candidate
    and baseline). The latencies are measured, so they are the one part of two runs of the same
    evaluation that differs (answers resumed from a progress file keep theirs)."""
    checks, failures = [], []
    for outcome in outcomes:
        summary, failed = summarize(outcome, policy)
        failures += failed
        checks.append(
            {
                "name": outcome.check.name,
                "kind": outcome.check.kind,
                "eval_set": outcome.evalset.name,
                "eval_set_digest": outcome.evalset.digest,
                "categories": list(outcome.check.categories),
                "grader": outcome.grader.name,
                "grader_version": outcome.grader.version,
                "threshold": outcome.check.threshold,
                "summary": summary,
                "results": outcome.results,
                "baseline_results": outcome.baseline_results,
            }
        )
    if not outcomes:
        failures.append("the gate has no checks: one with nothing to check would let any model through")
    return {
        "format": EVIDENCE_FORMAT,
        "gate": gate,
        "environment": environment,
        "model": candidate.model,
        "deployment": candidate.deployment,
        "baseline": (
            {"kind": baseline_kind, "deployment": baseline.deployment, "model": baseline.model}
            if baseline
            else {"kind": baseline_kind, "deployment": None, "model": None}
        ),
        "policy": {
            "confidence": policy.confidence,
            "repeats": policy.repeats,
            "temperature": policy.temperature,
            "seed": policy.seed,
            "fail_on_uncertainty": policy.fail_on_uncertainty,
            "max_regression": policy.max_regression,
        },
        "checks": checks,
        "usage": usage_of(candidate, baseline, outcomes, prices or {}),
        "training": training,
        "verdict": "fail" if failures else "pass",
        "failures": failures,
    }


def usage_of(
    candidate: Endpoint,
    baseline: Endpoint | None,
    outcomes: list[Outcome],
    prices: Mapping[str, Prices | None],
) -> dict[str, Any]:
    """Each side's requests per 1,000, over the checks both sides answered (the same prompts and
    sampling: like with like; a teacher is not asked the teacher-agreement check), or over every
    check when there is no baseline."""
    paired = [o for o in outcomes if o.baseline_answers]
    basis = paired or outcomes
    mine = measure(
        candidate.deployment, candidate.model, (a for o in basis for a in o.answers), prices.get("candidate")
    )
    theirs = None
    if baseline is not None and paired:
        theirs = measure(
            baseline.deployment,
            baseline.model,
            (a for o in paired for a in o.baseline_answers),
            prices.get("baseline"),
        )
    return {
        "checks": [o.check.name for o in basis],
        "candidate": mine.summary() if mine else None,
        "baseline": theirs.summary() if theirs else None,
    }


def loss_curve(csv_text: str, limit: int = 60) -> list[tuple[int, float]]:
    """(step, train_loss) from a fine-tuning results file, thinned evenly to at most `limit` points."""
    import csv
    import io

    points = []
    for row in csv.DictReader(io.StringIO(csv_text)):
        try:
            points.append((int(float(row["step"])), float(row["train_loss"])))
        except (KeyError, TypeError, ValueError):
            continue
    if len(points) > limit:
        stride = math.ceil(len(points) / limit)
        points = points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])
    return points
