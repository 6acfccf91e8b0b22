"""What Azure OpenAI offers for fine-tuning, per base model (see the facts file, section 2).

One table, read by the config validator, `ftops validate` and the emulator, so a rule such as
"DPO only on gpt-4o / gpt-4.1 / gpt-4.1-mini" is written once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SUPERVISED = "supervised"
DPO = "dpo"
REINFORCEMENT = "reinforcement"
METHODS = (SUPERVISED, DPO, REINFORCEMENT)

# Deployment SKUs Azure offers for fine-tuned models (fine-tuning-deploy.md). "Developer" is the
# CLI spelling; the REST body spells it "developertier".
DEPLOY_SKUS = ("Standard", "GlobalStandard", "ProvisionedManaged", "Developer")
TRAINING_TYPES = ("Standard", "GlobalStandard", "Developer")

MAX_FILE_BYTES = 512 * 1024 * 1024  # "<512 MB" per training or validation file
MIN_EXAMPLES = 10
MAX_TRAINED_TOKENS = 2_000_000_000  # tokens x epochs per job
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_IMAGE_EXAMPLES = 50_000
MAX_FINE_TUNED_DEPLOYMENTS = 5  # per resource (quotas-limits.md)


@dataclass(frozen=True)
class BaseModel:
    family: str
    version: str
    methods: frozenset[str]
    max_example_tokens: int
    standard_regions: frozenset[str]
    global_training: bool
    vision: bool = False
    deploy_skus: frozenset[str] = frozenset({"Standard", "GlobalStandard"})
    encoding: str = "o200k_base"

    @property
    def id(self) -> str:
        return f"{self.family}-{self.version}"


_NCUS_SWEDEN = frozenset({"northcentralus", "swedencentral"})

BASE_MODELS: dict[str, BaseModel] = {
    m.id: m
    for m in (
        BaseModel(
            "gpt-4o-mini",
            "2024-07-18",
            frozenset({SUPERVISED}),
            65_536,
            _NCUS_SWEDEN,
            True,
            deploy_skus=frozenset({"Standard", "GlobalStandard", "ProvisionedManaged"}),
        ),
        BaseModel(
            "gpt-4o",
            "2024-08-06",
            frozenset({SUPERVISED, DPO}),
            65_536,
            frozenset({"eastus2", "northcentralus", "swedencentral"}),
            True,
            vision=True,
            deploy_skus=frozenset({"Standard", "GlobalStandard", "ProvisionedManaged"}),
        ),
        BaseModel(
            "gpt-4.1",
            "2025-04-14",
            frozenset({SUPERVISED, DPO}),
            65_536,
            _NCUS_SWEDEN,
            True,
            vision=True,
            deploy_skus=frozenset({"Standard", "GlobalStandard", "ProvisionedManaged", "Developer"}),
        ),
        BaseModel(
            "gpt-4.1-mini",
            "2025-04-14",
            frozenset({SUPERVISED, DPO}),
            65_536,
            _NCUS_SWEDEN,
            True,
            deploy_skus=frozenset({"Standard", "GlobalStandard", "Developer"}),
        ),
        BaseModel(
            "gpt-4.1-nano",
            "2025-04-14",
            frozenset({SUPERVISED}),
            32_768,
            _NCUS_SWEDEN,
            True,
            deploy_skus=frozenset({"Standard", "GlobalStandard", "Developer"}),
        ),
        BaseModel(
            "o4-mini",
            "2025-04-16",
            frozenset({REINFORCEMENT}),
            65_536,
            frozenset({"eastus2", "swedencentral"}),
            False,
        ),
    )
}

DEFAULT_BASE_MODEL = "gpt-4.1-mini-2025-04-14"


def default_base(method: str | None) -> str:
    """The base model to assume for a method when none is named: the default when it supports
    the method, else the first that does (reinforcement: o4-mini)."""
    if method is None or method in BASE_MODELS[DEFAULT_BASE_MODEL].methods:
        return DEFAULT_BASE_MODEL
    return next(m.id for m in BASE_MODELS.values() if method in m.methods)


# `<base>.ft-<32 hex>[-suffix][:ckpt-step-N]`: what Azure names a fine-tuned model or checkpoint.
FINE_TUNED_ID = re.compile(
    r"^(?P<base>[a-z0-9][a-z0-9.-]*?-\d{4}-\d{2}-\d{2})\.ft-(?P<job>[0-9a-f]{32})"
    r"(?:-(?P<suffix>[A-Za-z0-9_-]+))?(?::ckpt-step-(?P<step>\d+))?$"
)


class UnknownModelError(ValueError):
    pass


def resolve_base(model: str) -> BaseModel:
    """The base model behind a base or fine-tuned model id (continual training starts from either)."""
    match = FINE_TUNED_ID.match(model)
    base_id = match.group("base") if match else model
    try:
        return BASE_MODELS[base_id]
    except KeyError:
        known = ", ".join(BASE_MODELS)
        raise UnknownModelError(
            f"unknown base model '{model}'; use one of: {known} (or a fine-tuned id '<base>.ft-<32 hex>')"
        ) from None


def base_of(model: str) -> str:
    """The base model id in a fine-tuned model id (`<base>.ft-<job>...`); a base id is its own."""
    return model.split(".ft-", maxsplit=1)[0]


def short_id(model: str) -> str:
    """A fine-tuned model id as tables show it: what follows `.ft-`, cut to 20 characters."""
    return model if ".ft-" not in model else "…" + model.split(".ft-", 1)[1][:20]


def is_fine_tuned(model: str) -> bool:
    return FINE_TUNED_ID.match(model) is not None


def auto_epochs(n_examples: int) -> int:
    """The epoch count "auto" resolves to, as OpenAI's data-preparation guide computes it:
    aim for 3 epochs, but at least ~100 and at most ~25,000 example passes."""
    target, min_passes, max_passes = 3, 100, 25_000
    if n_examples <= 0:
        return target
    if n_examples * target < min_passes:
        return min(25, min_passes // n_examples)
    if n_examples * target > max_passes:
        return max(1, max_passes // n_examples)
    return target


# Azure public-cloud region names (lowercase, as ARM spells `location`).
AZURE_REGIONS = frozenset(
    """
    australiacentral australiacentral2 australiaeast australiasoutheast austriaeast belgiumcentral
    brazilsouth brazilsoutheast canadacentral canadaeast centralindia centralus chilecentral
    eastasia eastus eastus2 francecentral francesouth germanynorth germanywestcentral
    indonesiacentral israelcentral italynorth japaneast japanwest koreacentral koreasouth
    malaysiawest mexicocentral newzealandnorth northcentralus northeurope norwayeast norwaywest
    polandcentral qatarcentral southafricanorth southafricawest southcentralus southeastasia
    southindia spaincentral swedencentral swedensouth switzerlandnorth switzerlandwest uaecentral
    uaenorth uksouth ukwest westcentralus westeurope westindia westus westus2 westus3
    """.split()
)
