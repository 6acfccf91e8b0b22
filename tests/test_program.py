"""The Pulumi program under `pulumi.runtime.set_mocks`: it validates the stack's environment as
the engine hands it over, before declaring anything, and exports the validated plan."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime import settings

from ftops.config_load import plain, read_stack_node
from tests.conftest import REPO


class Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        return f"{args.name}_id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


def run_program(stack: str, environment: Any, root: Path = REPO) -> tuple[Mocks, dict[str, Any]]:
    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project="ftops", stack=stack, preview=False)
    pulumi.runtime.set_all_config({"ftops:environment": json.dumps(environment)})
    program = root / "infra" / "__main__.py"
    runpy.run_path(str(program if program.exists() else REPO / "infra" / "__main__.py"), run_name="__main__")
    stack_resource = settings.get_root_resource()
    assert stack_resource is not None
    return mocks, dict(stack_resource.outputs)  # type: ignore[attr-defined]


@pytest.mark.parametrize("stack", ["local", "dev", "staging", "prod"])
def test_program_exports_the_validated_environment(stack: str) -> None:
    raw = plain(read_stack_node(REPO, stack))
    mocks, outputs = run_program(stack, raw)
    summary = outputs["environment"]
    assert summary["name"] == stack, stack
    assert summary["deployments"]["support-bot"]["model"] == "support-bot"
    if stack in ("staging", "prod"):
        assert summary["models"] == {}, stack
        assert summary["releases"]["support-bot"].startswith("gpt-4.1-mini-2025-04-14.ft-"), stack
    # No resource is declared yet: the Azure components come with their own issue.
    assert mocks.resources == []


def test_dev_summary_resolves_continual_training() -> None:
    _, outputs = run_program("dev", plain(read_stack_node(REPO, "dev")))
    bot = outputs["environment"]["models"]["support-bot"]
    assert bot == {
        "base_model": "gpt-4.1-mini-2025-04-14",
        "continue_from": "support-sft",
        "method": "dpo",
        "training_file": "data/support-bot-dpo/train.jsonl",
        "validation_file": "data/support-bot-dpo/valid.jsonl",
    }


def test_invalid_config_stops_before_any_resource() -> None:
    raw = plain(read_stack_node(REPO, "prod"))
    raw["deployments"]["support-bot"]["sku"]["capacity"] = 0
    raw["tags"]["criticality"] = 3
    with pytest.raises(pulumi.RunError) as info:
        run_program("prod", raw)
    assert str(info.value) == (
        "invalid environment:\n"
        "  environments/Pulumi.prod.yaml: ftops:environment.tags.criticality: must be text (line 16)\n"
        "  environments/Pulumi.prod.yaml: ftops:environment.deployments.support-bot.sku.capacity: must be >= 1 "
        "(line 58)"
    )
    # Cross-field rules run once every key is valid on its own.
    raw = plain(read_stack_node(REPO, "prod"))
    raw["account"]["public_network_access"] = "Enabled"
    with pytest.raises(pulumi.RunError) as info:
        run_program("prod", raw)
    assert str(info.value).endswith("account.public_network_access: production requires Disabled (line 24)")


def test_the_program_checks_the_promotion_chain() -> None:
    raw = plain(read_stack_node(REPO, "staging"))
    raw["deployments"]["support-bot"]["model"] = "helpdesk"
    raw["gates"] = {"helpdesk": raw["gates"]["support-bot"]}
    with pytest.raises(pulumi.RunError) as info:
        run_program("staging", raw)
    assert "ftops:environment.deployments.support-bot.model: 'helpdesk' is not a model of 'dev'" in str(
        info.value
    )
