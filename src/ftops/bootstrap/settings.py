"""The bootstrap stack's settings: `ftops:bootstrap` in `bootstrap/Pulumi.<name>.yaml`.

One stack per subscription and repository. Validated like an environment (the same `Strict` base
and the same one-line errors, file: key.path: message (line)), before any resource is declared:

    bootstrap/Pulumi.acme.yaml: ftops:bootstrap.github.ownr: unknown key; did you mean 'owner'? ...
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import Field, StringConstraints, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from ftops.config.schema import Guid, Name, Region, Strict
from ftops.config.yamlfiles import format_errors, plain, read_yaml, relative_label
from ftops.errors import ConfigError, UsageError

CONFIG_KEY = "ftops:bootstrap"
BOOTSTRAP_DIR = "bootstrap"
EXAMPLE_STACK = "example"
# GitHub environments the bootstrap declares besides the deploying ones: PR previews and the
# nightly drift check / promotion run there, with the read-only identity.
READ_ONLY_ENVIRONMENTS = ("preview", "readonly")
# The nightly canary's GitHub environment (main only), with its own identity: it appends to the
# audit log and uploads evidence, which the read-only identity must not.
CANARY_ENVIRONMENT = "canary"

GitHubLogin = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")]
RepoName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,100}$")]
Label = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{1,62}$")]


class Containers(Strict):
    """The environment's evidence and audit containers (as its `storage.containers` names them):
    the read-only identity may read blobs there and nowhere else."""

    evidence: str = "evaluation-evidence"
    audit: str = "audit-log"


class DeployEnvironment(Strict):
    """One environment this repository deploys (a stack in environments/)."""

    # Created here and adopted by the environment's stack (`naming.resource_group`).
    resource_group: Annotated[str, StringConstraints(pattern=r"^[\w.()-]{1,90}$")] | None = None
    location: Region | None = None  # default: the bootstrap's location
    # Required reviewers on the GitHub environment (default: every environment but dev).
    require_review: bool | None = None
    containers: Containers = Containers()


class Reviewers(Strict):
    """Who approves a deployment to a reviewed environment: GitHub numeric ids
    (`gh api orgs/ORG/teams/SLUG --jq .id`, `gh api users/LOGIN --jq .id`)."""

    teams: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)
    users: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)


class GitHub(Strict):
    owner: GitHubLogin
    repository: RepoName
    branch: str = "main"  # the deployment branch of dev/staging/prod and the ruleset's target
    reviewers: Reviewers
    prevent_self_review: bool = True
    required_approvals: Annotated[int, Field(ge=1, le=10)] = 1
    # The `pr` workflow's jobs the ruleset requires (check names, posted by GitHub Actions).
    required_checks: Annotated[list[str], Field(min_length=1)] = Field(default_factory=lambda: ["test"])

    @model_validator(mode="after")
    def _someone_reviews(self) -> Self:
        if not self.reviewers.teams and not self.reviewers.users:
            raise PydanticCustomError(
                "at_path",
                "name at least one team or user id; a reviewed environment with nobody to review "
                "would let anyone deploy",
                {"path": "reviewers"},
            )
        return self


class State(Strict):
    """The storage account that keeps the Pulumi state of every stack (azblob backend)."""

    account_name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]{3,24}$")] | None = None
    sku: Literal["Standard_LRS", "Standard_ZRS", "Standard_GRS", "Standard_GZRS", "Standard_RAGZRS"] = (
        "Standard_ZRS"
    )
    soft_delete_days: Annotated[int, Field(ge=1, le=365)] = 30


class Network(Strict):
    """The runner network: the runner's subnet and one for private endpoints (the state account's,
    the key vault's, and the environments' when they set `network.existing_subnet_id` to it)."""

    address_space: ipaddress.IPv4Network = ipaddress.IPv4Network("10.40.0.0/16")
    # Container Apps (workload profiles) needs a subnet of /27 or larger, delegated to it.
    runner_subnet: ipaddress.IPv4Network = ipaddress.IPv4Network("10.40.0.0/27")
    private_endpoint_subnet: ipaddress.IPv4Network = ipaddress.IPv4Network("10.40.1.0/24")
    # The state account and the key vault: public network access off, private endpoints here.
    private: bool = True
    # Where a person runs the bootstrap and uploads the App key from: let through the state
    # account's and the key vault's firewalls (deny by default either way; Entra ID only).
    admin_ip_ranges: list[ipaddress.IPv4Network] = Field(default_factory=list)

    @model_validator(mode="after")
    def _inside(self) -> Self:
        for key in ("runner_subnet", "private_endpoint_subnet"):
            subnet: ipaddress.IPv4Network = getattr(self, key)
            if not subnet.subnet_of(self.address_space):
                raise PydanticCustomError(
                    "at_path",
                    "{subnet} is not inside address_space {space}",
                    {"path": key, "subnet": str(subnet), "space": str(self.address_space)},
                )
        if self.runner_subnet.prefixlen > 27:
            raise PydanticCustomError(
                "at_path", "Container Apps needs a /27 or larger subnet", {"path": "runner_subnet"}
            )
        if self.runner_subnet.overlaps(self.private_endpoint_subnet):
            raise PydanticCustomError(
                "at_path",
                "overlaps runner_subnet; give each subnet its own range",
                {"path": "private_endpoint_subnet"},
            )
        return self


class Runner(Strict):
    """The self-hosted runner: a Container Apps job in the runner network, started per queued job
    (KEDA's github-runner scaler) and registered with a GitHub App whose private key is a Key
    Vault secret, put there once by a person; it is never in this file or in the state."""

    label: Label = "ftops"  # FTOPS_RUNNER: what the workflows' `runs-on` asks for
    # An image in the bootstrap's registry (`az acr import` / `az acr build` it there), pulled
    # with the runner's managed identity: repository:tag, no registry host.
    image: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._/-]*:[A-Za-z0-9._-]+$")]
    github_app_id: Annotated[int, Field(ge=1)]
    github_app_installation_id: Annotated[int, Field(ge=1)]
    key_secret: Annotated[str, StringConstraints(pattern=r"^[0-9a-zA-Z-]{1,127}$")] = "github-app-key"
    # Who uploads the App key (Key Vault Secrets Officer on the vault); omit to grant it yourself.
    key_admin_principal_id: Guid | None = None
    max_executions: Annotated[int, Field(ge=1, le=50)] = 4
    cpu: Annotated[float, Field(ge=0.25, le=4)] = 2.0
    memory: Annotated[str, StringConstraints(pattern=r"^\d+(\.\d+)?Gi$")] = "4Gi"
    # A deploy job waits for training up to the environment's wait_timeout_minutes.
    timeout_minutes: Annotated[int, Field(ge=5, le=1440)] = 240


def _default_environments() -> dict[str, DeployEnvironment]:
    return {name: DeployEnvironment() for name in ("dev", "staging", "prod")}


class Bootstrap(Strict):
    subscription_id: Guid
    tenant_id: Guid
    location: Region
    prefix: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9]{1,9}$")]
    tags: dict[str, str] = Field(default_factory=dict)
    github: GitHub
    environments: dict[Name, DeployEnvironment] = Field(default_factory=_default_environments)
    state: State = State()
    network: Network = Network()
    runner: Runner

    @model_validator(mode="after")
    def _environments(self) -> Self:
        if not self.environments:
            raise PydanticCustomError(
                "at_path",
                "name at least one environment to deploy (dev, staging, prod)",
                {"path": "environments"},
            )
        for name in self.environments:
            if name in READ_ONLY_ENVIRONMENTS:
                raise PydanticCustomError(
                    "at_path",
                    "'{name}' is the read-only identity's GitHub environment; deploying environments "
                    "need other names",
                    {"path": f"environments.{name}", "name": name},
                )
            if name == CANARY_ENVIRONMENT:
                raise PydanticCustomError(
                    "at_path",
                    "'{name}' is the canary identity's GitHub environment; deploying environments "
                    "need other names",
                    {"path": f"environments.{name}", "name": name},
                )
        return self

    # ------------------------------------------------------------- derived names

    def resource_group(self, env: str) -> str:
        return self.environments[env].resource_group or f"rg-{self.prefix}-{env}"

    def location_of(self, env: str) -> str:
        return self.environments[env].location or self.location

    def reviewed(self, env: str) -> bool:
        wanted = self.environments[env].require_review
        return wanted if wanted is not None else env != "dev"

    @property
    def ops_resource_group(self) -> str:
        return f"rg-{self.prefix}-ops"

    @property
    def state_account(self) -> str:
        return self.state.account_name or f"st{self.prefix}state"

    @property
    def repository(self) -> str:
        return f"{self.github.owner}/{self.github.repository}"


def settings_file(root: Path, stack: str) -> Path:
    return root / BOOTSTRAP_DIR / f"Pulumi.{stack}.yaml"


def stack_names(root: Path) -> list[str]:
    folder = root / BOOTSTRAP_DIR
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in folder.glob("Pulumi.*.yaml"))


def validate_settings(root: Path, stack: str, raw: Any, tree: Any = None) -> Bootstrap:
    """Validate the value of `ftops:bootstrap` of stack `stack`; every problem on one line."""
    label = relative_label(settings_file(root, stack), root)
    if not isinstance(raw, dict):
        raise ConfigError([f"{label}: {CONFIG_KEY}: must be a mapping of keys to values"])
    try:
        return Bootstrap.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(
            format_errors(exc, raw, label, CONFIG_KEY, tree if tree is not None else raw)
        ) from None


def read_settings_node(root: Path, stack: str) -> Any:
    """The YAML node of `ftops:bootstrap` in the stack file (with line information)."""
    path = settings_file(root, stack)
    label = relative_label(path, root)
    if not path.is_file():
        known = ", ".join(stack_names(root)) or "none"
        raise UsageError(
            f"{label}: no such bootstrap stack file",
            fix=f"write it from {BOOTSTRAP_DIR}/Pulumi.{EXAMPLE_STACK}.yaml (stacks here: {known})",
        )
    tree = read_yaml(path, label)
    if not isinstance(tree, dict) or not isinstance(tree.get("config"), dict):
        raise ConfigError([f"{label}: needs a top-level 'config:' mapping (a Pulumi stack file)"])
    config = tree["config"]
    problems = [
        f"{label}: {key}: unknown ftops key; the bootstrap reads only {CONFIG_KEY}"
        for key in config
        if str(key).startswith("ftops:") and key != CONFIG_KEY
    ]
    if CONFIG_KEY not in config:
        problems.append(f"{label}: {CONFIG_KEY}: required key is missing")
    if problems:
        raise ConfigError(problems)
    return config[CONFIG_KEY]


def load_settings(root: Path, stack: str) -> Bootstrap:
    node = read_settings_node(root, stack)
    return validate_settings(root, stack, plain(node), node)
