"""One cost model: what training, hosting and evaluation cost, priced before anything runs.

Azure bills fine-tuning three ways (fine-tuning-cost-management.md, facts file section 2):

- training: SFT and DPO by billed tokens (tokens per epoch x epochs x rate per training tier);
  RFT by training time (hours x hourly rate) plus the grader model's tokens;
- hosting: every fine-tuned deployment per hour whether it is used or not (Developer tier: free;
  provisioned: per PTU-hour);
- inference: input and output tokens (gates, experiments, distillation captures, canaries).

Rates come from the environment's `pricing:`, falling back to the dated table below. The table
is a default to plan with, not a bill: Azure's pricing page is the authority, and a team that
has negotiated rates declares them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ftops.catalog import UnknownModelError, auto_epochs, base_of, resolve_base
from ftops.config.schema import (
    Environment,
    GateSpec,
    ModelSpec,
    Reinforcement,
    ReinforcementHyperparameters,
    Sku,
)
from ftops.config.skus import candidate_sku
from ftops.evaluation import rft_graders
from ftops.evaluation.usage import Prices

if TYPE_CHECKING:
    from ftops.evaluation.distillation import Estimate, Plan

PRICES_AS_OF = "2025-10"  # when the defaults below were read from the public price lists
HOURS_PER_MONTH = 730  # Azure's billing month


@dataclass(frozen=True)
class ListPrice:
    """Per base model family, USD: Global training per 1M billed tokens (None: the family has no
    SFT/DPO), RFT per training hour, inference per 1M input and output tokens."""

    training: float | None
    rft_hour: float | None
    input: float
    output: float


# Global training tier, OpenAI-compatible list prices; inference of a fine-tuned model at the
# base model's rates. The examples in Azure's cost guide: hosting $1.70/h, o4-mini RFT $100/h.
LIST_PRICES: dict[str, ListPrice] = {
    "gpt-4o": ListPrice(training=25.00, rft_hour=None, input=2.50, output=10.00),
    "gpt-4o-mini": ListPrice(training=3.00, rft_hour=None, input=0.15, output=0.60),
    "gpt-4.1": ListPrice(training=25.00, rft_hour=None, input=2.00, output=8.00),
    "gpt-4.1-mini": ListPrice(training=5.00, rft_hour=None, input=0.40, output=1.60),
    "gpt-4.1-nano": ListPrice(training=1.50, rft_hour=None, input=0.10, output=0.40),
    "o4-mini": ListPrice(training=None, rft_hour=100.00, input=1.10, output=4.40),
}
# Training tiers relative to Global: regional Standard costs more ("Global is 10-30 % cheaper":
# the middle, 20 %); Developer is half of Global.
TIER_FACTOR: dict[str, float] = {"GlobalStandard": 1.0, "Standard": 1 / 0.8, "Developer": 0.5}
HOSTING_PER_HOUR: dict[str, float] = {"Standard": 1.70, "GlobalStandard": 1.70, "Developer": 0.0}
PTU_PER_HOUR = 2.00  # ProvisionedManaged (regional) per PTU-hour, hourly (no reservation)
# Azure Monitor bills a metric alert per monitored time series per month (the first 10 series of a
# subscription free, not subtracted here: other alerts may use them). Retail "Alerts Metric
# Monitored" meter, as read from copies of Azure's retail price list (not from Azure's own page).
ALERT_SERIES_PER_MONTH = 0.10
CANARY_RUNS_PER_MONTH = 30  # canary.yml runs nightly

# RFT time is estimated from the tokens it processes: each prompt is sampled several times per
# epoch and each sample reasons before it answers. A job's real time depends on the grader and
# on Azure's load; `pricing.rft_tokens_per_hour` calibrates the estimate from a finished job.
RFT_SAMPLES_PER_PROMPT = 4
RFT_REASONING_TOKENS = {"low": 500, "default": 1500, "medium": 1500, "high": 4000}
RFT_TOKENS_PER_HOUR = 2_000_000


@dataclass(frozen=True)
class Rates:
    """The rates that apply to one base model in one environment."""

    model: str
    training_per_million: float | None  # for the job's training tier
    rft_per_hour: float | None
    input_per_million: float | None
    output_per_million: float | None
    hosting_per_hour_standard: float
    ptu_per_hour: float
    rft_tokens_per_hour: float
    source: str  # "pricing" when the environment declares a rate used here, else the table's date

    def training_usd(self, billed_tokens: int) -> float | None:
        """SFT/DPO: billed tokens are the training file's tokens x epochs."""
        if self.training_per_million is None:
            return None
        return billed_tokens / 1e6 * self.training_per_million

    def rft_usd(self, hours: float) -> float | None:
        return None if self.rft_per_hour is None else hours * self.rft_per_hour

    def inference_usd(self, input_tokens: int, output_tokens: int) -> float | None:
        if self.input_per_million is None or self.output_per_million is None:
            return None
        return input_tokens / 1e6 * self.input_per_million + output_tokens / 1e6 * self.output_per_million

    def hosting_usd_per_hour(self, sku: Sku) -> float:
        if sku.name == "Developer":
            return 0.0
        if sku.name == "ProvisionedManaged":
            return sku.capacity * self.ptu_per_hour
        return self.hosting_per_hour_standard


def rates_for(environment: Environment, base_model: str, training_type: str = "GlobalStandard") -> Rates:
    """The environment's `pricing:` over the dated defaults, for a base or fine-tuned model id."""
    pricing = environment.pricing
    family = resolve_base(base_of(base_model)).family
    listed = LIST_PRICES.get(family)
    own = pricing.models.get(family) or pricing.models.get(resolve_base(base_of(base_model)).id)

    def pick(name: str, default: float | None) -> tuple[float | None, bool]:
        for layer in (own, pricing):
            value = getattr(layer, name, None) if layer is not None else None
            if value is not None:
                return value, True
        return default, False

    training, t_declared = pick("training_per_million_tokens", listed.training if listed else None)
    if training is not None and not t_declared:
        training *= TIER_FACTOR.get(training_type, 1.0)  # a declared rate is the tier's own rate
    rft, r_declared = pick("rft_per_hour", listed.rft_hour if listed else None)
    inp, i_declared = pick("input_per_million_tokens", listed.input if listed else None)
    out, o_declared = pick("output_per_million_tokens", listed.output if listed else None)
    hosting, h_declared = pick("hosting_per_hour", HOSTING_PER_HOUR["GlobalStandard"])
    ptu, p_declared = pick("provisioned_per_ptu_hour", PTU_PER_HOUR)
    declared = any((t_declared, r_declared, i_declared, o_declared, h_declared, p_declared))
    return Rates(
        model=base_model,
        training_per_million=training,
        rft_per_hour=rft,
        input_per_million=inp,
        output_per_million=out,
        hosting_per_hour_standard=float(hosting or 0.0),
        ptu_per_hour=float(ptu or 0.0),
        rft_tokens_per_hour=float(pricing.rft_tokens_per_hour or RFT_TOKENS_PER_HOUR),
        source="pricing" if declared else f"list prices of {PRICES_AS_OF}",
    )


def rft_hours(
    training_tokens: int,
    n_epochs: int,
    compute_multiplier: float,
    reasoning_effort: str,
    examples: int = 0,
    tokens_per_hour: float = RFT_TOKENS_PER_HOUR,
) -> float:
    """Estimated RFT training time: tokens processed (prompts and reasoned answers, sampled
    RFT_SAMPLES_PER_PROMPT times per epoch, scaled by compute_multiplier) over a throughput."""
    reasoning = RFT_REASONING_TOKENS.get(reasoning_effort, RFT_REASONING_TOKENS["default"])
    processed = (
        n_epochs * compute_multiplier * RFT_SAMPLES_PER_PROMPT * (training_tokens + examples * reasoning)
    )
    return processed / tokens_per_hour


# ---------------------------------------------------------------- the plan's cost lines

Kind = Literal["training", "hosting", "evaluation"]
Per = Literal["change", "month", "run"]


@dataclass(frozen=True)
class CostLine:
    item: str  # "training support-bot", "hosting support-bot (GlobalStandard x10)", ...
    kind: Kind
    usd: float | None  # None: no rate for it (declare one under pricing:)
    per: Per  # a training job is paid once per change; hosting per month; an evaluation per run
    basis: str  # how the figure was reached, in one line

    def label(self) -> str:
        return "n/a" if self.usd is None else f"${self.usd:,.2f}"


def usd(value: float | None) -> str:
    return "n/a" if value is None else f"${value:,.2f}"


def training_line(
    environment: Environment, key: str, spec: ModelSpec, examples: int, tokens_per_epoch: int
) -> CostLine:
    """What one job of this model costs, from its training file's counted tokens."""
    base = environment.base_of(key)
    rates = rates_for(environment, base, spec.training_type)
    epochs_value = spec.method.hyperparameters.n_epochs
    epochs = auto_epochs(examples) if epochs_value == "auto" else int(epochs_value)
    epochs_note = f"{epochs} epochs{' (auto)' if epochs_value == 'auto' else ''}"
    hp = spec.method.hyperparameters
    if isinstance(hp, ReinforcementHyperparameters):
        multiplier = 1.0 if hp.compute_multiplier == "auto" else float(hp.compute_multiplier)
        effort = hp.reasoning_effort
        hours = rft_hours(tokens_per_epoch, epochs, multiplier, effort, examples, rates.rft_tokens_per_hour)
        rate = "no rate" if rates.rft_per_hour is None else f"${rates.rft_per_hour:,.2f}/h"
        return CostLine(
            f"training {key}",
            "training",
            rates.rft_usd(hours),
            "change",
            f"RFT ~{hours:,.2f} h ({examples:,} prompts x {epochs_note}, effort {effort}) x {rate}",
        )
    billed = tokens_per_epoch * epochs
    rate = (
        "no rate for this model: declare pricing.training_per_million_tokens"
        if rates.training_per_million is None
        else f"${rates.training_per_million:,.2f}/1M ({spec.training_type}, {rates.source})"
    )
    return CostLine(
        f"training {key}",
        "training",
        rates.training_usd(billed),
        "change",
        f"{tokens_per_epoch:,} tokens x {epochs_note} = {billed:,} billed tokens x {rate}",
    )


# A model grader reads the graded answer besides its template and the item: RFT answers of a
# reasoning model run to a few hundred tokens (an estimate; the reply is a score).
GRADER_ANSWER_TOKENS = 256
GRADER_REPLY_TOKENS = 32  # unless the grader's sampling_params cap it


def grading_lines(
    environment: Environment, key: str, spec: ModelSpec, examples: int, tokens_per_epoch: int
) -> list[CostLine]:
    """An RFT model's grader-model tokens, one line per `score_model` grader (string, similarity
    and python graders cost nothing extra): every training sample is graded once."""
    if not isinstance(spec.method, Reinforcement):
        return []
    hp = spec.method.hyperparameters
    epochs = auto_epochs(examples) if hp.n_epochs == "auto" else int(hp.n_epochs)
    multiplier = 1.0 if hp.compute_multiplier == "auto" else float(hp.compute_multiplier)
    calls = round(examples * epochs * RFT_SAMPLES_PER_PROMPT * multiplier)
    item = tokens_per_epoch // max(examples, 1)
    from ftops.tokenizer import TokenCounter

    lines = []
    for name, grader in score_model_graders(environment.grader(spec.method.grader)):
        template = "\n".join(m.content for m in grader.input)
        try:
            rates: Rates | None = rates_for(environment, grader.model)
            counter = TokenCounter(resolve_base(base_of(grader.model)).encoding)
        except ValueError:  # not a model ftops knows: its tokens cannot be priced
            rates, counter = None, TokenCounter(resolve_base(environment.base_of(key)).encoding)
        per_call = counter.count(template) + item + GRADER_ANSWER_TOKENS
        params = grader.sampling_params
        reply = (params.max_completions_tokens if params else None) or GRADER_REPLY_TOKENS
        lines.append(
            CostLine(
                f"grading {key} ({name})",
                "training",
                None if rates is None else rates.inference_usd(calls * per_call, calls * reply),
                "change",
                f"{calls:,} samples graded ({examples:,} prompts x {epochs} epochs x "
                f"{RFT_SAMPLES_PER_PROMPT * multiplier:g} samples) x ~{per_call:,} prompt + {reply} reply "
                f"tokens on {grader.model}",
            )
        )
    return lines


def with_grading(line: CostLine, grading: list[CostLine]) -> CostLine:
    """The job's line with its grader-model tokens added: one line per job, as the budget and the
    preview count them. A grader model without a rate leaves its part out, and says so."""
    if not grading:
        return line
    priced = [g.usd for g in grading if g.usd is not None]
    total = None if line.usd is None else line.usd + sum(priced)
    parts = "; ".join(f"{g.item.split(' (', 1)[-1].rstrip(')')}: {g.label()} for {g.basis}" for g in grading)
    return CostLine(line.item, line.kind, total, line.per, f"{line.basis}; grader-model tokens: {parts}")


def score_model_graders(grader: Any, name: str = "") -> list[tuple[str, rft_graders.ScoreModel]]:
    """(name, grader) of every score_model in a grader; a multi's parts are named by their keys."""
    if isinstance(grader, rft_graders.Multi):
        return [m for key, g in grader.graders.items() for m in score_model_graders(g, g.name or key)]
    if isinstance(grader, rft_graders.ScoreModel):
        return [(grader.name or name or "score_model", grader)]
    return []


def hosting_line(environment: Environment, item: str, model: str, sku: Sku) -> CostLine:
    rates = rates_for(environment, model)
    hourly = rates.hosting_usd_per_hour(sku)
    if sku.name == "Developer":
        basis = "Developer tier: no hosting fee (no SLA; Azure removes it after 24 h)"
    elif sku.name == "ProvisionedManaged":
        basis = f"{sku.capacity} PTU x ${rates.ptu_per_hour:,.2f}/PTU-h x {HOURS_PER_MONTH} h"
    else:
        basis = f"${hourly:,.2f}/h x {HOURS_PER_MONTH} h, billed whether used or not"
    return CostLine(
        f"hosting {item} ({sku.name} x{sku.capacity})", "hosting", hourly * HOURS_PER_MONTH, "month", basis
    )


def evaluation_line(
    environment: Environment, key: str, gate: GateSpec, model: str, input_tokens: int, items: int
) -> CostLine:
    """A gate run: every eval item sent `repeats` times to the candidate (and to a baseline, at
    the baseline's rates: a distilled model's teacher answers at the teacher's)."""
    kind = "none" if gate.baseline == "none" else environment.gate_baseline(key)
    sides = [rates_for(environment, model)]
    if kind != "none":
        distill = environment.models[key].distill_from if key in environment.models else None
        teacher = distill.teacher.model if kind == "teacher" and distill is not None else model
        sides.append(rates_for(environment, teacher))
    calls = items * gate.repeats * len(sides)
    sent = input_tokens * gate.repeats
    answered = items * gate.repeats * EVAL_OUTPUT_TOKENS
    priced = [rates.inference_usd(sent, answered) for rates in sides]
    return CostLine(
        f"evaluation gate {key}",
        "evaluation",
        None if None in priced else sum(p or 0.0 for p in priced),
        "run",
        f"{calls:,} calls ({items:,} items x {gate.repeats} repeats"
        f"{'' if kind == 'none' else f' x candidate and baseline ({kind})'}), {sent * len(sides):,} prompt "
        f"tokens + ~{answered * len(sides):,} answer tokens",
    )


EVAL_OUTPUT_TOKENS = 256  # the gate's max_tokens per answer: the most an eval answer is billed


def totals(lines: Iterable[CostLine]) -> dict[str, float]:
    """USD per change (training), per month (hosting) and per run (evaluation); unpriced lines
    count nothing and are shown as n/a where they are listed."""
    out = {"change": 0.0, "month": 0.0, "run": 0.0}
    for line in lines:
        if line.usd is not None:
            out[line.per] += line.usd
    return out


def markdown(lines: list[CostLine], title: str) -> str:
    if not lines:
        return f"{title}: nothing to price.\n"
    rows = [f"**{title}**", "", "| item | cost | per | basis |", "|---|---:|---|---|"]
    rows += [f"| {line.item} | {line.label()} | {line.per} | {line.basis} |" for line in lines]
    total = totals(lines)
    rows += [
        "",
        f"Total: {usd(total['change'])} per change (training), {usd(total['month'])} per month "
        f"(hosting), {usd(total['run'])} per gate run (evaluation).",
    ]
    return "\n".join(rows) + "\n"


def as_json(lines: list[CostLine]) -> str:
    return json.dumps({"lines": [asdict(line) for line in lines], "totals": totals(lines)}, indent=2)


def plan_lines(environment: Environment, root: Path) -> list[CostLine]:
    """What every declared item of the environment costs: one job per model (its training file's
    tokens counted exactly), each deployment per month (serving, and the gate's candidate, which
    stays deployed) and one run of each gate. A job is paid once, when a change starts it; which
    jobs a change starts is for the budget (providers/budget.py), which compares with the last
    update."""
    lines: list[CostLine] = []
    for key, spec in environment.models.items():
        if spec.distill_from is not None:
            lines.append(distillation_line(environment, key, spec, root))
        examples, tokens = training_tokens(environment, key, spec, root)
        if spec.experiments is not None:
            lines += experiment_lines(environment, key, spec, examples, tokens, root)
            continue
        line = training_line(environment, key, spec, examples, tokens)
        lines.append(with_grading(line, grading_lines(environment, key, spec, examples, tokens)))
        lines += best_eval_lines(environment, key, spec, root)
    for name, dep in environment.deployments.items():
        model = _served_model(environment, dep.model)
        if model is None:
            continue
        lines.append(hosting_line(environment, name, model, dep.sku))
        lines.append(
            hosting_line(environment, f"{name} candidate", model, candidate_sku(environment, model, dep))
        )
    for key, gate in environment.gates.items():
        model = _served_model(environment, key)
        if model is not None:
            items, tokens = eval_tokens(gate, root, model, environment)
            lines.append(evaluation_line(environment, key, gate, model, tokens, items))
            if environment.target == "azure" and any(
                d.model == key for d in environment.deployments.values()
            ):
                lines.append(canary_line(environment, key, gate, model, tokens, items))
    if environment.target == "azure" and environment.alerts.enabled:
        lines += alert_lines(environment)
    return lines


def canary_line(
    environment: Environment, key: str, gate: GateSpec, model: str, input_tokens: int, items: int
) -> CostLine:
    """The nightly canary: the gate's checks against what serves (no baseline calls: it compares
    with the gate's recorded answers), every night."""
    rates = rates_for(environment, model)
    calls = items * gate.repeats * CANARY_RUNS_PER_MONTH
    sent = input_tokens * gate.repeats * CANARY_RUNS_PER_MONTH
    answered = calls * EVAL_OUTPUT_TOKENS
    return CostLine(
        f"canary {key}",
        "evaluation",
        rates.inference_usd(sent, answered),
        "month",
        f"{CANARY_RUNS_PER_MONTH} nightly runs x {items * gate.repeats:,} calls, {sent:,} prompt tokens "
        f"+ ~{answered:,} answer tokens",
    )


def alert_lines(environment: Environment) -> list[CostLine]:
    """Azure Monitor alerts on each serving deployment, by the metric time series they monitor."""
    from ftops.config.alerts import rules_for

    lines = []
    for name, dep in environment.deployments.items():
        model = _served_model(environment, dep.model)
        if model is None:
            continue
        series = sum(r.series for r in rules_for(environment.alerts, model, dep.sku.name, dep.sku.capacity))
        lines.append(
            CostLine(
                f"alerts {name}",
                "hosting",
                series * ALERT_SERIES_PER_MONTH,
                "month",
                f"{series} monitored series x ${ALERT_SERIES_PER_MONTH:.2f} (first 10 per subscription free)",
            )
        )
    return lines


def _served_model(environment: Environment, key: str) -> str | None:
    """The base model whose rates price a model key: trained here, or a release pin."""
    if key in environment.models:
        return environment.base_of(key)
    pin = environment.releases.get(key)
    return base_of(pin.model) if pin is not None else None


def training_tokens(environment: Environment, key: str, spec: ModelSpec, root: Path) -> tuple[int, int]:
    """(examples, billed tokens per epoch) of the model's training file, counted as Azure bills."""
    from ftops.dataset.validate import ValidateOptions, validate_file

    if spec.training_file is None:
        # Distilled: the file is the teacher's answers, not written yet; at most max_tokens each.
        planned, estimate = distillation_estimate(spec, root)
        return planned.count("train"), estimate.training_tokens_max
    report = validate_file(
        root / spec.training_file,
        ValidateOptions(method=spec.method.type, base_model=environment.base_of(key), epochs=1),
    )
    return report.examples, report.billed_tokens


def eval_tokens(
    gate: GateSpec, root: Path, model: str, environment: Environment | None = None
) -> tuple[int, int]:
    """(items, prompt tokens) of one pass over the gate's quality eval sets and safety probes."""
    from ftops.config.gates import checks
    from ftops.evaluation.verdict import suite
    from ftops.tokenizer import TokenCounter

    counter = TokenCounter(resolve_base(base_of(model)).encoding)
    items = 0
    texts: list[str] = []
    for check in checks(gate, root, environment):
        loaded = suite(check.path, fields=bool(check.grader_spec))
        chosen = loaded.only(set(check.categories) or None).items
        items += len(chosen)
        texts += [m.content for item in chosen for m in item.messages]
    # Chat formatting adds about 4 tokens per message and 3 per reply (the OpenAI cookbook's count).
    return items, int(counter.count_many(texts).sum()) + 4 * len(texts) + 3 * items


def distillation_estimate(spec: ModelSpec, root: Path) -> tuple[Plan, Estimate]:
    """What a distilled model's capture asks the teacher (its prompt set, as it would be split),
    and the tokens that costs; from stored completions nothing is asked (the plan is empty)."""
    from ftops.evaluation import distillation
    from ftops.evaluation.evalset import EvalSet

    distill = spec.distill_from
    if distill is None:
        raise ValueError("not a distilled model")
    if distill.prompts is None:
        empty = EvalSet("stored", "", [])
        return distillation.Plan(empty, {}, 0), distillation.Estimate(0, 0, 0, 0)
    planned = distillation.plan(
        root / distill.prompts,
        max_tokens=distill.sampling.max_tokens,
        max_examples=distill.max_examples,
        validation_split=distill.validation_split,
        held_out=distill.held_out,
        seed=distill.sampling.seed,
    )
    return planned, distillation.estimate(planned.prompts, planned.roles, distill.sampling.max_tokens)


def distillation_line(environment: Environment, key: str, spec: ModelSpec, root: Path) -> CostLine:
    """The teacher's answers a distilled model's dataset asks for: paid once per new dataset (a
    changed prompt set or teacher), at the teacher's inference rates; answers are at most
    max_tokens, so the figure is an upper bound."""
    distill = spec.distill_from
    if distill is None:
        raise ValueError(f"model {key} is not distilled")
    item = f"distillation capture {key} (teacher {distill.teacher.deployment})"
    if distill.prompts is None:
        return CostLine(
            item, "training", 0.0, "change", "reads stored completions production already paid for"
        )
    _, estimate = distillation_estimate(spec, root)
    rates = rates_for(environment, distill.teacher.model)
    return CostLine(
        item,
        "training",
        rates.inference_usd(estimate.input_tokens, estimate.output_tokens_max),
        "change",
        f"{estimate.prompts:,} prompts to {base_of(distill.teacher.model)}: {estimate.input_tokens:,} prompt "
        f"tokens + at most {estimate.output_tokens_max:,} answer tokens ({rates.source})",
    )


def gate_prices(environment: Environment, candidate: str, baseline: str | None) -> dict[str, Any]:
    """The inference rates a gate prices its requests at, by side (models as ids or base names;
    a fine-tuned model answers at its base's rates): the gate resource's `prices` input."""
    out: dict[str, Any] = {}
    for side, model in (("candidate", candidate), ("baseline", baseline or candidate)):
        try:
            rates = rates_for(environment, model)
        except UnknownModelError:  # a deployment of a model ftops has no rates for: not priced
            out[side] = None
            continue
        known = rates.input_per_million is not None and rates.output_per_million is not None
        out[side] = (
            Prices(float(rates.input_per_million or 0), float(rates.output_per_million or 0)).wire()
            if known
            else None
        )
    return out


def _scoring_line(environment: Environment, key: str, item: str, runs: int, root: Path) -> CostLine | None:
    """Scoring `runs` models with the gate's quality checks alone (no safety, no baseline)."""
    gate = environment.gates.get(key)
    if gate is None or not gate.quality:
        return None
    quality = gate.model_copy(update={"safety": None, "baseline": "none"})
    model = environment.base_of(key)
    items, tokens = eval_tokens(quality, root, model)
    one = evaluation_line(environment, key, quality, model, tokens, items)
    return CostLine(
        item,
        "evaluation",
        None if one.usd is None else one.usd * runs,
        "run",
        f"{runs} x ({one.basis}), quality checks only",
    )


def experiment_lines(
    environment: Environment, key: str, spec: ModelSpec, examples: int, tokens_per_epoch: int, root: Path
) -> list[CostLine]:
    """An experiment grid: a job per variant (a fraction of the data bills about that fraction of
    its tokens) and the scoring of every variant with the gate's quality checks."""
    from ftops.config.experiments import of

    plans = of(spec)
    jobs = []
    for plan in plans:
        hp = spec.method.hyperparameters.model_copy(
            update={
                k: v
                for k, v in plan.hyperparameters.items()
                if k in type(spec.method.hyperparameters).model_fields
            }
        )
        variant = spec.model_copy(update={"method": spec.method.model_copy(update={"hyperparameters": hp})})
        jobs.append(
            training_line(
                environment,
                key,
                variant,
                max(1, round(examples * plan.fraction)),
                round(tokens_per_epoch * plan.fraction),
            )
        )
    priced = [j.usd for j in jobs if j.usd is not None]
    lines = [
        CostLine(
            f"training {key} experiment grid ({len(plans)} variants)",
            "training",
            sum(priced) if len(priced) == len(jobs) else None,
            "change",
            "; ".join(f"{plan.label}: {job.label()}" for plan, job in zip(plans, jobs, strict=True))
            + " (a fraction of the data bills about that fraction of its tokens)",
        )
    ]
    scoring = _scoring_line(
        environment, key, f"evaluation {key} experiment ({len(plans)} variants)", len(plans), root
    )
    return lines + ([scoring] if scoring else [])


def best_eval_lines(environment: Environment, key: str, spec: ModelSpec, root: Path) -> list[CostLine]:
    """checkpoint: best_eval scores every kept checkpoint (at most three) with the quality checks."""
    epochs = spec.method.hyperparameters.n_epochs
    if spec.checkpoint != "best_eval" or not isinstance(epochs, int):
        return []
    kept = min(3, epochs)
    line = _scoring_line(environment, key, f"evaluation {key} checkpoints ({kept}, best_eval)", kept, root)
    return [line] if line else []
