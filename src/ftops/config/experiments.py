"""An experiment's variants, expanded from its grid (every combination of the listed values, for
each data fraction) or taken from its list, each with a stable label that names its resources."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from ftops.config.schema import Experiments, ModelSpec

WHOLE = ("n_epochs", "batch_size")  # hyperparameters Azure takes as whole numbers
SHORT = {"n_epochs": "ep", "learning_rate_multiplier": "lr", "batch_size": "bs", "beta": "beta"}


@dataclass(frozen=True)
class VariantPlan:
    label: str  # "lr2-f50": in resource names and reports
    hyperparameters: dict[str, Any]  # over the model's own
    fraction: float

    def describe(self) -> str:
        parts = [f"{k} {v:g}" for k, v in self.hyperparameters.items()]
        return ", ".join([*parts, f"{self.fraction:.0%} of the data"])


def _value(key: str, value: float) -> float | int:
    return int(value) if key in WHOLE else float(value)


def _label(hyperparameters: dict[str, Any], fraction: float) -> str:
    parts = [f"{SHORT[k]}{v:g}".replace(".", "p") for k, v in hyperparameters.items()]
    return "-".join([*parts, f"f{round(fraction * 100):g}"])


def variants(experiments: Experiments) -> list[VariantPlan]:
    if experiments.variants:
        plans = []
        for v in experiments.variants:
            hp = {k: _value(k, x) for k, x in v.model_dump(exclude={"fraction"}).items() if x is not None}
            plans.append(VariantPlan(_label(hp, v.fraction), hp, v.fraction))
        return plans
    keys = list(experiments.grid)
    out = []
    for values in itertools.product(*(experiments.grid[k] for k in keys)):
        hp = {k: _value(k, x) for k, x in zip(keys, values, strict=True)}
        for fraction in experiments.fractions:
            out.append(VariantPlan(_label(hp, fraction), hp, fraction))
    return out


def method_for(method: dict[str, Any], plan: VariantPlan) -> dict[str, Any]:
    """The job's method input with the variant's hyperparameters over the model's."""
    return {**method, "hyperparameters": {**(method.get("hyperparameters") or {}), **plan.hyperparameters}}


def of(spec: ModelSpec) -> list[VariantPlan]:
    return variants(spec.experiments) if spec.experiments is not None else []
