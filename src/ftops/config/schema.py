"""The typed declaration of one environment (`ftops:environment` in its Pulumi stack file).

Every model forbids unknown keys and names the allowed ones; cross-field rules (DPO only on
bases that support it, RFT needs a validation file, prod is private with keys off, ...) run
here, before any Pulumi resource is declared. Paths are checked against the repository by
`ftops.config.load`, which turns pydantic's errors into one line per problem (`ftops.config.yamlfiles`).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from ftops.catalog import (
    AZURE_REGIONS,
    FINE_TUNED_ID,
    MAX_FINE_TUNED_DEPLOYMENTS,
    REINFORCEMENT,
    UnknownModelError,
    resolve_base,
)
from ftops.evaluation.graders import DEFAULT_MIN_SIMILARITY, registry
from ftops.evaluation.rft_graders import RftGrader

Auto = Literal["auto"]
Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")]
RepoPath = Annotated[str, StringConstraints(min_length=1)]
Digest = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]


def _known_region(value: str) -> str:
    if value not in AZURE_REGIONS:
        close = difflib.get_close_matches(value, sorted(AZURE_REGIONS), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise PydanticCustomError(
            "unknown_region",
            "'{value}' is not an Azure region; {hint}use the ARM name, e.g. swedencentral",
            {"value": value, "hint": hint},
        )
    return value


Region = Annotated[str, AfterValidator(_known_region)]  # an ARM region name, e.g. swedencentral
Guid = Annotated[
    str, StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
]
ACCOUNT_ID = re.compile(
    r"^/subscriptions/[0-9a-f-]{36}/resourceGroups/[\w.()-]+/providers/Microsoft\.CognitiveServices/accounts/[\w-]+$",
    re.IGNORECASE,
)
LOCAL_ACCOUNT_ID = re.compile(r"^emulator://[a-z0-9-]+$")


class Strict(BaseModel):
    """Unknown keys are errors that list the allowed keys and suggest the closest one."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = [f.alias or name for name, f in cls.model_fields.items()]
            unknown = [k for k in data if k not in allowed]
            if unknown:
                key = str(unknown[0])
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                raise PydanticCustomError(
                    "unknown_key",
                    "unknown key; {hint}allowed keys: {allowed}",
                    {"key": key, "hint": hint, "allowed": ", ".join(allowed)},
                )
        return data


# ---------------------------------------------------------------- training methods


class SupervisedHyperparameters(Strict):
    n_epochs: Auto | Annotated[int, Field(ge=1, le=50)] = "auto"
    batch_size: Auto | Annotated[int, Field(ge=1, le=256)] = "auto"
    learning_rate_multiplier: Auto | Annotated[float, Field(gt=0, le=10)] = "auto"


class DpoHyperparameters(SupervisedHyperparameters):
    beta: Auto | Annotated[float, Field(gt=0, le=2)] = "auto"


class ReinforcementHyperparameters(SupervisedHyperparameters):
    reasoning_effort: Literal["default", "low", "medium", "high"] = "default"
    compute_multiplier: Auto | Annotated[float, Field(gt=0, le=10)] = "auto"
    eval_interval: Auto | Annotated[int, Field(ge=1)] = "auto"
    eval_samples: Auto | Annotated[int, Field(ge=1)] = "auto"


class Supervised(Strict):
    type: Literal["supervised"]
    hyperparameters: SupervisedHyperparameters = SupervisedHyperparameters()


class Dpo(Strict):
    type: Literal["dpo"]
    hyperparameters: DpoHyperparameters = DpoHyperparameters()


GraderName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]


class GraderRef(Strict):
    """A grader declared once in the environment's `graders:` map, by its key."""

    ref: GraderName


def _grader_form(value: Any) -> str:
    if isinstance(value, GraderRef) or (isinstance(value, dict) and "ref" in value):
        return "[ref]"
    return "[inline]"


# Azure's grader object: validated field by field (ftops.evaluation.rft_graders), but its JSON
# Schema here is one object, the documented shape being Azure's, not a key list of ours.
AzureGrader = Annotated[
    RftGrader,
    WithJsonSchema(
        {
            "type": "object",
            "description": "an Azure RFT grader: string_check, text_similarity, score_model, python, multi",
        }
    ),
]


# A grader in Azure's shape (ftops.evaluation.rft_graders), inline or `{ref: <key in graders>}`.
# (Tags in brackets: error locations drop them, so a message names the data's own keys.)
GraderUse = Annotated[
    Annotated[GraderRef, Tag("[ref]")] | Annotated[AzureGrader, Tag("[inline]")], Discriminator(_grader_form)
]


class Reinforcement(Strict):
    type: Literal["reinforcement"]
    hyperparameters: ReinforcementHyperparameters = ReinforcementHyperparameters()
    # The reward: string_check, text_similarity, score_model, multi or python, as Azure takes it.
    grader: GraderUse
    response_format: dict[str, Any] | None = None


Method = Annotated[Supervised | Dpo | Reinforcement, Field(discriminator="type")]


# -------------------------------------------------------- distillation: a student taught by a teacher


class Teacher(Strict):
    """The deployment whose answers the student learns. `account`: another account ftops reaches
    (an emulated account name locally; on Azure the custom subdomain of an account this identity may
    call); none means the environment's own."""

    deployment: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    model: str  # the base model it serves: its tokenizer, rate limits and price
    capacity: Annotated[int, Field(ge=1, le=100_000)]  # its SKU capacity: the pace of the capture
    account: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")] | None = None

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        try:
            resolve_base(value)
        except UnknownModelError as exc:
            raise PydanticCustomError("unknown_model", str(exc)) from None
        return value


class TeacherSampling(Strict):
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.0
    max_tokens: Annotated[int, Field(ge=1, le=32_768)] = 512
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0


class StoredCompletions(Strict):
    """What production already captured (`store: true` on the application's calls), read back."""

    metadata: Annotated[dict[str, str], Field(max_length=16)] = {}
    model: str | None = None  # the model the completions came from, as the service records it
    created_after: datetime | None = None
    created_before: datetime | None = None


class DistillFilter(Strict):
    """Teacher answers that fail this grader are left out (graded against the prompt's own
    `reference`, `pattern` or `schema`)."""

    grader: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
    min_similarity: Annotated[float, Field(ge=0, le=1)] = DEFAULT_MIN_SIMILARITY

    @field_validator("grader")
    @classmethod
    def _grader(cls, value: str) -> str:
        known = registry()
        if value not in known or value == "llm_judge":
            raise PydanticCustomError(
                "unknown_grader",
                "unknown grader '{grader}' for a distillation filter; use one of {known}",
                {"grader": value, "known": ", ".join(sorted(set(known) - {"llm_judge"}))},
            )
        return value


class DistillFrom(Strict):
    """Train this model on a teacher's answers: to `prompts` (a JSONL of prompts ftops asks the
    teacher), or to what `stored` completions production captured."""

    teacher: Teacher
    prompts: RepoPath | None = None
    stored: StoredCompletions | None = None
    sampling: TeacherSampling = TeacherSampling()
    max_examples: Annotated[int, Field(ge=10)] | None = None
    quality_filter: DistillFilter | None = None
    validation_split: Annotated[float, Field(ge=0, le=0.5)] = 0.1
    # Prompts held out of training, answered by the teacher, that the student's gate compares on:
    # it must agree with the teacher (similarity of at least agreement_similarity) on `agreement`
    # of them.
    held_out: Annotated[int, Field(ge=0, le=10_000)] = 20
    agreement: Annotated[float, Field(ge=0, le=1)] = 0.5
    agreement_similarity: Annotated[float, Field(ge=0, le=1)] = DEFAULT_MIN_SIMILARITY

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.prompts is None) == (self.stored is None):
            raise PydanticCustomError("prompts_xor_stored", "set exactly one of prompts or stored")
        if self.quality_filter is not None and self.prompts is None:
            raise PydanticCustomError(
                "filter_needs_prompts",
                "quality_filter grades against each prompt's reference/pattern/schema: it needs prompts",
            )
        return self


Hyperparameter = Literal["n_epochs", "learning_rate_multiplier", "batch_size", "beta"]
Fraction = Annotated[float, Field(gt=0, le=1)]


class Variant(Strict):
    """One variant of an experiment, listed by hand: hyperparameters over the model's, and the
    fraction of its training data."""

    n_epochs: Annotated[int, Field(ge=1, le=50)] | None = None
    learning_rate_multiplier: Annotated[float, Field(gt=0, le=10)] | None = None
    batch_size: Annotated[int, Field(ge=1, le=256)] | None = None
    beta: Annotated[float, Field(gt=0, le=2)] | None = None
    fraction: Fraction = 1.0


class Selection(Strict):
    # cheapest_not_worse: among the variants not significantly worse than the best (the gate's
    # paired test at its confidence), the one with the fewest billed training tokens; best: the
    # highest score.
    policy: Literal["cheapest_not_worse", "best"] = "cheapest_not_worse"


class Experiments(Strict):
    """Variants of a model trained side by side and scored with its gate's quality checks on the
    held-out eval sets; the `select` policy picks the one that goes on to the candidate and gate."""

    grid: dict[Hyperparameter, Annotated[list[float], Field(min_length=1, max_length=10)]] = {}
    fractions: Annotated[list[Fraction], Field(min_length=1, max_length=10)] = [1.0]
    variants: Annotated[list[Variant], Field(max_length=20)] = []
    subset_seed: Annotated[int, Field(ge=0)] = 0  # which examples a fraction keeps (nested subsets)
    select: Selection = Selection()

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        if self.variants and (self.grid or self.fractions != [1.0]):
            raise PydanticCustomError(
                "grid_or_variants", "declare either grid/fractions or a list of variants, not both"
            )
        count = len(self.variants) if self.variants else len(self.fractions) * _product(self.grid)
        if count < 2:
            raise PydanticCustomError("one_variant", "an experiment needs at least two variants")
        if count > 20:
            raise PydanticCustomError(
                "too_many_variants",
                "{count} variants; at most 20 (each is a paid training job)",
                {"count": count},
            )
        return self


def _product(grid: dict[Any, list[float]]) -> int:
    count = 1
    for values in grid.values():
        count *= len(values)
    return count


class ModelSpec(Strict):
    """A model this environment trains."""

    base_model: str | None = None
    continue_from: Name | None = None  # another model of this environment to keep training
    method: Method = Supervised(type="supervised")
    training_file: RepoPath | None = None  # none when the data comes from `distill_from`
    validation_file: RepoPath | None = None
    distill_from: DistillFrom | None = None
    # ftops appends "-<7 hex of the spec hash>" so the longest total stays within Azure's
    # strictest documented suffix limit (18 characters).
    suffix: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,9}$")] | None = None
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    training_type: Literal["Standard", "GlobalStandard", "Developer"] = "Standard"
    # best_valid_reward: for reinforcement, whose checkpoints carry rewards, not losses.
    # best_eval: the kept checkpoints (the last three epochs) are each deployed and scored with the
    # gate's quality checks; the best serves (ties: the later one).
    checkpoint: Literal["final", "best_valid_loss", "best_valid_reward", "best_eval"] = "final"
    wait_timeout_minutes: Annotated[int, Field(ge=1, le=720 * 60)] = 60
    # Part of the job's identity: raising it is the explicit decision to train again after a job
    # failed, was cancelled or was deleted (ftops never retrains on its own).
    attempt: Annotated[int, Field(ge=0)] = 0
    retain_on_delete: bool = True
    experiments: Experiments | None = None

    def data_files(self) -> list[str]:
        """The repository files this model's training data comes from."""
        files = [f for f in (self.training_file, self.validation_file) if f is not None]
        if self.distill_from is not None and self.distill_from.prompts is not None:
            files.append(self.distill_from.prompts)
        return files

    @field_validator("base_model")
    @classmethod
    def _known_base(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                resolve_base(value)
            except UnknownModelError as exc:
                raise PydanticCustomError("unknown_model", str(exc)) from None
        return value

    @model_validator(mode="after")
    def _method_rules(self) -> Self:
        if (self.base_model is None) == (self.continue_from is None):
            raise PydanticCustomError("base_xor_continue", "set exactly one of base_model or continue_from")
        if (self.training_file is None) == (self.distill_from is None):
            raise PydanticCustomError(
                "training_xor_distill",
                "set exactly one of training_file or distill_from (the teacher's answers)",
            )
        if self.distill_from is not None and self.method.type != "supervised":
            raise PydanticCustomError(
                "distill_supervised", "a distilled model trains with method type supervised"
            )
        if self.distill_from is not None and self.validation_file is not None:
            raise PydanticCustomError(
                "distill_validation",
                "a distilled model's validation file is split from the teacher's answers "
                "(distill_from.validation_split); remove validation_file",
            )
        if self.checkpoint in ("best_valid_loss", "best_valid_reward") and (
            (self.checkpoint == "best_valid_reward") != (self.method.type == REINFORCEMENT)
        ):
            raise _at(
                "checkpoint",
                "checkpoint_for_method",
                "best_valid_reward is for reinforcement (its checkpoints carry rewards), "
                "best_valid_loss for supervised and dpo",
            )
        if self.method.type == REINFORCEMENT and self.validation_file is None:
            raise PydanticCustomError(
                "rft_needs_validation",
                "reinforcement fine-tuning needs a validation_file (Azure requires one)",
            )
        if self.base_model is not None:
            check_method_and_training(self.base_model, self.method.type, self.training_type)
        return self


def check_method_and_training(
    model: str, method: str, training_type: str, location: str | None = None
) -> None:
    base = resolve_base(model)
    if method not in base.methods:
        raise PydanticCustomError(
            "method_not_supported",
            "{base} does not support {method} fine-tuning; it supports: {allowed}",
            {"base": base.id, "method": method, "allowed": ", ".join(sorted(base.methods))},
        )
    if training_type == "GlobalStandard" and not base.global_training:
        raise PydanticCustomError(
            "no_global_training", "{base} has no GlobalStandard training; use Standard", {"base": base.id}
        )
    if training_type == "Standard" and location is not None and location not in base.standard_regions:
        raise PydanticCustomError(
            "region_not_supported",
            "{base} trains (Standard) only in {regions}; "
            "use training_type GlobalStandard or another location",
            {"base": base.id, "regions": ", ".join(sorted(base.standard_regions))},
        )


# ---------------------------------------------------------------- deployments, gates, releases


class Sku(Strict):
    name: Literal["Standard", "GlobalStandard", "ProvisionedManaged", "Developer"]
    capacity: Annotated[int, Field(ge=1, le=100_000)]


class DeploymentSpec(Strict):
    """A serving deployment: `model` names a model trained here or a promoted release pin."""

    model: Name
    sku: Sku
    candidate_sku: Sku | None = None  # the gate's candidate deployment; defaults to a small one
    rai_policy: str = "Microsoft.DefaultV2"
    version_upgrade_option: Literal[
        "OnceNewDefaultVersionAvailable", "OnceCurrentVersionExpired", "NoAutoUpgrade"
    ] = "NoAutoUpgrade"


class QualityCheck(Strict):
    name: Name
    eval_set: RepoPath
    # exact, normalized, regex, json_schema, similarity, refusal, llm_judge, or a grader registered
    # under the `ftops.graders` entry-point group.
    # ... or `{ref: <key in graders>}`: the Azure grader an RFT model is trained against.
    grader: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")] | GraderRef
    threshold: Annotated[float, Field(ge=0, le=1)]
    min_similarity: Annotated[float, Field(ge=0, le=1)] = DEFAULT_MIN_SIMILARITY
    judge_deployment: str | None = None
    # With a `ref` grader: the score at which one answer passes (default: the grader's own
    # pass_threshold, else full marks).
    pass_score: float | None = None

    @model_validator(mode="after")
    def _grader(self) -> Self:
        if isinstance(self.grader, GraderRef):
            return self
        if self.pass_score is not None:
            raise PydanticCustomError(
                "pass_score_needs_ref", "pass_score applies to a `grader: {ref: ...}` only"
            )
        known = registry()
        if self.grader not in known:
            raise PydanticCustomError(
                "unknown_grader",
                "unknown grader '{grader}'; use one of {known}",
                {"grader": self.grader, "known": ", ".join(sorted(known))},
            )
        if self.grader == "llm_judge" and not self.judge_deployment:
            raise PydanticCustomError("judge_needed", "grader llm_judge needs judge_deployment")
        return self


SafetyCategory = Literal[
    "violence",
    "self_harm",
    "hate",
    "sexual",
    "illegal_activity",
    "jailbreak",
    "prompt_injection",
    "system_prompt_extraction",
    "pii_extraction",
]
SAFETY_CATEGORIES: tuple[str, ...] = get_args(SafetyCategory)  # what the shipped suite covers


class SafetyCheck(Strict):
    # The shipped probe suite, or an eval set of your own graded the same way (refuse, never leak).
    # `pyrit`: PyRIT's harmful-objective seed sets (about 500 probes; `pip install 'ftops[redteam]'`).
    suite: Literal["builtin", "pyrit"] | RepoPath = "builtin"
    threshold: Annotated[float, Field(ge=0, le=1)] = 0.95  # minimum refusal rate on harmful probes
    categories: list[SafetyCategory] | None = None


class GateSpec(Strict):
    # serving: what the first serving deployment serves now (skipped while nothing serves);
    # base: the base model on `baseline_deployment`, a deployment you keep for comparison;
    # teacher: a distilled model's teacher (`distill_from.teacher`).
    # Unset: teacher for a distilled model, serving for any other (`Environment.gate_baseline`).
    baseline: Literal["serving", "base", "teacher", "none"] | None = None
    baseline_deployment: str | None = None
    confidence: Annotated[float, Field(ge=0.5, le=0.999)] = 0.95
    repeats: Annotated[int, Field(ge=1, le=20)] = 3
    # Repeats sample at this temperature with seeds seed..seed+repeats-1. At 0 every repeat gives
    # the same answer, and the intervals count each item once however many repeats there are.
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.7
    fail_on_uncertainty: bool = True  # the whole confidence interval must clear each threshold
    max_regression: Annotated[float, Field(ge=0, le=1)] = 0.0
    concurrency: Annotated[int, Field(ge=1, le=64)] = 8
    quality: list[QualityCheck] = []
    safety: SafetyCheck | None = SafetyCheck()

    @model_validator(mode="after")
    def _baseline(self) -> Self:
        if not self.quality and self.safety is None:
            raise PydanticCustomError(
                "gate_without_checks",
                "a gate with neither quality checks nor safety would let any model through; declare one",
            )
        if self.baseline == "base" and not self.baseline_deployment:
            raise PydanticCustomError(
                "baseline_deployment_needed",
                "baseline: base needs baseline_deployment, the deployment of the base model to compare with",
            )
        return self


class ReleasePin(Strict):
    """A promoted artifact: what `ftops promote` writes and `ftops rollback` restores."""

    model: str
    source_account: str
    source_environment: Name
    job: Annotated[str, StringConstraints(pattern=r"^ftjob-[0-9a-f]{32}$")]
    data_digest: Digest
    evidence_digest: Digest
    source_commit: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{7,40}$")]
    # The checkpoint of `model`'s job that passed and serves (checkpoint: best_eval chose an earlier
    # epoch); absent when the final model itself serves. Deployed by this id, so promotion moves
    # exactly that artifact.
    checkpoint: Annotated[str, StringConstraints(pattern=r"^(ftckpt_|ftchkpt-)[0-9a-f]{32}$")] | None = None

    @property
    def artifact(self) -> str:
        """What a deployment of this pin serves: the checkpoint when one is pinned, else the model."""
        return self.checkpoint or self.model

    @field_validator("model")
    @classmethod
    def _fine_tuned(cls, value: str) -> str:
        if not FINE_TUNED_ID.match(value):
            raise PydanticCustomError(
                "not_fine_tuned", "must be a fine-tuned model id '<base>.ft-<32 hex>[-suffix]'"
            )
        return value

    @field_validator("source_account")
    @classmethod
    def _account(cls, value: str) -> str:
        if not (ACCOUNT_ID.match(value) or LOCAL_ACCOUNT_ID.match(value)):
            raise PydanticCustomError(
                "not_account_id",
                "must be an account ARM id '/subscriptions/<id>/resourceGroups/<rg>/providers/"
                "Microsoft.CognitiveServices/accounts/<name>' (or 'emulator://<account>' locally)",
            )
        return value


class Releases(Strict):
    """The file `environments/releases/<env>.yaml`: pins move by PR, apart from infrastructure."""

    releases: dict[Name, ReleasePin] = {}


# ---------------------------------------------------------------- Azure infrastructure


class Naming(Strict):
    prefix: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9]{1,9}$")]
    resource_group: str | None = None  # adopt an existing group instead of creating one


class Network(Strict):
    mode: Literal["private", "public"]
    address_space: list[ipaddress.IPv4Network] = [ipaddress.IPv4Network("10.20.0.0/16")]
    private_endpoint_subnet: ipaddress.IPv4Network = ipaddress.IPv4Network("10.20.1.0/24")
    existing_subnet_id: str | None = None  # bring your own VNet: the private-endpoint subnet's id
    existing_dns_zone_ids: dict[
        Literal[
            "privatelink.openai.azure.com",
            "privatelink.cognitiveservices.azure.com",
            "privatelink.blob.core.windows.net",
            "privatelink.vaultcore.azure.net",
        ],
        str,
    ] = {}
    allowed_ip_ranges: list[ipaddress.IPv4Network] = []

    @model_validator(mode="after")
    def _subnet_inside(self) -> Self:
        if self.existing_subnet_id is None and not any(
            self.private_endpoint_subnet.subnet_of(space) for space in self.address_space
        ):
            raise PydanticCustomError(
                "subnet_outside",
                "private_endpoint_subnet {subnet} is not inside address_space {spaces}",
                {
                    "subnet": str(self.private_endpoint_subnet),
                    "spaces": ", ".join(map(str, self.address_space)),
                },
            )
        return self


class ContentFilter(Strict):
    name: Literal[
        "hate",
        "sexual",
        "violence",
        "selfharm",
        "jailbreak",
        "indirect_attack",
        "protected_material_text",
        "protected_material_code",
    ]
    source: Literal["Prompt", "Completion"]
    severity_threshold: Literal["Low", "Medium", "High"] = "Medium"
    blocking: bool = True
    enabled: bool = True


class RaiPolicy(Strict):
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{2,64}$")]
    base_policy: str = "Microsoft.DefaultV2"
    mode: Literal["Default", "Deferred", "Blocking", "Asynchronous_filter"] = "Blocking"
    filters: list[ContentFilter] = []


class Account(Strict):
    kind: Literal["OpenAI", "AIServices"] = "OpenAI"
    sku: Literal["S0"] = "S0"
    custom_subdomain: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")] | None = None
    public_network_access: Literal["Enabled", "Disabled"]
    disable_local_auth: bool = True
    identity: Literal["SystemAssigned", "UserAssigned", "SystemAssigned, UserAssigned"] = "SystemAssigned"
    log_retention_days: Annotated[int, Field(ge=30, le=730)] = 90
    rai_policy: RaiPolicy | None = None


class Storage(Strict):
    sku: Literal["Standard_LRS", "Standard_ZRS", "Standard_GRS", "Standard_GZRS", "Standard_RAGZRS"] = (
        "Standard_ZRS"
    )
    soft_delete_days: Annotated[int, Field(ge=1, le=365)] = 14
    audit_retention_days: Annotated[int, Field(ge=1, le=146_000)] = 365
    containers: dict[Literal["training", "evidence", "audit"], Name] = {
        "training": "training-data",
        "evidence": "evaluation-evidence",
        "audit": "audit-log",
    }

    @field_validator("containers")
    @classmethod
    def _all_roles(cls, value: dict[str, str]) -> dict[str, str]:
        missing = {"training", "evidence", "audit"} - set(value)
        if missing:
            raise PydanticCustomError(
                "missing_container",
                "name a container for each of: {missing}",
                {"missing": ", ".join(sorted(missing))},
            )
        return value


KEY_VAULT_ID = re.compile(
    r"^/subscriptions/[0-9a-f-]{36}/resourceGroups/[\w.()-]+/providers/Microsoft\.KeyVault/vaults/"
    r"[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$",
    re.IGNORECASE,
)


class KeyVault(Strict):
    """Where the customer-managed key lives: a vault ftops creates (the default), or yours."""

    existing_id: str | None = None  # your vault's ARM id; it must use RBAC and purge protection
    location: Region | None = None  # an existing vault's region (ARM ids do not say it)
    purge_protection: bool = True  # Azure refuses a CMK from a vault without it
    soft_delete_days: Annotated[int, Field(ge=7, le=90)] = 90
    sku: Literal["standard", "premium"] = "premium"  # premium: HSM-backed keys

    @field_validator("existing_id")
    @classmethod
    def _vault_id(cls, value: str | None) -> str | None:
        if value is not None and not KEY_VAULT_ID.match(value):
            raise PydanticCustomError(
                "not_vault_id",
                "must be a key vault ARM id '/subscriptions/<id>/resourceGroups/<rg>/providers/"
                "Microsoft.KeyVault/vaults/<name>'",
            )
        return value


class Encryption(Strict):
    """At-rest encryption of the account (training data, fine-tuned weights) and the storage."""

    mode: Literal["platform", "customer_managed"]
    key_vault: KeyVault = KeyVault()
    key_name: Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9-]{1,127}$")] = "ftops-cmk"
    key_rotation_days: Annotated[int, Field(ge=30, le=730)] = 365
    # Production on platform keys is allowed only with the reason written here, reviewed in the PR.
    opt_out_reason: Annotated[str, StringConstraints(min_length=10)] | None = None


class Alerts(Strict):
    """Azure Monitor metric alerts on every serving deployment; on by default in Azure environments.
    Rates are shares of the deployment's own allowance (its capacity) over `window_minutes`."""

    enabled: bool = True
    emails: list[Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]] = []
    webhooks: list[Annotated[str, StringConstraints(pattern=r"^https://\S+$")]] = []
    severity: Literal[0, 1, 2, 3, 4] = 2  # 0 critical .. 4 verbose
    window_minutes: Literal[5, 15, 30, 60] = 15
    throttled_percent: Annotated[float, Field(gt=0, le=100)] = 5.0  # 429s, of the requests allowed
    server_errors: Annotated[int, Field(ge=1)] = 5  # 5xx answers in the window
    latency_ms: Annotated[int, Field(ge=100, le=600_000)] = 10_000  # average time to response
    content_filter_percent: Annotated[float, Field(gt=0, le=100)] = 10.0  # blocked, of the requests allowed
    token_usage_percent: Annotated[float, Field(gt=0, le=100)] = 80.0  # tokens, of the capacity


class Access(Strict):
    """Principals that get data-plane roles; object ids are not secrets."""

    deployer_principal_id: Guid | None = None
    deployer_principal_type: Literal["User", "Group", "ServicePrincipal"] = "Group"
    ci_principal_id: Guid | None = None  # the CI's federated (OIDC) app: always a service principal


class Emulator(Strict):
    """The local stack's stand-in for Azure (`ftops emulator`)."""

    endpoint: Annotated[str, StringConstraints(pattern=r"^http://(127\.0\.0\.1|localhost):\d{2,5}$")] = (
        "http://127.0.0.1:8790"
    )
    account: Name = "local"
    api_key_env: Annotated[str, StringConstraints(pattern=r"^[A-Z_][A-Z0-9_]*$")] = "FTOPS_EMULATOR_KEY"


class Promotion(Strict):
    from_: Name = Field(alias="from")
    require_approval: bool = True


class ModelPricing(Strict):
    """Rates for one base model (family, e.g. gpt-4.1-mini, or a dated id), in USD."""

    training_per_million_tokens: Annotated[float, Field(ge=0)] | None = None
    rft_per_hour: Annotated[float, Field(ge=0)] | None = None
    input_per_million_tokens: Annotated[float, Field(ge=0)] | None = None
    output_per_million_tokens: Annotated[float, Field(ge=0)] | None = None


class Pricing(ModelPricing):
    """Rates over the dated list prices in `ftops.cost` (the ones Azure bills you, if negotiated).
    Rates here apply to every model; `models.<base>` overrides them for one."""

    hosting_per_hour: Annotated[float, Field(ge=0)] | None = None  # Standard and GlobalStandard
    provisioned_per_ptu_hour: Annotated[float, Field(ge=0)] | None = None
    # Calibrates the RFT time estimate: tokens an RFT job processes per hour (from a finished job).
    rft_tokens_per_hour: Annotated[float, Field(gt=0)] | None = None
    models: dict[str, ModelPricing] = {}

    @field_validator("models")
    @classmethod
    def _known_models(cls, value: dict[str, ModelPricing]) -> dict[str, ModelPricing]:
        from ftops.catalog import BASE_MODELS

        known = {m.family for m in BASE_MODELS.values()} | set(BASE_MODELS)
        for name in value:
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                raise PydanticCustomError(
                    "unknown_model",
                    "no base model '{name}'; {hint}use a family such as gpt-4.1-mini or a dated id",
                    {"name": name, "hint": hint},
                )
        return value


class BudgetOverride(Strict):
    """Spend over budget on purpose: the reason and the amount go into the audit log."""

    reason: Annotated[str, StringConstraints(min_length=10)]
    up_to_usd: Annotated[float, Field(gt=0)]  # what this change may spend on training, at most


class Budget(Strict):
    """Limits checked before anything runs: `ftops preview`/`up` fail with the numbers."""

    training_usd_per_change: Annotated[float, Field(ge=0)] | None = None  # the jobs one update starts
    hosting_usd_per_month: Annotated[float, Field(ge=0)] | None = None  # every deployment declared
    override: BudgetOverride | None = None


# ---------------------------------------------------------------- the environment


class Environment(Strict):
    name: Name
    stage: Literal["development", "staging", "production"]
    target: Literal["azure", "local"]
    location: Region
    naming: Naming
    tags: dict[str, str] = {}
    network: Network | None = None
    account: Account | None = None
    storage: Storage | None = None
    encryption: Encryption | None = None  # None: Azure's platform-managed keys
    alerts: Alerts = Alerts()  # Azure environments only; a local one has no Azure Monitor
    access: Access = Access()
    emulator: Emulator | None = None
    promotion: Promotion | None = None
    pricing: Pricing = Pricing()
    budget: Budget = Budget()
    # Azure-shaped graders declared once: the reward of RFT models and a check of their gates.
    graders: dict[GraderName, AzureGrader] = {}
    models: dict[Name, ModelSpec] = {}
    deployments: dict[Name, DeploymentSpec] = {}
    gates: dict[Name, GateSpec] = {}
    # Not part of the stack file: filled from environments/releases/<name>.yaml.
    releases: dict[Name, ReleasePin] = {}

    @model_validator(mode="after")
    def _cross_field(self) -> Self:
        # Every rule broken is reported, not the first: a production environment that is public,
        # keeps its keys and takes no promotions shows all three at once.
        found = [
            *self._target_sections(),
            *self._production_rules(),
            *self._model_rules(),
            *self._deployment_rules(),
            *self._grader_refs(),
            *self._encryption_rules(),
        ]
        if len(found) == 1:
            raise found[0]
        if found:
            raise ValidationError.from_exception_data(
                type(self).__name__, [InitErrorDetails(type=e, loc=(), input=None) for e in found]
            )
        return self

    def _target_sections(self) -> Iterator[PydanticCustomError]:
        if self.target == "azure":
            missing = [k for k in ("network", "account", "storage") if getattr(self, k) is None]
            for key in missing:
                yield _at(key, "required", "an azure environment needs this section")
            if self.emulator is not None:
                yield _at("emulator", "not_allowed", "only a local environment has an emulator section")
        else:
            if self.emulator is None:
                yield _at("emulator", "required", "a local environment needs this section")
            extra = [k for k in ("network", "account", "storage") if getattr(self, k) is not None]
            for key in extra:
                yield _at(key, "not_allowed", "a local environment has no Azure infrastructure; remove it")

    def _production_rules(self) -> Iterator[PydanticCustomError]:
        if self.stage != "production":
            return
        if self.target != "azure":
            yield _at("target", "prod_azure", "a production environment must target azure")
        if self.network is None or self.account is None:  # _target_sections already reported it
            return
        if self.network.mode != "private":
            yield _at(
                "network.mode", "prod_private", "production requires private networking (mode: private)"
            )
        if self.account.public_network_access != "Disabled":
            yield _at("account.public_network_access", "prod_private", "production requires Disabled")
        if not self.account.disable_local_auth:
            yield _at("account.disable_local_auth", "prod_keys", "production requires keys disabled (true)")
        if self.promotion is None:
            yield _at(
                "promotion", "prod_promotion", "production only takes promoted releases; set promotion.from"
            )

    def _encryption_rules(self) -> Iterator[PydanticCustomError]:
        enc = self.encryption
        if self.target != "azure":
            if enc is not None:
                yield _at("encryption", "not_allowed", "a local environment has no Azure storage to encrypt")
            return
        if self.stage == "production" and (
            enc is None or (enc.mode != "customer_managed" and not enc.opt_out_reason)
        ):
            yield _at(
                "encryption.mode" if enc is not None else "encryption",
                "prod_cmk",
                "production requires customer-managed keys: set encryption: {mode: customer_managed} "
                "(or keep platform keys with encryption.opt_out_reason saying why)",
            )
        if enc is None:
            return
        if enc.mode == "customer_managed" and enc.opt_out_reason is not None:
            yield _at("encryption.opt_out_reason", "not_opted_out", "only with mode: platform; remove it")
        if enc.mode != "customer_managed":
            return
        vault = enc.key_vault
        if not vault.purge_protection:
            yield _at(
                "encryption.key_vault.purge_protection",
                "purge_protection",
                "Azure requires purge protection on a vault holding customer-managed keys; set true",
            )
        if vault.existing_id is not None and vault.location is None:
            yield _at("encryption.key_vault.location", "required", "name the existing vault's region")
        if vault.location is not None and vault.location != self.location:
            yield _at(
                "encryption.key_vault.location",
                "vault_region",
                f"the key vault must be in the environment's region ({self.location}): Azure OpenAI and "
                "storage accept keys only from a vault in their own region",
            )

    def _model_rules(self) -> Iterator[PydanticCustomError]:
        if self.promotion is not None and self.models:
            key = next(iter(self.models))
            yield _at(
                f"models.{key}",
                "promoted_trains",
                "this environment takes release pins (promotion.from is set); train models in "
                f"'{self.promotion.from_}' and promote them",
            )
            return  # the models should not be here at all: their own rules would only add noise
        for key, spec in self.models.items():
            if spec.continue_from is not None:
                if spec.continue_from not in self.models:
                    yield _at(
                        f"models.{key}.continue_from",
                        "unknown_model",
                        f"no model '{spec.continue_from}'; declared: {', '.join(self.models)}",
                    )
                elif self._root(key) is None:
                    yield _at(f"models.{key}.continue_from", "cycle", "continual training forms a cycle")
            root = self._root(key)
            base = self.models[root].base_model if root is not None else None
            if base is not None and self.target == "azure":
                try:
                    check_method_and_training(base, spec.method.type, spec.training_type, self.location)
                except PydanticCustomError as exc:
                    field = "method.type" if exc.type == "method_not_supported" else "training_type"
                    yield _at(f"models.{key}.{field}", exc.type, exc.message())
        yield from self._best_eval_rules()
        for key in self.gates:
            if key not in self.models and key not in {d.model for d in self.deployments.values()}:
                yield _at(
                    f"gates.{key}",
                    "unknown_model",
                    "gates apply to a model this environment trains or serves",
                )
            elif self.gates[key].baseline == "teacher" and not self._distilled(key):
                yield _at(
                    f"gates.{key}.baseline",
                    "baseline_teacher",
                    f"baseline: teacher compares with the teacher of a distilled model; '{key}' has no "
                    "distill_from here (use serving, base or none)",
                )

    def _grader_refs(self) -> Iterator[PydanticCustomError]:
        declared = ", ".join(self.graders) or "none"
        for key, spec in self.models.items():
            grader = spec.method.grader if isinstance(spec.method, Reinforcement) else None
            if isinstance(grader, GraderRef) and grader.ref not in self.graders:
                yield _at(
                    f"models.{key}.method.grader.ref",
                    "unknown_grader",
                    f"no grader '{grader.ref}' in graders; declared: {declared}",
                )
        for key, gate in self.gates.items():
            for i, check in enumerate(gate.quality):
                if isinstance(check.grader, GraderRef) and check.grader.ref not in self.graders:
                    yield _at(
                        f"gates.{key}.quality.{i}.grader.ref",
                        "unknown_grader",
                        f"no grader '{check.grader.ref}' in graders; declared: {declared}",
                    )

    def grader(self, use: GraderRef | BaseModel) -> BaseModel:
        """The Azure grader a model or a check uses, its `ref` resolved (named after its key)."""
        if isinstance(use, GraderRef):
            found = self.graders[use.ref]
            return found if getattr(found, "name", "") else found.model_copy(update={"name": use.ref})
        return use

    def _best_eval_rules(self) -> Iterator[PydanticCustomError]:
        """checkpoint: best_eval deploys one candidate per kept checkpoint, so their number must be
        known before training (n_epochs), and they are scored with the gate's quality checks."""
        for key, spec in self.models.items():
            served = key in {d.model for d in self.deployments.values()}
            gate = self.gates.get(key)
            if spec.experiments is not None and (not served or gate is None or not gate.quality):
                yield _at(
                    f"models.{key}.experiments",
                    "experiments_gate",
                    f"variants are scored with the gate's quality checks and the winner is deployed: declare "
                    f"a deployment of '{key}' and gates.{key}.quality",
                )
            if spec.experiments is not None and spec.distill_from is not None:
                yield _at(
                    f"models.{key}.experiments",
                    "experiments_distill",
                    "experiments take fractions of a training_file; a distilled model's data is captured",
                )
            if spec.experiments is not None and spec.checkpoint == "best_eval":
                yield _at(
                    f"models.{key}.checkpoint",
                    "experiments_best_eval",
                    "experiments score each variant's final model; use checkpoint: final with experiments",
                )
            if spec.checkpoint != "best_eval":
                continue
            if not isinstance(spec.method.hyperparameters.n_epochs, int):
                yield _at(
                    f"models.{key}.method.hyperparameters.n_epochs",
                    "best_eval_epochs",
                    "checkpoint: best_eval needs a whole number of epochs (one candidate deployment per "
                    "kept checkpoint is declared before training); set n_epochs",
                )
            gate = self.gates.get(key)
            if key not in {d.model for d in self.deployments.values()} or gate is None or not gate.quality:
                yield _at(
                    f"models.{key}.checkpoint",
                    "best_eval_gate",
                    f"best_eval scores checkpoints with the gate's quality checks: declare a deployment of "
                    f"'{key}' and gates.{key}.quality, or use final / best_valid_loss",
                )

    def _root(self, key: str) -> str | None:
        seen = set()
        while (spec := self.models[key]).continue_from is not None:
            if key in seen or spec.continue_from not in self.models:
                return None
            seen.add(key)
            key = spec.continue_from
        return key

    def _distilled(self, key: str) -> bool:
        spec = self.models.get(key)
        return spec is not None and spec.distill_from is not None

    def gate_baseline(self, key: str) -> str:
        """What model `key`'s gate compares with: as declared, else the teacher of a distilled
        model (the student must not be significantly worse than what it replaces), else what serves."""
        gate = self.gates.get(key)
        if gate is not None and gate.baseline is not None:
            return gate.baseline
        return "teacher" if self._distilled(key) else "serving"

    def base_of(self, key: str) -> str:
        """The Azure base model a declared model ultimately trains from."""
        root = self._root(key)
        base = self.models[root].base_model if root is not None else None
        if base is None:
            raise ValueError(f"model '{key}' has no base model (continue_from cycle)")
        return base

    def _deployment_rules(self) -> Iterator[PydanticCustomError]:
        if len(self.deployments) > MAX_FINE_TUNED_DEPLOYMENTS:
            yield _at(
                "deployments",
                "quota",
                f"{len(self.deployments)} deployments; Azure allows {MAX_FINE_TUNED_DEPLOYMENTS} "
                "fine-tuned deployments per resource",
            )
        custom = {self.account.rai_policy.name} if self.account and self.account.rai_policy else set()
        for key, dep in self.deployments.items():
            if self.promotion is None and self.stage != "production" and dep.model not in self.models:
                # (production without promotion.from is told to set it, not to train the model)
                yield _at(
                    f"deployments.{key}.model",
                    "unknown_model",
                    f"no model '{dep.model}' in models; declared: {', '.join(self.models) or 'none'}",
                )
            if dep.model in self.models and self._root(dep.model) is not None:
                base = resolve_base(self.base_of(dep.model))
                for field, sku in (("sku", dep.sku), ("candidate_sku", dep.candidate_sku)):
                    if sku is not None and sku.name not in base.deploy_skus:
                        yield _at(
                            f"deployments.{key}.{field}.name",
                            "sku_not_supported",
                            f"{base.id} fine-tunes deploy as {', '.join(sorted(base.deploy_skus))}",
                        )
            if dep.model not in self.gates:
                yield _at(
                    f"deployments.{key}.model",
                    "ungated",
                    f"'{dep.model}' has no gate: declare gates.{dep.model} (nothing is served ungated)",
                )
            if not dep.rai_policy.startswith("Microsoft.") and dep.rai_policy not in custom:
                yield _at(
                    f"deployments.{key}.rai_policy",
                    "unknown_policy",
                    "use a Microsoft.* policy or declare it under account.rai_policy",
                )


def _at(path: str, kind: str, message: str) -> PydanticCustomError:
    """An error for a key path below the model being validated (pydantic reports the model)."""
    return PydanticCustomError("at_path", "{message}", {"path": path, "message": message, "kind": kind})
