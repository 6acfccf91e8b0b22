"""Where an environment lives: the one place that decides between the emulator and Azure.

Everything outside the Pulumi program that needs an environment's account, audit log or
evidence store (status, evaluate, promote, the PR comment, the engine's summary) asks its
`Site`, and the program takes the same addresses from it, so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ftops.azure.connection import Target
from ftops.config.naming import names_for
from ftops.config.schema import Environment
from ftops.errors import ConfigError

EMULATOR_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
ARM_ENDPOINT = "https://management.azure.com"
Container = Literal["training", "evidence", "audit"]


@dataclass(frozen=True)
class Site:
    env: Environment
    root: Path

    @property
    def local(self) -> bool:
        """On the emulator (no Azure resources), or in an Azure subscription."""
        return self.env.target == "local"

    def emulator_account(self) -> dict[str, str]:
        """The emulated account as provider inputs take it (`target`): the endpoint, the variable
        holding the emulator's key, and an ARM id shaped like Azure's."""
        emulator = self.env.emulator
        if emulator is None:
            raise ConfigError([f"environment {self.env.name} has no emulator section"])
        account = emulator.account
        return {
            "endpoint": f"{emulator.endpoint}/accounts/{account}",
            "auth": f"env:{emulator.api_key_env}",
            "arm_id": f"/subscriptions/{EMULATOR_SUBSCRIPTION}/resourceGroups/"
            f"rg-{self.env.naming.prefix}-{self.env.name}/providers/"
            f"Microsoft.CognitiveServices/accounts/{account}",
            "arm_endpoint": emulator.endpoint,
        }

    def target(self, outputs: Mapping[str, Any] | None = None) -> Target | None:
        """The account to talk to: the emulator's, or the Azure account the stack's outputs name
        (None until the stack has created it)."""
        if self.local:
            return Target.of({"target": self.emulator_account()})
        if not outputs or not outputs.get("account_id"):
            return None
        return Target(
            endpoint=str(outputs["endpoint"]),
            auth="entra",
            arm_id=str(outputs["account_id"]),
            arm_endpoint=ARM_ENDPOINT,
        )

    def container(self, role: Container) -> dict[str, Any]:
        """An Azure environment's blob container as `container_client` takes it."""
        if self.env.storage is None:
            raise ConfigError([f"environment {self.env.name} has no storage section"])
        # Spelled as Azure reports the account's `primaryEndpoints.blob` (with the slash), so this
        # address and the one the stack's storage account outputs are the same string.
        return {
            "account_url": f"https://{names_for(self.env).storage}.blob.core.windows.net/",
            "container": self.env.storage.containers[role],
        }

    def audit(self) -> dict[str, Any]:
        """The audit log as `open_log` takes it: a file in the repository's `.ftops/` on the
        emulator, the append blob `<env>.jsonl` in the audit container on Azure."""
        if self.local:
            return {"kind": "file", "path": str(self.root / ".ftops" / "audit" / f"{self.env.name}.jsonl")}
        return {"kind": "blob", **self.container("audit"), "blob": f"{self.env.name}.jsonl"}

    def evidence_folder(self) -> Path:
        """Where the gate (in `pulumi up`) and `ftops evaluate` write the environment's evidence."""
        return evidence_folder(self.root, self.env.name)

    def evidence_store(self) -> dict[str, Any] | None:
        """Where evidence is uploaded to outlive the runner: the evidence container on Azure."""
        return None if self.local else self.container("evidence")


def evidence_folder(root: Path, environment: str) -> Path:
    """An environment's evidence folder, for callers that know only its name (a stack's summary)."""
    return root / ".ftops" / "evidence" / environment


def account_endpoint(env: Environment, account: str) -> str:
    """Another account's endpoint by name (a distilled model's teacher may serve there): an
    emulated account next to the environment's own, or an Azure account by its custom subdomain."""
    if env.target == "local" and env.emulator is not None:
        return f"{env.emulator.endpoint}/accounts/{account}"
    return f"https://{account}.openai.azure.com"
