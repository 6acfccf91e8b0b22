"""What every ftops provider shares: the serialized-provider key and input/output separation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

PROVIDER_KEY = "__provider"  # the engine's property holding the dill-serialized provider


def unknown(value: Any) -> bool:
    """A preview's placeholder for an output not computed yet (a dataset not captured yet)."""
    from pulumi.runtime.rpc import UNKNOWN

    return value == UNKNOWN or (
        value is not None and not isinstance(value, str | int | float | bool | dict | list)
    )


def inputs_of(props: dict[str, Any], outputs: Iterable[str] = ()) -> dict[str, Any]:
    """The resource's inputs: its properties without the serialized provider and its outputs."""
    skip = {PROVIDER_KEY, *outputs}
    return {k: v for k, v in props.items() if k not in skip}
