"""The Pulumi program's entry: validate the stack's environment before any resource exists.

`infra/__main__.py` stays a short composition root; the Azure components and the dynamic
resources are added by their own modules and wired here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi

from ftops.config import Environment
from ftops.config_load import (
    check_promotion_chain,
    environment_names,
    load_environment,
    read_stack_node,
    validate_environment,
)
from ftops.errors import ConfigError, FtopsError


def load_stack_environment(root: Path, stack: str, raw: Any) -> Environment:
    """Validate `ftops:environment` as the engine passed it; fail the update with every problem."""
    try:
        node = read_stack_node(root, stack)
    except FtopsError:
        node = None  # line numbers are a courtesy; the engine's value is what gets validated
    try:
        env = validate_environment(root, stack, raw, node)
        others = {}
        for name in environment_names(root):
            if name != stack:
                try:
                    others[name] = load_environment(root, name)
                except FtopsError:
                    continue  # its own stack reports it; only the promotion chain matters here
        problems = check_promotion_chain(root, {**others, stack: env}, only=stack)
        if problems:
            raise ConfigError(problems)
    except ConfigError as exc:
        # RunError prints the message without a Python traceback.
        raise pulumi.RunError("invalid environment:\n  " + "\n  ".join(exc.problems)) from None
    return env


def summary(env: Environment) -> dict[str, Any]:
    """What the stack exports until the components land: the validated plan in brief."""
    return {
        "name": env.name,
        "stage": env.stage,
        "target": env.target,
        "location": env.location,
        "models": {
            key: {
                "base_model": env.base_of(key),
                "continue_from": spec.continue_from,
                "method": spec.method.type,
                "training_file": spec.training_file,
                "validation_file": spec.validation_file,
            }
            for key, spec in env.models.items()
        },
        "deployments": {
            key: {"model": d.model, "sku": d.sku.name, "capacity": d.sku.capacity}
            for key, d in env.deployments.items()
        },
        "releases": {key: pin.model for key, pin in env.releases.items()},
    }
